"""One compile measurement in a fresh process (the GPU check runs it twice: cold, warm).

The caller points TORCHINDUCTOR_CACHE_DIR at a directory: empty for the cold run, the
one the cold run filled for the warm run, as a server starting from a shipped compile
cache would (gen3d.serve.artifact.compile_cache). Prints one JSON line: load time, the
first compiled call (compile + run), and a second call (compiled code only).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--stages", default="encoder,generator_stage1,generator_stage2,decoder")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import torch

    from gen3d.benchmarks.backends import load_backend, settings_for
    from gen3d.benchmarks.gpu_probes import check_results, samples_with_steps
    from gen3d.serve.artifact.compile_cache import compile_stages

    imported = time.perf_counter()
    backend, load_s = load_backend(
        settings_for("proxy", args.model_dir, args.device, args.precision, 1)
    )
    names = [s for s in args.stages.split(",") if s]
    stages = backend.modules()
    compile_stages([stages[n] for n in names])
    batch = samples_with_steps(1, args.steps)

    def call() -> float:
        t0 = time.perf_counter()
        check_results(backend.predict(batch))
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    first = call()
    second = call()
    print(
        json.dumps(
            {
                "import_s": round(imported - started, 3),
                "load_s": round(load_s, 3),
                "first_call_s": round(first, 3),
                "second_call_s": round(second, 3),
                "compile_s": round(first - second, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
