"""Shared fixtures: a real moto server for AWS, a real gunicorn server for the API."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import quota_service
from aws_requests import install_strict_validation

from gen3d.serve.launcher import ManagedProcess, free_port, start_server

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
def start_gen3d_server(tmp_path: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """Factory: start a real gunicorn server with extra env; all are stopped at teardown."""
    started: list[ManagedProcess] = []

    def start(
        env: dict[str, str] | None = None, wait: bool = True, timeout_s: float = 60.0
    ) -> ManagedProcess:
        log_path = tmp_path / f"server-{len(started)}.log"
        server = start_server(env=env, log_path=log_path)
        started.append(server)
        if wait:
            server.wait_ready(timeout_s)
        return server

    yield start
    for server in started:
        server.stop(timeout_s=10)
