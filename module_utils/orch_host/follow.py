"""follow: a job's log from its last lines on, across log rotation, until the job ends; exits with its code."""

import os
import sys
import time

from . import records
from .contract import ACTIVE_STATES, JobError, exit_code_of

POLL = 0.1  # seconds between looks at the log and the record


# The most "the last N lines" may print, in bytes. A line is what ends in b"\n", so a progress bar that rewrites itself
# with b"\r" is one line as long as the job has run (issue 9: 100 MB with no newline took 97 s and 310 MB to tail).
# 1 MiB is a few thousand screens of ordinary lines, far more than anyone reads at once over ssh, and little to
# send or hold; the rest is in the log file itself.
TAIL_CAP = 1 << 20
TAIL_CHUNK = 65536  # bytes read at a time, backwards from the end


def tail_lines(f, count, cap=TAIL_CAP):
    """The last COUNT lines of the open binary file F (lines end in b"\n"; a last line without one counts), and
    the file's size, where streaming goes on. At most the last CAP bytes are read or returned: when the lines asked
    for are longer, the output is the file's last CAP bytes, starting mid-line at that boundary."""
    size = f.seek(0, os.SEEK_END)
    if count <= 0:
        return b"", size
    floor = max(size - cap, 0)
    chunks, newlines, pos = [], 0, size
    while pos > floor and newlines <= count:  # count + 1 newlines hold COUNT whole lines, even with a trailing one
        step = min(TAIL_CHUNK, pos - floor)
        pos -= step
        f.seek(pos)
        chunk = f.read(step)
        chunks.append(chunk)
        newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    start = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _line in range(count):
        start = data.rfind(b"\n", 0, start)
        if start < 0:  # fewer lines than COUNT in what was read: all of it (the whole file, or the cap)
            return data, size
    return data[start + 1 :], size


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
        running = records.live_state(records.read_record(name) or rec, facts).get("state") in ACTIVE_STATES
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
            return exit_code_of(final)
        time.sleep(POLL)
