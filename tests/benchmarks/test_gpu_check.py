"""The GPU check's parts that run here: the wheel set, the offline installer's staleness
check, the fast weights, two probes on proxy tiny, and the report's GPU tables.
The whole script runs in `make gpu-rehearsal` (CI), offline, at toy sizes."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import struct
import sys
import time
import zipfile
from pathlib import Path

import pytest

from gen3d.benchmarks import gpu_install, gpu_probes, gpu_runtime
from gen3d.benchmarks.environment import fingerprint
from gen3d.benchmarks.fast_weights import write_model_dir
from gen3d.benchmarks.report import build_report
from gen3d.benchmarks.results_io import Recorder
from gen3d.serve.backends.proxy.model import config_for
from gen3d.serve.backends.proxy.weights import WEIGHTS_FILE

REPO = Path(__file__).resolve().parents[2]


def test_wheels_are_the_runtime_the_target_lacks() -> None:
    wanted = gpu_runtime.missing("3.12")
    there = gpu_runtime.closure(list(gpu_runtime.PREINSTALLED), "3.12")
    assert {"flask", "gunicorn", "werkzeug", "matplotlib", "trimesh"} <= set(wanted)
    assert not set(wanted) & set(there)  # nothing the target already has
    assert {"torch", "numpy", "jinja2", "scipy"} <= set(there)  # jinja2 comes with torch
    assert "boto3" not in wanted and "botocore" not in wanted


def _wheel_of_checkout(path: Path, change: str | None = None) -> Path:
    """A wheel-shaped zip whose RECORD lists the checkout's sources (one entry altered)."""
    rows = []
    for prefix, folder in gpu_install.package_dirs(REPO).items():
        for source in sorted(folder.rglob("*.py")):
            inner = prefix + source.relative_to(folder).as_posix()
            data = source.read_bytes() + (b"# old\n" if inner == change else b"")
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            rows.append([inner, f"sha256={digest.decode()}", str(len(data))])
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("gen3d-0.1.0.dist-info/RECORD", buffer.getvalue())
    return path


def test_installer_refuses_a_project_wheel_older_than_the_checkout(tmp_path, capsys) -> None:
    fresh = _wheel_of_checkout(tmp_path / "fresh.whl")
    assert gpu_install.stale_files(fresh, REPO) == []
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel_of_checkout(wheels / "gen3d-0.1.0-py3-none-any.whl", "gen3d/serve/model/batching.py")
    assert gpu_install.main(["--wheels", str(wheels), "--target", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "serve/model/batching.py" in err and "rerun `make gpu-wheels`" in err
    assert not (tmp_path / "s").exists()  # nothing installed


def test_installer_without_a_project_wheel_says_what_to_run(tmp_path, capsys) -> None:
    assert gpu_install.main(["--wheels", str(tmp_path), "--target", str(tmp_path / "s")]) == 2
    assert "make gpu-wheels" in capsys.readouterr().err


def _safetensors_content(path: Path) -> tuple[dict, str]:
    """The parsed header and the sha256 of the tensor bytes (the library writes the
    header's metadata in no fixed order, so the file's own bytes may differ)."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length]), hashlib.sha256(raw[8 + length :]).hexdigest()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("proxy-tiny")
    write_model_dir(config_for("tiny"), 0, folder, "cpu")
    return folder


def test_fast_weights_are_seeded_and_load_in_the_server_backend(tiny_dir, tmp_path) -> None:
    again, other = tmp_path / "again", tmp_path / "other"
    timings = write_model_dir(config_for("tiny"), 0, again, "cpu")
    write_model_dir(config_for("tiny"), 1, other, "cpu")
    content = {d: _safetensors_content(d / WEIGHTS_FILE) for d in (tiny_dir, again, other)}
    assert content[tiny_dir] == content[again] != content[other]
    assert timings["dtype"] == "float16" and timings["weights_mb"] > 0
    stages = gpu_probes.stage_latency(tiny_dir, "cpu", "fp32", steps=1, repeats=1)
    assert set(stages["stages_ms"]) == {"encoder", "stage1_step", "stage2_step", "decoder"}
    assert all(v["median"] > 0 for v in stages["stages_ms"].values())
    assert stages["variant"] == "fp32" and stages["predict_ms"]["median"] > 0


def test_batcher_probe_forms_the_batches_it_reports(tiny_dir) -> None:
    rows = gpu_probes.batcher_throughput(
        tiny_dir, "cpu", "fp32", 1, [1, 2], rounds=2, deadline=time.monotonic() + 120
    )
    assert [r["batch"] for r in rows] == [1, 2]
    assert rows[0]["batches_formed"] == [1]
    assert max(rows[1]["batches_formed"]) == 2  # the Batcher put both requests together
    assert all(r["samples_per_s"] > 0 and r["peak_memory_mb"] > 0 for r in rows)


def test_report_has_a_table_per_gpu_and_marks_the_unmeasured(tiny_dir, tmp_path) -> None:
    batcher = gpu_probes.batcher_throughput(
        tiny_dir, "cpu", "fp32", 1, [1, 8], rounds=1, deadline=time.monotonic() + 120
    )
    env = fingerprint("cpu") | {"device": "cuda", "gpu_name": "NVIDIA A10G", "driver": "1"}
    config = {"size": "full", "seed": 0, "steps": 1, "serve_precision": "fp16"}
    recorder = Recorder("gpucheck", "proxy-full", env, config)
    recorder.summary = {"batcher": batcher}
    recorder.write(tmp_path / "results")
    readme = tmp_path / "README.md"
    build_report(tmp_path / "results", readme, tmp_path / "plots", tmp_path / "spi.json")
    text = readme.read_text()
    assert "## Results on `cuda-nvidia-a10g`" in text
    assert "### GPU check on NVIDIA A10G" in text
    assert "| NVIDIA T4 | ml.g4dn.xlarge | not measured |" in text
    assert "| NVIDIA A10G | - | measured |" in text
    ratio = batcher[1]["samples_per_s"] / batcher[0]["samples_per_s"]
    assert f"{ratio:.2f}x" in text  # the GPU batching target is judged on it
    assert (tmp_path / "plots" / "cuda-nvidia-a10g_gpucheck_batching.png").stat().st_size > 0


def test_rehearsal_target_sees_the_preinstalled_set_only(tmp_path) -> None:
    version = "{}.{}".format(*sys.version_info[:2])
    linked = gpu_runtime.link_preinstalled(tmp_path / "pre", version)
    names = {p.name for p in (tmp_path / "pre").iterdir()}
    assert {"torch", "numpy", "skimage", "safetensors"} <= names
    assert not {"flask", "gunicorn", "matplotlib", "gen3d"} & names
    assert "flask" not in linked and "torch" in linked


def test_a_spent_budget_skips_steps_with_why_and_still_writes(tmp_path, capsys) -> None:
    from gen3d.benchmarks.gpu_check import run_check

    path = run_check(tmp_path, "cpu", smoke=True, budget_s=0.5)
    doc = json.loads(path.read_text())
    assert doc["suite"] == "gpucheck" and doc["environment"]["smoke"] is True
    assert doc["summary"]["weights"]["weights_mb"] > 0  # the one step with no reserve
    skipped = {s["what"]: s["why"] for s in doc["skipped"]}
    assert set(skipped) == {"stages", "batcher", "served", "compile"}
    assert all(why.startswith("time budget") for why in skipped.values())
    files = sorted(p.name for p in path.parent.iterdir())
    assert "summary.md" in files and len(files) <= 8
    assert "skipped served: time budget" in capsys.readouterr().out  # the printed table
