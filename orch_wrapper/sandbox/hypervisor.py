"""The sandbox's EC2 hypervisor: keeps each host container in step with its moto instance.

moto changes an instance's state when EC2 is asked to (`orch down` and `orch up`, or a host stopping itself with
its instance role), and nothing else happens. This process, which `orch sandbox up` starts detached and
`orch sandbox down` ends, reads those states every POLL seconds and does to the container what EC2 does to the
machine: a stopped or terminated instance's container stops (systemd shuts down cleanly), a started one's starts
again, with its name, its disk and its SSH port. It acts on changes only, so a container stopped behind EC2's back
(a crashed host, as the fault tests make one) stays as it is. orch's own code only ever calls EC2.

    python3 -m orch_wrapper.sandbox.hypervisor STATE_DIR
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from .. import config
from ..transport import aws
from . import detached, podman

PID_FILE = "hypervisor.pid"
LOG_FILE = "hypervisor.log"
MAP_FILE = "instances.json"  # {instance id: container name}, written by `orch sandbox up`
MARKER = b"orch_wrapper.sandbox.hypervisor"
POLL = 0.5
DOWN = {"stopping", "stopped", "shutting-down", "terminated"}
STOP_GRACE = 20  # seconds podman gives the host's systemd to shut down


def action(before: str | None, now: str) -> str | None:
    """What the container needs when its instance went from BEFORE to NOW: "stop", "start" or nothing."""
    if before is None or before == now:
        return None
    if now in DOWN and before not in DOWN:
        return "stop"
    if now in ("pending", "running") and before in DOWN:
        return "start"
    return None


def _ec2(state: Path):
    """EC2 of the sandbox in STATE (its env.json: moto's endpoint, the fake credentials, the region)."""
    env = json.loads((state / "env.json").read_text())
    return aws.client(config.load({**os.environ, **env}), "ec2")


def _states(ec2, ids: list[str]) -> dict[str, str]:
    found = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in found for i in r["Instances"]}


def run(state: Path) -> None:
    containers = json.loads((state / MAP_FILE).read_text())
    ec2 = _ec2(state)
    seen: dict[str, str] = {}
    while True:
        try:
            states = _states(ec2, sorted(containers))
        except Exception as exc:  # noqa: BLE001 - moto restarting or going down: look again
            print(f"cannot read the instances: {exc}", flush=True)
            time.sleep(POLL)
            continue
        for instance, now in states.items():
            todo = action(seen.get(instance), now)
            seen[instance] = now
            if todo is None:
                continue
            name = containers[instance]
            args = ("stop", "-t", str(STOP_GRACE), name) if todo == "stop" else ("start", name)
            done = podman.podman(*args, check=False)
            said = (done.stderr or b"").decode(errors="replace").strip()
            print(f"{instance} {now}: podman {todo} {name}: exit {done.returncode} {said}".rstrip(), flush=True)
        time.sleep(POLL)


def start(state: Path, containers: dict[str, str]) -> int:
    """Start the hypervisor for CONTAINERS ({instance id: container}) of the sandbox in STATE; its pid."""
    (state / MAP_FILE).write_text(json.dumps(containers))
    proc = detached.spawn([sys.executable, "-m", "orch_wrapper.sandbox.hypervisor", str(state)], state / LOG_FILE)
    (state / PID_FILE).write_text(f"{proc.pid}\n")
    return proc.pid


def running(state: Path) -> bool:
    return detached.runs(detached.read_int(state / PID_FILE), MARKER)


def stop(state: Path) -> None:
    pid = detached.read_int(state / PID_FILE)
    if pid is not None and detached.runs(pid, MARKER):
        detached.terminate(pid, MARKER)
    (state / PID_FILE).unlink(missing_ok=True)


if __name__ == "__main__":
    run(Path(sys.argv[1]))
