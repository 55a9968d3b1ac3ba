"""Memory: per-job caps (a systemd scope with MemoryMax), the job's current and peak memory, OOM counters.

Reads cgroup v2 (unified) and v1 (memory controller) files alike; a job without a cap is measured through /proc.
"""

import os

from .contract import RUNNING
from .procs import all_stats, read_text, session_of

# memory cgroup files: v2 name, v1 name
CG_LIMIT = ("memory.max", "memory.limit_in_bytes")
CG_CURRENT = ("memory.current", "memory.usage_in_bytes")
CG_PEAK = ("memory.peak", "memory.max_usage_in_bytes")
CG_EVENTS = ("memory.events", "memory.oom_control")


def add_memory(records):
    """Fill memory_current of RUNNING records: cgroup memory.current when capped, else one pass over /proc."""
    by_session = {}
    for rec in records:
        if rec.get("state") != RUNNING:
            continue
        current = None
        if rec.get("memory_cap") == "enforced" and rec.get("memory_cgroup"):
            current = parse_int(cg_read(rec["memory_cgroup"], CG_CURRENT))
        if current is not None:
            rec["memory_current"] = current
        elif isinstance(rec.get("pid"), int):
            rec["memory_current"] = 0
            by_session[rec["pid"]] = rec
    if not by_session:
        return records
    page = os.sysconf("SC_PAGE_SIZE")
    for _pid, fields in all_stats():
        rec = by_session.get(session_of(fields))
        if rec is not None:
            rec["memory_current"] += int(fields[21]) * page  # field 24 of /proc/PID/stat: rss in pages
    return records


def session_peak(sid):
    """Sum of the peak RSS (VmHWM) of the processes of session SID, in bytes."""
    total = 0
    for pid, fields in all_stats():
        if session_of(fields) != sid:
            continue
        for line in (read_text(f"/proc/{pid}/status", "") or "").splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
                break
    return total


def memory_cap_plan(memory_max, unit):
    """(systemd-run argv prefix or None, why the cap cannot be enforced or None). Cheap checks, no subprocess.

    root uses a system scope (works on cgroup v1 and v2); other users a user scope, which needs cgroup v2, a running
    user manager (lingering) and the memory controller delegated to it.
    """
    if memory_max is None:
        return None, None
    import shutil

    uid = os.getuid()
    if shutil.which("systemd-run") is None:
        return None, "not enforced: systemd-run not found"
    scope = ["systemd-run", "--scope", "--quiet", "--unit", unit, "-p", f"MemoryMax={memory_max}", "--"]
    if uid == 0:
        if not os.path.isdir("/run/systemd/system"):
            return None, "not enforced: systemd is not running"
        return scope, None
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{uid}"
    if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return None, "not enforced: cgroup v1 host, user scopes cannot hold a memory cap"
    if not os.path.exists(os.path.join(runtime, "systemd", "private")):
        return None, "not enforced: no systemd user manager (enable lingering for the job user)"
    service = f"/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers"
    if "memory" not in (read_text(service, "") or "").split():
        return None, "not enforced: memory controller not delegated to the user manager"
    return scope[:1] + ["--user"] + scope[1:], None


def cgroup_of(pid):
    """The v2 path of PID's cgroup (the '0::' line)."""
    for line in (read_text(f"/proc/{pid}/cgroup", "") or "").splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def memory_cgroup_of(pid):
    """The sysfs directory of PID's memory cgroup: unified v2, or the v1 memory controller."""
    for line in (read_text(f"/proc/{pid}/cgroup", "") or "").splitlines():
        controllers, path = line.split(":", 2)[1:]
        if controllers == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            return "/sys/fs/cgroup" + path
        if "memory" in controllers.split(","):
            return "/sys/fs/cgroup/memory" + path
    return None


def cg_read(directory, names):
    for name in names:
        text = read_text(os.path.join(directory, name))
        if text is not None:
            return text
    return None


def parse_int(text):
    return int(text) if text and text.strip().isdigit() else None


def oom_kills(directory):
    for line in (cg_read(directory, CG_EVENTS) or "").splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return None


def cap_holds(directory, memory_max):
    """Whether the cgroup's limit reads back as MEMORY_MAX bytes (v1 rounds it to pages)."""
    limit = parse_int(cg_read(directory, CG_LIMIT))
    return limit is not None and abs(limit - memory_max) < 65536


class CgroupWatch:
    """A capped job's memory cgroup while it runs: the peak seen and the OOM kills counted since the job started."""

    def __init__(self, directory):
        self.directory = directory
        self.base = oom_kills(directory)
        self.peak = 0
        self.ooms = 0

    def sample(self):
        # the files vanish when systemd drops the scope: what was seen before stays
        self.peak = max(self.peak, parse_int(cg_read(self.directory, CG_PEAK)) or 0)
        count = oom_kills(self.directory)
        if count is not None and self.base is not None:
            self.ooms = max(self.ooms, count - self.base)


def systemd_result(unit):
    """Result= of a finished scope (systemd records oom-kill there); None when unknown."""
    import subprocess

    try:
        out = subprocess.run(
            ["systemctl"] + ([] if os.getuid() == 0 else ["--user"]) + ["show", "--property=Result", "--value", unit],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        # a scope that failed (oom-kill) stays loaded until reset
        subprocess.run(
            ["systemctl"] + ([] if os.getuid() == 0 else ["--user"]) + ["reset-failed", unit],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
