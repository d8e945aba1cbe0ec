"""Slow and idle clients against the real server (nginx front + gunicorn) on 127.0.0.1.

Each attack would take gunicorn alone down (measured: 72 slow-header connections, one
per request thread, stopped /ping; idle keep-alives stopped accepting). The worker here
has only 28 request threads, so a few dozen attackers would be enough if they reached it.
Bounded: at most 600 sockets, each test a few seconds.
"""

from __future__ import annotations

import resource
import select
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import requests
from gen3d_testing import post_png

from gen3d.serve.local_server import gunicorn_workers
from gen3d.serve.process.front import nginx_binary

pytestmark = pytest.mark.skipif(
    nginx_binary() is None, reason="needs nginx (make front, part of make test, installs it)"
)

HEADER_TIMEOUT_S = 2
SETTINGS = {
    "GEN3D_WARMUP": "0",
    "MODEL_SERVER_WORKERS": "1",
    "GEN3D_MAX_QUEUE": "8",
    "GEN3D_MAX_WAITING": "4",
    "GEN3D_MAX_BATCH_SIZE": "8",  # 8 + 8 + 4 invocation slots + 8 for /ping: 28 threads
    "GEN3D_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    "GEN3D_BODY_TIMEOUT_S": "3",
    "GEN3D_MAX_CONNECTIONS": "300",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, server_stopper):
    from gen3d.serve.local_server import start_server

    log = tmp_path_factory.mktemp("slow") / "server.log"
    srv = start_server(SETTINGS, log_path=log)
    srv.wait_ready(60)
    yield srv
    server_stopper.stop(srv)


@pytest.fixture(scope="module", autouse=True)
def enough_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"needs 1400 open files for the sockets; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))


def ping_times(server, count: int = 15) -> list[float]:
    """Seconds per /ping on fresh connections (a new client each time)."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = requests.get(server.url + "/ping", timeout=5)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        time.sleep(0.02)
    return times


def assert_ping_fast(server) -> None:
    times = ping_times(server)
    # the bound is 100 ms; the median must meet it, and no single one may
    # be more than a scheduling hiccup on a shared 2-core machine away from it
    assert statistics.median(times) < 0.1, times
    assert max(times) < 0.5, times


@contextmanager
def sockets(server, count: int, first_bytes: bytes) -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        opened = []
        for _ in range(count):
            s = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), 5))
            if first_bytes:
                s.sendall(first_bytes)
            opened.append(s)
        yield opened


@contextmanager
def trickling(opened: list[socket.socket], byte: bytes = b"X") -> Iterator[None]:
    """One byte per socket every half second, the way a slowloris client keeps alive."""
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(0.5):
            for s in opened:
                try:
                    s.send(byte)
                except OSError:
                    pass

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        yield
    finally:
        stop.set()
        dripper.join()


def assert_served_meanwhile(server) -> None:
    """/ping is fast and a real request gets its answer while the attack goes on."""
    assert_ping_fast(server)
    ok = post_png(server.url, 64)
    assert ok.status_code == 200, ok.text


@pytest.mark.slow  # waits out the header timeout
def test_slow_headers_never_reach_a_thread_and_are_cut_at_the_header_timeout(server) -> None:
    before = gunicorn_workers(server)
    start = b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Slow: "
    started = time.monotonic()
    with sockets(server, 200, start) as opened, trickling(opened):
        assert_served_meanwhile(server)
        # still dripping, yet cut: the timeout is for the whole header, not per read
        probe = opened[0]
        probe.settimeout(HEADER_TIMEOUT_S + 3)
        try:
            closed = probe.recv(1024) == b""  # nginx closes without an answer
        except ConnectionResetError:
            closed = True
        assert closed and time.monotonic() - started >= HEADER_TIMEOUT_S - 0.5
    assert gunicorn_workers(server) == before


def test_slow_bodies_wait_in_the_front_not_in_request_threads(server) -> None:
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    with sockets(server, 100, head) as opened, trickling(opened, b"\x89"):
        assert_served_meanwhile(server)


def answered_or_closed(opened: list[socket.socket], timeout_s: float = 60.0) -> int:
    """Wait until every socket has its whole answer to one /ping, or was closed by the
    front to make room; returns how many were answered."""
    pending = {s: b"" for s in opened}
    answered = 0
    deadline = time.monotonic() + timeout_s
    while pending:
        left = deadline - time.monotonic()
        assert left > 0, f"{len(pending)} of {len(opened)} sockets neither answered nor closed"
        readable, _, _ = select.select(list(pending), [], [], min(left, 1.0))
        for s in readable:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                chunk = b""
            got = pending[s] + chunk
            head, sep, body = got.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if chunk == b"" or (sep and length is not None and len(body) >= length):
                del pending[s]
                answered += bool(sep) and got.startswith(b"HTTP/1.1 200")
            else:
                pending[s] = got
    return answered


def test_idle_keep_alive_connections_never_stop_new_ones_being_accepted(server) -> None:
    # Twice the front's connection cap (300), each kept alive after one answered /ping,
    # opened in waves of 50 that are each answered (or closed for room) before the next:
    # the front ends full of idle keep-alives, and a new client must still get in.
    # Not all 600 at once: nginx makes room by closing the oldest "reusable" connections,
    # and a connection accepted but not yet read is one of them, so while a burst still
    # waits in the listen backlog, a new client's connection can be accepted and closed
    # for room before its request is read -- "Connection reset by peer" (of 600 sent at
    # once, 411 were reset so). That race made this test fail now and then when it sent
    # its own /ping as soon as 50 of a 600 burst were answered.
    request = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    with ExitStack() as stack:
        answered = 0
        for _ in range(12):
            wave = stack.enter_context(sockets(server, 50, request))
            answered += answered_or_closed(wave)
        assert answered >= 500, answered  # closed for room only after they were answered
        started = time.perf_counter()
        assert requests.get(server.url + "/ping", timeout=5).status_code == 200
        assert time.perf_counter() - started < 1.0
        assert_ping_fast(server)


def test_connection_close_clients_that_never_close_stall_nobody(server) -> None:
    request = b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with sockets(server, 30, request) as opened:
        assert answered_or_closed(opened) == 30  # answered; the clients keep their end open
        assert_ping_fast(server)
