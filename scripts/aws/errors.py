"""The one error type AWS commands show to users as a single line (no traceback)."""

from __future__ import annotations


class AwsCommandError(Exception):
    """A user-facing failure: bad input, a refused deployment, a failed or timed-out wait."""
