"""Shared fixtures: a real moto server for AWS (per-test state, a model artifact in S3, an
unreachable endpoint for dry runs), a real gunicorn server for the API."""

from __future__ import annotations

import gc
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

# The suite runs several torch processes at once on few cores (pytest-xdist, and the
# servers the tests start inherit this): OpenMP threads that spin between parallel regions
# (libgomp's default) took the cores from each other, about 80 of 500 CPU-seconds. Set
# before anything imports torch; it changes how threads wait, not what they compute.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import quota_service
from aws_requests import MODEL_BUCKET, install_strict_validation

from gen3d.serve.local_server import (
    ManagedProcess,
    free_port,
    start_server,
    wait_every_worker,
)

# A test process holds up to a million long-lived objects (torch, botocore's service
# models, moto's backends) and each full garbage collection walked them all: 0.4-0.8 s
# each, 15-19 of `make test-fast`'s 90 CPU-seconds, and 2-3.5 s more at exit. Full
# collections are ten times rarer here, and what collection imported is frozen: no later
# collection walks it (gc.freeze in the hooks below; freezing after every test as well
# saved no time and kept a test process's cyclic garbage: 1.9 GB instead of 1.1).
gc.set_threshold(700, 10, 100)

# Every botocore client a test builds (the code under test's and the test's own) checks
# each request against the service model's enum, max, pattern and length rules before
# sending it; ParamValidator alone lets values through that AWS rejects.
install_strict_validation()

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 for the whole session; boto3 reaches it through
    AWS_ENDPOINT_URL, exactly as a user would point the scripts at an emulator."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # moto has no Service Quotas: a stand-in on loopback answers for it (quota_service)
    quotas_url, quotas_server = quota_service.start()
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ENDPOINT_URL_SERVICE_QUOTAS=quotas_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        yield url
    finally:
        server.stop()
        quotas_server.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SERVICE_QUOTAS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
)


@pytest.fixture
def aws(moto_endpoint: str) -> Iterator[str]:
    """Per-test clean emulator state (moto's reset endpoint), same server."""
    import requests

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    quota_service.STATE.reset()
    yield moto_endpoint


@pytest.fixture
def model_artifact(aws: str) -> int:
    """A model.tar.gz in S3 where the deploy tests point (its size sizes the start-up
    timeouts); returns its size in bytes."""
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=MODEL_BUCKET)
    body = b"\0" * 2_000_000
    s3.put_object(Bucket=MODEL_BUCKET, Key="silhouette/model.tar.gz", Body=body)
    return len(body)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block exits


@pytest.fixture
def unreachable_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_ENDPOINT_URL at a closed port, one attempt: any AWS call fails the command
    (the control for the --dry-run tests, which must make none)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    # the quota preflight's own endpoint setting too (tests/quota_service.py points it)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICE_QUOTAS", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


class ServerStopper:
    """Stops servers in the background: a graceful stop takes seconds (the workers finish
    their loop turn), and the next test need not wait for it. Joined at the session's end,
    so no server outlives the run."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def stop(self, server: ManagedProcess) -> None:
        thread = threading.Thread(target=server.stop, kwargs={"timeout_s": 10}, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(30)


@pytest.fixture(scope="session")
def server_stopper() -> Iterator[ServerStopper]:
    stopper = ServerStopper()
    yield stopper
    stopper.join()


@pytest.fixture
def start_gen3d_server(
    tmp_path: Path, server_stopper: ServerStopper
) -> Iterator[Callable[..., ManagedProcess]]:
    """Factory: start a real server (nginx + gunicorn, as the image runs it) with extra env,
    for a test that needs its own: special settings, its log, signals, a stop. All are
    stopped after the test."""
    started: list[ManagedProcess] = []

    def start(
        env: dict[str, str] | None = None,
        wait: bool = True,
        timeout_s: float = 60.0,
        every_worker: bool = True,
    ) -> ManagedProcess:
        """`wait`: until /ping answers 200; `every_worker`: and every worker is ready.
        One model worker unless the test sets MODEL_SERVER_WORKERS: a test that starts its
        own server is about a setting, a signal or a log, and each extra worker costs most
        of a CPU-second to start and stop (`default_server` runs the machine's default)."""
        log_path = tmp_path / f"server-{len(started)}.log"
        env = {"MODEL_SERVER_WORKERS": "1", **(env or {})}
        server = start_server(env=env, log_path=log_path)
        started.append(server)
        if wait:
            server.wait_ready(timeout_s)
            if every_worker:
                wait_every_worker(server, timeout_s)
        return server

    yield start
    for server in started:
        server_stopper.stop(server)


@pytest.fixture(scope="session")
def default_server(
    tmp_path_factory: pytest.TempPathFactory, server_stopper: ServerStopper
) -> Iterator[ManagedProcess]:
    """One real server with the default settings for the whole session, for tests that
    only send requests and read the answers (starting one is the dominant cost of a
    server test). A test that reads the log, signals the server or changes its state
    starts its own with `start_gen3d_server`."""
    server = start_server(log_path=tmp_path_factory.mktemp("default-server") / "server.log")
    try:
        server.wait_ready(120)
        wait_every_worker(server, 120)
    except BaseException:
        server.stop(timeout_s=10)
        raise
    yield server
    server_stopper.stop(server)


# Fixtures that start a real server process of the test's own: seconds each (start-up,
# graceful stop), so a test that asks for one is `slow` (left out of `make test-fast`).
_OWN_SERVER_FIXTURES = {"start_gen3d_server"}


def pytest_collection_finish() -> None:
    gc.freeze()


def pytest_unconfigure() -> None:
    gc.freeze()  # interpreter shutdown collects every tracked object: these are left alone


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _OWN_SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    # Tests marked heavy (ten seconds or more each) run first: with one test process per
    # core, one of them starting last kept a single core busy after the others were done.
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)  # stable
