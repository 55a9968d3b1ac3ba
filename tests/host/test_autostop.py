"""The idle auto-stop's checks (issue 11) on a real job host (tmux, supervisors, records) in a temp HOME: what keeps
the host busy, since when it is idle, and the stop itself through EC2 (a moto server) with the instance's identity
from a metadata folder, as the sandbox's hosts have it. The timer and systemd are the sandbox's (tests/fleet)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

MODULE_UTILS = Path(__file__).resolve().parents[2] / "module_utils"


@pytest.fixture
def agent(jobhost, tmp_path, moto_ssm):
    """The role's settings file and a metadata folder naming a moto instance; returns (env, ec2, instance id)."""
    ec2 = boto3.client("ec2", region_name="ap-northeast-1", endpoint_url=moto_ssm["AWS_ENDPOINT_URL"],
                       aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    metadata = tmp_path / "metadata" / "meta-data"
    (metadata / "placement").mkdir(parents=True)
    (metadata / "instance-id").write_text(instance + "\n")
    (metadata / "placement" / "region").write_text("ap-northeast-1\n")
    settings = tmp_path / "autostop.json"
    settings.write_text(json.dumps({"mode": "jobs_and_sessions", "idle_minutes": 1, "metadata": str(metadata.parent)}))
    env = {**moto_ssm, "ORCH_AUTOSTOP_SETTINGS": str(settings)}
    jobhost.env.update(env)
    return env, ec2, instance


# The role's launcher (/usr/local/libexec/orch/orch-autostop): python3 -I with site-packages (boto3), the package
# from its folder. The read paths' script (-S) has no boto3, and needs none.
LAUNCHER = (
    "import sys; sys.path.insert(0, sys.argv[1]); from orch_host.script import main; sys.exit(main(sys.argv[2:]))"
)


def call(jobhost, *argv: str) -> dict:
    if argv[:2] == ("autostop", "check"):
        done = subprocess.run(
            [sys.executable, "-I", "-c", LAUNCHER, str(MODULE_UTILS), *argv], env=jobhost.env, capture_output=True
        )
    else:
        done = jobhost.script(*argv)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def state_of(ec2, instance: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["State"]["Name"]


def age_idle(jobhost, seconds: float) -> None:
    """As if the host had been idle SECONDS already (the checks' own clock, not the test's patience)."""
    path = jobhost.home / ".orch" / "autostop-state.json"
    state = json.loads(path.read_text())
    state["idle_since"] = time.time() - seconds
    path.write_text(json.dumps(state))


def test_an_idle_host_stops_its_instance_after_its_minutes_and_says_why(jobhost, agent):
    _env, ec2, instance = agent
    assert call(jobhost, "autostop", "check") == {"decided": "idle"}
    report = call(jobhost, "autostop", "status")
    assert report["busy"] == [] and 50 < report["stops_in"] <= 60 and report["mode"] == "jobs_and_sessions"
    assert state_of(ec2, instance) == "running"
    age_idle(jobhost, 61)
    assert call(jobhost, "autostop", "check") == {"decided": "stopped"}
    assert state_of(ec2, instance) == "stopped"  # stopped, never terminated
    (line,) = (jobhost.home / ".orch" / "autostop.log").read_text().splitlines()
    assert json.loads(line) | {"at": None} == {
        "at": None,
        "event": "stop",
        "reason": "idle 1 min",
        "instance": instance,
    }
    assert call(jobhost, "autostop", "status")["stopping"] is not None


def test_a_running_or_queued_job_keeps_the_host_up_and_a_dead_one_does_not(jobhost, agent, tmp_path):
    slice_dir = tmp_path / "orch.slice"
    slice_dir.mkdir()
    (slice_dir / "memory.max").write_text(f"{1 << 30}\n")
    env = {"ORCH_SLICE_DIR": str(slice_dir)}
    jobhost.start("holder", "sleep 600", memory_max="1G", proc_env=env)
    assert jobhost.start("waiter", "sleep 600", memory_max="1G", proc_env=env)["state"] == "QUEUED"
    assert call(jobhost, "autostop", "check") == {"decided": "busy"}
    assert call(jobhost, "autostop", "status")["busy"] == ["2 jobs"]
    jobhost.module(name="holder", state="stopped", grace=1)
    jobhost.wait_until(lambda: jobhost.job("waiter")["state"] == "RUNNING", "waiter to start")
    assert call(jobhost, "autostop", "status")["busy"] == ["1 job"]
    jobhost.module(name="waiter", state="stopped", grace=1)
    assert call(jobhost, "autostop", "status")["busy"] == []


def test_a_keepalive_holds_the_host_until_it_expires(jobhost, agent):
    _env, ec2, instance = agent
    until = call(jobhost, "keepalive", "3600")["keepalive_until"]
    assert until > time.time() + 3500
    call(jobhost, "autostop", "check")
    age_idle(jobhost, 3600)
    assert call(jobhost, "autostop", "check") == {"decided": "busy"}
    assert call(jobhost, "autostop", "status")["busy"] == ["keep-alive"]
    assert state_of(ec2, instance) == "running"
    call(jobhost, "keepalive", "0")
    assert call(jobhost, "autostop", "status")["busy"] == []


def test_an_attached_tmux_client_keeps_the_host_up_and_mode_jobs_ignores_it(jobhost, agent):
    assert jobhost.tmux("new-session", "-d", "-s", "viewer", "sleep 600").returncode == 0  # on orch's server
    assert call(jobhost, "autostop", "status")["busy"] == []  # a session alone is no client
    # a real client, in a pane of another tmux server standing for the user's terminal
    attach = "env -u TMUX tmux -L orch attach-session -t =viewer"
    assert jobhost.tmux("new-session", "-d", "-s", "user", attach, socket="outer").returncode == 0
    try:
        jobhost.wait_until(lambda: "1 tmux client attached" in call(jobhost, "autostop", "status")["busy"], "client")
        assert call(jobhost, "autostop", "set", "--mode", "jobs")["busy"] == []
    finally:
        jobhost.tmux("kill-server", socket="outer")


def test_set_persists_the_setting_and_refuses_bad_values(jobhost, agent):
    report = call(jobhost, "autostop", "set", "--idle", "45", "--mode", "off")
    assert (report["mode"], report["idle_minutes"], report["stops_in"]) == ("off", 45, None)
    assert call(jobhost, "autostop", "check") == {"decided": "off"}
    assert call(jobhost, "autostop", "status")["mode"] == "off"  # kept in ~/.orch/autostop.json
    for bad in (["--mode", "sometimes"], ["--idle", "0"], ["--idle", "ten"]):
        done = jobhost.script("autostop", "set", *bad)
        assert done.returncode == 1 and done.stderr.decode().count("\n") == 1, done.stderr
        assert b"Traceback" not in done.stderr
    assert call(jobhost, "autostop", "status")["idle_minutes"] == 45  # nothing changed by the refusals


def test_no_job_starts_on_a_host_that_began_stopping_itself(jobhost, agent):
    call(jobhost, "autostop", "check")
    age_idle(jobhost, 61)
    assert call(jobhost, "autostop", "check") == {"decided": "stopped"}
    res = jobhost.module(name="late", state="started", command="echo ran")
    assert res["failed"] is True and "this host is stopping itself (idle auto-stop)" in res["msg"], res
