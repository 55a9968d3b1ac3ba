"""The supervisor: runs one job inside its tmux session, stays its parent, and writes its record.

It starts the command in a new session and process group with its output straight into run.log, records the
job in job.json (atomically), samples its memory, and on the job's end writes how it ended, then ends what the
command left running. When its tmux session goes away (SIGHUP) or it is told to end (SIGTERM), it ends every
process of the run (procs.run_processes) and records the job LOST.
"""

import errno
import functools
import json
import os
import signal
import sys
import time

from . import admission, contract, memory, procs, records, scope, terminal
from .contract import (
    FAILED,
    INTERRUPTED,
    KILLED,
    LOST,
    OOM,
    RUN_ID_ENV,
    RUNNING,
    SUCCEEDED,
    JobError,
    check_name,
    session_name,
)
from .procs import signal_name, start_ticks

TICK = 0.5  # exit detection is immediate (pidfd); the tick paces the pane view and sampling
SAMPLE_EVERY = 2.0  # seconds between memory samples when no cgroup memory.peak exists
PANE_CHUNK = 16384  # at most this many new log bytes shown in the tmux pane per tick
# oom_cause: the job's cap (its cgroup counted the kill, or systemd says so), or a guess from a SIGKILL near the cap
# Less than this free on the log's disk while the job ran and the log may have lost lines: a job writing its log
# at any pace fills what is left within moments (the same 64 KiB kept for the job's end, 16 blocks of 4 KiB).
FULL_BELOW = records.RESERVE_SIZE


class Hangup(Exception):
    """The supervisor's tmux session went away (SIGHUP) or it was asked to end (SIGTERM)."""


def _on_hangup(signum, frame):
    raise Hangup(signal_name(signum))


# `orch stop` tells the supervisor with a signal before it ends the job's processes, so the job ends KILLED: a
# signal needs no disk (a stop file could not be written on a full one) and reaches only this very supervisor.
# The host's spot watch (spot.py) tells it so with another, and the job ends INTERRUPTED: the instance is going.
STOP_SIGNAL = signal.SIGUSR2
INTERRUPT_SIGNAL = signal.SIGPWR
_stop = {"told": False, "ending": KILLED}


def _on_stop(signum, frame):
    if not _stop["told"]:
        _stop.update(told=True, ending=INTERRUPTED if signum == INTERRUPT_SIGNAL else KILLED)


class PaneView:
    """Shows the tail of the log in the tmux pane for `orch attach`; bounded so it never slows a chatty job."""

    def __init__(self, path):
        self.path = path
        self.pos = os.path.getsize(path) if path and os.path.exists(path) else 0
        self.enabled = path is not None  # a job on a terminal has its output relayed live instead

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


def supervise(name, sfile):
    """Run job NAME from its spec at SFILE (an absolute path: not found through HOME, which is the tmux server's);
    0 once its end is recorded. A supervisor that read its spec but cannot start the job (a full disk) says why in
    ~/.orch/run/NAME.error, for start_job to report at once, and in the log."""
    check_name(name)
    if os.path.basename(sfile) != name + ".spec":
        raise JobError(f"{sfile} is not a job spec of {name}: supervise is started by the orch_job module")
    begun = {"spec": False, "recorded": False}
    try:
        return _supervise(name, sfile, begun)
    except Exception as exc:
        if begun["spec"] and not begun["recorded"]:  # start_job waits under the name's lock: nothing else runs
            _report_failed_start(name, exc)
        raise


def _report_failed_start(name, exc):
    if isinstance(exc, OSError) and exc.errno in records.DISK_FULL:
        why = records.full_disk_message(f"~/logs/{name}", records.logs_dir(name), records.RESERVE_SIZE)
    elif isinstance(exc, OSError):
        why = f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    elif isinstance(exc, JobError):
        why = str(exc)
    else:
        why = f"{type(exc).__name__}: {exc}"
    why = " ".join(why.split())  # one line
    try:
        os.unlink(records.reserve_file(name))
    except OSError:
        pass
    try:
        records.ensure_dir(records.orch_dir("run"), 0o700)
        records.write_atomic(records.error_file(name), (why + "\n").encode())
    except OSError:
        pass
    try:
        with open(records.log_file(name), "ab") as f:
            f.write(f"[orch] cannot start the job: {why}\n".encode())
    except OSError:
        pass


def _append(fd, data):
    """Write DATA to the log; the OSError when that fails (a full disk), else None: no log write ends the supervisor."""
    try:
        records.write_all(fd, data)
    except OSError as exc:
        return exc
    return None


def _least_free(sampled, path):
    """The least free space seen on the disk holding PATH, in SAMPLED["free"], with a look now."""
    free = records.free_bytes(path)
    if free is not None:
        sampled["free"] = free if sampled.get("free") is None else min(sampled["free"], free)


def log_note(name, error, least_free):
    """What the record says about a log that may lack lines: ERROR is the OSError of a log write that failed (or
    None), LEAST_FREE the least free space seen on the log's disk while the job ran; None when all is well."""
    where = f"~/logs/{name}"
    if error is not None and error.errno == errno.EDQUOT:
        return f"log incomplete: the disk quota for {where} was exceeded"
    if error is not None and error.errno != errno.ENOSPC:
        return f"log incomplete: cannot write {where}/run.log ({error.strerror or error})"
    if error is None and (least_free is None or least_free >= FULL_BELOW):
        return None
    try:
        disk = f"the disk holding {where} (mounted at {records.disk_of(records.logs_dir(name))[0]})"
    except OSError:
        disk = f"the disk holding {where}"
    free = "" if least_free is None else f" ({records.size_text(least_free)} free)"
    if error is not None:
        return f"log incomplete: {disk} was full{free}"
    return f"log may be incomplete: {disk} was full while the job ran{free}"


def _save(name, reserve, rec):
    records.save_record(records.job_file(name), rec, reserve)


def _admitted(name, rec, reserve, queue):
    """Wait for the job's turn in the host's memory queue (admission.admit). Stopped first: record KILLED (or
    INTERRUPTED: it never started) and say so in the log; False then. With QUEUE false a job that would wait is
    refused (a JobError)."""

    def save(rec):
        if rec.get("admitted") is False:  # saved once so, as it joins the queue: the pane says why nothing happens
            size = records.size_text(rec["reservation"])
            try:
                sys.stdout.write(f"[orch] job {name}: QUEUED, waiting for {size} of orch.slice to free\r\n")
                sys.stdout.flush()
            except OSError:
                pass
        _save(name, reserve, rec)

    told = functools.partial(_stop.get, "told")
    if admission.admit(name, rec, save, told, queue) and not told():  # told as its turn came: it does not start
        return True
    rec.update(state=_stop["ending"], ended=records.now_iso(), admitted=False)
    records.save_record(records.job_file(name), rec, reserve)
    why = "interrupted (the spot instance is being reclaimed)" if _stop["ending"] == INTERRUPTED else "stopped"
    try:
        with open(records.log_file(name), "ab") as f:
            f.write(f"[orch] job {name} {why} while queued: it never started\n".encode())
        os.unlink(reserve)
    except OSError:
        pass
    return False


def _supervise(name, sfile, begun):
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, _on_hangup)
    for signum in (STOP_SIGNAL, INTERRUPT_SIGNAL):
        signal.signal(signum, _on_stop)
    try:
        with open(sfile) as f:
            spec = json.load(f)
    except (OSError, ValueError):
        raise JobError(f"no job spec for {name} at {sfile}: supervise is started by the orch_job module") from None
    finally:
        try:
            os.unlink(sfile)  # the spec may hold secret values: gone as soon as it is read
        except OSError:
            pass
    # This process has the tmux server's environment (whoever started it, with whatever HOME): from here on it has
    # the run's, so the records land under the run's HOME and the job gets exactly the run's environment.
    os.environ.clear()
    os.environ.update(spec.pop("base_env"))
    begun["spec"] = True
    secrets = spec.pop("secret_values", {})
    notify_url = spec.pop("notify_url", None)  # like the secrets: this process's memory, never a record
    records.ensure_dir(records.logs_dir(name))
    reserve = records.reserve_file(name)
    try:
        records.make_reserve(reserve)  # space for the job's end, kept until its last record is written
    except OSError as exc:
        if exc.errno not in records.DISK_FULL:
            raise
        raise JobError(
            records.full_disk_message(f"~/logs/{name}", records.logs_dir(name), records.RESERVE_SIZE)
        ) from None
    log_path = records.log_file(name)
    facts = records.HostFacts()
    memory_max = spec.get("memory_max")
    job_scope = scope.JobScope(name, spec["run_id"], memory_max)
    job_scope.fork_sentinel()  # first, so it holds none of the files opened below
    rec = {
        "name": name,
        "run_id": spec["run_id"],
        "command": spec["command"],
        "cwd": spec["cwd"],
        "host": facts.host,
        "state": RUNNING,
        "started": records.now_iso(),
        "ended": None,
        "exit_code": None,
        "signal": None,
        "oom": False,
        "oom_cause": None,
        "memory_max": memory_max,
        "memory_cap": "none" if memory_max is None else job_scope.reason,
        "memory_peak": None,
        "pid": None,
        "pgid": None,
        "job_start": None,
        "tmux_session": session_name(name),
        "tmux_socket": contract.TMUX_SOCKET,
        "cgroup": None,
        "memory_cgroup": None,
        "boot_id": facts.boot_id,
        "init_start": facts.init_start,
        "supervisor_pid": os.getpid(),
        "supervisor_start": start_ticks(os.getpid()),
        "lost_reason": None,
        "log_note": None,
        "secrets": sorted(secrets),
        "repo": spec.get("repo"),  # --repo: {"name", "ref", "commit"}, the commit the job ran (git rev-parse HEAD)
        "notify": {"parameter": spec["notify"]} if spec.get("notify") else None,  # + the post's outcome at the end
        "log": log_path,
        "tty": bool(spec.get("tty", True)),
        "grace": int(spec.get("grace", 10)),  # seconds between SIGTERM and SIGKILL when orch ends it
        "reservation": contract.DEFAULT_RESERVATION if memory_max is None else memory_max,
        "queued": None,  # when it joined the queue, if it had to wait for memory
        "admitted": None,
        "admitted_at": None,  # when its turn came (microseconds: the order in which the queue let jobs go)
    }
    logfd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # before a record claims memory
    if not _admitted(name, rec, reserve, spec.get("queue", True) is not False):
        os.close(logfd)
        job_scope.release()
        return 0
    rec.update(state=RUNNING, started=records.now_iso())
    env = dict(os.environ)
    env.update(spec.get("env") or {})
    env.update(secrets)
    env["ORCH_JOB"] = name
    env[RUN_ID_ENV] = spec["run_id"]
    argv = ["bash", "-c", spec["command"]]
    log_error = _append(logfd, ("[orch] job {} started {}\n".format(name, rec["started"])).encode())
    term = None
    if rec["tty"]:
        term = terminal.Terminal(lambda data: _append(logfd, data), spec["tmux"], session_name(name))
    view = PaneView(log_path if term is None else None)
    try:
        sys.stdout.write(f"[orch] job {name}: log {log_path} (Ctrl-b d detaches)\r\n")
        sys.stdout.flush()
    except OSError:
        pass  # the pane is gone already
    devnull = os.open(os.devnull, os.O_RDONLY)
    # ru_maxrss survives exec, so the child's figure counts this Python's size: only trust it above that
    import resource

    own_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    go_r, go_w = os.pipe()  # the job execs only once it is in its scope
    pid = os.fork()
    if pid == 0:  # the job: own session and process group, on its terminal or output straight into the log file
        try:
            signal.set_wakeup_fd(-1)
            for signum in (
                signal.SIGHUP,
                signal.SIGTERM,
                signal.SIGPIPE,
                signal.SIGXFSZ,
                signal.SIGINT,
                STOP_SIGNAL,
                INTERRUPT_SIGNAL,
            ):
                signal.signal(signum, signal.SIG_DFL)
            os.chdir(spec["cwd"])
            if term is not None:
                term.become_controlling()
            else:
                os.setsid()
                os.dup2(devnull, 0)
                os.dup2(logfd, 1)
                os.dup2(logfd, 2)
            os.close(go_w)
            job_scope.in_job()
            if os.read(go_r, 1) != b"g":
                os._exit(127)  # the supervisor died before it let the job go
            os.close(go_r)
            os.execvpe(argv[0], argv, env)
        except BaseException as exc:  # noqa: B036 - the forked child must never return into Python
            _append(logfd, (f"[orch] cannot start the job: {exc}\n").encode())
        os._exit(127)
    os.close(devnull)
    os.close(go_r)
    job_scope.place(pid)
    os.write(go_w, b"g")
    os.close(go_w)
    if term is not None:
        term.started()
    grace = rec["grace"]
    del env, secrets
    spec.clear()
    rec.update(pid=pid, pgid=pid, job_start=start_ticks(pid))  # a zombie's stat still has its start time
    hangup = None
    # the peak memory seen so far, kept when a hangup interrupts the wait; the least free space on the log's disk
    sampled = {"peak": 0, "free": None}
    _least_free(sampled, records.logs_dir(name))
    try:
        rec["cgroup"] = memory.cgroup_of(pid)
        rec["memory_cgroup"] = job_scope.directory
        if memory_max is not None:
            rec["memory_cap"] = "enforced" if job_scope.directory else job_scope.reason
        try:
            records.save_record(records.job_file(name), rec, reserve)
        except OSError:
            end_job(pid, rec, 0)  # unrecorded, the job would run on unseen: it does not start
            raise
        begun["recorded"] = True
        if not os.path.exists(reserve):  # the record took the reserve's blocks: keep another if there is room
            try:
                records.make_reserve(reserve)
            except OSError:
                pass
        keep = functools.partial(_keep_record, name, rec, reserve, sampled)
        status, rusage, peak = wait_job(pid, rec, view, sampled, keep, term)
    except Hangup as exc:
        hangup = str(exc)
        for signum in (signal.SIGHUP, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        status, rusage, peak = end_job(pid, rec, grace, term)
        peak = max(peak, sampled["peak"])  # what was sampled before the hangup still counts
    rec["ended"] = records.now_iso()
    reaped = rusage.ru_maxrss if rusage and rusage.ru_maxrss > own_maxrss else 0
    _kills, oom_cause = job_scope.verdict()  # the sentinel still holds the scope and its counters
    if job_scope.directory:  # the kernel's own count of what the job was charged, the cap's measure too
        peak, reaped = max(peak, memory.scope_peak(job_scope.directory)), 0
    job_scope.release()
    rec.update(
        ending(
            status,
            stopped=_stop["ending"] if _stop["told"] else None,
            hangup=hangup,
            peak=peak,
            oom_cause=oom_cause,
            reaped_peak=reaped * 1024,
        )
    )
    if term is not None:
        term.finish()  # all the job wrote is in the log before its end line
        log_error = log_error or term.log_error
    how = f"signal {rec['signal']}" if rec["signal"] else f"code {rec['exit_code']}"
    left = procs.run_processes(rec)  # after a hangup end_job has ended them all
    also = "; ending {} process(es) it left running: {} (SIGTERM, SIGKILL after {}s)".format(
        len(left), " ".join(str(pid) for pid, _ticks in left), grace
    )
    # on a line of its own, also after output that did not end its last line
    newline = b"" if _ends_a_line(log_path) else b"\n"
    end_line = "[orch] job exited with {} ({}){}\n".format(how, rec["state"], also if left else "")
    failed = _append(logfd, newline + end_line.encode())
    if term is not None:
        term.write_line(b"\r\n" + end_line.encode())
    log_error = log_error or failed
    try:
        os.close(logfd)
    except OSError as exc:  # a network filesystem reports a failed write as late as this
        log_error = log_error or exc
    _least_free(sampled, records.logs_dir(name))
    rec["log_note"] = log_note(name, log_error, sampled["free"])
    current = records.read_record(name)
    if current is None or current.get("run_id") in (rec["run_id"], None):
        if not os.path.isdir(records.logs_dir(name)):  # removed while the job ran: its end is still recorded
            sampled["log_lost"] = True
            try:
                records.ensure_dir(records.logs_dir(name))
            except OSError:
                pass
        if sampled.get("log_lost"):
            rec["log_note"] = LOG_LOST.format(name=name)
        try:
            records.save_record(records.job_file(name), rec, reserve)
        except OSError as exc:  # nowhere to write it: say so where someone may see it, and still end the leftovers
            _append(2, f"[orch] cannot record how job {name} ended ({end_line.strip()}): {exc}\n".encode())
        try:
            os.unlink(reserve)
        except OSError:
            pass  # the record took its blocks
        post = bool(notify_url and rec.get("notify"))
    else:  # a newer run of the name owns the record (and the reserve) now: this run's end stays in the log only
        post = False
    if left:
        end_leftovers(rec, grace)
    if post:  # last: a webhook that hangs delays neither the end record nor the end of what the job left
        _notify(name, rec, notify_url)
    return 0


def _notify(name, rec, url):
    """Post the job's end to its webhook, after its end is recorded (a slow webhook never delays `orch wait`), then
    record how the post went. Whatever happens, the job's state stays as it was recorded."""
    from . import notify

    try:
        outcome = notify.send(rec["notify"]["parameter"], url, rec)
    except Exception as exc:  # noqa: BLE001 (a bug in the post must not lose the job's end)
        outcome = {"parameter": rec["notify"]["parameter"], "at": records.now_iso(), "status": None,
                   "error": f"the post failed: {type(exc).__name__}"}  # fmt: skip
    current = records.read_record(name)
    if current is not None and current.get("run_id") == rec["run_id"]:
        try:
            records.save_record(records.job_file(name), {**current, "notify": outcome})
        except OSError:
            pass  # a full disk: the end is recorded, the post's outcome is not


def end_leftovers(rec, grace):
    """The job's command has ended and its end is written: end what it left running (background children, daemons
    that called setsid), as `orch stop` would, so nothing of a finished job lives on unseen."""
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # a hangup now must not cut the clean-up short
    procs.end_processes(lambda: procs.run_processes(rec), grace)


def ending(status, *, stopped, hangup, peak, oom_cause, reaped_peak):
    """How the job ended, as the record's fields: exit_code, signal, memory_peak, oom, oom_cause, state, lost_reason.

    STATUS is the job's wait status; STOPPED the state orch ended this run in (KILLED by `orch stop`, INTERRUPTED by
    the spot watch), or None; HANGUP the signal that ended the
    supervisor, or None; PEAK the sampled peak in bytes (the job's scope, else its session's); OOM_CAUSE what the
    scope's OOM counters say ended one of its processes (scope.JobScope.verdict), or None; REAPED_PEAK the largest
    reaped process's peak RSS in bytes.
    """
    code = os.waitstatus_to_exitcode(status)
    end = {
        "exit_code": code if code >= 0 else None,
        "signal": signal_name(-code) if code < 0 else None,
        "lost_reason": None,
    }
    peaks = [p for p in (peak, reaped_peak) if p]
    end["memory_peak"] = max(peaks) if peaks else None
    oom = oom_cause is not None
    end.update(oom=oom, oom_cause=oom_cause)
    if hangup:
        end.update(
            state=LOST,
            lost_reason=records.HANGUP_REASON.format(signal=hangup),
        )
    elif stopped:
        end["state"] = stopped
    elif oom:
        end["state"] = OOM
    elif code == 0:
        end["state"] = SUCCEEDED
    else:
        end["state"] = FAILED
    return end


def _wait_readable(fd, timeout, term=None):
    """Wait up to TIMEOUT for FD (the job's pidfd, or None). With a terminal, relay what its fds bring meanwhile, in
    a loop of its own: a pty gives ~4 KiB a read, and the housekeeping around this wait is for once a tick."""
    if term is None:
        if fd is None:
            time.sleep(min(timeout, 0.05))
        else:
            import select

            select.select([fd], [], [], timeout)
        return
    import select

    deadline = time.monotonic() + (timeout if fd is not None else min(timeout, 0.05))
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        ready = select.select(([] if fd is None else [fd]) + term.fds(), [], [], term.wait_bound(remaining))[0]
        term.service(ready)
        if fd is not None and fd in ready:
            return  # the job ended


def _ends_a_line(path):
    """Whether the file at PATH is empty or ends with a newline."""
    try:
        with open(path, "rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except OSError:
        return True


LOG_LOST = "log lost: ~/logs/{name} was removed while the job ran; what it wrote since is gone"


def _keep_record(name, rec, reserve, sampled):
    """A job whose record vanished (its log directory removed while it ran) would run on unseen and unstoppable:
    write the record again, noting the loss."""
    if os.path.exists(records.job_file(name)):
        return
    sampled["log_lost"] = True
    try:
        records.ensure_dir(records.logs_dir(name))
        records.save_record(records.job_file(name), {**rec, "log_note": LOG_LOST.format(name=name)}, reserve)
    except OSError:
        pass  # tried again next tick


def wait_job(pid, rec, view, sampled, tick=None, term=None):
    """Wait for the direct child; sample memory meanwhile (the peak so far also in SAMPLED["peak"]), and call TICK
    each wake-up. Returns (status, rusage, peak bytes)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # older kernel or Python: poll instead
    watch = memory.CgroupWatch(rec["memory_cgroup"]) if rec["memory_cgroup"] else None
    peak = 0
    next_sample = time.monotonic() + 0.1  # an early sample, so short jobs get a figure too
    try:
        while True:
            # two small reads each wake-up, also right after the child ends (before systemd drops the scope)
            if watch is not None:
                watch.sample()
                sampled["peak"] = watch.peak
            got, status, rusage = os.wait4(pid, os.WNOHANG)
            if got == pid:
                return status, rusage, watch.peak if watch is not None else peak
            if watch is None and time.monotonic() >= next_sample:
                peak = sampled["peak"] = max(peak, memory.session_peak(pid))
                next_sample = time.monotonic() + SAMPLE_EVERY
            view.show()
            _least_free(sampled, os.path.dirname(rec["log"]))
            if tick is not None:
                tick()
            _wait_readable(pidfd, TICK, term)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def end_job(pid, rec, grace, term=None):
    """The session is going away: end every process of the run (SIGTERM, then SIGKILL after GRACE seconds to all
    that are left, the leader's children too), reap the child. Returns (status, rusage, 0)."""
    reaped = []

    def reap():
        if term is not None:
            term.pump()  # what the job says while it ends (a trap's last words) is logged too
        if not reaped:
            got, status, rusage = os.wait4(pid, os.WNOHANG)
            if got == pid:
                reaped.append((status, rusage))

    procs.end_processes(lambda: procs.run_processes(rec), grace, tick=reap)
    reap()
    if not reaped:  # not among the run's processes (cannot happen unless /proc lies): make sure, then wait
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
        reaped.append(os.wait4(pid, 0)[1:])
    status, rusage = reaped[0]
    return status, rusage, 0
