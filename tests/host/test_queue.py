"""Admission (issue 10): a job starts only when its reservation fits in orch.slice beside the admitted jobs';
else it waits QUEUED, first come first served. orch.slice is a recorded cgroup folder here (ORCH_SLICE_DIR), so the
host's limit is the test's; the jobs, supervisors and records are real."""

from __future__ import annotations

import os
import re
import signal

import pytest

GIB = 1 << 30
TIMED = 'echo "start $EPOCHREALTIME"; sleep {secs}; echo "end $EPOCHREALTIME"'


@pytest.fixture
def slice_of(jobhost, tmp_path):
    """orch.slice holding GIB_COUNT GiB; returns the environment the module and supervisors need."""

    def make(gib: int) -> dict[str, str]:
        directory = tmp_path / "orch.slice"
        directory.mkdir(exist_ok=True)
        (directory / "memory.max").write_text(f"{gib * GIB}\n")
        return {"ORCH_SLICE_DIR": str(directory)}

    return make


def states(jobhost, names):
    return {n: jobhost.job(n)["state"] for n in names}


def test_jobs_past_the_slice_queue_in_order_and_start_as_memory_frees(jobhost, slice_of):
    env = slice_of(3)
    names = [f"q{i}" for i in range(5)]
    started = [jobhost.start(n, "sleep 600", memory_max="1G", proc_env=env) for n in names]
    assert [j["state"] for j in started] == ["RUNNING"] * 3 + ["QUEUED"] * 2
    jobs = {j["name"]: j for j in jobhost.query()}
    assert [jobs[n]["queue_position"] for n in names] == [None, None, None, 1, 2]
    assert jobs["q3"]["pid"] is None and jobs["q3"]["memory_current"] is None  # nothing of it runs yet
    assert jobhost.module(name="q0", state="stopped", grace=1)["job"]["state"] == "KILLED"
    jobhost.wait_until(lambda: jobhost.job("q3")["state"] == "RUNNING", "q3 to start in q0's memory")
    assert jobhost.job("q4")["state"] == "QUEUED" and jobhost.job("q4")["queue_position"] == 1


def test_stopping_a_queued_job_takes_it_out_without_ever_starting_it(jobhost, slice_of):
    env = slice_of(1)
    jobhost.start("holder", "sleep 600", memory_max="1G", proc_env=env)
    assert jobhost.start("waiter", "echo it ran", memory_max="1G", proc_env=env)["state"] == "QUEUED"
    stopped = jobhost.module(name="waiter", state="stopped", grace=1)
    assert stopped["changed"] is True and stopped["job"]["state"] == "KILLED"
    job = jobhost.job("waiter")
    assert (job["pid"], job["exit_code"], job["queue_position"]) == (None, None, None)
    log = jobhost.log("waiter")
    assert "stopped while queued: it never started" in log and "it ran" not in log


def test_a_queued_jobs_dead_supervisor_reserves_nothing(jobhost, slice_of):
    env = slice_of(2)
    jobhost.start("a", "sleep 600", memory_max="1G", proc_env=env)
    jobhost.start("b", "sleep 600", memory_max="1G", proc_env=env)
    queued = jobhost.start("c", "sleep 600", memory_max="1G", proc_env=env)
    assert queued["state"] == "QUEUED"
    os.kill(queued["supervisor_pid"], signal.SIGKILL)
    jobhost.wait_until(lambda: jobhost.job("c")["state"] == "LOST", "c to read LOST")
    assert "while the job was queued (it never started)" in jobhost.job("c")["lost_reason"]
    assert jobhost.start("d", "sleep 600", memory_max="1G", proc_env=env)["state"] == "QUEUED"  # behind a and b
    jobhost.module(name="a", state="stopped", grace=1)
    jobhost.wait_until(lambda: jobhost.job("d")["state"] == "RUNNING", "d to start: c holds nothing")


def test_no_queue_refuses_a_job_that_would_wait_and_leaves_the_last_run_as_it_was(jobhost, slice_of):
    env = slice_of(2)
    jobhost.start("holder", "sleep 600", memory_max="1G", proc_env=env)
    jobhost.start("eager", "echo first run", memory_max="256M", proc_env=env)
    jobhost.wait_done("eager")
    res = jobhost.module(
        name="eager", state="started", command="echo second", memory_max="2G", queue=False, proc_env=env
    )
    assert res["failed"] is True
    said = "job eager reserves 2 GiB and orch.slice has 1 GiB unreserved now (2 GiB less 1 active job(s))"
    assert said in res["msg"] and "without --no-queue it waits its turn" in res["msg"], res["msg"]
    job = jobhost.job("eager")  # the finished run's record stands, and nothing of the refused one ran
    assert (job["state"], job["command"]) == ("SUCCEEDED", "echo first run")
    assert "second" not in jobhost.log("eager").replace("echo second", "")
    assert jobhost.start("fits", "sleep 600", memory_max="1G", queue=False, proc_env=env)["state"] == "RUNNING"


def test_the_pane_says_queued_only_for_a_job_that_waits(jobhost, slice_of):
    env = slice_of(1)
    jobhost.start("first", "sleep 600", memory_max="1G", proc_env=env)
    jobhost.start("second", "sleep 600", memory_max="1G", proc_env=env)

    def pane(name):
        return jobhost.tmux("capture-pane", "-p", "-t", f"=orch-{name}:").stdout

    jobhost.wait_until(lambda: "Ctrl-b d detaches" in pane("first"), "first's pane")
    panes = {n: pane(n) for n in ("first", "second")}
    assert "QUEUED, waiting for 1 GiB of orch.slice to free" in panes["second"], panes
    assert "QUEUED" not in panes["first"], panes


def test_a_job_without_mem_reserves_the_default(jobhost, slice_of):
    env = slice_of(2)
    first = jobhost.start("plain-1", "sleep 600", proc_env=env)
    assert first["reservation"] == GIB and first["state"] == "RUNNING"
    jobhost.start("plain-2", "sleep 600", proc_env=env)
    assert jobhost.start("plain-3", "sleep 600", proc_env=env)["state"] == "QUEUED"


def test_a_reservation_larger_than_the_slice_is_refused_with_the_figures(jobhost, slice_of):
    env = slice_of(3)
    res = jobhost.module(name="huge", state="started", command="true", memory_max="4G", proc_env=env)
    assert res["failed"] is True
    assert "reserves 4 GiB, more than this host gives all its jobs together: orch.slice holds 3 GiB" in res["msg"]
    assert not (jobhost.logs / "huge").exists() or not (jobhost.logs / "huge" / "job.json").exists()


def test_ten_starts_on_room_for_four_run_four_at_a_time_in_fifo_order(jobhost, slice_of):
    env = slice_of(4)
    jobhost.env.update(env)  # the module calls below run at once, in the background
    names = [f"f{i}" for i in range(10)]
    calls = [
        jobhost.module_async(name=n, state="started", command=TIMED.format(secs=4), memory_max="1G") for n in names
    ]
    for call in calls:
        assert call.wait(timeout=120) == 0, call.stderr.read()
    now = states(jobhost, names)
    assert sorted(now.values()) == ["QUEUED"] * 6 + ["RUNNING"] * 4, now  # concurrent starts never overcommit
    for n in names:
        assert jobhost.wait_done(n)["state"] == "SUCCEEDED"
    spans = {}
    for n in names:
        log = jobhost.log(n)
        spans[n] = (float(re.search(r"start ([0-9.]+)", log)[1]), float(re.search(r"end ([0-9.]+)", log)[1]))
    for s, _ in spans.values():  # at every start, how many ran
        assert sum(1 for a, b in spans.values() if a <= s < b) <= 4, spans
    queued = sorted((jobhost.job(n)["queued"] or "", n) for n in names if jobhost.job(n)["queued"])
    assert len(queued) == 6
    admitted = [jobhost.job(n)["admitted_at"] for _, n in queued]  # first come, first served: let go in order
    assert admitted == sorted(admitted) and all(admitted), queued
