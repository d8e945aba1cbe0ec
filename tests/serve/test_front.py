"""The front's nginx.conf: what it says for the settings, and that nginx accepts it."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from gen3d.serve.front import FrontLayout, connection_limit, nginx_binary, render_config
from gen3d.serve.hardware import WorkerPlan, plan_workers, visible_gpus
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
    text = render_config(settings, FrontLayout(tmp_path), workers=3, nofile=100_000)
    assert "client_header_timeout 7s;" in text and "client_body_timeout 9s;" in text
    assert f"client_max_body_size {2 * 1024 * 1024};" in text
    assert "listen 0.0.0.0:9090" in text
    # three workers, each 1 running (silhouette batches one sample) + 4 queued + 6 waiting
    assert f"server unix:{tmp_path}/gunicorn.sock max_conns=33;" in text
    proxy = dataclasses.replace(settings, backend="proxy")  # batches up to 2 here
    proxy_text = render_config(proxy, FrontLayout(tmp_path), workers=3, nofile=100_000)
    assert f"server unix:{tmp_path}/gunicorn.sock max_conns=36;" in proxy_text
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
    layout.config.write_text(render_config(settings, layout, workers=2))
    checked = subprocess.run(
        [nginx_binary(), "-t", "-p", f"{tmp_path}/", "-c", str(layout.config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr


def test_workers_follow_the_hardware() -> None:
    cpu = Settings(backend="silhouette")
    assert plan_workers(cpu, cores=8, gpus=[]) == WorkerPlan(8, 1, (), "8 core(s): one worker each")
    assert plan_workers(Settings(backend="proxy"), cores=8, gpus=[]).workers == 8
    # a GPU backend on a 4-GPU machine: one model per GPU, each pinned to its own
    gpu = plan_workers(Settings(backend="proxy"), cores=48, gpus=["0", "1", "2", "3"])
    assert (gpu.workers, gpu.gpus) == (4, ("0", "1", "2", "3"))
    # a CPU backend ignores the GPUs; a set count wins, and shares the cores
    assert plan_workers(cpu, cores=8, gpus=["0"]).workers == 8
    assert plan_workers(Settings(workers=2), cores=8, gpus=[]) == WorkerPlan(2, 4, (), "set")
    assert plan_workers(Settings(torch_threads=3), cores=4, gpus=[]).torch_threads == 3


def test_visible_gpus_come_from_the_environment_or_the_device_files(tmp_path: Path) -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,-1,1"}) == ["0"]  # CUDA stops at -1
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    for name in ("nvidia1", "nvidia0", "nvidiactl", "nvidia-uvm", "null"):
        (tmp_path / name).touch()
    assert visible_gpus({}, dev=tmp_path) == ["0", "1"]
