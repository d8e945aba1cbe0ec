"""Start and stop a real server process (gunicorn, the image's configuration) on loopback.

Used by `make demo`, the integration tests and the server benchmarks, so all three
exercise the same process the container runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
GUNICORN_CONF = REPO_ROOT / "container" / "gunicorn.conf.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Poll /ping until 200; returns seconds waited. Raises with the log tail on failure."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/ping", timeout=2).status_code == 200:
                    return time.monotonic() - start
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout_s:.0f}s:\n{self.log()}")

    def log(self, tail_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail_chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (graceful, as SageMaker does), then SIGKILL after `timeout_s`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    log_path: Path | None = None,
) -> ServerProcess:
    """Start `container/serve serve`'s gunicorn on 127.0.0.1 (not yet ready: see wait_ready)."""
    port = port or free_port()
    full_env = {**os.environ, **(env or {})}
    full_env["SAGEMAKER_BIND_TO_PORT"] = str(port)
    full_env["GEN3D_BIND_HOST"] = "127.0.0.1"
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH", "")) if p
    )
    if log_path is None:
        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"gen3d-server-{port}.log"
    log = open(log_path, "wb")
    cmd = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), "serve.wsgi:app"]
    process = subprocess.Popen(
        cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT
    )
    log.close()
    return ServerProcess(process=process, port=port, log_path=log_path)
