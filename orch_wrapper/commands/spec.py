"""The job spec the start playbook hands to orch_job: every user input validated before any remote work, and its
base64 wire form."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any

from orch_host import contract

from ..errors import ExitCode, OrchError

# The job-name, variable-name and memory-size rules are the host's (orch_host.contract): one definition for both.
SSM_PARAM_RE = contract.SSM_PARAM_RE


def _usage(message: str, hint: str | None = None) -> OrchError:
    return OrchError(message, hint=hint, exit_code=ExitCode.USAGE)


def validate_name(name: str) -> str:
    if not contract.is_valid_name(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise _usage(f"invalid job name {json.dumps(shown)}", hint=contract.NAME_RULE)
    return name


def validate_command(command: str) -> str:
    if not command.strip():
        raise _usage("empty command", hint='give the command to run, e.g. orch run NAME "make train"')
    if "\0" in command:
        raise _usage("the command contains a NUL byte")
    return command


DURATION_RE = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
DURATION_RULE = "a duration such as 90s, 45m, 2h or 1h30m (days d, hours h, minutes m, seconds s), at most 30d"
MAX_DURATION = 30 * 86400


def parse_duration(value: str, flag: str) -> int:
    """VALUE (e.g. 1h30m) in whole seconds; a usage error that names FLAG and the accepted forms."""
    match = DURATION_RE.fullmatch(value.strip().lower())
    if value.strip() == "0":
        return 0
    if not value.strip() or match is None or not any(match.groups()):
        raise _usage(f"invalid {flag} {json.dumps(value)}", hint=DURATION_RULE)
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    if total > MAX_DURATION:
        raise _usage(f"{flag} {value} is longer than 30 days", hint=DURATION_RULE)
    return total


def validate_cwd(cwd: str | None) -> str | None:
    if cwd is None:
        return None
    if not cwd.strip() or any(c in cwd for c in "\0\n\r"):
        raise _usage(f"invalid --cwd {json.dumps(cwd)}", hint="give a directory on the host, e.g. ~/work/repo")
    return cwd


def parse_env(items: Iterable[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not contract.ENV_NAME_RE.fullmatch(key) or "\0" in value:
            raise _usage(f"invalid --env {json.dumps(item)}", hint="use --env NAME=VALUE with NAME like MY_VAR")
        env[key] = value
    return env


def parse_secrets(items: Iterable[str]) -> dict[str, str]:
    secrets: dict[str, str] = {}
    for item in items:
        key, sep, param = item.partition("=")
        if not sep or not contract.ENV_NAME_RE.fullmatch(key) or not SSM_PARAM_RE.fullmatch(param) or "//" in param:
            raise _usage(
                f"invalid --secret {json.dumps(item)}",
                hint="use --secret VAR=/ssm/parameter/name",
            )
        secrets[key] = param
    return secrets


def validate_notify(param: str | None) -> str | None:
    if param is None:
        return None
    if not SSM_PARAM_RE.fullmatch(param) or "//" in param:
        raise _usage(
            f"invalid --notify {json.dumps(param)}", hint="give an SSM parameter name, e.g. /orch/orch/notify/slack"
        )
    return param


def validate_repo(repo: str | None) -> str | None:
    """REPO or REPO@REF by the host's rule (contract.parse_repo); the host checks that it exists."""
    if repo is None:
        return None
    try:
        contract.parse_repo(repo)
    except contract.JobError as exc:
        raise _usage(f"invalid --repo: {exc}", hint="e.g. --repo lros or --repo lros@v1.2") from None
    return repo


def parse_mem(value: str | None) -> str | None:
    """`8G`, `512m`, `1.5`? -> normalised `8G`, `512M`; None when not given."""
    if value is None:
        return None
    try:
        return contract.memory_size(value)[1]
    except ValueError:
        raise _usage(f"invalid --mem {json.dumps(value)}", hint=contract.MEMORY_RULE) from None


def build_spec(
    name: str,
    command: str,
    cwd: str | None = None,
    env: Iterable[str] = (),
    secrets: Iterable[str] = (),
    mem: str | None = None,
    tty: bool = True,
    queue: bool = True,
    repo: str | None = None,
    notify: str | None = None,
) -> dict[str, Any]:
    """The job spec the start playbook hands to orch_job, every field validated."""
    env_map, secret_map = parse_env(env), parse_secrets(secrets)
    both = sorted(set(env_map) & set(secret_map))
    if both:
        raise _usage(f"{both[0]} is given both as --env and --secret", hint="keep one")
    return {
        "name": validate_name(name),
        "command": validate_command(command),
        "cwd": validate_cwd(cwd),
        "repo": validate_repo(repo),
        "env": env_map,
        "secrets": secret_map,
        "memory_max": parse_mem(mem),
        "tty": bool(tty),
        "queue": bool(queue),
        "notify": validate_notify(notify),
    }


def encode_spec(spec: dict[str, Any]) -> str:
    """base64(JSON): the command reaches the host verbatim, never templated by Ansible."""
    return base64.b64encode(json.dumps(spec, ensure_ascii=False).encode()).decode("ascii")


def decode_spec(blob: str) -> dict[str, Any]:
    return json.loads(base64.b64decode(blob))
