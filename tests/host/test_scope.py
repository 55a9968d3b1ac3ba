"""A job's scope (scope.py and the role's root helper, roles/orch_memory/files/orch-scope.py).

The supervisor's side runs for real against a stand-in helper (ORCH_SCOPE_HELPER) that writes a recorded cgroup v2
tree instead of asking systemd, so the test can play the kernel's OOM killer: the sentinel holds the scope while the
job runs, the counters decide the verdict, a refused scope leaves an uncapped job that says why. The real helper's
refusals run here as root (no sudo, no systemd on this machine); its systemd side runs on the sandbox
(tests/e2e/test_memory.py) and in molecule.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HELPER = REPO / "roles" / "orch_memory" / "files" / "orch-scope.py"
EVENTS = "low 0\nhigh 0\nmax 0\noom {oom}\noom_kill {kill}\noom_group_kill 0\n"

STAND_IN = r"""#!/bin/bash
# UNIT SIZE PID SENTINEL: a scope's v2 files under $SCOPE_TREE, as orch-scope would leave them
[ -n "$SCOPE_REFUSE" ] && { echo "orch-scope: $SCOPE_REFUSE" >&2; exit 1; }
d="$SCOPE_TREE/orch.slice/$1"
mkdir -p "$d"
if [ "$2" = infinity ]; then echo max > "$d/memory.max"; else echo "$2" > "$d/memory.max"; fi
printf 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n' | tee "$d/memory.events" > "$d/memory.events.local"
printf 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n' > "$SCOPE_TREE/orch.slice/memory.events.local"
echo 4096 > "$d/memory.current"; echo 4096 > "$d/memory.peak"
echo "$3 $4" > "$d/pids"
echo "$d"
"""


@pytest.fixture
def stand_in(tmp_path):
    helper = tmp_path / "orch-scope"
    helper.write_text(STAND_IN)
    helper.chmod(0o755)
    tree = tmp_path / "cgroup"
    tree.mkdir()
    return {"ORCH_SCOPE_HELPER": str(helper), "SCOPE_TREE": str(tree)}, tree


def scope_dir(tree: Path) -> Path:
    (found,) = (tree / "orch.slice").glob("orch-*.scope")
    return found


def test_an_oom_kill_the_scope_counts_ends_the_job_oom_with_its_peak(jobhost, stand_in):
    env, tree = stand_in
    job = jobhost.start("hog", "sleep 600", memory_max="64M", proc_env=env)
    assert job["memory_cap"] == "enforced" and job["memory_cgroup"] == str(scope_dir(tree))
    assert "orch-hog-" in job["memory_cgroup"] and (scope_dir(tree) / "memory.max").read_text() == f"{64 << 20}\n"
    pid, sentinel = map(int, (scope_dir(tree) / "pids").read_text().split())
    assert pid == job["pid"] and jobhost.alive(sentinel)
    assert jobhost.job("hog")["memory_current"] == 4096  # read from the scope
    # the kernel at the cap: the scope counts the OOM at its own limit and the kill, then the process is gone
    (scope_dir(tree) / "memory.peak").write_text(f"{64 << 20}\n")
    for name in ("memory.events", "memory.events.local"):
        (scope_dir(tree) / name).write_text(EVENTS.format(oom=1, kill=1))
    os.kill(pid, signal.SIGKILL)
    ended = jobhost.wait_done("hog")
    assert (ended["state"], ended["oom"], ended["oom_cause"]) == ("OOM", True, "job cap")
    assert ended["memory_peak"] == 64 << 20
    jobhost.wait_until(lambda: not jobhost.alive(sentinel), "the sentinel to go with its job")


def test_a_job_without_mem_still_gets_a_scope_and_the_slices_limit_is_host_limit(jobhost, stand_in):
    env, tree = stand_in
    job = jobhost.start("big", "sleep 600", proc_env=env)
    assert (job["memory_cap"], job["memory_max"]) == ("none", None)
    assert (scope_dir(tree) / "memory.max").read_text() == "max\n"  # bounded by orch.slice alone
    (scope_dir(tree) / "memory.events").write_text(EVENTS.format(oom=0, kill=1))
    (tree / "orch.slice" / "memory.events.local").write_text(EVENTS.format(oom=1, kill=0))
    os.kill(job["pid"], signal.SIGKILL)
    ended = jobhost.wait_done("big")
    assert (ended["state"], ended["oom_cause"]) == ("OOM", "host limit")


def test_a_sigkill_the_counters_do_not_explain_is_failed_not_oom(jobhost, stand_in):
    env, tree = stand_in
    job = jobhost.start("shot", "sleep 600", memory_max="64M", proc_env=env)
    (scope_dir(tree) / "memory.peak").write_text(f"{64 << 20}\n")  # at the cap, and yet no OOM kill counted
    os.kill(job["pid"], signal.SIGKILL)
    ended = jobhost.wait_done("shot")
    assert (ended["state"], ended["oom"], ended["signal"]) == ("FAILED", False, "SIGKILL")


def test_a_refused_scope_runs_the_job_uncapped_and_says_why(jobhost, stand_in):
    env, _tree = stand_in
    job = jobhost.start("refused", "echo ran", memory_max="64M", proc_env={**env, "SCOPE_REFUSE": "no systemd"})
    assert job["memory_cap"] == "not enforced: orch-scope: no systemd" and job["memory_cgroup"] is None
    assert jobhost.wait_done("refused")["state"] == "SUCCEEDED" and "ran" in jobhost.log("refused")


def test_without_the_helper_a_cap_is_not_enforced_and_says_how_to_fix_it(jobhost, tmp_path):
    job = jobhost.start("nohelper", "true", memory_max="64M", proc_env={"ORCH_SCOPE_HELPER": str(tmp_path / "none")})
    assert job["memory_cap"].startswith("not enforced: orch's scope helper") and "orch configure" in job["memory_cap"]


# --- the real helper's checks: each refusal before anything changes -------------------------------------------------
def helper(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", str(HELPER), *args], capture_output=True, text=True, **kw)


@pytest.fixture
def child():
    proc = subprocess.Popen(["sleep", "600"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["orch-x-1234abcd.service", "67108864", "{pid}"], "not an orch job scope name"),
        (["../../etc-1234abcd.scope", "67108864", "{pid}"], "not an orch job scope name"),
        (["orch-x-1234abcd.scope", "1000", "{pid}"], "at least 16777216"),
        (["orch-x-1234abcd.scope", "8G", "{pid}"], "at least 16777216"),
        (["orch-x-1234abcd.scope", "67108864", "1"], "not a process id"),
        (["orch-x-1234abcd.scope", "67108864", "{pid}", "x"], "not a process id"),
        (["orch-x-1234abcd.scope", "67108864", "999999999"], "no process"),
        (["orch-x-1234abcd.scope", "67108864", "{parent}"], "not a child of the caller"),
        (["orch-x-1234abcd.scope"], "usage:"),
    ],
    ids=["unit-type", "unit-path", "size-small", "size-suffix", "pid-1", "sentinel-text", "pid-gone", "not-a-child",
         "usage"],
)  # fmt: skip
def test_the_helper_refuses_what_it_must_not_do(child, args, said):
    argv = [a.format(pid=child, parent=os.getppid()) for a in args]
    res = helper(*argv)
    assert res.returncode == 1 and res.stderr.startswith("orch-scope: ") and said in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1 and res.stdout == ""


def test_the_helper_refuses_another_users_process(tmp_path):
    proc = subprocess.Popen(["sleep", "600"], user=65534)  # nobody: the caller (root) may not move it
    try:
        res = helper("orch-x-1234abcd.scope", "67108864", str(proc.pid))
        assert res.returncode == 1 and "is not the calling user's" in res.stderr, res.stderr
    finally:
        proc.kill()
        proc.wait()


def test_a_valid_request_reaches_systemd(child):
    # every check passed: the next step is systemd's, which this machine (no systemd as PID 1) refuses
    res = helper("orch-x-1234abcd.scope", "infinity", str(child), timeout=30)
    assert res.returncode == 1 and ("systemd refused the scope" in res.stderr or "busctl" in res.stderr), res.stderr


# --- the host's memory, as `orch hosts` shows it ----------------------------------------------------------------------
def test_the_hosts_memory_is_the_lesser_limit_the_slice_and_the_active_reservations(tmp_path, monkeypatch):
    from orch_host import memory

    own, cg_slice = tmp_path / "own", tmp_path / "orch.slice"
    own.mkdir()
    cg_slice.mkdir()
    (own / "memory.max").write_text(f"{3 << 30}\n")  # a container's limit below MemTotal
    (cg_slice / "memory.max").write_text(f"{1 << 30}\n")
    (cg_slice / "memory.current").write_text(f"{300 << 20}\n")
    monkeypatch.setattr(memory, "OWN_LIMIT_DIRS", (str(own),))
    monkeypatch.setattr(memory, "SLICE_DIRS", (str(tmp_path / "v2-missing"), str(cg_slice)))
    monkeypatch.setattr(memory, "mem_total", lambda: 23 << 30)
    jobs = [
        {"state": "RUNNING", "memory_max": 256 << 20, "reservation": 256 << 20},
        {"state": "QUEUED", "memory_max": 128 << 20, "admitted": False},  # waiting: holds nothing yet
        {"state": "QUEUED", "memory_max": 64 << 20, "admitted": True},  # admitted, about to run
        {"state": "RUNNING", "memory_max": None},  # the default reservation
        {"state": "OOM", "memory_max": 64 << 20},  # ended: reserves nothing
    ]
    assert memory.host_memory(jobs, "enforced") == {
        "memory_total": 3 << 30,
        "memory_allocatable": 1 << 30,
        "memory_reserved": (256 << 20) + (64 << 20) + (1 << 30),
        "memory_used": 300 << 20,
        "memory_caps": "enforced",
    }
    monkeypatch.setattr(memory, "SLICE_DIRS", (str(tmp_path / "none"),))
    bare = memory.host_memory([], "enforced")
    assert (bare["memory_allocatable"], bare["memory_used"]) == (None, None)
    assert bare["memory_caps"].startswith("not enforced: orch.slice is missing")


def test_a_whole_host_query_reports_its_memory_and_why_caps_cannot_hold_here(jobhost):
    reply = json.loads(jobhost.script("query").stdout)
    assert reply["memory"]["memory_total"] > 0 and reply["memory"]["memory_reserved"] == 0
    assert reply["memory"]["memory_caps"].startswith("not enforced: ")  # this machine has no helper, no orch.slice
    assert "memory" not in json.loads(jobhost.script("query", "nothing").stdout)  # one job's query: jobs only
