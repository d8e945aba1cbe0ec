"""gen3d optimize end to end on a tiny proxy: artifact, manifest, measured report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gen3d.cli.main import main
from gen3d.model_opt.memory_plan import safetensors_tensor_bytes
from gen3d.serve.artifact.manifest import verify


@pytest.mark.slow
@pytest.mark.heavy
def test_int8_dynamic_writes_manifest_and_report(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "int8"
    code = main(
        [
            "optimize",
            "--backend",
            "proxy",
            "--model-dir",
            str(tiny_dir),
            "--out",
            str(out),
            "--quantize",
            "int8-dynamic",
            "--int8-engine",
            "pytorch",
            "--device",
            "cpu",
            "--runs",
            "2",
            "--max-batch-size",
            "2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    manifest = verify(out, "proxy")  # every file, the report included, hashes right
    assert manifest["applied"]["label"] == "fp32+int8-dynamic(pytorch)"
    assert {"torch", "torchao", "safetensors"} <= set(manifest["libraries"])
    assert "report/report.json" in manifest["files"]
    report = json.loads((out / "report" / "report.json").read_text())
    fp32, int8 = report["rows"]
    assert fp32["label"] == "fp32" and int8["label"] == "fp32+int8-dynamic(pytorch)"
    # Weight bytes are the tensors in the files, re-read from the safetensors headers.
    stored = sum(safetensors_tensor_bytes(out / "model.safetensors").values())
    assert int8["weight_bytes"] == stored
    assert int8["weight_ratio_vs_fp32"] == stored / fp32["weight_bytes"]
    # Linear weights as int8, and the convs / patch and positional embeddings as int8
    # storage: the target of <= 0.3x fp32 (tiny measures 0.26).
    assert int8["weight_ratio_vs_fp32"] <= 0.3
    assert "encoder.patch_embed.weight" in int8["int8_stored_tensors"]
    assert fp32["int8_stored_tensors"] == []
    drift = int8["drift_vs_fp32"]
    assert 0 < drift["chamfer_mean"] < 0.05 and 0.9 < drift["volume_iou_min"] < 1.0
    assert drift["logits_max_abs_err"] > 0 and fp32["drift_vs_fp32"]["chamfer_max"] == 0
    for row in report["rows"]:
        assert row["latency_ms_per_sample_batch1"] > 0 and row["peak_memory_bytes"] > 0
    assert "| fp32+int8-dynamic(pytorch) |" in (out / "report" / "report.md").read_text()


def test_cli_refusals(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    base = ["optimize", "--model-dir", str(tiny_dir), "--out", str(tmp_path / "o")]
    assert (
        main(
            [*base, "--precision", "fp16", "--quantize", "int8-dynamic", "--int8-engine", "pytorch"]
        )
        == 2
    )
    assert main([*base, "--out", str(tiny_dir)]) == 2
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    assert main([*base[:-1], str(tmp_path / "busy")]) == 2
    err = capsys.readouterr().err
    assert "needs --device cpu, --precision fp32" in err
    assert "must differ" in err and "holds no gen3d artifact" in err
