"""Dynamic batcher: request threads enqueue samples, one model thread runs batches.

- A batch closes at `max_batch_size` samples or `max_delay_s` after its first sample, or
  at once when no other request is queued or admitted (being read or decoded) and the
  previous batch was no larger: a lone request never waits for company that is not
  coming, while clients that were just answered together are given the delay to come
  back together (at 4 proxy clients batches stayed at 1-2 without it). Past the delay, a
  batch with room waits one more delay, at most, for requests that already hold a slot
  (their bodies being read or decoded): left behind, they would wait a whole batch.
- Every sample has a deadline; one that expires while queued is failed with 504 and
  never run.
- The queue is bounded: a request whose samples do not all fit is refused as a whole
  (503 + Retry-After), so nothing is accepted that cannot be served.
- Before that refusal a request may wait for slots (`reserve(wait_s=...)`), its body still
  unread, in a bounded waiting room: a waiting request costs no CPU and no decoded
  memory, so clients that retry at once no longer turn overload into work.
- Out of accelerator memory: the batch is split in halves and retried down to one
  sample, then that sample fails with 503 `capacity`. The model thread survives.
- If the model thread ever dies, `alive` turns False and /ping reports 503.
- A backend's `Unprocessable` (the input's fault) reaches the client as 422; any other
  exception is logged with the request id and its traceback and answered 500.
- A job's `finish` (the request's finishing and encoding) runs on the model thread right
  after its batch when `finish_on_model_thread`, else on the request's thread. On CPU the
  model holds the GIL and the cores: an answer encoded on a request thread while the next
  batch computes took 4x as long (35 ms against 8 ms, silhouette at 4 clients) and came
  back late, so the worker ran out of queued work; encoded right after its batch, as a
  sync worker does, it leaves at once. On an accelerator the model thread mostly waits
  on the device with the GIL released, and encoding beside it keeps the device busy.
"""

from __future__ import annotations

import logging
import math
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from gen3d.serve.backends.base import Backend, Sample
from gen3d.serve.errors import (
    CapacityExceeded,
    DeadlineExceeded,
    Gen3DError,
    InternalError,
    QueueFull,
    is_out_of_memory,
)
from gen3d.serve.model.liveness import Liveness
from gen3d.serve.outputs.assets import Asset

log = logging.getLogger("gen3d.batching")


# What a request does with its sample's asset once the model made it (finishing and
# encoding the answer); its return value is what `Batcher.wait` gives back.
Finisher = Callable[[Asset], Any]


@dataclass
class Job:
    sample: Sample
    deadline: float  # time.monotonic() value
    request_id: str = "-"
    enqueued: float = field(default_factory=time.monotonic)
    future: Future[Any] = field(default_factory=Future)
    finish: Finisher | None = None


def _release_accelerator_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def as_client_error(exc: BaseException) -> Gen3DError:
    """Map what a backend returned or raised for one sample to the error the client sees:
    the project's typed errors as they are, anything else (a bug, a library's internal
    ValueError) as a 500 whose details stay in the server log."""
    if isinstance(exc, Gen3DError):
        return exc
    return InternalError("the model failed on this input; see the server log")


class Batcher:
    def __init__(
        self,
        backend: Backend,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        max_waiting: int = 0,
        liveness: Liveness | None = None,
        finish_on_model_thread: bool = False,
    ) -> None:
        self.backend = backend
        self.max_batch_size = max(1, min(max_batch_size, backend.max_batch_size))
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.max_waiting = max_waiting
        self._queue: queue.Queue[Job] = queue.Queue()
        self._pending = 0  # queued, not yet taken by the model thread
        self._waiting = 0  # requests in reserve() waiting for slots
        self._lock = threading.Lock()
        self._slots_freed = threading.Condition(self._lock)
        self._liveness = liveness
        self.finish_on_model_thread = finish_on_model_thread
        self._batch_seconds = 0.0  # moving average, for Retry-After
        self._last_batch_size = 1  # how many came together last time: worth waiting for
        self._thread = threading.Thread(target=self._loop, name="gen3d-model", daemon=True)

    # ---------------------------------------------------------------- request side

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def reserve(self, count: int, wait_s: float = 0.0) -> float:
        """Hold `count` queue slots for a request whose body is not read yet, or refuse it
        (QueueFull) before any work is spent on it. When the queue is full the request
        waits up to `wait_s` for slots, in arrival order, if the waiting room has a place;
        returns the seconds waited. `submit(reserved=count)` uses the slots; `release`
        gives them back if the request never gets there."""
        with self._lock:
            if self._waiting == 0 and self._fits(count):  # nobody ahead: no barging
                self._pending += count
                return 0.0
            if wait_s <= 0 or self._waiting >= self.max_waiting or count > self.max_queue:
                raise self._queue_full()
            started = time.monotonic()
            self._waiting += 1
            try:
                admitted = self._slots_freed.wait_for(lambda: self._fits(count), wait_s)
            finally:
                self._waiting -= 1
            if not admitted:
                raise self._queue_full()
            self._pending += count
            return time.monotonic() - started

    def release(self, count: int) -> None:
        with self._lock:
            self._free(count)

    @property
    def waiting(self) -> int:
        return self._waiting

    def _fits(self, count: int) -> bool:
        return self._pending + count <= self.max_queue

    def _free(self, count: int) -> None:
        """Give back `count` slots (lock held) and wake as many waiters."""
        self._pending -= count
        if count > 0 and self._waiting:
            self._slots_freed.notify(count)

    def submit(
        self,
        samples: list[Sample],
        timeout_s: float,
        request_id: str = "-",
        reserved: int = 0,
        finish: Callable[[Sample, Asset], Any] | None = None,
    ) -> list[Job]:
        """Queue all samples of one request, or none of them (QueueFull). `reserved` slots
        were held by `reserve` for this request and are used first (and given back if the
        request has fewer samples); on QueueFull they stay reserved. `finish(sample, asset)`
        turns each asset into what `wait` returns (see the module's note on threads)."""
        now = time.monotonic()
        jobs = [
            Job(s, now + timeout_s, request_id, now, finish=_bind(finish, s) if finish else None)
            for s in samples
        ]
        with self._lock:
            extra = len(jobs) - reserved
            if extra > 0:
                self._admit(extra)
            else:
                self._free(-extra)  # unused reserved slots
            for job in jobs:
                self._queue.put(job)
        return jobs

    def _admit(self, count: int) -> None:
        if not self._fits(count):
            raise self._queue_full()
        self._pending += count

    def _queue_full(self) -> QueueFull:
        return QueueFull(
            f"the queue is full ({self._pending} of {self.max_queue} queued, "
            f"{self._waiting} waiting); retry later",
            retry_after_s=self.retry_after_s(),
        )

    def retry_after_s(self) -> int:
        batches_ahead = math.ceil((self._pending + self._waiting) / self.max_batch_size) or 1
        return max(1, math.ceil(batches_ahead * max(self._batch_seconds, 0.1)))

    def wait(self, job: Job) -> Any:
        """Block until the job's result (its asset, or what its `finish` made of it) or its
        deadline; expired jobs are not run. Errors are returned as Gen3DError."""
        result = self._result(job)
        if job.finish is not None and not self.finish_on_model_thread:
            return _finished(job, result)
        return result

    def _result(self, job: Job) -> Any:
        remaining = job.deadline - time.monotonic()
        try:
            return job.future.result(timeout=max(remaining, 0.0))
        except TimeoutError:
            if job.future.cancel():
                return DeadlineExceeded("the request's deadline passed while it waited")
        except BaseException as exc:
            return as_client_error(exc)
        # Already running: its result is close, so wait for it rather than drop the work,
        # as long as the model thread lives.
        while True:
            try:
                return job.future.result(timeout=0.5)
            except TimeoutError:
                if not self.alive:
                    return InternalError("the model thread stopped; this instance is unhealthy")
            except BaseException as exc:
                return as_client_error(exc)

    # ---------------------------------------------------------------- model thread

    def _take(self) -> list[Job]:
        first = self._queue.get()
        batch = [first]
        close_at = time.monotonic() + self.max_delay_s
        # requests already in this worker, their bodies being read or decoded, come within
        # ms: past the delay, a batch with room waits one more delay for them
        grace_at = close_at + self.max_delay_s
        while len(batch) < self.max_batch_size:
            if (
                self._queue.empty()
                and not self._admitted(len(batch))
                and len(batch) >= self._last_batch_size
            ):
                # nothing queued, nothing admitted being read or decoded, and no more came
                # together last time: waiting would only add the delay to this batch
                break
            now = time.monotonic()
            until = grace_at if now >= close_at and self._admitted(len(batch)) else close_at
            try:
                job = (
                    self._queue.get(timeout=until - now)
                    if until > now
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                if time.monotonic() < grace_at and self._admitted(len(batch)):
                    continue
                break
            batch.append(job)
        self._last_batch_size = len(batch)
        with self._lock:
            self._free(len(batch))
        return batch

    def _admitted(self, taken: int) -> bool:
        """Whether requests hold slots (reserved) that are not queued yet."""
        return self._pending - self._queue.qsize() > taken

    def _loop(self) -> None:
        batch: list[Job] = []
        try:
            while True:  # a daemon thread: it ends with the worker process
                batch = self._take()
                self._step(batch)
        except BaseException:
            log.critical("the model thread died; /ping now answers 503", exc_info=True)
            dead = InternalError("the model thread stopped; this instance is unhealthy")
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(dead)
            raise

    def _step(self, batch: list[Job]) -> None:
        now = time.monotonic()
        runnable = []
        for job in batch:
            if not job.future.set_running_or_notify_cancel():
                continue  # its request gave up waiting (deadline): never run it
            if job.deadline <= now:
                job.future.set_exception(
                    DeadlineExceeded("the request's deadline passed while it was queued")
                )
            else:
                runnable.append(job)
        if runnable:
            started = time.perf_counter()
            if self._liveness:
                self._liveness.batch_started()
            try:
                self._run(runnable)
            finally:
                if self._liveness:
                    self._liveness.batch_finished()
            elapsed = time.perf_counter() - started
            previous = self._batch_seconds
            self._batch_seconds = 0.8 * previous + 0.2 * elapsed if previous else elapsed

    def _run(self, jobs: list[Job]) -> None:
        """Predict `jobs`; split in halves on out-of-memory, down to one sample."""
        started, started_clock = time.perf_counter(), time.monotonic()
        try:
            results = self.backend.predict([job.sample for job in jobs])
            if len(results) != len(jobs):
                raise RuntimeError(f"backend returned {len(results)} results for {len(jobs)}")
        except Exception as exc:
            if is_out_of_memory(exc):
                _release_accelerator_memory()
                if len(jobs) == 1:
                    log.warning("out of memory on a batch of one")
                    jobs[0].future.set_exception(
                        CapacityExceeded("out of accelerator memory for this input")
                    )
                    return
                half = len(jobs) // 2
                log.warning("out of memory on a batch of %d; splitting", len(jobs))
                self._run(jobs[:half])
                self._run(jobs[half:])
                return
            ids = ",".join(sorted({j.request_id for j in jobs}))
            _log_failure(ids, f"requests {ids}: the backend failed on a batch of {len(jobs)}", exc)
            for job in jobs:
                job.future.set_exception(exc)
            return
        inference_ms = round(1000 * (time.perf_counter() - started), 2)
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Gen3DError):
                    _log_failure(
                        job.request_id,
                        f"request {job.request_id}: the backend failed on one sample",
                        result,
                    )
                job.future.set_exception(result)
                continue
            result.metadata.update(
                batch_size=len(jobs),
                queue_ms=round(1000 * (started_clock - job.enqueued), 2),
                inference_ms=inference_ms,
            )
            if self.finish_on_model_thread:
                result = _finished(job, result)
            job.future.set_result(result)


def _bind(finish: Callable[[Sample, Asset], Any], sample: Sample) -> Finisher:
    return lambda asset: finish(sample, asset)


def _finished(job: Job, result: Any) -> Any:
    """`job.finish(result)` for an asset; an error, or what finishing raised, as the
    client's error. Never raises: on the model thread it must survive any request."""
    if job.finish is None or isinstance(result, Gen3DError):
        return result
    try:
        return job.finish(result)
    except Exception as exc:
        if not isinstance(exc, Gen3DError):
            _log_failure(
                job.request_id, f"request {job.request_id}: finishing its answer failed", exc
            )
        return as_client_error(exc)


def _log_failure(request_id: str, message: str, exc: BaseException) -> None:
    """A failure the client sees as a 500: its traceback and request id stay in the log
    (the id a field of its own in JSON logs)."""
    log.error("%s", message, exc_info=exc, extra={"request_id": request_id})
