"""Idle auto-stop on the sandbox fleet (issue 11): the orch_autostop role's timer on a real host stops its own
instance through EC2 when nothing uses it (the hypervisor then stops its container), whatever orch's own status
calls and Ansible runs do; a job, a queued job, an attached tmux client, an interactive SSH session or a keep-alive
keep it busy."""

from __future__ import annotations

import json
import subprocess
import time

from e2e.conftest import host_sh, orch

from fleet.conftest import container_running, instance_state, wait_container
from orch_wrapper import config
from orch_wrapper.cli import main
from orch_wrapper.transport import aws, inventory, ssh


def autostop(capfd, *args: str) -> dict[str, dict]:
    capfd.readouterr()
    assert main(["autostop", *args, "--json"]) == 0
    return {r["host"]: r for r in json.loads(capfd.readouterr().out)}


def session(host: str, command: str, tty: bool) -> subprocess.Popen:
    """An SSH session to HOST running COMMAND, with a terminal (-tt: as a person's login has one) or without."""
    settings = config.load()
    target = next(h for h in inventory.load(settings) if h.name == host)
    argv = ssh.argv(settings, target, shell=command, tty=tty)
    if tty:
        argv[1:1] = ["-t"]  # -tt: a terminal even though this test's stdin is none
    argv[1:1] = ["-S", "none"]  # a connection of its own
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def power_events(host: str) -> list[dict]:
    """HOST's power record in the fleet's power log group, oldest first."""
    settings = config.load()
    instance = next(h for h in inventory.load(settings) if h.name == host).instance_id
    logs = aws.client(settings, "logs")
    found = logs.get_log_events(logGroupName="/orch/sandbox/power", logStreamName=instance, startFromHead=True)
    return [json.loads(e["message"]) for e in found["events"]]


def busy(capfd, host: str) -> list[str]:
    return autostop(capfd, host)[host]["busy"]


def wait_busy(capfd, host: str, reason: str, present: bool = True) -> None:
    deadline = time.monotonic() + 30
    while (reason in busy(capfd, host)) is not present:
        assert time.monotonic() < deadline, (reason, busy(capfd, host))
        time.sleep(0.5)


def test_what_keeps_a_host_up_and_what_does_not(env, capfd, by_size):
    host = by_size[4]  # orch.slice holds 4G
    assert busy(capfd, host) == []
    plain = session(host, "sleep 30", tty=False)  # as orch's own calls and Ansible come: no terminal
    login = session(host, "sleep 30", tty=True)
    try:
        wait_busy(capfd, host, "1 interactive login")
        assert busy(capfd, host) == ["1 interactive login"]  # the plain session does not count
    finally:
        login.kill()
        plain.kill()
    wait_busy(capfd, host, "1 interactive login", present=False)
    assert main(["run", "hold", "--host", host, "--mem", "4G", "sleep 600"]) == 0
    assert main(["run", "waits", "--host", host, "--mem", "1G", "sleep 600"]) == 0  # QUEUED behind hold
    assert busy(capfd, host) == ["2 jobs"]
    viewer = session(host, "tmux -L orch attach-session -t =orch-hold", tty=True)
    try:
        wait_busy(capfd, host, "1 tmux client attached")
    finally:
        viewer.kill()
    assert main(["stop", "hold"]) == 0 and main(["stop", "waits"]) == 0
    wait_busy(capfd, host, "1 tmux client attached", present=False)
    assert main(["keepalive", host, "--for", "10m"]) == 0
    assert busy(capfd, host) == ["keep-alive"]
    assert main(["keepalive", host, "--for", "0"]) == 0
    assert busy(capfd, host) == []


def test_an_idle_host_stops_itself_whatever_status_calls_and_ansible_runs_do(env, capfd, by_size):
    home, host = env["ORCH_HOME"], by_size[2]
    assert main(["run", "done-already", "--host", host, "true"]) == 0
    (report,) = autostop(capfd, host, "--idle", "1").values()
    assert (report["mode"], report["idle_minutes"], report["busy"]) == ("jobs_and_sessions", 1, [])
    try:
        began, ansible_ran = time.monotonic(), False
        while instance_state(host) == "running":
            assert time.monotonic() - began < 240, autostop(capfd, host)
            assert orch("status").returncode in (0, 4)  # orch's own calls: no activity
            if not ansible_ran:
                assert orch("rm", "done-already").returncode == 0  # an Ansible run on the host: none either
                ansible_ran = True
            time.sleep(5)
        assert instance_state(host) == "stopped"  # stopped, never terminated
        wait_container(home, host, running=False)  # the hypervisor followed EC2
        assert orch("up", host).returncode == 0
        logged = [json.loads(line) for line in host_sh("cat ~/.orch/autostop.log", host=host).splitlines()]
        assert [(e["event"], e["reason"]) for e in logged if e["event"] == "stop"] == [("stop", "idle 1 min")]
        # the power record in CloudWatch, as the host wrote it: configure's start, the idle stop, the boot after up
        power = [(e["event"], e["reason"]) for e in power_events(host)]
        assert power[-3:] == [("start", "boot"), ("stop", "idle 1 min"), ("start", "boot")], power
        capfd.readouterr()
        assert main(["cost", "--json"]) == 0
        hosts = {h["host"]: h for h in json.loads(capfd.readouterr().out)["hosts"]}
        assert hosts[host]["hours_from"] == "power record" and hosts[host]["stopped_hours"] > 0, hosts[host]
        assert all(h["hours_from"] == "power record" for h in hosts.values()), hosts
    finally:
        if container_running(home, host):
            autostop(capfd, host, "--idle", "30")
