"""Cold-start suite: process start -> first /ping 200, split into its parts.

The parts come from the server's own log (serve/model/runtime.py logs "loaded backend ... in
X s" and "warm-up done in X s", each line time-stamped to the millisecond):
  import   = process start -> start of the backend load (gunicorn boot, fork, imports)
  load     = backend.load (weights read and placed)
  warm-up  = one synthetic batch per batch bucket
  other    = the rest: batcher start and the /ping poll's granularity (10 ms)
A compressed artifact (model.tar.gz, as SageMaker ships model data) adds its
extraction time, measured here with tarfile exactly as SageMaker's agent would unpack.
"""

from __future__ import annotations

import datetime as dt
import http.client
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen3d.benchmarks import variants
from gen3d.benchmarks.backends import default_cache, prepare_model_dir, server_env, settings_for
from gen3d.benchmarks.environment import fingerprint
from gen3d.benchmarks.results_io import Recorder
from gen3d.benchmarks.stats import summarize
from gen3d.benchmarks.suite_config import SuiteConfig
from gen3d.serve.artifact.variant import Variant
from gen3d.serve.local_server import start_server

_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "
LOADED = re.compile(_STAMP + r".*loaded backend \S+ in ([\d.]+) s", re.MULTILINE)
WARMED = re.compile(_STAMP + r".*warm-up done in ([\d.]+) s", re.MULTILINE)


@dataclass(kw_only=True)
class ColdstartConfig(SuiteConfig):
    precision: str = "fp32"
    repeats: int = 3
    compressed: bool = True  # also start from a model.tar.gz (proxy only: silhouette has no files)
    compile_cache: bool = True  # proxy: compiled artifact started with / without its cache
    compile_repeats: int = 1  # a start without the cache compiles: ~25 s each on 2 cores
    compile_max_batch: int = 2  # buckets compiled (and warmed) for; fewer = shorter builds
    ready_timeout_s: float = 300.0


def parse_log(text: str) -> dict[str, float]:
    """Wall-clock stamps and durations of load and warm-up, from the server's log."""
    out: dict[str, float] = {}
    loaded = LOADED.search(text)
    if loaded:
        out["load_s"] = float(loaded.group(2))
        out["loaded_at"] = _epoch(loaded.group(1))
    warmed = WARMED.search(text)
    if warmed:
        out["warmup_s"] = float(warmed.group(2))
        out["warmed_at"] = _epoch(warmed.group(1))
    return out


def _epoch(stamp: str) -> float:
    # logging's asctime is local time with milliseconds after a comma
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _ping_ok(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def measure_once(env: dict[str, str], log_path: Path, timeout_s: float) -> dict[str, Any]:
    """Start a server, poll /ping every 10 ms until 200, split the time, stop it."""
    started_wall, started = time.time(), time.perf_counter()
    server = start_server(env, log_path=log_path)
    try:
        while not _ping_ok(server.port):
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited during start-up:\n{server.log()}")
            if time.perf_counter() - started > timeout_s:
                raise TimeoutError(f"not ready after {timeout_s:.0f} s:\n{server.log()}")
            time.sleep(0.01)
        ready_s = time.perf_counter() - started
    finally:
        server.stop()
    parsed = parse_log(log_path.read_text(errors="replace"))
    run: dict[str, Any] = {"ready_s": ready_s}
    if "load_s" in parsed:
        # the log line is written when loading ends: start of load = stamp - duration
        run["import_s"] = max(0.0, parsed["loaded_at"] - parsed["load_s"] - started_wall)
        run["load_s"] = parsed["load_s"]
        run["warmup_s"] = parsed.get("warmup_s", 0.0)
        run["other_s"] = max(0.0, ready_s - run["import_s"] - run["load_s"] - run["warmup_s"])
    return run


def make_tarball(model_dir: Path, out: Path) -> Path:
    """model.tar.gz with the model files at its root, as SageMaker's ModelDataUrl holds,
    written by model_opt's packager (`gen3d package`)."""
    from gen3d.model_opt.package import collect, write_tar_gz

    return write_tar_gz(collect(model_dir), out)


def extract(tarball: Path, into: Path) -> float:
    started = time.perf_counter()
    with tarfile.open(tarball, "r:gz") as tar:
        tar.extractall(into, filter="data")
    return time.perf_counter() - started


def _summaries(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("ready_s", "import_s", "load_s", "warmup_s", "other_s", "extract_s", "total_s")
    return {k: summarize([r[k] for r in runs if k in r]) for k in keys if any(k in r for r in runs)}


def run_coldstart_suite(
    config: ColdstartConfig, out_root: Path, progress: Callable[[str], None] = print
) -> Path:
    env = fingerprint(config.device, config.instance_type)
    doc_config = config.document()
    recorder = Recorder("coldstart", config.name, env, doc_config)
    model_dir = prepare_model_dir(config.backend, config.size, config.model_dir)
    if config.backend == "silhouette":
        model_dir.mkdir(parents=True, exist_ok=True)
    settings = settings_for(config.backend, model_dir, config.device, config.precision, 8)
    # text logs: their asctime stamps (ms) are what parse_log reads the load/warm-up times from
    server_settings = {**server_env(settings), "GEN3D_LOG_FORMAT": "text"}
    with tempfile.TemporaryDirectory(prefix="gen3d-coldstart-") as tmp_name:
        tmp = Path(tmp_name)
        plain = [
            measure_once(server_settings, tmp / f"plain-{i}.log", config.ready_timeout_s)
            for i in range(config.repeats)
        ]
        recorder.add(
            {
                "backend": config.backend,
                "artifact": "plain directory",
                "compile_cache": None,
                **_summaries(plain),
                "runs": plain,
            }
        )
        progress(_line(config.name, "plain directory", plain))
        if config.compressed and config.backend != "silhouette":
            tarball = make_tarball(model_dir, tmp / "model.tar.gz")
            runs = []
            for i in range(config.repeats):
                target = tmp / f"extracted-{i}"
                extract_s = extract(tarball, target)
                env_i = {**server_settings, "GEN3D_MODEL_DIR": str(target)}
                run = measure_once(env_i, tmp / f"tgz-{i}.log", config.ready_timeout_s)
                run["extract_s"] = extract_s
                run["total_s"] = extract_s + run["ready_s"]
                runs.append(run)
                shutil.rmtree(target)
            recorder.add(
                {
                    "backend": config.backend,
                    "artifact": "model.tar.gz",
                    "artifact_bytes": tarball.stat().st_size,
                    "compile_cache": None,
                    **_summaries(runs),
                    "runs": runs,
                }
            )
            progress(_line(config.name, "model.tar.gz", runs))
            recorder.notes.append(
                "model.tar.gz written by model_opt's packager (gen3d package) from the plain "
                "directory"
            )
        if config.backend == "silhouette":
            recorder.skip("compile cache on/off", "silhouette has no network to compile")
        elif config.compile_cache:
            _compile_cache_runs(config, model_dir, server_settings, tmp, recorder, progress)
    return recorder.write(out_root)


def _compile_cache_runs(
    config: ColdstartConfig,
    model_dir: Path,
    base_env: dict[str, str],
    tmp: Path,
    recorder: Recorder,
    progress: Callable[[str], None],
) -> None:
    """The same compiled artifact (gen3d optimize --compile), started with its shipped
    inductor cache and without it (--no-compile-cache: the server compiles at start).
    Every start gets a fresh, empty TORCHINDUCTOR_CACHE_DIR, so nothing is warm from a
    previous run; the server warms (and so compiles) batch buckets up to
    compile_max_batch."""
    batch = config.compile_max_batch
    variant = Variant(config.precision, "none", None, True)
    for label, ship_cache in (
        ("compiled, with shipped cache", True),
        ("compiled, no cache (compiles at start)", False),
    ):
        name = "compiled-cache" if ship_cache else "compiled-nocache"
        try:
            artifact = variants.build_artifact(
                model_dir,
                f"{name}-b{batch}",
                variant,
                config.device,
                default_cache(),
                max_batch_size=batch,
                ship_compile_cache=ship_cache,
            )
        except (RuntimeError, ValueError) as exc:
            recorder.skip(label, str(exc))
            progress(f"  skip {label}: {exc}")
            continue
        runs = []
        for i in range(config.compile_repeats):
            scratch = tmp / f"inductor-{name}-{i}"
            scratch.mkdir()
            env = {
                **base_env,
                "GEN3D_MODEL_DIR": str(artifact),
                "GEN3D_MAX_BATCH_SIZE": batch,
                "TORCHINDUCTOR_CACHE_DIR": str(scratch),
            }
            runs.append(measure_once(env, tmp / f"{name}-{i}.log", config.ready_timeout_s))
        recorder.add(
            {
                "backend": config.backend,
                "artifact": label,
                "compile_cache": ship_cache,
                "max_batch_size": config.compile_max_batch,
                **_summaries(runs),
                "runs": runs,
            }
        )
        progress(_line(config.name, label, runs))


def _line(name: str, artifact: str, runs: list[dict[str, Any]]) -> str:
    s = _summaries(runs)

    def med(key: str) -> float:
        return s.get(key, {}).get("median", float("nan"))

    extra = f", extract {med('extract_s'):.2f} s" if "extract_s" in s else ""
    return (
        f"  {name} ({artifact}): ready {med('ready_s'):.2f} s = import {med('import_s'):.2f}"
        f" + load {med('load_s'):.2f} + warm-up {med('warmup_s'):.2f}"
        f" + other {med('other_s'):.2f}{extra}"
    )
