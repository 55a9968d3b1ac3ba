"""moto's server on 127.0.0.1: the sandbox's AWS endpoint (EC2, SSM Parameter Store, IAM, CloudWatch Logs).

The server runs detached (its own session, so it outlives the command that started it) and leaves a pidfile and a
port file in the state directory: `endpoint()` and `stop()` find it from there. Stdlib only.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import OrchError
from . import detached

HOST = "127.0.0.1"
PID_FILE = "moto.pid"
PORT_FILE = "moto.port"
LOG_FILE = "moto.log"
START_TIMEOUT = 60.0
MARKER = b"moto.server"  # in the server's command line: `python -m moto.server`


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except (OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _clear(state_dir: Path) -> None:
    for name in (PID_FILE, PORT_FILE):
        (state_dir / name).unlink(missing_ok=True)


def endpoint(state_dir: Path) -> str | None:
    """The endpoint URL of the moto server recorded in `state_dir`, or None when none is running."""
    state_dir = Path(state_dir)
    pid = detached.read_int(state_dir / PID_FILE)
    port = detached.read_int(state_dir / PORT_FILE)
    if pid is None or port is None or not detached.runs(pid, MARKER):
        return None
    return f"http://{HOST}:{port}"


def start(state_dir: Path) -> str:
    """Start moto's server on a free loopback port (or reuse the one already running) and return its endpoint URL."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    running = endpoint(state_dir)
    if running and _answers(running):
        return running
    _clear(state_dir)
    # AWS managed policies (AmazonSSMManagedInstanceCore, which provisioning attaches) exist only when loaded.
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    for _attempt in range(3):  # another process may take the free port between probing and binding it
        port = _free_port()
        url = f"http://{HOST}:{port}"
        proc = detached.spawn(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)], state_dir / LOG_FILE, env
        )
        (state_dir / PID_FILE).write_text(f"{proc.pid}\n")
        (state_dir / PORT_FILE).write_text(f"{port}\n")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if _answers(url):
                return url
            time.sleep(0.2)
        if proc.poll() is None:  # alive but silent past the deadline: give up on it
            detached.terminate(proc.pid, MARKER)
        _clear(state_dir)
    raise OrchError(
        "moto server did not start",
        hint=f"check that moto[server] is installed (pip install 'moto[server]') and read {state_dir / LOG_FILE}",
    )


def stop(state_dir: Path) -> bool:
    """Stop the moto server recorded in `state_dir`; False when none was running. Leaves no pid or port file."""
    state_dir = Path(state_dir)
    pid = detached.read_int(state_dir / PID_FILE)
    stopped = False
    if pid is not None and detached.runs(pid, MARKER):
        detached.terminate(pid, MARKER)
        stopped = True
    _clear(state_dir)
    return stopped
