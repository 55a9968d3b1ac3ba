"""Settings from the environment, validated once."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import ExitCode, OrchError

DEFAULT_REGION = "ap-northeast-1"
DEFAULT_FLEET = "orch"
_FLEET_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_REGION_RE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]")


@dataclass(frozen=True)
class Settings:
    home: Path  # ORCH_HOME: orch's laptop state (agent socket, ssh control sockets, caches, runner artifacts)
    fleet: str  # ORCH_FLEET: the value of the orch-fleet tag
    region: str
    endpoint: str | None  # AWS_ENDPOINT_URL (moto in the sandbox), None for AWS itself

    @property
    def agent_sock(self) -> Path:
        return self.home / "agent.sock"

    @property
    def control_dir(self) -> Path:
        return self.home / "cm"

    @property
    def known_hosts(self) -> Path:
        return self.home / "known_hosts"

    def ensure_home(self) -> None:
        for path in (self.home, self.control_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)


def home_dir(environ: Mapping[str, str]) -> Path:
    home = Path(environ.get("ORCH_HOME") or Path.home() / ".orch").expanduser()
    return home if home.is_absolute() else home.resolve()


def adopt_sandbox(environ: MutableMapping[str, str]) -> bool:
    """Point orch at the running sandbox (`ORCH_HOME/sandbox/env.json`, written by `orch sandbox up`) unless the
    environment names an AWS endpoint or profile of its own. Variables already set are kept. True if adopted."""
    if environ.get("AWS_ENDPOINT_URL") or environ.get("AWS_PROFILE"):
        return False
    try:
        sandbox = json.loads((home_dir(environ) / "sandbox" / "env.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(sandbox, dict):
        return False
    for key, value in sandbox.items():
        environ.setdefault(str(key), str(value))
    return True


def load(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    home = home_dir(env)
    fleet = env.get("ORCH_FLEET") or DEFAULT_FLEET
    if not _FLEET_RE.fullmatch(fleet):
        raise OrchError(
            f"invalid ORCH_FLEET {fleet!r}",
            hint="use lowercase letters, digits and dashes, at most 32",
            exit_code=ExitCode.CONFIG,
        )
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    if not _REGION_RE.fullmatch(region):
        raise OrchError(
            f"invalid AWS region {region!r}", hint="set AWS_REGION, e.g. ap-northeast-1", exit_code=ExitCode.CONFIG
        )
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    if endpoint is not None:
        url = urlparse(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise OrchError(
                f"invalid AWS_ENDPOINT_URL {endpoint!r}",
                hint="use http(s)://host:port, or unset it for AWS",
                exit_code=ExitCode.CONFIG,
            )
    return Settings(home=home, fleet=fleet, region=region, endpoint=endpoint)
