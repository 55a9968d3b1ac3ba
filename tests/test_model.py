"""The value types read what the host writes."""

from __future__ import annotations

from orch_wrapper.model import Job


def test_an_oom_job_carries_its_cause_and_its_peak():
    record = {"name": "hog", "state": "OOM", "signal": "SIGKILL", "oom": True, "oom_cause": "job cap"}
    job = Job.from_record("h-1", {**record, "memory_peak": 200 << 20, "memory_current": None})
    assert (job.state, job.oom_cause, job.memory, job.signal) == ("OOM", "job cap", 200 << 20, "SIGKILL")
    assert Job.from_record("h-1", {"name": "ok", "state": "SUCCEEDED"}).oom_cause is None


def test_a_job_carries_the_note_on_its_log():
    note = "log incomplete: the disk holding ~/logs/fill (mounted at /home) was full (0 bytes free)"
    job = Job.from_record("h-1", {"name": "fill", "state": "FAILED", "exit_code": 7, "log_note": note})
    assert (job.state, job.exit_code, job.log_note) == ("FAILED", 7, note)
    assert Job.from_record("h-1", {"name": "ok", "state": "SUCCEEDED"}).log_note is None
