"""`orch sandbox up | down | status`: the local fleet (moto as AWS, podman containers as hosts)."""

from __future__ import annotations

import sys

from ..config import Settings
from ..errors import ExitCode


def sandbox(settings: Settings, *, action: str, hosts: int) -> int:
    # Not at the top: the sandbox's modules (urllib, tarfile, podman helpers) are for this verb only.
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
