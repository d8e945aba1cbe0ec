"""Logs, EMF metrics and /metrics, read back from a real gunicorn server's output."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import requests
from gen3d_testing import rgba_png
from prometheus_client.parser import text_string_to_metric_families

from gen3d.serve.backends.base import Sample
from gen3d.serve.backends.silhouette import SilhouetteBackend
from gen3d.serve.backends.synthetic import photo_and_mask
from gen3d.serve.model.batching import Batcher
from gen3d.serve.observe.metrics import Metrics, ObservedBackend
from gen3d.serve.process.front import nginx_binary
from gen3d.serve.settings import Settings, SettingsError

# CloudWatch StandardUnit names (the EMF MetricDefinition's Unit takes these; botocore's
# cloudwatch model, shape StandardUnit).
UNITS = {
    *("Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes"),
    *("Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits"),
    *("Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second"),
    *("Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second"),
    *("Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"),
}


def assert_valid_emf(doc: dict) -> None:
    """The EMF specification's rules (docs.aws.amazon.com/AmazonCloudWatch/latest/
    monitoring/CloudWatch_Embedded_Metric_Format_Specification.html): `_aws` holds an
    integer Timestamp (epoch ms) and MetricDirectives; each directive has a Namespace, at
    most 30 dimension names per set and 1-100 metrics; every dimension names a string
    member of the root and every metric a number member."""
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    assert meta["CloudWatchMetrics"]
    for directive in meta["CloudWatchMetrics"]:
        assert set(directive) <= {"Namespace", "Dimensions", "Metrics"}
        assert directive["Namespace"] == "Gen3D"
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(doc[name], str) and doc[name]
        assert 1 <= len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"}
            assert metric.get("Unit", "None") in UNITS
            value = doc[metric["Name"]]
            assert isinstance(value, int | float) and not isinstance(value, bool)


def lines_of(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def post_png(url: str, request_id: str, content_type: str = "image/png") -> requests.Response:
    return requests.post(
        url + "/invocations",
        data=rgba_png(48),
        headers={"Content-Type": content_type, "X-Amzn-RequestId": request_id},
        timeout=60,
    )


def test_every_line_is_json_with_request_lines_and_valid_emf(start_gen3d_server) -> None:
    server = start_gen3d_server(
        {"GEN3D_DEPLOYMENT": "obs-test", "GEN3D_LOG_LEVEL": "debug"}  # debug: every logger
    )
    ids = [f"req-ok-{i}" for i in range(3)]
    for request_id in ids:
        assert post_png(server.url, request_id).status_code == 200
    assert post_png(server.url, "req-415", "text/plain").status_code == 415
    server.stop(10)

    lines = lines_of(server.log_path)
    docs = [json.loads(line) for line in lines]  # every line: a JSON object, or this fails
    assert all(isinstance(d, dict) for d in docs)
    assert any(d.get("logger") == "gunicorn.error" for d in docs)  # the master's lines too
    if nginx_binary() is not None:  # nginx's own text lines, re-logged as JSON at info level
        assert any(d.get("logger") == "nginx" and d["level"] == "INFO" for d in docs)

    access = {d["request_id"]: d for d in docs if d.get("logger") == "gen3d.access"}
    for request_id in ids:
        line = access[request_id]
        assert (line["method"], line["route"], line["status"]) == ("POST", "/invocations", 200)
        assert line["batch_size"] == 1 and line["error_code"] is None
        assert line["duration_ms"] > 0
    assert access["req-415"]["status"] == 415
    assert access["req-415"]["error_code"] == "unsupported_media_type"

    emf = [d for d in docs if "_aws" in d]
    for doc in emf:
        assert_valid_emf(doc)
        assert (doc["Deployment"], doc["Backend"]) == ("obs-test", "silhouette")
    per_request = {d["request_id"]: d for d in emf if "Requests" in d}
    assert set(per_request) == {*ids, "req-415"}
    ok = per_request[ids[0]]
    assert ok["status"] == 200 and ok["Errors5xx"] == 0 and ok["BytesOut"] > 0
    assert ok["InferenceTime"] > 0 and ok["QueueTime"] >= 0 and ok["EncodeTime"] > 0
    assert per_request["req-415"]["Errors4xx"] == 1
    assert per_request["req-415"]["error_code"] == "unsupported_media_type"
    batches = [d for d in emf if "BatchSize" in d]
    assert len(batches) >= len(ids) and all(d["OOMSplits"] == 0 for d in batches)
    states = [d for d in emf if "ModelReady" in d]  # one per worker
    assert states and all(d["ModelReady"] == 1 and d["model_state"] == "ready" for d in states)


def test_a_500_logs_request_id_and_traceback_only_in_the_log(
    start_gen3d_server, tmp_path: Path
) -> None:
    (tmp_path / "leaky_backend.py").write_text(
        "from gen3d.serve.backends.silhouette import SilhouetteBackend\n"
        "class Leaky(SilhouetteBackend):\n"
        "    def _one(self, sample):\n"
        "        raise ValueError('secret internal detail 4711')\n"
    )
    server = start_gen3d_server(
        {"GEN3D_BACKEND": "leaky_backend:Leaky", "PYTHONPATH": str(tmp_path), "GEN3D_WARMUP": "0"}
    )
    response = post_png(server.url, "req-500")
    assert response.status_code == 500
    assert "4711" not in response.text and "Traceback" not in response.text
    server.stop(10)

    docs = [json.loads(line) for line in lines_of(server.log_path)]
    failures = [d for d in docs if d.get("level") == "ERROR"]
    assert failures, "the failure was not logged"
    for failure in failures:
        assert failure["request_id"] == "req-500"
        assert "Traceback" in failure["exc_info"] and "4711" in failure["exc_info"]
    (access,) = [
        d for d in docs if d.get("logger") == "gen3d.access" and d["request_id"] == "req-500"
    ]
    assert (access["status"], access["error_code"]) == (500, "internal_error")


def test_a_dying_model_thread_and_warnings_still_log_json(
    start_gen3d_server, tmp_path: Path
) -> None:
    (tmp_path / "fatal_backend.py").write_text(
        "import warnings\n"
        "from gen3d.serve.backends.silhouette import SilhouetteBackend\n"
        "class Fatal(BaseException):\n"
        "    pass\n"
        "class Dying(SilhouetteBackend):\n"
        "    def predict(self, batch):\n"
        "        warnings.warn('a library warning 1234')\n"
        "        raise Fatal('the model thread ends here')\n"
    )
    server = start_gen3d_server(
        {"GEN3D_BACKEND": "fatal_backend:Dying", "PYTHONPATH": str(tmp_path), "GEN3D_WARMUP": "0"}
    )
    assert post_png(server.url, "req-fatal").status_code == 500
    server.stop(10)
    docs = [json.loads(line) for line in lines_of(server.log_path)]  # all JSON
    uncaught = [d for d in docs if d.get("logger") == "gen3d.uncaught"]
    assert uncaught and "Fatal: the model thread ends here" in uncaught[0]["exc_info"]
    assert any("a library warning 1234" in d.get("message", "") for d in docs)


def test_text_format_for_humans(start_gen3d_server) -> None:
    server = start_gen3d_server({"GEN3D_LOG_FORMAT": "text", "GEN3D_EMF": "off"})
    assert post_png(server.url, "req-text").status_code == 200
    server.stop(10)
    lines = lines_of(server.log_path)
    assert not any(line.startswith("{") for line in lines)  # no JSON, no EMF
    (access,) = [line for line in lines if "gen3d.access" in line and "req-text" in line]
    assert "POST /invocations 200" in access and "[request req-text]" in access


def test_prometheus_counts_requests_across_two_workers(start_gen3d_server) -> None:
    server = start_gen3d_server({"GEN3D_PROMETHEUS": "1", "MODEL_SERVER_WORKERS": "2"})
    n = 6
    threads = [threading.Thread(target=post_png, args=(server.url, f"req-p{i}")) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert post_png(server.url, "req-p415", "text/plain").status_code == 415
    response = requests.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    requests_by_status = {
        s.labels["status"]: s.value
        for s in families["gen3d_requests"].samples
        if s.name == "gen3d_requests_total"
    }
    assert requests_by_status == {"200": n, "415": 1}
    latency = {s.name: s.value for s in families["gen3d_request_duration_seconds"].samples}
    assert latency["gen3d_request_duration_seconds_count"] == n + 1
    ready = [s.value for s in families["gen3d_model_state"].samples if s.labels["state"] == "ready"]
    assert sum(ready) == 2  # both workers' gauges, summed


def test_metrics_route_and_emf_are_off_by_default(start_gen3d_server) -> None:
    server = start_gen3d_server({})  # no GEN3D_DEPLOYMENT: a local run
    assert requests.get(server.url + "/metrics", timeout=10).status_code == 404
    assert post_png(server.url, "req-local").status_code == 200
    server.stop(10)
    docs = [json.loads(line) for line in lines_of(server.log_path)]
    assert not any("_aws" in d for d in docs)
    assert any(d.get("request_id") == "req-local" for d in docs)  # still the request line


class OutOfMemoryAboveOne(SilhouetteBackend):
    """Runs out of memory on any batch of more than one sample."""

    def __init__(self) -> None:
        super().__init__()
        self.max_batch_size = 4

    def predict(self, batch):
        if len(batch) > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().predict(batch)


def test_oom_splits_are_counted_per_model_call() -> None:
    lines: list[str] = []
    metrics = Metrics(Settings(deployment="oom", emf_metrics="auto"), emit=lines.append)
    backend = OutOfMemoryAboveOne()
    backend.load(Path("/nonexistent"), Settings())
    batcher = Batcher(ObservedBackend(backend, metrics), 4, max_delay_s=0.5, max_queue=8)
    batcher.start()
    image, mask = photo_and_mask(48, 0)
    jobs = batcher.submit([Sample(image, mask), Sample(image, mask)], timeout_s=30)
    assert all(not isinstance(batcher.wait(job), Exception) for job in jobs)
    calls = [json.loads(line) for line in lines]
    for doc in calls:
        assert_valid_emf(doc)
    assert [(d["BatchSize"], d["OOMSplits"], d["OutOfMemory"]) for d in calls] == [
        (2, 1, 1),
        (1, 0, 0),
        (1, 0, 0),
    ]


def test_log_settings_are_checked() -> None:
    assert Settings.from_env({"GEN3D_LOG_FORMAT": "TEXT"}).log_format == "text"
    with pytest.raises(SettingsError, match="GEN3D_LOG_FORMAT"):
        Settings.from_env({"GEN3D_LOG_FORMAT": "xml"})
    with pytest.raises(SettingsError, match="GEN3D_DEPLOYMENT"):
        Settings.from_env({"GEN3D_DEPLOYMENT": "a b"})
