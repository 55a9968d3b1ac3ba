#!/usr/bin/python3 -I
"""orch-scope: put a job's freshly forked processes into a transient systemd scope in orch.slice, with its memory cap.

Runs as root through one sudoers rule that names this path, called by the job user's orch supervisor:

    sudo -n /usr/local/libexec/orch-scope UNIT MEMORY_MAX PID [SENTINEL_PID]

It does nothing else. Before anything changes it checks that UNIT is an orch job's scope name, that MEMORY_MAX is a
byte count of at least 16 MiB or "infinity", and that each PID is a live process of the calling user (SUDO_UID, or
root when run without sudo), not yet in orch.slice, whose parent is the caller. Then it asks systemd (busctl, the
Manager's StartTransientUnit) for the scope, waits until the processes are in it, sets the sentinel's
oom_score_adj to -1000 where the host allows it (the sentinel holds the scope open so that its OOM counters can be
read after the job ends) and prints the scope's memory cgroup directory. Errors are one line on stderr.
Standard library only; -I keeps the caller's environment and paths out of this root process.
"""

import os
import re
import subprocess
import sys
import time

UNIT_RE = re.compile(r"orch-[a-z0-9][a-z0-9._-]{0,62}-[0-9a-f]{8}\.scope")
SLICE = "orch.slice"
FLOOR = 16 << 20
INFINITY = (1 << 64) - 1  # systemd's "infinity" for MemoryMax
WAIT = 5.0


class Refused(Exception):
    pass


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rfind(")") + 2 :].split()


def parent_of(pid):
    return int(stat_fields(pid)[1])


def uids_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return {int(uid) for uid in line.split()[1:]}
    return set()


def cgroups_of(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


def memory_cgroup_of(pid):
    # the same as orch_host.memory.memory_cgroup_of, copied: this root process imports nothing the job user can write
    for line in cgroups_of(pid).splitlines():
        controllers, path = line.split(":", 2)[1:]
        if controllers == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            return "/sys/fs/cgroup" + path
        if "memory" in controllers.split(","):
            return "/sys/fs/cgroup/memory" + path
    return None


def caller():
    """The supervisor: this helper's parent, or the first process above the sudo processes that run it."""
    parent = os.getppid()
    while "SUDO_UID" in os.environ and parent > 1:
        with open(f"/proc/{parent}/comm") as f:
            if f.read().strip() != "sudo":
                break
        parent = parent_of(parent)
    return parent


def check(argv):
    if len(argv) not in (3, 4):
        raise Refused("usage: orch-scope UNIT MEMORY_MAX PID [SENTINEL_PID]")
    unit, size = argv[0], argv[1]
    if not UNIT_RE.fullmatch(unit):
        raise Refused(f"not an orch job scope name: {unit!r}")
    if size == "infinity":
        memory_max = INFINITY
    elif size.isdigit() and FLOOR <= int(size) < INFINITY:
        memory_max = int(size)
    else:
        raise Refused(f"MEMORY_MAX must be a byte count of at least {FLOOR} or 'infinity', not {size!r}")
    uid = int(os.environ["SUDO_UID"]) if os.environ.get("SUDO_UID", "").isdigit() else os.getuid()
    parent = caller()
    pids = []
    for text in argv[2:]:
        if not text.isdigit() or int(text) <= 1:
            raise Refused(f"not a process id: {text!r}")
        pid = int(text)
        try:
            if uids_of(pid) != {uid}:
                raise Refused(f"process {pid} is not the calling user's")
            if parent_of(pid) != parent:
                raise Refused(f"process {pid} is not a child of the caller")
            if f"/{SLICE}/" in cgroups_of(pid):
                raise Refused(f"process {pid} is in {SLICE} already")
        except FileNotFoundError:
            raise Refused(f"no process {pid}") from None
        pids.append(pid)
    return unit, memory_max, pids


def start_scope(unit, memory_max, pids):
    props = [
        ("PIDs", "au", str(len(pids)), *map(str, pids)),
        ("Slice", "s", SLICE),
        ("Description", "s", "orch job"),
        ("MemoryAccounting", "b", "true"),
        ("MemoryMax", "t", str(memory_max)),
        # one process killed at the cap must not make systemd stop the whole scope (DefaultOOMPolicy=stop): the job
        # may survive a worker's death, and the sentinel must hold the scope until its counters are read
        ("OOMPolicy", "s", "continue"),
    ]
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers") and os.path.exists("/proc/swaps"):
        with open("/proc/swaps") as f:
            if len(f.read().splitlines()) > 1:
                props.append(("MemorySwapMax", "t", "0"))  # jobs never swap: an OOM beats a host thrashing on disk
    argv = ["busctl", "call", "--quiet", "org.freedesktop.systemd1", "/org/freedesktop/systemd1"]
    argv += ["org.freedesktop.systemd1.Manager", "StartTransientUnit", "ssa(sv)a(sa(sv))", unit, "fail"]
    argv.append(str(len(props)))
    for prop in props:
        argv += prop
    argv.append("0")
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise Refused(f"busctl: {exc}") from None
    if res.returncode != 0:
        raise Refused(f"systemd refused the scope: {(res.stderr or res.stdout).strip().splitlines()[-1:]}")
    deadline = time.monotonic() + WAIT
    while not all(f"/{unit}" in cgroups_of(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise Refused(f"the processes did not reach {unit} within {WAIT:g}s")
        time.sleep(0.005)


def protect(sentinel):
    """The OOM killer never picks the sentinel. Best effort: a host without CAP_SYS_RESOURCE (some containers) may
    not lower a score, and the sentinel, a `cat` of about 1 MB, comes after the job's processes anyway."""
    try:
        with open(f"/proc/{sentinel}/oom_score_adj", "w") as f:
            f.write("-1000")
    except OSError:
        pass


def main(argv):
    try:
        unit, memory_max, pids = check(argv)
        start_scope(unit, memory_max, pids)
        if len(pids) == 2:
            protect(pids[1])
        print(memory_cgroup_of(pids[0]) or "")
    except (Refused, OSError) as exc:
        sys.stderr.write(f"orch-scope: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
