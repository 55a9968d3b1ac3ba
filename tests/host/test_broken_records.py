"""A broken job.json never hides the other jobs, never lets its name start over a run that may live, and a
supervisor writes only its own run's record."""

from __future__ import annotations

import json
import os
import signal

import pytest

BROKEN = {
    "not-utf-8": (b'{"name": "\xff\xfe"}', "job.json is not UTF-8"),
    "not-an-object": (b"[1, 2]", "job.json holds a JSON list, not a record"),
    "started-a-number": (b'{"name": "b", "state": "SUCCEEDED", "started": 5}', "job.json's started is not a string"),
    "pid-a-string": (b'{"name": "b", "state": "RUNNING", "pid": "12"}', "job.json's pid is not a whole number"),
    "empty": (b"", "job.json is empty"),
    "truncated": (b'{"name": "b", "state": "RUNN', "job.json is not valid JSON (truncated?)"),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_a_broken_record_is_an_unknown_job_beside_the_healthy_ones(jobhost, case):
    content, why = BROKEN[case]
    jobhost.start("healthy", "sleep 60")
    (jobhost.home / "logs/broken").mkdir(parents=True)
    (jobhost.home / "logs/broken/job.json").write_bytes(content)

    proc = jobhost.script("query")
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr
    jobs = {job["name"]: job for job in json.loads(proc.stdout)["jobs"]}
    assert jobs["healthy"]["state"] == "RUNNING"
    assert jobs["broken"]["state"] == "UNKNOWN"
    assert jobs["broken"]["error"] == f"{why} (~/logs/broken/job.json)"
    assert jobhost.job("broken")["state"] == "UNKNOWN"

    # Its name does not start again over what may be its old run, with a message that says what to do...
    refused = jobhost.module(name="broken", state="started", command="true")
    assert refused["failed"] and refused["msg"].startswith("job broken's record cannot be read: " + why)
    assert "orch rm broken" in refused["msg"] and "\n" not in refused["msg"]
    assert "orch-broken" not in jobhost.sessions()
    # ...and forgetting it makes room: the name starts again, the healthy job is untouched.
    assert jobhost.module(name="broken", state="absent")["changed"] is True
    assert jobhost.start("broken", "true")["state"] in ("RUNNING", "SUCCEEDED")
    assert jobhost.job("healthy")["state"] == "RUNNING"


def test_a_supervisor_never_writes_over_a_newer_runs_record(jobhost):
    old = jobhost.start("reused", "sleep 60")
    path = jobhost.home / "logs/reused/job.json"
    newer = {**jobhost.record("reused"), "run_id": "f" * 32, "state": "SUCCEEDED", "exit_code": 0}
    path.write_text(json.dumps(newer))  # as if a newer run of the name had recorded itself meanwhile
    os.killpg(old["pgid"], signal.SIGKILL)
    jobhost.wait_until(lambda: not jobhost.alive(old["supervisor_pid"]), "the old supervisor to end")
    jobhost.wait_log("reused", "[orch] job exited with signal SIGKILL")
    assert json.loads(path.read_text()) == newer  # the old run's end is in its log, not over the newer record
