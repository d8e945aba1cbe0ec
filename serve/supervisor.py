"""`serve`: nginx (the buffering front) and gunicorn, started, watched and stopped together.

SageMaker runs `docker run IMAGE serve`, sends SIGTERM to stop and SIGKILL 30 s later.
This process is what `serve` execs: it forwards SIGTERM/SIGINT to both children (nginx
gets SIGQUIT, its graceful stop; gunicorn SIGTERM, which finishes in-flight requests
within its graceful_timeout), and if either child dies the other is stopped and the
exit code passed on, so the platform sees a dead container, never half a server.

Without a front (GEN3D_FRONT=none, or nginx not installed) it becomes gunicorn itself
(exec), exactly as before the front existed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gen3d.serve.front import FrontError, FrontLayout, chosen_front, render_config
from gen3d.serve.hardware import plan_workers
from gen3d.serve.settings import Settings, SettingsError

GUNICORN_CONFIG = "python:gen3d.serve.gunicorn_conf"
WSGI_APP = "gen3d.serve.wsgi:app"
STOP_GRACE_S = 28.0  # within SageMaker's 30 s between SIGTERM and SIGKILL


def gunicorn_command(python: str = sys.executable, *extra: str) -> list[str]:
    """gunicorn with our config module and app; `extra` flags override the config."""
    return [python, "-m", "gunicorn", "--config", GUNICORN_CONFIG, *extra, WSGI_APP]


def behind_front(settings: Settings, socket: Path) -> list[str]:
    """gunicorn's flags behind nginx: the unix socket; one request per connection (nginx
    keeps the clients' keep-alives); no more connections per worker than it has threads,
    so the rest wait in the socket's backlog for whichever worker frees a thread first."""
    return [
        "--bind",
        f"unix:{socket}",
        "--keep-alive",
        "0",
        "--worker-connections",
        str(settings.threads),
    ]


def _log(message: str) -> None:
    print(f"gen3d serve: {message}", file=sys.stderr, flush=True)


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if status else 0


class Supervisor:
    """Two children; the first to exit, or a signal, stops the pair."""

    def __init__(self, settings: Settings, nginx: str) -> None:
        self.settings = settings
        self.nginx = nginx
        self.layout = FrontLayout(Path(tempfile.mkdtemp(prefix="gen3d-front-")))
        # nginx's workers drop root (to nobody): they must reach the socket and temp dirs
        self.layout.run_dir.chmod(0o755)
        self.children: dict[int, tuple[str, subprocess.Popen[bytes], int]] = {}
        self.stopping = False

    def start(self) -> None:
        workers = plan_workers(self.settings).workers
        self.layout.config.write_text(render_config(self.settings, self.layout, workers))
        gunicorn = gunicorn_command(
            sys.executable, *behind_front(self.settings, self.layout.upstream_socket)
        )
        self._spawn("gunicorn", gunicorn, signal.SIGTERM)
        self._wait_for_socket()
        if self.stopping:  # a signal came while gunicorn started
            return
        nginx = [self.nginx, "-p", f"{self.layout.run_dir}/", "-c", str(self.layout.config)]
        self._spawn("nginx", nginx, signal.SIGQUIT)

    def _wait_for_socket(self, timeout_s: float = 300.0) -> None:
        """nginx starts once gunicorn listens (its master binds before loading any model),
        so it never answers for an upstream that is not there yet."""
        deadline = time.monotonic() + timeout_s
        while not self.layout.upstream_socket.exists() and time.monotonic() < deadline:
            if self.stopping or any(p.poll() is not None for _n, p, _s in self.children.values()):
                return  # gunicorn failed: wait() reports it
            time.sleep(0.02)

    def _spawn(self, name: str, cmd: list[str], stop_signal: int) -> None:
        process = subprocess.Popen(cmd)  # stdout/stderr: ours (the container's log)
        self.children[process.pid] = (name, process, stop_signal)

    def stop(self, signum: int | None = None, _frame: object = None) -> None:
        if not self.stopping and signum is not None:
            _log(f"signal {signal.Signals(signum).name}: stopping nginx and gunicorn")
        self.stopping = True
        for _name, process, stop_signal in self.children.values():
            if process.poll() is None:
                process.send_signal(stop_signal)

    def wait(self) -> int:
        """Until both children are gone; the exit code is the first one's."""
        code: int | None = None
        deadline: float | None = None
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if deadline is not None and time.monotonic() > deadline:
                    for _name, process, _sig in self.children.values():
                        process.kill()
                    deadline = None
                time.sleep(0.1)
                continue
            entry = self.children.pop(pid, None)
            if entry is None:
                continue
            name, process, _sig = entry
            process.returncode = _exit_code(status)
            if not self.stopping:
                _log(f"{name} exited with {process.returncode}; stopping the other")
                code = process.returncode or 1
            self.stop()
            deadline = deadline or time.monotonic() + STOP_GRACE_S
        shutil.rmtree(self.layout.run_dir, ignore_errors=True)
        return code or 0


def main() -> int:
    try:
        settings = Settings.from_env()
        nginx = chosen_front(settings)
    except (SettingsError, FrontError) as exc:
        _log(f"invalid setting {exc}")
        return 2
    if nginx is None:
        if settings.front == "auto":
            _log("nginx not installed: gunicorn alone, without slow-client protection")
        command = gunicorn_command()
        os.execv(command[0], command)
    supervisor = Supervisor(settings, nginx)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    supervisor.start()
    return supervisor.wait()


if __name__ == "__main__":
    sys.exit(main())
