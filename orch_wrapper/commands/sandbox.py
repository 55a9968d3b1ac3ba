"""`orch sandbox up | down | status`: the local fleet (moto as AWS, podman containers as hosts)."""

from __future__ import annotations

import json
import sys

from orch_host import contract

from .. import ui
from ..config import Settings
from ..errors import ExitCode, OrchError


def host_memory(text: str | None, hosts: int) -> list[int | None]:
    """--memory SIZE[,SIZE...] as one limit in bytes per host (None: no limit); a usage error names the forms."""
    if text is None:
        return [None] * hosts
    sizes = []
    for part in text.split(","):
        try:
            sizes.append(contract.memory_size(part)[0])
        except ValueError:
            raise OrchError(
                f"invalid --memory {json.dumps(text)}", hint=contract.MEMORY_RULE, exit_code=ExitCode.USAGE
            ) from None
    if len(sizes) == 1:
        return sizes * hosts
    if len(sizes) != hosts:
        raise OrchError(
            f"--memory gives {len(sizes)} sizes for {hosts} host(s)",
            hint="give one size for all hosts, or one per host (--hosts N)",
            exit_code=ExitCode.USAGE,
        )
    return sizes


def sandbox(settings: Settings, *, action: str, hosts: int, memory: str | None = None) -> int:
    # Not at the top: the sandbox's modules (urllib, tarfile, podman helpers) are for this verb only.
    from .. import sandbox as box

    if action == "up":
        limits = host_memory(memory, hosts)

        def say(message: str) -> None:
            print(f"sandbox: {message}", file=sys.stderr, flush=True)

        env = box.up(settings, say, hosts=hosts, memory=limits)
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
    if not report["hypervisor"]:  # containers no longer follow EC2: orch up/down would change moto alone
        ui.warn("the sandbox's hypervisor is not running: `orch sandbox down`, then up again")
    return ExitCode.OK
