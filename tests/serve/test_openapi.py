"""The OpenAPI document against the running server: a bounded schemathesis run.

Generated requests are mostly malformed; the server must answer every one with a status
and body the document allows, and never a 5xx.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gen3d.serve.local_server import start_server

SPEC = Path(__file__).resolve().parents[2] / "serve" / "openapi.yaml"
schema = schemathesis.openapi.from_path(str(SPEC))


@pytest.fixture(scope="module")
def base_url():
    srv = start_server(env={"GEN3D_MAX_BODY_MB": "1"})
    srv.wait_ready(60)
    yield srv.url
    log = srv.log()
    srv.stop(10)
    assert "Traceback" not in log or "request" in log


def not_a_server_error(ctx, response, case) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms(case, base_url) -> None:
    case.call_and_validate(
        base_url=base_url,
        timeout=30,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
