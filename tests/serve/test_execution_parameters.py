"""GET /execution-parameters: what batch transform may send each instance."""

from __future__ import annotations

import pytest

from gen3d.serve.backends import BUILTIN, create_backend
from gen3d.serve.http.app import execution_parameters_for
from gen3d.serve.model.capacity import plan
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
        # 4 CPU workers set by hand: each batches 8 on its share of the cores
        ({"GEN3D_BACKEND": "proxy", "MODEL_SERVER_WORKERS": "4", **ON_CPU}, 32, 3),
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
    settings = Settings.from_env(env)
    params = execution_parameters_for(plan(settings, cores=2, gpus=[]), settings)
    assert (params["MaxConcurrentTransforms"], params["MaxPayloadInMB"]) == (concurrent, payload)
    # CreateTransformJob: MaxConcurrentTransforms x MaxPayloadInMB <= 100 MB
    assert params["MaxConcurrentTransforms"] * params["MaxPayloadInMB"] <= 100


def test_the_fixed_batch_sizes_are_the_backends_own() -> None:
    fixed = {name: e.fixed_batch_size for name, e in BUILTIN.items() if e.fixed_batch_size}
    assert fixed == {"silhouette": 1, "sam3d": 1}
    for name, size in fixed.items():
        assert create_backend(name).max_batch_size == size
