"""A wedged worker is noticed and replaced (real server on 127.0.0.1, bounded to ~20 s).

The backend's predict never returns. The request gets its 504 at its deadline, but the
model thread stays stuck; gunicorn's own heartbeat would call that worker alive forever.
"""

from __future__ import annotations

import json
import os
import select
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from gen3d_testing import post_png

from gen3d.serve import hardware
from gen3d.serve import liveness as liveness_module
from gen3d.serve.launcher import gunicorn_workers
from gen3d.serve.liveness import Liveness
from gen3d.serve.worker import ModelLoad, WorkerBoard, takes_invocation

PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"


def test_a_stuck_model_thread_gets_the_worker_replaced(start_gen3d_server) -> None:
    server = start_gen3d_server(
        {
            "GEN3D_BACKEND": "gen3d_slow_backend:HangingCubeBackend",
            "PYTHONPATH": str(PLUGINS),
            "GEN3D_WARMUP": "0",
            "MODEL_SERVER_WORKERS": "1",
            "MODEL_SERVER_TIMEOUT": "3",
            "GEN3D_REQUEST_TIMEOUT_S": "1",
        }
    )
    (stuck,) = gunicorn_workers(server)
    with ThreadPoolExecutor(1) as pool:
        hung = pool.submit(post_png, server.url, 32)
        saw_unhealthy = False
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, server.log()
            ping = requests.get(server.url + "/ping", timeout=5)
            saw_unhealthy |= ping.status_code == 503
            workers = gunicorn_workers(server)
            if ping.status_code == 200 and workers and stuck not in workers:
                break
            time.sleep(0.2)
        # 504 at the front's read timeout, or 503 when the worker is killed first
        assert hung.result().status_code in (503, 504), hung.result().text
    assert saw_unhealthy  # /ping said so while the stuck worker waited for its replacement
    assert "is wedged" in server.log(100_000)


def test_wedged_means_older_than_the_limit() -> None:
    record = Liveness(limit_s=10)
    assert record.wedged() is None
    record.request_started()
    now = time.monotonic()
    assert record.wedged(now + 5) is None
    assert "request" in (record.wedged(now + 11) or "")
    record.request_finished()
    assert record.wedged(now + 11) is None
    record.batch_started()
    assert "batch" in (record.wedged(time.monotonic() + 11) or "")
    record.batch_finished()
    assert record.wedged(time.monotonic() + 11) is None


def test_requests_go_to_the_ready_worker_while_another_still_loads(
    start_gen3d_server, tmp_path
) -> None:
    server = start_gen3d_server(
        {
            "GEN3D_BACKEND": "gen3d_slow_backend:OneSlowLoaderCubeBackend",
            "PYTHONPATH": str(PLUGINS),
            "GEN3D_TEST_LOCK": str(tmp_path / "slow-loader"),
            "GEN3D_WARMUP": "0",
            "MODEL_SERVER_WORKERS": "2",
        }
    )
    time.sleep(1.5)  # the loading worker sees the ready one within a poll (1 s)
    statuses = []
    for _ in range(16):  # each on a new connection, so each is a fresh accept
        statuses.append(post_png(server.url, 32).status_code)
    assert server.log(100_000).count('"ready: backend') == 1  # the other was still loading
    assert statuses == [200] * 16


def test_a_request_past_the_model_stops_counting_as_load() -> None:
    """Counted until its connection closed, a computed answer sent 1 request in 4 to the
    busier worker (silhouette, 4 clients, 2 workers; issue 12)."""
    load = ModelLoad()
    first, second = object(), object()
    assert load.of(2) == 2
    assert load.past_model(first)
    assert not load.past_model(first)  # once per request
    assert load.of(2) == 1
    load.ended(first)  # closed: gunicorn's count drops by itself
    assert load.of(1) == 1
    assert load.past_model(second)
    load.ended(second)
    assert load.of(0) == 0


def test_the_worker_hears_when_a_request_is_past_the_model() -> None:
    heard: list[str] = []
    liveness_module.on_past_model(lambda: heard.append("past"))
    try:
        Liveness(limit_s=10).request_past_model()
    finally:
        liveness_module.on_past_model(lambda: None)
    assert heard == ["past"]


def test_workers_sharing_the_cores_fill_one_batch_before_the_next_takes_any(
    start_gen3d_server,
) -> None:
    """4 requests at once on 2 CPU workers: one worker takes and batches them all;
    least-loaded-first would give each worker 2 and run every request alone."""
    server = start_gen3d_server(
        {
            "GEN3D_BACKEND": "gen3d_slow_backend:BatchingSlowCubeBackend",
            "PYTHONPATH": str(PLUGINS),
            "GEN3D_WARMUP": "0",
            "MODEL_SERVER_WORKERS": "2",
            "GEN3D_MAX_BATCH_SIZE": "8",
        }
    )
    deadline = time.monotonic() + 20
    while server.log(100_000).count('"ready: backend') < 2:  # both take part
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    # A worker publishes its readiness on its loop's next turn and the other sees it on
    # its own next turn: each at most gunicorn's 1 s poll, so 2 s, with a margin.
    time.sleep(2.5)

    def send(_: int) -> int:
        response = post_png(server.url, 32)
        assert response.status_code == 200, response.text
        return json.loads(response.headers["X-Gen3D-Metadata"])["batch_size"]

    with ThreadPoolExecutor(4) as pool:
        sizes = list(pool.map(send, range(4)))
    served_by = [
        json.loads(line)["process"]
        for line in server.log(1_000_000).splitlines()
        if '"route": "/invocations"' in line
    ]
    # one worker took all 4 and batched them (4, or 1 + 3; 2 + 2 on a loaded machine,
    # where the 4 arrive further apart); least loaded first gave each worker 2
    assert len(served_by) == 4 and len(set(served_by)) == 1, served_by
    assert max(sizes) >= 2, sizes


def test_a_peer_with_requests_waiting_counts_as_busy_for_torch_threads() -> None:
    """A worker's next batch takes every core only while no other worker computes or has
    requests waiting: a peer about to start its batch would otherwise find its cores
    taken (proxy at 16 clients: 3 threads on 2 cores, 24 req/s with spinning threads)."""
    board = WorkerBoard(3)
    for slot in range(3):
        board.mark(slot, ready=True, load=0)
    assert board.others_busy(0) == 0
    board.mark(1, ready=True, load=2)  # requests queued, its batch not started yet
    assert board.others_busy(0) == 1 and board.others_busy(1) == 0
    board.mark_computing(2, True)
    assert board.others_busy(0) == 2 and board.others_busy(2) == 1
    board.mark(1, ready=False)  # a worker that is not ready has nothing to run
    assert board.others_busy(0) == 1
    plan = hardware.WorkerPlan(3, 1, (), "test")
    try:
        hardware.install_busy_peers(lambda: board.others_busy(0))
        assert hardware.cpu_threads_now(plan, cores=3) == 1
        board.mark_computing(2, False)
        assert hardware.cpu_threads_now(plan, cores=3) == 3
    finally:
        hardware.install_busy_peers(lambda: 0)


def test_a_worker_that_fills_up_wakes_the_others() -> None:
    board = WorkerBoard(3)
    board.wake_others(0)
    readable, _, _ = select.select([board.wake_fd(i) for i in range(3)], [], [], 0)
    assert sorted(readable) == sorted([board.wake_fd(1), board.wake_fd(2)])
    for _ in range(100_000):  # a full pipe never blocks the worker that writes
        board.wake_others(0)
    for slot in range(3):  # drained, as each worker's loop does
        while True:
            try:
                os.read(board.wake_fd(slot), 1 << 20)
            except BlockingIOError:
                break
    board.wake_all()  # a worker whose model became ready wakes itself too
    readable, _, _ = select.select([board.wake_fd(i) for i in range(3)], [], [], 0)
    assert len(readable) == 3
    board.mark(0, ready=True, load=8)
    board.mark(1, ready=True, load=3)
    assert board.lower_with_room(2, capacity=8)  # slot 1 has room: slot 2 waits
    assert not board.lower_with_room(1, capacity=8)  # slot 0 is full: slot 1 takes
    board.mark(1, ready=False)
    assert not board.lower_with_room(2, capacity=8)  # a worker not ready is no one's turn


def test_a_worker_takes_no_more_than_its_lookahead_and_leaves_the_rest_in_the_backlog() -> None:
    # the least loaded takes the next request...
    assert takes_invocation(load=1, others=[2])
    assert not takes_invocation(load=3, others=[2])
    # ...but never past its lookahead, however loaded the others are: the rest wait in
    # the shared backlog for whichever worker frees first
    assert not takes_invocation(load=2, others=[5], lookahead=2)
    assert not takes_invocation(load=2, others=[], lookahead=2)  # alone, too
    assert takes_invocation(load=1, others=[], lookahead=2)
    assert takes_invocation(load=12, others=[14])  # no lookahead (no front): greedy
    # workers sharing the cores fill the lowest one's batch first, within the lookahead
    assert not takes_invocation(load=0, others=[2], pack=4, lookahead=8, lower_has_room=True)
    assert takes_invocation(load=3, others=[4], pack=4, lookahead=8)
    assert takes_invocation(load=5, others=[6], pack=4, lookahead=8)
    assert not takes_invocation(load=8, others=[9], pack=4, lookahead=8)
