#!/usr/bin/env python3
"""Throughput and keystroke latency of a job on its terminal (issue 8), each against a same-run baseline.

    PYTHONPATH=module_utils python3 bench/bench_terminal.py [--gib 1] [--runs 3] [--keys 20]

Runs the host package on this machine as the job host does (a throwaway HOME, orch's own tmux server in a private
TMUX_TMPDIR) and prints:
- 1 GiB to stdout, detached: the job's own elapsed time for `head -c 1G /dev/zero` (measured inside the job with
  bash's EPOCHREALTIME, so the relay's pace is what the writer waits on), in TTY mode and in --no-tty mode, beside
  `head -c 1G /dev/zero > file` on the same filesystem in the same run; median of RUNS, ratio, target; and, as the
  ceiling of any pty relay, the same writer under util-linux `script` (a C relay from a pty into a file, no orch);
- the keystroke round trip when attached: a key sent with send-keys to the pane of a tmux client attached to the
  job, until the job's echo shows in capture-pane; beside the same through a plain tmux session running `cat` with
  no orch, attached the same way. Median of KEYS.
Figures only: nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "module_utils"))

from orch_host import control, records  # noqa: E402
from orch_host.contract import TMUX_SOCKET  # noqa: E402

TIMED = 's=$EPOCHREALTIME; head -c {size} /dev/zero{redirect}; e=$EPOCHREALTIME; echo "elapsed=$s $e" >&2'


class Host:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="orch-bench-"))
        self.tmux_dir = tempfile.mkdtemp(prefix="orch-bt-")
        (self.root / "work").mkdir()
        os.environ.update(HOME=str(self.root), TMUX_TMPDIR=self.tmux_dir)
        os.environ.pop("TMUX", None)
        self.tmux_bin = shutil.which("tmux")
        self.facts = records.HostFacts()

    def start(self, name: str, command: str, tty: bool) -> None:
        params = dict(
            name=name, state="started", command=command, cwd="~/work", env={}, secrets={}, memory_max=None,
            grace=10, purge_logs=False, tty=tty,
        )  # fmt: skip
        control.apply(params, self.tmux_bin, False, self.facts)

    def wait_done(self, name: str) -> dict:
        while True:
            rec = records.read_record(name)
            if rec and rec.get("state") != "RUNNING":
                return rec
            time.sleep(0.02)

    def tmux(self, *args: str, socket: str = TMUX_SOCKET) -> str:
        return subprocess.run([self.tmux_bin, "-L", socket, *args], capture_output=True, text=True).stdout

    def close(self) -> None:
        for socket in (TMUX_SOCKET, "bench-outer", "bench-plain"):
            subprocess.run([self.tmux_bin, "-L", socket, "kill-server"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.tmux_dir, ignore_errors=True)


def elapsed_of(text: str) -> float:
    import re

    start, end = re.findall(r"elapsed=([0-9.]+) ([0-9.]+)", text)[-1]  # after the zeros, on their line
    return float(end) - float(start)


def throughput(host: Host, size: int, runs: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"baseline": [], "tty": [], "no-tty": [], "script": []}
    target = host.root / "baseline.out"
    script = shutil.which("script")
    for run in range(runs):  # interleaved, so a noisy neighbour hits every mode alike
        proc = subprocess.run(
            ["bash", "-c", TIMED.format(size=size, redirect=f" > {target}")], capture_output=True, text=True
        )
        figures["baseline"].append(elapsed_of(proc.stderr))
        target.unlink()
        if script is not None:  # the writer on a pty that a C program copies into a file
            timed = TIMED.format(size=size, redirect="")
            subprocess.run([script, "-q", "-c", f"bash -c '{timed}'", str(target)], capture_output=True, check=True)
            with open(target, "rb") as f:
                f.seek(max(os.path.getsize(target) - 4096, 0))
                figures["script"].append(elapsed_of(f.read().decode(errors="replace")))
            target.unlink()
        for mode, tty in (("tty", True), ("no-tty", False)):
            name = f"{mode}-{run}"
            host.start(name, TIMED.format(size=size, redirect=""), tty)
            host.wait_done(name)
            log = records.log_file(name)
            size_seen = os.path.getsize(log)
            with open(log, "rb") as f:
                f.seek(max(size_seen - 4096, 0))
                figures[mode].append(elapsed_of(f.read().decode(errors="replace")))
            shutil.rmtree(records.logs_dir(name))
    return figures


def keystroke(host: Host, keys: int) -> dict[str, list[float]]:
    """Round trip of one key: send-keys into the outer pane, until capture-pane shows the job's echo of it."""
    figures: dict[str, list[float]] = {}
    host.start("typist", "cat", True)
    for label, attach in (
        ("orch", f"{host.tmux_bin} -L {TMUX_SOCKET} attach-session -t =orch-typist"),
        ("plain tmux", f"{host.tmux_bin} -L bench-plain attach-session -t =plain"),
    ):
        host.tmux("kill-server", socket="bench-outer")
        host.tmux("new-session", "-d", "-s", "plain", "-x", "100", "-y", "30", "cat", socket="bench-plain")
        outer = ["new-session", "-d", "-s", "user", "-x", "100", "-y", "30", f"env -u TMUX {attach}"]
        host.tmux(*outer, socket="bench-outer")
        time.sleep(1.0)  # attached, repainted
        samples = []
        for i in range(keys):
            mark = f"k{i:03d}"
            t0 = time.perf_counter()
            host.tmux("send-keys", "-t", "=user:", "-l", mark, socket="bench-outer")
            deadline = t0 + 10
            while mark not in host.tmux("capture-pane", "-p", "-t", "=user:", socket="bench-outer"):
                if time.perf_counter() > deadline:
                    raise SystemExit(f"{label}: the key {mark} never showed in the attached pane")
            samples.append(time.perf_counter() - t0)
            host.tmux("send-keys", "-t", "=user:", "Enter", socket="bench-outer")
        figures[label] = samples
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keys", type=int, default=20)
    args = parser.parse_args()
    host = Host()
    try:
        size = int(args.gib * (1 << 30))
        tp = throughput(host, size, args.runs)
        base = statistics.median(tp["baseline"])
        print(f"{args.gib:g} GiB of output, detached, median of {args.runs} (seconds, the writer's own elapsed time)")
        print(f"  baseline  head -c > file    {base:7.3f}")
        if tp["script"]:
            ceiling = statistics.median(tp["script"])
            print(f"  ceiling   script(1) relay   {ceiling:7.3f}  {ceiling / base:5.2f}x  (a C pty relay, no orch)")
        for mode, target in (("tty", 1.3), ("no-tty", 1.15)):
            med = statistics.median(tp[mode])
            ratio = med / base
            verdict = "MET" if ratio <= target else "NOT MET"
            print(f"  {mode:8s}  orch job          {med:7.3f}  {ratio:5.2f}x  (target <= {target}x: {verdict})")
        ks = keystroke(host, args.keys)
        print(f"keystroke round trip, attached, median of {args.keys} (send-keys to capture-pane, milliseconds)")
        plain = statistics.median(ks["plain tmux"]) * 1000
        mine = statistics.median(ks["orch"]) * 1000
        print(f"  baseline  plain tmux + cat  {plain:7.1f}")
        print(f"  orch      job on its pty    {mine:7.1f}  {mine / plain:5.2f}x")
        print(json.dumps({"throughput_s": tp, "keystroke_s": ks}))
    finally:
        host.close()


if __name__ == "__main__":
    main()
