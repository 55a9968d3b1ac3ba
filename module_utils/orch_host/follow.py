"""follow: a job's log from its last lines on, across log rotation, until the job ends; exits with its code."""

import os
import sys
import time

from . import records
from .contract import EXIT_BY_STATE, FAILED, RUNNING, JobError

POLL = 0.1  # seconds between looks at the log and the record


def tail_lines(f, count):
    """The last COUNT lines of the open binary file F, and the size they end at."""
    size = f.seek(0, os.SEEK_END)
    if count <= 0:
        return b"", size
    pos, data = size, b""
    while pos > 0 and data.count(b"\n") <= count:
        step = min(65536, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
    return b"".join(data.splitlines(keepends=True)[-count:]), size


def exit_code_for(rec):
    if rec.get("state") == FAILED and isinstance(rec.get("exit_code"), int):
        return rec["exit_code"]
    return EXIT_BY_STATE.get(rec.get("state"), 1)


def follow(name, tail=10, out=None):
    """Print the last TAIL lines, stream new bytes until the job stops RUNNING, return its exit code."""
    out = out or sys.stdout.buffer
    facts = records.HostFacts()
    rec = records.read_record(name)
    if rec is None:
        raise JobError(f"no job named {name} on {facts.host} (orch status lists the jobs)")
    path = records.log_file(name)
    f, ino, pos = None, None, 0

    def reopen():
        nonlocal f, ino, pos
        try:
            nf = open(path, "rb")
        except OSError:
            return False
        if f is not None:
            f.close()
        f, ino, pos = nf, os.fstat(nf.fileno()).st_ino, 0
        return True

    def drain():
        nonlocal pos
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return
            pos += len(chunk)
            out.write(chunk)

    if reopen():
        data, pos = tail_lines(f, tail)
        f.seek(pos)
        out.write(data)
        out.flush()
    while True:
        running = records.live_state(records.read_record(name) or rec, facts).get("state") == RUNNING
        if f is not None:
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is not None and st.st_ino != ino:  # renamed away: finish the old file, then take the new one
                drain()
                reopen()
            elif st is not None and st.st_size < pos:  # copytruncate
                f.seek(0)
                pos = 0
            drain()
        else:
            reopen()
        out.flush()
        if not running:
            final = records.live_state(records.read_record(name) or rec, facts)
            if f is not None:
                drain()
                out.flush()
                f.close()
            return exit_code_for(final)
        time.sleep(POLL)
