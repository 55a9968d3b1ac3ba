"""The sandbox: AWS as a moto server on 127.0.0.1 and EC2 hosts as podman containers, driven by the real playbooks.

`up` runs the real provisioning playbook against moto, starts one systemd container per instance it created,
records each container's SSH endpoint on its instance (tags the dynamic inventory composes from), starts the
hypervisor (containers follow their instances' EC2 state from then on) and runs the real configure playbook over
SSH through that inventory: every host has answered Ansible when `up` returns. `down` removes all of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from orch_host import contract

from ..config import Settings
from ..errors import ExitCode, OrchError
from ..transport import agent, aws, inventory, runner
from . import hypervisor, moto_server, podman

FLEET = "sandbox"
LABEL = "orch-sandbox"
# What a host gets in place of an instance role: credentials and the endpoint of the moto server.
_FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def sandbox_id(home: Path) -> str:
    """Each ORCH_HOME has its own sandbox: its containers carry this id in their name and label."""
    return hashlib.sha256(str(home).encode()).hexdigest()[:6]


def state_dir(home: Path) -> Path:
    return home / "sandbox"


def environment(home: Path) -> dict[str, str] | None:
    """The environment that points orch at the running sandbox, or None when it is down."""
    path = state_dir(home) / "env.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _instances(ec2) -> list[dict]:
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:orch-fleet", "Values": [FLEET]}, {"Name": "instance-state-name", "Values": ["running"]}]
    )
    found = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
    return sorted(found, key=lambda i: {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get("Name", ""))


def _public_key(ssm, fleet: str) -> str:
    """The fleet key's public half, derived in memory from the private key kept in SSM."""
    private = ssm.get_parameter(Name=contract.ssm_key_parameter(fleet), WithDecryption=True)["Parameter"]["Value"]
    out = subprocess.run(["ssh-keygen", "-y", "-f", "/dev/stdin"], input=private, capture_output=True, text=True)
    if out.returncode != 0:
        raise OrchError("the fleet key in SSM is not a valid private key", hint="run `orch sandbox down` and up again")
    return out.stdout.strip()


def container_name(home: Path, host: str) -> str:
    return f"orch-{sandbox_id(home)}-{host}"


def up(
    settings: Settings,
    say: Callable[[str], None] = print,
    hosts: int = 1,
    configure: bool = True,
    memory: list[int | None] | None = None,
) -> dict[str, str]:
    """Bring the sandbox up; return the environment that points orch at it (also kept in env.json, where later
    commands' Settings find it). MEMORY gives each host container, in the instances' order, its memory limit."""
    state = state_dir(settings.home)
    if (state / "env.json").exists():
        raise OrchError(
            "the sandbox is already up", hint="use it, or run `orch sandbox down` first", exit_code=ExitCode.USAGE
        )
    if hosts < 1 or hosts > 20:
        raise OrchError(f"--hosts {hosts} is out of range", hint="use 1 to 20", exit_code=ExitCode.USAGE)
    state.mkdir(parents=True, exist_ok=True)
    try:
        from . import image  # not at the top: `python3 -m orch_wrapper.sandbox.image` runs it as __main__

        tag = image.build(say=say)
        say("starting moto (AWS on 127.0.0.1)")
        endpoint = moto_server.start(state)
        env = {
            **_FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": settings.region,
            "AWS_DEFAULT_REGION": settings.region,
            "ORCH_FLEET": FLEET,
        }
        # The sandbox's own Settings, handed to everything below; the caller's environment is left as it is.
        settings = dataclasses.replace(
            settings, fleet=FLEET, endpoint=endpoint, aws_env={**settings.aws_env, **_FAKE_CREDENTIALS}
        )
        say(f"provisioning {hosts} host(s) with playbooks/provision.yml")
        runner.run_playbook(
            settings, "provision", {"orch_access": "endpoint", "orch_instance_count": hosts}, on_event=_progress(say)
        ).check()
        ec2 = aws.client(settings, "ec2")
        ssm = aws.client(settings, "ssm")
        public_key = _public_key(ssm, FLEET)
        host_env = {**_FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": settings.region}
        ports, containers = [], {}
        limits = list(memory or [])
        for index, instance in enumerate(_instances(ec2)):
            limit = limits[index] if index < len(limits) else None
            name = {t["Key"]: t["Value"] for t in instance["Tags"]}["Name"]
            port = podman.free_port()
            say(f"starting host {name} (container {container_name(settings.home, name)}, ssh 127.0.0.1:{port})")
            environment_file = "".join(f"{k}={v}\n" for k, v in host_env.items())
            podman.start_host(
                container_name(settings.home, name), tag, f"{LABEL}={sandbox_id(settings.home)}", port, public_key,
                [("etc/environment", environment_file, 0, 0o644)], hostname=name, memory=limit,
            )  # fmt: skip
            ec2.create_tags(
                Resources=[instance["InstanceId"]],
                Tags=[{"Key": "orch-ssh-host", "Value": "127.0.0.1"}, {"Key": "orch-ssh-port", "Value": str(port)}],
            )
            ports.append(port)
            containers[instance["InstanceId"]] = container_name(settings.home, name)
            (state / "ports.json").write_text(json.dumps(ports))
        for port in ports:
            podman.wait_ssh(port)
        (state / "env.json").write_text(json.dumps(env))
        hypervisor.start(state, containers)  # from here on, containers follow their instances' EC2 state
        # The endpoint tags are new since provisioning cached the inventory: read it afresh (and cache that).
        inventory.load(settings, refresh=True)
        if configure:
            say("configuring the hosts with playbooks/configure.yml")
            agent.ensure(settings)
            runner.run_playbook(settings, "configure", {}, on_event=_progress(say)).check()
        return env
    except BaseException:
        say("sandbox up failed: tearing down what it started")
        down(settings, quiet=True)
        raise


def _progress(say: Callable[[str], None]) -> Callable[[dict], None]:
    """One line per task, so a slow playbook shows where it is."""

    def on_event(event: dict) -> None:
        if event.get("event") == "playbook_on_task_start":
            say(f"  task: {event['event_data'].get('task', '')}")

    return on_event


def _ports(state: Path) -> list[int]:
    try:
        return [int(p) for p in json.loads((state / "ports.json").read_text())]
    except (OSError, ValueError):
        return []


def containers(home: Path) -> list[str]:
    out = podman.podman("ps", "-a", "--filter", f"label={LABEL}={sandbox_id(home)}", "--format", "{{.Names}}")
    return out.stdout.decode().split()


def down(settings: Settings, quiet: bool = False) -> bool:
    """Remove the sandbox's containers, moto server, ssh masters and agent; True if anything was up."""
    state = state_dir(settings.home)
    names = containers(settings.home) if shutil.which("podman") else []
    if not names and not state.exists():
        if quiet:
            return False
        raise OrchError("the sandbox is not up", hint="run `orch sandbox up`", exit_code=ExitCode.USAGE)
    ports = _ports(state)
    hypervisor.stop(state)  # first: it must not start a container again while they go
    if names:
        podman.podman("rm", "-f", "-t", "0", *names)
    moto_server.stop(state)
    shutil.rmtree(state, ignore_errors=True)
    inventory.invalidate(settings)  # the fleet cache describes hosts that are gone
    _stop_ssh_helpers(settings, ports)
    return True


def _stop_ssh_helpers(settings: Settings, ports: list[int]) -> None:
    """SSH control masters, known host keys and orch's agent belong to hosts that no longer exist."""
    for sock in sorted(settings.control_dir.glob("*")) if settings.control_dir.is_dir() else []:
        subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "sandbox"], capture_output=True, check=False)
        sock.unlink(missing_ok=True)
    if settings.known_hosts.is_file():
        for port in ports:
            subprocess.run(
                ["ssh-keygen", "-R", f"[127.0.0.1]:{port}", "-f", str(settings.known_hosts)],
                capture_output=True,
                check=False,
            )
        # ssh-keygen -R keeps the file as it was in known_hosts.old: the removed keys would stay behind there.
        settings.known_hosts.with_name(settings.known_hosts.name + ".old").unlink(missing_ok=True)
    agent.stop(settings)


def status(settings: Settings) -> dict:
    env = environment(settings.home)
    endpoint = (env or {}).get("AWS_ENDPOINT_URL")
    return {
        "up": env is not None,
        "endpoint": endpoint,
        "containers": containers(settings.home),
        "hypervisor": hypervisor.running(state_dir(settings.home)),
    }
