"""A deployment as an ordered list of steps: printed under --dry-run, applied otherwise.

Each step's `apply` reads the current state itself and returns what it did
("created", "updated" or "unchanged") with its value, so a second run reports no change.
Under --dry-run no step is applied and no AWS call is made: the plan shows each request
body as it would be sent, with placeholders for values only AWS can give (ARNs, account).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

CREATED, UPDATED, UNCHANGED, DELETED = "created", "updated", "unchanged", "deleted"


@dataclass(frozen=True)
class ApiCall:
    """One request a step sends: the boto3 service name, the API operation (as botocore's
    model names it, e.g. CreateEndpointConfig) and its parameters."""

    service: str
    operation: str
    params: dict[str, Any]


def _printable(value: Any) -> str:
    if isinstance(value, bytes | bytearray):  # a zip, say: its size, not its bytes
        return f"<{len(value)} bytes>"
    return str(value)


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
        calls: Sequence[ApiCall] = (),
    ) -> T:
        self.steps.append(summary)
        if self.dry_run:
            self.out(f"  would ensure  {summary}")
            if request is not None:  # a readable summary (policies as objects, not strings)
                self._body(request)
            for call in calls:
                self.out(f"    would call    {call.service} {call.operation}")
                self._body(call.params)
            return placeholder
        outcome, value = apply()
        if outcome != UNCHANGED:
            self.changes.append((outcome, summary))
        self.out(f"  {outcome:<9}  {summary}")
        return value

    def _body(self, request: Any) -> None:
        body = json.dumps(request, indent=2, default=_printable)
        self.out("\n".join("      " + line for line in body.splitlines()))

    def note(self, line: str) -> None:
        self.out(f"  note: {line}")

    def read(
        self,
        summary: str,
        fetch: Callable[[], T],
        describe: Callable[[T], str],
        placeholder: T = None,  # type: ignore[assignment]
        calls: Sequence[ApiCall] = (),
    ) -> T:
        """A read the later steps depend on (sizes, current state); skipped in a dry run,
        which prints `calls` (the requests it would send) when given."""
        if self.dry_run:
            self.out(f"  would read    {summary}")
            for call in calls:
                self.out(f"    would call    {call.service} {call.operation}")
                self._body(call.params)
            return placeholder
        value = fetch()
        self.out(f"  {'read':<9}  {summary}: {describe(value)}")
        return value
