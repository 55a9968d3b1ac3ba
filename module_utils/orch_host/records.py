"""The host layout and the job records: paths, atomic writes, and each record's state from live evidence.

Layout (the job user's home): ~/logs/NAME/run.log and job.json, ~/work (repos), ~/.orch (orch's own: lib/ the
installed host code, locks/ one lock per job name, run/ specs passing to supervisors).
"""

import errno
import json
import os
import time

from . import memory, procs
from .contract import LOST, QUEUED, RUNNING, UNKNOWN
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


def now_iso(precise=False):
    """UTC now, ISO-8601; PRECISE adds microseconds (a queue's order within a second)."""
    from datetime import datetime, timezone  # only writers need it: the query path does not pay for it

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if precise else "%Y-%m-%dT%H:%M:%SZ")


def ensure_dir(path, mode=0o755):
    os.makedirs(path, mode=mode, exist_ok=True)
    return path


def error_file(name):
    """Where a supervisor that cannot start its job says why, for start_job to report."""
    return orch_dir("run", name + ".error")


# --- records that survive a full disk ------------------------------------------------------------------------------
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# A supervisor keeps this much disk for its job's end in ~/logs/NAME/.reserve from the job's start until its last
# record is written. A record is about 1.5 KiB, one block: 64 KiB holds it on any block size (up to 64 KiB pages).
RESERVE_NAME = ".reserve"
RESERVE_SIZE = 64 << 10


def reserve_file(name):
    return os.path.join(logs_dir(name), RESERVE_NAME)


def make_reserve(path, size=RESERVE_SIZE):
    """Keep SIZE bytes of disk at PATH: random bytes written and synced (not sparse, and a compressing filesystem
    cannot store them as less). Raises OSError (ENOSPC on a full disk) and leaves no file then."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)  # a reserve left by a dead run: its blocks are rewritten
    try:
        done = 0
        while done < size:
            done += os.pwrite(fd, os.urandom(min(size - done, 65536)), done)
        os.ftruncate(fd, size)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink(path)
        raise
    os.close(fd)


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _record_text(data):
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def write_all(fd, text):
    view = memoryview(text)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic(path, text):
    """TEXT as PATH's new content, atomically (PATH.tmp.PID, synced, renamed over PATH); no tmp file is left."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _write_into(path, text, keep_size=True):
    """TEXT over the existing file PATH in the blocks it has (so a full disk does not matter). Raises ENOSPC, the
    file untouched, when TEXT is larger than those blocks. With KEEP_SIZE a shorter TEXT is padded with spaces to the
    old size, so that the file never ends in the old record's tail (still, a reader may see a mix for an instant);
    else the file is cut to TEXT."""
    fd = os.open(path, os.O_WRONLY)
    try:
        st = os.fstat(fd)
        if len(text) > max(st.st_size, st.st_blocks * 512):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        if keep_size and len(text) < st.st_size:
            text = text[:-1] + b" " * (st.st_size - len(text)) + b"\n"
        write_all(fd, text)
        if not keep_size:
            os.ftruncate(fd, len(text))
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path, data):
    write_atomic(path, _record_text(data))


def save_record(path, data, reserve=None):
    """Write the record DATA to PATH so that a full disk does not lose it: atomically as a new file; on a full disk
    (ENOSPC, EDQUOT) into the blocks of the RESERVE file, renamed over PATH (atomic too); on a copy-on-write
    filesystem, which allocates anew even there, with the reserve freed and a new file again; last, over PATH's own
    blocks. Raises the first OSError when none of these can hold it. No tmp file is left behind."""
    text = _record_text(data)
    try:
        write_atomic(path, text)
        return
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        full = exc
    if reserve and os.path.exists(reserve):
        try:
            _write_into(reserve, text, keep_size=False)
            os.replace(reserve, path)
            return
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
        _unlink(reserve)
        try:
            write_atomic(path, text)
            return
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
    try:
        _write_into(path, text)
    except FileNotFoundError:
        raise full from None


def _free(st):
    """Bytes this user may still write, from a statvfs result (root may use the blocks kept for root)."""
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize


def free_bytes(path):
    """Bytes this user may still write on the filesystem holding PATH, or None when PATH cannot be looked at."""
    try:
        return _free(os.statvfs(path))
    except OSError:
        return None


def disk_of(path):
    """(mount point, free bytes, free inodes or None) of the filesystem that holds PATH, or would hold it (its
    nearest existing ancestor)."""
    path = os.path.realpath(path)
    while not os.path.exists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    inodes = (st.f_ffree if os.geteuid() == 0 else st.f_favail) if st.f_files else None  # 0: not counted (btrfs)
    mount, dev = path, os.stat(path).st_dev
    while mount != os.path.dirname(mount) and os.stat(os.path.dirname(mount)).st_dev == dev:
        mount = os.path.dirname(mount)
    return mount, _free(st), inodes


def size_text(size):
    """Bytes for a person: 0 bytes, 900 bytes, 12.5 KiB, 1 MiB."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size} bytes" if unit == "bytes" else f"{size:.1f}".removesuffix(".0") + f" {unit}"
        size /= 1024
    return None  # not reached


def full_disk_message(what, path, needed, needed_inodes=1):
    """One line: the disk holding WHAT (at PATH) lacks the NEEDED bytes (or NEEDED_INODES files) a job needs to start
    and record its end, and what to do."""
    try:
        mount, free, inodes = disk_of(path)
    except OSError:  # cannot even be looked at: the error that brought us here said "full"
        mount, free, inodes = path, 0, None
    if inodes is not None and inodes < needed_inodes:
        lack = f"{inodes} free inodes (files), {needed_inodes} needed to start a job and record its end"
    else:
        lack = f"{size_text(free)} free, {size_text(needed)} needed to start a job and record its end"
    return (
        f"the disk holding {what} (mounted at {mount}) is full: {lack}; free space there "
        "(`orch rm NAME --purge` deletes a finished job with its logs), then start the job again"
    )


# Fields the host reads back from a record, by the type they must have (None is allowed for each).
_STRING_FIELDS = ("name", "run_id", "state", "started", "ended", "boot_id", "memory_cap", "memory_cgroup", "queued")
_INT_FIELDS = (
    "pid", "pgid", "job_start", "supervisor_pid", "supervisor_start", "init_start", "memory_max", "memory_peak",
    "reservation",
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
    if rec.get("state") not in (RUNNING, QUEUED):
        rec["memory_current"] = None
        if rec.get("state") == LOST and ended_by_restart(rec, facts):
            rec["lost_reason"] = "host rebooted"  # its supervisor saw the shutdown's SIGTERM; the host says why
        return rec
    reason = None
    if restarted(rec, facts):
        reason = "host rebooted"
    elif not procs.alive(rec.get("supervisor_pid"), rec.get("supervisor_start")):
        reason = "supervisor gone"
    if reason and rec.get("state") == QUEUED:
        reason += " while the job was queued (it never started)"
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
    from .admission import add_positions

    if name and records and records[0].get("state") == QUEUED:  # its place is among all the host's jobs
        everyone = query_jobs()[1]
        records[0]["queue_position"] = next((r["queue_position"] for r in everyone if r.get("name") == name), None)
    else:
        add_positions(records)
    return facts, memory.add_memory(records)
