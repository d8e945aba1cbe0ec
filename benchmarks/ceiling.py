"""The in-process ceiling of the peers suite: the requests' work with no server at all.

`processes` child processes (as many as the BYOC peer has workers: one per core), each
with its own model and the BYOC peer's environment, do what one request costs
(gen3d.benchmarks.byoc_peer.RequestWork: decode the JSON body, predict, encode the JSON
answer) back to back, one at a time, for as long as the suite asks. Their summed rate is
the most these cores serve one request at a time; a server's `ceiling_ratio` is its rate
over this one, measured in the same run between the servers' own windows.

The children speak JSON lines on stdin/stdout: "ready" once loaded, then for each window
length read, the perf_counter start and end of every request run in it (perf_counter is
CLOCK_MONOTONIC: one clock for every process on the machine).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from gen3d.benchmarks import payloads
from gen3d.benchmarks.loadgen import Completion, LoadWindow
from gen3d.serve.settings import Settings

READY = "ready"


class InProcessCeiling:
    """The ceiling's child processes: started together, measured together."""

    def __init__(self, env: dict[str, str], processes: int, log_path: Path) -> None:
        self.name = "in-process ceiling"
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # closed by stop()
        self.children = [
            subprocess.Popen(
                [sys.executable, "-m", "gen3d.benchmarks.ceiling"],
                env={**os.environ, **env},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                text=True,
                start_new_session=True,
            )
            for _ in range(processes)
        ]

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until every child has loaded its model (a child that fails says why in the log)."""
        for child in self.children:
            line = self._read(child, timeout_s)
            if line.strip() != READY:
                raise RuntimeError(f"{self.name}: a child said {line!r}:\n{self.log()}")

    def measure(self, seconds: float, concurrency: int) -> LoadWindow:
        """One window: every child runs requests back to back for `seconds`; recorded at
        the level being measured (the ceiling does not depend on it)."""
        for child in self.children:
            assert child.stdin is not None
            child.stdin.write(f"{seconds}\n")
            child.stdin.flush()
        runs = [json.loads(self._read(child, seconds + 120)) for child in self.children]
        records = [Completion(s, f, 200) for run in runs for s, f in run]
        if not records:
            raise RuntimeError(f"{self.name}: no request finished in {seconds} s")
        start = min(r.started for r in records)
        end = max(r.finished for r in records)
        return LoadWindow(concurrency, start, end, records, [])

    def _read(self, child: subprocess.Popen[str], timeout_s: float) -> str:
        assert child.stdout is not None
        # the children write one line at a time, so a readable pipe holds a whole line
        if select.select([child.stdout], [], [], timeout_s)[0]:
            line = child.stdout.readline()
            if line:
                return line
            raise RuntimeError(f"{self.name} exited with {child.wait()}:\n{self.log()}")
        raise TimeoutError(f"{self.name}: no answer within {timeout_s:.0f} s:\n{self.log()}")

    def log(self, tail_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail_chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait()
        self._log.close()


def run_child() -> int:
    """A ceiling child: load, say ready, then run a window per line read on stdin."""
    from gen3d.benchmarks.byoc_peer import RequestWork

    work = RequestWork(Settings.from_env())
    body = payloads.json_body()
    json.dumps(work(body))  # the first request's costs stay out of every window
    print(READY, flush=True)
    for line in sys.stdin:
        seconds, runs = float(line), []
        begin = time.perf_counter()
        while time.perf_counter() - begin < seconds:
            started = time.perf_counter()
            json.dumps(work(body)).encode()
            runs.append((started, time.perf_counter()))
        print(json.dumps(runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_child())
