#!/usr/bin/env python3
"""Speed and memory figures of orch (issue 3) on a sandbox fleet of its own, each against a same-run baseline.

    python3 bench/bench_orch.py [--hosts 10] [--runs 15]

Brings up `orch sandbox up --hosts N` in a temporary ORCH_HOME, measures the real `orch` command as a subprocess
(`python3 -m orch_wrapper ...`, so start-up counts), prints every figure with its baseline, the ratio and MET/NOT MET,
then a summary table, and always tears the sandbox down. Figures only: nothing here is a test.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ONE_TASK = Path(__file__).resolve().parent / "one_task.yml"
MB = 1024 * 1024

# The orch process run by runpy, reporting its own peak RSS (RUSAGE_SELF: this process alone, not its ssh or
# ansible-playbook children) and its children's (RUSAGE_CHILDREN) to the file named by ORCH_BENCH_RSS at exit.
_RSS_WRAPPER = """
import atexit, os, resource, runpy, sys
def _report():
    with open(os.environ["ORCH_BENCH_RSS"], "w") as f:
        f.write("%d %d" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                           resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
atexit.register(_report)
sys.argv = ["orch", *sys.argv[1:]]
runpy.run_module("orch_wrapper", run_name="__main__", alter_sys=True)
"""


def say(text: str = "") -> None:
    print(text, flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


class Bench:
    def __init__(self, home: Path, hosts: int, runs: int) -> None:
        self.home = home
        self.n_hosts = hosts
        self.runs = runs
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ORCH_"))}
        self.env["ORCH_HOME"] = str(home)
        # As a user runs orch: with bytecode cached (a shell that sets PYTHONDONTWRITEBYTECODE recompiles every time).
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self.rows: list[tuple[str, str, str, str, str, str]] = []  # figure, N, value, baseline, ratio, verdict
        self.all_hosts: list = []
        self.settings = None

    # --- running things ------------------------------------------------------------------------------------------

    def orch_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "orch_wrapper", *args]

    def orch(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.orch_argv(*args), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"orch {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return proc

    def timed(self, argv: Sequence[str], stdin: bytes | None = None, check: bool = True) -> float:
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, env=self.env, input=stdin, capture_output=True, timeout=300)
        elapsed = time.perf_counter() - start
        if check and proc.returncode != 0:
            raise RuntimeError(f"{argv[:3]}... exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
        return elapsed

    def ssh(self, host, remote: Sequence[str] = (), shell: str | None = None) -> list[str]:
        from orch_wrapper.transport import ssh

        return ssh.argv(self.settings, host, remote, shell=shell)

    def use_fleet(self, hosts: list) -> None:
        """Point orch's fleet cache (ORCH_HOME/fleet.json, as `orch` writes it) at these hosts, fresh for 5 min."""
        from orch_wrapper.transport import inventory

        inventory._write_cache(self.settings, hosts)

    def record(self, figure: str, n: int | str, value: str, baseline: str, ratio: str, met: bool | None) -> None:
        verdict = "" if met is None else ("MET" if met else "NOT MET")
        self.rows.append((figure, str(n), value, baseline, ratio, verdict))
        say(f"  => {figure}: {value}; baseline {baseline}; ratio {ratio}; {verdict}")

    # --- sandbox -------------------------------------------------------------------------------------------------

    def up(self, *extra: str) -> None:
        """`orch sandbox up --hosts N EXTRA...` in the temporary ORCH_HOME."""
        say(f"sandbox up --hosts {self.n_hosts} {' '.join(extra)} in a temporary ORCH_HOME ...")
        start = time.perf_counter()
        with open(self.home / "bench-up.log", "w") as log:
            proc = subprocess.run(
                self.orch_argv("sandbox", "up", "--hosts", str(self.n_hosts), *extra),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=900,
            )
        if proc.returncode != 0:
            tail = Path(log.name).read_text().strip().splitlines()[-5:]
            raise RuntimeError("sandbox up failed:\n" + "\n".join(tail))
        say(f"  sandbox up took {time.perf_counter() - start:.0f} s")
        sys.path.insert(0, str(ROOT))
        from orch_wrapper import config
        from orch_wrapper.transport import inventory

        self.settings = config.load(self.env)  # the sandbox's env.json supplies endpoint, fleet and credentials
        self.all_hosts = inventory.load(self.settings)
        if len(self.all_hosts) != self.n_hosts:
            raise RuntimeError(f"the fleet has {len(self.all_hosts)} hosts, expected {self.n_hosts}")

    def down(self) -> None:
        say("sandbox down ...")
        proc = subprocess.run(
            self.orch_argv("sandbox", "down"), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0:
            say(f"  sandbox down: {proc.stderr.strip()}")
        # Belt and braces: nothing of this sandbox may outlive the bench.
        sys.path.insert(0, str(ROOT))
        from orch_wrapper.sandbox import LABEL, podman, sandbox_id

        left = podman.podman("ps", "-aq", "--filter", f"label={LABEL}={sandbox_id(self.home)}").stdout.decode().split()
        if left:
            say(f"  removing {len(left)} leftover container(s)")
            podman.podman("rm", "-f", "-t", "0", *left)

    # --- figures -------------------------------------------------------------------------------------------------

    def status_one_host(self) -> float:
        host = self.all_hosts[0]
        self.use_fleet([host])
        say(f"\n[1] orch status, fleet of 1 host ({host.name}; the fleet cache narrowed to it), 3 RUNNING jobs, warm")
        self.orch("status")  # agent key loaded, ssh master up
        jobs = json.loads(self.orch("status", "--json").stdout)["jobs"]
        running = [j["name"] for j in jobs if j["state"] == "RUNNING"]
        say(f"  running jobs: {', '.join(running)}")
        from orch_wrapper.transport.ssh import host_command

        query, source = host_command(["query"])  # exactly what orch status runs on the host
        samples: dict[str, tuple[list[str], bytes | None]] = {
            "ssh host true": (self.ssh(host, ["true"]), None),
            "orch status": (self.orch_argv("status"), None),
            "python3 -c pass": ([sys.executable, "-c", "pass"], None),
            "orch --version (start-up and imports)": (self.orch_argv("--version"), None),
            "ssh host python3 -c pass": (self.ssh(host, ["python3", "-c", "pass"]), None),
            "ssh host: orch's host call (query)": (self.ssh(host, query), source),
            "orch status --json (no rich table)": (self.orch_argv("status", "--json"), None),
        }
        times: dict[str, list[float]] = {label: [] for label in samples}
        for _ in range(self.runs):  # interleaved, so a change of load on the machine hits every figure alike
            for label, (argv, stdin) in samples.items():
                times[label].append(self.timed(argv, stdin=stdin))
        say(f"  where the time goes (medians of {self.runs}; laptop side = a fresh Python each):")
        for label, values in times.items():
            say(f"    {label}: {ms(median(values))}")
        status, raw = times["orch status"], times["ssh host true"]
        s, r = median(status), median(raw)
        self.record("status, 1 host, 3 jobs (median)", self.runs, ms(s), "target 250 ms", f"{s / 0.25:.2f}", s <= 0.25)
        self.record(
            "status, 1 host vs ssh host true (warm)",
            self.runs,
            ms(s),
            f"ssh true {ms(r)}",
            f"{s / r:.1f}x (<= 10x)",
            s <= 10 * r,
        )
        # The floor: a Python started on each side, before orch runs a line of its own.
        floor = median(times["python3 -c pass"]) + median(times["ssh host python3 -c pass"])
        self.record(
            "status, 1 host vs floor (python3 -c pass + ssh host python3 -c pass)",
            self.runs,
            ms(s),
            f"floor {ms(floor)}",
            f"{s / floor:.1f}x (<= 2x)",
            s <= 2 * floor,
        )
        self.status_split()
        return s

    def status_split(self) -> None:
        """Where `orch status` spends its time, from orch's own marks (ORCH_TIMINGS): start-up is process start to
        main(); the rest are the phases the code marks, then the exit."""
        out = self.home / "timings.json"
        env = {**self.env, "ORCH_TIMINGS": str(out)}
        split: dict[str, list[float]] = {}
        for _ in range(self.runs):
            spawned, start = time.time(), time.perf_counter()
            subprocess.run(self.orch_argv("status"), cwd=ROOT, env=env, capture_output=True, timeout=300, check=True)
            total = time.perf_counter() - start
            data = json.loads(out.read_text())
            phases = [("start-up (interpreter, orch's imports, to main)", data["entered"] - spawned)] + data["phases"]
            phases.append(("exit", total - sum(seconds for _, seconds in phases)))
            for phase, seconds in phases:
                split.setdefault(phase, []).append(seconds)
        say(f"  orch status, split (medians of {self.runs}, from orch's own marks):")
        for phase, values in split.items():
            say(f"    {phase}: {ms(median(values))}")

    def parallel(self, hosts: list, remote: Sequence[str], stdin: bytes | None = None) -> float:
        """Wall time of one ssh per host, all at once, one thread each (as `orch status` runs them)."""

        def one(host) -> int:
            argv = self.ssh(host, remote)
            return subprocess.run(argv, input=stdin, capture_output=True, timeout=60, check=False).returncode

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            codes = list(pool.map(one, hosts))
        elapsed = time.perf_counter() - start
        if any(codes):
            raise RuntimeError(f"ssh {' '.join(remote)} failed on some host: {codes}")
        return elapsed

    def status_fleet(self, one_host: float) -> None:
        hosts = self.all_hosts
        self.use_fleet(hosts)
        say(f"\n[2] orch status, fleet of {len(hosts)} hosts, warm (jobs on {hosts[0].name})")
        self.orch("status")  # masters to every host
        from orch_wrapper.transport.ssh import host_command

        query, source = host_command(["query"])
        status: list[float] = []
        floors: dict[str, list[float]] = {}
        for _ in range(self.runs):
            status.append(self.timed(self.orch_argv("status")))
            for label, remote, stdin in (
                ("python3 -c pass", ["python3", "-c", "pass"], None),
                ("orch's host call (query)", query, source),
            ):
                floors.setdefault(f"{label}, 1 host", []).append(self.parallel(hosts[:1], remote, stdin))
                floors.setdefault(f"{label}, {len(hosts)} hosts", []).append(self.parallel(hosts, remote, stdin))
        say(f"  floor (medians of {self.runs}; the sandbox's hosts share the laptop's {os.cpu_count()} cores):")
        for label, values in floors.items():
            say(f"    ssh host {label}: {ms(median(values))}")
        s = median(status)
        self.record(
            f"status, {len(hosts)} hosts vs 1 host",
            self.runs,
            ms(s),
            f"1 host {ms(one_host)}",
            f"{s / one_host:.2f}x (<= 2x)",
            s <= 2 * one_host,
        )

    def runner_baseline(self, host) -> tuple[float, float]:
        """(whole process, ansible_runner.run alone) for one_task.yml in a fresh Python, as `orch run` pays it."""
        out = Path(self.home) / "baseline.json"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--runner-baseline", host.name, str(out)],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        whole = time.perf_counter() - start
        data = json.loads(out.read_text())
        if data["status"] != "successful":
            raise RuntimeError(f"the baseline playbook ended {data['status']}")
        return whole, data["run"]

    def run_samples(self, names: Sequence[str], command: str, base: list, orch_t: list) -> None:
        host = self.use_fleet_one()
        for name in names:
            base.append(self.runner_baseline(host))
            start = time.perf_counter()
            proc = self.orch("run", name, command)
            orch_t.append(time.perf_counter() - start)
            if f"{name}: RUNNING" not in proc.stdout:
                raise RuntimeError(f"orch run {name} did not report RUNNING: {proc.stdout.strip()}")

    def use_fleet_one(self):
        self.use_fleet([self.all_hosts[0]])
        return self.all_hosts[0]

    def report_run(self, base: list, orch_t: list) -> None:
        say(f"\n[3] orch run until the job is RUNNING (fleet of 1 host), vs ansible-runner of {ONE_TASK.name}")
        whole, inner = median([b[0] for b in base]), median([b[1] for b in base])
        o = median(orch_t)
        say(f"  orch run samples: {', '.join(ms(t) for t in orch_t)}")
        say(f"  baseline: fresh python + ansible_runner.run {ms(whole)} (ansible_runner.run alone {ms(inner)})")
        self.record(
            "run until RUNNING vs one-task ansible-runner",
            len(orch_t),
            ms(o),
            f"runner {ms(whole)}",
            f"{o / whole:.2f}x (<= 1.5x)",
            o <= 1.5 * whole,
        )

    def logs_latency(self) -> None:
        self.use_fleet_one()
        say("\n[4] a job's line in `orch logs -f`: a job prints its clock every 0.2 s for 10 s")
        name = "bench-logs"
        self.orch("run", name, "for i in $(seq 50); do date +%s.%N; sleep 0.2; done")
        proc = subprocess.Popen(
            self.orch_argv("logs", name, "-f", "--tail", "0"), cwd=ROOT, env=self.env, stdout=subprocess.PIPE
        )
        latencies, first = [], None
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.time()
            try:
                stamp = float(line)
            except ValueError:
                continue  # orch's own [orch] lines
            first = first or now
            if stamp >= first:  # printed once the follow was streaming (earlier ones measure start-up)
                latencies.append(now - stamp)
        rc = proc.wait(timeout=60)
        say(f"  logs -f exited {rc}; {len(latencies)} lines; median {ms(median(latencies))}, max {ms(max(latencies))}")
        value = p95(latencies)
        self.record("logs -f line latency (p95)", len(latencies), ms(value), "target 500 ms", "", value <= 0.5)

    def one_gib(self) -> None:
        host = self.use_fleet_one()
        n = 7
        say(f"\n[5] 1 GiB to stdout: orch job vs `head -c 1G /dev/zero > file` in ~/logs on the host, {n} each")
        clock = 's=$(date +%s.%N); head -c 1G /dev/zero{redir}; e=$(date +%s.%N); echo "$s $e"{out}'
        raw, append, orch_t = [], [], []
        warm = clock.format(redir=" > ~/logs/bench-raw.bin", out="; rm -f ~/logs/bench-raw.bin")
        subprocess.run(self.ssh(host, shell=warm), capture_output=True, timeout=300, check=True)  # page cache, disk
        for i in range(n):
            for redir, into in ((" > ~/logs/bench-raw.bin", raw), (" >> ~/logs/bench-raw.bin", append)):
                shell = clock.format(redir=redir, out="; rm -f ~/logs/bench-raw.bin")
                proc = subprocess.run(
                    self.ssh(host, shell=shell), capture_output=True, text=True, timeout=300, check=True
                )
                s, e = map(float, proc.stdout.split())
                into.append(e - s)
            name = f"bench-1g-{i}"
            timefile = f"~/logs/{name}.time"
            # `sleep 1` first: the clock starts once `orch run` itself (ansible-playbook) has left the CPU.
            command = clock.format(redir="", out=f" > {timefile}.tmp; mv {timefile}.tmp {timefile}")
            self.orch("run", name, "sleep 1; " + command, "--no-tty")  # batch mode; a terminal: bench_terminal.py
            # Wait on the host with a cheap shell loop: polling `orch status` would take CPU from the job.
            shell = (
                f"for i in $(seq 1500); do [ -s {timefile} ] && break; sleep 0.2; done; "
                f"cat {timefile}; rm -f {timefile} ~/logs/{name}/run.log"
            )
            proc = subprocess.run(self.ssh(host, shell=shell), capture_output=True, text=True, timeout=330, check=True)
            s, e = map(float, proc.stdout.split())
            orch_t.append(e - s)
        for label, values in (("> file", raw), (">> file (O_APPEND, as orch's log)", append), ("orch", orch_t)):
            shown = ", ".join(f"{t:.2f}" for t in values)
            say(f"  {label}: {shown} s; median {median(values):.2f} s, min {min(values):.2f} s")
        r, o = median(raw), median(orch_t)
        self.record(
            "1 GiB stdout, orch vs > file", n, f"{o:.2f} s", f"{r:.2f} s", f"{o / r:.2f}x (<= 1.15x)", o <= 1.15 * r
        )

    def rss(self) -> None:
        say("\n[6] peak RSS of the local orch process (RUSAGE_SELF at exit; its ssh/ansible children apart)")
        out = self.home / "rss.txt"
        env = {**self.env, "ORCH_BENCH_RSS": str(out)}

        def peak(*args: str) -> tuple[float, float]:
            argv = [sys.executable, "-c", _RSS_WRAPPER, *args]
            subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=300, check=True)
            own, children = (int(x) * 1024 / MB for x in out.read_text().split())
            return own, children

        cases: list[tuple[str, Callable[[], None] | None, tuple[str, ...]]] = [
            ("status (1 host)", self.use_fleet_one, ("status",)),
            (f"status ({len(self.all_hosts)} hosts)", lambda: self.use_fleet(self.all_hosts), ("status",)),
            ("logs", self.use_fleet_one, ("logs", "bench-logs")),
            ("logs -f", None, ("logs", "-f", "bench-logs")),
            ("run", None, ("run", "bench-rss", "sleep 30")),
        ]
        for label, prepare, args in cases:
            if prepare is not None:
                prepare()
            own, children = peak(*args)
            self.record(
                f"peak RSS, orch {label}",
                1,
                f"{own:.1f} MB",
                f"children {children:.1f} MB",
                "",
                own < 80,
            )

    def summary(self) -> None:
        header = ("figure", "N", "orch", "baseline", "ratio", "verdict")
        widths = [max(len(row[i]) for row in [header, *self.rows]) for i in range(len(header))]
        say("\nSummary")
        for row in [header, tuple("-" * w for w in widths), *self.rows]:
            say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _runner_baseline(host: str, out: str) -> None:
    """Child process: one ansible_runner.run of bench/one_task.yml with orch's own runner arguments."""
    start = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    import ansible_runner

    from orch_wrapper import config
    from orch_wrapper.transport import runner

    settings = config.load()  # with the sandbox's endpoint and credentials from its env.json, for the runner too
    kwargs = runner.runner_kwargs(settings, "job_start", {"orch_host": host}, host, lambda event: True)
    kwargs["playbook"] = str(ONE_TASK)
    run = ansible_runner.run(**kwargs)
    (Path(run.config.artifact_dir) / "command").unlink(missing_ok=True)  # holds the environment, as orch drops it
    Path(out).write_text(json.dumps({"status": run.status, "run": time.perf_counter() - start}))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10, help="sandbox hosts for the fan-out figure (default 10)")
    parser.add_argument("--runs", type=int, default=15, help="samples per status figure (default 15)")
    parser.add_argument("--run-samples", type=int, default=5, help="`orch run` samples (default 5)")
    parser.add_argument("--runner-baseline", nargs=2, metavar=("HOST", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runner_baseline:
        _runner_baseline(*args.runner_baseline)
        return 0
    if args.hosts < 2 or args.run_samples < 3 or args.runs < 3:
        parser.error("use --hosts >= 2, --runs >= 3, --run-samples >= 3")

    # A short ORCH_HOME: ssh control socket paths are limited to about 100 characters.
    home = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below on `kill`, too
    bench = Bench(home, args.hosts, args.runs)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    say(f"orch bench {when}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    started = time.perf_counter()
    try:
        bench.up()
        host = bench.use_fleet_one()
        base, orch_t = [], []
        bench.runner_baseline(host)  # warm-up: first ansible run pays the inventory cache and the ssh master
        bench.run_samples(["bench-a", "bench-b", "bench-c"], "sleep 3600", base, orch_t)
        one = bench.status_one_host()
        bench.status_fleet(one)
        more = [f"bench-run-{i}" for i in range(4, args.run_samples + 1)]
        bench.run_samples(more, "sleep 600", base, orch_t)
        bench.report_run(base, orch_t)
        bench.logs_latency()
        bench.one_gib()
        bench.rss()
    finally:
        try:
            bench.down()
        finally:
            shutil.rmtree(home, ignore_errors=True)
    bench.summary()
    say(f"\nbench took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
