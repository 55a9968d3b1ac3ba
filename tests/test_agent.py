"""orch's agent check against a real ssh-agent: the in-process key listing says what `ssh-add -l` says."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from orch_wrapper.transport import agent


@pytest.fixture
def real_agent():
    folder = Path(tempfile.mkdtemp(prefix="orch-agent-"))
    sock = folder / "agent.sock"
    started = subprocess.run(["ssh-agent", "-a", str(sock)], capture_output=True, text=True, check=True)
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", started.stdout).group(1))
    try:
        yield sock
    finally:
        os.kill(pid, 15)


def ssh_add(sock: Path, *args: str, key: bytes | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
    return subprocess.run(["ssh-add", *args], input=key, env=env, capture_output=True, check=False)


def new_key(folder: Path, kind: str) -> bytes:
    path = folder / f"id_{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "a comment", "-f", str(path)], check=True)
    return path.read_bytes()


def test_the_listing_matches_ssh_add(real_agent, tmp_path):
    assert agent.listed_fingerprints(real_agent) == []
    keys = [new_key(tmp_path, "ed25519"), new_key(tmp_path, "rsa")]
    for key in keys:
        assert ssh_add(real_agent, "-", key=key).returncode == 0
    listed = ssh_add(real_agent, "-l").stdout.decode()
    assert agent.listed_fingerprints(real_agent) == re.findall(r"SHA256:\S+", listed)
    assert agent.listed_fingerprints(real_agent) == [agent.fingerprint(key) for key in keys]


def test_no_agent_on_the_socket_is_none(tmp_path):
    assert agent.listed_fingerprints(tmp_path / "nobody.sock") is None
    (tmp_path / "plain-file").write_text("not a socket")
    assert agent.listed_fingerprints(tmp_path / "plain-file") is None
