"""The host layout and the job records: paths, atomic writes, and each record's state from live evidence.

Layout (the job user's home): ~/logs/NAME/run.log and job.json, ~/work (repos), ~/.orch (orch's own: lib/ the
installed host code, locks/ one lock per job name, run/ specs passing to supervisors).
"""

import json
import os

from . import memory, procs
from .contract import LOST, RUNNING
from .procs import read_text


def home():
    return os.path.expanduser("~")


def logs_dir(name=None):
    base = os.path.join(home(), "logs")
    return os.path.join(base, name) if name else base


def job_file(name):
    return os.path.join(logs_dir(name), "job.json")


def log_file(name):
    return os.path.join(logs_dir(name), "run.log")


def orch_dir(*parts):
    return os.path.join(home(), ".orch", *parts)


def spec_file(name):
    return orch_dir("run", name + ".spec")


def stop_file(name):
    return orch_dir("run", name + ".stop")


def now_iso():
    from datetime import datetime, timezone  # only writers need it: the query path does not pay for it

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ensure_dir(path, mode=0o755):
    os.makedirs(path, mode=mode, exist_ok=True)
    return path


def write_json_atomic(path, data):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_record(name):
    text = read_text(job_file(name))
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def boot_id():
    return (read_text("/proc/sys/kernel/random/boot_id", "") or "").strip()


class HostFacts:
    """What live evidence is compared against: the boot and the start of PID 1 (a container restart changes it)."""

    def __init__(self):
        self.host = os.uname().nodename  # gethostname() without importing socket
        self.boot_id = boot_id()
        self.init_start = procs.start_ticks(1)


def live_state(rec, facts):
    """Return a copy of the record whose state reflects live evidence (RUNNING only while its supervisor lives)."""
    rec = dict(rec)
    rec.setdefault("memory_current", None)
    if rec.get("state") != RUNNING:
        rec["memory_current"] = None
        return rec
    reason = None
    if rec.get("boot_id") != facts.boot_id or (
        rec.get("init_start") is not None and facts.init_start is not None and rec["init_start"] != facts.init_start
    ):
        reason = "host rebooted"
    elif not procs.alive(rec.get("supervisor_pid"), rec.get("supervisor_start")):
        reason = "supervisor gone"
    if reason:
        rec.update(state=LOST, lost_reason=reason, memory_current=None)
    return rec


def query_jobs(name=None):
    """(facts, records) with live states; one job when NAME is given (empty list when unknown)."""
    facts = HostFacts()
    names = [name] if name else sorted(os.listdir(logs_dir())) if os.path.isdir(logs_dir()) else []
    records = []
    for job_name in names:
        rec = read_record(job_name)
        if rec is not None:
            records.append(live_state(rec, facts))
    records.sort(key=lambda r: (r.get("started") or "", r.get("name") or ""))
    return facts, memory.add_memory(records)
