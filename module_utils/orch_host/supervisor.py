"""The supervisor: runs one job inside its tmux session, stays its parent, and writes its record.

It starts the command in a new session and process group with its output straight into run.log, records the
job in job.json (atomically), samples its memory, and on the job's end writes how it ended, then ends what the
command left running. When its tmux session goes away (SIGHUP) or it is told to end (SIGTERM), it ends every
process of the run (procs.run_processes) and records the job LOST.
"""

import json
import os
import signal
import sys
import time

from . import contract, memory, procs, records
from .contract import FAILED, KILLED, LOST, OOM, RUN_ID_ENV, RUNNING, SUCCEEDED, JobError, check_name, session_name
from .procs import signal_name, start_ticks

TICK = 0.5  # exit detection is immediate (pidfd); the tick paces the pane view and sampling
SAMPLE_EVERY = 2.0  # seconds between memory samples when no cgroup memory.peak exists
PANE_CHUNK = 16384  # at most this many new log bytes shown in the tmux pane per tick
# oom_cause: the job's cap (its cgroup counted the kill, or systemd says so), or a guess from a SIGKILL near the cap
OOM_BY_CAP = "job cap"
OOM_BY_CAP_INFERRED = "job cap (inferred: SIGKILL near the cap)"


class Hangup(Exception):
    """The supervisor's tmux session went away (SIGHUP) or it was asked to end (SIGTERM)."""


def _on_hangup(signum, frame):
    raise Hangup(signal_name(signum))


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


def supervise(name, sfile):
    """Run job NAME from its spec at SFILE (an absolute path: not found through HOME, which is the tmux server's)."""
    check_name(name)
    if os.path.basename(sfile) != name + ".spec":
        raise JobError(f"{sfile} is not a job spec of {name}: supervise is started by the orch_job module")
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, _on_hangup)
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
    secrets = spec.pop("secret_values", {})
    records.ensure_dir(records.logs_dir(name))
    log_path = records.log_file(name)
    facts = records.HostFacts()
    memory_max = spec.get("memory_max")
    unit = "orch-{}-{}.scope".format(name, spec["run_id"][:8])
    scope_argv, cap_reason = memory.memory_cap_plan(memory_max, unit)
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
        "memory_cap": "none" if memory_max is None else cap_reason,
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
        "secrets": sorted(secrets),
        "log": log_path,
    }
    try:
        os.unlink(records.stop_file(name))
    except OSError:
        pass
    env = dict(os.environ)
    env.update(spec.get("env") or {})
    env.update(secrets)
    env["ORCH_JOB"] = name
    env[RUN_ID_ENV] = spec["run_id"]
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
    rec.update(pid=pid, pgid=pid, job_start=start_ticks(pid))  # a zombie's stat still has its start time
    hangup = None
    sampled = {"peak": 0}  # the peak memory seen so far, kept when a hangup interrupts the wait
    try:
        if scope_argv:
            for _attempt in range(300):  # systemd-run moves itself into the scope, then execs bash
                mcg = memory.memory_cgroup_of(pid)
                if mcg is None or unit in mcg:
                    break
                time.sleep(0.01)
        rec["cgroup"] = memory.cgroup_of(pid)
        if scope_argv:
            mcg = memory.memory_cgroup_of(pid)
            if mcg and unit in mcg and memory.cap_holds(mcg, memory_max):
                rec.update(memory_cap="enforced", memory_cgroup=mcg)
            else:
                rec["memory_cap"] = "not enforced: the job's scope has no memory limit (controller not delegated)"
        records.write_json_atomic(records.job_file(name), rec)
        status, rusage, peak, ooms = wait_job(pid, rec, view, sampled)
    except Hangup as exc:
        hangup = str(exc)
        for signum in (signal.SIGHUP, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        status, rusage, peak, ooms = end_job(pid, rec, grace)
        peak = max(peak, sampled["peak"])  # what was sampled before the hangup still counts
    rec["ended"] = records.now_iso()
    reaped = rusage.ru_maxrss if rusage and rusage.ru_maxrss > own_maxrss else 0
    rec.update(
        ending(
            status,
            stopped=(records.read_text(records.stop_file(name), "") or "").strip() == rec["run_id"],
            hangup=hangup,
            capped=rec["memory_cap"] == "enforced",
            memory_max=memory_max,
            peak=peak,
            ooms=ooms,
            reaped_peak=reaped * 1024,
            scope_result=lambda: memory.systemd_result(unit),
        )
    )
    how = f"signal {rec['signal']}" if rec["signal"] else f"code {rec['exit_code']}"
    left = procs.run_processes(rec)  # after a hangup end_job has ended them all
    also = "; ending {} process(es) it left running: {} (SIGTERM, SIGKILL after {}s)".format(
        len(left), " ".join(str(pid) for pid, _ticks in left), grace
    )
    # on a line of its own, also after output that did not end its last line
    newline = b"" if _ends_a_line(log_path) else b"\n"
    end_line = "[orch] job exited with {} ({}){}\n".format(how, rec["state"], also if left else "")
    os.write(logfd, newline + end_line.encode())
    os.close(logfd)
    current = records.read_record(name)
    if current is None or current.get("run_id") in (rec["run_id"], None):
        records.write_json_atomic(records.job_file(name), rec)
    # else a newer run of the name owns the record now: this run's end stays in the log only
    try:
        os.unlink(records.stop_file(name))
    except OSError:
        pass
    if left:
        end_leftovers(rec, grace)
    return 0


def end_leftovers(rec, grace):
    """The job's command has ended and its end is written: end what it left running (background children, daemons
    that called setsid), as `orch stop` would, so nothing of a finished job lives on unseen."""
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # a hangup now must not cut the clean-up short
    procs.end_processes(lambda: procs.run_processes(rec), grace)


def ending(status, *, stopped, hangup, capped, memory_max, peak, ooms, reaped_peak, scope_result):
    """How the job ended, as the record's fields: exit_code, signal, memory_peak, oom, oom_cause, state, lost_reason.

    STATUS is the job's wait status; STOPPED whether orch stopped this run; HANGUP the signal that ended the
    supervisor, or None; PEAK the sampled peak in bytes (the cap's cgroup, else the session's); OOMS the OOM kills the
    cap's cgroup counted; REAPED_PEAK the largest reaped process's peak RSS in bytes; SCOPE_RESULT asks systemd for
    the cap's scope Result, only when the counters cannot tell.
    """
    code = os.waitstatus_to_exitcode(status)
    end = {
        "exit_code": code if code >= 0 else None,
        "signal": signal_name(-code) if code < 0 else None,
        "lost_reason": None,
    }
    peaks = [p for p in (peak, reaped_peak) if p]
    end["memory_peak"] = max(peaks) if peaks else None
    oom = bool(ooms)
    cause = OOM_BY_CAP if oom else None
    if not oom and capped and end["signal"] == "SIGKILL" and not stopped:
        # the scope may be gone already: systemd's verdict, else a SIGKILL at the cap is the OOM killer's
        if scope_result() == "oom-kill":
            oom, cause = True, OOM_BY_CAP
        elif (end["memory_peak"] or 0) >= memory_max * 0.9:
            oom, cause = True, OOM_BY_CAP_INFERRED
    end.update(oom=oom, oom_cause=cause)
    if hangup:
        end.update(
            state=LOST,
            lost_reason=records.HANGUP_REASON.format(signal=hangup),
        )
    elif stopped:
        end["state"] = KILLED
    elif oom:
        end["state"] = OOM
    elif code == 0:
        end["state"] = SUCCEEDED
    else:
        end["state"] = FAILED
    return end


def _wait_readable(fd, timeout):
    if fd is None:
        time.sleep(min(timeout, 0.05))
    else:
        import select

        select.select([fd], [], [], timeout)


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


def wait_job(pid, rec, view, sampled):
    """Wait for the direct child; sample memory meanwhile (the peak so far also in SAMPLED["peak"]). Returns
    (status, rusage, peak bytes, oom kills)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # older kernel or Python: poll instead
    watch = memory.CgroupWatch(rec["memory_cgroup"]) if rec["memory_cap"] == "enforced" else None
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
                return (status, rusage, watch.peak, watch.ooms) if watch is not None else (status, rusage, peak, 0)
            if watch is None and time.monotonic() >= next_sample:
                peak = sampled["peak"] = max(peak, memory.session_peak(pid))
                next_sample = time.monotonic() + SAMPLE_EVERY
            view.show()
            _wait_readable(pidfd, TICK)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def end_job(pid, rec, grace):
    """The session is going away: end every process of the run (SIGTERM, then SIGKILL after GRACE seconds to all
    that are left, the leader's children too), reap the child. Returns (status, rusage, 0, 0)."""
    reaped = []

    def reap():
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
    return status, rusage, 0, 0
