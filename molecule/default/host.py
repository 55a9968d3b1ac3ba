"""The molecule scenario's test bed: a sandbox host container and a moto server, from orch's own sandbox code.

    python3 molecule/default/host.py up NAME STATE_DIR    # prints the state as JSON, also kept in STATE_DIR
    python3 molecule/default/host.py down NAME STATE_DIR

The host is the sandbox image (systemd as PID 1, sshd) started with the sandbox's podman settings; its sshd listens
on a free loopback port (host networking, as in the sandbox) and it reaches moto on 127.0.0.1. Ansible reaches it over
SSH as ec2-user with sudo, as `orch configure` does, not through `podman exec`: starting another systemd container on
this kind of VM (hybrid cgroup v1) moves every container's PID 1 to /init.scope of the named systemd hierarchy, after
which `podman exec` into the earlier containers fails. The login key is made in memory and lives only in an ssh-agent
of the scenario's own (STATE_DIR/agent.sock).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from orch_wrapper.errors import OrchError
from orch_wrapper.sandbox import image, moto_server, podman

LABEL = "orch-molecule"
STATE_FILE = "orch-molecule.json"
AGENT_SOCKET = "agent.sock"
AGENT_PID = "agent.pid"


def _start_agent(state_dir: Path) -> str:
    """An ssh-agent of our own holding a fresh ed25519 key made in memory; returns the key's public line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    _stop_agent(state_dir)
    sock = state_dir / AGENT_SOCKET
    out = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], capture_output=True, text=True, check=True).stdout
    (state_dir / AGENT_PID).write_text(re.search(r"SSH_AGENT_PID=(\d+)", out).group(1) + "\n")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    subprocess.run(["ssh-add", "-q", "-"], input=private, env={**os.environ, "SSH_AUTH_SOCK": str(sock)}, check=True)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode() + " orch-molecule"


def _stop_agent(state_dir: Path) -> None:
    pid_file = state_dir / AGENT_PID
    try:
        pid = int(pid_file.read_text())
        if b"ssh-agent" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass
    pid_file.unlink(missing_ok=True)
    (state_dir / AGENT_SOCKET).unlink(missing_ok=True)


def up(name: str, state_dir: Path) -> dict:
    state_dir.mkdir(parents=True, exist_ok=True)
    endpoint = moto_server.start(state_dir)
    public_key = _start_agent(state_dir)
    tag = image.build(say=lambda msg: print(msg, file=sys.stderr))
    port = podman.free_port()
    if podman.podman("container", "exists", name, check=False).returncode == 0:
        podman.podman("rm", "-f", "-t", "5", name)
    podman.start_host(name, tag, LABEL, port, public_key)
    podman.wait_ssh(port)
    state = {
        "container": name,
        "image": tag,
        "ssh_port": port,
        "aws_endpoint": endpoint,
        "agent_socket": str(state_dir / AGENT_SOCKET),
    }
    (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    return state


def down(name: str, state_dir: Path) -> None:
    if podman.podman("container", "exists", name, check=False).returncode == 0:
        podman.podman("rm", "-f", "-t", "5", name)
    moto_server.stop(state_dir)
    _stop_agent(state_dir)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    (state_dir / "known_hosts").unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("up", "down"):
        print(__doc__, file=sys.stderr)
        return 2
    verb, name, state_dir = argv
    try:
        if verb == "up":
            print(json.dumps(up(name, Path(state_dir))))
        else:
            down(name, Path(state_dir))
    except OrchError as exc:
        print(f"orch-molecule: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
