"""The fleet verbs: hosts, configure."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from .. import ui
from ..config import Settings
from ..errors import ExitCode
from ..transport import agent, inventory, runner


def hosts(settings: Settings, *, as_json: bool, refresh: bool) -> int:
    found = inventory.require(settings, refresh=refresh)
    if as_json:
        rows = [{**asdict(h), "ssh_common_args": list(h.ssh_common_args), "address": h.address} for h in found]
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        ui.print_hosts(found)
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
