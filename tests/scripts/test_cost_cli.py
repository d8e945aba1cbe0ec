"""`gen3d cost` end to end: the done-when command, --bench, --prices, formats, errors,
and `gen3d cost report` (markdown + a PNG read back by Pillow)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from gen3d.cli.main import main
from gen3d.cost.workload import SAM3D_STARTUP_S, Assumptions

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
    # trigger (60 s) + start-up (the measured sam3d image's pull and the rest) + service
    assert details["first_result_wait_s"] == 60.0 + SAM3D_STARTUP_S + 60.0
    assert payload["break_even_images_per_month"] > 1000
    assert "sagemaker.realtime.ml.g4dn.xlarge" in payload["prices_used"]


def test_done_when_table_quotes_the_3_minute_tail_next_to_the_15_minute_one() -> None:
    # sam3d on ml.g5.xlarge: a configuration gen3d deploy accepts (24 GB GPU, staged)
    argv = [
        str(GEN3D), "cost", "--images-per-month", "100", "--seconds-per-image", "60",
        "--instance-type", "ml.g5.xlarge", "--backend", "sam3d", "--idle-minutes", "3",
        "--startup-s", "600",  # the hand-computed case
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "async scale-in after 3 idle min" in out
    tail = next(line for line in out.splitlines() if "async idle tail" in line)
    # the bill includes the ECR storage of the sam3d image (5.6 GB, measured)
    assert "3 min of empty backlog (~210 s billed) -> 23.42 billed h, $34.29" in tail
    assert "target tracking's own scale-in (900 s) -> 41.29 h, $59.36" in tail
    assert "saving $25.07/month" in tail
    # each option with its first-result latency, and the cheapest per waiting tolerance
    assert "first result" in out.splitlines()[3]
    assert "wait 60 s to 11.0 min: Real-time, always on ($1,028.78/month)" in out
    assert "wait 12.0 min to 24.3 h: Asynchronous, scale to zero ($34.29/month)" in out
    # the daily batch job starts with the measured sam3d image's pull (not the 600 s given)
    assert "wait 24.3 h or more: Batch transform, one job a day ($13.37/month)" in out


def test_idle_minutes_and_startup_reach_the_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "--images-per-month", "100", "--seconds-per-image", "60", "--idle-minutes",
        "10", "--startup-s", "300", "--format", "json",
    )  # fmt: skip
    assert code == 0
    payload = json.loads(out)
    assert payload["scaling"]["idle_minutes"] == 10
    assert payload["scaling"]["idle_tail_s"] == 630.0
    assert payload["assumptions"]["startup_s"] == 300.0
    result = payload["results"][0]
    tail = result["async_idle_tail"]
    assert tail["empty_backlog_alarm"]["idle_tail_s"] == 630.0
    assert tail["target_tracking_scale_in"]["idle_tail_s"] == 900.0
    assert tail["saving_usd"] > 0
    async_option = options_of(payload)["async_scale_to_zero"]
    assert async_option["first_result_s"] == 60 + 300 + 60
    assert result["cheapest_by_wait"][0] == {"wait_s": 60.0, "option": "realtime_always_on"}


def test_help_names_the_start_up_default_and_its_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["cost", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"default {Assumptions.startup_s:g}: the sam3d image's pull" in text
    assert "an estimate, not a measurement" in text
    # argparse may wrap the page name at its hyphens
    assert "endpoint-auto-scaling-zero-instances.html" in re.sub(r"-\s+", "-", text)
    assert "--idle-minutes M" in text


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
        capsys, "--images-per-month", "10", "--bench", str(BENCH), "--format", "json",
        "--instance-type", "ml.g4dn.xlarge",
    )  # fmt: skip
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
        str(override), "--format", "json", "--instance-type", "ml.g4dn.xlarge",
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
    # the default workload is sam3d on ml.g6.2xlarge (1.222 x 730 h always on)
    assert "INFEASIBLE" in out and "$892.06" in out and "break-even" in out
    assert "deploy refuses" not in out


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


@pytest.mark.parametrize("minutes", ["0", "61", "2.5"])
def test_idle_minutes_outside_1_to_60_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], minutes: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["cost", "--images-per-month", "10", "--seconds-per-image", "60",
              "--idle-minutes", minutes])  # fmt: skip
    assert exit_info.value.code == 2
    assert "--idle-minutes" in capsys.readouterr().err


def test_report_writes_markdown_and_a_readable_plot(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run_cli(capsys, "report", "--out", str(tmp_path))
    assert code == 0 and "cost.md" in out
    md = (tmp_path / "cost.md").read_text()
    # instances gen3d deploy accepts for sam3d, host memory included
    for instance in ("ml.g6.2xlarge", "ml.g6e.xlarge"):  # a verdict for each
        verdict = r"\*\*: (always-on becomes cheaper|asynchronous scale-to-zero stays cheaper)"
        assert re.search(re.escape(instance) + verdict, md), instance
    assert "deploy refuses" not in md.split("## Where the original plan was wrong")[0]
    assert "Where the original plan was wrong" in md
    assert "| 10,000/month |" in md
    assert "## Scale-in after the last result" in md and "| **saving per month** |" in md
    assert "## First result vs monthly cost" in md
    assert re.search(r"wait [\d.]+ min to 24\.\d h: Asynchronous, scale to zero", md)
    with Image.open(tmp_path / "cost.png") as image:
        assert image.format == "PNG"
        assert image.width > 1000 and image.height > 500
