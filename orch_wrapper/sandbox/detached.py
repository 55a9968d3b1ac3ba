"""Detached helper processes of the sandbox (moto's server, the hypervisor): started in their own session so they
outlive the command that started them, found again through a pidfile, and signalled only while the pid still
belongs to them (a recycled pid is someone else's). Stdlib only."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

STOP_TIMEOUT = 10.0


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def runs(pid: int | None, marker: bytes) -> bool:
    """True if PID lives and MARKER is one of its command-line words."""
    if pid is None:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return marker in cmdline


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """ARGV in a session of its own, its output appended to LOG."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )


def terminate(pid: int, marker: bytes) -> None:
    """SIGTERM to PID's process group, SIGKILL after STOP_TIMEOUT; reaps it when it is our child."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            finished, _status = os.waitpid(pid, os.WNOHANG)  # our child: reap it
        except ChildProcessError:
            finished = pid if not runs(pid, marker) else 0
        if finished:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
