"""`Client`: one photo (or many) in, a 3D asset out, however the model is deployed.

    from gen3d.client import Client
    client = Client.endpoint("my-endpoint", region="us-east-1")   # or Client.local(url)
    result = client.generate("photo.png", mask="mask.png", format="glb")
    result.save("photo.glb")
    mesh = result.to_trimesh()

Retries happen only where sending the same request again is safe: the server refused it
before any work ran (503 queue_full / not_ready, honouring Retry-After), or the endpoint
has no capacity yet (scaling from zero, serverless provisioning). Each is bounded.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from gen3d.client.async_endpoint import INPUT_PREFIX, AsyncJob, AsyncTransport
from gen3d.client.endpoint import (
    EndpointInfo,
    RealtimeTransport,
    ScalingFromZero,
    describe_endpoint,
    runtime_client,
)
from gen3d.client.errors import (
    AwsError,
    EndpointNotReadyError,
    Gen3DClientError,
    InputError,
    PayloadTooLargeError,
    ServerError,
    server_error,
)
from gen3d.client.http import HttpTransport
from gen3d.client.inputs import ImageLike, Item, Request, batch_request, single_request
from gen3d.client.inputs import split_batches as _split
from gen3d.client.result import Result, batch_results, single_result
from gen3d.client.transport import Backoff, Reply, Transport

Progress = Callable[[str], None]


def print_progress(line: str) -> None:
    """The default progress sink: one line on stderr (visible in a notebook too)."""
    print(f"gen3d: {line}", file=sys.stderr, flush=True)


class BatchError(Gen3DClientError):
    """Some items of generate_many failed. `results` holds every slot in order: a Result,
    or the typed error of that item."""

    def __init__(self, results: list[Result | ServerError]) -> None:
        self.results = results
        failed = [(i, r) for i, r in enumerate(results) if isinstance(r, Exception)]
        shown = "; ".join(f"[{i}] {err}" for i, err in failed[:3])
        more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
        super().__init__(f"{len(failed)} of {len(results)} items failed: {shown}{more}")


class Client:
    """Talks to one deployment. Build it with `Client.local`, `Client.endpoint` or
    `Client.async_endpoint`; all three share `generate` and `generate_many`."""

    def __init__(
        self,
        transport: Transport,
        *,
        timeout_s: float,
        max_retries: int = 3,
        max_retry_wait_s: float = 30.0,
        scale_timeout_s: float = 900.0,
        backoff: Backoff | None = None,
        progress: Progress | None = print_progress,
    ) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s
        self.scale_timeout_s = scale_timeout_s
        self.backoff = backoff or Backoff()
        self._progress = progress or (lambda _: None)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def local(
        cls,
        url: str = "http://127.0.0.1:8080",
        *,
        timeout_s: float = 120.0,
        max_batch_items: int | None = None,
        **options: Any,
    ) -> Client:
        """A server reached by URL (`gen3d serve`, a container on a port). Pass
        `max_batch_items` if the server's GEN3D_MAX_BATCH_ITEMS is not the default 16
        (otherwise a larger batch is refused once and then split)."""
        return cls(HttpTransport(url, max_batch_items), timeout_s=timeout_s, **options)

    @classmethod
    def endpoint(
        cls,
        name: str,
        *,
        region: str | None = None,
        inference_component: str | None = None,
        session: Any = None,
        sagemaker: Any = None,
        runtime: Any = None,
        discover: bool = True,
        timeout_s: float = 70.0,
        **options: Any,
    ) -> Client:
        """A real-time SageMaker endpoint: instance-backed, serverless, or hosting
        inference components (the component is found with ListInferenceComponents, or
        pass `inference_component`). `discover=False` skips the control-plane reads
        (for credentials that may only invoke): default batch limits, no checks."""
        session = session or _session(region)
        info = None
        if discover:
            info = describe_endpoint(
                sagemaker or _client(session, "sagemaker"), name, inference_component
            )
            if info.async_config is not None:
                raise InputError(f"endpoint {name} is async: use Client.async_endpoint")
        transport = RealtimeTransport(
            name,
            runtime or _client(session, "sagemaker-runtime", timeout_s),
            info,
            inference_component,
        )
        return cls(transport, timeout_s=timeout_s, **options)

    @classmethod
    def async_endpoint(
        cls,
        name: str,
        *,
        bucket: str | None = None,
        prefix: str = INPUT_PREFIX,
        region: str | None = None,
        session: Any = None,
        sagemaker: Any = None,
        runtime: Any = None,
        s3: Any = None,
        timeout_s: float = 3600.0,
        poll_s: float = 5.0,
        **options: Any,
    ) -> Client:
        """An async SageMaker endpoint. Inputs go to `s3://bucket/prefix…` (default: the
        bucket of the endpoint's S3OutputPath); `generate` waits up to `timeout_s` for
        the output or failure object, `submit` returns an AsyncJob to wait on later."""
        session = session or _session(region)
        info = describe_endpoint(sagemaker or _client(session, "sagemaker"), name)
        if info.async_config is None:
            raise InputError(f"endpoint {name} is {info.kind}: use Client.endpoint")
        progress = options.get("progress", print_progress) or (lambda _: None)
        transport = AsyncTransport(
            name,
            runtime or _client(session, "sagemaker-runtime"),
            s3 or _client(session, "s3"),
            info,
            bucket=bucket,
            prefix=prefix,
            poll_s=poll_s,
            progress=progress,
        )
        return cls(transport, timeout_s=timeout_s, **options)

    @classmethod
    def for_endpoint(cls, name: str, **options: Any) -> Client:
        """Client.endpoint or Client.async_endpoint, whichever `name` is."""
        session = options.pop("session", None) or _session(options.pop("region", None))
        sagemaker = options.pop("sagemaker", None) or _client(session, "sagemaker")
        info: EndpointInfo = describe_endpoint(sagemaker, name, options.get("inference_component"))
        if info.async_config is not None:
            options.pop("inference_component", None)
            return cls.async_endpoint(name, session=session, sagemaker=sagemaker, **options)
        for key in ("bucket", "prefix", "poll_s", "s3"):
            options.pop(key, None)
        return cls.endpoint(name, session=session, sagemaker=sagemaker, **options)

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        image: ImageLike,
        mask: ImageLike | None = None,
        seed: int = 0,
        format: str = "glb",
        **options: Any,
    ) -> Result:
        """One photo (path, bytes, PIL image or numpy array; an RGBA image carries its
        mask in alpha) -> Result. `options` are the backend's (e.g. steps=...)."""
        item = Item.build(image, mask, seed=seed, format=format, options=options)
        reply = self._call(self._single(item))
        return single_result(reply.body, item.format, reply.content_type, reply.metadata_header)

    def submit(
        self,
        image: ImageLike,
        mask: ImageLike | None = None,
        seed: int = 0,
        format: str = "glb",
        *,
        input_s3_uri: str | None = None,
        **options: Any,
    ) -> AsyncJob:
        """Async endpoints only: queue one request and return its AsyncJob at once
        (`input_s3_uri`: upload the input to this key instead of a fresh one)."""
        if not isinstance(self.transport, AsyncTransport):
            raise InputError("submit() needs an async endpoint (Client.async_endpoint)")
        item = Item.build(image, mask, seed=seed, format=format, options=options)
        return self.transport.submit(
            self._single(item),
            lambda reply: single_result(reply.body, item.format, reply.content_type, None),
            input_s3_uri=input_s3_uri,
        )

    def generate_many(
        self,
        items: Iterable[Any],
        *,
        seed: int = 0,
        format: str = "glb",
        return_errors: bool = False,
        **options: Any,
    ) -> list[Any]:
        """Many samples through explicit batch requests, split to the deployment's limits
        (items per batch, body size) and split again if the server still refuses one as
        too large. Each entry: an image, an (image, mask) pair or a mapping with image /
        mask / seed / format / options. Results come back in order; a failed item raises
        BatchError (which holds every slot), or stays in its slot with return_errors."""
        built = [Item.from_spec(s, seed=seed, format=format, options=options) for s in items]
        if not built:
            return []
        limits = self.transport.limits()
        chunks = _split(built, limits.max_batch_items, limits.max_body_bytes)
        results: list[Any] = [None] * len(built)
        if isinstance(self.transport, AsyncTransport):
            # Queue every batch first, so that the endpoint can scale out for all of them.
            jobs = [
                (chunk, self.transport.submit(batch_request([built[i] for i in chunk]), _same))
                for chunk in chunks
            ]
            for chunk, job in jobs:
                try:
                    self._fill(results, chunk, job.wait_reply(self.timeout_s))
                except PayloadTooLargeError as exc:
                    self._split_again(built, chunk, results, exc)
        else:
            for chunk in chunks:
                self._run_chunk(built, chunk, results)
        if not return_errors and any(isinstance(r, Exception) for r in results):
            raise BatchError(results)
        return results

    def invoke(
        self,
        body: bytes,
        content_type: str,
        accept: str = "*/*",
        custom_attributes: str | None = None,
    ) -> Reply:
        """A raw request of your own (any wire form the container reads), with the same
        typed errors and retries as generate."""
        return self._call(Request(body, content_type, accept, custom_attributes))

    # ------------------------------------------------------------------ internals

    def _single(self, item: Item) -> Request:
        return single_request(item, getattr(self.transport, "single_form", "multipart"))

    def _run_chunk(self, items: list[Item], chunk: list[int], results: list[Any]) -> None:
        try:
            reply = self._call(batch_request([items[i] for i in chunk]))
        except PayloadTooLargeError as exc:
            self._split_again(items, chunk, results, exc)
            return
        self._fill(results, chunk, reply)

    def _split_again(
        self, items: list[Item], chunk: list[int], results: list[Any], exc: ServerError
    ) -> None:
        if len(chunk) == 1:  # one item too large on its own: its slot gets the error
            results[chunk[0]] = exc
            return
        half = len(chunk) // 2
        self._progress(f"a batch of {len(chunk)} was refused as too large; sending halves")
        self._run_chunk(items, chunk[:half], results)
        self._run_chunk(items, chunk[half:], results)

    @staticmethod
    def _fill(results: list[Any], chunk: list[int], reply: Reply) -> None:
        decoded = batch_results(reply.body)
        if len(decoded) != len(chunk):
            raise server_error(
                "bad_response", f"sent {len(chunk)} items, got {len(decoded)} predictions"
            )
        for index, result in zip(chunk, decoded, strict=True):
            results[index] = result

    def _call(self, request: Request) -> Reply:
        """Send with the safe retries: scale-from-zero until scale_timeout_s, refused
        requests (queue_full / not_ready) up to max_retries, each wait <= max_retry_wait_s."""
        started = time.monotonic()
        scale_attempt = retries = 0
        while True:
            try:
                return self.transport.send(request, self.timeout_s)
            except ScalingFromZero as exc:
                waited = time.monotonic() - started
                if waited >= self.scale_timeout_s:
                    raise EndpointNotReadyError(
                        f"{exc}; still none after {waited:.0f} s. Scaling out from zero "
                        "takes several minutes: try again later or raise scale_timeout_s"
                    ) from None
                delay = min(self.backoff.delay(scale_attempt), self.scale_timeout_s - waited)
                scale_attempt += 1
                self._progress(
                    f"{exc}; retrying in {delay:.0f} s "
                    f"({waited:.0f} of {self.scale_timeout_s:.0f} s waited)"
                )
            except ServerError as exc:
                if not exc.retryable or retries >= self.max_retries:
                    raise
                delay = exc.retry_after_s
                if delay is None and exc.code == "not_ready":
                    raise  # no Retry-After: the model failed to load, waiting cannot help
                if delay is None:
                    delay = self.backoff.delay(retries)
                if delay > self.max_retry_wait_s:
                    raise
                retries += 1
                self._progress(
                    f"{self.transport.description} answered {exc.code} ({exc.message}); "
                    f"retry {retries} of {self.max_retries} in {delay:g} s"
                )
            time.sleep(delay)


def _same(reply: Reply) -> Reply:
    return reply


def _session(region: str | None) -> Any:
    import boto3

    return boto3.session.Session(region_name=region)


def _client(session: Any, service: str, read_timeout_s: float | None = None) -> Any:
    from botocore.exceptions import NoRegionError

    try:
        if read_timeout_s is not None:
            return runtime_client(session, read_timeout_s)
        return session.client(service)
    except NoRegionError:
        raise AwsError(
            "no AWS region: pass region= (or --region) or set AWS_DEFAULT_REGION", "NoRegion"
        ) from None
