"""The host's `wait NAME... [--timeout S]` (issue 12): it looks at the records on the host and writes one JSON line
per job as it ends, so `orch wait` holds one ssh channel open instead of polling over SSH."""

from __future__ import annotations

import json
import subprocess
import time


def lines(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


def test_wait_writes_each_job_as_it_ends_then_done(jobhost):
    jobhost.start("quick", "exit 3")
    jobhost.start("slow", "sleep 2; echo ok")
    jobhost.wait_done("quick")
    proc = jobhost.script("wait", "slow", "quick")
    assert proc.returncode == 0, proc.stderr
    out = lines(proc)
    assert [(o["job"]["name"], o["job"]["state"]) for o in out[:2]] == [("quick", "FAILED"), ("slow", "SUCCEEDED")]
    assert out[0]["job"]["exit_code"] == 3 and out[2] == {"done": True}
    assert "memory_peak" in out[1]["job"]  # the query's record: what `orch status NAME` shows


def test_wait_streams_a_line_when_the_job_ends_not_when_wait_ends(jobhost):
    jobhost.start("first", "sleep 1")
    jobhost.start("later", "sleep 30")
    proc = jobhost.script_async("wait", "first", "later")
    line = proc.stdout.readline()  # arrives while `later` still runs
    assert json.loads(line)["job"]["name"] == "first"
    assert proc.poll() is None and jobhost.job("later")["state"] == "RUNNING"
    jobhost.module(name="later", state="stopped")
    rest = [json.loads(x) for x in proc.stdout.read().decode().splitlines()]
    assert proc.wait(timeout=60) == 0
    assert rest[0]["job"]["state"] == "KILLED" and rest[-1] == {"done": True}


def test_wait_with_a_timeout_names_the_jobs_still_active(jobhost):
    jobhost.start("long", "sleep 60")
    started = time.monotonic()
    proc = jobhost.script("wait", "long", "--timeout", "1")
    assert proc.returncode == 0 and lines(proc) == [{"timeout": ["long"]}]
    assert time.monotonic() - started < 30  # a safety bound, not a timed assertion
    assert jobhost.job("long")["state"] == "RUNNING"  # waiting never touches the job


def test_wait_on_an_unknown_job_is_one_line_with_the_unknown_job_code(jobhost):
    jobhost.start("known", "true")
    proc = jobhost.script("wait", "known", "ghost")
    assert proc.returncode == 2 and proc.stdout == b""
    err = proc.stderr.decode()
    assert err.startswith("orch: no job named ghost") and err.count("\n") == 1
