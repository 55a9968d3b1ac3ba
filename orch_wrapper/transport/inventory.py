"""The fleet from the dynamic inventory (`ansible-inventory --list`), cached in ORCH_HOME for the read paths."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import asdict
from typing import Any

from ..config import Settings
from ..errors import ExitCode, OrchError, no_credentials
from ..model import Host

CACHE_TTL = 300  # seconds; `orch hosts --refresh`, sandbox up/down and provisioning drop it
CACHE_FILE = "fleet.json"


def plain(value: Any) -> Any:
    """ansible-inventory's JSON wraps strings as {"__ansible_unsafe": "..."} (ansible-core 2.19): unwrap them."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _first(hv: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = hv.get(name)
        if value not in (None, ""):
            return value
    return None


def _tags(hv: dict[str, Any]) -> dict[str, Any]:
    # The inventory prefixes the plugin's facts with aws_ (hostvars_prefix); accept either spelling.
    return hv.get("aws_tags") or hv.get("tags") or {}


def host_from_hostvars(name: str, hv: dict[str, Any]) -> Host:
    """A Host from one host's inventory variables: the stable orch_* names the inventory composes, else the plugin's."""
    hv = plain(hv)
    tags = _tags(hv)
    state = _first(hv, "orch_state", "aws_state", "state")
    return Host(
        name=name,
        instance_id=str(_first(hv, "orch_instance_id", "aws_instance_id", "instance_id") or ""),
        instance_type=str(_first(hv, "orch_instance_type", "aws_instance_type", "instance_type") or ""),
        state=str(state.get("name", "") if isinstance(state, dict) else state or ""),
        access=str(_first(hv, "orch_access") or tags.get("orch-access") or ""),
        ssh_host=str(hv.get("ansible_host") or name),
        ssh_port=int(hv.get("ansible_port") or 22),
        ssh_user=str(hv.get("ansible_user") or tags.get("orch-user") or "ec2-user"),
        ssh_common_args=tuple(shlex.split(str(hv.get("ansible_ssh_common_args") or ""))),
    )


def hosts_from_inventory(inventory: dict[str, Any], fleet: str) -> list[Host]:
    """The fleet's hosts from `ansible-inventory --list` output, filtered on the orch-fleet tag, sorted by name."""
    hostvars = (inventory.get("_meta") or {}).get("hostvars") or {}
    hosts = [
        host_from_hostvars(name, hv) for name, hv in hostvars.items() if plain(_tags(hv).get("orch-fleet")) == fleet
    ]
    return sorted(hosts, key=lambda h: _natural_key(h.name))


def _natural_key(name: str) -> list[Any]:
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _cache_key(settings: Settings) -> str:
    return f"{settings.fleet}|{settings.region}|{settings.endpoint or ''}"


def invalidate(settings: Settings) -> None:
    try:
        (settings.home / CACHE_FILE).unlink()
    except FileNotFoundError:
        pass


def _read_cache(settings: Settings) -> list[Host] | None:
    try:
        data = json.loads((settings.home / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != _cache_key(settings) or not 0 <= time.time() - data.get("created", 0) < CACHE_TTL:
        return None
    try:
        return [Host(**{**h, "ssh_common_args": tuple(h["ssh_common_args"])}) for h in data["hosts"]]
    except (KeyError, TypeError):
        return None


def cached_names(settings: Settings) -> list[str]:
    """The host names of the last fleet read, however old (shell completion: no network while typing)."""
    try:
        data = json.loads((settings.home / CACHE_FILE).read_text())
        if data.get("key") != _cache_key(settings):
            return []
        return sorted(str(h["name"]) for h in data["hosts"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def _write_cache(settings: Settings, hosts: list[Host]) -> None:
    settings.ensure_home()
    path = settings.home / CACHE_FILE
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    data = {"key": _cache_key(settings), "created": time.time(), "hosts": [asdict(h) for h in hosts]}
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def inventory_list(settings: Settings, refresh: bool = False) -> dict[str, Any]:
    """`ansible-inventory -i <project>/inventory --list`, with errors turned into one-line OrchErrors."""
    from .. import paths  # here, not at the top: the read paths use the fleet cache and never start Ansible
    from . import ansible_env

    cmd = ["ansible-inventory", "-i", str(paths.inventory()), "--list"]
    if refresh:
        cmd.append("--flush-cache")
    env = ansible_env.child_environ(settings)  # the same environment Ansible gets for playbooks
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    except FileNotFoundError:
        raise OrchError(
            "ansible-inventory is not installed", hint="run scripts/install", exit_code=ExitCode.CONFIG
        ) from None
    except subprocess.TimeoutExpired:
        raise OrchError(
            "the inventory did not answer within 120 s", hint="run `orch doctor`", exit_code=ExitCode.UNREACHABLE
        ) from None
    if proc.returncode != 0:
        raise inventory_error(proc.stderr)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise OrchError("ansible-inventory printed no JSON", hint="run `orch doctor`") from None


def inventory_error(stderr: str) -> OrchError:
    text = " ".join(stderr.split())
    if "Unable to locate credentials" in text or "NoCredentialsError" in text or "Missing credentials" in text:
        return no_credentials()
    if "Could not connect to the endpoint" in text or "EndpointConnectionError" in text:
        return OrchError(
            "cannot reach the AWS endpoint",
            hint="check AWS_ENDPOINT_URL and the network (or `orch sandbox up`)",
            exit_code=ExitCode.UNREACHABLE,
        )
    if "InvalidClientTokenId" in text or "AuthFailure" in text or "UnrecognizedClient" in text:
        return OrchError(
            "AWS rejected the credentials", hint="check AWS_PROFILE or run `aws configure`", exit_code=ExitCode.CONFIG
        )
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return OrchError(f"the inventory failed: {lines[-1] if lines else 'no message'}", hint="run `orch doctor`")


def load(settings: Settings, refresh: bool = False) -> list[Host]:
    """The fleet's hosts: from the cache when it is fresh, else from the dynamic inventory."""
    if not refresh:
        cached = _read_cache(settings)
        if cached is not None:
            return cached
    hosts = hosts_from_inventory(inventory_list(settings, refresh=refresh), settings.fleet)
    _write_cache(settings, hosts)
    return hosts


def require(settings: Settings, refresh: bool = False) -> list[Host]:
    hosts = load(settings, refresh=refresh)
    if not hosts:
        invalidate(settings)
        raise OrchError(
            f"no hosts in fleet {settings.fleet}",
            hint="run `orch sandbox up` or provision",
            exit_code=ExitCode.NOT_FOUND,
        )
    return hosts


def find(hosts: list[Host], name: str) -> Host:
    for host in hosts:
        if host.name == name:
            return host
    raise OrchError(
        f"no host {name!r} in the fleet",
        hint=f"choose one of: {', '.join(h.name for h in hosts)}",
        exit_code=ExitCode.NOT_FOUND,
    )
