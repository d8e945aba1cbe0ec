"""The peer server: our backend, unchanged, served by LitServe with its own batching.

Run as a process by the peers suite:
  python -m gen3d.benchmarks.litserve_peer --backend proxy --model-dir DIR --port P \
      --max-batch-size 8 --batch-timeout 0.01
It binds 127.0.0.1 only. Requests and responses are the JSON forms our server also
speaks ({"image","mask","seed"} in; {"format","data","metadata"} out), decoded and
encoded by our own codecs, so both servers do the same work around the same model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import litserve as ls

from gen3d.serve.errors import Gen3DError
from gen3d.serve.http import codecs
from gen3d.serve.settings import Settings


class Gen3DLitAPI(ls.LitAPI):
    def __init__(self, settings: Settings, batch_timeout_s: float) -> None:
        super().__init__(
            max_batch_size=settings.max_batch_size,
            batch_timeout=batch_timeout_s,
            api_path="/invocations",
        )
        self.settings = settings

    def setup(self, device: str) -> None:
        from gen3d.serve.backends import create_backend

        self.backend = create_backend(self.settings.backend)
        self.backend.load(self.settings.model_dir, self.settings)
        if self.settings.warmup:
            self.backend.warmup()
        self.limits = codecs.Limits(
            max_image_pixels=self.settings.max_image_pixels,
            max_batch_items=self.settings.max_batch_items,
            needs_mask=self.backend.needs_mask,
            options=self.backend.options,
        )

    def decode_request(self, request, **kwargs: Any) -> Any:
        decoded = codecs.decode_json(
            json.dumps(request).encode(), codecs.Defaults(seed=0, format=None), self.limits
        )
        item = decoded.items[0]
        if isinstance(item, Gen3DError):
            raise item
        return item

    def batch(self, inputs: list[Any]) -> list[Any]:
        return list(inputs)

    def unbatch(self, output: list[Any]) -> list[Any]:
        return list(output)

    def predict(self, x: Any, **kwargs: Any) -> Any:
        if isinstance(x, list):
            return self.backend.predict(x)
        return self.backend.predict([x])[0]

    def encode_response(self, output: Any, **kwargs: Any) -> dict[str, Any]:
        if isinstance(output, BaseException):
            raise output
        return codecs.asset_json(output, "glb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-timeout", type=float, default=0.01, help="seconds")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=55.0)
    args = parser.parse_args()
    settings = Settings(
        backend=args.backend,
        model_dir=args.model_dir,
        device=args.device,
        precision=args.precision if args.backend != "silhouette" else "auto",
        max_batch_size=args.max_batch_size,
        warmup=True,
    )
    api = Gen3DLitAPI(settings, args.batch_timeout)
    server = ls.LitServer(
        api,
        accelerator="cuda" if args.device == "cuda" else "cpu",
        devices=1,
        workers_per_device=1,
        timeout=args.timeout,
    )
    # loopback only: benchmarks never open a port to the network
    server.run(
        host="127.0.0.1",
        port=args.port,
        num_api_servers=1,
        log_level="warning",
        generate_client_file=False,
    )


if __name__ == "__main__":
    main()
