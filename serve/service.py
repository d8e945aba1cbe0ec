"""The request path without HTTP: a decoded request in, results and an encoded body out.

`InvocationService.invoke` is what /invocations does once the body is decoded: choose the
response form from Accept, queue the samples on the worker's batcher (all or none),
wait for each within the request's deadline, stamp the metadata, and encode the answer.
The Flask app (gen3d.serve.app) only turns HTTP into a `DecodedRequest` and an `Answer`
into a response, so this is testable without Flask and reusable by other front ends.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from gen3d.serve import __version__, codecs, finishing
from gen3d.serve.assets import Asset
from gen3d.serve.batching import Batcher
from gen3d.serve.errors import Gen3DError, NotReady
from gen3d.serve.runtime import ModelRuntime

NOT_READY_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Answer:
    """An encoded response: body, media type and extra headers."""

    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """Every item's result in request order (an asset, or the error in its slot)."""

    results: list[Asset | Gen3DError]
    formats: list[str]
    plan: codecs.ResponsePlan
    is_batch: bool
    request_id: str

    def encode(self) -> Answer:
        """The response body; a single request's error is raised for the caller to answer."""
        if not self.is_batch:
            result, fmt = self.results[0], self.formats[0]
            if isinstance(result, Gen3DError):
                raise result
            if self.plan.wire == "json":
                body = json.dumps(codecs.asset_json(result, fmt)).encode()
                return Answer(body, "application/json")
            metadata = json.dumps(result.metadata, separators=(",", ":"))
            return Answer(
                codecs.encode_item(result, fmt),
                self.plan.media_type,
                {"X-Gen3D-Metadata": metadata},
            )
        body = codecs.encode_batch(
            self.results, self.formats, self.plan, lambda e: e.to_dict(self.request_id)
        )
        return Answer(body, self.plan.media_type)


class InvocationService:
    """Runs decoded requests on one worker's model runtime."""

    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime

    @property
    def limits(self) -> codecs.Limits:
        return self.runtime.limits

    def ready_batcher(self) -> Batcher:
        """The worker's batcher, or NotReady (503 + Retry-After) while loading or failed."""
        runtime = self.runtime
        if not runtime.ready or runtime.batcher is None:
            raise NotReady(
                runtime.failure or f"model is {runtime.state}",
                retry_after_s=NOT_READY_RETRY_AFTER_S,
            )
        return runtime.batcher

    def invoke(
        self, decoded: codecs.DecodedRequest, accept: str | None, request_id: str
    ) -> Outcome:
        """Plan the response (406 first, before any work), run every good item, collect."""
        batcher = self.ready_batcher()
        plan = codecs.plan_response(accept, decoded.requested_format, decoded.is_batch)
        items = decoded.items
        if plan.format is not None:  # a single request: Accept may decide the format
            items = [
                i if isinstance(i, Gen3DError) else dataclasses.replace(i, format=plan.format)
                for i in items
            ]
        samples = [i for i in items if not isinstance(i, Gen3DError)]
        timeout_s = self.runtime.settings.request_timeout_s
        jobs = batcher.submit(samples, timeout_s, request_id) if samples else []
        outcomes = iter([batcher.wait(job) for job in jobs])
        results = [i if isinstance(i, Gen3DError) else next(outcomes) for i in items]
        results = [
            finishing.finish(i, r) if not isinstance(i, Gen3DError) else r
            for i, r in zip(items, results, strict=True)
        ]
        for result in results:
            if not isinstance(result, Gen3DError):
                result.metadata.setdefault("version", __version__)
                result.metadata["request_id"] = request_id
        formats = [getattr(i, "format", "glb") for i in items]
        return Outcome(results, formats, plan, decoded.is_batch, request_id)
