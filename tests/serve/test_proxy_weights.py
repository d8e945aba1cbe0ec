"""`gen3d proxy init` and the proxy's safetensors file: deterministic, readable by the
safetensors library, shaped like the config says."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from gen3d.cli.main import main
from gen3d.serve.backends.proxy.model import build_model, config_for, parameter_counts
from gen3d.serve.backends.proxy.weights import CONFIG_FILE, WEIGHTS_FILE, read_config

REPO = Path(__file__).resolve().parents[2]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _init_in_subprocess(out: Path, seed: int) -> None:
    # A fresh interpreter each time: catches dependence on hash seeds or global state.
    cmd = [
        sys.executable,
        "-m",
        "gen3d.cli.main",
        "proxy",
        "init",
        "--size",
        "tiny",
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout


@pytest.mark.slow
@pytest.mark.heavy
def test_same_seed_gives_byte_identical_file(tmp_path: Path) -> None:
    _init_in_subprocess(tmp_path / "a", 7)
    _init_in_subprocess(tmp_path / "b", 7)
    # another seed differs: in this process (two fresh interpreters made the point above)
    assert (
        main(["proxy", "init", "--size", "tiny", "--seed", "8", "--out", str(tmp_path / "c")]) == 0
    )
    assert _sha(tmp_path / "a" / WEIGHTS_FILE) == _sha(tmp_path / "b" / WEIGHTS_FILE)
    assert (tmp_path / "a" / CONFIG_FILE).read_text() == (tmp_path / "b" / CONFIG_FILE).read_text()
    assert _sha(tmp_path / "a" / WEIGHTS_FILE) != _sha(tmp_path / "c" / WEIGHTS_FILE)


def test_file_is_standard_safetensors_matching_the_config(tmp_path: Path) -> None:
    assert main(["proxy", "init", "--size", "tiny", "--seed", "3", "--out", str(tmp_path)]) == 0
    config, seed = read_config(tmp_path)
    assert seed == 3 and config == config_for("tiny")
    expected = build_model(config, "meta").state_dict()
    with safe_open(str(tmp_path / WEIGHTS_FILE), framework="pt") as f:
        assert f.metadata()["size"] == "tiny" and f.metadata()["seed"] == "3"
        assert set(f.keys()) == set(expected)
        total = 0
        for name in f.keys():
            t = f.get_tensor(name)
            assert t.dtype == torch.float32 and t.shape == expected[name].shape
            total += t.numel()
        weight = f.get_tensor("generator_stage1.blocks.0.self_attn.qkv.weight")
        assert 0.015 < float(weight.std()) < 0.025  # N(0, 0.02), not zeros or garbage
        assert float(f.get_tensor("encoder.norm.weight").min()) == 1.0
        assert float(f.get_tensor("encoder.norm.bias").abs().max()) == 0.0
    assert total == parameter_counts(config)["total"]
    stored = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert stored["backend"] == "proxy" and stored["config"]["size"] == "tiny"


def test_full_size_matches_sam3d_scale_without_allocating() -> None:
    counts = parameter_counts(config_for("full"))  # meta device: no memory used
    assert 290e6 < counts["encoder"] < 320e6  # DINOv2 ViT-L/14
    assert 1.1e9 < counts["generator_stage1"] < 1.35e9  # SAM 3D geometry model: 1.2B
    full = config_for("full")
    assert (full.image_size, full.patch_size, full.tokens) == (518, 14, 4096)
    assert (full.stage1_steps, full.stage2_steps) == (25, 25)


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["proxy", "init", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and "Traceback" not in err
    assert main(["proxy", "init", "--seed", "-1", "--out", str(tmp_path / "m")]) == 2
    assert main(["proxy", "describe", "--size", "full", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"]["total"] == parameter_counts(config_for("full"))["total"]


@pytest.mark.slow  # traces the proxy model at several settings
def test_flop_counts_follow_steps_and_cfg() -> None:
    from gen3d.serve.backends.proxy.flow import flop_counts

    base = flop_counts(config_for("tiny"))
    assert base["total"] == sum(v for k, v in base.items() if k != "total")
    assert all(base[k] > 0 for k in ("encoder", "generator_stage1", "decoder"))
    doubled = flop_counts(config_for("tiny", stage1_steps=8))
    # twice the steps: twice the stage-1 work (the time embedding is per step, too)
    assert doubled["generator_stage1"] == 2 * base["generator_stage1"]
    assert doubled["generator_stage2"] == base["generator_stage2"]
    no_cfg = flop_counts(config_for("tiny", stage1_cfg=0.0))
    assert no_cfg["generator_stage1"] * 2 == base["generator_stage1"]
