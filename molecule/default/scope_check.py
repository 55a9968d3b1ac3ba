"""Run as the job user: what orch's supervisor does with the orch_memory role's helper, without orch.

Forks two children held on a pipe (a job and a sentinel), asks `sudo -n /usr/local/libexec/orch-scope` to put them
into a scope of orch.slice capped at CAP_MB, then lets the job allocate ALLOC_MB. Prints JSON: the helper's exit,
the scope's directory and limit, the job's exit (a negative signal number), and the scope's OOM kills, read while
the sentinel still holds the scope. Also a request the helper must refuse.
"""

import json
import os
import subprocess
import sys


def held_child(go_r, then):
    pid = os.fork()
    if pid == 0:
        os.read(go_r, 1)
        then()
        os._exit(0)
    return pid


def read(directory, *names):
    for name in names:
        try:
            with open(os.path.join(directory, name)) as f:
                return f.read()
        except OSError:
            continue
    return ""


def main(cap_mb, alloc_mb):
    go_r, go_w = os.pipe()
    hold_r, hold_w = os.pipe()
    job = held_child(go_r, lambda: bytearray(alloc_mb << 20))
    sentinel = held_child(hold_r, lambda: None)
    unit = "orch-molecule-" + f"{os.getpid():08x}"[-8:] + ".scope"
    helper = ["sudo", "-n", "/usr/local/libexec/orch-scope"]
    placed = subprocess.run([*helper, unit, str(cap_mb << 20), str(job), str(sentinel)], capture_output=True, text=True)
    directory = placed.stdout.strip()
    limit = read(directory, "memory.max", "memory.limit_in_bytes").strip()
    os.write(go_w, b"g")
    status = os.waitpid(job, 0)[1]
    events = read(directory, "memory.events", "memory.oom_control")
    kills = [int(line.split()[1]) for line in events.splitlines() if line.startswith("oom_kill ")]
    os.write(hold_w, b"g")
    os.waitpid(sentinel, 0)
    refused = subprocess.run([*helper, unit, "1000", "1"], capture_output=True, text=True)
    print(json.dumps({
        "helper_rc": placed.returncode, "helper_err": placed.stderr.strip(), "directory": directory,
        "limit": limit, "job_exit": os.waitstatus_to_exitcode(status), "oom_kills": kills[0] if kills else None,
        "refused_rc": refused.returncode, "refused_err": refused.stderr.strip(),
    }))  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
