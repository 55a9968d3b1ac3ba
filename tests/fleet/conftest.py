"""A sandbox fleet of three hosts of different sizes (issue 10): `orch sandbox up --hosts 3 --memory 3G,4G,6G`, so
orch.slice holds 1G, 2G and 4G (each host keeps orch_memory_reserve's 2G). Brought up once for this package, beside
nothing else (tests/e2e's sandbox is down by then), and torn down at its end."""

from __future__ import annotations

import json
import time

import pytest
from e2e.conftest import podman

from orch_wrapper import config, sandbox
from orch_wrapper.cli import main
from orch_wrapper.transport import aws

SIZES = "3G,4G,6G"
GIB = 1 << 30


@pytest.fixture(scope="package")
def fleet_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("orch-fleet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ORCH_HOME", str(home))
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "ORCH_FLEET"):
            mp.delenv(name, raising=False)
        assert main(["sandbox", "up", "--hosts", "3", "--memory", SIZES]) == 0
        env = {**sandbox.environment(home), "ORCH_HOME": str(home)}
    yield env
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ORCH_HOME", str(home))
        sandbox.down(config.load(), quiet=True)


@pytest.fixture
def env(fleet_env, monkeypatch):
    """The fleet's environment for this test only."""
    for name, value in fleet_env.items():
        monkeypatch.setenv(name, value)
    return fleet_env


@pytest.fixture
def by_size(env, capfd) -> dict[str, str]:
    """The host names by orch.slice's size in GiB, as `orch hosts --json` reports them: {1: ..., 2: ..., 4: ...}."""
    capfd.readouterr()
    assert main(["hosts", "--json"]) == 0
    cap = capfd.readouterr()
    hosts = json.loads(cap.out)
    assert all(isinstance(h["memory_allocatable"], int) for h in hosts), (hosts, cap.err)
    return {host["memory_allocatable"] // GIB: host["name"] for host in hosts}


def instance_state(host: str) -> str:
    ec2 = aws.client(config.load(), "ec2")
    found = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [host]}])["Reservations"]
    (state,) = {i["State"]["Name"] for r in found for i in r["Instances"] if i["State"]["Name"] != "terminated"}
    return state


def container_running(home, host: str) -> bool:
    out = podman("inspect", "-f", "{{.State.Running}}", sandbox.container_name(home, host))
    return out.stdout.strip() == "true"


def wait_container(home, host: str, running: bool, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while container_running(home, host) is not running:
        assert time.monotonic() < deadline, f"{host}'s container never {'started' if running else 'stopped'}"
        time.sleep(0.5)
