"""Memory: a job's current and peak memory, from its scope's cgroup (scope.py) or /proc, and the cgroup's counters.

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
    """Fill memory_current of RUNNING records: their scope's memory.current, else one pass over /proc."""
    by_session = {}
    for rec in records:
        if rec.get("state") != RUNNING:
            continue
        current = None
        if rec.get("memory_cgroup"):
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
    """A job's scope while it runs: the peak memory seen (memory.peak, v1 max_usage_in_bytes; else memory.current)."""

    def __init__(self, directory):
        self.directory = directory
        self.peak = 0

    def sample(self):
        # what was seen stays when the files are gone
        self.peak = max(self.peak, scope_peak(self.directory))


def scope_peak(directory):
    """The peak memory DIRECTORY's cgroup counted, else its current usage, in bytes; 0 without a cgroup."""
    if not directory:
        return 0
    for names in (CG_PEAK, CG_CURRENT):
        value = parse_int(cg_read(directory, names))
        if value is not None:
            return value
    return 0


# orch.slice's memory cgroup (roles/orch_memory), v2 then v1; and the host's own limit (a container's), likewise
SLICE_DIRS = ("/sys/fs/cgroup/orch.slice", "/sys/fs/cgroup/memory/orch.slice")
OWN_LIMIT_DIRS = ("/sys/fs/cgroup", "/sys/fs/cgroup/memory")


def mem_total():
    """MemTotal from /proc/meminfo in bytes, or None."""
    for line in (read_text("/proc/meminfo", "") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def host_memory(records, caps):
    """The host's memory as the laptop shows it (`orch hosts`), in bytes: what it can use (the lesser of MemTotal and
    its own cgroup limit, as the role computes it), what orch.slice may hold, what admitted jobs reserve (their
    --mem, else the default reservation), what the slice's jobs use now; CAPS says whether a job's cap can be held
    ("enforced" or why not)."""
    total = mem_total()
    for directory in OWN_LIMIT_DIRS:
        limit = parse_int(cg_read(directory, CG_LIMIT))
        if limit is not None and (total is None or limit < total):
            total = limit
    allocatable = used = None
    for directory in SLICE_DIRS:
        if os.path.isdir(directory):
            allocatable = parse_int(cg_read(directory, CG_LIMIT))
            used = parse_int(cg_read(directory, CG_CURRENT))
            break
    if allocatable is None and caps == "enforced":
        caps = "not enforced: orch.slice is missing (run `orch configure` on the host)"
    from .admission import holds, reservation_of  # here: admission imports this module

    reserved = sum(reservation_of(rec) for rec in records if holds(rec))
    return {
        "memory_total": total,
        "memory_allocatable": allocatable,
        "memory_reserved": reserved,
        "memory_used": used,
        "memory_caps": caps,
    }
