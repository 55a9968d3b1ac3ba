"""Podman for the sandbox: the project's settings file and the arguments that make a container a systemd host."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tarfile
import time
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


def free_port() -> int:
    """A loopback port nobody listens on now (the host's sshd takes it: containers share the host network)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tar(files: list[tuple[str, str, int, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text, uid, mode in files:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid, info.mode = len(data), uid, uid, mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def start_host(
    name: str,
    tag: str,
    label: str,
    port: int,
    public_key: str,
    files: list[tuple[str, str, int, int]] = (),
    hostname: str | None = None,
    memory: int | None = None,
) -> None:
    """Create and start a systemd host container NAME: its sshd on PORT of loopback, PUBLIC_KEY authorised for
    ec2-user (the image's login user, as on Amazon Linux), and FILES (path, text, uid, mode) in place before it boots.
    HOSTNAME (default NAME) is what the host calls itself; MEMORY (bytes) its memory limit, with no swap beyond."""
    hostname = hostname or name
    limit = [] if memory is None else [f"--memory={memory}", f"--memory-swap={memory}"]
    podman(
        "create", "--pull=never", "--name", name, "--hostname", hostname, "--add-host", f"{hostname}:127.0.0.1",
        "--label", label, *limit, *SYSTEMD_HOST_ARGS, tag, "/sbin/init",
    )  # fmt: skip
    files = [
        ("etc/ssh/sshd_config.d/20-orch-port.conf", f"Port {port}\n", 0, 0o644),
        ("home/ec2-user/.ssh/authorized_keys", public_key + "\n", 1000, 0o600),
        *files,
    ]
    # One tar stream into the stopped container; --archive=false keeps the tar's owners (sshd insists on them).
    podman("cp", "--archive=false", "-", f"{name}:/", input=_tar(files))
    podman("start", name)


def wait_ssh(port: int, timeout: float = 90) -> None:
    """Until an sshd greets on 127.0.0.1:PORT."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise OrchError(f"the host's sshd did not answer on 127.0.0.1:{port}", hint="see `podman logs`, then retry")
