#!/usr/bin/python
# Copyright: orch contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# One file, two roles:
#  * the Ansible module `orch_job` (state started | stopped | absent | query), run by the job playbooks;
#  * a stdlib-only script, run on the host as `python3 orch_job.py VERB ...` or sent over ssh on stdin
#    (`python3 - query`), with the verbs `query [NAME]`, `follow NAME [--tail N]` and `supervise NAME`
#    (the supervisor that runs inside each job's tmux session).
# Script exit statuses: `query` 0 (an unknown NAME gives "jobs": []); `follow` exits with the job's own exit code
# when it ended FAILED with one, 0 for SUCCEEDED, 137 for KILLED and OOM, 1 for FAILED by a signal and for LOST,
# 2 for an unknown job or an invalid name (one line on stderr), 130 when interrupted.
# Ansible is imported only on the module path, so the script verbs start fast and need nothing but python3.

DOCUMENTATION = r"""
---
module: orch_job
short_description: Run, inspect, stop and forget orch jobs in tmux on a job host
description:
  - Each job NAME runs in its own detached tmux session C(orch-NAME) (C(.) becomes C(,) in the session name).
    A small supervisor inside the session starts the command with C(bash -c) in a new process group, appends
    its stdout and stderr to C(~/logs/NAME/run.log) and writes C(~/logs/NAME/job.json) atomically.
  - Job states are C(RUNNING), C(SUCCEEDED), C(FAILED), C(KILLED) (stopped by orch), C(OOM) (killed by its memory
    cap) and C(LOST) (the supervisor vanished without an exit record, for example after a host reboot or when the
    tmux session was killed). C(RUNNING) is only reported while the supervisor process is alive on the current boot.
  - The module installs its own source as C(~/.orch/lib/orch_job_<sha256>.py) on the host for the supervisor;
    the same file works as a script (C(query), C(follow NAME), C(supervise NAME)) for the CLI's read paths.
  - Paths derive from C($HOME) of the user the module runs as.
options:
  name:
    description:
      - Job name, matching C(^[a-z0-9][a-z0-9._-]{0,62}$) and not containing C(..).
      - Required unless O(state=query), where omitting it returns every job on the host.
    type: str
  state:
    description:
      - V(started) starts the job; it fails when a job of that name is running. A finished job of the same name
        is replaced and its log appended to.
      - V(stopped) sends SIGTERM to the job's process group and SIGKILL after O(grace) seconds; the job ends
        C(KILLED). Stopping a finished job changes nothing.
      - V(absent) forgets a finished job (its C(job.json); the log too with O(purge_logs)). It refuses a running job.
      - V(query) returns one job (O(name); it fails when there is no such job) or all jobs, with states from live
        evidence.
    type: str
    choices: [started, stopped, absent, query]
    default: query
  command:
    description:
      - The command, run verbatim as C(bash -c COMMAND) (one argument, never interpolated into another shell
        string or a tmux command). Required with O(state=started); must not be empty.
    type: str
  cwd:
    description:
      - Working directory of the job. Relative paths are under C(~/work). It must exist.
    type: str
    default: ~/work
  env:
    description: Extra environment variables for the job.
    type: dict
    default: {}
  secrets:
    description:
      - Map of environment variable to SSM Parameter Store parameter name. The values are fetched on the host at
        job start with boto3 (credentials and region from the host, its instance role, C(AWS_REGION),
        C(AWS_ENDPOINT_URL)) and reach the job through the supervisor's memory only; they are never written to
        C(job.json), argv, tmux commands or files readable by other users.
    type: dict
    default: {}
  memory_max:
    description:
      - Memory cap such as V(8G) or V(512M) (powers of 1024). Enforced with C(systemd-run --user --scope
        -p MemoryMax=) when the user's systemd manager runs with the memory controller delegated; otherwise the job
        runs without a cap and the record says why in C(memory_cap).
    type: str
  grace:
    description: Seconds between SIGTERM and SIGKILL for O(state=stopped).
    type: int
    default: 10
  purge_logs:
    description: With O(state=absent), remove the job's log directory too.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: In check mode nothing is started, signalled or removed; RV(changed) says what would happen.
notes:
  - "Script use: C(python3 orch_job.py query [NAME]) prints C({host, boot_id, jobs}) as JSON;
    C(python3 orch_job.py follow NAME [--tail N]) prints the last N lines (10), streams the log across copytruncate
    and rename rotation until the job is no longer running, and exits with the job's exit code (SUCCEEDED 0,
    FAILED its code, KILLED and OOM 137, FAILED by a signal and LOST 1, unknown job 2). Both also work as
    C(python3 - VERB ...) with this file on stdin."
  - A memory cap on a cgroup v1 host is only enforced for root (system scope); user scopes need cgroup v2.
  - O(state=started) waits until the supervisor has recorded the job (well under a second) and returns that record.
  - Two concurrent starts of one name are serialised by a lock in C(~/.orch/locks/); exactly one wins.
requirements:
  - tmux on the host
  - python3 on the host (the supervisor and the read paths use the standard library only)
  - boto3 on the host when O(secrets) is used
author:
  - orch contributors
"""

EXAMPLES = r"""
- name: Ensure the training job is started
  orch_job:
    name: train-a
    command: python train.py --epochs 10
    cwd: model-repo
    env:
      BATCH: "64"
    secrets:
      HF_TOKEN: /orch/orch/secrets/hf-token
    memory_max: 8G
    state: started
  register: orch_job_started

- name: Ensure the training job is stopped
  orch_job:
    name: train-a
    state: stopped
    grace: 30

- name: Read every job on the host
  orch_job:
  register: orch_jobs

- name: Ensure the finished job is forgotten, logs included
  orch_job:
    name: train-a
    state: absent
    purge_logs: true
"""

RETURN = r"""
job:
  description:
    - The job record (C(job.json)) with its state taken from live evidence. Returned for O(state=started),
      O(state=stopped), O(state=absent) (null when there was no such job) and O(state=query) with O(name).
  returned: when name is given
  type: dict
  contains:
    name:
      description: Job name.
      type: str
      sample: train-a
    run_id:
      description: Identifier of this run of the name.
      type: str
      sample: 6f1c0e4b9a2d4c7e8f00112233445566
    command:
      description: The command as given.
      type: str
      sample: python train.py
    cwd:
      description: Absolute working directory.
      type: str
      sample: /home/ec2-user/work/model-repo
    host:
      description: Host name of the job host.
      type: str
      sample: ip-10-0-0-12
    state:
      description: Job state.
      type: str
      sample: RUNNING
    started:
      description: Start time, ISO-8601 UTC.
      type: str
      sample: "2026-01-01T10:00:00Z"
    ended:
      description: End time, ISO-8601 UTC; null while running or when lost.
      type: str
      sample: "2026-01-01T11:00:00Z"
    exit_code:
      description: Exit code; null while running or when the job died of a signal.
      type: int
      sample: 3
    signal:
      description: Name of the signal that ended the job, or null.
      type: str
      sample: SIGKILL
    oom:
      description: Whether the memory cap's OOM killer ended the job.
      type: bool
      sample: false
    memory_max:
      description: Memory cap in bytes, or null.
      type: int
      sample: 8589934592
    memory_cap:
      description: "C(enforced), C(none), or C(not enforced: REASON)."
      type: str
      sample: none
    memory_peak:
      description:
        - Peak memory in bytes; the cap's cgroup peak (C(memory.peak), v1 C(memory.max_usage_in_bytes)) when capped,
          else the larger of the sampled sum of per-process peak RSS (every 2 s) and the largest reaped process's
          peak RSS.
      type: int
      sample: 1073741824
    memory_current:
      description:
        - Current memory in bytes of the job's processes (sum of RSS in the job's session; the cap's cgroup usage
          when capped); null unless running.
      type: int
      sample: 104857600
    pid:
      description: PID of the job's C(bash -c) process (also its session and process group id).
      type: int
      sample: 4242
    pgid:
      description: Process group id of the job.
      type: int
      sample: 4242
    tmux_session:
      description: The tmux session name.
      type: str
      sample: orch-train-a
    memory_cgroup:
      description: Sysfs directory of the memory cgroup holding the cap, or null when not capped.
      type: str
      sample: /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/orch-train-a-6f1c0e4b.scope
    cgroup:
      description: The job's cgroup (v2 path) when known.
      type: str
      sample: /user.slice/user-1000.slice/session-3.scope
    boot_id:
      description: Kernel boot id when the job started.
      type: str
      sample: 9a3c2f4e-0d5e-4a57-8f55-2a8a5f2b1c11
    init_start:
      description: Start time (clock ticks) of PID 1 when the job started; detects container restarts.
      type: int
      sample: 12
    supervisor_pid:
      description: PID of the supervisor.
      type: int
      sample: 4240
    supervisor_start:
      description: Start time (clock ticks) of the supervisor; beats PID reuse.
      type: int
      sample: 99120
    lost_reason:
      description: Why the job is LOST, or null.
      type: str
      sample: host rebooted
    secrets:
      description: Names of the environment variables filled from SSM (never their values).
      type: list
      elements: str
      sample: [HF_TOKEN]
    log:
      description: Path of the job's log file.
      type: str
      sample: /home/ec2-user/logs/train-a/run.log
  sample:
    name: train-a
    state: RUNNING
    exit_code: null
jobs:
  description: Every job on the host (live states), oldest first.
  returned: when state is query and no name is given
  type: list
  elements: dict
  sample: [{name: train-a, state: SUCCEEDED, exit_code: 0}]
host:
  description: Host name of the job host.
  returned: always
  type: str
  sample: ip-10-0-0-12
boot_id:
  description: Current kernel boot id of the host.
  returned: always
  type: str
  sample: 9a3c2f4e-0d5e-4a57-8f55-2a8a5f2b1c11
msg:
  description: What was done, in words.
  returned: always
  type: str
  sample: started train-a
"""

# Modules only some paths need are imported where used: `orch status` runs the query path on every call.
import errno
import fcntl
import json
import os
import re
import signal
import sys
import time
from datetime import datetime, timezone

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MEMORY_RE = re.compile(r"([0-9]+)([KMGT]?)", re.IGNORECASE)
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
KILLED = "KILLED"
OOM = "OOM"
LOST = "LOST"
# `follow` exits with the job's exit code; for the other endings (documented in the CLI's `logs --follow`):
EXIT_BY_STATE = {SUCCEEDED: 0, FAILED: 1, KILLED: 137, OOM: 137, LOST: 1}
EXIT_UNKNOWN_JOB = 2
TICK = 0.5  # supervisor: exit detection is immediate (pidfd); the tick paces the pane view and sampling
SAMPLE_EVERY = 2.0  # supervisor: seconds between memory samples when no cgroup memory.peak exists
FOLLOW_POLL = 0.1
START_TIMEOUT = 20.0  # module: seconds to wait for the supervisor's first record
PANE_CHUNK = 16384  # supervisor: at most this many new log bytes shown in the tmux pane per tick
SCRIPT_VERBS = ("query", "follow", "supervise")


class JobError(Exception):
    """An expected failure: one line a person can act on."""


# --- paths and small helpers ------------------------------------------------------------------------------


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


def session_name(name):
    # tmux rewrites '.' and ':' in session names; ',' is allowed and cannot occur in a valid job name.
    return "orch-" + name.replace(".", ",")


def check_name(name):
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise JobError(
            f"invalid job name {json.dumps(name, ensure_ascii=True)}: use 1-63 characters a-z 0-9 . _ -, "
            "starting with a letter or digit, no '..'"
        )
    return name


def parse_memory(text):
    if text is None or text == "":
        return None
    m = MEMORY_RE.fullmatch(str(text).strip())
    if not m or int(m.group(1)) == 0:
        raise JobError(f"invalid memory_max {json.dumps(text)}: use a size like 512M or 8G")
    return int(m.group(1)) * 1024 ** "_KMGT".index(m.group(2).upper() or "_")


def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_text(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def boot_id():
    return (read_text("/proc/sys/kernel/random/boot_id", "") or "").strip()


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


class HostFacts:
    """What live evidence is compared against: the boot and the start of PID 1 (a container restart changes it)."""

    def __init__(self):
        self.host = os.uname().nodename  # gethostname() without importing socket
        self.boot_id = boot_id()
        self.init_start = start_ticks(1)


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
    else:
        if not alive(rec.get("supervisor_pid"), rec.get("supervisor_start")):
            reason = "supervisor gone"
    if reason:
        rec.update(state=LOST, lost_reason=reason, memory_current=None)
    return rec


def add_memory(records):
    """Fill memory_current of RUNNING records: cgroup memory.current when capped, else one pass over /proc."""
    by_session = {}
    for rec in records:
        if rec.get("state") != RUNNING:
            continue
        current = None
        if rec.get("memory_cap") == "enforced" and rec.get("memory_cgroup"):
            current = parse_int(cg_read(rec["memory_cgroup"], CG_CURRENT))
        if current is not None:
            rec["memory_current"] = current
        elif isinstance(rec.get("pid"), int):
            rec["memory_current"] = 0
            by_session[rec["pid"]] = rec
    if not by_session:
        return records
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = proc_stat(int(entry))
        # field 6 (session) and field 24 (rss, pages): indexes 3 and 21 here
        if fields and int(fields[3]) in by_session:
            by_session[int(fields[3])]["memory_current"] += int(fields[21]) * page
    return records


def session_peak(sid):
    """Sum of the peak RSS (VmHWM) of the processes of session SID, in bytes."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = proc_stat(int(entry))
        if not fields or int(fields[3]) != sid:
            continue
        for line in (read_text(f"/proc/{entry}/status", "") or "").splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
                break
    return total


def query_jobs(name=None):
    """(facts, records) with live states; one job when NAME is given (empty list when unknown)."""
    facts = HostFacts()
    names = [name] if name else sorted(os.listdir(logs_dir())) if os.path.isdir(logs_dir()) else []
    records = []
    for n in names:
        rec = read_record(n)
        if rec is not None:
            records.append(live_state(rec, facts))
    records.sort(key=lambda r: (r.get("started") or "", r.get("name") or ""))
    return facts, add_memory(records)


def signal_name(num):
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"SIG{num}"


# --- the supervisor (runs inside the tmux session) ----------------------------------------------------------


class Hangup(Exception):
    """The supervisor's tmux session went away (SIGHUP) or it was asked to end (SIGTERM)."""


def _on_hangup(signum, frame):
    raise Hangup(signal_name(signum))


def memory_cap_plan(memory_max, unit):
    """(systemd-run argv prefix or None, why the cap cannot be enforced or None). Cheap checks, no subprocess.

    root uses a system scope (works on cgroup v1 and v2); other users a user scope, which needs cgroup v2, a running
    user manager (lingering) and the memory controller delegated to it.
    """
    if memory_max is None:
        return None, None
    uid = os.getuid()
    import shutil

    if shutil.which("systemd-run") is None:
        return None, "not enforced: systemd-run not found"
    scope = ["systemd-run", "--scope", "--quiet", "--unit", unit, "-p", f"MemoryMax={memory_max}", "--"]
    if uid == 0:
        if not os.path.isdir("/run/systemd/system"):
            return None, "not enforced: systemd is not running"
        return scope, None
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{uid}"
    if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return None, "not enforced: cgroup v1 host, user scopes cannot hold a memory cap"
    if not os.path.exists(os.path.join(runtime, "systemd", "private")):
        return None, "not enforced: no systemd user manager (enable lingering for the job user)"
    service = f"/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers"
    if "memory" not in (read_text(service, "") or "").split():
        return None, "not enforced: memory controller not delegated to the user manager"
    return scope[:1] + ["--user"] + scope[1:], None


def cgroup_of(pid):
    """The v2 path of PID's cgroup (the '0::' line)."""
    for line in (read_text(f"/proc/{pid}/cgroup", "") or "").splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def memory_cgroup_of(pid):
    """The sysfs directory of PID's memory cgroup: unified v2, or the v1 memory controller."""
    for line in (read_text(f"/proc/{pid}/cgroup", "") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            return "/sys/fs/cgroup" + path
        if "memory" in controllers.split(","):
            return "/sys/fs/cgroup/memory" + path
    return None


# memory cgroup files: v2 name, v1 name
CG_LIMIT = ("memory.max", "memory.limit_in_bytes")
CG_CURRENT = ("memory.current", "memory.usage_in_bytes")
CG_PEAK = ("memory.peak", "memory.max_usage_in_bytes")
CG_EVENTS = ("memory.events", "memory.oom_control")


def cg_read(directory, names):
    for name in names:
        text = read_text(os.path.join(directory, name))
        if text is not None:
            return text
    return None


def parse_int(text):
    return int(text) if text and text.strip().isdigit() else None


def oom_kills(directory):
    for line in (cg_read(directory, CG_EVENTS) or "").splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return None


def systemd_result(unit):
    """Result= of a finished scope (systemd records oom-kill there); None when unknown."""
    import subprocess

    try:
        out = subprocess.run(
            ["systemctl"] + ([] if os.getuid() == 0 else ["--user"]) + ["show", "--property=Result", "--value", unit],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        # a scope that failed (oom-kill) stays loaded until reset
        subprocess.run(
            ["systemctl"] + ([] if os.getuid() == 0 else ["--user"]) + ["reset-failed", unit],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class PaneView:
    """Shows the tail of the log in the tmux pane for `orch attach`; bounded so it never slows a chatty job."""

    def __init__(self, path):
        self.path = path
        self.pos = os.path.getsize(path) if os.path.exists(path) else 0
        self.enabled = True

    def show(self):
        if not self.enabled:
            return
        try:
            size = os.path.getsize(self.path)
            if size < self.pos:
                self.pos = 0
            if size == self.pos:
                return
            out = sys.stdout.buffer
            if size - self.pos > PANE_CHUNK:
                out.write(b"\r\n[orch] ... %d bytes not shown here (see the log)\r\n" % (size - self.pos - PANE_CHUNK))
                self.pos = size - PANE_CHUNK
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read(size - self.pos)
            self.pos += len(data)
            out.write(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
            out.flush()
        except OSError:
            self.enabled = False  # the pane is gone (hangup) or the log was removed


def supervise(name):
    check_name(name)
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, _on_hangup)
    sfile = spec_file(name)
    try:
        with open(sfile) as f:
            spec = json.load(f)
    except (OSError, ValueError):
        raise JobError(f"no job spec for {name}: supervise is started by the orch_job module") from None
    finally:
        try:
            os.unlink(sfile)  # the spec may hold secret values: gone as soon as it is read
        except OSError:
            pass
    secrets = spec.pop("secret_values", {})
    ensure_dir(logs_dir(name))
    log_path = log_file(name)
    facts = HostFacts()
    memory_max = spec.get("memory_max")
    unit = "orch-{}-{}.scope".format(name, spec["run_id"][:8])
    scope_argv, cap_reason = memory_cap_plan(memory_max, unit)
    rec = {
        "name": name,
        "run_id": spec["run_id"],
        "command": spec["command"],
        "cwd": spec["cwd"],
        "host": facts.host,
        "state": RUNNING,
        "started": now_iso(),
        "ended": None,
        "exit_code": None,
        "signal": None,
        "oom": False,
        "memory_max": memory_max,
        "memory_cap": "none" if memory_max is None else cap_reason,
        "memory_peak": None,
        "pid": None,
        "pgid": None,
        "tmux_session": session_name(name),
        "cgroup": None,
        "memory_cgroup": None,
        "boot_id": facts.boot_id,
        "init_start": facts.init_start,
        "supervisor_pid": os.getpid(),
        "supervisor_start": start_ticks(os.getpid()),
        "lost_reason": None,
        "secrets": sorted(secrets),
        "log": log_path,
    }
    try:
        os.unlink(stop_file(name))
    except OSError:
        pass
    env = dict(os.environ)
    env.update(spec.get("env") or {})
    env.update(secrets)
    env["ORCH_JOB"] = name
    argv = ["bash", "-c", spec["command"]]
    if scope_argv:
        env.setdefault("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
        argv = scope_argv + argv
    logfd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(logfd, ("[orch] job {} started {}\n".format(name, rec["started"])).encode())
    view = PaneView(log_path)
    sys.stdout.write(f"[orch] job {name}: log {log_path} (Ctrl-b d detaches)\r\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_RDONLY)
    # ru_maxrss survives exec, so the child's figure counts this Python's size: only trust it above that
    import resource

    own_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pid = os.fork()
    if pid == 0:  # the job: own session and process group, output straight into the log file
        try:
            os.setsid()
            for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            os.chdir(spec["cwd"])
            os.dup2(devnull, 0)
            os.dup2(logfd, 1)
            os.dup2(logfd, 2)
            os.execvpe(argv[0], argv, env)
        except BaseException as exc:  # noqa: B036 - the forked child must never return into Python
            os.write(logfd, (f"[orch] cannot start the job: {exc}\n").encode())
        os._exit(127)
    os.close(devnull)
    grace = int(spec.get("grace", 10))
    del env, secrets
    spec.clear()
    rec.update(pid=pid, pgid=pid)
    hangup = None
    try:
        if scope_argv:
            for _ in range(300):  # systemd-run moves itself into the scope, then execs bash
                mcg = memory_cgroup_of(pid)
                if mcg is None or unit in mcg:
                    break
                time.sleep(0.01)
        rec["cgroup"] = cgroup_of(pid)
        if scope_argv:
            mcg = memory_cgroup_of(pid)
            limit = parse_int(cg_read(mcg, CG_LIMIT)) if mcg and unit in mcg else None
            if limit is not None and abs(limit - memory_max) < 65536:  # v1 rounds to pages
                rec.update(memory_cap="enforced", memory_cgroup=mcg)
            else:
                rec["memory_cap"] = "not enforced: the job's scope has no memory limit (controller not delegated)"
        write_json_atomic(job_file(name), rec)
        status, rusage, peak, ooms = wait_job(pid, rec, view)
    except Hangup as exc:
        hangup = str(exc)
        for signum in (signal.SIGHUP, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        status, rusage, peak, ooms = end_job(pid, grace)
    rec["ended"] = now_iso()
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        rec["signal"] = signal_name(-code)
    else:
        rec["exit_code"] = code
    reaped = rusage.ru_maxrss if rusage and rusage.ru_maxrss > own_maxrss else 0
    peaks = [p for p in (peak, reaped * 1024) if p]
    rec["memory_peak"] = max(peaks) if peaks else None
    stopped = (read_text(stop_file(name), "") or "").strip() == rec["run_id"]
    oom = bool(ooms)
    if not oom and rec["memory_cap"] == "enforced" and rec["signal"] == "SIGKILL" and not stopped:
        # the scope may be gone already: systemd's verdict, else a SIGKILL at the cap is the OOM killer's
        oom = systemd_result(unit) == "oom-kill" or (rec["memory_peak"] or 0) >= memory_max * 0.9
    rec["oom"] = oom
    if hangup:
        rec.update(
            state=LOST,
            lost_reason=f"the supervisor got {hangup} (tmux session closed or host shutting down); job terminated",
        )
    elif stopped:
        rec["state"] = KILLED
    elif oom:
        rec["state"] = OOM
    elif code == 0:
        rec["state"] = SUCCEEDED
    else:
        rec["state"] = FAILED
    ending = f"code {code}" if code >= 0 else f"signal {rec['signal']}"
    os.write(logfd, ("[orch] job exited with {} ({})\n".format(ending, rec["state"])).encode())
    os.close(logfd)
    write_json_atomic(job_file(name), rec)
    try:
        os.unlink(stop_file(name))
    except OSError:
        pass
    return 0


def _wait_readable(fd, timeout):
    if fd is None:
        time.sleep(min(timeout, 0.05))
    else:
        import select

        select.select([fd], [], [], timeout)


def wait_job(pid, rec, view):
    """Wait for the direct child; sample memory meanwhile. Returns (status, rusage, peak bytes, oom kills)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # older kernel or Python: poll instead
    cgroup = rec["memory_cgroup"] if rec["memory_cap"] == "enforced" else None
    base_ooms = oom_kills(cgroup) if cgroup else None
    peak, ooms = 0, 0
    next_sample = time.monotonic() + 0.1  # an early sample, so short jobs get a figure too
    try:
        while True:
            if cgroup:  # two small reads each wake-up, also right after the child ends (before systemd drops the scope)
                peak = max(peak, parse_int(cg_read(cgroup, CG_PEAK)) or 0)
                count = oom_kills(cgroup)
                if count is not None and base_ooms is not None:
                    ooms = max(ooms, count - base_ooms)
            got, status, rusage = os.wait4(pid, os.WNOHANG)
            if got == pid:
                return status, rusage, peak, ooms
            if not cgroup and time.monotonic() >= next_sample:
                peak = max(peak, session_peak(pid))
                next_sample = time.monotonic() + SAMPLE_EVERY
            view.show()
            _wait_readable(pidfd, TICK)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def end_job(pid, grace):
    """The session is going away: terminate the job's group, SIGKILL after GRACE seconds, reap the child."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30)):
        try:
            os.killpg(pid, sig)
        except OSError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            got, status, rusage = os.wait4(pid, os.WNOHANG)
            if got == pid:
                return status, rusage, 0, 0
            time.sleep(0.05)
    _, status, rusage = os.wait4(pid, 0)
    return status, rusage, 0, 0


# --- follow -------------------------------------------------------------------------------------------------


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
    facts = HostFacts()
    rec = read_record(name)
    if rec is None:
        raise JobError(f"no job named {name} on {facts.host} (orch status lists the jobs)")
    path = log_file(name)
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
        running = live_state(read_record(name) or rec, facts).get("state") == RUNNING
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
            final = live_state(read_record(name) or rec, facts)
            if f is not None:
                drain()
                out.flush()
                f.close()
            return exit_code_for(final)
        time.sleep(FOLLOW_POLL)


# --- script entry ---------------------------------------------------------------------------------------------


def script_main(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="orch_job.py", description="orch's host-side job tool")
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("query", help="print the jobs as JSON")
    p.add_argument("name", nargs="?")
    p = sub.add_parser("follow", help="print the log's tail, stream it until the job ends, exit with its code")
    p.add_argument("name")
    p.add_argument("--tail", type=int, default=10)
    p = sub.add_parser("supervise", help="run a job (inside its tmux session; started by the module)")
    p.add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.name is not None:
            check_name(args.name)
        if args.verb == "query":
            facts, jobs = query_jobs(args.name)
            json.dump({"host": facts.host, "boot_id": facts.boot_id, "jobs": jobs}, sys.stdout)
            sys.stdout.write("\n")
            return 0
        if args.verb == "follow":
            try:
                return follow(args.name, max(args.tail, 0))
            except BrokenPipeError:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 0
            except KeyboardInterrupt:
                return 130
        return supervise(args.name)
    except JobError as exc:
        sys.stderr.write(f"orch: {exc}\n")
        return EXIT_UNKNOWN_JOB if args.verb in ("follow", "query") else 1


# --- the Ansible module ---------------------------------------------------------------------------------------


def own_source():
    """This file's source text, also under AnsiballZ (where __file__ is not the plain source)."""
    g = globals()
    loader = g.get("__loader__")
    spec = g.get("__spec__")
    for mod_name in (getattr(spec, "name", None), g.get("__name__")):
        if loader is not None and mod_name and hasattr(loader, "get_source"):
            try:
                src = loader.get_source(mod_name)
            except (ImportError, OSError):
                src = None
            if src and "def supervise(" in src:
                return src
    path = g.get("__file__")
    if path and path.endswith(".py"):
        src = read_text(path)
        if src and "def supervise(" in src:
            return src
    raise JobError("cannot read the orch_job module's own source to install the supervisor")


def install_self():
    src = own_source().encode()
    import hashlib

    path = orch_dir("lib", f"orch_job_{hashlib.sha256(src).hexdigest()[:16]}.py")
    if not os.path.exists(path):
        ensure_dir(orch_dir("lib"))
        tmp = f"{path}.tmp.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(src)
        os.replace(tmp, path)
    return path


class NameLock:
    """An fcntl lock per job name under ~/.orch/locks/ (blocking: concurrent calls are serialised)."""

    def __init__(self, name, check_mode=False):
        self.name = name
        self.check_mode = check_mode  # check mode only reads: no lock file is created

    def __enter__(self):
        self.fd = None
        if self.check_mode:
            return self
        path = os.path.join(ensure_dir(orch_dir("locks")), self.name + ".lock")
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + 60
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(self.fd)
                    raise JobError(f"job {self.name} is busy (another orch call holds its lock); try again") from None
                time.sleep(0.02)

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)


def resolve_cwd(cwd):
    cwd = os.path.expanduser(cwd or "~/work")
    if not os.path.isabs(cwd):
        cwd = os.path.join(home(), "work", cwd)
    cwd = os.path.normpath(cwd)
    if not os.path.isdir(cwd):
        raise JobError(f"working directory {cwd} does not exist on this host (clone the repo or pass another cwd)")
    return cwd


def fetch_secrets(secrets):
    """VAR -> value from SSM Parameter Store, fetched here on the host. Errors never include values."""
    if not secrets:
        return {}
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise JobError("secrets need boto3 on the job host (install python3-boto3 there)") from None
    try:
        # AWS_REGION is what orch sets; older botocore reads only AWS_DEFAULT_REGION (None: boto3's own chain).
        # Older botocore (Debian 12's) ignores AWS_ENDPOINT_URL too: pass it (unset on EC2: the regional endpoint).
        client = boto3.client(
            "ssm",
            region_name=os.environ.get("AWS_REGION") or None,
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL_SSM") or os.environ.get("AWS_ENDPOINT_URL") or None,
        )
    except BotoCoreError as exc:
        raise JobError(f"cannot reach SSM to read the job's secrets: {exc} (set AWS_REGION on the host)") from None
    values = {}
    for var, param in sorted(secrets.items()):
        try:
            values[var] = client.get_parameter(Name=param, WithDecryption=True)["Parameter"]["Value"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise JobError(f"cannot read secret {var} from SSM parameter {param}: {code}") from None
        except BotoCoreError as exc:
            raise JobError(f"cannot read secret {var} from SSM parameter {param}: {exc}") from None
    return values


def tmux(tmux_bin, *args):
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TMUX"}  # never steer another tmux server
    return subprocess.run([tmux_bin, *args], env=env, capture_output=True, text=True, check=False)


def start_job(p, tmux_bin, check_mode):
    name = p["name"]
    command = p["command"]
    if not command or not command.strip():
        raise JobError("the command is empty: give the command to run")
    cwd = resolve_cwd(p["cwd"])
    memory_max = parse_memory(p["memory_max"])
    env = {}
    for key, value in (p["env"] or {}).items():
        if not ENV_NAME_RE.fullmatch(str(key)):
            raise JobError(f"invalid environment variable name {json.dumps(str(key))}")
        env[str(key)] = "" if value is None else str(value)
    secrets = p["secrets"] or {}
    for key in secrets:
        if not ENV_NAME_RE.fullmatch(str(key)):
            raise JobError(f"invalid secret variable name {json.dumps(str(key))}")
    if p["grace"] < 0:
        raise JobError("grace must be 0 or more seconds")
    with NameLock(name, check_mode):
        facts, current = query_jobs(name)
        if current and current[0]["state"] == RUNNING:
            raise JobError(
                f"job {name} is already running on {facts.host} "
                f"(stop it first with orch stop {name}, or pick another name)"
            )
        if check_mode:
            return True, None, f"would start {name}"
        values = fetch_secrets(secrets)
        lib = install_self()
        ensure_dir(logs_dir(name))
        ensure_dir(orch_dir("run"), 0o700)
        # The spec (environment, secrets) passes through run/: private to the job user, whatever the umask.
        # ~/.orch itself keeps the mode the orch_base role gives it.
        os.chmod(orch_dir("run"), 0o700)
        sfile = spec_file(name)
        import uuid

        run_id = uuid.uuid4().hex
        session = session_name(name)
        tmux(tmux_bin, "kill-session", "-t", "=" + session)  # a stale session of a finished or lost run
        try:
            try:
                os.unlink(sfile)
            except OSError:
                pass
            spec = {
                "run_id": run_id,
                "command": command,
                "cwd": cwd,
                "env": env,
                "memory_max": memory_max,
                "grace": p["grace"],
                "secret_values": values,
            }
            fd = os.open(sfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(spec, f)
            res = tmux(
                tmux_bin, "new-session", "-d", "-s", session, "-c", cwd, "--", sys.executable, lib, "supervise", name
            )
            if res.returncode != 0:
                raise JobError(f"tmux could not start session {session}: {res.stderr.strip()}")
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                rec = read_record(name)
                if rec and rec.get("run_id") == run_id:
                    break
                if time.monotonic() > deadline:
                    raise JobError(f"the supervisor of {name} did not start; see {log_file(name)}")
                time.sleep(0.02)
        finally:
            try:
                os.unlink(sfile)
            except OSError:
                pass
    _, jobs = query_jobs(name)
    return True, jobs[0], f"started {name} in tmux session {session}"


def stop_job(p, check_mode):
    name = p["name"]
    with NameLock(name, check_mode):
        _, current = query_jobs(name)
        if not current:
            raise JobError(f"no job named {name} on this host (orch status lists the jobs)")
        rec = current[0]
        if rec["state"] != RUNNING:
            return False, rec, "{} is not running ({})".format(name, rec["state"])
        if check_mode:
            return True, rec, f"would stop {name}"
        ensure_dir(orch_dir("run"), 0o700)
        with open(stop_file(name), "w") as f:
            f.write(rec["run_id"])
        for sig, wait in ((signal.SIGTERM, max(p["grace"], 0)), (signal.SIGKILL, 30)):
            try:
                os.killpg(rec["pgid"], sig)
            except OSError:
                pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                _, jobs = query_jobs(name)
                if jobs and jobs[0]["state"] != RUNNING:
                    return True, jobs[0], f"stopped {name}"
                time.sleep(0.05)
        raise JobError("job {} did not end after SIGKILL; check the host (ps -g {})".format(name, rec["pgid"]))


def remove_job(p, tmux_bin, check_mode):
    name = p["name"]
    with NameLock(name, check_mode):
        _, current = query_jobs(name)
        rec = current[0] if current else None
        if rec and rec["state"] == RUNNING:
            raise JobError(f"job {name} is running: stop it first (orch stop {name})")
        has_logs = os.path.isdir(logs_dir(name))
        changed = rec is not None or (p["purge_logs"] and has_logs)
        if check_mode or not changed:
            return changed, rec, ("would remove %s" if changed else "no job %s to remove") % name
        tmux(tmux_bin, "kill-session", "-t", "=" + session_name(name))
        if p["purge_logs"]:
            import shutil

            shutil.rmtree(logs_dir(name), ignore_errors=True)
        else:
            try:
                os.unlink(job_file(name))
            except FileNotFoundError:
                pass
        return True, rec, f"removed {name}"


def module_main():
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            state=dict(type="str", default="query", choices=["started", "stopped", "absent", "query"]),
            command=dict(type="str"),
            cwd=dict(type="str", default="~/work"),
            env=dict(type="dict", default={}),
            secrets=dict(type="dict", default={}, no_log=True),
            memory_max=dict(type="str"),
            grace=dict(type="int", default=10),
            purge_logs=dict(type="bool", default=False),
        ),
        required_if=[
            ("state", "started", ("name", "command")),
            ("state", "stopped", ("name",)),
            ("state", "absent", ("name",)),
        ],
        supports_check_mode=True,
    )
    p = module.params
    state = p["state"]
    facts = HostFacts()
    result = dict(changed=False, host=facts.host, boot_id=facts.boot_id)
    try:
        if p["name"] is not None:
            check_name(p["name"])
        tmux_bin = module.get_bin_path("tmux", required=True)
        if state == "query":
            _, jobs = query_jobs(p["name"])
            if p["name"] is None:
                result.update(jobs=jobs, msg=f"{len(jobs)} jobs")
            elif not jobs:
                raise JobError("no job named {} on {} (orch status lists the jobs)".format(p["name"], facts.host))
            else:
                result.update(job=jobs[0], msg="{} is {}".format(p["name"], jobs[0]["state"]))
        else:
            if state == "started":
                changed, job, msg = start_job(p, tmux_bin, module.check_mode)
            elif state == "stopped":
                changed, job, msg = stop_job(p, module.check_mode)
            else:
                changed, job, msg = remove_job(p, tmux_bin, module.check_mode)
            result.update(changed=changed, job=job, msg=msg)
    except JobError as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


def main():
    if len(sys.argv) > 1 and sys.argv[1] in SCRIPT_VERBS:
        sys.exit(script_main(sys.argv[1:]))
    module_main()


if __name__ == "__main__":
    main()
