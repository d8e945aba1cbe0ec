"""The AWS-BYOC-style peer and the overload suite, for real on 127.0.0.1 with tiny bounds
(silhouette: no weights): answers read back by independent readers (json, trimesh, PIL)."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import time
from pathlib import Path

import pytest
import requests
import trimesh
from PIL import Image

from gen3d.benchmarks import payloads
from gen3d.benchmarks.byoc_peer import byoc_command, gunicorn_command, has_front, start_byoc
from gen3d.benchmarks.overload import OverloadConfig, ours_env, run_overload_suite
from gen3d.benchmarks.peers import PeersConfig, listening_address, measured_alone
from gen3d.benchmarks.report import build_report
from gen3d.serve.local_server import ManagedProcess, child_pids, command_line, free_port

LEVEL_FIELDS = {
    "goodput_per_s",
    "refused_per_s",
    "other_statuses",
    "connection_errors",
    "latency_ms",
    "attempt_latency_ms",
    "attempts_per_success",
    "ping_ms",
    "window_s",
}


@pytest.mark.slow  # starts the BYOC peer
def test_byoc_peer_serves_our_json_form_with_sync_workers(tmp_path: Path) -> None:
    config = PeersConfig(backend="silhouette", byoc_workers=1)
    server = start_byoc(config, tmp_path / "model", tmp_path / "byoc.log")
    try:
        server.wait_ready(60)
        assert listening_address(server.port) == "127.0.0.1"
        response = requests.post(
            server.url + "/invocations",
            data=payloads.json_body(),
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["format"] == "glb" and answer["metadata"]["backend"] == "silhouette"
        children = " ".join(command_line(p) for p in child_pids(server.process.pid))
        # as AWS's example: nginx in front of gunicorn's sync workers on a unix socket
        assert ("nginx" in children) == has_front() and "gunicorn" in children
        glb = base64.b64decode(answer["data"])
        mesh = trimesh.load(io.BytesIO(glb), file_type="glb", force="mesh", process=False)
        assert len(mesh.faces) > 100
        # our codecs' errors keep their status and JSON form
        bad = requests.post(server.url + "/invocations", data=b'{"seed": 1}', timeout=30)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    finally:
        server.stop()
    cmd = gunicorn_command("unix:/run/peer.sock", 3)
    assert cmd[cmd.index("--worker-class") + 1] == "sync"
    assert cmd[cmd.index("--workers") + 1] == "3"
    assert cmd[cmd.index("--bind") + 1] == "unix:/run/peer.sock"
    assert byoc_command(8080, 3)[2] == ("gen3d.benchmarks.byoc_peer" if has_front() else "gunicorn")


def test_ours_env_applies_the_queue_then_extra_env(tmp_path: Path) -> None:
    config = OverloadConfig(
        backend="silhouette", max_queue=2, extra_env={"MODEL_SERVER_WORKERS": "2"}, torch_threads=1
    )
    env = ours_env(config, tmp_path)
    assert env["GEN3D_MAX_QUEUE"] == "2" and env["MODEL_SERVER_WORKERS"] == "2"
    assert env["OMP_NUM_THREADS"] == "1"
    overridden = ours_env(
        OverloadConfig(backend="silhouette", max_queue=2, extra_env={"GEN3D_MAX_QUEUE": "9"}),
        tmp_path,
    )
    assert overridden["GEN3D_MAX_QUEUE"] == "9"  # extra env is applied last


@pytest.mark.slow  # real servers under load for several windows
def test_overload_counts_goodput_and_refusals(tmp_path: Path) -> None:
    config = OverloadConfig(
        backend="silhouette",
        levels=[2, 8],
        duration_s=1.5,
        warmup_s=0.3,
        max_queue=2,
        # one worker, no waiting room: the front lets 3 in (1 running + a queue of 2) and
        # refuses the rest at once, so 8 clients overflow it
        extra_env={"GEN3D_MAX_WAITING": "0", "MODEL_SERVER_WORKERS": "1"},
        model_dir=tmp_path / "model",
    )
    (tmp_path / "model").mkdir()
    path = run_overload_suite(config, tmp_path / "out", lambda line: None)
    assert path == tmp_path / "out" / "cpu" / "overload_silhouette.json"
    doc = json.loads(path.read_text())
    assert doc["suite"] == "overload" and doc["config"]["ours_max_queue"] == 2
    assert doc["config"]["bound_to"] == {"ours": "127.0.0.1"}
    rows = {r["clients"]: r["ours"] for r in doc["results"]}
    assert set(rows) == {2, 8}
    for clients, row in rows.items():
        assert LEVEL_FIELDS <= set(row), clients
        assert row["goodput_per_s"] > 0
        assert row["ok"] == pytest.approx(row["goodput_per_s"] * row["window_s"], rel=1e-3)
        assert row["ping_ms"]["n"] >= 1 and row["ping_failures"] == 0
        assert {"median", "p99", "max"} <= set(row["ping_ms"])
        # retries only lengthen a success: never shorter than its last attempt
        assert row["latency_ms"]["max"] >= row["attempt_latency_ms"]["max"] - 1e-6
    # 2 clients never hold more than 2 requests: a queue of 2 refuses none of them ...
    assert rows[2]["refused"] == 0 and rows[2]["attempts_per_success"]["max"] == 1
    # ... while 8 clients overflow it, and every refusal is retried at once
    assert rows[8]["refused"] > 0 and rows[8]["refused_per_s"] > 0
    assert rows[8]["attempts_per_success"]["mean"] > 1
    assert rows[8]["other_statuses"] == {} and rows[8]["connection_errors"] == 0
    summary = doc["summary"]["ours"]
    assert summary["peak_goodput_per_s"] == max(r["goodput_per_s"] for r in rows.values())
    assert summary["largest_level"] == 8
    assert summary["ratio_to_peak"] == pytest.approx(
        rows[8]["goodput_per_s"] / summary["peak_goodput_per_s"]
    )

    # the report shows it: a section, the summary and the plot
    readme, plots = tmp_path / "README.md", tmp_path / "plots"
    build_report(tmp_path / "out", readme, plots, tmp_path / "spi.json")
    text = readme.read_text()
    assert "### Overload: goodput" in text and "ratio to peak" in text
    assert "plots/cpu_overload.png" in text
    with Image.open(plots / "cpu_overload.png") as image:
        assert image.format == "PNG" and image.size[0] > 300


def _state(pid: int) -> str:
    """The kernel's one-letter state of `pid` (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _session_pids(leader: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == leader:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return pids


def _states(sessions: dict[str, list[int]]) -> dict[str, set[str]]:
    return {name: {_state(pid) for pid in pids} for name, pids in sessions.items()}


def _within(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_each_server_is_measured_with_the_others_paused(tmp_path: Path) -> None:
    """The peers and overload suites pause (SIGSTOP) every server but the one measured,
    children included, and resume them afterwards, even when the measurement fails."""
    # each "server" is a Python HTTP server with a child process, like gunicorn's workers
    code = (
        "import subprocess, sys, http.server;"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])),"
        " http.server.SimpleHTTPRequestHandler).serve_forever()"
    )
    servers = {}
    for name in ("ours", "litserve", "byoc"):
        port = free_port()
        servers[name] = ManagedProcess(
            [sys.executable, "-c", code, str(port)],
            port,
            tmp_path / f"{name}.log",
            health_path="/",
            name=name,
        )
    try:
        for server in servers.values():
            server.wait_ready(30)
        sessions = {}
        for name, server in servers.items():
            deadline = time.monotonic() + 10
            while len(_session_pids(server.process.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            sessions[name] = _session_pids(server.process.pid)
            assert len(sessions[name]) == 2, sessions
        config = PeersConfig(backend="silhouette", ready_timeout_s=10)
        with pytest.raises(RuntimeError, match="measurement failed"):
            with measured_alone(servers, "litserve", config):
                assert requests.get(servers["litserve"].url, timeout=5).status_code == 200
                # signals reach a session's processes asynchronously: poll for the states
                assert _within(lambda: _states(sessions)["ours"] == {"T"}), _states(sessions)
                assert _within(lambda: _states(sessions)["byoc"] == {"T"}), _states(sessions)
                assert "T" not in _states(sessions)["litserve"], _states(sessions)
                raise RuntimeError("measurement failed")
        running = lambda: all("T" not in s for s in _states(sessions).values())  # noqa: E731
        assert _within(running), _states(sessions)  # all running again
        with measured_alone(servers, "ours", PeersConfig(backend="silhouette", pause_idle=False)):
            time.sleep(0.2)
            assert running(), _states(sessions)
    finally:
        for server in servers.values():
            server.resume()
            server.stop(5)
