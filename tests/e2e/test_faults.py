"""Faults on the sandbox: they restart, stop and finally remove its hosts, so they run after every other e2e test
(their marker, and the ordering hook in conftest.py), in the order written here."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from orch_wrapper import config, sandbox
from orch_wrapper.cli import main

from .conftest import FAULTS, container, orch, podman, status_json, wait_state

pytestmark = getattr(pytest.mark, FAULTS)


def known_hosts_lines(port: int) -> list[str]:
    """Lines of ORCH_HOME/known_hosts for the sandbox host on PORT (hashed or not), as ssh itself finds them."""
    known_hosts = config.load().known_hosts
    if not known_hosts.exists():
        return []
    found = subprocess.run(
        ["ssh-keygen", "-F", f"[127.0.0.1]:{port}", "-f", str(known_hosts)], capture_output=True, text=True
    )
    assert found.returncode in (0, 1), found.stderr  # 1: no such host in the file
    return [line for line in found.stdout.splitlines() if line and not line.startswith("#")]


def test_the_fault_tests_run_after_every_other_test_of_the_shared_sandbox(request):
    items = request.session.items
    faults = [i for i, item in enumerate(items) if item.get_closest_marker(FAULTS)]
    users = [i for i, item in enumerate(items) if "sandbox_env" in item.fixturenames and i not in faults]
    assert not users or not faults or max(users) < min(faults), [items[i].nodeid for i in faults + users]


def test_a_host_restart_turns_a_running_job_into_lost(env, capfd, home):
    assert main(["run", "doomed", "sleep 300"]) == 0  # reserves the default 1G of orch.slice's 4G
    assert wait_state(capfd, "doomed", {"RUNNING"})
    assert main(["run", "filler", "--mem", "3G", "sleep 300"]) == 0
    assert main(["run", "waiting", "--mem", "1G", "sleep 300"]) == 0
    assert status_json(capfd)["waiting"]["state"] == "QUEUED"
    assert podman("restart", "-t", "1", container(home)).returncode == 0
    deadline = time.monotonic() + 60
    while orch("status", "doomed").returncode == 4 and time.monotonic() < deadline:
        time.sleep(1)  # sshd is coming back
    job = status_json(capfd)["doomed"]
    follow = orch("logs", "doomed", "--follow")
    # LOST because the host's boot changed (not just "supervisor gone"), and `logs -f` of a LOST job exits 1
    # (orch_host.contract.EXIT_BY_STATE), not 3 (no such job) or 4 (unreachable), and not by a traceback.
    assert (job["state"], job["lost_reason"], follow.returncode) == ("LOST", "host rebooted", 1), (job, follow.stderr)
    assert "Traceback" not in follow.stderr
    waiting = status_json(capfd)["waiting"]
    said = "host rebooted while the job was queued (it never started)"
    assert (waiting["state"], waiting["lost_reason"], waiting["queue_position"]) == ("LOST", said, None), waiting
    capfd.readouterr()
    assert main(["hosts", "--json"]) == 0
    (host,) = json.loads(capfd.readouterr().out)
    assert host["memory_reserved"] == 0  # the lost runs, queued or running, hold nothing
    assert host["memory_allocatable"] == 4 << 30  # orch.slice is up again at boot, before any job: admission holds
    assert main(["run", "after-reboot", "--mem", "4G", "true"]) == 0  # all of orch.slice is free again


def test_doctor_and_status_name_a_host_that_is_down(env, home):
    assert main(["run", "before-down", "sleep 300"]) == 0
    assert podman("stop", "-t", "1", container(home)).returncode == 0
    try:
        doctor = orch("doctor")
        assert doctor.returncode != 0
        failing = [line for line in doctor.stdout.splitlines() if "sandbox-1" in line]
        assert failing and any("FAIL" in line.upper() or "✗" in line for line in failing), doctor.stdout
        status = orch("status")
        assert status.returncode == 4 and "sandbox-1" in status.stderr and "Traceback" not in status.stderr
    finally:
        podman("start", container(home))


def test_sandbox_down_leaves_nothing_behind(env, home):
    state = sandbox.state_dir(home)
    ports = sandbox._ports(state)
    moto_pid = int((state / "moto.pid").read_text()) if (state / "moto.pid").exists() else None
    assert ports and moto_pid
    # Every host was reached over SSH, so its key is in orch's known_hosts; down must take it out, or a later
    # sandbox's host on the same port (with a new key) would be refused.
    assert all(known_hosts_lines(port) for port in ports), ports
    assert main(["sandbox", "down"]) == 0
    assert {port: known_hosts_lines(port) for port in ports} == {port: [] for port in ports}
    assert not config.load().known_hosts.with_name("known_hosts.old").exists()  # nor in ssh-keygen -R's backup
    assert sandbox.containers(home) == []
    assert not state.exists()
    assert not Path(f"/proc/{moto_pid}").exists()
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    assert not config.load().agent_sock.exists()
    assert not any((home / "cm").glob("*")) if (home / "cm").exists() else True
    again = orch("sandbox", "down")
    assert again.returncode == 2 and again.stderr.startswith("orch: the sandbox is not up")
