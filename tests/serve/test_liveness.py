"""A wedged worker is noticed and replaced (real server on 127.0.0.1, bounded to ~20 s).

The backend's predict never returns. The request gets its 504 at its deadline, but the
model thread stays stuck; gunicorn's own heartbeat would call that worker alive forever.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from gen3d_testing import post_png

from gen3d.serve.local_server import gunicorn_workers
from gen3d.serve.model.liveness import WEDGED_GRACE_S, Liveness, watch

PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"


@pytest.mark.heavy
def test_a_stuck_model_thread_gets_the_worker_replaced(start_gen3d_server) -> None:
    server = start_gen3d_server(
        {
            "GEN3D_BACKEND": "gen3d_slow_backend:HangingCubeBackend",
            "PYTHONPATH": str(PLUGINS),
            "GEN3D_WARMUP": "0",
            "MODEL_SERVER_WORKERS": "1",
            "MODEL_SERVER_TIMEOUT": "2",
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
        },
        every_worker=False,
    )
    statuses = []
    for _ in range(16):  # each on a new connection, so each is a fresh accept
        statuses.append(post_png(server.url, 32).status_code)
    assert server.log(100_000).count('"ready: backend') == 1  # the other was still loading
    assert statuses == [200] * 16


def test_the_watchdog_leaves_once_wedged_and_not_before() -> None:
    record = Liveness(limit_s=0.2)
    left: list[float] = []
    record.batch_started()
    started = time.monotonic()
    thread = watch(record, leave=lambda: left.append(time.monotonic()), every_s=0.02)
    thread.join(timeout=5)
    assert left and left[0] - started >= 0.2 + WEDGED_GRACE_S  # wedged, then the grace
    healthy = Liveness(limit_s=0.2)
    stayed: list[float] = []
    watch(healthy, leave=lambda: stayed.append(1.0), every_s=0.02)
    time.sleep(0.5)  # a bounded look: nothing is wedged, so nothing may leave
    assert stayed == []
