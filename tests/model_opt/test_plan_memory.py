"""gen3d plan-memory: per-stage weights from safetensors headers, and the fit table."""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open

from gen3d.cli.main import main
from gen3d.model_opt.memory_plan import GPUS, plan, proxy_stages


def test_header_bytes_match_the_tensors(tiny_dir: Path) -> None:
    stages = proxy_stages(tiny_dir)
    with safe_open(str(tiny_dir / "proxy.safetensors"), framework="pt") as f:
        for name, stage in stages.items():
            tensors = [f.get_tensor(k) for k in f.keys() if k.startswith(name + ".")]
            assert stage.stored_bytes == sum(t.numel() * t.element_size() for t in tensors)
            assert stage.bytes_at("fp16", False) * 2 == stage.stored_bytes


def test_fit_rules(tiny_dir: Path) -> None:
    stages = proxy_stages(tiny_dir)
    rows = plan(stages, GPUS["t4"], activations_gib=1.0)
    assert len(rows) == 12
    assert all(not r["fits"] and "fp16" in r["why_not"] for r in rows if r["precision"] == "bf16")
    assert all(r["fits"] for r in rows if r["precision"] != "bf16")
    small = plan(stages, GPUS["a10g"], activations_gib=30.0)
    assert not any(r["fits"] for r in small)
    host = plan(stages, GPUS["a10g"], activations_gib=0.1, host_ram_gib=1.0)
    assert all("host needs" in r["why_not"] for r in host)


def test_cli_prints_fit_table(tiny_dir: Path, capsys) -> None:
    assert (
        main(["plan-memory", "--backend", "proxy", "--model-dir", str(tiny_dir), "--gpu", "t4"])
        == 0
    )
    out = capsys.readouterr().out
    assert "generator_stage1" in out and "ml.g4dn.xlarge" in out
    assert "fp16      yes   stage" in out and "no: no bf16" in out
    assert main(["plan-memory", "--model-dir", str(tiny_dir), "--gpu", "huge"]) == 2
    assert "use t4, a10g, l4, l40s, an instance type" in capsys.readouterr().err


def test_sam3d_mesh_stage_counts_the_flexicubes_grid(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from gen3d.model_opt.memory_plan import sam3d_stages

    hf = tmp_path / "checkpoints" / "hf"
    hf.mkdir(parents=True)
    save_file({"w": torch.zeros(4, 4)}, str(hf / "slat_decoder_mesh.safetensors"))
    save_file({"w": torch.zeros(4, 4)}, str(hf / "ss_generator.safetensors"))
    (hf / "slat_decoder_mesh.yaml").write_text("resolution: 2\nmodel_channels: 768\n")
    stages = sam3d_stages(tmp_path)
    # the grid upstream builds at resolution 2: 8^3 cubes x 8 ids, 9^3 vertices x 3, int64
    grid = (8**3 * 8 + 9**3 * 3) * 8
    assert stages["slat_decoder_mesh"].bytes_at("fp16", False) == 16 * 2 + grid
    assert stages["slat_decoder_mesh"].bytes_at("fp32", True) == 16 + grid  # int8: no scales
    assert stages["ss_generator"].bytes_at("fp16", False) == 16 * 2
    # the published config (resolution 96): the 4.65 GiB the offload moves
    (hf / "slat_decoder_mesh.yaml").write_text("resolution: 96\n")
    assert sam3d_stages(tmp_path)["slat_decoder_mesh"].fixed_bytes == 4_993_477_656
