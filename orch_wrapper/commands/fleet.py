"""The fleet verbs: hosts, configure."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from .. import ui
from ..config import Settings
from ..errors import ExitCode
from ..model import HostIdle, HostMemory
from ..transport import agent, inventory, runner, ssh
from . import shared


def hosts(settings: Settings, *, as_json: bool, refresh: bool) -> int:
    """The fleet's hosts from the inventory, with the memory of each running one (its query, in parallel). An
    unreachable host is listed with its memory unknown, and a warning says why: the listing itself still holds."""
    found = inventory.require(settings, refresh=refresh)
    running = [h for h in found if h.usable]
    memory: dict[str, HostMemory | None] = {}
    idle: dict[str, HostIdle | None] = {}
    errors: dict[str, str] = {}
    if running:
        shared.load_key(settings)
        for reply in ssh.query(settings, running):
            if reply.data is None:
                errors[reply.host.name] = reply.error or "no reply"
            memory[reply.host.name] = HostMemory.from_reply(reply.data)
            idle[reply.host.name] = HostIdle.from_reply(reply.data)
    if as_json:
        rows = [
            {
                **asdict(h),
                "ssh_common_args": list(h.ssh_common_args),
                "address": h.address,
                **asdict(memory.get(h.name) or HostMemory()),
                "autostop": i.as_json() if (i := idle.get(h.name)) else None,
            }
            for h in found
        ]
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        ui.print_hosts(found, memory, idle)
    for name, mem in memory.items():
        if mem is not None and mem.memory_caps not in (None, "enforced"):
            ui.warn(f"{name} cannot hold --mem caps: {mem.memory_caps}")
    shared.report_unreachable(errors)
    return ExitCode.OK


def configure(settings: Settings, *, host: str | None) -> int:
    found = inventory.require(settings)
    if host is not None:
        inventory.find(found, host)
    agent.ensure(settings)
    with ui.TaskProgress() as progress:
        result = runner.run_playbook(settings, "configure", {}, limit=host, on_event=progress)
    ui.print_summary(result.stats)
    result.check()
    return ExitCode.OK
