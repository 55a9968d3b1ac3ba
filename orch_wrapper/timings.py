"""Where a command's time goes, for the benchmark: with ORCH_TIMINGS=FILE set, orch writes its phases there as JSON.

Phases are marked by the code that runs them (`mark("host call")` ends the phase named so); `entered` is the wall
clock at main()'s start, so the bench can tell start-up (process start to main) from the rest. Unset, nothing is
recorded and each mark costs one attribute check.
"""

from __future__ import annotations

import os
import time

# Read directly (not through Settings): a measuring hook of the bench, not a setting of orch.
_FILE = os.environ.get("ORCH_TIMINGS")
_phases: list[tuple[str, float]] = []
_entered = 0.0
_last = 0.0


def start() -> None:
    global _entered, _last
    if _FILE:
        _entered, _last = time.time(), time.perf_counter()


def mark(phase: str) -> None:
    """The phase PHASE ends now."""
    global _last
    if _FILE:
        now = time.perf_counter()
        _phases.append((phase, now - _last))
        _last = now


def write() -> None:
    if _FILE:
        import json

        with open(_FILE, "w") as f:
            json.dump({"entered": _entered, "phases": _phases}, f)
