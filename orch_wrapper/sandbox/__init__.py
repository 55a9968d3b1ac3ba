"""The sandbox: AWS as a moto server on 127.0.0.1 and EC2 hosts as podman containers, driven by the real playbooks.

`up` runs the real provisioning playbook against moto, starts one systemd container per instance it created,
records each container's SSH endpoint on its instance (tags the dynamic inventory composes from), runs the real
configure playbook over SSH and ends with a ping through the inventory. `down` removes all of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ExitCode, OrchError
from . import image, moto_server, podman

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _instances(ec2) -> list[dict]:
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:orch-fleet", "Values": [FLEET]}, {"Name": "instance-state-name", "Values": ["running"]}]
    )
    found = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
    return sorted(found, key=lambda i: {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get("Name", ""))


def _public_key(ssm, fleet: str) -> str:
    """The fleet key's public half, derived in memory from the private key kept in SSM."""
    private = ssm.get_parameter(Name=f"/orch/{fleet}/ssh/private-key", WithDecryption=True)["Parameter"]["Value"]
    out = subprocess.run(["ssh-keygen", "-y", "-f", "/dev/stdin"], input=private, capture_output=True, text=True)
    if out.returncode != 0:
        raise OrchError("the fleet key in SSM is not a valid private key", hint="run `orch sandbox down` and up again")
    return out.stdout.strip()


def container_name(home: Path, host: str) -> str:
    return f"orch-{sandbox_id(home)}-{host}"


def _start_host(home: Path, tag: str, name: str, port: int, public_key: str, host_env: dict[str, str]) -> str:
    container = container_name(home, name)
    podman.podman(
        "create",
        "--pull=never",
        "--name",
        container,
        "--hostname",
        name,
        "--add-host",
        f"{name}:127.0.0.1",
        "--label",
        f"{LABEL}={sandbox_id(home)}",
        *podman.SYSTEMD_HOST_ARGS,
        tag,
        "/sbin/init",
    )
    # One tar stream into the stopped container: the files arrive with their owners and modes, before sshd starts.
    files = [
        ("etc/ssh/sshd_config.d/20-orch-port.conf", f"Port {port}\n", 0, 0o644),
        ("etc/environment", "".join(f"{k}={v}\n" for k, v in host_env.items()), 0, 0o644),
        ("home/ec2-user/.ssh/authorized_keys", public_key + "\n", 1000, 0o600),
    ]
    podman.podman("cp", "--archive=false", "-", f"{container}:/", input=_tar(files))
    podman.podman("start", container)
    return container


def _tar(files: list[tuple[str, str, int, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text, uid, mode in files:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid, info.mode = len(data), uid, uid, mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _wait_ssh(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise OrchError(f"a sandbox host's sshd did not answer on port {port}", hint="see `podman logs`, then retry")


def up(settings, say: Callable[[str], None] = print, hosts: int = 1, configure: bool = True) -> dict[str, str]:
    """Bring the sandbox up; return the environment that points orch at it."""
    from .. import agent, config, fleet, runner

    state = state_dir(settings.home)
    if (state / "env.json").exists():
        raise OrchError(
            "the sandbox is already up", hint="use it, or run `orch sandbox down` first", exit_code=ExitCode.USAGE
        )
    if hosts < 1 or hosts > 20:
        raise OrchError(f"--hosts {hosts} is out of range", hint="use 1 to 20", exit_code=ExitCode.USAGE)
    state.mkdir(parents=True, exist_ok=True)
    try:
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
        os.environ.update(env)
        settings = config.load()
        say(f"provisioning {hosts} host(s) with playbooks/provision.yml")
        runner.run_playbook(
            settings, "provision", {"orch_access": "endpoint", "orch_instance_count": hosts}, on_event=_progress(say)
        ).check()
        import boto3  # noqa: PLC0415

        ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=settings.region)
        ssm = boto3.client("ssm", endpoint_url=endpoint, region_name=settings.region)
        public_key = _public_key(ssm, FLEET)
        host_env = {**_FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": settings.region}
        ports = []
        for instance in _instances(ec2):
            name = {t["Key"]: t["Value"] for t in instance["Tags"]}["Name"]
            port = _free_port()
            say(f"starting host {name} (container {container_name(settings.home, name)}, ssh 127.0.0.1:{port})")
            _start_host(settings.home, tag, name, port, public_key, host_env)
            ec2.create_tags(
                Resources=[instance["InstanceId"]],
                Tags=[{"Key": "orch-ssh-host", "Value": "127.0.0.1"}, {"Key": "orch-ssh-port", "Value": str(port)}],
            )
            ports.append(port)
            (state / "ports.json").write_text(json.dumps(ports))
        for port in ports:
            _wait_ssh(port)
        (state / "env.json").write_text(json.dumps(env))
        # The endpoint tags are new since provisioning cached the inventory: read it afresh (and cache that).
        fleet.load(settings, refresh=True)
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


def _forget_caches(settings) -> None:
    """The fleet cache describes the previous sandbox (or AWS); the inventory's cache is keyed by endpoint."""
    from .. import fleet

    fleet.invalidate(settings)


def _ports(state: Path) -> list[int]:
    try:
        return [int(p) for p in json.loads((state / "ports.json").read_text())]
    except (OSError, ValueError):
        return []


def containers(home: Path) -> list[str]:
    out = podman.podman("ps", "-a", "--filter", f"label={LABEL}={sandbox_id(home)}", "--format", "{{.Names}}")
    return out.stdout.decode().split()


def down(settings, quiet: bool = False) -> bool:
    """Remove the sandbox's containers, moto server, ssh masters and agent; True if anything was up."""
    state = state_dir(settings.home)
    names = containers(settings.home) if shutil.which("podman") else []
    if not names and not state.exists():
        if quiet:
            return False
        raise OrchError("the sandbox is not up", hint="run `orch sandbox up`", exit_code=ExitCode.USAGE)
    ports = _ports(state)
    if names:
        podman.podman("rm", "-f", "-t", "0", *names)
    moto_server.stop(state)
    shutil.rmtree(state, ignore_errors=True)
    _forget_caches(settings)
    _stop_ssh_helpers(settings, ports)
    return True


def _stop_ssh_helpers(settings, ports: list[int]) -> None:
    """SSH control masters, known host keys and orch's agent belong to hosts that no longer exist."""
    from .. import agent

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
    agent.stop(settings)


def status(settings) -> dict:
    env = environment(settings.home)
    endpoint = (env or {}).get("AWS_ENDPOINT_URL")
    return {"up": env is not None, "endpoint": endpoint, "containers": containers(settings.home)}
