"""The front's nginx.conf: what it says for the settings, and that nginx accepts it."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from gen3d.serve.model.capacity import plan
from gen3d.serve.process.front import FrontLayout, connection_limit, nginx_binary, render_config
from gen3d.serve.settings import Settings


def test_the_config_carries_the_settings(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "GEN3D_HEADER_TIMEOUT_S": "7",
            "GEN3D_BODY_TIMEOUT_S": "9",
            "GEN3D_MAX_BODY_MB": "2",
            "GEN3D_MAX_QUEUE": "4",
            "GEN3D_MAX_WAITING": "6",
            "GEN3D_MAX_BATCH_SIZE": "2",
            "SAGEMAKER_BIND_TO_PORT": "9090",
        }
    )
    silhouette = plan(settings, cores=3, gpus=[])
    text = render_config(settings, FrontLayout(tmp_path), silhouette, nofile=100_000)
    assert "client_header_timeout 7s;" in text and "client_body_timeout 9s;" in text
    assert f"client_max_body_size {2 * 1024 * 1024};" in text
    assert "listen 0.0.0.0:9090" in text
    # a worker per core, each holding 1 running (silhouette batches one sample) + 4 queued
    # + 6 waiting
    for i in range(3):
        assert f"server unix:{tmp_path}/worker-{i}.sock max_conns=11 max_fails=0;" in text
    assert "least_conn;" in text
    proxy = dataclasses.replace(settings, backend="proxy")  # batches up to 2 here
    one = plan(proxy, cores=3, gpus=[])
    proxy_text = render_config(proxy, FrontLayout(tmp_path), one, nofile=100_000)
    assert f"server unix:{tmp_path}/worker-0.sock max_conns=12 max_fails=0;" in proxy_text
    assert "worker-1.sock" not in proxy_text  # one batching worker on every core
    assert "keepalive_timeout 75s;" in text
    # nginx's clock on every proxied request, replacing any a client sent (the backlog wait)
    assert "proxy_set_header X-Gen3D-Forwarded-At $msec;" in text


def test_connections_stay_within_the_open_file_limit() -> None:
    settings = Settings(max_connections=4096)
    assert connection_limit(settings, nofile=100_000) == 4096
    assert connection_limit(settings, nofile=1024) == (1024 - 64) // 2


@pytest.mark.skipif(nginx_binary() is None, reason="needs nginx (make front)")
def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    settings = Settings(port=18080, bind_host="127.0.0.1")
    layout = FrontLayout(tmp_path)
    layout.config.write_text(render_config(settings, layout, plan(settings, cores=2, gpus=[])))
    checked = subprocess.run(
        [nginx_binary(), "-t", "-p", f"{tmp_path}/", "-c", str(layout.config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr
