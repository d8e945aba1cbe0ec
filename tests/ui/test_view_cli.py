"""`gen3d view`, without a browser: what it writes and how it refuses (the browser half is
in test_browser.py)."""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import trimesh

from gen3d.serve.ui.assets import MISSING_VIEWER, VIEWER_JS, viewer_installed


def gen3d_view(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "gen3d.cli", "view", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # starts `gen3d view` interpreters
@pytest.mark.skipif(not viewer_installed(), reason=MISSING_VIEWER)
def test_html_inlines_the_viewer_and_the_model_and_links_nothing_outside(tmp_path) -> None:
    box = tmp_path / "box.glb"
    glb = trimesh.creation.box().export(file_type="glb")
    box.write_bytes(glb)
    out = tmp_path / "box.html"
    done = gen3d_view(str(box), "--html", str(out))
    assert done.returncode == 0, done.stderr
    assert "opens offline" in done.stdout
    html = out.read_text()
    script = re.search(r'id="viewer-script">([A-Za-z0-9+/=\s]+)</script>', html)
    assert script and base64.b64decode(script.group(1)) == VIEWER_JS.read_bytes()
    model = re.search(r'src="data:model/gltf-binary;base64,([A-Za-z0-9+/=]+)"', html)
    assert model and base64.b64decode(model.group(1)) == glb
    assert not re.search(r'(src|href)="(https?:)?//', html)


@pytest.mark.slow  # starts `gen3d view` interpreters
def test_refuses_a_missing_file_and_a_file_that_is_no_model(tmp_path) -> None:
    missing = gen3d_view(str(tmp_path / "nope.glb"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    junk = tmp_path / "junk.glb"
    junk.write_bytes(b"\x00\x01\x02 not a model")
    refused = gen3d_view(str(junk), "--html", str(tmp_path / "junk.html"))
    assert refused.returncode == 2 and "not a GLB, PLY or OBJ file" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not Path(tmp_path / "junk.html").exists()


@pytest.mark.slow  # starts `gen3d view` interpreters
@pytest.mark.skipif(not viewer_installed(), reason=MISSING_VIEWER)
def test_the_server_stops_on_ctrl_c_even_when_started_with_sigint_ignored(tmp_path) -> None:
    # A job that a non-interactive shell starts with & inherits SIGINT ignored, and Python
    # then leaves it ignored: `gen3d view` used to keep serving after Ctrl-C (the browser
    # test's 10 s wait for it timed out in such a run). SIGTERM stops it too.
    box = tmp_path / "box.glb"
    box.write_bytes(trimesh.creation.box().export(file_type="glb"))
    stops = (signal.SIGINT, signal.SIGTERM)
    served = [  # both at once: each is an interpreter's start-up
        subprocess.Popen(
            [sys.executable, "-m", "gen3d.cli", "view", str(box), "--no-browser"],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        for _ in stops
    ]
    try:
        for process, stop in zip(served, stops, strict=True):
            url = process.stdout.readline().split(" at ")[1].split()[0]
            page = requests.get(url, timeout=30)
            assert page.status_code == 200 and "box.glb" in page.text
            process.send_signal(stop)
            assert process.wait(timeout=10) == 0, stop
    finally:
        for process in served:
            if process.poll() is None:
                process.kill()
                process.wait()
