"""OOM with its cause, from recorded cgroup v1 and v2 trees (this machine has no v2 host and no systemd here): a
job's scope inside orch.slice, read as the supervisor reads it (scope.JobScope) and decided as it decides
(supervisor.ending), with real wait statuses. The kernel's own formats; the counters, never the exit code, decide.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from orch_host import memory, scope, supervisor

CAP = 512 << 20
UNIT = "orch-hog-6f1c0e4b.scope"

# v2: the scope's memory.events counts kills of its processes; memory.events.local's `oom` counts OOMs at its own
# limit, the slice's at the slice's limit.
V2_EVENTS = "low 0\nhigh 0\nmax {max}\noom {oom}\noom_kill {kill}\noom_group_kill 0\n"
# v1: memory.oom_control counts the kills; memory.failcnt the charges that failed at that cgroup's limit.
V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill {kill}\n"


def v2_scope(kill=0, oom=0, peak=2195456, limit=CAP):
    events = V2_EVENTS.format(max=oom * 1390, oom=oom, kill=kill)
    return {
        "memory.max": f"{limit}\n",
        "memory.current": "2195456\n",
        "memory.peak": f"{peak}\n",
        "memory.events": events,
        "memory.events.local": events,
    }


def v2_slice(oom=0):
    return {"memory.events.local": V2_EVENTS.format(max=oom * 90, oom=oom, kill=0)}


def v1_scope(kill=0, oom=0, peak=2211840, limit=CAP):
    return {
        "memory.limit_in_bytes": f"{limit}\n",
        "memory.usage_in_bytes": "2211840\n",
        "memory.max_usage_in_bytes": f"{peak}\n",
        "memory.oom_control": V1_OOM_CONTROL.format(kill=kill),
        "memory.failcnt": f"{oom * 37}\n",
    }


def v1_slice(oom=0):
    return {"memory.failcnt": f"{oom * 12}\n", "memory.oom_control": V1_OOM_CONTROL.format(kill=0)}


TREES = {"v1": (v1_scope, v1_slice), "v2": (v2_scope, v2_slice)}


def write_tree(directory: Path, files: dict[str, str]) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return str(directory)


class Tree:
    """orch.slice/UNIT under a temp folder, in one cgroup version's files."""

    def __init__(self, root: Path, version: str):
        self.scope_files, self.slice_files = TREES[version]
        self.slice = root / "orch.slice"
        self.scope = self.slice / UNIT
        self.set(scope={}, slice={})

    def set(self, scope: dict, slice: dict) -> None:  # noqa: A002 - the cgroup's own word
        write_tree(self.slice, self.slice_files(**slice))
        write_tree(self.scope, self.scope_files(**scope))


def watched(tree: Tree, memory_max: int | None = CAP) -> scope.JobScope:
    job_scope = scope.JobScope("hog", "6f1c0e4b" + "0" * 24, memory_max)
    job_scope.adopt(str(tree.scope))
    return job_scope


def wait_status(command: str) -> int:
    """The wait status of a real child running COMMAND: what the supervisor's wait4 gets."""
    pid = os.posix_spawn(shutil.which("bash"), ["bash", "-c", command], dict(os.environ))
    return os.waitpid(pid, 0)[1]


def end_of(status: int, job_scope: scope.JobScope, *, stopped: str | None = None) -> dict:
    _kills, cause = job_scope.verdict()
    peak = memory.scope_peak(job_scope.directory)
    return supervisor.ending(status, stopped=stopped, hangup=None, peak=peak, oom_cause=cause, reaped_peak=0)


@pytest.mark.parametrize("version", sorted(TREES))
@pytest.mark.parametrize(
    ("command", "exit_code", "signal"),
    [("kill -9 $$", None, "SIGKILL"), ("exit 137", 137, None)],
    ids=["job-killed", "child-killed"],  # bash itself, or a child of bash's, which then exits 137
)
def test_a_job_its_scope_counted_an_oom_kill_at_its_own_cap_is_oom_job_cap(
    tmp_path, version, command, exit_code, signal
):
    tree = Tree(tmp_path, version)
    assert memory.cap_holds(str(tree.scope), CAP)  # the limit reads back: the cap counts as enforced
    job_scope = watched(tree)
    tree.set(scope=dict(kill=1, oom=1, peak=CAP - 4096), slice={})
    end = end_of(wait_status(command), job_scope)
    assert (end["state"], end["oom"], end["oom_cause"]) == ("OOM", True, "job cap")
    assert end["memory_peak"] == CAP - 4096
    assert (end["exit_code"], end["signal"], end["lost_reason"]) == (exit_code, signal, None)


@pytest.mark.parametrize("version", sorted(TREES))
@pytest.mark.parametrize("memory_max", [CAP, None], ids=["capped", "uncapped"])
def test_an_oom_kill_at_the_slices_limit_is_oom_host_limit(tmp_path, version, memory_max):
    tree = Tree(tmp_path, version)
    job_scope = watched(tree, memory_max)
    tree.set(scope=dict(kill=1, oom=0, peak=300 << 20), slice=dict(oom=1))
    end = end_of(wait_status("kill -9 $$"), job_scope)
    assert (end["state"], end["oom_cause"]) == ("OOM", "host limit")


@pytest.mark.parametrize("version", sorted(TREES))
@pytest.mark.parametrize(("peak", "cause"), [(CAP, "job cap"), (200 << 20, "host limit")])
def test_when_both_limits_were_hit_the_limit_the_peak_reached_decides(tmp_path, version, peak, cause):
    tree = Tree(tmp_path, version)
    job_scope = watched(tree)
    tree.set(scope=dict(kill=1, oom=1, peak=peak), slice=dict(oom=1))
    assert end_of(wait_status("kill -9 $$"), job_scope)["oom_cause"] == cause


@pytest.mark.parametrize("version", sorted(TREES))
def test_an_oom_kill_at_no_orch_limit_is_the_hosts_own_memory(tmp_path, version):
    tree = Tree(tmp_path, version)
    job_scope = watched(tree)
    tree.set(scope=dict(kill=1), slice={})  # the kernel's global OOM killer picked the job
    assert end_of(wait_status("kill -9 $$"), job_scope)["oom_cause"] == "host memory"


@pytest.mark.parametrize("version", sorted(TREES))
def test_a_sigkill_at_the_cap_with_no_oom_kill_counted_is_failed(tmp_path, version):
    # someone's kill -9 while the job sat at its cap: the peak alone never makes an OOM
    tree = Tree(tmp_path, version)
    job_scope = watched(tree)
    tree.set(scope=dict(kill=0, oom=1, peak=CAP), slice=dict(oom=1))
    end = end_of(wait_status("kill -9 $$"), job_scope)
    assert (end["state"], end["oom"], end["oom_cause"]) == ("FAILED", False, None)
    assert (end["signal"], end["memory_peak"]) == ("SIGKILL", CAP)


def test_kills_counted_before_the_job_started_do_not_count(tmp_path):
    tree = Tree(tmp_path, "v2")
    tree.set(scope=dict(kill=2, oom=2), slice=dict(oom=2))  # a scope name reused: its old counts are the base
    job_scope = watched(tree)
    assert end_of(wait_status("exit 0"), job_scope)["state"] == "SUCCEEDED"


def test_a_job_orch_stopped_is_killed_even_at_its_cap(tmp_path):
    tree = Tree(tmp_path, "v2")
    job_scope = watched(tree)
    tree.set(scope=dict(kill=0, peak=CAP), slice={})
    end = end_of(wait_status("kill -9 $$"), job_scope, stopped="KILLED")  # the grace ran out: orch's own SIGKILL
    assert (end["state"], end["oom"], end["oom_cause"], end["signal"]) == ("KILLED", False, None, "SIGKILL")


def test_a_job_without_a_scope_has_no_verdict(tmp_path):
    job_scope = scope.JobScope("plain", "0" * 32, None)
    assert job_scope.verdict() == (0, None)
    assert memory.scope_peak(job_scope.directory) == 0


@pytest.mark.parametrize(
    ("files", "holds"),
    [
        ({"memory.limit_in_bytes": "536870912\n"}, True),
        ({"memory.limit_in_bytes": "536875008\n"}, True),  # v1 may round the limit to pages
        ({"memory.limit_in_bytes": "9223372036854771712\n"}, False),  # v1: no limit
        ({"memory.max": "max\n"}, False),  # v2: no limit
        ({"memory.max": "268435456\n"}, False),
        ({}, False),
    ],
    ids=["v1-limit", "v1-rounded", "v1-unlimited", "v2-max", "v2-other-limit", "no-files"],
)
def test_the_cap_counts_as_enforced_only_when_its_limit_reads_back(tmp_path, files, holds):
    assert memory.cap_holds(write_tree(tmp_path / UNIT, files), CAP) is holds
