"""Podman for the sandbox: the project's settings file and the arguments that make a container a systemd host."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..errors import OrchError

CONTAINERS_CONF = Path(__file__).with_name("containers.conf")

# systemd as PID 1 (--systemd=always); --privileged with a private cgroup namespace is what makes
# `systemd-run --scope -p MemoryMax=` caps bite inside the host (elsewhere they are silently ignored);
# host networking lets each host's sshd listen on its own loopback port and reach moto on 127.0.0.1.
SYSTEMD_HOST_ARGS = (
    "--systemd=always",
    "--privileged",
    "--cgroupns=private",
    "--network=host",
    "--stop-signal=SIGRTMIN+3",
)


def env() -> dict[str, str]:
    """The environment podman runs with: ours plus the project's containers.conf."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, capture: bool = True, input: bytes | None = None):
    """Run podman with the project's settings; a failure becomes one OrchError line."""
    if shutil.which("podman") is None:
        raise OrchError("podman is not installed", hint="run scripts/install")
    proc = subprocess.run(["podman", *args], env=env(), input=input, capture_output=capture)
    if check and proc.returncode != 0:
        err = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise OrchError(f"podman {args[0]} failed: {err[-1] if err else 'exit ' + str(proc.returncode)}")
    return proc
