"""Memory on a real job host (issue 10): each job in its own scope of orch.slice, its cap enforced by the kernel for
the job user (the sandbox hosts run privileged with a private cgroup namespace: cgroup v1 on this machine), the OOM
verdict read from the scope's counters before the scope goes."""

from __future__ import annotations

import json

from orch_wrapper.cli import main

from .conftest import SANDBOX_MEMORY, host_sh, status_json, wait_state

MIB = 2**20


def grab(mb: int, then: str = "", hold: float = 0) -> str:
    """A job that takes MB of memory (bytearray touches every page), prints 'held', keeps it HOLD seconds."""
    py = f"import time; b = bytearray({mb} * 2**20); print('held', len(b) // 2**20, flush=True); time.sleep({hold})"
    return f'python3 -c "{py}"' + (f"; {then}" if then else "")


def test_a_job_over_its_cap_ends_oom_and_its_neighbours_live_on(env, capfd):
    assert main(["run", "steady", "sleep 600"]) == 0
    assert main(["run", "sibling", "--mem", "96M", grab(32, "sleep 2")]) == 0
    assert main(["run", "hog", "--mem", "64M", grab(256)]) == 0  # 4x its cap
    hog = wait_state(capfd, "hog", {"OOM", "FAILED", "SUCCEEDED"})
    assert (hog["state"], hog["oom_cause"], hog["memory_cap"]) == ("OOM", "job cap", "enforced"), hog
    assert 0.85 * 64 * MIB <= hog["memory"] <= 64 * MIB, hog  # its peak, read from its scope: at the cap
    sibling = wait_state(capfd, "sibling", {"OOM", "FAILED", "SUCCEEDED"})
    assert (sibling["state"], sibling["memory_cap"]) == ("SUCCEEDED", "enforced"), sibling
    assert status_json(capfd)["steady"]["state"] == "RUNNING"  # the tmux server and the other sessions live on
    assert "orch-steady" in host_sh("tmux -L orch list-sessions -F '#S'")
    assert main(["stop", "steady"]) == 0


def test_every_job_runs_in_its_own_scope_of_orch_slice(env, capfd):
    assert main(["run", "scoped", grab(48, hold=600)]) == 0  # no --mem: bounded by the slice alone
    job = wait_state(capfd, "scoped", {"RUNNING"})
    host_sh("until grep -q held ~/logs/scoped/run.log; do sleep 0.2; done")
    cgroup = host_sh("cat /proc/$(pgrep -f 'bytearray\\(48' | head -1)/cgroup")
    assert "/orch.slice/orch-scoped-" in cgroup, cgroup
    tmux = host_sh("cat /proc/$(tmux -L orch display-message -p '#{pid}')/cgroup")
    assert "orch.slice" not in tmux  # the tmux server (and the supervisors in its panes) stay outside
    jobs = status_json(capfd)
    assert jobs["scoped"]["memory_cap"] == "none"
    assert 40 * MIB <= (jobs["scoped"]["memory"] or 0) < 120 * MIB, job  # memory.current of its scope
    assert main(["stop", "scoped"]) == 0
    assert wait_state(capfd, "scoped", {"KILLED"})["state"] == "KILLED"


def test_the_slice_is_capped_below_the_host_and_the_helper_refuses_bad_requests(env):
    v2, v1 = "/sys/fs/cgroup/orch.slice/memory.max", "/sys/fs/cgroup/memory/orch.slice/memory.limit_in_bytes"
    limit = int(host_sh(f"cat {v2} 2>/dev/null || cat {v1}").strip())
    total = int(host_sh("awk '/MemTotal/ {print $2}' /proc/meminfo").strip()) * 1024
    assert 0 < limit < total  # the host keeps its reserve
    refused = host_sh("sudo -n /usr/local/libexec/orch-scope orch-x-1234abcd.scope 1000 1 2>&1; echo rc=$?")
    assert "orch-scope: MEMORY_MAX must be" in refused and "rc=1" in refused


def test_hosts_shows_the_container_limit_as_the_hosts_memory_less_its_reserve(env, capfd):
    capfd.readouterr()
    assert main(["hosts", "--json"]) == 0
    (host,) = json.loads(capfd.readouterr().out)
    limit = int(SANDBOX_MEMORY.rstrip("G")) << 30  # `orch sandbox up --memory 6G`, below this machine's memory
    assert host["memory_total"] == limit
    assert host["memory_allocatable"] == limit - (2 << 30)  # orch_memory_reserve's default
    assert host["memory_caps"] == "enforced" and host["memory_reserved"] == 0
    assert 0 <= host["memory_used"] < 512 * MIB
