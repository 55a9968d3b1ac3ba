"""The host layout and the job records: paths, atomic writes, and each record's state from live evidence.

Layout (the job user's home): ~/logs/NAME/run.log and job.json, ~/work (repos), ~/.orch (orch's own: lib/ the
installed host code, locks/ one lock per job name, run/ specs passing to supervisors).
"""

import json
import os
import time

from . import memory, procs
from .contract import LOST, RUNNING, UNKNOWN
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


# Fields the host reads back from a record, by the type they must have (None is allowed for each).
_STRING_FIELDS = ("name", "run_id", "state", "started", "ended", "boot_id", "memory_cap", "memory_cgroup")
_INT_FIELDS = (
    "pid", "pgid", "job_start", "supervisor_pid", "supervisor_start", "init_start", "memory_max", "memory_peak",
)  # fmt: skip


def unreadable(name, why):
    """What a record that cannot be read shows: a job in state UNKNOWN, saying why."""
    return {"name": name, "state": UNKNOWN, "error": f"{why} (~/logs/{name}/job.json)"}


def read_record(name):
    """The job's record, None when it has none; a record that cannot be read (not UTF-8, not JSON, not an object,
    a field of the wrong type, empty) comes back as an UNKNOWN one saying why, so one broken file never hides the
    other jobs or lets its name start over a run that may still live."""
    try:
        with open(job_file(name), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return unreadable(name, f"cannot read job.json: {exc.strerror}")
    if not raw.strip():
        return unreadable(name, "job.json is empty")
    try:
        rec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return unreadable(name, "job.json is not UTF-8")
    except ValueError:
        return unreadable(name, "job.json is not valid JSON (truncated?)")
    if not isinstance(rec, dict):
        return unreadable(name, f"job.json holds a JSON {type(rec).__name__}, not a record")
    for key in _STRING_FIELDS:
        if rec.get(key) is not None and not isinstance(rec[key], str):
            return unreadable(name, f"job.json's {key} is not a string")
    for key in _INT_FIELDS:
        if rec.get(key) is not None and (not isinstance(rec[key], int) or isinstance(rec[key], bool)):
            return unreadable(name, f"job.json's {key} is not a whole number")
    return rec


def boot_id():
    return (read_text("/proc/sys/kernel/random/boot_id", "") or "").strip()


# A supervisor whose session went away (SIGHUP) or that was told to end (SIGTERM, as at a shutdown) records this.
HANGUP_REASON = "the supervisor got {signal} (tmux session closed or host shutting down); job terminated"
# A job whose supervisor ended this long before the host's PID 1 started again was ended by that restart.
RESTART_WINDOW = 600.0


class HostFacts:
    """What live evidence is compared against: the boot and the start of PID 1 (a container restart changes it)."""

    def __init__(self):
        self.host = os.uname().nodename  # gethostname() without importing socket
        self.boot_id = boot_id()
        self.init_start = procs.start_ticks(1)

    def init_started_at(self):
        """When PID 1 started, in seconds since the epoch: the kernel's boot time plus PID 1's start ticks."""
        for line in (read_text("/proc/stat", "") or "").splitlines():
            if line.startswith("btime ") and self.init_start is not None:
                return int(line.split()[1]) + self.init_start / os.sysconf("SC_CLK_TCK")
        return None


def restarted(rec, facts):
    """Whether the host booted, or its PID 1 started again (a container restart), since REC's job started."""
    return rec.get("boot_id") != facts.boot_id or (
        rec.get("init_start") is not None and facts.init_start is not None and rec["init_start"] != facts.init_start
    )


def ended_by_restart(rec, facts):
    """A job its supervisor ended on a hangup shortly before the host came up again: the restart ended it."""
    if not str(rec.get("lost_reason") or "").startswith(HANGUP_REASON.partition("{")[0]) or not restarted(rec, facts):
        return False
    import calendar

    started_at = facts.init_started_at()
    try:
        ended = calendar.timegm(time.strptime(rec.get("ended") or "", "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return False
    return started_at is not None and started_at - RESTART_WINDOW <= ended <= started_at + 1


def live_state(rec, facts):
    """Return a copy of the record whose state reflects live evidence (RUNNING only while its supervisor lives)."""
    rec = dict(rec)
    rec.setdefault("memory_current", None)
    rec["live_processes"] = None  # set below only for a run whose supervisor died while its processes lived on
    if rec.get("state") != RUNNING:
        rec["memory_current"] = None
        if rec.get("state") == LOST and ended_by_restart(rec, facts):
            rec["lost_reason"] = "host rebooted"  # its supervisor saw the shutdown's SIGTERM; the host says why
        return rec
    reason = None
    if restarted(rec, facts):
        reason = "host rebooted"
    elif not procs.alive(rec.get("supervisor_pid"), rec.get("supervisor_start")):
        reason = "supervisor gone"
    if reason:
        rec.update(state=LOST, lost_reason=reason, memory_current=None)
    if reason == "supervisor gone":  # killed outright: what the job started may live on, unseen by anyone
        alive = procs.run_processes(rec)
        if alive:
            rec["live_processes"] = len(alive)
            rec["lost_reason"] = "supervisor gone; {} process(es) of the job still run (orch stop {} ends them)".format(
                len(alive), rec.get("name")
            )
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
    records.sort(key=lambda r: (r.get("started") or "", r.get("name") or ""))  # strings: read_record checks
    return facts, memory.add_memory(records)
