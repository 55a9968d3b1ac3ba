"""Control: start, stop and remove jobs (the orch_job module's actions), each under the job name's lock."""

import contextlib
import errno
import fcntl
import json
import os
import sys
import time

from . import bundle, procs, records, terminal
from .contract import (
    ACTIVE_STATES,
    DEFAULT_RESERVATION,
    ENV_NAME_RE,
    LOST,
    MEMORY_RULE,
    QUEUED,
    RUNNING,
    SSM_PARAM_RE,
    TMUX_SOCKET,
    UNKNOWN,
    JobError,
    memory_size,
    parse_repo,
    session_name,
)  # fmt: skip

START_TIMEOUT = 20.0  # seconds to wait for the supervisor's first record
SETTLE = 0.3  # seconds a command may take to fail at once and still have `orch run` report its end
ENDING_WAIT = 5.0  # seconds to wait for the end of a command that exited at once (its supervisor writes it in ms)
LOOK_EVERY = 0.2  # seconds between looks at the tmux session meanwhile: a supervisor that ended is not waited for
# A job does not start when the disk holding ~/logs/NAME or ~/.orch/run has less than this free. orch itself needs
# about 100 KiB there for a start (the supervisor's 64 KiB reserve for the job's end, the record, the spec, and the
# package under ~/.orch/lib once per version); 1 MiB leaves room for the job's first log lines too. A disk with less
# is full for any job that writes, and refusing costs little: `orch rm NAME --purge` makes room in a moment.
MIN_FREE = 1 << 20
MIN_INODES = 16  # a start creates about 8 files: lock, spec, log directory, log, record and its tmp, reserve, error


def parse_memory(text):
    """memory_max in bytes, or None when not given."""
    if text is None or text == "":
        return None
    try:
        return memory_size(text)[0]
    except ValueError:
        raise JobError(f"invalid memory_max {json.dumps(text)}: {MEMORY_RULE}") from None


class NameLock:
    """An fcntl lock per job name under ~/.orch/locks/ (blocking: concurrent calls are serialised)."""

    def __init__(self, name, check_mode=False, what=None):
        self.name = name
        self.check_mode = check_mode  # check mode only reads: no lock file is created
        self.what = what or f"job {name}"  # in the message when it stays busy

    def __enter__(self):
        self.fd = None
        if self.check_mode:
            return self
        path = os.path.join(records.ensure_dir(records.orch_dir("locks")), self.name + ".lock")
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + 60
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(self.fd)
                    raise JobError(f"{self.what} is busy (another orch call holds its lock); try again") from None
                time.sleep(0.02)

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)


def resolve_cwd(cwd):
    """The job's absolute working directory: relative paths are under ~/work; it must exist."""
    cwd = os.path.expanduser(cwd or "~/work")
    if not os.path.isabs(cwd):
        cwd = os.path.join(records.home(), "work", cwd)
    cwd = os.path.normpath(cwd)
    if not os.path.isdir(cwd):
        raise JobError(f"working directory {cwd} does not exist on this host (clone the repo or pass another cwd)")
    return cwd


def fetch_secrets(secrets, what="secret"):
    """VAR -> value from SSM Parameter Store, fetched here on the host. Errors never include values; WHAT names
    the kind of value in them."""
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
        raise JobError(f"cannot reach SSM to read the job's {what}s: {exc} (set AWS_REGION on the host)") from None
    values = {}
    for var, param in sorted(secrets.items()):
        try:
            values[var] = client.get_parameter(Name=param, WithDecryption=True)["Parameter"]["Value"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise JobError(f"cannot read {what} {var} from SSM parameter {param}: {code}") from None
        except BotoCoreError as exc:
            raise JobError(f"cannot read {what} {var} from SSM parameter {param}: {exc}") from None
    return values


def _ansible_path(entry):
    """Whether a PYTHONPATH entry is Ansible's: its module payload, or an exploded one (as run_command cleans them)."""
    base = os.path.basename(entry.rstrip("/"))
    return base in ("ansible_modlib.zip", "debug_dir") or (
        base.startswith("ansible_") and base.endswith("_payload.zip")
    )


def login_env():
    """The job user's login environment: this module process's own (what sshd gave the run: HOME, USER, PATH,
    LANG, ...) without what Ansible (ANSIBLE_*, _ANSIBLE_*, its payload on PYTHONPATH) and a tmux around the run
    (TMUX, TMUX_PANE) add."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TMUX", "TMUX_PANE") and not key.startswith(("ANSIBLE_", "_ANSIBLE_"))
    }
    paths = env.get("PYTHONPATH", "").split(":")
    if any(_ansible_path(p) for p in paths if p):
        kept = [p for p in paths if p and not _ansible_path(p)]
        if kept:
            env["PYTHONPATH"] = ":".join(kept)
        else:
            del env["PYTHONPATH"]
    return env


def check_fits(memory_max):
    """A JobError with the figures when the job's reservation is more than orch.slice can ever hold."""
    from . import admission

    limit = admission.allocatable()
    wanted = DEFAULT_RESERVATION if memory_max is None else memory_max
    if limit is not None and wanted > limit:
        raise JobError(
            f"the job reserves {records.size_text(wanted)}, more than this host gives all its jobs together: "
            f"orch.slice holds {records.size_text(limit)}; ask for less with --mem, or use a larger host"
        )


def check_disks(name):
    """A JobError naming the disk when the one holding ~/logs/NAME or ~/.orch/run is too full to start a job."""
    for what, path in ((f"~/logs/{name}", records.logs_dir(name)), ("~/.orch/run", records.orch_dir("run"))):
        _mount, free, inodes = records.disk_of(path)
        if free < MIN_FREE or (inodes is not None and inodes < MIN_INODES):
            raise JobError(records.full_disk_message(what, path, MIN_FREE, MIN_INODES))


def _when_full(exc, name, path):
    """EXC, or when it is a full disk's (ENOSPC, EDQUOT) the JobError naming the disk that holds PATH."""
    if exc.errno not in records.DISK_FULL:
        return exc
    path = exc.filename or path
    what = f"~/logs/{name}" if str(path).startswith(records.logs_dir()) else "~/.orch"
    return JobError(records.full_disk_message(what, path, MIN_FREE))


def _no_reason(name):
    """Why a supervisor that ended before its first record and said nothing may have: the disk, else unknown."""
    try:
        check_disks(name)
    except JobError as exc:
        return str(exc)
    return (
        f"it ended before recording the job and left no reason (its tmux session closed); see {records.log_file(name)}"
    )


def tmux(tmux_bin, *args):
    """tmux on orch's own server (-L TMUX_SOCKET), never another: not the user's default server, nor one named by
    TMUX. A server it starts gets the login environment, not Ansible's."""
    import subprocess

    return subprocess.run(
        [tmux_bin, "-L", TMUX_SOCKET, *args], env=login_env(), capture_output=True, text=True, check=False
    )


def start_job(p, tmux_bin, check_mode):
    name = p["name"]
    command = p["command"]
    if not command or not command.strip():
        raise JobError("the command is empty: give the command to run")
    wanted = p.get("repo")
    if wanted:
        parse_repo(wanted)  # a malformed REPO@REF is refused before any lock or lookup
    notify = p.get("notify") or None
    if notify is not None and (not SSM_PARAM_RE.fullmatch(notify) or "//" in notify):
        raise JobError(f"invalid notify parameter {json.dumps(notify)}: give an SSM parameter name, /like/this")
    cwd = resolve_cwd(p["cwd"]) if p["cwd"] or not wanted else None
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
    with NameLock(name, check_mode), contextlib.ExitStack() as held:
        facts, current = records.query_jobs(name)
        if current and current[0]["state"] == UNKNOWN:
            # Its old run may still live, and nothing tells which processes are its own.
            raise JobError(
                f"job {name}'s record cannot be read: {current[0]['error']}; "
                f"forget it with orch rm {name} (which ends its tmux session), then start it again"
            )
        if current and current[0]["state"] in ACTIVE_STATES:
            raise JobError(
                f"job {name} is already {current[0]['state'].lower()} on {facts.host} "
                f"(stop it first with orch stop {name}, or pick another name)"
            )
        if current and current[0].get("live_processes"):  # a new run must never share a log with a live old one
            raise JobError(
                f"job {name}'s last run is LOST but {current[0]['live_processes']} of its processes still run on "
                f"{facts.host}: end them with orch stop {name}, then start it again"
            )
        check_fits(memory_max)
        if not check_mode:
            check_disks(name)
            values = fetch_secrets(secrets)
            # the webhook's URL, fetched now: a parameter that is not there refuses the run before anything moves
            notify_url = fetch_secrets({"URL": notify}, "the notify webhook")["URL"] if notify else None
        repo = None
        if wanted:  # last of the checks, as it moves the clone (and, in check mode, only looks)
            from . import repos

            # Held until the job's record is written: a second run in this clone waits, then sees this job's commit.
            # "@" is in no job name, so this lock is never a job's.
            held.enter_context(NameLock("@repo-" + parse_repo(wanted)[0], check_mode, f"repo {wanted}"))
            repo = repos.prepare(wanted, records.query_jobs()[1], check_mode)
            cwd = cwd or repo.pop("path")
            repo.pop("path", None)
        if check_mode:
            return True, None, f"would start {name}"
        bundle.shipped_modules()
        try:
            lib = bundle.install(bundle.sources())
            records.ensure_dir(records.logs_dir(name))
            records.ensure_dir(records.orch_dir("run"), 0o700)
        except OSError as exc:
            raise _when_full(exc, name, records.orch_dir()) from None
        # The spec (environment, secrets) passes through run/: private to the job user, whatever the umask.
        # ~/.orch itself keeps the mode the orch_base role gives it.
        os.chmod(records.orch_dir("run"), 0o700)
        sfile, efile = records.spec_file(name), records.error_file(name)
        import uuid

        run_id = uuid.uuid4().hex
        session = session_name(name)
        tmux(tmux_bin, "kill-session", "-t", "=" + session)  # a stale session of a finished or lost run
        try:
            for stale in (sfile, efile):
                try:
                    os.unlink(stale)
                except OSError:
                    pass
            spec = {
                "run_id": run_id,
                "command": command,
                "cwd": cwd,
                # the job's environment is the run's, whatever the tmux server's: the supervisor takes this as its own
                "base_env": dict(login_env(), PWD=cwd),
                "env": env,
                "memory_max": memory_max,
                "grace": p["grace"],
                "repo": repo,  # {"name", "ref", "commit"} with --repo, else None
                "tty": p.get("tty", True) is not False,
                "queue": p.get("queue", True) is not False,  # false: refused rather than QUEUED (--no-queue)
                "tmux": [tmux_bin, "-L", TMUX_SOCKET],  # the supervisor asks it whether a client is attached
                "secret_values": values,
                "notify": notify,  # the parameter's name: job.json says where the end was posted
                "notify_url": notify_url,  # the supervisor's memory only
            }
            try:
                fd = os.open(sfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    json.dump(spec, f)
            except OSError as exc:
                raise _when_full(exc, name, sfile) from None
            res = tmux(
                tmux_bin,
                "new-session",
                "-d",
                "-s",
                session,
                "-n",
                name,
                "-c",
                cwd,
                "--",
                *bundle.entry_argv(sys.executable, lib, "supervise", name, os.path.abspath(sfile)),
                *(terminal.hooks() if spec["tty"] else []),
            )  # fmt: skip  (-n: the window is named after the job, and keeps that name)
            if res.returncode != 0:
                raise JobError(f"tmux could not start session {session}: {res.stderr.strip()}")
            deadline = time.monotonic() + START_TIMEOUT
            next_look = time.monotonic() + LOOK_EVERY
            while True:
                rec = records.read_record(name)
                if rec and rec.get("run_id") == run_id:
                    break
                why = (records.read_text(efile) or "").strip()
                if not why and time.monotonic() >= next_look:
                    next_look = time.monotonic() + LOOK_EVERY
                    if tmux(tmux_bin, "has-session", "-t", "=" + session).returncode != 0:
                        rec = records.read_record(name)
                        if rec and rec.get("run_id") == run_id:
                            break  # it recorded the job, which ended at once
                        why = (records.read_text(efile) or "").strip() or _no_reason(name)
                if why:
                    tmux(tmux_bin, "kill-session", "-t", "=" + session)  # a pane kept open (remain-on-exit)
                    raise JobError(f"the supervisor of {name} could not start the job: {why}")
                if time.monotonic() > deadline:
                    raise JobError(f"the supervisor of {name} did not start; see {records.log_file(name)}")
                time.sleep(0.02)
            # A command that ends within SETTLE of its start (a typo, a missing file) is reported with its end, not
            # as a RUNNING record its supervisor is about to replace; once it has lived that long, RUNNING it is.
            admitting = time.monotonic() + START_TIMEOUT  # admitted: about to be RUNNING, not left in the queue
            while rec.get("state") == QUEUED and rec.get("admitted") is True and time.monotonic() < admitting:
                time.sleep(0.02)
                rec = records.read_record(name) or rec
            settled, deadline = time.monotonic() + SETTLE, time.monotonic() + SETTLE + ENDING_WAIT
            while rec.get("state") == RUNNING and time.monotonic() < deadline:
                if time.monotonic() >= settled and procs.alive(rec.get("pid"), rec.get("job_start")):
                    break
                time.sleep(0.02)
                rec = records.read_record(name) or rec
        finally:
            for passed in (sfile, efile):
                try:
                    os.unlink(passed)
                except OSError:
                    pass
    jobs = records.query_jobs(name)[1]
    return True, jobs[0], f"started {name} in tmux session {session}"


def stop_job(p, check_mode, interrupt=False):
    """End job P["name"] (SIGTERM, SIGKILL after P["grace"] seconds): KILLED, or INTERRUPTED when INTERRUPT (the spot
    watch's). Returns (changed, its record, a message) once its supervisor wrote its end."""
    name = p["name"]
    with NameLock(name, check_mode):
        current = records.query_jobs(name)[1]
        if not current:
            raise JobError(f"no job named {name} on this host (orch status lists the jobs)")
        rec = current[0]
        orphaned = rec["state"] == LOST and rec.get("live_processes")
        if rec["state"] not in ACTIVE_STATES and not orphaned:
            return False, rec, "{} is not running ({})".format(name, rec["state"])
        if check_mode:
            return True, rec, f"would stop {name}"
        if not orphaned:  # its supervisor records KILLED (or INTERRUPTED), not the SIGTERM's FAILED
            from .supervisor import INTERRUPT_SIGNAL, STOP_SIGNAL

            tell = INTERRUPT_SIGNAL if interrupt else STOP_SIGNAL
            procs.signal_all([(rec["supervisor_pid"], rec["supervisor_start"])], tell)
        # every process of the run, the leader's children and setsid daemons too: SIGTERM, SIGKILL after the grace
        left = procs.end_processes(lambda: procs.run_processes(rec), max(p["grace"], 0))
        if left:
            pids = " ".join(str(pid) for pid, _ticks in left)
            raise JobError(f"job {name}: processes {pids} did not end after SIGKILL; check the host (ps -o stat -p)")
        if orphaned:
            return True, end_orphaned(name, rec), f"stopped {name}: ended the processes its lost supervisor left"
        deadline = time.monotonic() + procs.KILL_WAIT  # its supervisor writes the end once it reaps the leader
        while time.monotonic() < deadline:
            jobs = records.query_jobs(name)[1]
            if jobs and jobs[0]["state"] not in ACTIVE_STATES:
                return True, jobs[0], f"stopped {name}"
            time.sleep(0.05)
        raise JobError(f"job {name} ended but its supervisor wrote no end; check the host (ps -p {rec['pid']})")


def end_orphaned(name, rec):
    """Record the end of a run whose supervisor died, once orch stop ended what it left: LOST (the exit code died
    with the supervisor), saying so. Only over that run's own record."""
    disk = records.read_record(name)
    if disk is None or disk.get("run_id") != rec.get("run_id"):
        return rec
    disk.update(
        state=LOST,
        ended=records.now_iso(),
        lost_reason="supervisor gone; orch stop ended the {} process(es) it left (exit code unknown)".format(
            rec["live_processes"]
        ),
    )
    records.write_json_atomic(records.job_file(name), disk)
    return records.query_jobs(name)[1][0]


def remove_job(p, tmux_bin, check_mode):
    name = p["name"]
    with NameLock(name, check_mode):
        current = records.query_jobs(name)[1]
        rec = current[0] if current else None
        if rec and rec["state"] in ACTIVE_STATES:
            raise JobError(f"job {name} is {rec['state'].lower()}: stop it first (orch stop {name})")
        if rec and rec.get("live_processes"):  # forgetting it would leave them running with nothing to end them
            raise JobError(
                f"job {name} is LOST but {rec['live_processes']} of its processes still run: "
                f"end them first (orch stop {name})"
            )
        has_logs = os.path.isdir(records.logs_dir(name))
        changed = rec is not None or (p["purge_logs"] and has_logs)
        if check_mode or not changed:
            return changed, rec, ("would remove %s" if changed else "no job %s to remove") % name
        tmux(tmux_bin, "kill-session", "-t", "=" + session_name(name))
        if p["purge_logs"]:
            import shutil

            shutil.rmtree(records.logs_dir(name), ignore_errors=True)
        else:
            try:
                os.unlink(records.job_file(name))
            except FileNotFoundError:
                pass
            try:
                os.unlink(records.reserve_file(name))  # left by a supervisor that died (LOST)
            except OSError:
                pass
        return True, rec, f"removed {name}"


def query(name, facts):
    """One job (NAME) or every job, as the module returns them."""
    jobs = records.query_jobs(name)[1]
    if name is None:
        return dict(jobs=jobs, msg=f"{len(jobs)} jobs")
    if not jobs:
        raise JobError(f"no job named {name} on {facts.host} (orch status lists the jobs)")
    return dict(job=jobs[0], msg="{} is {}".format(name, jobs[0]["state"]))


def apply(params, tmux_bin, check_mode, facts):
    """The orch_job module's work for its PARAMS: the result's keys (changed, job or jobs, msg)."""
    state = params["state"]
    if state == "query":
        return query(params["name"], facts)
    if state == "started":
        changed, job, msg = start_job(params, tmux_bin, check_mode)
    elif state == "stopped":
        changed, job, msg = stop_job(params, check_mode)
    else:
        changed, job, msg = remove_job(params, tmux_bin, check_mode)
    return dict(changed=changed, job=job, msg=msg)
