"""Memory across a fleet of three sizes (issue 10), on real hosts with real cgroups: placement by unreserved memory,
queueing where a job starts soonest, --no-queue, three hogs at their caps beside a well-behaved job on the smallest
host while ssh keeps answering, jobs without --mem that together pass orch.slice, and ten concurrent starts on room
for four."""

from __future__ import annotations

import concurrent.futures
import json
import re
import time

import pytest
from e2e.conftest import host_sh, orch, status_json, wait_state

from orch_wrapper.cli import main
from orch_wrapper.errors import ExitCode

ENDED = {"SUCCEEDED", "FAILED", "OOM", "KILLED", "LOST"}
TIMED = 'echo "start $EPOCHREALTIME"; sleep {secs}; echo "end $EPOCHREALTIME"'


def gated(gate: str, then: str) -> str:
    """A job that waits for ~/GATE on its host, then runs THEN: jobs started one by one act at once."""
    return f"until [ -e ~/{gate} ]; do sleep 0.05; done; {then}"


def grab(mb: int, hold: float = 0) -> str:
    """Take MB of memory (bytearray touches every page), then keep it HOLD seconds."""
    return f"python3 -c \"import time; b = bytearray({mb} * 2**20); print('held', flush=True); time.sleep({hold})\""


@pytest.fixture(autouse=True)
def stop_leftovers(env):
    """Each test starts on a quiet fleet: whatever a failed test left active is stopped after it."""
    yield
    listed = orch("status", "--all", "--json")
    out = json.loads(listed.stdout or "[]")
    for job in out["jobs"] if isinstance(out, dict) else out:
        if job["state"] in ("RUNNING", "QUEUED"):
            orch("stop", job["name"])


def run(capfd, name: str, *args: str) -> tuple[int, str, str]:
    capfd.readouterr()
    code = main(["run", name, *args])
    cap = capfd.readouterr()
    return code, cap.out, cap.err


def test_placement_follows_unreserved_memory_and_queues_where_a_job_starts_soonest(env, capfd, by_size):
    medium, large = by_size[2], by_size[4]  # orch.slice 2G and 4G; the smallest holds 1G
    for name, host in (("p1", large), ("p2", large), ("p3", medium)):  # 4G free, then 2.5G, then medium's 2G
        code, out, err = run(capfd, name, "--mem", "1536M", "sleep 600")
        assert code == 0 and f"{name}: RUNNING on {host} " in out, (out, err)
    # 3G fits nowhere now; only the largest host's orch.slice can ever hold it, with no queue yet
    code, out, err = run(capfd, "p4", "--mem", "3G", "sleep 600")
    assert code == 0 and f"no host has 3.0G unreserved now: queued on {large}, first in line" in err, (out, err)
    assert f"p4: QUEUED (#1 in its queue: starts when 3.0G of orch.slice frees) on {large}" in out
    code, out, err = run(capfd, "p5", "--mem", "3G", "--no-queue", "sleep 600")
    assert code == ExitCode.USAGE and "(--no-queue refuses rather than queues)" in err, (out, err)
    code, out, err = run(capfd, "p6", "--mem", "5G", "sleep 600")
    assert code == ExitCode.USAGE, (out, err)
    assert f"--mem 5.0G is more than any host can give a job: the largest, {large}, has 4.0G for jobs" in err
    code, out, err = run(capfd, "p7", "--mem", "3G", "echo p7 ran")
    assert code == 0 and f"queued on {large}, where 1 job(s) wait before it" in err, (out, err)
    jobs = status_json(capfd)
    assert "p5" not in jobs and "p6" not in jobs  # refused: nothing of them reached a host
    assert [(jobs[n]["state"], jobs[n]["queue_position"]) for n in ("p4", "p7")] == [("QUEUED", 1), ("QUEUED", 2)]
    assert main(["stop", "p7"]) == 0  # out of the queue, never started
    assert status_json(capfd)["p7"]["state"] == "KILLED"
    assert "p7 ran" not in host_sh("cat ~/logs/p7/run.log", host=large)
    assert main(["stop", "p1"]) == 0 and main(["stop", "p2"]) == 0
    started = wait_state(capfd, "p4", {"RUNNING"} | ENDED, timeout=30)
    assert (started["state"], started["host"]) == ("RUNNING", large), started
    assert status_json(capfd)["p3"]["state"] == "RUNNING"


def test_three_hogs_and_a_good_job_on_the_smallest_host_while_ssh_answers(env, capfd, by_size):
    small = by_size[1]  # a 3G host: orch.slice holds 1G
    names = ["hog-1", "hog-2", "hog-3"]
    for name in names:
        assert run(capfd, name, "--host", small, "--mem", "200M", gated("go-hogs", grab(800)))[0] == 0
    assert run(capfd, "good", "--host", small, "--mem", "200M", gated("go-hogs", grab(100, hold=5)))[0] == 0
    host_sh("touch ~/go-hogs", host=small)
    slowest, answered = 0.0, 0
    deadline = time.monotonic() + 120
    while True:
        began = time.monotonic()
        host_sh("true", host=small, multiplexed=False)  # a fresh connection each time, never a kept one
        slowest, answered = max(slowest, time.monotonic() - began), answered + 1
        jobs = status_json(capfd)
        if all(jobs[n]["state"] in ENDED for n in [*names, "good"]):
            break
        assert time.monotonic() < deadline, jobs
    for name in names:
        assert (jobs[name]["state"], jobs[name]["oom_cause"]) == ("OOM", "job cap"), jobs[name]
    assert jobs["good"]["state"] == "SUCCEEDED", jobs["good"]
    assert answered >= 2 and slowest < 10, (answered, slowest)


def test_jobs_without_mem_that_together_pass_the_slice_end_oom_at_the_host_limit(env, capfd, by_size):
    medium = by_size[2]  # orch.slice holds 2G: two jobs of the default 1G reservation are admitted
    for name in ("big-1", "big-2"):
        code, out, err = run(capfd, name, "--host", medium, gated("go-big", grab(1400, hold=20)))
        assert code == 0 and f"{name}: RUNNING" in out, (out, err)
    host_sh("touch ~/go-big", host=medium)
    deadline = time.monotonic() + 60
    while not any(jobs[n]["state"] == "OOM" for n in ("big-1", "big-2") if n in (jobs := status_json(capfd))):
        assert time.monotonic() < deadline, jobs
        time.sleep(0.5)
    victims = [jobs[n] for n in ("big-1", "big-2") if jobs[n]["state"] == "OOM"]
    assert all(j["oom_cause"] == "host limit" for j in victims), victims
    assert host_sh("echo reachable", host=medium, multiplexed=False).strip() == "reachable"
    for name in ("big-1", "big-2"):
        orch("stop", name)
        assert wait_state(capfd, name, ENDED)["state"] != "RUNNING"


def test_ten_concurrent_runs_on_room_for_four_run_four_at_a_time_first_come_first_served(env, capfd, by_size):
    large = by_size[4]
    names = [f"ten-{i}" for i in range(10)]
    command = gated("go-ten", TIMED.format(secs=3))  # the first four hold their memory until all ten have started

    def start(name: str):
        return orch("run", name, "--host", large, "--mem", "1G", command)

    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        runs = list(pool.map(start, names))
    assert [r.returncode for r in runs] == [0] * 10, [r.stderr for r in runs]
    jobs = status_json(capfd)
    assert sorted(jobs[n]["state"] for n in names) == ["QUEUED"] * 6 + ["RUNNING"] * 4  # never overcommitted
    assert sorted(jobs[n]["queue_position"] for n in names if jobs[n]["state"] == "QUEUED") == [1, 2, 3, 4, 5, 6]
    host_sh("touch ~/go-ten", host=large)
    for name in names:
        assert wait_state(capfd, name, ENDED, timeout=120)["state"] == "SUCCEEDED"
    spans = {}
    for name in names:
        log = host_sh(f"cat ~/logs/{name}/run.log", host=large)
        spans[name] = (float(re.search(r"start ([0-9.]+)", log)[1]), float(re.search(r"end ([0-9.]+)", log)[1]))
    for begin, _ in spans.values():
        assert sum(1 for a, b in spans.values() if a <= begin < b) <= 4, spans  # never more than four at once
    jobs = status_json(capfd)
    queued = sorted((jobs[n]["queued"], n) for n in names if jobs[n]["queued"])
    assert len(queued) == 6, queued
    # First come, first served: the queue let them go in the order they joined it. (Their shells' first lines may
    # swap by a millisecond: each job is put in its scope, through sudo and systemd, after its turn came.)
    admitted = [jobs[n]["admitted_at"] for _, n in queued]
    assert admitted == sorted(admitted) and all(admitted), queued
