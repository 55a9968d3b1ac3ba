"""Processes as /proc shows them: start times that beat PID reuse, sessions, signal names."""

import os
import signal


def read_text(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def proc_stat(pid):
    """Fields of /proc/PID/stat after the command name (index 0 = field 3, state), or None."""
    data = read_text(f"/proc/{pid}/stat")
    if not data:
        return None
    return data[data.rfind(")") + 2 :].split()


def start_ticks(pid):
    fields = proc_stat(pid)
    return int(fields[19]) if fields else None


def alive(pid, ticks):
    """Whether PID is the very process that started at TICKS (not a reused PID, not a zombie)."""
    fields = proc_stat(pid) if isinstance(pid, int) and pid > 0 else None
    return bool(fields) and fields[0] != "Z" and int(fields[19]) == ticks


def all_stats():
    """(pid, stat fields) of every process."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(entry)
            if fields:
                yield int(entry), fields


def session_of(fields):
    return int(fields[3])  # field 6 of /proc/PID/stat


def signal_name(num):
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"SIG{num}"
