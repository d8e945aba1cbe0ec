"""`serve`: nginx and one gunicorn per model worker, started, watched and stopped as one.

SageMaker runs `docker run IMAGE serve`, sends SIGTERM to stop and SIGKILL 30 s later. The
capacity plan is computed once here and handed to every gunicorn. A signal is forwarded
to every child (nginx SIGQUIT, gunicorn SIGTERM: both graceful); if any child dies the
others are stopped and its exit code passed on, so the platform sees a dead container,
never part of a server. Without nginx the gunicorns share the TCP port (SO_REUSEPORT).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import logging.config
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from subprocess import PIPE, Popen
from typing import Any

from gen3d.serve.http.forwarded import BEHIND_FRONT_ENV
from gen3d.serve.model import capacity
from gen3d.serve.observe import metrics
from gen3d.serve.observe.logging_setup import logging_config, relay_nginx_log
from gen3d.serve.process.front import FrontError, FrontLayout, chosen_front, render_config
from gen3d.serve.settings import Settings, SettingsError

GUNICORN_CONFIG = "python:gen3d.serve.process.gunicorn_conf"
WSGI_APP = "gen3d.serve.process.wsgi:app"
STOP_GRACE_S = 28.0  # within SageMaker's 30 s between SIGTERM and SIGKILL
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
WORKER_INDEX_ENV = "GEN3D_WORKER_INDEX"

log = logging.getLogger("gen3d.supervisor")


def child_pids(pid: int) -> list[int]:
    """The pids of a process's children (Linux /proc); none if it is gone."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def gunicorn_command(python: str = sys.executable, *extra: str) -> list[str]:
    """gunicorn with our config module and app; `extra` flags override the config."""
    return [python, "-m", "gunicorn", "--config", GUNICORN_CONFIG, *extra, WSGI_APP]


def worker_commands(
    settings: Settings, plan: capacity.CapacityPlan, layout: FrontLayout | None
) -> list[tuple[list[str], dict[str, str]]]:
    """Each model worker's gunicorn command line and extra environment."""
    commands = []
    for index in range(plan.workers):
        env = {**plan.to_env(), WORKER_INDEX_ENV: str(index)}
        if plan.gpus:  # before anything in the worker touches CUDA
            env["CUDA_VISIBLE_DEVICES"] = plan.gpus[index]
        if layout is None:
            flags = ["--reuse-port"]
        else:  # one request per upstream connection: nginx keeps the clients' keep-alives
            flags = ["--bind", f"unix:{layout.worker_socket(index)}", "--keep-alive", "0"]
            env[BEHIND_FRONT_ENV] = "1"
        commands.append((gunicorn_command(sys.executable, *flags), env))
    return commands


class Supervisor:
    """Its children run as a unit: the first to exit, or a signal, stops them all."""

    def __init__(self, settings: Settings, plan: capacity.CapacityPlan, nginx: str | None) -> None:
        self.settings = settings
        self.nginx = nginx
        self.plan = plan
        self.layout = FrontLayout(Path(tempfile.mkdtemp(prefix="gen3d-front-")))
        # nginx's workers drop root (to nobody): they must reach the sockets and temp dirs
        self.layout.run_dir.chmod(0o755)
        self.children: dict[int, tuple[str, Popen[bytes], int]] = {}
        self.stopping = False
        self.relay: threading.Thread | None = None

    def start(self) -> None:
        log.info("capacity: %s", self.plan)
        metrics.prepare_multiprocess(self.settings)  # one Prometheus folder for all workers
        layout = self.layout if self.nginx else None
        for index, (command, env) in enumerate(worker_commands(self.settings, self.plan, layout)):
            self._spawn(f"gunicorn {index}", command, signal.SIGTERM, env={**os.environ, **env})
        if self.nginx is None:
            return
        self.layout.config.write_text(render_config(self.settings, self.layout, self.plan))
        self._wait_for_sockets()
        if self.stopping:  # a signal came, or a gunicorn failed, while they started
            return
        nginx = [self.nginx, "-p", f"{self.layout.run_dir}/", "-c", str(self.layout.config)]
        process = self._spawn("nginx", nginx, signal.SIGQUIT, stderr=PIPE)
        self.relay = threading.Thread(target=relay_nginx_log, args=(process.stderr,), daemon=True)
        self.relay.start()

    def _wait_for_sockets(self, timeout_s: float = 300.0) -> None:
        """nginx starts once every gunicorn listens (its master binds before any model
        loads), so it never answers for an upstream that is not there yet."""
        deadline = time.monotonic() + timeout_s
        sockets = [self.layout.worker_socket(i) for i in range(self.plan.workers)]
        while not all(p.exists() for p in sockets) and time.monotonic() < deadline:
            if self.stopping or any(p.poll() is not None for _n, p, _s in self.children.values()):
                return  # a gunicorn failed: wait() reports it
            time.sleep(0.02)

    def _spawn(self, name: str, cmd: list[str], stop_signal: int, **popen: Any) -> Popen[bytes]:
        process = Popen(cmd, **popen)  # no stderr given: the container's log
        self.children[process.pid] = (name, process, stop_signal)
        return process

    def stop(self, signum: int | None = None, _frame: object = None) -> None:
        if not self.stopping and signum is not None:
            log.info("signal %s: stopping nginx and gunicorn", signal.Signals(signum).name)
        self.stopping = True
        for _name, process, stop_signal in self.children.values():
            if process.poll() is None:
                process.send_signal(stop_signal)

    def wait(self) -> int:
        """Until every child is gone; the exit code is the first one's."""
        code, deadline = 0, float("inf")
        while self.children:
            self._reap()
            for pid, (name, process, _sig) in list(self.children.items()):
                if process.returncode is None:
                    continue
                del self.children[pid]
                if not self.stopping:
                    log.error("%s exited with %s; stopping the others", name, process.returncode)
                    code = process.returncode or 1
                self.stop()
                deadline = min(deadline, time.monotonic() + STOP_GRACE_S)
            if time.monotonic() > deadline:  # the grace is over: kill, once
                for _name, process, _sig in self.children.values():
                    process.kill()
                deadline = float("inf")
            time.sleep(0.05)
        self._kill_orphans()
        if self.relay is not None:
            self.relay.join(2)  # nginx's last lines (why it stopped) reach the log
        shutil.rmtree(self.layout.run_dir, ignore_errors=True)
        metrics.remove_multiprocess_dir()
        return code or 0

    def _reap(self) -> None:
        """Collect every child that exited: ours pass their status to their Popen (one that
        Popen.poll() in stop() reaped has it already); orphans we inherited need nothing."""
        with contextlib.suppress(ChildProcessError):
            while (exited := os.waitpid(-1, os.WNOHANG))[0]:
                if exited[0] in self.children:
                    status = os.waitstatus_to_exitcode(exited[1])
                    self.children[exited[0]][1].returncode = status

    def _kill_orphans(self) -> None:
        """A child's own children outlive it (nginx's worker keeps the port when its master
        is killed); as their subreaper we inherit them: stop them all, reap them."""
        for pid in child_pids(os.getpid()):
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def _become_subreaper() -> None:
    """Orphaned grandchildren (nginx's worker, gunicorn's workers) are re-parented to us,
    not to init, so we can stop them when their parent dies (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def main() -> int:
    try:
        settings = Settings.from_env()
        plan = capacity.plan(settings)  # an unknown backend stops start-up here, in one line
        nginx = chosen_front(settings)
    except (SettingsError, FrontError) as exc:
        print(f"gen3d: invalid setting {exc}", file=sys.stderr, flush=True)
        return 2
    logging.config.dictConfig(logging_config(settings))
    if nginx is None and settings.front == "auto":
        log.warning("nginx not installed: gunicorn alone, without slow-client protection")
    _become_subreaper()
    supervisor = Supervisor(settings, plan, nginx)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    supervisor.start()
    return supervisor.wait()


if __name__ == "__main__":
    sys.exit(main())
