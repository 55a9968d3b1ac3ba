"""When the fleet's instances run. `orch up` and `orch down` start and stop them (EC2), never terminate them: up
waits until each host answers SSH through the inventory again; down refuses while a job is RUNNING or QUEUED there,
naming the jobs, unless --force. `orch autostop` shows and changes each host's idle auto-stop (the host stops
itself: roles/orch_autostop), `orch keepalive` holds a host up for work orch did not start. Those two talk to the
hosts' own script over SSH, as the read paths do: no Ansible start-up for a setting."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from .. import ui
from ..config import Settings
from ..errors import ExitCode, OrchError
from ..model import Host, HostIdle
from ..transport import inventory, ssh
from . import instances, shared
from .spec import parse_duration


def up(settings: Settings, *, hosts: Sequence[str]) -> int:
    instances.start_hosts(settings, instances.targets(settings, hosts))
    return ExitCode.OK


def down(settings: Settings, *, hosts: Sequence[str], force: bool) -> int:
    targets = instances.targets(settings, hosts)
    running = [h for h in targets if h.usable]
    for host in targets:
        if not host.usable:
            print(f"{host.name}: already {host.state}")
    if not running:
        return ExitCode.OK
    if not force:
        jobs, errors, _memory, _idle = shared.query_fleet(settings, running)
        busy: dict[str, list[str]] = {}
        for job in jobs:
            if job.has_processes or job.state in ("RUNNING", "QUEUED"):
                busy.setdefault(job.host, []).append(f"{job.name} ({job.state})")
        if busy:
            said = "; ".join(f"{host} runs {', '.join(names)}" for host, names in busy.items())
            raise OrchError(
                f"not stopping: {said}",
                hint="stop them first (`orch stop NAME`), or pass --force to stop the host with them (they end LOST)",
                exit_code=ExitCode.USAGE,
            )
        if errors:
            host = next(iter(errors))
            raise OrchError(
                f"not stopping: cannot see {host}'s jobs: {errors[host]}",
                hint="run `orch doctor`, or pass --force to stop it unseen",
                exit_code=ExitCode.UNREACHABLE,
            )
    ssh.close_masters(settings, running)
    instances.power(settings, running, "stopped", print)
    for host in running:
        print(f"{host.name}: stopped (`orch up {host.name}` starts it; its disk, logs and records stay)")
    return ExitCode.OK


def _running(settings: Settings, names: Sequence[str]) -> list[Host]:
    """The named hosts (all by default) that run; the others are said to be stopped and skipped."""
    fleet = inventory.require(settings)
    chosen = [inventory.find(fleet, n) for n in dict.fromkeys(names)] if names else fleet
    for host in chosen:
        if not host.usable:
            ui.warn(f"{host.name} is {host.state}: skipped (`orch up {host.name}` starts it)")
    running = [h for h in chosen if h.usable]
    if not running:
        raise OrchError("no running host to ask", hint="`orch up` starts the fleet", exit_code=ExitCode.UNREACHABLE)
    return running


def _ask(settings: Settings, hosts: list[Host], args: list[str]) -> dict[str, dict]:
    """The host script's answers by host; unreachable hosts and refusals reported, and the exit code raised."""
    agent_error = shared.load_key(settings)
    replies = ssh.each(settings, hosts, args)
    failed = {r.host.name: r.error for r in replies if r.error is not None}
    if agent_error is not None and len(failed) == len(hosts):
        raise agent_error
    for name, error in failed.items():
        ui.warn(f"{name}: {error}")
    if failed and len(failed) == len(hosts):
        raise OrchError(
            f"no host answered: {next(iter(failed.values()))}", hint="run `orch doctor`", exit_code=ExitCode.UNREACHABLE
        )
    return {r.host.name: r.data for r in replies if r.data is not None}


def autostop(
    settings: Settings, *, hosts: Sequence[str], idle: int | None, mode: str | None, off: bool, as_json: bool
) -> int:
    if off:
        mode = "off"
    args = ["autostop", "set"] if idle is not None or mode is not None else ["autostop", "status"]
    args += [*(["--mode", mode] if mode else []), *(["--idle", str(idle)] if idle is not None else [])]
    answers = _ask(settings, _running(settings, hosts), args)
    if as_json:
        json.dump([{"host": name, **report} for name, report in answers.items()], sys.stdout, indent=2)
        print()
        return ExitCode.OK
    rows = []
    for name, report in answers.items():
        idle = HostIdle.from_reply({"autostop": report}) or HostIdle()
        rows.append([name, f"{idle.mode}", f"{idle.idle_minutes}m", ui.human_duration(idle.uptime), ui.idle_text(idle)])
    sys.stdout.write(ui.columns(["HOST", "MODE", "IDLE", "UPTIME", "AUTOSTOP"], rows))
    return ExitCode.OK


def keepalive(settings: Settings, *, hosts: Sequence[str], duration: str) -> int:
    seconds = parse_duration(duration, "--for")
    answers = _ask(settings, _running(settings, hosts), ["keepalive", str(seconds)])
    for name in answers:
        print(f"{name}: kept up for {ui.human_duration(seconds)}" if seconds else f"{name}: keep-alive ended")
    return ExitCode.OK
