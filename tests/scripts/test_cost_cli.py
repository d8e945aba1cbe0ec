"""`gen3d cost` end to end: the done-when command, --bench, --prices, formats, errors,
and `gen3d cost report` (markdown + a PNG read back by Pillow)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from gen3d.cli.main import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BENCH = FIXTURES / "cost_bench_results.json"
GEN3D = Path(sys.executable).with_name("gen3d")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["cost", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def options_of(payload: dict, index: int = 0) -> dict[str, dict]:
    return {o["option"]: o for o in payload["results"][index]["options"]}


def test_done_when_command_through_the_console_script() -> None:
    argv = [
        str(GEN3D), "cost", "--images-per-month", "100", "--seconds-per-image", "60",
        "--instance-type", "ml.g4dn.xlarge", "--backend", "sam3d", "--format", "json",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    payload = json.loads(done.stdout)
    by_option = options_of(payload)
    assert by_option["realtime_always_on"]["compute_usd"] == pytest.approx(537.28, abs=0.01)
    assert by_option["serverless"]["feasible"] is False
    assert any("GPU" in r for r in by_option["serverless"]["reasons"])
    details = by_option["async_scale_to_zero"]["details"]
    assert details["bursts_per_month"] > 50
    assert details["billed_hours"] > details["processing_hours"]
    assert details["first_result_wait_s"] == 720.0
    assert payload["break_even_images_per_month"] > 1000
    assert "sagemaker.realtime.ml.g4dn.xlarge" in payload["prices_used"]


def test_bench_file_supplies_seconds_per_image(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "--images-per-month", "100", "--bench", str(BENCH), "--instance-type",
        "ml.g5.xlarge", "--format", "json",
    )  # fmt: skip
    assert code == 0
    payload = json.loads(out)
    assert payload["workload"]["seconds_per_image"] == 30.25
    assert payload["workload"]["instance_type"] == "ml.g5.xlarge"
    assert payload["bench_entry"]["precision"] == "bf16"


def test_bench_picks_fastest_entry_for_the_priced_instance(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(
        capsys, "--images-per-month", "10", "--bench", str(BENCH), "--format", "json"
    )
    assert code == 0
    payload = json.loads(out)
    assert payload["workload"]["instance_type"] == "ml.g4dn.xlarge"
    assert payload["workload"]["seconds_per_image"] == 48.5  # fp16 beats fp32 (71 s)


def test_bench_with_no_match_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys, "--images-per-month", "10", "--bench", str(BENCH), "--instance-type", "ml.g6.xlarge"
    )
    assert code == 2 and out == ""
    assert err.startswith("gen3d cost: no benchmark entry for sam3d on ml.g6.xlarge")
    assert "Traceback" not in err


def test_cpu_bench_entry_for_gpu_backend_warns(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        capsys, "--images-per-month", "10", "--bench", str(BENCH), "--backend", "proxy"
    )
    assert code == 0
    assert "measured on CPU" in err


def test_prices_override_changes_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    override = tmp_path / "prices.json"
    override.write_text(
        json.dumps({"entries": {"sagemaker.realtime.ml.g4dn.xlarge": {"value": 2.0}}})
    )
    code, out, _ = run_cli(
        capsys, "--images-per-month", "100", "--seconds-per-image", "60", "--prices",
        str(override), "--format", "json",
    )  # fmt: skip
    assert code == 0
    payload = json.loads(out)
    assert options_of(payload)["realtime_always_on"]["compute_usd"] == 1460.0
    assert payload["prices_overridden"] == ["sagemaker.realtime.ml.g4dn.xlarge"]


def test_csv_and_table_formats(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "--images-per-month", "10,1000", "--seconds-per-image", "60", "--format", "csv"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 12
    serverless_rows = [r for r in rows if r["option"] == "serverless"]
    assert all(r["feasible"] == "False" and "GPU" in r["reasons"] for r in serverless_rows)
    code, out, _ = run_cli(capsys, "--images-per-month", "100", "--seconds-per-image", "60")
    assert code == 0
    assert "INFEASIBLE" in out and "$537.28" in out and "break-even" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seconds-per-image", "60"], "missing --images-per-month N; e.g."),
        (["--images-per-month", "100"], "missing --seconds-per-image S (or --bench"),
        # nothing given: every required flag named at once, not one per try
        ([], "missing --images-per-month N and --seconds-per-image S (or --bench"),
        (
            ["--images-per-month", "10", "--seconds-per-image", "60", "--prices", "/nope.json"],
            "not found",
        ),
        (
            ["--images-per-month", "10", "--seconds-per-image", "60", "--instance-type", "ml.x"],
            "no price",
        ),
    ],
)
def test_user_mistakes_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_report_writes_markdown_and_a_readable_plot(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run_cli(capsys, "report", "--out", str(tmp_path))
    assert code == 0 and "cost.md" in out
    md = (tmp_path / "cost.md").read_text()
    assert "ml.g4dn.xlarge**: always-on becomes cheaper" in md
    assert "ml.g5.xlarge**: always-on becomes cheaper" in md
    assert "Where the original plan was wrong" in md
    assert "| 10,000/month |" in md
    with Image.open(tmp_path / "cost.png") as image:
        assert image.format == "PNG"
        assert image.width > 1000 and image.height > 500
