"""`make gpu-check`'s measurements on proxy full, bounded in time, written as few files.

    python -m gen3d.benchmarks.gpu_check --out OUT                      # a CUDA machine
    python -m gen3d.benchmarks.gpu_check --out OUT --device cpu --smoke # the rehearsal

Steps, each recorded (or recorded as skipped, with why) in one JSON document:
  1. weights: proxy full drawn on the device from seed 0 and written in fp16 (seconds);
  2. stages: each stage's latency at fp32, fp16 and bf16;
  3. batcher: batch 1, 2, 4, 8 through the server's Batcher, peak memory per batch;
  4. served: the real server at 1, 4, 16 clients, batching on and off, front or not;
  5. compile: cold compile vs warm start from the saved inductor cache.
`--smoke` runs every step at toy sizes (proxy tiny, short windows). Output, at most 8
files under OUT/<device>/ (`cpu` or `cuda-<gpu>`): gpucheck_<model>.json, three plots and
summary.md, the table also printed at the end. The document is rewritten after every
step, so a run stopped from outside still leaves what it measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gen3d.benchmarks import gpu_probes
from gen3d.benchmarks.backends import release
from gen3d.benchmarks.environment import device_slug, fingerprint
from gen3d.benchmarks.results_io import Recorder

SUITE = "gpucheck"
STAGE_PRECISIONS = ["fp32", "fp16", "bf16"]
BATCHES = [1, 2, 4, 8]
LEVELS = [1, 4, 16]
DEADLINE_S = 8 * 60  # the whole check, installation included, on an H100


@dataclass(frozen=True)
class Profile:
    """Sizes of one run: `full` on a GPU, `smoke` (toy sizes) for the rehearsal."""

    size: str
    steps: int  # per flow stage (full is 25 + 25: the stage timings give the full total)
    serve_precision: str  # batcher, server and compile
    stage_repeats: int
    batcher_rounds: int
    compile_stages: list[str]
    level_s: float
    level_warmup_s: float
    max_requests: int
    ready_timeout_s: float
    # the server's own warm-up (one batch per bucket 1, 2, 4, 8 at the default steps):
    # cheap for tiny, minutes for full, where the load's warm-up phase absorbs first calls
    server_warmup: bool
    # seconds a step needs at least, so a step that cannot finish is skipped, not cut
    reserve_s: dict[str, float]


FULL = Profile(
    size="full",
    steps=2,
    serve_precision="fp16",
    stage_repeats=5,
    batcher_rounds=3,
    compile_stages=["encoder", "generator_stage1", "generator_stage2", "decoder"],
    level_s=6.0,
    level_warmup_s=2.0,
    max_requests=300,
    ready_timeout_s=180.0,
    server_warmup=False,
    reserve_s={"stages": 40, "batcher": 40, "served": 120, "compile": 90},
)
SMOKE = Profile(
    size="tiny",
    steps=2,
    serve_precision="fp32",
    stage_repeats=2,
    batcher_rounds=2,
    compile_stages=["decoder"],  # inductor's C++ build of every stage takes minutes here
    level_s=1.0,
    level_warmup_s=0.3,
    max_requests=60,
    ready_timeout_s=60.0,
    server_warmup=True,
    reserve_s={"stages": 5, "batcher": 5, "served": 15, "compile": 25},
)


class Check:
    """One run: the profile, the deadline, the document being filled, and its writing."""

    def __init__(
        self, out: Path, device: str, profile: Profile, deadline: float, instance: str | None
    ) -> None:
        self.out, self.device, self.profile, self.deadline = out, device, profile, deadline
        env = fingerprint(device, instance)
        env["smoke"] = profile is SMOKE
        config = asdict(profile) | {"device": device, "backend": "proxy", "seed": 0}
        self.recorder = Recorder(SUITE, f"proxy-{profile.size}", env, config)
        self.folder = out / device_slug(env)
        self.sections: dict[str, Any] = {}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def step(self, name: str, run: Callable[[], Any], progress: Callable[[str], None]) -> None:
        reserve = self.profile.reserve_s.get(name, 0.0)
        if self.left() < reserve:
            why = f"time budget: {self.left():.0f} s left, the step needs ~{reserve:.0f} s"
            self.recorder.skip(name, why)
            progress(f"[gpu-check] SKIPPED {name}: {why}")
            return
        started = time.monotonic()
        progress(f"[gpu-check] {name} ...")
        try:
            self.sections[name] = run()
        except Exception as exc:  # one failed step is recorded; the others still run
            line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            self.recorder.skip(name, f"failed: {type(exc).__name__}: {line}")
            progress(f"[gpu-check] FAILED {name}: {type(exc).__name__}: {line}")
            traceback.print_exc(file=sys.stderr)
        progress(f"[gpu-check] {name}: {time.monotonic() - started:.1f} s")
        self.write()

    def write(self) -> Path:
        self.recorder.summary = self.sections
        return self.recorder.write(self.out)


def run_check(
    out: Path,
    device: str,
    smoke: bool,
    budget_s: float,
    instance: str | None = None,
    progress: Callable[[str], None] = print,
) -> Path:
    profile = SMOKE if smoke else FULL
    check = Check(out, device, profile, time.monotonic() + budget_s, instance)
    env = check.recorder.environment
    progress(
        f"[gpu-check] {device} ({env.get('gpu_name') or env.get('cpu_model')}), torch "
        f"{env.get('torch')}, proxy {profile.size}, {budget_s:.0f} s budget"
    )
    work = Path(tempfile.mkdtemp(prefix="gen3d-gpucheck-"))
    model_dir = work / f"proxy-{profile.size}"
    p = profile
    try:
        check.step("weights", lambda: _weights(p, device, model_dir), progress)
        if "weights" not in check.sections:
            return check.write()  # nothing else can run without a model
        check.step("stages", lambda: _stages(check, model_dir, progress), progress)
        check.step(
            "batcher",
            lambda: gpu_probes.batcher_throughput(
                model_dir,
                device,
                p.serve_precision,
                p.steps,
                BATCHES,
                p.batcher_rounds,
                check.deadline - p.reserve_s["served"] - p.reserve_s["compile"],
            ),
            progress,
        )
        check.step(
            "served",
            lambda: gpu_probes.served(
                model_dir,
                device,
                p.serve_precision,
                p.steps,
                LEVELS,
                p.level_s,
                p.level_warmup_s,
                p.max_requests,
                p.ready_timeout_s,
                p.server_warmup,
                check.deadline - 10,
                progress,
            ),
            progress,
        )
        check.step(
            "compile",
            lambda: gpu_probes.compile_cache(
                model_dir,
                device,
                p.serve_precision,
                p.steps,
                p.compile_stages,
                max(10.0, check.left() - 5),  # the hard stop is 40 s past the budget
            ),
            progress,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        path = check.write()
    from gen3d.benchmarks.gpu_report import summary_lines, write_plots

    doc = check.recorder.document()
    write_plots(doc, check.folder)
    lines = summary_lines(doc)
    (check.folder / "summary.md").write_text("\n".join(lines) + "\n")
    progress("\n".join(lines))
    files = sorted(p.name for p in check.folder.iterdir() if p.is_file())
    progress(f"[gpu-check] {len(files)} file(s) in {check.folder}: {', '.join(files)}")
    return path


def _weights(profile: Profile, device: str, model_dir: Path) -> dict[str, Any]:
    import torch

    from gen3d.benchmarks.fast_weights import write_model_dir
    from gen3d.serve.backends.proxy.model import config_for

    return write_model_dir(config_for(profile.size), 0, model_dir, device, torch.float16)


def _stages(check: Check, model_dir: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for precision in STAGE_PRECISIONS:
        later = ("batcher", "served", "compile")
        if check.left() < sum(check.profile.reserve_s[k] for k in later):
            out[precision] = {"skipped": "time budget kept for the later steps"}
            continue
        try:
            r = gpu_probes.stage_latency(
                model_dir,
                check.device,
                precision,
                check.profile.steps,
                check.profile.stage_repeats,
            )
        except Exception as exc:  # e.g. bf16 on a T4: recorded, the others still run
            release()
            out[precision] = {"skipped": f"{type(exc).__name__}: {exc}"[:300]}
            progress(f"  {precision}: skipped ({out[precision]['skipped']})")
            continue
        release()  # this precision's model is gone: free its memory before the next
        out[precision] = r
        ms = {k: round(v["median"], 2) for k, v in r["stages_ms"].items()}
        progress(f"  {precision}: {ms} ms; predict {r['predict_ms']['median']:.0f} ms")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gen3d.benchmarks.gpu_check",
        description="The GPU check's measurements on proxy full (make gpu-check runs this).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=os.environ.get("OUT"),
        help="output folder (default $OUT); results in OUT/<device>/",
    )
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument(
        "--smoke", action="store_true", help="every step at toy sizes (proxy tiny, short windows)"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=DEADLINE_S,
        help="seconds this run may take (steps that would not fit are skipped)",
    )
    parser.add_argument(
        "--instance-type", default=None, help="recorded with the results, e.g. ml.g5.xlarge"
    )
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("give --out or set OUT")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print(
                f"gpu-check: no CUDA device visible (torch {torch.__version__}, "
                f"{torch.version.cuda or 'a CPU-only build'}); use --device cpu --smoke "
                "for the rehearsal",
                file=sys.stderr,
            )
            return 2
    run_check(args.out, args.device, args.smoke, args.budget_s, args.instance_type)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
