#!/usr/bin/env python3
"""Pause and resume the processes writing a log file, so logrotate's copytruncate loses no line.

Usage: orch-log-writers stop FILE      (logrotate prerotate: SIGSTOP every writer, wait until stopped)
       orch-log-writers cont FILE      (logrotate postrotate: SIGCONT the writers paused for FILE)
       orch-log-writers cont-all DIR   (safety net after logrotate: resume writers paused for any DIR/*/run.log)

copytruncate copies the file, then truncates it: a line appended between the two is lost. With its writers stopped
for that moment (a few milliseconds per megabyte) nothing is appended, and each writer's O_APPEND descriptor carries
on at the start of the emptied file. Only processes this user may signal are touched; processes already stopped
(say by the user in tmux) are left as they are. Always exits 0 so a rotation is never blocked by this helper.
"""

import os
import signal
import sys
import time

STOP_WAIT = 5.0  # seconds to wait for a writer to reach the stopped state


def paused_record(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.paused")


def proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def writers(path: str) -> list[int]:
    """Processes with `path` open for writing (O_WRONLY or O_RDWR), other than this one."""
    try:
        target = os.stat(path)
    except OSError:
        return []
    found = set()
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # not ours, or gone
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
                if (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino):
                    continue
                with open(f"/proc/{entry}/fdinfo/{fd}", encoding="ascii") as info:
                    flags = next(int(line.split()[1], 8) for line in info if line.startswith("flags:"))
            except (OSError, StopIteration, ValueError):
                continue
            if flags & (os.O_WRONLY | os.O_RDWR):
                found.add(int(entry))
                break
    return sorted(found)


def stop(path: str) -> None:
    paused = []
    for pid in writers(path):
        if proc_state(pid) in ("T", "t"):
            continue  # stopped by someone else: not ours to resume
        try:
            os.kill(pid, signal.SIGSTOP)
        except OSError:
            continue
        paused.append(pid)
    with open(paused_record(path), "a", encoding="ascii") as record:
        record.write("".join(f"{pid}\n" for pid in paused))
    deadline = time.monotonic() + STOP_WAIT
    for pid in paused:
        while proc_state(pid) not in ("T", "t", "X", "Z") and time.monotonic() < deadline:
            time.sleep(0.001)


def cont(path: str) -> None:
    record = paused_record(path)
    try:
        with open(record, encoding="ascii") as handle:
            pids = [int(line) for line in handle if line.strip().isdigit()]
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except OSError:
            pass
    try:
        os.unlink(record)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("stop", "cont", "cont-all"):
        print(__doc__, file=sys.stderr)
        return 0
    verb, path = argv
    if verb == "stop":
        stop(path)
    elif verb == "cont":
        cont(path)
    else:
        try:
            jobs = os.listdir(path)
        except OSError:
            return 0
        for job in jobs:
            cont(os.path.join(path, job, "run.log"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
