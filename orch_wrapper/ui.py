"""Human output. The read paths' tables (status, hosts) are aligned columns written here; rich draws configure's
live progress and summary, imported only there.

Why not rich for the status table: `orch status` is what people repeat, and in one bench run rich's import and
table cost it ~20 ms of ~110, most of the floor it is measured against (`python3 -c pass` plus `ssh host python3 -c
pass`, ~25 ms on a quiet machine). Columns of short, known strings need no layout engine.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .model import HostMemory, parse_time

if TYPE_CHECKING:
    from rich.console import Console

    from .model import Host, HostIdle, Job

# ANSI SGR parameters per job state, on a terminal only
STATE_COLOURS = {
    "RUNNING": "32",
    "QUEUED": "36",
    "SUCCEEDED": "1;32",
    "FAILED": "31",
    "OOM": "1;31",
    "KILLED": "33",
    "INTERRUPTED": "33",
    "LOST": "35",
}


def warn(message: str) -> None:
    print(f"orch: warning: {message}", file=sys.stderr)


def console(file: Any = None) -> Console:
    from rich.console import Console

    out = file or sys.stdout
    tty = bool(getattr(out, "isatty", lambda: False)())
    # Piped output keeps whole rows (rich would squeeze tables to 80 columns).
    return Console(file=out, highlight=False, soft_wrap=False, width=None if tty else 240)


def human_size(value: int | None) -> str:
    """Bytes as `ps`/`free -h` show them: 5.8G, 512M, 900K."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "K", "M", "G", "T"):
        if size < 1024 or unit == "T":
            if unit == "B":
                return f"{int(size)}B"
            return f"{size:.1f}{unit}" if size < 100 else f"{size:.0f}{unit}"
        size /= 1024
    return "-"  # not reached


def human_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{s:02d}s"
    return f"{s}s"


def local_time(stamp: datetime | None) -> str:
    return stamp.astimezone().strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"


def job_row(job: Job, now: datetime) -> list[str]:
    started, ended = parse_time(job.started), parse_time(job.ended)
    elapsed = ((ended or now) - started).total_seconds() if started else None
    if job.exit_code is not None:
        exit_text = str(job.exit_code)
    elif job.signal:
        exit_text = job.signal  # the host names it: SIGTERM
    else:
        exit_text = "-"
    return [job.name, job.host, job.state, local_time(started), human_duration(elapsed), memory_text(job), exit_text]


def ended_text(job: Job) -> str:
    """One line for a job that has ended: "train: FAILED (exit 3) on h-1 after 2h05m, peak 6.1G"."""
    started, ended = parse_time(job.started), parse_time(job.ended)
    how = f" (exit {job.exit_code})" if job.exit_code is not None else f" ({job.signal})" if job.signal else ""
    took = f" after {human_duration((ended - started).total_seconds())}" if started and ended else ""
    peak = f", peak {human_size(job.memory_peak)}" if job.memory_peak else ""
    return f"{job.name}: {job.state}{how} on {job.host}{took}{peak}"


def mode_text(job: Job) -> str:
    """How the job ran: on its own terminal (attach gives its keys), or batch (--no-tty)."""
    if job.tty is None:
        return "mode: not recorded (started by an older orch)"
    if job.tty:
        return f"mode: terminal (keys reach it with `orch attach {job.name}`)"
    return "mode: batch, --no-tty (no terminal; output straight into the log)"


def repo_text(job: Job) -> str | None:
    """`orch status NAME`: the commit a --repo job ran."""
    if not job.repo:
        return None
    return f"repo: {job.repo['name']}@{job.repo['ref']}, commit {job.repo['commit']}"


def notify_text(job: Job) -> str | None:
    """`orch status NAME`: where the job's end is posted, and how the post went."""
    if not job.notify:
        return None
    where = job.notify.get("parameter")
    if job.active or not job.notify.get("at"):
        return f"notify: {where}, when it ends" if job.active else f"notify: {where}, not posted"
    if job.notify.get("error"):
        return f"notify: {where}, FAILED at {job.notify['at']}: {job.notify['error']} (the job's state stands)"
    return f"notify: {where}, posted at {job.notify['at']} (HTTP {job.notify.get('status')})"


OOM_CAUSES = {
    "job cap": "it reached its own --mem",
    "host limit": "all jobs together reached orch.slice's limit, the host's memory less its reserve",
    "host memory": "the host itself ran out of memory",
}


def memory_lines(job: Job) -> list[str]:
    """`orch status NAME`: the cap as the host holds it, and an OOM's cause."""
    lines = []
    if isinstance(job.memory_max, int):
        cap = human_size(job.memory_max)
        held = "enforced" if job.memory_cap == "enforced" else (job.memory_cap or "not recorded")
        lines.append(f"memory cap: {cap}, {held}")
    if job.state == "OOM":
        cause = job.oom_cause or "not recorded"
        lines.append(f"oom: {cause} ({OOM_CAUSES[cause]})" if cause in OOM_CAUSES else f"oom: {cause}")
    return lines


def memory_text(job: Job) -> str:
    """The job's memory; with a cap, the cap beside it, and a cap the host could not enforce said as such; a
    queued job's place in its host's queue."""
    if job.state == "QUEUED":
        return f"queued #{job.queue_position}" if job.queue_position else "queued"
    used = human_size(job.memory)
    if not isinstance(job.memory_max, int):
        return used
    if job.memory_cap == "enforced":
        return f"{used}/{human_size(job.memory_max)}"
    return f"{used} (uncapped)"


def _colour(out: Any) -> bool:
    """Colour on a terminal, unless NO_COLOR is set (no-color.org)."""
    import os

    return bool(getattr(out, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


def columns(
    headers: list[str], rows: list[list[str]], right: Iterable[str] = (), colours: list[str | None] | None = None,
    colour: bool = False,
) -> str:  # fmt: skip
    """Rows as aligned columns two spaces apart, headers first; RIGHT names the right-aligned columns. COLOURS gives
    each row an SGR code for its third cell (the state) when COLOUR is on; widths count the text alone."""
    table = [headers, *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(cell) for cell in column) for column in zip(*table, strict=True)]
    flush_right = {i for i, h in enumerate(headers) if h in set(right)}
    lines = []
    for n, row in enumerate(table):
        cells = [
            c.rjust(w) if i in flush_right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        code = colours[n - 1] if colour and colours and n else None
        if code:
            cells[2] = f"\033[{code}m{cells[2]}\033[0m"
        line = "  ".join(cells).rstrip()
        lines.append(f"\033[1m{line}\033[0m" if colour and n == 0 else line)
    return "\n".join(lines) + "\n"


JOB_COLUMNS = ["NAME", "HOST", "STATE", "STARTED", "ELAPSED", "MEMORY", "EXIT"]


def print_jobs(jobs: Iterable[Job], now: datetime, file: Any = None) -> None:
    out = file or sys.stdout
    jobs = list(jobs)
    rows = [job_row(job, now) for job in jobs]
    colours = [STATE_COLOURS.get(job.state) for job in jobs]
    out.write(columns(JOB_COLUMNS, rows, ("ELAPSED", "MEMORY", "EXIT"), colours, _colour(out)))


def idle_text(idle: HostIdle | None) -> str:
    """A host's idle auto-stop in a few words: "stops in 12m", "busy: 2 jobs", "off", "stopping", "-" unknown."""
    if idle is None or idle.mode is None:
        return "-"
    if idle.stopping is not None:
        return "stopping"
    if idle.mode == "off":
        return "off"
    if idle.busy:
        return "busy: " + ", ".join(idle.busy)
    return f"stops in {human_duration(idle.stops_in)}" if idle.stops_in is not None else "idle"


def host_line(host: Host, idle: HostIdle | None) -> str:
    """One host under `orch status`: its state, uptime and auto-stop."""
    if not host.usable:
        return f"{host.name}: {host.state} (`orch up {host.name}` starts it)"
    if idle is None or idle.mode is None:  # a host configured before auto-stop existed
        return f"{host.name}: {host.state}"
    up = f", up {human_duration(idle.uptime)}" if idle is not None and idle.uptime is not None else ""
    return f"{host.name}: {host.state}{up}, {idle_text(idle)}"


def print_hosts(
    hosts: Iterable[Host],
    memory: dict[str, HostMemory | None] | None = None,
    idle: dict[str, HostIdle | None] | None = None,
    file: Any = None,
) -> None:
    """The hosts, and for each running one its memory: TOTAL it can use, ALLOC(atable) to jobs (orch.slice),
    RESERVED by active jobs' --mem, USED by them now, and whether CAPS hold; its UPTIME and AUTOSTOP."""
    out = file or sys.stdout
    rows = []
    for h in hosts:
        mem = (memory or {}).get(h.name) or HostMemory()
        caps = "-" if mem.memory_caps is None else "yes" if mem.memory_caps == "enforced" else "NO"
        sizes = (mem.memory_total, mem.memory_allocatable, mem.memory_reserved, mem.memory_used)
        rows.append([h.name, h.instance_id or "-", h.instance_type or "-", h.state or "-", h.address, h.access or "-"])
        rows[-1] += [*(human_size(v) for v in sizes), caps]
        host_idle = (idle or {}).get(h.name)
        rows[-1] += [human_duration(host_idle.uptime if host_idle else None), idle_text(host_idle)]
    headers = ["NAME", "INSTANCE", "TYPE", "STATE", "ADDRESS", "ACCESS", "TOTAL", "ALLOC", "RESERVED", "USED", "CAPS"]
    headers += ["UPTIME", "AUTOSTOP"]
    out.write(columns(headers, rows, right=("TOTAL", "ALLOC", "RESERVED", "USED"), colour=_colour(out)))


class TaskProgress:
    """One line per finished task (with its hosts' results) under a spinner naming the running task."""

    def __init__(self, file: Any = None):
        self.console = console(file)
        self.status = self.console.status("starting ansible")
        self.task = ""
        self.results: dict[str, str] = {}

    def __enter__(self) -> TaskProgress:
        self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._flush()
        self.status.stop()

    def _flush(self) -> None:
        if self.task and self.results:
            counts: dict[str, list[str]] = {}
            for host, outcome in self.results.items():
                counts.setdefault(outcome, []).append(host)
            summary = "; ".join(f"{outcome}: {', '.join(hosts)}" for outcome, hosts in counts.items())
            mark = {"failed": "[red]x[/]", "unreachable": "[red]x[/]", "changed": "[yellow]~[/]"}
            worst = next((o for o in ("failed", "unreachable", "changed") if o in counts), "ok")
            self.console.print(f"{mark.get(worst, '[green]✓[/]')} {self.task} [dim]({summary})[/]")
        self.results = {}

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        data = event.get("event_data") or {}
        host = data.get("host", "")
        if kind == "playbook_on_task_start":
            self._flush()
            self.task = data.get("task") or data.get("name") or "task"
            self.status.update(f"{self.task} ...")
        elif kind == "runner_on_ok":
            self.results[host] = "changed" if (data.get("res") or {}).get("changed") else "ok"
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            self.results[host] = "failed"
        elif kind == "runner_on_unreachable":
            self.results[host] = "unreachable"
        elif kind == "runner_on_skipped":
            self.results.setdefault(host, "skipped")


def print_summary(stats: dict[str, dict[str, int]], file: Any = None) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold", title="configure summary", title_justify="left")
    for column in ("HOST", "OK", "CHANGED", "FAILED", "UNREACHABLE", "SKIPPED"):
        table.add_column(column, justify="left" if column == "HOST" else "right")
    for host, s in sorted(stats.items()):
        table.add_row(host, *(str(s.get(k, 0)) for k in ("ok", "changed", "failed", "unreachable", "skipped")))
    console(file).print(table)
