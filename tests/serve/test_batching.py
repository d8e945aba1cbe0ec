"""The dynamic batcher with injected backends (the Backend protocol is the seam)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from gen3d.serve.backends.base import Sample
from gen3d.serve.errors import (
    CapacityExceeded,
    DeadlineExceeded,
    InternalError,
    QueueFull,
    Unprocessable,
)
from gen3d.serve.model.batching import Batcher
from gen3d.serve.outputs.assets import Asset


class RecordingBackend:
    """Deterministic per-seed result; records every batch it is given."""

    name = "recording"
    needs_mask = True
    options = frozenset()

    def __init__(
        self,
        max_batch_size: int = 8,
        oom_above: int | None = None,
        gate: threading.Event | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.oom_above = oom_above
        self.gate = gate
        self.delay_s = delay_s
        self.batches: list[list[int]] = []

    def predict(self, batch: list[Sample]) -> list[Asset | Exception]:
        if self.gate is not None:
            self.gate.wait(10)
        if self.oom_above is not None and len(batch) > self.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.batches.append([s.seed for s in batch])
        time.sleep(self.delay_s)
        out: list[Asset | Exception] = []
        for s in batch:
            if s.seed == 13:
                out.append(Unprocessable("unlucky seed"))
            elif s.seed == 1_000_066:  # outside the stress test's seeds
                out.append(ValueError("math domain error deep in a library"))
            else:
                value = np.random.default_rng(s.seed).random(4).tolist()
                out.append(Asset(metadata={"seed": s.seed, "value": value}))
        return out


def sample(seed: int) -> Sample:
    return Sample(image=np.zeros((2, 2, 3), np.uint8), mask=np.ones((2, 2), bool), seed=seed)


def run_all(batcher: Batcher, seeds: list[int], timeout_s: float = 5.0):
    jobs = batcher.submit([sample(s) for s in seeds], timeout_s)
    return [batcher.wait(j) for j in jobs]


def make(backend: RecordingBackend, **kw: float) -> Batcher:
    batcher = Batcher(
        backend,
        max_batch_size=int(kw.get("size", 8)),
        max_delay_s=kw.get("delay", 0.05),
        max_queue=int(kw.get("queue", 64)),
        max_waiting=int(kw.get("waiting", 0)),
    )
    batcher.start()
    return batcher


def test_results_return_in_request_order_and_batches_close_at_max_size() -> None:
    backend = RecordingBackend(max_batch_size=4)
    results = run_all(make(backend, size=8), list(range(10)))
    assert [r.metadata["seed"] for r in results] == list(range(10))
    assert [len(b) for b in backend.batches] == [4, 4, 2]  # backend's limit wins over 8
    assert [r.metadata["batch_size"] for r in results] == [4] * 8 + [2] * 2


def test_a_partial_batch_flushes_after_the_max_delay() -> None:
    backend = RecordingBackend()
    batcher = make(backend, size=8, delay=0.2)
    batcher.reserve(1)  # another request admitted, never submitted: worth waiting for
    started = time.monotonic()
    results = run_all(batcher, [1, 2, 3])
    waited = time.monotonic() - started
    assert backend.batches == [[1, 2, 3]]
    assert 0.15 <= waited < 2.0
    assert all(r.metadata["queue_ms"] >= 150 for r in results)


def test_concurrent_single_requests_are_batched_together() -> None:
    backend = RecordingBackend()
    batcher = make(backend, size=8, delay=0.3)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda s: run_all(batcher, [s])[0], range(8)))
    assert [r.metadata["seed"] for r in results] == list(range(8))
    assert max(len(b) for b in backend.batches) > 1


def test_one_failing_sample_fails_alone() -> None:
    results = run_all(make(RecordingBackend()), [12, 13, 14])
    assert isinstance(results[1], Unprocessable) and "unlucky" in results[1].message
    assert results[0].metadata["seed"] == 12 and results[2].metadata["seed"] == 14


def test_a_sample_failing_with_anything_but_unprocessable_is_a_500_without_its_text() -> None:
    results = run_all(make(RecordingBackend()), [12, 1_000_066])
    assert isinstance(results[1], InternalError) and results[1].status == 500
    assert "math domain" not in results[1].message
    assert results[0].metadata["seed"] == 12


def test_expired_requests_get_504_and_are_never_run() -> None:
    gate = threading.Event()
    backend = RecordingBackend(gate=gate)
    batcher = make(backend, size=1, delay=0)
    first = batcher.submit([sample(1)], 5.0)
    time.sleep(0.1)  # the model thread now holds sample 1 at the gate
    late = batcher.submit([sample(2)], 0.2)
    assert isinstance(batcher.wait(late[0]), DeadlineExceeded)
    gate.set()
    assert batcher.wait(first[0]).metadata["seed"] == 1
    time.sleep(0.2)
    assert backend.batches == [[1]]  # sample 2 never reached the backend


def test_a_full_queue_refuses_whole_requests_with_retry_after() -> None:
    gate = threading.Event()
    backend = RecordingBackend(gate=gate)
    batcher = make(backend, size=1, delay=0, queue=3)
    running = batcher.submit([sample(1)], 5.0)
    time.sleep(0.1)
    queued = batcher.submit([sample(2), sample(3)], 5.0)
    with pytest.raises(QueueFull) as info:
        batcher.submit([sample(4), sample(5)], 5.0)  # 2 + 2 > 3: none of it is accepted
    assert info.value.status == 503 and info.value.retry_after_s >= 1
    extra = batcher.submit([sample(6)], 5.0)  # one more still fits
    gate.set()
    seeds = [batcher.wait(j).metadata["seed"] for j in running + queued + extra]
    assert seeds == [1, 2, 3, 6]
    ran = [seed for b in backend.batches for seed in b]
    assert 4 not in ran and 5 not in ran


def test_out_of_memory_splits_the_batch_down_to_what_fits() -> None:
    backend = RecordingBackend(oom_above=2)
    batcher = make(backend, size=8, delay=0.05)
    results = run_all(batcher, list(range(8)))
    assert [r.metadata["seed"] for r in results] == list(range(8))
    assert all(len(b) <= 2 for b in backend.batches)
    assert sorted(seed for b in backend.batches for seed in b) == list(range(8))


def test_out_of_memory_for_one_sample_is_503_capacity_and_the_thread_survives() -> None:
    backend = RecordingBackend(oom_above=0)
    batcher = make(backend)
    results = run_all(batcher, [1, 2, 3])
    assert all(isinstance(r, CapacityExceeded) and r.status == 503 for r in results)
    assert batcher.alive
    backend.oom_above = None
    assert run_all(batcher, [4])[0].metadata["seed"] == 4


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_model_thread_is_visible() -> None:
    class Exploding(RecordingBackend):
        def predict(self, batch):
            raise SystemExit("model thread killed")

    batcher = make(Exploding())
    jobs = batcher.submit([sample(1)], 30.0)
    result = batcher.wait(jobs[0])  # answered at once, not after the 30 s deadline
    assert isinstance(result, InternalError) and "model thread stopped" in result.message
    batcher._thread.join(2)
    assert not batcher.alive


def test_concurrency_stress_gives_each_seed_its_own_result() -> None:
    backend = RecordingBackend(max_batch_size=6, delay_s=0.002)
    batcher = make(backend, size=6, delay=0.005, queue=512)
    rng = np.random.default_rng(0)
    requests = [rng.integers(0, 1000, size=rng.integers(1, 4)).tolist() for _ in range(120)]
    requests = [[s if s != 13 else 14 for s in r] for r in requests]
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda seeds: run_all(batcher, seeds, 20), requests))
    for seeds, results in zip(requests, answers, strict=True):
        for s, r in zip(seeds, results, strict=True):
            assert r.metadata["value"] == np.random.default_rng(s).random(4).tolist()
    assert max(len(b) for b in backend.batches) > 1


def test_the_waiting_room_admits_in_turn_when_slots_free_and_refuses_when_full() -> None:
    batcher = Batcher(RecordingBackend(), 8, 0.05, max_queue=1, max_waiting=2)  # not started
    assert batcher.reserve(1, wait_s=1.0) == 0.0  # a free slot: no wait
    admitted: list[float] = []

    def wait_for_slot() -> None:
        admitted.append(batcher.reserve(1, wait_s=5.0))

    waiters = [threading.Thread(target=wait_for_slot) for _ in range(2)]
    for thread in waiters:
        thread.start()
    deadline = time.monotonic() + 5
    while batcher.waiting < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(QueueFull) as refused:  # a full waiting room refuses at once
        batcher.reserve(1, wait_s=5.0)
    assert refused.value.retry_after_s >= 1
    assert not admitted
    batcher.release(1)  # a slot frees: exactly one waiter gets it
    deadline = time.monotonic() + 5
    while len(admitted) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.1)
    assert len(admitted) == 1 and batcher.waiting == 1
    batcher.release(1)
    for thread in waiters:
        thread.join(5)
    assert len(admitted) == 2 and all(w > 0 for w in admitted)


def test_a_waiter_is_refused_when_its_wait_ends_without_a_slot() -> None:
    batcher = Batcher(RecordingBackend(), 8, 0.05, max_queue=1, max_waiting=4)
    batcher.reserve(1)
    started = time.monotonic()
    with pytest.raises(QueueFull):
        batcher.reserve(1, wait_s=0.3)
    assert 0.25 <= time.monotonic() - started < 2.0
    assert batcher.waiting == 0
    with pytest.raises(QueueFull):  # no waiting room at all: refused at once
        Batcher(RecordingBackend(), 8, 0.05, max_queue=0).reserve(1, wait_s=1.0)


def test_a_lone_request_does_not_wait_for_the_batch_delay() -> None:
    backend = RecordingBackend()
    batcher = make(backend, size=8, delay=1.0)
    started = time.monotonic()
    (result,) = run_all(batcher, [7])
    assert time.monotonic() - started < 0.5  # not the 1 s delay: nobody else was admitted
    assert result.metadata["batch_size"] == 1


def test_the_batch_waits_for_requests_admitted_but_still_decoding() -> None:
    backend = RecordingBackend()
    batcher = make(backend, size=8, delay=0.3)
    batcher.reserve(1)  # a second request holds a slot while its body is read
    first = batcher.submit([sample(1)], 5.0)

    def second() -> None:
        time.sleep(0.1)
        batcher.wait(batcher.submit([sample(2)], 5.0, reserved=1)[0])

    thread = threading.Thread(target=second)
    thread.start()
    batcher.wait(first[0])
    thread.join(5)
    assert backend.batches == [[1, 2]]  # the first waited for it


def test_past_the_delay_a_batch_waits_one_more_delay_for_requests_still_decoding() -> None:
    """A request that holds a slot is already in this worker (its body being read or
    decoded): a batch with room waits for it a second delay rather than leave it a whole
    batch behind (proxy at 16 clients: 1 batch in 4 closed 1-2 short of such requests)."""
    backend = RecordingBackend()
    batcher = make(backend, size=8, delay=0.4)
    batcher.reserve(1)
    first = batcher.submit([sample(1)], 5.0)

    def second() -> None:
        time.sleep(0.6)  # past the first delay, within the second
        batcher.wait(batcher.submit([sample(2)], 5.0, reserved=1)[0])

    thread = threading.Thread(target=second)
    thread.start()
    batcher.wait(first[0])
    thread.join(5)
    assert backend.batches == [[1, 2]]


def test_a_request_that_holds_a_slot_but_never_comes_delays_a_batch_two_delays_at_most() -> None:
    backend = RecordingBackend()
    batcher = make(backend, size=8, delay=0.2)
    batcher.reserve(1)  # e.g. its client went away while the body was read
    started = time.monotonic()
    (result,) = run_all(batcher, [3])
    waited = time.monotonic() - started
    assert result.metadata["batch_size"] == 1
    assert 0.38 <= waited < 2.0, waited


def finishing_batcher(backend: RecordingBackend, on_model_thread: bool) -> Batcher:
    batcher = Batcher(backend, 1, 0.0, max_queue=8, finish_on_model_thread=on_model_thread)
    batcher.start()
    return batcher


@pytest.mark.parametrize("on_model_thread", [True, False])
def test_finish_runs_on_the_chosen_thread(on_model_thread: bool) -> None:
    batcher = finishing_batcher(RecordingBackend(), on_model_thread)

    def finish(s: Sample, asset: Asset) -> tuple[int, str]:
        return s.seed, threading.current_thread().name

    (job,) = batcher.submit([sample(5)], 5.0, finish=finish)
    seed, thread = batcher.wait(job)
    assert seed == 5
    assert (thread == "gen3d-model") == on_model_thread, thread


def test_on_the_model_thread_an_answer_is_finished_before_the_next_batch_starts() -> None:
    """A sync worker's order: the first answer leaves before the model takes the next
    request, so it does not wait for the GIL behind that request's computation."""
    events: list[str] = []

    class Logging(RecordingBackend):
        def predict(self, batch):
            events.append(f"predict {batch[0].seed}")
            return super().predict(batch)

    def finish(s: Sample, asset: Asset) -> int:
        time.sleep(0.05)  # encoding a large answer
        events.append(f"finished {s.seed}")
        return s.seed

    gate = threading.Event()
    backend = Logging(max_batch_size=1, gate=gate)
    batcher = finishing_batcher(backend, on_model_thread=True)
    jobs = batcher.submit([sample(1)], 5.0, finish=finish)
    jobs += batcher.submit([sample(2)], 5.0, finish=finish)
    gate.set()
    assert [batcher.wait(j) for j in jobs] == [1, 2]
    assert events == ["predict 1", "finished 1", "predict 2", "finished 2"]


@pytest.mark.parametrize("on_model_thread", [True, False])
def test_a_failing_finish_is_that_request_s_error_and_the_model_thread_lives(
    on_model_thread: bool, caplog
) -> None:
    batcher = finishing_batcher(RecordingBackend(), on_model_thread)

    def finish(s: Sample, asset: Asset) -> int:
        if s.seed == 1:
            raise Unprocessable("cannot write this format")
        if s.seed == 2:
            raise KeyError("a bug in encoding")
        return s.seed

    jobs = batcher.submit([sample(1), sample(2), sample(3)], 5.0, finish=finish)
    first, second, third = (batcher.wait(j) for j in jobs)
    assert isinstance(first, Unprocessable) and first.status == 422
    assert isinstance(second, InternalError) and "KeyError" not in second.message
    assert third == 3
    assert "finishing its answer failed" in caplog.text  # the bug's traceback is logged
    assert batcher.alive
    (later,) = batcher.submit([sample(4)], 5.0, finish=finish)
    assert batcher.wait(later) == 4


def test_finish_is_not_given_the_backend_s_errors() -> None:
    batcher = finishing_batcher(RecordingBackend(), on_model_thread=True)
    calls: list[int] = []
    (job,) = batcher.submit([sample(13)], 5.0, finish=lambda s, a: calls.append(s.seed))
    assert isinstance(batcher.wait(job), Unprocessable)  # seed 13: the backend's 422
    assert calls == []


def test_clients_answered_together_get_the_delay_to_come_back_together() -> None:
    """After a batch of 3, a request alone waits (up to the delay) for the others that
    were answered with it, instead of starting a batch of 1 that the others queue behind."""
    gate = threading.Event()
    backend = RecordingBackend(gate=gate)
    batcher = make(backend, size=8, delay=0.5)
    backend.batches.clear()
    first = batcher.submit([sample(1), sample(2), sample(3)], 5.0)
    gate.set()
    assert [batcher.wait(j).metadata["seed"] for j in first] == [1, 2, 3]

    def later(seed: int) -> None:
        time.sleep(0.1)
        batcher.wait(batcher.submit([sample(seed)], 5.0)[0])

    thread = threading.Thread(target=later, args=(5,))
    thread.start()
    batcher.wait(batcher.submit([sample(4)], 5.0)[0])
    thread.join(5)
    assert backend.batches[-1] == [4, 5]
    # and then a lone client is back to no waiting: its batch was of one
    started = time.monotonic()
    batcher.wait(batcher.submit([sample(6)], 5.0)[0])
    batcher.wait(batcher.submit([sample(7)], 5.0)[0])
    assert backend.batches[-1] == [7] and time.monotonic() - started < 1.2
