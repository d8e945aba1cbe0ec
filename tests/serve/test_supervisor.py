"""`serve` with its front: if nginx or gunicorn dies, the whole server exits (the platform
then replaces the container) and leaves no process behind; its log stays JSON."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from gen3d.serve.local_server import child_pids, command_line, gunicorn_master
from gen3d.serve.process.front import nginx_binary

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="needs nginx (make front)")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


@pytest.mark.parametrize("victim", ["nginx", "gunicorn"])
def test_one_child_dying_stops_the_server(start_gen3d_server, victim: str) -> None:
    server = start_gen3d_server({"GEN3D_WARMUP": "0", "MODEL_SERVER_WORKERS": "1"})
    root = server.process.pid
    if victim == "nginx":
        (target,) = [p for p in child_pids(root) if "nginx" in command_line(p)]
    else:
        target = gunicorn_master(server)
    tree = [root, *child_pids(root)]
    tree += [g for c in tree[1:] for g in child_pids(c)]
    os.kill(target, signal.SIGKILL)
    assert server.process.wait(30) != 0  # a dead container, never half a server
    deadline = time.monotonic() + 10
    while any(alive(p) for p in tree[1:]):
        assert time.monotonic() < deadline, [p for p in tree if alive(p)]
        time.sleep(0.1)
    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    docs = [json.loads(line) for line in lines]  # every line JSON, nginx's included
    assert any(victim in d.get("message", "") and "exited" in d["message"] for d in docs)
