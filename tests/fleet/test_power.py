"""`orch up` and `orch down` on the sandbox fleet (issue 11): EC2 stop and start through the real playbook, the
sandbox's hypervisor keeping each host container in step with its moto instance, and the host reached through the
inventory again, its disk (records, logs) as it was."""

from __future__ import annotations

from e2e.conftest import orch, status_json, wait_state

from fleet.conftest import container_running, instance_state, wait_container
from orch_wrapper.cli import main


def test_down_refuses_while_a_job_runs_then_stops_the_host_and_up_brings_it_back(env, capfd, by_size):
    home, host = env["ORCH_HOME"], by_size[1]
    assert main(["run", "keeper", "--host", host, "sleep 600"]) == 0
    refused = orch("down", host)
    assert refused.returncode == 2 and f"not stopping: {host} runs keeper (RUNNING)" in refused.stderr, refused
    assert instance_state(host) == "running" and container_running(home, host)
    assert main(["stop", "keeper"]) == 0
    down = orch("down", host)
    assert down.returncode == 0 and f"{host}: stopped" in down.stdout, down
    assert instance_state(host) == "stopped"
    wait_container(home, host, running=False)  # the hypervisor stopped it: orch itself only called EC2
    status = orch("status", "--all")
    assert status.returncode == 0 and f"{host} is stopped: skipped" in status.stderr, status
    logs = orch("logs", "keeper")
    assert logs.returncode == 4, logs
    assert f"job keeper is on {host}, which is stopped" in logs.stderr and f"orch up {host}" in logs.stderr
    up = orch("up", host)
    assert up.returncode == 0 and f"{host}: running, ssh answers" in up.stdout, up
    assert instance_state(host) == "running" and container_running(home, host)
    assert status_json(capfd)["keeper"]["state"] == "KILLED"  # its record waited on the host's disk


def test_run_on_a_fleet_with_no_running_host_starts_the_host_it_picks(env, capfd, by_size):
    home = env["ORCH_HOME"]
    down = orch("down")
    assert down.returncode == 0, down
    for host in by_size.values():
        wait_container(home, host, running=False)
    run = orch("run", "wakes", "echo awake")
    assert run.returncode == 0, run
    assert "no host of fleet sandbox is running: starting sandbox-1 for the job" in run.stderr
    assert "sandbox-1: running, ssh answers" in run.stderr
    assert wait_state(capfd, "wakes", {"SUCCEEDED", "FAILED"})["state"] == "SUCCEEDED"
    assert [instance_state(h) for h in sorted(by_size.values())] == ["running", "stopped", "stopped"]
    assert orch("up").returncode == 0
    assert all(container_running(home, h) for h in by_size.values())
