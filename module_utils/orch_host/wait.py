"""wait: until jobs end, on the host itself. The host looks at the records (no SSH round trip per look) and writes
one JSON line per job as it ends: the state change travels to the laptop when it happens, over the one ssh
channel `orch wait` holds open."""

import json
import sys
import time

from . import records
from .contract import ACTIVE_STATES, JobError

POLL = 0.2  # seconds between looks at the records: local file reads, so cheap


def _line(data, out):
    out.write(json.dumps(data) + "\n")
    out.flush()


def wait(names, timeout=None, out=None):
    """Write {"job": RECORD} for each of NAMES as it stops being QUEUED or RUNNING (the query's record, with its
    memory), then {"done": true}; or {"timeout": [NAMES still active]} once TIMEOUT seconds have passed."""
    out = out or sys.stdout
    facts = records.HostFacts()
    last = {}
    for name in names:
        rec = records.read_record(name)
        if rec is None:
            raise JobError(f"no job named {name} on {facts.host} (orch status lists the jobs)")
        last[name] = rec
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = list(dict.fromkeys(names))
    while True:
        for name in list(pending):
            last[name] = records.read_record(name) or last[name]
            if records.live_state(last[name], facts).get("state") not in ACTIVE_STATES:
                found = records.query_jobs(name)[1]
                _line({"job": found[0] if found else records.live_state(last[name], facts)}, out)
                pending.remove(name)
        if not pending:
            _line({"done": True}, out)
            return 0
        if deadline is not None and time.monotonic() >= deadline:
            _line({"timeout": pending}, out)
            return 0
        time.sleep(POLL)
