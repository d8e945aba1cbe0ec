"""Start and stop a real server process (the image's `serve`: nginx + gunicorn) on loopback.

Used by `make demo`, the integration tests and the server benchmarks, so all three
exercise the same process the container runs. `ManagedProcess` is the general part (own
session, readiness poll, log tail, graceful stop); the benchmark peers use it too.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

from gen3d.serve.process.supervisor import child_pids, gunicorn_command

__all__ = [
    "ManagedProcess",
    "child_pids",
    "command_line",
    "free_port",
    "gunicorn_command",
    "gunicorn_master",
    "gunicorn_masters",
    "gunicorn_workers",
    "server_command",
    "start_server",
    "wait_every_worker",
]

# The supervisor's first line names the plan; each model worker logs one line when ready.
_PLANNED_WORKERS = re.compile(r"capacity: CapacityPlan\(workers=(\d+)")
READY_LINE = "ready: backend="


def server_command(python: str = sys.executable) -> list[str]:
    """The command the image's `serve` runs: nginx and the gunicorns (its supervisor)."""
    return [python, "-m", "gen3d.serve.process.supervisor"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ManagedProcess:
    """A child process in its own session, logging to a file, with an HTTP readiness URL.

    stop() signals the whole session, so grandchildren (gunicorn's workers, a peer
    server's workers) never outlive it.
    """

    def __init__(
        self,
        cmd: Sequence[str],
        port: int,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        health_path: str = "/ping",
        name: str = "server",
    ) -> None:
        self.port = port
        self.log_path = log_path
        self.health_path = health_path
        self.name = name
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                list(cmd),
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Poll the health URL until 200; returns seconds waited. Raises with the log tail."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                if requests.get(self.url + self.health_path, timeout=2).status_code == 200:
                    return time.monotonic() - start
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f}s:\n{self.log()}")

    def log(self, tail_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail_chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (graceful, as SageMaker does), then SIGKILL the session after `timeout_s`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._kill_session()
                self.process.wait()
        self._kill_session()  # children that outlived the parent's graceful shutdown
        return self.process.returncode

    def pause(self) -> None:
        """SIGSTOP the whole session: it takes no CPU until `resume`."""
        self._signal_session(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_session(signal.SIGCONT)

    def _kill_session(self) -> None:
        self._signal_session(signal.SIGKILL)

    def _signal_session(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def start_server(
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    log_path: Path | None = None,
) -> ManagedProcess:
    """Start the image's gunicorn set-up on 127.0.0.1 (not yet ready: see wait_ready)."""
    port = port or free_port()
    full_env = {
        **(env or {}),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "GEN3D_BIND_HOST": "127.0.0.1",
    }
    if log_path is None:
        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"gen3d-server-{port}.log"
    return ManagedProcess(server_command(), port, log_path, env=full_env, name="server")


def wait_every_worker(server: ManagedProcess, timeout_s: float = 60.0) -> None:
    """After `wait_ready` (one worker answered /ping): until every model worker the
    supervisor planned says it is ready. A request may otherwise meet a worker still
    loading; nginx passes its 503 on, so the client sees 200 but both workers log it."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = server.log(1 << 24)
        planned = _PLANNED_WORKERS.search(log)
        if planned and log.count(READY_LINE) >= int(planned[1]):
            return
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise TimeoutError(f"{server.name}: not every worker is ready:\n{log[-4000:]}")
        time.sleep(0.05)


def command_line(pid: int) -> str:
    """A process's command line as one string; empty if it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def gunicorn_masters(server: ManagedProcess) -> list[int]:
    """The pids of a started server's gunicorn masters, one per model worker."""
    return [pid for pid in child_pids(server.process.pid) if "gunicorn" in command_line(pid)]


def gunicorn_master(server: ManagedProcess) -> int | None:
    """The first model worker's gunicorn master (the only one with MODEL_SERVER_WORKERS=1)."""
    return next(iter(gunicorn_masters(server)), None)


def gunicorn_workers(server: ManagedProcess) -> set[int]:
    """The pids of a started server's gunicorn workers (every master's)."""
    return {pid for master in gunicorn_masters(server) for pid in child_pids(master)}
