#!/usr/bin/env python3
"""Memory figures of orch (issue 10) on a sandbox host of its own, each against a same-run baseline.

    python3 bench/bench_memory.py [--runs 20] [--ooms 10] [--queues 10]

Brings up `orch sandbox up --memory 6G` (orch.slice: 4G) in a temporary ORCH_HOME and prints:
- the SSH round trip to the host (`ssh HOST true` over orch's connection), median and p95 of RUNS, idle and then
  while three jobs push at their 1G caps (each allocating 3G in a loop, so the kernel reclaims and OOM-kills at the
  cap all the time); target: the loaded p95 <= 3x the idle p95;
- the time from a hog starting to allocate past its cap (64M cap, 256M asked) to its OOM record: a watcher on the
  host releases the hog and polls job.json every 2 ms; p50 and p95 of OOMS runs, target p95 <= 1 s. The baseline is
  the same watcher timing a job that exits 1 at once (FAILED): orch's own recording path without the OOM killer;
- the time from memory freeing to the next QUEUED job RUNNING: a holder reserving all of orch.slice (4G) is released
  with a 1G job QUEUED behind it; p50 and p95 of QUEUES runs, target p95 <= 2 s. The baseline is the holder's own
  end record in the same runs: what the admission adds is the difference.
Figures only: nothing here is a test. Tears the sandbox down however it ends.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_orch import Bench, p95, say  # noqa: E402

PUSH = "while :; do python3 -c 'b = bytearray(3 * 2**30)'; done"
# On the host: release job NAME (the go file it waits for), then poll its record until it has ended.
WATCH = r"""
import json, os, sys, time
name = sys.argv[1]
record = os.path.expanduser(f"~/logs/{name}/job.json")
start = time.time()
open(os.path.expanduser(f"~/go-{name}"), "w").close()
while True:
    try:
        with open(record) as f:
            rec = json.load(f)
        if rec.get("state") not in ("RUNNING", "QUEUED"):
            print(json.dumps([rec["state"], rec.get("oom_cause"), time.time() - start]))
            break
    except (OSError, ValueError):
        pass
    time.sleep(0.002)
"""


# On the host: release job HOLDER, then poll its record and job WAITER's until the holder has ended and the waiter
# left QUEUED; prints both times from the release.
HANDOVER = r"""
import json, os, sys, time
holder, waiter = sys.argv[1:3]
def state(name):
    try:
        with open(os.path.expanduser(f"~/logs/{name}/job.json")) as f:
            return json.load(f).get("state")
    except (OSError, ValueError):
        return None
start = time.time()
open(os.path.expanduser(f"~/go-{holder}"), "w").close()
ended = running = None
while ended is None or running is None:
    now = time.time() - start
    if ended is None and state(holder) not in ("RUNNING", "QUEUED", None):
        ended = now
    if running is None and state(waiter) not in ("QUEUED", None):
        running = now
    time.sleep(0.002)
print(json.dumps([ended, running]))
"""


def waiting(name: str, then: str) -> str:
    return f"while [ ! -e ~/go-{name} ]; do sleep 0.01; done; {then}"


class MemoryBench(Bench):
    def rtt(self, host, runs: int) -> list[float]:
        argv = self.ssh(host, ["true"])
        self.timed(argv)  # the control master up
        return [self.timed(argv) for _ in range(runs)]

    def watched(self, host, name: str, mem: str, then: str) -> tuple[str, float]:
        self.orch("run", name, "--mem", mem, "--no-tty", waiting(name, then))
        out = subprocess.run(
            self.ssh(host, ["python3", "-c", WATCH, name]), capture_output=True, text=True, timeout=120, check=True
        ).stdout
        state, cause, seconds = json.loads(out)
        return f"{state} ({cause})" if cause else state, float(seconds)

    def handover(self, host, i: int) -> tuple[float, float]:
        """(holder ended, waiter RUNNING) in seconds from the holder's release."""
        holder, waiter = f"holder-{i}", f"waiter-{i}"
        self.orch("run", holder, "--mem", "4G", "--no-tty", waiting(holder, "exit 0"))
        self.orch("run", waiter, "--mem", "1G", "--no-tty", "sleep 30")  # QUEUED: the holder has all of orch.slice
        out = subprocess.run(
            self.ssh(host, ["python3", "-c", HANDOVER, holder, waiter]),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        self.orch("stop", waiter)
        ended, running = json.loads(out)
        return float(ended), float(running)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--ooms", type=int, default=10)
    parser.add_argument("--queues", type=int, default=10)
    args = parser.parse_args()
    bench = MemoryBench(Path(tempfile.mkdtemp(prefix="orch-bench-mem-")), hosts=1, runs=args.runs)
    try:
        bench.up("--memory", "6G")
        (host,) = bench.all_hosts
        idle = bench.rtt(host, args.runs)
        for i in range(3):
            bench.orch("run", f"push-{i}", "--mem", "1G", "--no-tty", PUSH)
        time.sleep(3)  # all three at their caps
        loaded = bench.rtt(host, args.runs)
        for i in range(3):
            bench.orch("stop", f"push-{i}")
        say(f"SSH round trip to the host, {args.runs} runs (ms): median, p95")
        say(f"  idle                          {statistics.median(idle) * 1000:7.1f} {p95(idle) * 1000:7.1f}")
        say(f"  three jobs pushing their caps {statistics.median(loaded) * 1000:7.1f} {p95(loaded) * 1000:7.1f}")
        ratio = p95(loaded) / p95(idle)
        say(f"  p95 ratio {ratio:.2f}x (target <= 3x: {'MET' if ratio <= 3 else 'NOT MET'})")
        ooms, fails, verdicts = [], [], set()
        for i in range(args.ooms):
            verdict, seconds = bench.watched(host, f"hog-{i}", "64M", "python3 -c 'b = bytearray(256 * 2**20)'")
            verdicts.add(verdict)
            ooms.append(seconds)
            fails.append(bench.watched(host, f"fails-{i}", "64M", "exit 1")[1])
        say(f"release to end record, {args.ooms} runs (ms): p50, p95  [verdicts: {', '.join(sorted(verdicts))}]")
        say(f"  baseline  exit 1 (FAILED)         {statistics.median(fails) * 1000:7.1f} {p95(fails) * 1000:7.1f}")
        say(f"  hog past its cap (OOM)            {statistics.median(ooms) * 1000:7.1f} {p95(ooms) * 1000:7.1f}")
        say(f"  p95 {p95(ooms):.3f} s (target <= 1 s: {'MET' if p95(ooms) <= 1 else 'NOT MET'})")
        ends, starts = zip(*(bench.handover(host, i) for i in range(args.queues)), strict=True)
        say(f"release of a holder of all orch.slice, {args.queues} runs (ms): p50, p95")
        say(f"  baseline  the holder's end record   {statistics.median(ends) * 1000:7.1f} {p95(ends) * 1000:7.1f}")
        say(f"  the QUEUED job behind it RUNNING   {statistics.median(starts) * 1000:7.1f} {p95(starts) * 1000:7.1f}")
        say(f"  p95 {p95(starts):.3f} s (target <= 2 s: {'MET' if p95(starts) <= 2 else 'NOT MET'})")
    finally:
        bench.down()


if __name__ == "__main__":
    main()
