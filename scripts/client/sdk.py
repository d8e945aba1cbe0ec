"""SageMaker SDK integration (the optional extra: `pip install 'gen3d[sagemaker]'`).

Built on `sagemaker-core` (the core package of SageMaker Python SDK v3), the lightest
current package that has the SDK's serializer/deserializer interfaces and an endpoint
object that invokes with them (`sagemaker.core.resources.Endpoint`). Measured on top of
gen3d's own dependencies it adds ~160 MB; the full `sagemaker` package adds ~677 MB and
replaces gunicorn (docs: README, "Python client"). Nothing here goes into the image.

    from gen3d.client.sdk import Gen3DPredictor
    predictor = Gen3DPredictor("my-endpoint", region="us-east-1")
    result = predictor.predict("photo.png", mask="mask.png")        # a gen3d Result
    results = predictor.predict_many(["a.png", "b.png"])               # one batch request

Or give an SDK `Endpoint` of your own our serializer and deserializer:

    endpoint.serializer, endpoint.deserializer = Gen3DSerializer(), Gen3DDeserializer()
    endpoint.invoke(body={"image": "photo.png", "mask": "mask.png"},
                    content_type="application/json", accept="application/json").body
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from typing import Any

try:
    from sagemaker.core.deserializers.base import SimpleBaseDeserializer
    from sagemaker.core.resources import Endpoint
    from sagemaker.core.serializers.base import SimpleBaseSerializer
except ImportError as exc:  # the extra is not installed
    raise ImportError(
        "gen3d.client.sdk needs the SageMaker SDK's core package: "
        "pip install 'gen3d[sagemaker]' (or use gen3d.client.Client, which does not)"
    ) from exc

from gen3d.client.errors import ServerError
from gen3d.client.inputs import FORMAT_MEDIA_TYPE, Item, batch_request, single_request
from gen3d.client.result import Result, asset_result, batch_results, single_result


def _item(data: Any, seed: int, fmt: str) -> Item:
    return Item.from_spec(data, seed=seed, format=fmt, options={})


class Gen3DSerializer(SimpleBaseSerializer):
    """Our JSON request: one sample (an image, an (image, mask) pair or a mapping with
    image / mask / seed / format / options) as `{"image": b64, ...}`, a list of them as
    an explicit batch `{"instances": [...]}`. Images may be paths, bytes, PIL images or
    numpy arrays."""

    def __init__(self, seed: int = 0, format: str = "glb") -> None:
        super().__init__(content_type="application/json")
        self.seed = seed
        self.format = format

    def serialize(self, data: Any) -> bytes:
        if isinstance(data, list):
            return batch_request([_item(d, self.seed, self.format) for d in data]).body
        return json.dumps(_item(data, self.seed, self.format).instance()).encode()


class Gen3DMultipartSerializer(SimpleBaseSerializer):
    """One sample as multipart/form-data: binary parts, a third smaller than JSON. The
    content type carries the boundary, so set it from `content_type_for(data)`."""

    def __init__(self, seed: int = 0, format: str = "glb") -> None:
        super().__init__(content_type="multipart/form-data")
        self.seed = seed
        self.format = format
        self._last_content_type = "multipart/form-data"

    def serialize(self, data: Any) -> bytes:
        request = single_request(_item(data, self.seed, self.format))
        self._last_content_type = request.content_type
        return request.body

    @property
    def CONTENT_TYPE(self) -> str:
        return self._last_content_type


class Gen3DDeserializer(SimpleBaseDeserializer):
    """Our answers: a GLB / PLY / OBJ body, a JSON asset, JSON batch predictions or a zip
    with a manifest. Returns a gen3d Result, or for a batch a list of Result (a failed item
    is its typed ServerError, in its slot)."""

    def __init__(self, accept: str | tuple[str, ...] = "application/json") -> None:
        super().__init__(accept=accept)

    def deserialize(self, stream: Any, content_type: str) -> Any:
        try:
            data = stream.read() if hasattr(stream, "read") else bytes(stream)
        finally:
            if hasattr(stream, "close"):
                stream.close()
        media = (content_type or "").split(";")[0].strip().lower()
        if media == "application/json":
            doc = json.loads(data)
            if isinstance(doc, Mapping) and "predictions" in doc:
                return batch_results(data)
            return asset_result(dict(doc))
        if media == "application/zip":
            return _zip_results(data)
        return single_result(data, _format_of(media), media, None)


def _format_of(media: str) -> str:
    for fmt, media_type in FORMAT_MEDIA_TYPE.items():
        if media == media_type:
            return fmt
    return "ply" if media == "application/octet-stream" else "glb"


def _zip_results(data: bytes) -> list[Result | ServerError]:
    from gen3d.client.errors import from_error_body

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))["predictions"]
        out: list[Result | ServerError] = []
        for entry in manifest:
            if "error" in entry:
                out.append(from_error_body(entry["error"]))
            else:
                fmt = entry["file"].rsplit(".", 1)[1]
                out.append(Result(archive.read(entry["file"]), fmt, dict(entry["metadata"])))
        return out


class Gen3DPredictor:
    """Attach to an existing Gen3D endpoint with the SDK: our serializer and deserializer
    on a `sagemaker.core.resources.Endpoint`. `inference_component` is needed for an
    endpoint that hosts its model as an inference component (real-time scale-to-zero)."""

    def __init__(
        self,
        endpoint_name: str,
        *,
        region: str | None = None,
        session: Any = None,
        inference_component: str | None = None,
        seed: int = 0,
        format: str = "glb",
    ) -> None:
        self.endpoint = Endpoint(endpoint_name=endpoint_name)
        self.endpoint.serializer = Gen3DSerializer(seed=seed, format=format)
        self.endpoint.deserializer = Gen3DDeserializer()
        self.region = region
        self.session = session
        self.inference_component = inference_component

    def predict(
        self,
        image: Any,
        mask: Any = None,
        seed: int | None = None,
        format: str | None = None,
        **options: Any,
    ) -> Result:
        sample: dict[str, Any] = {"image": image, "mask": mask, "options": options}
        if seed is not None:
            sample["seed"] = seed
        if format is not None:
            sample["format"] = format
        return self._invoke(sample)

    def predict_many(self, items: list[Any]) -> list[Result | ServerError]:
        """One explicit batch request (keep it within the container's item limit, 16 by
        default; gen3d.client.Client.generate_many splits for you)."""
        return self._invoke(list(items))

    def _invoke(self, body: Any) -> Any:
        extra: dict[str, Any] = {}
        if self.inference_component:
            extra["inference_component_name"] = self.inference_component
        if self.session is not None:
            extra["session"] = self.session
        if self.region is not None:
            extra["region"] = self.region
        response = self.endpoint.invoke(
            body=body, content_type="application/json", accept="application/json", **extra
        )
        return response.body
