"""A deployment as an ordered list of steps: printed under --dry-run, applied otherwise.

Each step's `apply` reads the current state itself and returns what it did
("created", "updated" or "unchanged") with its value, so a second run reports no change.
Under --dry-run no step is applied and no AWS call is made: the plan shows each request
body as it would be sent, with placeholders for values only AWS can give (ARNs, account).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

CREATED, UPDATED, UNCHANGED, DELETED = "created", "updated", "unchanged", "deleted"


@dataclass
class Plan:
    dry_run: bool = False
    out: Callable[[str], None] = print
    changes: list[tuple[str, str]] = field(default_factory=list)  # (outcome, summary)
    steps: list[str] = field(default_factory=list)

    def step(
        self,
        summary: str,
        apply: Callable[[], tuple[str, T]],
        *,
        request: Any = None,
        placeholder: T = None,  # type: ignore[assignment]
    ) -> T:
        self.steps.append(summary)
        if self.dry_run:
            self.out(f"  would ensure  {summary}")
            if request is not None:
                body = json.dumps(request, indent=2, default=str)
                self.out("\n".join("      " + line for line in body.splitlines()))
            return placeholder
        outcome, value = apply()
        if outcome != UNCHANGED:
            self.changes.append((outcome, summary))
        self.out(f"  {outcome:<9}  {summary}")
        return value

    def note(self, line: str) -> None:
        self.out(f"  note: {line}")

    def read(
        self,
        summary: str,
        fetch: Callable[[], T],
        describe: Callable[[T], str],
        placeholder: T = None,
    ) -> T:  # type: ignore[assignment]
        """A read the later steps depend on (sizes, current state); skipped in a dry run."""
        if self.dry_run:
            self.out(f"  would read    {summary}")
            return placeholder
        value = fetch()
        self.out(f"  {'read':<9}  {summary}: {describe(value)}")
        return value
