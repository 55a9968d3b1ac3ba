"""Admission: a job starts only when its reservation fits in orch.slice beside the reservations of the jobs already
admitted; else it waits QUEUED, first come first served, and starts by itself when memory frees.

Each job's supervisor decides its own admission under the host's lock (~/.orch/locks/.host.lock), from the records
of every job on the host with their live states: a QUEUED or RUNNING record whose supervisor is gone (killed, or the
host restarted) reads LOST, so it reserves nothing. An admitted job claims its reservation in its record (QUEUED with
`admitted`) before the lock is released, so concurrent starts never overcommit. Without orch.slice (a host orch has
not configured) every job is admitted at once.
"""

import os
import time

from . import autostop, memory, records, spot
from .contract import DEFAULT_RESERVATION, QUEUED, RUNNING, JobError

POLL = 0.1  # seconds between a queued job's looks at the queue
SLICE_ENV = "ORCH_SLICE_DIR"  # tests/host point at a recorded orch.slice; the host's own otherwise
HOST_LOCK = ".host"  # never a job name (a name starts with a letter or digit)


def reservation_of(rec):
    value = rec.get("reservation")
    if isinstance(value, int):
        return value
    return rec["memory_max"] if isinstance(rec.get("memory_max"), int) else DEFAULT_RESERVATION


def allocatable():
    """orch.slice's limit in bytes, or None when the host has no orch.slice."""
    dirs = (os.environ[SLICE_ENV],) if os.environ.get(SLICE_ENV) else memory.SLICE_DIRS
    for directory in dirs:
        if os.path.isdir(directory):
            return memory.parse_int(memory.cg_read(directory, memory.CG_LIMIT))
    return None


def holds(rec):
    """Whether REC's reservation counts against the slice: running, or admitted and about to run."""
    return rec.get("state") == RUNNING or (rec.get("state") == QUEUED and rec.get("admitted") is True)


def waiting(jobs):
    """The QUEUED records not yet admitted, first come first served."""
    queued = [r for r in jobs if r.get("state") == QUEUED and r.get("admitted") is not True]
    return sorted(queued, key=lambda r: (r.get("queued") or "", r.get("run_id") or ""))


def add_positions(jobs):
    """queue_position (1 = next to start) on each waiting record, None on the others."""
    for rec in jobs:
        rec["queue_position"] = None
    for position, rec in enumerate(waiting(jobs), 1):
        rec["queue_position"] = position
    return jobs


def free_memory(jobs, limit):
    """LIMIT less the reservations JOBS hold."""
    return limit - sum(reservation_of(r) for r in jobs if holds(r))


def refusal(name, rec, jobs, limit, ahead):
    """Why job NAME may not wait (--no-queue): what it reserves against what the slice has unreserved now."""
    held = [r for r in jobs if holds(r)]
    queued = f", {len(ahead)} queued before it" if ahead else ""
    return (
        f"job {name} reserves {records.size_text(reservation_of(rec))} and orch.slice has "
        f"{records.size_text(max(free_memory(jobs, limit), 0))} unreserved now ({records.size_text(limit)} less "
        f"{len(held)} active job(s){queued}): without --no-queue it waits its turn; or ask for less with --mem"
    )


def admit(name, rec, save, stopped, queue=True):
    """Wait until REC's job may start: True once admitted (REC is then QUEUED with `admitted`, saved), False when
    STOPPED() said so first (REC untouched: the caller records the stop). SAVE(rec) writes the record. With QUEUE
    false a job that would wait is refused instead (a JobError, nothing saved)."""
    from .control import NameLock

    while True:
        with NameLock(HOST_LOCK):
            limit = allocatable()
            jobs = [r for r in records.query_jobs()[1] if r.get("run_id") != rec["run_id"]]
            ahead = waiting(jobs)
            if rec.get("queued") is not None:  # only those queued before this one are ahead of it
                ahead = [r for r in ahead if (r.get("queued") or "", r.get("run_id")) < (rec["queued"], rec["run_id"])]
            began = autostop.stopping()
            if began is not None:  # the idle auto-stop looked last, under this lock: nothing may start now
                raise JobError(
                    "this host is stopping itself (idle auto-stop): start it again with `orch up`, then run the job"
                )
            # the spot watch records its notice under this lock, then ends the jobs it lists: a new job is refused,
            # one already waiting waits on until the watch ends it (INTERRUPTED, as it never started)
            reclaimed = spot.interrupting()
            if reclaimed is not None and rec.get("queued") is None:
                raise JobError(
                    "this spot host is being reclaimed by EC2 (interruption notice: {} at {}): run the job on another"
                    " host (orch run --host), or later here".format(reclaimed.get("action"), reclaimed.get("time"))
                )
            if reclaimed is None and (limit is None or (not ahead and free_memory(jobs, limit) >= reservation_of(rec))):
                rec.update(state=QUEUED, admitted=True, admitted_at=records.now_iso(precise=True))
                save(rec)
                return True
            if not queue:
                raise JobError(refusal(name, rec, jobs, limit, ahead))
            if rec.get("queued") is None:
                rec.update(state=QUEUED, admitted=False, queued=records.now_iso(precise=True))
                save(rec)
        if stopped():
            return False
        time.sleep(POLL)
