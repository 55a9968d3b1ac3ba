"""Human output: rich tables and progress, imported lazily so `--json` and `logs` do not pay for rich."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .model import parse_time

if TYPE_CHECKING:
    from rich.console import Console

    from .model import Host, Job

STATE_STYLES = {
    "RUNNING": "green",
    "QUEUED": "cyan",
    "SUCCEEDED": "bold green",
    "FAILED": "red",
    "OOM": "bold red",
    "KILLED": "yellow",
    "LOST": "magenta",
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
        exit_text = f"sig {job.signal}"
    else:
        exit_text = "-"
    return [job.name, job.host, job.state, local_time(started), human_duration(elapsed), memory_text(job), exit_text]


def memory_text(job: Job) -> str:
    """The job's memory; with a cap, the cap beside it, and a cap the host could not enforce said as such."""
    used = human_size(job.memory)
    if not isinstance(job.memory_max, int):
        return used
    if job.memory_cap == "enforced":
        return f"{used}/{human_size(job.memory_max)}"
    return f"{used} (uncapped)"


def jobs_table(jobs: Iterable[Job], now: datetime) -> Any:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "HOST", "STATE", "STARTED", "ELAPSED", "MEMORY", "EXIT"):
        table.add_column(column, justify="right" if column in ("ELAPSED", "MEMORY", "EXIT") else "left", no_wrap=True)
    for job in jobs:
        row = job_row(job, now)
        style = STATE_STYLES.get(job.state, "")
        row[2] = f"[{style}]{row[2]}[/]" if style else row[2]
        table.add_row(*row)
    return table


def print_jobs(jobs: Iterable[Job], now: datetime, file: Any = None) -> None:
    console(file).print(jobs_table(jobs, now))


def print_hosts(hosts: Iterable[Host], file: Any = None) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "INSTANCE", "TYPE", "STATE", "ADDRESS", "ACCESS"):
        table.add_column(column, no_wrap=True)
    for h in hosts:
        table.add_row(h.name, h.instance_id or "-", h.instance_type or "-", h.state or "-", h.address, h.access or "-")
    console(file).print(table)


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
