"""GET /execution-parameters: what batch transform may send each instance."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gen3d.serve.app import execution_parameters_for
from gen3d.serve.backends import BUILTIN, create_backend
from gen3d.serve.hardware import plan_workers, worker_batch_size
from gen3d.serve.settings import Settings

ONE_WORKER = {"MODEL_SERVER_WORKERS": "1"}  # else one per core of the machine running this
ON_CPU = {"GEN3D_DEVICE": "cpu"}  # whatever GPUs the machine running this has


@pytest.mark.parametrize(
    ("env", "concurrent", "payload"),
    [
        # an async model of sam3d: 100 MB bodies, one sample at a time
        ({"GEN3D_BACKEND": "sam3d", "GEN3D_MAX_BODY_MB": "100", **ONE_WORKER}, 1, 100),
        # proxy batches 8: 8 in flight, the 100 MB budget shared between them
        ({"GEN3D_BACKEND": "proxy", "GEN3D_MAX_BODY_MB": "100", **ONE_WORKER}, 8, 12),
        # 4 CPU workers share the cores and the batch size: 2 samples each
        ({"GEN3D_BACKEND": "proxy", "MODEL_SERVER_WORKERS": "4", **ON_CPU}, 8, 6),
        ({"GEN3D_BACKEND": "silhouette", "MODEL_SERVER_WORKERS": "2"}, 2, 6),
        # past 100 concurrent requests no payload of 1 MB would fit the budget
        (
            {"GEN3D_BACKEND": "proxy", "GEN3D_MAX_BATCH_SIZE": "256", "MODEL_SERVER_WORKERS": "2"},
            100,
            1,
        ),
    ],
)
def test_concurrency_times_payload_stays_within_100_mb(env, concurrent, payload) -> None:
    params = execution_parameters_for(Settings.from_env(env))
    assert (params["MaxConcurrentTransforms"], params["MaxPayloadInMB"]) == (concurrent, payload)
    # CreateTransformJob: MaxConcurrentTransforms x MaxPayloadInMB <= 100 MB
    assert params["MaxConcurrentTransforms"] * params["MaxPayloadInMB"] <= 100


def test_the_fixed_batch_sizes_are_the_backends_own() -> None:
    fixed = {name: e.fixed_batch_size for name, e in BUILTIN.items() if e.fixed_batch_size}
    assert fixed == {"silhouette": 1, "sam3d": 1}
    for name, size in fixed.items():
        assert create_backend(name).max_batch_size == size


@pytest.mark.parametrize(
    ("backend", "size", "workers", "gpus", "expected"),
    [
        ("proxy", 8, 2, [], 4),  # 2 workers on shared cores: 4 samples each
        ("proxy", 8, 3, [], 3),  # rounded up: never fewer than the setting in all
        ("proxy", 8, 1, [], 8),
        ("proxy", 1, 4, [], 1),
        ("silhouette", 8, 2, [], 1),  # cannot batch
        ("proxy", 8, 2, ["0", "1"], 8),  # a GPU each: the whole batch size each
    ],
)
def test_workers_on_shared_cores_share_the_batch_size(backend, size, workers, gpus, expected):
    settings = Settings.from_env(
        {"GEN3D_BACKEND": backend, "GEN3D_MAX_BATCH_SIZE": str(size), "GEN3D_DEVICE": "auto"}
    )
    plan = plan_workers(replace(settings, workers=workers), cores=2, gpus=gpus)
    assert plan.on_gpu == bool(gpus)
    assert worker_batch_size(settings, plan) == expected
