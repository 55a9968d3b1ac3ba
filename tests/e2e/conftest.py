"""One sandbox (moto + podman hosts, provisioned and configured by the real playbooks) shared by the e2e tests.

It is brought up once for this package and torn down at its end; each test gets the sandbox's environment set
through monkeypatch, so nothing leaks into the other test packages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orch_wrapper import config, sandbox
from orch_wrapper.cli import main
from orch_wrapper.transport import inventory, ssh

ROOT = Path(__file__).resolve().parents[2]
# Each sandbox host container's memory limit: what the host may use, below this machine's memory.
SANDBOX_MEMORY = "6G"
# The marker of the tests that restart and stop the shared sandbox's hosts and finally take the sandbox down.
FAULTS = "sandbox_faults"


def pytest_configure(config):
    config.addinivalue_line("markers", f"{FAULTS}: breaks the shared sandbox; runs after every other e2e test")


def pytest_collection_modifyitems(config, items):
    """The fault tests restart and stop the hosts every other test here uses, and end by removing the sandbox: they
    run after all of them, in their own order, whatever the file names. (This hook sees the whole session's items:
    only this package's are reordered, within the places they hold, so they stay together and share one sandbox.)"""
    here = Path(__file__).resolve().parent
    places = [i for i, item in enumerate(items) if here in item.path.resolve().parents]
    ours = [items[i] for i in places]
    ordered = [item for item in ours if not item.get_closest_marker(FAULTS)]
    ordered += [item for item in ours if item.get_closest_marker(FAULTS)]
    for i, item in zip(places, ordered, strict=True):
        items[i] = item


def orch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real `orch` command in a child process (what a person types), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "orch_wrapper", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.fixture(scope="package")
def sandbox_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("orch-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ORCH_HOME", str(home))
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "ORCH_FLEET"):
            mp.delenv(name, raising=False)
        before = dict(os.environ)
        assert main(["sandbox", "up", "--memory", SANDBOX_MEMORY]) == 0
        assert dict(os.environ) == before  # up hands its settings down; it never writes the caller's environment
        env = {**sandbox.environment(home), "ORCH_HOME": str(home)}
    yield env
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ORCH_HOME", str(home))
        sandbox.down(config.load(), quiet=True)


@pytest.fixture
def env(sandbox_env, monkeypatch):
    """The sandbox's environment for this test only."""
    for name, value in sandbox_env.items():
        monkeypatch.setenv(name, value)
    return sandbox_env


@pytest.fixture
def home(env) -> Path:
    return Path(env["ORCH_HOME"])


def podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=sandbox.podman.env())


def container(home: Path, host: str = "sandbox-1") -> str:
    return sandbox.container_name(home, host)


def status_json(cap, *names: str) -> dict[str, dict]:
    """`orch status --all --json` as a dict by job name (drains what earlier calls printed first)."""
    cap.readouterr()
    assert main(["status", "--all", "--json", *names]) == 0
    out = json.loads(cap.readouterr().out)
    return {job["name"]: job for job in (out["jobs"] if isinstance(out, dict) else out)}


def wait_state(cap, name: str, states: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = status_json(cap).get(name)
        if job and job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"{name} never reached {states}: {job}"
        time.sleep(0.5)


def host_sh(command: str, host: str = "sandbox-1", multiplexed: bool = True) -> str:
    """Run a shell command on a sandbox host as its job user, over orch's own SSH path, and return its output.
    (SSH rather than `podman exec`: runc's exec races the host's systemd over the container's cgroups.)
    With MULTIPLEXED false, over a connection of its own, outside orch's control masters."""
    settings = config.load()
    target = next(h for h in inventory.load(settings) if h.name == host)
    argv = ssh.argv(settings, target, shell=command)
    if not multiplexed:
        argv = [argv[0], "-S", "none", *argv[1:]]  # ssh takes the first ControlPath it is given
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (command, result.stderr)
    return result.stdout
