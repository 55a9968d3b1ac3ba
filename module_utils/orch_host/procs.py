"""Processes as /proc shows them: start times that beat PID reuse, sessions, signal names, and the processes of a
run (found by session and by the environment mark every job carries) ended with escalation."""

import os
import signal

from .contract import RUN_ID_ENV


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


def environ_has(pid, entry):
    """Whether PID's initial environment holds ENTRY (b"NAME=value"); False when it cannot be read."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return (b"\0" + entry + b"\0") in (b"\0" + data + b"\0")


def run_processes(rec):
    """PIDs of the live processes of REC's run, by two marks a job cannot shed by accident: the session its leader
    opened (members started no earlier than the leader, so a reused session id does not count), and the job's
    environment entry ORCH_RUN_ID=<run_id>, which a setsid or a double fork keeps. Zombies do not count. A record
    from before both marks (no job_start) is matched by its session alone."""
    run_id, sid, since = rec.get("run_id"), rec.get("pgid"), rec.get("job_start")
    entry = (RUN_ID_ENV + "=" + run_id).encode() if isinstance(run_id, str) and run_id else None
    by_session = isinstance(sid, int) and sid > 0
    since = since if isinstance(since, int) else 0
    me = os.getpid()
    found = []
    for pid, fields in all_stats():
        if pid == me or fields[0] == "Z":
            continue
        if (by_session and session_of(fields) == sid and int(fields[19]) >= since) or (
            entry is not None and environ_has(pid, entry)
        ):
            found.append((pid, int(fields[19])))
    return found


def signal_all(found, sig):
    """Send SIG to each (pid, start ticks) in FOUND that is still that very process."""
    for pid, ticks in found:
        if start_ticks(pid) == ticks:
            try:
                os.kill(pid, sig)
            except OSError:
                pass


KILL_WAIT = 30.0  # seconds to wait for SIGKILLed processes to go (a process in D state can take a while)


def end_processes(find, grace, tick=None):
    """End what FIND() returns ((pid, ticks) pairs, found again each time): SIGTERM, SIGKILL to whatever is left
    after GRACE seconds, then wait until FIND() is empty. TICK() runs between looks (the supervisor reaps its child
    there). Returns what still lives after KILL_WAIT (empty when all ended)."""
    import time

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT)):
        found = find()
        if not found:
            return []
        signal_all(found, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if tick is not None:
                tick()
            found = find()
            if not found:
                return []
            if sig == signal.SIGKILL:
                signal_all(found, sig)  # what a dying process forked meanwhile
            time.sleep(0.05)
    return find()
