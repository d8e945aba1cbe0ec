"""The request path without HTTP: a decoded request in, results and an encoded body out.

`InvocationService.invoke` is what /invocations does once the body is decoded: choose the
response form from Accept, queue the samples on the worker's batcher (all or none),
wait for each within the request's deadline, stamp the metadata, and encode the answer.
The Flask app (gen3d.serve.http.app) only turns HTTP into a `DecodedRequest` and an `Answer`
into a response, so this is testable without Flask and reusable by other front ends.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from gen3d.serve import __version__, request_options
from gen3d.serve.backends.base import Sample
from gen3d.serve.errors import DeadlineExceeded, Gen3DError
from gen3d.serve.http import codecs
from gen3d.serve.model import finishing
from gen3d.serve.model.batching import Batcher
from gen3d.serve.model.runtime import ModelRuntime
from gen3d.serve.outputs.assets import Asset


@dataclass(frozen=True)
class Answer:
    """An encoded response: body, media type and extra headers."""

    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """Every item's encoded result in request order (or the error in its slot)."""

    results: list[codecs.EncodedItem | Gen3DError]
    plan: codecs.ResponsePlan
    is_batch: bool
    request_id: str
    encode_ms: float = 0.0  # finishing and encoding the items (wherever that ran)

    def encode(self) -> Answer:
        """The response body; a single request's error is raised for the caller to answer."""
        if not self.is_batch:
            result = self.results[0]
            if isinstance(result, Gen3DError):
                raise result
            if self.plan.wire == "json":
                return Answer(result.data, "application/json")
            metadata = json.dumps(result.metadata, separators=(",", ":"))
            return Answer(result.data, self.plan.media_type, {"X-Gen3D-Metadata": metadata})
        body = codecs.encode_batch(self.results, self.plan, lambda e: e.to_dict(self.request_id))
        return Answer(body, self.plan.media_type)


@dataclass
class Admission:
    """Queue slots held for a request before its body is read and decoded."""

    batcher: Batcher
    slots: int
    waited_s: float = 0.0  # in the waiting room; it counts against the request's deadline
    used: bool = False


class InvocationService:
    """Runs decoded requests on one worker's model runtime.

    Admission comes first: `admit()` holds a queue slot before the body is read, waiting
    for one up to GEN3D_ADMISSION_WAIT_S in a bounded waiting room (or answers 503 with
    Retry-After), so an overloaded worker spends nothing on requests it cannot serve;
    `decoding()` bounds how many bodies are decoded at once, which bounds memory.
    """

    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime
        self._decoders = threading.BoundedSemaphore(runtime.settings.decode_concurrency)

    @property
    def limits(self) -> codecs.Limits:
        """What decoding checks requests against: the settings' limits, and the backend's
        options and mask maker as loaded."""
        runtime = self.runtime
        return codecs.Limits(
            max_image_pixels=runtime.settings.max_image_pixels,
            max_batch_items=runtime.settings.max_batch_items,
            needs_mask=runtime.backend.needs_mask,
            options=runtime.backend.options | request_options.COMMON,
            max_side=runtime.settings.max_image_side,
            auto_mask=runtime.auto_mask,
        )

    def ready_batcher(self) -> Batcher:
        """The worker's batcher, or NotReady (503) while loading or failed."""
        runtime = self.runtime
        if not runtime.ready or runtime.batcher is None:
            raise runtime.not_ready()
        return runtime.batcher

    @contextmanager
    def admit(self, slots: int = 1, waited_s: float = 0.0) -> Iterator[Admission]:
        """Hold `slots` queue slots for the body about to be decoded; they are given back
        unless `invoke` used them. `waited_s`: what the request already waited for a
        worker (in the socket's backlog behind the front); like a wait in the waiting
        room it counts against the deadline, and one already past it is never read."""
        batcher = self.ready_batcher()
        settings = self.runtime.settings
        if waited_s >= settings.request_timeout_s:
            raise DeadlineExceeded("the request's deadline passed while it waited for a worker")
        wait_s = min(settings.admission_wait_s, settings.request_timeout_s - waited_s)
        admission = Admission(batcher, slots, waited_s + batcher.reserve(slots, wait_s))
        try:
            yield admission
        finally:
            if not admission.used:
                batcher.release(admission.slots)

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """At most GEN3D_DECODE_CONCURRENCY bodies decode at once in this worker."""
        with self._decoders:
            yield

    def invoke(
        self,
        decoded: codecs.DecodedRequest,
        accept: str | None,
        request_id: str,
        admission: Admission | None = None,
    ) -> Outcome:
        """Plan the response (406 first, before any work), run every good item, collect."""
        batcher = admission.batcher if admission else self.ready_batcher()
        plan = codecs.plan_response(accept, decoded.requested_format, decoded.is_batch)
        items = decoded.items
        if plan.format is not None:  # a single request: Accept may decide the format
            items = [
                i if isinstance(i, Gen3DError) else dataclasses.replace(i, format=plan.format)
                for i in items
            ]
        samples = [i for i in items if not isinstance(i, Gen3DError)]
        timeout_s = self.runtime.settings.request_timeout_s
        timeout_s -= admission.waited_s if admission else 0.0
        reserved = admission.slots if admission else 0
        encode_s: list[float] = []

        def prepare(sample: Sample, asset: Asset) -> codecs.EncodedItem | Gen3DError:
            """The request's options applied, its stamps set, encoded for its plan."""
            started = time.perf_counter()
            try:
                finished = finishing.finish(sample, asset)
                if isinstance(finished, Gen3DError):
                    return finished
                finished.metadata.setdefault("version", __version__)
                finished.metadata["request_id"] = request_id
                return codecs.encode_result(finished, sample.format, plan)
            finally:
                encode_s.append(time.perf_counter() - started)

        jobs = batcher.submit(samples, timeout_s, request_id, reserved, finish=prepare)
        if admission:
            admission.used = True
        outcomes = iter([batcher.wait(job) for job in jobs])
        results = [i if isinstance(i, Gen3DError) else next(outcomes) for i in items]
        return Outcome(results, plan, decoded.is_batch, request_id, round(1000 * sum(encode_s), 3))
