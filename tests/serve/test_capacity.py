"""The capacity plan: one function of the settings and the hardware (gen3d.serve.model.capacity)."""

from __future__ import annotations

from pathlib import Path

from gen3d.serve.model.capacity import PING_HEADROOM, CapacityPlan, current, plan, visible_gpus
from gen3d.serve.settings import Settings


def test_a_backend_that_cannot_batch_gets_a_worker_per_core_or_per_gpu() -> None:
    silhouette = plan(Settings(backend="silhouette"), cores=8, gpus=[])
    assert (silhouette.workers, silhouette.batch_size, silhouette.torch_threads) == (8, 1, 1)
    # a CPU backend ignores the GPUs
    assert plan(Settings(backend="silhouette"), cores=8, gpus=["0"]).workers == 8
    # sam3d runs one sample at a time: one worker per GPU, each pinned to its own
    sam3d = plan(Settings(backend="sam3d"), cores=8, gpus=["0", "1"])
    assert (sam3d.workers, sam3d.batch_size, sam3d.gpus) == (2, 1, ("0", "1"))


def test_a_batching_backend_gets_one_worker_per_gpu_or_one_on_every_core() -> None:
    on_cpu = plan(Settings(backend="proxy", max_batch_size=8), cores=8, gpus=[])
    assert (on_cpu.workers, on_cpu.batch_size, on_cpu.torch_threads) == (1, 8, 8)
    on_gpus = plan(Settings(backend="proxy"), cores=48, gpus=["0", "1", "2", "3"])
    assert (on_gpus.workers, on_gpus.gpus, on_gpus.torch_threads) == (4, ("0", "1", "2", "3"), 0)
    # GEN3D_DEVICE=cpu keeps a GPU backend off the GPUs
    assert plan(Settings(backend="proxy", device="cpu"), cores=4, gpus=["0"]).gpus == ()


def test_set_values_win_and_a_set_worker_count_shares_the_cores() -> None:
    two = plan(Settings(backend="proxy", workers=2), cores=8, gpus=[])
    assert (two.workers, two.torch_threads, two.reason) == (2, 4, "MODEL_SERVER_WORKERS")
    assert plan(Settings(torch_threads=3), cores=4, gpus=[]).torch_threads == 3
    # a count that differs from the GPUs pins nothing
    assert plan(Settings(backend="proxy", workers=1), cores=8, gpus=["0", "1"]).gpus == ()


def test_threads_are_what_a_worker_holds_plus_ping_headroom() -> None:
    settings = Settings(backend="proxy", max_batch_size=8, max_queue=16, max_waiting=4)
    p = plan(settings, cores=2, gpus=[])
    assert p.invocations == 8 + 16 + 4  # running batch, queue, waiting room: nginx's max_conns
    assert p.threads == p.invocations + PING_HEADROOM
    assert plan(Settings(), cores=2, gpus=[]).threads < 100  # the defaults: not hundreds
    fixed = plan(Settings(worker_threads=20), cores=2, gpus=[])
    assert (fixed.threads, fixed.invocations) == (20, 20 - PING_HEADROOM)


def test_the_plan_travels_to_the_workers_unchanged(monkeypatch) -> None:
    made = plan(Settings(backend="sam3d"), cores=4, gpus=["0", "1"])
    monkeypatch.setenv(*next(iter(made.to_env().items())))
    assert CapacityPlan.from_env() == made
    # a worker reads the supervisor's plan, not its own machine's view (CUDA_VISIBLE_DEVICES
    # is one GPU there)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert current(Settings(backend="sam3d")) == made


def test_visible_gpus_come_from_the_environment_or_the_device_files(tmp_path: Path) -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,-1,1"}) == ["0"]  # CUDA stops at -1
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    for name in ("nvidia1", "nvidia0", "nvidiactl", "nvidia-uvm", "null"):
        (tmp_path / name).touch()
    assert visible_gpus({}, dev=tmp_path) == ["0", "1"]


def test_an_unknown_backend_stops_the_plan_in_one_line() -> None:
    import pytest

    from gen3d.serve.settings import SettingsError

    with pytest.raises(SettingsError, match="GEN3D_BACKEND='nope': unknown backend"):
        plan(Settings.from_env({"GEN3D_BACKEND": "nope"}), cores=2, gpus=[])
