"""Shared fixtures: moto's server as the AWS endpoint, and an environment that points every AWS client at it.

Isolation between tests: each test (or module) provisions its own fleet name (`fleet_name`), so one moto server
serves the whole session; `moto_reset` is there for a test that needs an empty account.
"""

from __future__ import annotations

import os
import urllib.request
import uuid
from pathlib import Path

import pytest

from orch_wrapper.sandbox import moto_server

ROOT = Path(__file__).resolve().parent.parent
REGION = "ap-northeast-1"
# AWS's own variables that could point a test at a real account: never inherited.
_AWS_LEAKS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_URL", "AWS_SECURITY_TOKEN")
# A developer's own orch defaults (config file, --mem, price plan) must not change what any test sees.
for _name in ("ORCH_CONFIG", "ORCH_MEM", "ORCH_PLAN"):
    os.environ.pop(_name, None)


def aws_environ(endpoint: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a process talking to moto at `endpoint`, with `home` as its home (~/.orch, ~/.aws)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in _AWS_LEAKS and not k.startswith("ORCH_")}
    env.update(
        HOME=str(home),
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(home / ".aws" / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / ".aws" / "credentials"),
        # No credential lookups off this machine (the instance metadata service) when a test removes the keys.
        AWS_EC2_METADATA_DISABLED="true",
        # The project's modules, whatever ansible.cfg the working directory has.
        ANSIBLE_LIBRARY=str(ROOT / "library"),
        ANSIBLE_MODULE_UTILS=str(ROOT / "module_utils"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> str:
    """moto's server on a free 127.0.0.1 port for the whole session; yields its endpoint URL."""
    state_dir = tmp_path_factory.mktemp("moto")
    url = moto_server.start(state_dir)
    yield url
    moto_server.stop(state_dir)


@pytest.fixture
def moto_reset(moto: str) -> str:
    """An empty moto account (every resource of every earlier test forgotten); yields the endpoint URL."""
    request = urllib.request.Request(f"{moto}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=30):
        pass
    return moto


@pytest.fixture
def fleet_name() -> str:
    """A fleet name no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def make_aws_env():
    """`aws_environ` itself, for module-scoped fixtures: make_aws_env(endpoint, home, ORCH_FLEET=...)."""
    return aws_environ


@pytest.fixture
def aws_env(moto: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess that talks to moto, with its home (and so ~/.orch) in tmp_path."""
    return aws_environ(moto, tmp_path / "home")
