"""The cost answer framed by waiting: for each option the first-result latency a user
must accept, and which option is cheapest for each tolerance.

A tolerance is "I can wait up to T for my first result". An option qualifies when its
first-result latency (`OptionCost.first_result_s`: always-on, seconds; async or inference
components from zero, start-up + work; daily batch, up to a day) is at most T. The answer
changes only at those latencies, so the table lists each latency at which a cheaper
option becomes acceptable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gen3d.cost.model import OptionCost


@dataclass(frozen=True)
class ToleranceStep:
    wait_s: float  # from this tolerance on ...
    option: OptionCost  # ... this is the cheapest option that can work


def cheapest_by_tolerance(options: list[OptionCost]) -> list[ToleranceStep]:
    """Steps in increasing tolerance, each strictly cheaper than the one before; below
    the first step's wait no option can answer."""
    usable = sorted(
        (o for o in options if o.total_usd is not None and o.first_result_s is not None),
        key=lambda o: (o.first_result_s, o.total_usd),
    )
    steps: list[ToleranceStep] = []
    for o in usable:
        assert o.first_result_s is not None and o.total_usd is not None
        if not steps or o.total_usd < (steps[-1].option.total_usd or 0.0):
            steps.append(ToleranceStep(o.first_result_s, o))
    return steps


def duration(seconds: float) -> str:
    """60 s, 12 min, 24.2 h: the unit a reader thinks in at that size."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def tolerance_lines(options: list[OptionCost], money: Callable[[float | None], str]) -> list[str]:
    """One line per step, e.g. 'wait 12.0 min to 24.2 h: Asynchronous, scale to zero
    ($32.05/month)'."""
    steps = cheapest_by_tolerance(options)
    if not steps:
        return ["no option can work for this workload"]
    lines = [f"wait under {duration(steps[0].wait_s)}: no option answers that fast"]
    for i, step in enumerate(steps):
        span = (
            f"{duration(step.wait_s)} to {duration(steps[i + 1].wait_s)}"
            if i + 1 < len(steps)
            else f"{duration(step.wait_s)} or more"
        )
        lines.append(f"wait {span}: {step.option.label} ({money(step.option.total_usd)}/month)")
    return lines
