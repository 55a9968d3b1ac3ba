#!/usr/bin/env python3
"""`orch run` on a stopped host (issue 11), against starting the host by hand and then running the job.

    python3 bench/bench_power.py [--runs 5]

Brings up a one-host sandbox in a temporary ORCH_HOME (moto plays EC2, the sandbox's hypervisor starts and stops
the host's container as moto's instance starts and stops) and, RUNS times, interleaved:
- measured: with the host stopped (`orch down`, then its container seen stopped), the wall time of
  `orch run NAME CMD` until it returns with the job RUNNING: it sees no running host, starts the one it picks
  through EC2, waits until SSH answers through the inventory, then runs the job;
- baseline: with the host stopped the same way, `orch up` (the instance start until SSH answers) followed by
  `orch run NAME CMD` on the running host, the sum of the two wall times.
Target: median measured <= 1.2x median baseline. Also prints each part of the baseline and the host's own boot
(its container's start to SSH answering is inside both). Figures only: nothing here is a test. Tears the sandbox
down however it ends.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_orch import Bench, ms, say  # noqa: E402


class PowerBench(Bench):
    def container_running(self, host) -> bool:
        from orch_wrapper.sandbox import container_name, podman

        out = podman.podman("inspect", "-f", "{{.State.Running}}", container_name(self.home, host.name))
        return out.stdout.decode().strip() == "true"

    def stopped(self, host) -> None:
        """`orch down` and wait until the hypervisor has stopped the container: each sample starts from a host
        that is really off."""
        self.orch("down", "--force")
        deadline = time.monotonic() + 120
        while self.container_running(host):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host.name}'s container never stopped")
            time.sleep(0.5)

    def wall(self, *args: str) -> tuple[float, str]:
        start = time.perf_counter()
        proc = self.orch(*args, timeout=600)
        return time.perf_counter() - start, proc.stdout + proc.stderr

    def sample(self, host, i: int) -> tuple[float, float, float]:
        """(orch run on the stopped host, orch up, orch run on the running host), seconds."""
        self.stopped(host)
        cold, out = self.wall("run", f"cold-{i}", "--no-tty", "sleep 5")
        if f"cold-{i}: RUNNING" not in out or "starting" not in out:
            raise RuntimeError(f"orch run on the stopped fleet did not start the host and the job: {out.strip()}")
        self.stopped(host)
        up, out = self.wall("up")
        if "ssh answers" not in out:
            raise RuntimeError(f"orch up did not report ssh answering: {out.strip()}")
        warm, out = self.wall("run", f"warm-{i}", "--no-tty", "sleep 5")
        if f"warm-{i}: RUNNING" not in out:
            raise RuntimeError(f"orch run on the running host did not report RUNNING: {out.strip()}")
        say(f"  sample {i}: stopped-host run {cold:.1f} s; up {up:.1f} s + running-host run {warm:.1f} s")
        return cold, up, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    bench = PowerBench(Path(tempfile.mkdtemp(prefix="orch-bench-power-")), hosts=1, runs=args.runs)
    try:
        bench.up()
        (host,) = bench.all_hosts
        colds, ups, warms = [], [], []
        for i in range(args.runs):
            cold, up, warm = bench.sample(host, i)
            colds.append(cold)
            ups.append(up)
            warms.append(warm)
        cold = statistics.median(colds)
        base = statistics.median([u + w for u, w in zip(ups, warms, strict=True)])
        say(f"\n`orch run` on a stopped host until RUNNING, {args.runs} runs, medians (ms):")
        say(f"  baseline  orch up (start until ssh answers)   {ms(statistics.median(ups)):>9}")
        say(f"            + orch run on the running host       {ms(statistics.median(warms)):>9}")
        say(f"            = the two, summed per run            {ms(base):>9}")
        say(f"  measured  orch run on the stopped host         {ms(cold):>9}")
        ratio = cold / base
        say(f"  ratio {ratio:.2f}x (target <= 1.2x: {'MET' if ratio <= 1.2 else 'NOT MET'})")
    finally:
        bench.down()


if __name__ == "__main__":
    main()
