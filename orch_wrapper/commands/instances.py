"""Starting and stopping the fleet's instances through EC2 (playbooks/power.yml), never terminating them, and
waiting for a started host's SSH: shared by `orch up`/`orch down` and by `orch run` on a fleet with no running
host."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence

from ..config import Settings
from ..errors import ExitCode, OrchError
from ..model import Host
from ..transport import inventory, runner, ssh
from . import shared

SSH_TIMEOUT = 300.0  # seconds a started host has to answer SSH (an EC2 boot takes about a minute)
SSH_PROBE = 5  # seconds one probe waits for the connection (ConnectTimeout)


def targets(settings: Settings, names: Sequence[str]) -> list[Host]:
    """The named hosts of the fleet, or all of them; the inventory read afresh (states change behind the cache)."""
    fleet = inventory.require(settings, refresh=True)
    return [inventory.find(fleet, n) for n in dict.fromkeys(names)] if names else fleet


def power(settings: Settings, hosts: list[Host], state: str, say: Callable[[str], None]) -> None:
    for host in hosts:
        say(f"{host.name}: {'starting' if state == 'running' else 'stopping'} {host.instance_id}")
    runner.run_playbook(
        settings, "power", {"orch_power_state": state, "orch_instance_ids": [h.instance_id for h in hosts]}
    ).check()
    inventory.load(settings, refresh=True)  # both caches (orch's and the inventory plugin's) hold the old states


def wait_ssh(settings: Settings, names: list[str], say: Callable[[str], None], timeout: float = SSH_TIMEOUT) -> None:
    """Until every host in NAMES answers `ssh HOST true` through the inventory (re-read while it waits: a started
    EC2 instance gets a new public address); progress every 10 s."""
    shared.load_key(settings)
    began = time.monotonic()
    waiting, told, hosts, read = list(names), began, {}, 0.0
    while waiting:
        if time.monotonic() - read >= 10:  # ansible-inventory takes about a second: not on every probe
            hosts, read = {h.name: h for h in inventory.load(settings, refresh=True)}, time.monotonic()
        for name in list(waiting):
            host = hosts.get(name)
            if host is None or not host.usable:
                continue
            probe = ssh.argv(settings, host, shell="true")
            probe[1:1] = ["-o", f"ConnectTimeout={SSH_PROBE}", "-o", "BatchMode=yes"]
            try:
                done = subprocess.run(probe, capture_output=True, timeout=SSH_PROBE + 5, check=False).returncode == 0
            except subprocess.TimeoutExpired:
                done = False
            if done:
                waiting.remove(name)
                say(f"{name}: running, ssh answers ({time.monotonic() - began:.0f} s)")
        if not waiting:
            return
        if time.monotonic() - began > timeout:
            raise OrchError(
                f"{', '.join(waiting)} did not answer ssh within {timeout:.0f} s of starting",
                hint="run `orch doctor`",
                exit_code=ExitCode.UNREACHABLE,
            )
        if time.monotonic() - told >= 10:
            told = time.monotonic()
            say(f"  waiting for ssh on {', '.join(waiting)} ({told - began:.0f} s)")
        time.sleep(1)


def start_hosts(settings: Settings, hosts: list[Host], say: Callable[[str], None] = print) -> None:
    """Start HOSTS (those not running) and wait until each answers SSH."""
    stopped = [h for h in hosts if not h.usable]
    if stopped:
        power(settings, stopped, "running", say)
    wait_ssh(settings, [h.name for h in hosts], say)
