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

from orch_host import contract

from . import config_file
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
    mem: str | None = None  # `orch run`'s --mem when it is not given (ORCH_MEM, the config file's mem)
    notify: str | None = None  # `orch run`'s --notify when it is not given (ORCH_NOTIFY, the config file's notify)
    plan: str | None = None  # `orch cost`'s plan for non-spot instances (on-demand, reserved); None: tag or table
    config_file: Path | None = None  # where the config file is (or would be): ORCH_CONFIG, else ORCH_HOME/config.toml
    # setting -> where its value came from ("default", "file: PATH, line N", "environment: VAR", "sandbox: ...")
    sources: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "aws_env", MappingProxyType(dict(self.aws_env)))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

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


PLANS = ("on-demand", "reserved")  # what a non-spot instance is billed at (spot instances are known as such)
_PROFILE_RE = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")
# setting -> the environment variables that set it, first one wins
ENVIRONMENT = {
    "fleet": ("ORCH_FLEET",),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "profile": ("AWS_PROFILE",),
    "mem": ("ORCH_MEM",),
    "notify": ("ORCH_NOTIFY",),
    "plan": ("ORCH_PLAN",),
}
DEFAULTS = {"fleet": DEFAULT_FLEET, "region": DEFAULT_REGION}


def _checked(key: str, value: str, where: str) -> str:
    """VALUE of setting KEY, normalised; a one-line error naming WHERE it came from otherwise (the variable, or the
    file and its line)."""

    def bad(hint: str) -> OrchError:
        said = (
            f"{where.removeprefix('environment: ')} {value!r}"
            if where.startswith("environment")
            else (f"{key} {value!r} ({where})")
        )
        return OrchError(f"invalid {said}", hint=hint, exit_code=ExitCode.CONFIG)

    if key == "fleet" and not _FLEET_RE.fullmatch(value):
        raise bad("use lowercase letters, digits and dashes, at most 32")
    if key == "region" and not _REGION_RE.fullmatch(value):
        raise bad("use a region name, e.g. ap-northeast-1")
    if key == "profile" and not _PROFILE_RE.fullmatch(value):
        raise bad("use the name of a profile in ~/.aws/config")
    if key == "plan" and value not in PLANS:
        raise bad(f"use one of {', '.join(PLANS)}")
    if key == "notify" and (not contract.SSM_PARAM_RE.fullmatch(value) or "//" in value):
        raise bad("give an SSM parameter name, e.g. /orch/orch/notify/slack")
    if key == "mem":
        try:
            return contract.memory_size(value)[1]
        except ValueError:
            raise bad(contract.MEMORY_RULE) from None
    return value


def config_path(environ: Mapping[str, str]) -> tuple[Path, bool]:
    """(the config file, whether the environment named it): ORCH_CONFIG, else ORCH_HOME/config.toml."""
    named = environ.get("ORCH_CONFIG")
    if named:
        return Path(named).expanduser().resolve(), True
    return home_dir(environ) / config_file.FILE, False


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from, lowest first: orch's defaults, the config file, the running sandbox, ENVIRON (default
    os.environ). Each value is validated where it came from, and its source kept for `orch config`."""
    given = os.environ if environ is None else environ
    home = home_dir(given)
    path, named = config_path(given)
    in_file = config_file.read(path, required=named)
    sandbox = _sandbox(given)
    env = {**sandbox, **given}
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for key, names in ENVIRONMENT.items():
        var = next((n for n in names if env.get(n)), None)
        if var is not None:
            origin = "sandbox" if var in sandbox and var not in given else "environment"
            where = f"{origin}: {var}" if origin == "environment" else f"sandbox: {home / 'sandbox' / 'env.json'}"
            values[key], sources[key] = _checked(key, env[var], where), where
        elif key in in_file and not (key == "profile" and sandbox):  # the sandbox's own credentials win
            value, line = in_file[key]
            where = f"file: {path}, line {line}"
            values[key], sources[key] = _checked(key, value, where), where
        elif key in DEFAULTS:
            values[key], sources[key] = DEFAULTS[key], "default"
        else:
            sources[key] = "unset" if not (key == "profile" and sandbox and key in in_file) else "sandbox: file unused"
    sources["home"] = "environment: ORCH_HOME" if given.get("ORCH_HOME") else "default"
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    sources["endpoint"] = (
        "unset (AWS itself)"
        if endpoint is None
        else "environment: AWS_ENDPOINT_URL"
        if given.get("AWS_ENDPOINT_URL")
        else f"sandbox: {home / 'sandbox' / 'env.json'}"
    )
    if endpoint is not None:
        url = urlparse(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise OrchError(
                f"invalid AWS_ENDPOINT_URL {endpoint!r}",
                hint="use http(s)://host:port, or unset it for AWS",
                exit_code=ExitCode.CONFIG,
            )
    aws_env = {name: env[name] for name in AWS_CHILD_VARIABLES if env.get(name)}
    if "profile" in values:
        aws_env["AWS_PROFILE"] = values["profile"]
    return Settings(
        home=home,
        fleet=values["fleet"],
        region=values["region"],
        endpoint=endpoint,
        aws_env=aws_env,
        mem=values.get("mem"),
        notify=values.get("notify"),
        plan=values.get("plan"),
        config_file=path,
        sources=sources,
    )


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
