"""The job's own cgroup: a transient systemd scope in orch.slice, made by the root helper the orch_memory role
installs (one sudoers rule names it), with the job's cap as its MemoryMax.

Every job gets a scope where the helper is installed, capped or not: its memory is read from the scope, and when the
kernel's OOM killer ends one of its processes the scope's own counters say so and why. A sentinel process (the
supervisor's `cat` of a pipe, oom_score_adj -1000 where the host allows it) sits in the scope beside the job, so
that the scope and its counters are still there when the supervisor reads them after the job has ended; it ends
with the pipe that holds it.
"""

import os
import signal
import subprocess

from . import memory

HELPER = "/usr/local/libexec/orch-scope"
HELPER_ENV = "ORCH_SCOPE_HELPER"  # tests/host point at a stand-in; sudo's rule names HELPER only
OOM_JOB_CAP = "job cap"  # the scope hit its own MemoryMax (--mem)
OOM_HOST_LIMIT = "host limit"  # orch.slice, all jobs together, hit its MemoryMax
OOM_HOST_MEMORY = "host memory"  # neither: the kernel ran out of memory host-wide
NOT_INSTALLED = "not enforced: orch's scope helper {} is not installed (run `orch configure` on the host)"


def helper_path():
    return os.environ.get(HELPER_ENV) or HELPER


def helper_missing():
    """Why no job can get a scope on this host, or None."""
    path = helper_path()
    if not os.access(path, os.X_OK):
        return NOT_INSTALLED.format(path)
    return None


def _local_oom(directory):
    """OOM events at DIRECTORY's own limit: v2 memory.events.local `oom`; v1 memory.failcnt (charges that failed at
    this cgroup's limit)."""
    for name, key in (("memory.events.local", "oom "), ("memory.failcnt", "")):
        text = memory.cg_read(directory, (name,))
        if text is None:
            continue
        if not key:
            return memory.parse_int(text) or 0
        for line in text.splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    return 0


class JobScope:
    """One run's scope: fork_sentinel() before the job, place(pid) once it is forked (before it execs), counters
    while it runs, verdict() after it ended, release() last."""

    def __init__(self, name, run_id, memory_max):
        self.unit = f"orch-{name}-{run_id[:8]}.scope"
        self.memory_max = memory_max
        self.reason = helper_missing()  # why this job has no scope, else None
        self.directory = None
        self.sentinel = None
        self._hold = None
        self._base = None

    # --- before the job starts --------------------------------------------------------------------------------
    def fork_sentinel(self):
        """A `cat` reading a pipe this process holds: about 1 MB, it ends when the pipe closes (release(), or this
        process's death), so no sentinel outlives its supervisor."""
        if self.reason is not None:
            return
        import shutil

        cat = shutil.which("cat") or "/bin/cat"
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGHUP, signal.SIGTERM):
                    signal.signal(signum, signal.SIG_IGN)  # only the pipe's end ends it
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(hold_r, 0)
                os.dup2(null, 1)
                os.dup2(null, 2)
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # holds no terminal, log or pipe of the job's
                os.execve(cat, [cat], {})
            finally:
                os._exit(0)
        os.close(hold_r)
        self.sentinel, self._hold = pid, hold_w

    def place(self, pid):
        """Ask the helper to move PID (forked, not yet exec'd) and the sentinel into the scope. Sets self.directory,
        or self.reason when the job runs without a scope."""
        if self.reason is not None:
            return
        size = "infinity" if self.memory_max is None else str(self.memory_max)
        argv = [helper_path(), self.unit, size, str(pid), str(self.sentinel)]
        if os.getuid() != 0:
            argv = ["sudo", "-n"] + argv
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            self.fail(f"not enforced: the scope helper did not run ({exc})")
            return
        directory = res.stdout.strip()
        if res.returncode != 0 or not directory:
            said = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
            self.fail(f"not enforced: {said}")
            return
        if self.memory_max is not None and not memory.cap_holds(directory, self.memory_max):
            self.fail(f"not enforced: the scope's limit does not read back as {self.memory_max} bytes")
            return
        self.adopt(directory)

    def adopt(self, directory):
        """The scope's memory cgroup is DIRECTORY: count from here."""
        self.directory = directory
        self._base = self.counters()

    def in_job(self):
        """In the forked job, before it waits to exec: the job must not hold the sentinel (release() waits for it)."""
        if self._hold is not None:
            os.close(self._hold)

    def fail(self, reason):
        self.reason = reason
        self.release()

    # --- while and after the job runs -------------------------------------------------------------------------
    def counters(self):
        """(OOM kills in the scope, OOM events at the scope's limit, OOM events at orch.slice's limit)."""
        return (
            memory.oom_kills(self.directory) or 0,
            _local_oom(self.directory),
            _local_oom(os.path.dirname(self.directory)),
        )

    def verdict(self):
        """(OOM kills of the job's processes since it started, their cause or None), from the kernel's counters:
        never from an exit code or a peak alone. When both limits were hit (v1 counts every failed charge, also
        those that reclaim then satisfied), the limit the job's peak reached decides."""
        if self.directory is None or self._base is None:
            return 0, None
        now, then = self.counters(), self._base
        kills, at_cap, at_slice = now[0] - then[0], now[1] - then[1], now[2] - then[2]
        if kills <= 0:
            return 0, None
        if at_cap > 0 and at_slice > 0:
            peak = memory.parse_int(memory.cg_read(self.directory, memory.CG_PEAK)) or 0
            cause = OOM_JOB_CAP if self.memory_max and peak >= self.memory_max - (1 << 20) else OOM_HOST_LIMIT
        elif at_cap > 0:
            cause = OOM_JOB_CAP
        elif at_slice > 0:
            cause = OOM_HOST_LIMIT
        else:
            cause = OOM_HOST_MEMORY
        return kills, cause

    def release(self):
        """Let the sentinel go (systemd then drops the empty scope) and reap it."""
        if self._hold is not None:
            os.close(self._hold)
            self._hold = None
        if self.sentinel is not None:
            try:
                os.waitpid(self.sentinel, 0)
            except ChildProcessError:
                pass
            self.sentinel = None
