"""OOM from the cap's cgroup: recorded cgroup v1 and v2 trees of a capped job's scope, read as the supervisor reads
them (memory.CgroupWatch) and decided as it decides (supervisor.ending).

The cap itself cannot be applied everywhere the tests run (cgroup v1 without root's systemd, a user without a
delegated memory controller), so the scope's files are written to a temp folder in the kernel's own formats.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from orch_host import memory, supervisor

CAP = 512 << 20
UNIT = "orch-hog-6f1c0e4b.scope"

# The scope's files when the job starts and after the OOM killer ended it. v1: root's system scope under the memory
# controller (the v1 names; memory.oom_control counts kills since 4.13). v2: a user scope in the unified hierarchy.
V1_START = {
    "memory.limit_in_bytes": "536870912\n",
    "memory.usage_in_bytes": "2211840\n",
    "memory.max_usage_in_bytes": "2211840\n",
    "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
}
V1_OOM = {
    "memory.limit_in_bytes": "536870912\n",
    "memory.usage_in_bytes": "1040384\n",
    "memory.max_usage_in_bytes": "536866816\n",
    "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
}
V2_START = {
    "memory.max": "536870912\n",
    "memory.current": "2195456\n",
    "memory.peak": "2195456\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
}
V2_OOM = {
    "memory.max": "536870912\n",
    "memory.current": "1097728\n",
    "memory.peak": "536870912\n",
    "memory.events": "low 0\nhigh 0\nmax 1390\noom 1\noom_kill 1\noom_group_kill 0\n",
}
TREES = {"v1": (V1_START, V1_OOM, "memory.max_usage_in_bytes"), "v2": (V2_START, V2_OOM, "memory.peak")}


def write_tree(directory: Path, files: dict[str, str]) -> str:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return str(directory)


def wait_status(command: str) -> int:
    """The wait status of a real child running COMMAND: what the supervisor's wait4 gets."""
    pid = os.posix_spawn(shutil.which("bash"), ["bash", "-c", command], dict(os.environ))
    return os.waitpid(pid, 0)[1]


def end_of(status: int, watch: memory.CgroupWatch, *, stopped: bool = False, scope_result=None) -> dict:
    return supervisor.ending(
        status,
        stopped=stopped,
        hangup=None,
        capped=True,
        memory_max=CAP,
        peak=watch.peak,
        ooms=watch.ooms,
        reaped_peak=0,  # a process the OOM killer ends leaves no rusage behind
        scope_result=lambda: scope_result,
    )


@pytest.mark.parametrize("version", sorted(TREES))
@pytest.mark.parametrize(
    ("command", "exit_code", "signal"),
    [("kill -9 $$", None, "SIGKILL"), ("exit 137", 137, None)],
    ids=["job-killed", "child-killed"],  # bash itself, or a child of bash's, which then exits 137
)
def test_a_capped_job_its_cgroup_counted_an_oom_kill_for_is_oom(tmp_path, version, command, exit_code, signal):
    start, oom, peak_file = TREES[version]
    scope = write_tree(tmp_path / UNIT, start)
    assert memory.cap_holds(scope, CAP)  # the limit reads back: the cap counts as enforced
    watch = memory.CgroupWatch(scope)
    watch.sample()
    write_tree(tmp_path / UNIT, oom)
    watch.sample()  # right after the job ends, before systemd drops the scope
    end = end_of(wait_status(command), watch)
    assert (end["state"], end["oom"], end["oom_cause"]) == ("OOM", True, "job cap")
    assert end["memory_peak"] == int(oom[peak_file])
    assert (end["exit_code"], end["signal"], end["lost_reason"]) == (exit_code, signal, None)


@pytest.mark.parametrize("version", sorted(TREES))
def test_a_sigkill_far_below_the_cap_with_no_oom_kill_counted_is_failed(tmp_path, version):
    start, _, peak_file = TREES[version]
    scope = write_tree(tmp_path / UNIT, start)
    watch = memory.CgroupWatch(scope)
    # someone's kill -9 at 100M of the 512M cap: the counters did not move
    write_tree(tmp_path / UNIT, {**start, peak_file: f"{100 << 20}\n"})
    watch.sample()
    end = end_of(wait_status("kill -9 $$"), watch, scope_result="success")
    assert (end["state"], end["oom"], end["oom_cause"]) == ("FAILED", False, None)
    assert (end["signal"], end["memory_peak"]) == ("SIGKILL", 100 << 20)


@pytest.mark.parametrize("version", sorted(TREES))
@pytest.mark.parametrize(
    ("peak", "scope_result", "state", "cause"),
    [
        (300 << 20, "oom-kill", "OOM", "job cap"),
        (500 << 20, None, "OOM", "job cap (inferred: SIGKILL near the cap)"),
        (300 << 20, None, "FAILED", None),
    ],
    ids=["systemd-says-oom-kill", "sigkill-near-the-cap", "sigkill-far-below-the-cap"],
)
def test_when_the_scope_is_gone_before_the_last_read_systemd_or_the_peak_decides(
    tmp_path, version, peak, scope_result, state, cause
):
    start, _, peak_file = TREES[version]
    scope = write_tree(tmp_path / UNIT, start)
    watch = memory.CgroupWatch(scope)
    write_tree(tmp_path / UNIT, {**start, peak_file: f"{peak}\n"})
    watch.sample()
    shutil.rmtree(scope)  # systemd dropped the scope between two reads
    watch.sample()
    end = end_of(wait_status("kill -9 $$"), watch, scope_result=scope_result)
    assert (end["state"], end["oom"], end["oom_cause"]) == (state, state == "OOM", cause)
    assert end["memory_peak"] == peak


def test_a_job_orch_stopped_is_killed_even_at_its_cap(tmp_path):
    start, _, peak_file = TREES["v2"]
    watch = memory.CgroupWatch(write_tree(tmp_path / UNIT, start))
    write_tree(tmp_path / UNIT, {**start, peak_file: f"{CAP}\n"})
    watch.sample()
    end = end_of(wait_status("kill -9 $$"), watch, stopped=True)  # the grace ran out: orch's own SIGKILL
    assert (end["state"], end["oom"], end["oom_cause"], end["signal"]) == ("KILLED", False, None, "SIGKILL")


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
