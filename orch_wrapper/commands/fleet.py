"""Fleet verbs: hosts, configure, sandbox."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from .. import ui
from ..config import Settings
from ..errors import ExitCode
from ..transport import inventory


def hosts(settings: Settings, as_json: bool = False, refresh: bool = False) -> int:
    found = inventory.require(settings, refresh=refresh)
    if as_json:
        rows = [{**asdict(h), "ssh_common_args": list(h.ssh_common_args), "address": h.address} for h in found]
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        ui.print_hosts(found)
    return ExitCode.OK


def configure(settings: Settings, host: str | None = None) -> int:
    from ..transport import agent, runner

    found = inventory.require(settings)
    if host is not None:
        inventory.find(found, host)
    agent.ensure(settings)
    with ui.TaskProgress() as progress:
        result = runner.run_playbook(settings, "configure", {}, limit=host, on_event=progress)
    ui.print_summary(result.stats)
    result.check()
    return ExitCode.OK


def sandbox(settings: Settings, action: str, hosts: int = 1) -> int:
    from .. import sandbox as box

    if action == "up":
        env = box.up(settings, lambda message: print(f"sandbox: {message}", file=sys.stderr, flush=True), hosts=hosts)
        endpoint = (env or {}).get("AWS_ENDPOINT_URL", "")
        print(f"sandbox is up: AWS at {endpoint}, fleet {(env or {}).get('ORCH_FLEET', settings.fleet)}")
        print('next: orch hosts; orch run NAME "CMD"; orch status')
        return ExitCode.OK
    if action == "down":
        box.down(settings)
        print("sandbox is down")
        return ExitCode.OK
    report = box.status(settings)
    if not report["up"]:
        print("sandbox is down (`orch sandbox up` starts it)")
        return ExitCode.NOT_FOUND
    print(f"sandbox is up: AWS at {report['endpoint']}")
    for name in report["containers"]:
        print(f"  host container {name}")
    return ExitCode.OK
