"""Every process a job starts ends with it (issue 9, items 2 and 3): `stop` and a closed session escalate to SIGKILL
for all of them, the leader's children and setsid daemons too; what a finished command leaves running is ended; a
LOST job whose supervisor died says which of its processes live on, and `stop` ends them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

# A leader that dies of SIGTERM, and a child that ignores it (the case), which writes its pid for the test.
STUBBORN = "bash -c \"trap '' TERM; echo \\$\\$ > $HOME/child.pid; exec sleep 600\" & wait"
# A daemon in a session of its own, out of the job's session and process group.
DAEMON = "setsid bash -c 'echo $$ > $HOME/daemon.pid; exec sleep 600' & sleep 600"


def child_pid(jobhost, name: str = "child") -> int:
    path = Path(jobhost.home) / f"{name}.pid"
    return int(jobhost.wait_until(lambda: path.exists() and path.read_text().strip(), f"{name}.pid"))


def test_stop_kills_a_child_that_ignores_sigterm_after_the_leader_died(jobhost):
    jobhost.start("stubborn", STUBBORN, grace=1)
    child = child_pid(jobhost)
    result = jobhost.module(name="stubborn", state="stopped", grace=1)
    assert result["job"]["state"] == "KILLED", result
    assert not jobhost.alive(child)  # dead when stop returns, not some time later


def test_stop_kills_a_setsid_daemon_the_job_started(jobhost):
    jobhost.start("daemon", DAEMON, grace=1)
    daemon = child_pid(jobhost, "daemon")
    assert os.getsid(daemon) != jobhost.job("daemon")["pgid"]  # it really left the job's session
    assert jobhost.module(name="daemon", state="stopped", grace=1)["job"]["state"] == "KILLED"
    assert not jobhost.alive(daemon)


def test_a_closed_session_kills_every_process_of_the_job(jobhost):
    jobhost.start("hungup", STUBBORN, grace=1)
    child = child_pid(jobhost)
    assert jobhost.tmux("kill-session", "-t", "=orch-hungup").returncode == 0
    jobhost.wait_until(lambda: jobhost.record("hungup")["state"] != "RUNNING", "the hangup to be recorded")
    assert jobhost.record("hungup")["state"] == "LOST"
    assert not jobhost.alive(child)  # the supervisor records the end only once all of them are gone


@pytest.mark.parametrize("tty", [True, False], ids=["tty", "batch"])
def test_what_a_finished_command_left_running_is_ended(jobhost, tty):
    # on a terminal the leader's exit hangs it up (SIGHUP to its processes, as closing a terminal does): this child
    # ignores that, so it is left running either way
    child = "bash -c \"trap '' HUP; echo \\$\\$ > $HOME/child.pid; exec sleep 600\" & sleep 0.5; exit 3"
    jobhost.start("leaver", child, grace=1, tty=tty)
    child = child_pid(jobhost)
    rec = jobhost.wait_done("leaver")
    assert (rec["state"], rec["exit_code"]) == ("FAILED", 3)  # the command's own end, recorded first
    jobhost.wait_until(lambda: not jobhost.alive(child), "the leftover child to be ended")
    end = jobhost.log("leaver").rstrip().splitlines()[-1]
    assert end == f"[orch] job exited with code 3 (FAILED); ending 1 process(es) it left running: {child} " + (
        "(SIGTERM, SIGKILL after 1s)"
    )


def test_a_killed_supervisor_hangs_up_the_terminal_and_only_a_daemon_lives_on(jobhost):
    job = jobhost.start("hangup", DAEMON, grace=1)
    daemon = child_pid(jobhost, "daemon")
    os.kill(job["supervisor_pid"], signal.SIGKILL)
    jobhost.wait_until(lambda: not jobhost.alive(job["pid"]), "the job's own session to die of the hangup")
    rec = jobhost.job("hangup")
    assert rec["state"] == "LOST" and rec["live_processes"] == 1 and jobhost.alive(daemon)
    assert jobhost.module(name="hangup", state="stopped", grace=1)["job"]["state"] == "LOST"
    assert not jobhost.alive(daemon)


def test_a_lost_job_with_live_processes_says_so_and_stop_ends_them(jobhost):
    job = jobhost.start("orphan", DAEMON, grace=1, tty=False)  # batch: nothing hangs up when the supervisor dies
    daemon = child_pid(jobhost, "daemon")
    os.kill(job["supervisor_pid"], signal.SIGKILL)
    jobhost.wait_until(lambda: not jobhost.alive(job["supervisor_pid"]), "the supervisor to die")
    rec = jobhost.job("orphan")
    assert rec["state"] == "LOST" and rec["live_processes"] == 3  # the leader bash, its sleep, the daemon
    assert rec["lost_reason"] == "supervisor gone; 3 process(es) of the job still run (orch stop orphan ends them)"

    # neither forgotten nor started over while they run: a new run would share their log
    again = jobhost.module(name="orphan", state="started", command="true")
    assert again["failed"] and "3 of its processes still run" in again["msg"] and "orch stop orphan" in again["msg"]
    forget = jobhost.module(name="orphan", state="absent")
    assert forget["failed"] and "orch stop orphan" in forget["msg"]
    assert jobhost.record("orphan")["run_id"] == job["run_id"]

    stopped = jobhost.module(name="orphan", state="stopped", grace=1)
    assert stopped["changed"] and stopped["job"]["state"] == "LOST", stopped
    ended = "supervisor gone; orch stop ended the 3 process(es) it left (exit code unknown)"
    assert stopped["job"]["lost_reason"] == ended
    assert not jobhost.alive(daemon) and not jobhost.alive(job["pid"])
    assert jobhost.job("orphan")["ended"] and jobhost.job("orphan")["live_processes"] is None
    assert jobhost.module(name="orphan", state="stopped")["changed"] is False
    assert jobhost.start("orphan", "true")["run_id"] != job["run_id"]


def test_a_command_that_ends_at_once_is_reported_with_its_end(jobhost):
    for attempt in range(5):
        job = jobhost.start(f"quick{attempt}", "exit 4")
        assert (job["state"], job["exit_code"]) == ("FAILED", 4), job
    job = jobhost.start("typo", "pyhton3 --version")  # the everyday case: orch run says at once that it failed
    assert (job["state"], job["exit_code"]) == ("FAILED", 127), job
    assert jobhost.start("lives", "sleep 60")["state"] == "RUNNING"  # past the settling time a live job is RUNNING
