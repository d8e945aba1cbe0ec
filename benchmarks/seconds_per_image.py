"""The seconds-per-image entries that `gen3d cost --bench` reads (scripts/cost/bench.py)."""

from __future__ import annotations

from typing import Any

Doc = dict[str, Any]


def seconds_per_image(docs: list[Doc]) -> list[dict[str, Any]]:
    """Entries for `gen3d cost --bench` (scripts/cost/bench.py's schema).

    Served throughput (server suite, batching on, best level) is what an instance
    bills for, so it is preferred; in-process numbers (model suite) fill in only where no
    served number exists for that backend on that device (the cost model takes the
    fastest entry, and an in-process number without HTTP, codecs and queueing would
    undercut every served one). Runs with a reduced
    step count (the GPU suite) are scaled to the model's default steps.
    """
    entries: list[dict[str, Any]] = []
    served_keys = set()
    for doc in docs:
        if doc["suite"] != "server":
            continue
        env, cfg = doc["environment"], doc["config"]
        rows = [r for r in doc["results"] if r["batching"] == "on" and r.get("throughput_per_s")]
        if not rows:
            continue
        best = max(rows, key=lambda r: r["throughput_per_s"])
        scale = _step_scale(cfg)
        precision = _precision(doc["results"][0]["backend"], cfg.get("precision", "fp32"))
        served_keys.add((cfg["backend"], env.get("device"), env.get("gpu_name")))
        entries.append(
            _entry(
                env,
                cfg["backend"],
                precision,
                _effective_batch(best, cfg),
                scale / best["throughput_per_s"],
                f"served: gen3d bench server, concurrency {best['concurrency']}"
                + _scaled_note(cfg, scale),
            )
        )
    for doc in docs:
        if doc["suite"] != "model":
            continue
        env, cfg = doc["environment"], doc["config"]
        scale = _step_scale(cfg)
        for r in doc["results"]:
            key = (r["backend"], env.get("device"), env.get("gpu_name"))
            if key in served_keys or "seconds_per_image" not in r:
                continue
            entries.append(
                _entry(
                    env,
                    r["backend"],
                    r["precision"],
                    r["batch"],
                    scale * r["seconds_per_image"],
                    "in-process: gen3d bench model" + _scaled_note(cfg, scale),
                )
            )
    return entries


def _precision(backend: str, precision: str) -> str:
    return "n/a" if backend == "silhouette" else precision


def _step_scale(cfg: dict[str, Any]) -> float:
    steps, default = cfg.get("steps"), cfg.get("default_steps")
    if not steps or not default:
        return 1.0
    return (default[0] + default[1]) / (2 * steps)


def _scaled_note(cfg: dict[str, Any], scale: float) -> str:
    if scale == 1.0:
        return ""
    return (
        f"; measured at {cfg['steps']} steps per stage and scaled x{scale:.1f} to the "
        f"default {cfg['default_steps']} (an upper bound: fixed costs scale too)"
    )


def _entry(
    env: dict[str, Any], backend: str, precision: str, batch: int, spi: float, source: str
) -> dict[str, Any]:
    return {
        "backend": backend,
        "device": env.get("device", "cpu"),
        "gpu_name": env.get("gpu_name"),
        "instance_type": env.get("instance_type"),
        "precision": precision,
        "batch": int(batch),
        "seconds_per_image": round(spi, 6),
        "source": source,
        "measured_at": env.get("timestamp"),
    }


def _effective_batch(row: dict[str, Any], cfg: dict[str, Any]) -> int:
    """The batch the server could form: its setting, capped by the backend's own limit
    (silhouette caps at 4), as recorded by the in-process reference of the same run."""
    limit = cfg.get("in_process_reference", {}).get("max_batch_size")
    return min(row["max_batch_size"], limit) if limit else row["max_batch_size"]
