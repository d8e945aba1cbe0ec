"""`gen3d bench`: model, server, cold-start, peer, overload, CPU and memory benchmarks, report.

gen3d bench all --device cpu --out benchmarks/results   # what `make bench` runs
gen3d bench report                                      # -> benchmarks/README.md + plots
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from gen3d.serve.backends import BUILTIN_NAMES

DEFAULT_OUT = Path("benchmarks/results")


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _choices(allowed: tuple[str, ...]) -> object:
    def parse(text: str) -> list[str]:
        values = [v.strip().lower() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(
                f"{', '.join(bad) or 'nothing'} not in {', '.join(allowed)}"
            )
        return values

    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or key != key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _byoc_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--byoc-workers",
        type=_count,
        default=None,
        help="gunicorn sync workers of the AWS-BYOC-style peer, each with its own model "
        "(default: one per core, as AWS's example)",
    )
    p.add_argument(
        "--keep-idle-running",
        dest="pause_idle",
        action="store_false",
        help="leave the servers not being measured running (default: paused with SIGSTOP, "
        "so each is measured with the machine to itself)",
    )


def _common(p: argparse.ArgumentParser, backends: tuple[str, ...]) -> None:
    p.add_argument("--backend", choices=backends, default=backends[0], help="backend to measure")
    p.add_argument(
        "--size",
        choices=("tiny", "full"),
        default="tiny",
        help="proxy size (default tiny; full is the GPU-sized model)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="model directory (default: proxy weights generated once and cached "
        "in ~/.cache/gen3d/bench-models; required for sam3d)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="results root; files go to OUT/<device>/ (default benchmarks/results)",
    )
    p.add_argument(
        "--instance-type",
        default=None,
        help="e.g. ml.g5.xlarge: recorded, and used by gen3d cost (default: $GEN3D_INSTANCE_TYPE)",
    )


def _load_args(
    p: argparse.ArgumentParser,
    levels: str,
    duration: float,
    max_requests: int = 400,
    closed_loop: bool = True,
) -> None:
    p.add_argument(
        "--levels",
        type=_ints,
        default=_ints(levels),
        help=f"{'closed-loop ' if closed_loop else ''}client counts (default {levels})",
    )
    p.add_argument(
        *(("--duration-s",) if closed_loop else ("--duration-s", "--duration")),
        type=_positive,
        default=duration,
        help=f"measurement window per level, seconds (default {duration:g}; "
        + ("extended to 2 answers per client, cut at 3x)" if closed_loop else "after warm-up)"),
    )
    p.add_argument(
        "--max-requests",
        type=_count,
        default=max_requests,
        help=f"answers {'' if closed_loop else '(of any status) '}after which a level stops "
        f"early (default {max_requests})",
    )
    p.add_argument("--max-batch-size", type=int, default=8, help="GEN3D_MAX_BATCH_SIZE (8)")
    p.add_argument(
        "--max-batch-delay-ms", type=float, default=10.0, help="GEN3D_MAX_BATCH_DELAY_MS (10)"
    )
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmarks: model, server, cold start, peers, overload, CPU, memory, report",
        description="Measure the model in-process, the real server under load, cold start, "
        "peer servers (LitServe, an AWS-BYOC-style Flask app under gunicorn sync workers), "
        "goodput under overload, server CPU per request and a worker's peak memory; every "
        "result is JSON with an environment fingerprint under benchmarks/results/<device>/. "
        "`report` turns them into benchmarks/README.md.",
    )
    sub = p.add_subparsers(dest="bench_command", metavar="SUITE")

    m = sub.add_parser(
        "model",
        help="in-process latency/throughput/memory per precision, batch",
        description="Load the backend in this process and time predict() per "
        "precision and batch size: median and IQR of repeats after warm-up "
        "(CUDA events on a GPU), throughput, peak memory.",
    )
    _common(m, ("proxy", *(n for n in BUILTIN_NAMES if n != "proxy")))
    m.add_argument(
        "--precision",
        type=_choices(("fp32", "fp16", "bf16", "int8")),
        default=["fp32"],
        help="comma-separated: fp32,fp16,bf16,int8 (default fp32)",
    )
    m.add_argument("--batch", type=_ints, default=[1, 2, 4, 8], help="batch sizes (1,2,4,8)")
    m.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    m.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    m.add_argument(
        "--steps",
        type=int,
        default=None,
        help="proxy: steps per stage (default: the size's own, 4 tiny / 25 full)",
    )
    m.set_defaults(func=run_model)

    s = sub.add_parser(
        "server",
        help="real gunicorn on 127.0.0.1 under closed-loop load",
        description="Start the real server on 127.0.0.1, drive closed-loop load "
        "at each level; throughput, p50/p90/p99, errors, serving efficiency "
        "(vs in-process, same run) and /ping p99 under load.",
    )
    _common(s, BUILTIN_NAMES)
    _load_args(s, "1,2,4,8,16,32", 6.0)
    s.add_argument(
        "--batching",
        type=_choices(("on", "off")),
        default=["on"],
        help="on, off or on,off (off = GEN3D_MAX_BATCH_SIZE=1)",
    )
    s.add_argument("--steps", type=int, default=None, help="proxy: steps per stage")
    s.set_defaults(func=run_server)

    c = sub.add_parser(
        "coldstart",
        help="process start -> first /ping 200, split in parts",
        description="Start the server REPEATS times; split the time to the "
        "first /ping 200 into import, weight load, warm-up (from the server's "
        "log) and, for proxy, also from a model.tar.gz (extraction timed).",
    )
    _common(c, BUILTIN_NAMES)
    c.add_argument("--repeats", type=int, default=3)
    c.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    c.add_argument("--no-compressed", action="store_true", help="skip the model.tar.gz runs")
    c.set_defaults(func=run_coldstart)

    r = sub.add_parser(
        "peers",
        help="ours vs LitServe and an AWS-BYOC-style server on the same backend, same run",
        description="Serve the same backend with our server, with LitServe "
        "(max_batch_size and batch_timeout set to ours) and with the AWS-BYOC-style peer "
        "(Flask under gunicorn sync workers, one per core, one request at a time each; "
        "no batching, queue or admission control), all on 127.0.0.1 only; load each in "
        "turn at each level; ratios ours/peer of throughput and p99.",
    )
    _common(r, ("silhouette", "proxy"))
    _load_args(r, "1,4,16,64", 5.0)
    _byoc_workers(r)
    r.add_argument(
        "--slices",
        type=_count,
        default=4,
        help="windows each server's --duration-s is cut into, measured in turn with the "
        "other servers' and in reverse order every other round, so a slow spell of the "
        "machine hits all servers alike (default 4)",
    )
    r.add_argument(
        "--repeats",
        type=_count,
        default=1,
        help="whole runs, each turning the measuring order one more place; above 1, one "
        "document (peers_repeats_<backend>.json) with the median of each figure and ratio "
        "over the runs and every run's ratio beside it (default 1: one peers run)",
    )
    r.set_defaults(func=run_peers)

    cpu = sub.add_parser(
        "cpu",
        help="server CPU per request, ours vs a peer, counted exactly over the same requests",
        description="Start our server and one peer on the same backend (127.0.0.1 only); "
        "send each --requests JSON requests from --clients keep-alive connections per "
        "round, rounds alternating between them (the other paused); read every process's "
        "user and system CPU from /proc around each round (nginx and python split) and the "
        "machine's idle share. After each pair, the in-process ceiling (the same work in "
        "one process per BYOC worker, no server, no client) runs as long, counted the same "
        "way: the summary gives each server's throughput over it and the CPU per request "
        "it spends beyond it. CPU per request is steadier than throughput on a shared "
        "machine. Writes OUT/<device>/cpu_per_request_<backend>_c<clients>_<peer>.json.",
    )
    _common(cpu, ("silhouette", "proxy"))
    cpu.add_argument("--peer", choices=("byoc", "litserve"), default="byoc")
    cpu.add_argument("--clients", type=_count, default=16, help="keep-alive clients (16)")
    cpu.add_argument("--requests", type=_count, default=240, help="requests per round (240)")
    cpu.add_argument("--rounds", type=_count, default=6, help="rounds per server (6)")
    cpu.add_argument("--max-batch-size", type=int, default=8, help="GEN3D_MAX_BATCH_SIZE (8)")
    cpu.add_argument(
        "--max-batch-delay-ms", type=float, default=10.0, help="GEN3D_MAX_BATCH_DELAY_MS (10)"
    )
    _byoc_workers(cpu)
    cpu.set_defaults(func=run_cpu_per_request)

    mem = sub.add_parser(
        "memory",
        help="a worker's peak memory under many large images at once",
        description="Start our server with one worker, send --concurrency parallel "
        "requests of one --side x --side RGBA PNG (about 90 kB on the wire at 4096) and "
        "read the worker's peak and current resident memory (VmHWM, VmRSS) from /proc. "
        "Writes OUT/<device>/memory_<backend>.json.",
    )
    _common(mem, BUILTIN_NAMES)
    mem.add_argument("--concurrency", type=_count, default=32, help="parallel requests (32)")
    mem.add_argument("--side", type=_count, default=4096, help="image side in pixels (4096)")
    mem.add_argument(
        "--env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more environment for the server, applied last (repeatable), e.g. "
        "--env GEN3D_DECODE_CONCURRENCY=4",
    )
    mem.set_defaults(func=run_memory)

    o = sub.add_parser(
        "overload",
        help="goodput vs clients that retry every 503 at once (ours; --peers: the peers too)",
        description="At each level, N client threads on 127.0.0.1 post the benchmarks' "
        "JSON request in a loop; a 503 or a connection error is retried at once, any other "
        "answer ends the request. After a warm-up, a window bounded by --duration-s and "
        "--max-requests counts 200s per second (goodput), refusals per second and other "
        "answers; latency of successes from first attempt (retries included) and per "
        "attempt; /ping latency from a prober (p50/p99/max). Summary: peak goodput and "
        "goodput at the largest level / peak. Writes OUT/<device>/overload_<backend>.json.",
    )
    _common(o, ("silhouette", "proxy"))
    _load_args(o, "4,16,64,100", 8.0, max_requests=20_000, closed_loop=False)
    o.add_argument(
        "--max-queue",
        type=_count,
        default=None,
        help="GEN3D_MAX_QUEUE of our server (default: the server's own, 64)",
    )
    o.add_argument(
        "--env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more environment for our server, applied last (repeatable), e.g. "
        "--env MODEL_SERVER_WORKERS=2 to compare settings",
    )
    o.add_argument(
        "--peers",
        action="store_true",
        help="also load LitServe and the AWS-BYOC-style peer, in turn at each level",
    )
    _byoc_workers(o)
    o.set_defaults(func=run_overload)

    lat = sub.add_parser(
        "latency",
        help="start -> ready, sequential request latency and peak RSS (one client)",
        description="Start the default server, time it to the first /ping 200, send "
        "REQUESTS sequential SIZE x SIZE RGBA PNG -> GLB requests, read peak RSS.",
    )
    lat.add_argument("--backend", choices=("silhouette",), default="silhouette")
    lat.add_argument("--image-size", type=int, default=512)
    lat.add_argument("--requests", type=int, default=30)
    lat.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    lat.set_defaults(func=run_latency)

    a = sub.add_parser(
        "all",
        help="the whole bounded suite: CPU (make bench) or GPU",
        description="--device cpu: silhouette and proxy tiny through every "
        "suite, then overload on our server with silhouette (<= 10 min on 2 cores; "
        "overload's --peers run is left out). --device cuda: proxy full at "
        "fp32/fp16/bf16/int8, batch 1-8, and a server run (<= 8 min).",
    )
    a.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    a.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a.add_argument("--model-dir", type=Path, default=None, help="GPU suite: proxy full dir")
    a.add_argument("--instance-type", default=None)
    a.set_defaults(func=run_all)

    rep = sub.add_parser(
        "report",
        help="results/**/*.json -> README.md, plots, s/image",
        description="Build benchmarks/README.md (tables, targets), PNG plots "
        "and the seconds-per-image file `gen3d cost --bench` reads.",
    )
    rep.add_argument("--results", type=Path, default=None, help="default benchmarks/results")
    rep.add_argument("--readme", type=Path, default=None, help="default benchmarks/README.md")
    rep.add_argument("--plots", type=Path, default=None, help="default benchmarks/plots")
    rep.add_argument(
        "--seconds-per-image",
        type=Path,
        default=None,
        help="default benchmarks/results/seconds_per_image.json",
    )
    rep.set_defaults(func=run_report)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _fail(message: str) -> int:
    print(f"gen3d bench: {message}", file=sys.stderr)
    return 2


def _check_device(device: str) -> str | None:
    if device != "cuda":
        return None
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device: --device cuda needs a visible NVIDIA GPU (torch.cuda)"
    return None


def _instance(args: argparse.Namespace) -> str | None:
    import os

    return args.instance_type or os.environ.get("GEN3D_INSTANCE_TYPE") or None


def _guard(args: argparse.Namespace) -> str | None:
    if getattr(args, "backend", None) == "sam3d" and args.model_dir is None:
        return "the sam3d backend needs --model-dir (SAM 3D Objects checkpoints)"
    if args.model_dir is not None and not args.model_dir.is_dir():
        return f"--model-dir {args.model_dir} is not a directory"
    return _check_device(args.device)


def _suite_config(cls: type, args: argparse.Namespace, **overrides: object) -> object:
    """A suite's config dataclass from the parsed flags of the same names, plus overrides."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    values["instance_type"] = _instance(args)
    if getattr(args, "byoc_workers", None) is None:
        values.pop("byoc_workers", None)  # not given: the config's default (one per core)
    values.update(overrides)
    return cls(**values)


def _run_suite(
    args: argparse.Namespace, run: Callable[[object, Path], Path], config: object
) -> int:
    print(f"wrote {run(config, args.out)}")
    return 0


def run_model(args: argparse.Namespace) -> int:
    from gen3d.benchmarks.model import ModelSuiteConfig, run_model_suite

    if error := _guard(args):
        return _fail(error)
    if args.repeats < 2 or args.warmup < 0:
        return _fail("--repeats must be >= 2 and --warmup >= 0")
    config = _suite_config(ModelSuiteConfig, args, precisions=args.precision, batches=args.batch)
    return _run_suite(args, run_model_suite, config)


def run_server(args: argparse.Namespace) -> int:
    from gen3d.benchmarks.server import ServerSuiteConfig, run_server_suite

    if error := _guard(args):
        return _fail(error)
    return _run_suite(args, run_server_suite, _suite_config(ServerSuiteConfig, args))


def run_coldstart(args: argparse.Namespace) -> int:
    from gen3d.benchmarks.coldstart import ColdstartConfig, run_coldstart_suite

    if error := _guard(args):
        return _fail(error)
    if args.repeats < 1:
        return _fail("--repeats must be >= 1")
    config = _suite_config(ColdstartConfig, args, compressed=not args.no_compressed)
    return _run_suite(args, run_coldstart_suite, config)


def run_peers(args: argparse.Namespace) -> int:
    from gen3d.benchmarks.peers import PeersConfig, run_peers_suite

    if error := _guard(args):
        return _fail(error)
    config = _suite_config(PeersConfig, args)
    if args.repeats > 1:
        return run_peers_repeats(args, config)
    return _run_suite(args, run_peers_suite, config)


def run_peers_repeats(args: argparse.Namespace, config: object) -> int:
    from gen3d.benchmarks.peers_repeats import run_peers_repeats as run

    print(f"wrote {run(config, args.repeats, args.out)}")
    return 0


def run_cpu_per_request(args: argparse.Namespace) -> int:
    from gen3d.benchmarks.cpu_per_request import CpuPerRequestConfig, run_cpu_per_request_suite

    if error := _guard(args):
        return _fail(error)
    if args.requests < args.clients:
        return _fail("--requests must be at least --clients")
    config = _suite_config(CpuPerRequestConfig, args)
    return _run_suite(args, run_cpu_per_request_suite, config)


def run_memory(args: argparse.Namespace) -> int:
    from gen3d.benchmarks.memory import MemoryConfig, run_memory_suite

    if error := _guard(args):
        return _fail(error)
    if args.side < 16:
        return _fail("--side must be >= 16")
    config = _suite_config(MemoryConfig, args, extra_env=dict(args.env))
    return _run_suite(args, run_memory_suite, config)


def run_overload(args: argparse.Namespace) -> int:
    from gen3d.benchmarks.overload import OverloadConfig, run_overload_suite

    if error := _guard(args):
        return _fail(error)
    config = _suite_config(OverloadConfig, args, extra_env=dict(args.env))
    return _run_suite(args, run_overload_suite, config)


def run_all(args: argparse.Namespace) -> int:
    from gen3d.benchmarks import suite_all

    if error := _check_device(args.device):
        return _fail(error)
    # a timeout's SIGTERM must still stop the servers we started (finally blocks run)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.device == "cuda":
        suite_all.run_gpu_suite(args.out, _instance(args), args.model_dir)
    else:
        suite_all.run_cpu_suite(args.out, _instance(args))
    return 0


def run_latency(args: argparse.Namespace) -> int:
    from gen3d.benchmarks.latency import LatencyConfig, run_latency_suite

    if args.requests < 1 or args.image_size < 16:
        return _fail("--requests must be >= 1 and --image-size >= 16")
    config = LatencyConfig(args.image_size, args.requests, args.backend)
    print(f"wrote {run_latency_suite(config, args.out)}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from gen3d.benchmarks.report import build_report, default_paths

    paths = default_paths()
    results = args.results or paths["results"]
    if not results.is_dir():
        return _fail(f"no results folder at {results}; run `gen3d bench all` first")
    summary = build_report(
        results,
        args.readme or paths["readme"],
        args.plots or paths["plots"],
        args.seconds_per_image or paths["seconds_per_image"],
    )
    print(
        f"report: {summary['documents']} result file(s), devices {', '.join(summary['devices'])}"
        f", {summary['entries']} seconds-per-image entries -> "
        f"{args.readme or paths['readme']}"
    )
    return 0
