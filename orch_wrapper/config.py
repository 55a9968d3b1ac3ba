"""Settings: built once, from the environment and the running sandbox's env.json, validated once, handed down.

Nothing else reads orch's settings from os.environ, and nothing writes os.environ to hand a setting on: child
processes get what they need from Settings (transport/ansible_env.py for Ansible, transport/aws.py for boto3).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlparse

from .errors import ExitCode, OrchError

DEFAULT_REGION = "ap-northeast-1"
DEFAULT_FLEET = "orch"
_FLEET_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_REGION_RE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]")
# The AWS variables Ansible and boto3 need besides region and endpoint: who orch is, and where its files are.
AWS_CHILD_VARIABLES = (
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CA_BUNDLE",
)


@dataclass(frozen=True)
class Settings:
    home: Path  # ORCH_HOME: orch's laptop state (agent socket, ssh control sockets, caches, runner artifacts)
    fleet: str  # ORCH_FLEET: the value of the orch-fleet tag
    region: str
    endpoint: str | None  # AWS_ENDPOINT_URL (moto in the sandbox), None for AWS itself
    # AWS_CHILD_VARIABLES that are set (profile, credentials, config files): what Ansible and boto3 are given.
    # Read-only, left out of repr (it may hold a secret key) and of the hash.
    aws_env: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "aws_env", MappingProxyType(dict(self.aws_env)))

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


def _sandbox(environ: Mapping[str, str]) -> dict[str, str]:
    """The running sandbox's variables (`ORCH_HOME/sandbox/env.json`, written by `orch sandbox up`), unless the
    environment names an AWS endpoint or profile of its own; empty when there is no sandbox."""
    if environ.get("AWS_ENDPOINT_URL") or environ.get("AWS_PROFILE"):
        return {}
    try:
        sandbox = json.loads((home_dir(environ) / "sandbox" / "env.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(sandbox, dict):
        return {}
    return {str(key): str(value) for key, value in sandbox.items()}


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ENVIRON (default os.environ) and the running sandbox: variables ENVIRON sets win."""
    given = os.environ if environ is None else environ
    env = {**_sandbox(given), **given}
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
    aws_env = {name: env[name] for name in AWS_CHILD_VARIABLES if env.get(name)}
    return Settings(home=home, fleet=fleet, region=region, endpoint=endpoint, aws_env=aws_env)


# The price table of `orch cost`: USD per hour by instance type and plan, and per GB-month of gp3 storage. The
# defaults are the design document's (t3.2xlarge ~$0.33/h on-demand, ~$0.21 reserved 1 yr, ~$0.10 spot) and gp3 in
# ap-northeast-1. ORCH_HOME/prices.json overrides any part, e.g. {"hourly": {"m7g.2xlarge": {"on-demand": 0.41}}}.
DEFAULT_PRICES: dict = {
    "plan": "on-demand",  # of an instance without an orch-plan tag (spot instances are known as such)
    "hourly": {"t3.2xlarge": {"on-demand": 0.33, "reserved": 0.21, "spot": 0.10}},
    "gp3_gb_month": 0.096,
}
PRICES_FILE = "prices.json"


def prices(settings: Settings) -> dict:
    """The price table: the defaults, with ORCH_HOME/prices.json over them; "source" says which was used."""
    import copy

    table = copy.deepcopy(DEFAULT_PRICES)
    path = settings.home / PRICES_FILE
    if not path.exists():
        return {**table, "source": "orch's default prices (the design document's list prices)"}
    try:
        given = json.loads(path.read_text())
        if not isinstance(given, dict) or not set(given) <= set(table):
            raise ValueError(f"keys must be among {', '.join(table)}")
        for kind, plans in (given.get("hourly") or {}).items():
            if not isinstance(plans, dict) or not all(isinstance(v, (int, float)) for v in plans.values()):
                raise ValueError(f"hourly.{kind} must map plans to USD per hour")
            table["hourly"].setdefault(kind, {}).update(plans)
        for key in ("plan", "gp3_gb_month"):
            if key in given:
                table[key] = given[key]
        if not isinstance(table["gp3_gb_month"], (int, float)) or not isinstance(table["plan"], str):
            raise ValueError("gp3_gb_month must be a number, plan a string")
    except (OSError, ValueError) as exc:
        raise OrchError(
            f"{path} is not a valid price table: {exc}", hint="fix or remove it", exit_code=ExitCode.CONFIG
        ) from None
    return {**table, "source": f"prices from {path}"}
