"""The spot interruption watch (issue 11) on a real job host (tmux, supervisors, records) in a temp HOME, the notice
written into a metadata folder as the sandbox's hosts have it: running and queued jobs end INTERRUPTED, each with
its own grace, nothing new starts while the notice holds, and the power record is told why the host goes. The
systemd service that runs the watch is the sandbox's (tests/fleet)."""

from __future__ import annotations

import json
import time

import pytest

NOTICE = {"action": "stop", "time": "2026-12-02T13:00:00Z"}


@pytest.fixture
def metadata(jobhost, tmp_path):
    """The role's settings naming a metadata folder; returns the folder's meta-data/ (no notice yet)."""
    folder = tmp_path / "metadata" / "meta-data"
    (folder / "spot").mkdir(parents=True)
    settings = tmp_path / "autostop.json"
    settings.write_text(json.dumps({"metadata": str(folder.parent)}))
    jobhost.env["ORCH_AUTOSTOP_SETTINGS"] = str(settings)
    return folder


def spot_check(jobhost) -> dict:
    done = jobhost.script("spot", "check")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def give_notice(metadata, notice=None) -> None:
    (metadata / "spot" / "instance-action").write_text(json.dumps(notice or NOTICE))


def test_without_a_notice_the_watch_touches_nothing(jobhost, metadata):
    jobhost.start("steady", "sleep 600")
    assert spot_check(jobhost) == {"notice": None, "interrupted": {}}
    assert jobhost.job("steady")["state"] == "RUNNING"
    assert not (jobhost.home / ".orch" / "spot-state.json").exists()


def test_a_notice_ends_running_jobs_interrupted_with_their_grace_and_keeps_their_code(jobhost, metadata):
    # one that cleans up on SIGTERM and exits 7; one that ignores SIGTERM and must be killed after its 1 s grace
    jobhost.start("tidy", "trap 'echo cleaned-up; exit 7' TERM; sleep 600 & wait", grace=30)
    jobhost.start("stubborn", "trap '' TERM; sleep 600", grace=1)
    jobhost.wait_log("tidy", "started")
    give_notice(metadata)
    began = time.monotonic()
    reply = spot_check(jobhost)
    took = time.monotonic() - began
    assert reply == {"notice": NOTICE, "interrupted": {"tidy": "INTERRUPTED", "stubborn": "INTERRUPTED"}}
    assert took < 20  # ended together: the stubborn one's second, not the sum of both graces
    tidy, stubborn = jobhost.job("tidy"), jobhost.job("stubborn")
    assert (tidy["state"], tidy["exit_code"], tidy["signal"]) == ("INTERRUPTED", 7, None)
    assert "cleaned-up" in jobhost.log("tidy")
    assert (stubborn["state"], stubborn["signal"]) == ("INTERRUPTED", "SIGKILL")
    assert tidy["grace"] == 30 and stubborn["grace"] == 1  # the record keeps each job's grace
    assert "(INTERRUPTED)" in jobhost.log("stubborn")
    assert (jobhost.home / ".orch" / "stop-reason").read_text().strip() == "spot interruption"
    (line,) = (jobhost.home / ".orch" / "autostop.log").read_text().splitlines()
    assert json.loads(line)["event"] == "spot interruption"
    follow = jobhost.script("follow", "tidy")
    assert follow.returncode == 143  # INTERRUPTED, as a shell reports a SIGTERM


def test_a_queued_job_ends_interrupted_without_starting(jobhost, metadata, tmp_path):
    slice_dir = tmp_path / "orch.slice"
    slice_dir.mkdir()
    (slice_dir / "memory.max").write_text(f"{1 << 30}\n")
    env = {"ORCH_SLICE_DIR": str(slice_dir)}
    jobhost.start("holder", "sleep 600", memory_max="1G", proc_env=env)
    assert jobhost.start("waiter", "touch started; sleep 600", memory_max="1G", proc_env=env)["state"] == "QUEUED"
    give_notice(metadata)
    assert spot_check(jobhost)["interrupted"] == {"holder": "INTERRUPTED", "waiter": "INTERRUPTED"}
    waiter = jobhost.job("waiter")
    assert waiter["state"] == "INTERRUPTED" and waiter["admitted"] is False
    assert "interrupted (the spot instance is being reclaimed) while queued: it never started" in jobhost.log("waiter")
    assert not (jobhost.home / "work" / "started").exists()


def test_no_job_starts_while_the_notice_holds_and_a_withdrawn_notice_frees_the_host(jobhost, metadata):
    give_notice(metadata)
    assert spot_check(jobhost)["interrupted"] == {}
    res = jobhost.module(name="late", state="started", command="echo ran")
    assert res["failed"] is True and "this spot host is being reclaimed by EC2" in res["msg"], res
    assert res["msg"].count("\n") == 0 and "2026-12-02T13:00:00Z" in res["msg"]
    assert spot_check(jobhost) == {"notice": NOTICE, "interrupted": {}}  # handled once per boot
    (metadata / "spot" / "instance-action").unlink()
    assert spot_check(jobhost)["notice"] is None
    assert jobhost.start("later", "echo ran")["state"] in ("RUNNING", "SUCCEEDED")


def test_a_stop_by_orch_still_ends_killed(jobhost, metadata):
    """The two signals stay apart: orch stop's job is KILLED, not INTERRUPTED."""
    jobhost.start("plain", "sleep 600")
    jobhost.module(name="plain", state="stopped", grace=1)
    assert jobhost.job("plain")["state"] == "KILLED"
