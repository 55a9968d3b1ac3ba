"""orch's config file: the user's defaults for settings, in TOML (the standard library reads it).

    # ORCH_HOME/config.toml (or the file ORCH_CONFIG names)
    fleet = "research"
    region = "ap-northeast-1"
    profile = "work"
    mem = "8G"          # `orch run` without --mem
    notify = "/orch/research/notify/slack"   # `orch run` without --notify: the job-end webhook's SSM parameter
    plan = "reserved"   # `orch cost` prices the fleet's non-spot instances at the reserved rate

Only flat `key = "string"` lines: each key once, every key known. An error names the file and the line, so a typo
never turns silently into a default. The values are checked where the environment's are (config.py)."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ExitCode, OrchError

FILE = "config.toml"
# key -> what it sets, for `orch config` and the error that lists the keys
KEYS = {
    "fleet": "the fleet: the value of the instances' orch-fleet tag",
    "region": "the AWS region",
    "profile": "the AWS profile (credentials)",
    "mem": "`orch run`'s --mem when it is not given",
    "notify": "`orch run`'s --notify when it is not given: an SSM parameter holding a webhook URL",
    "plan": "`orch cost`'s price plan for on-demand instances: on-demand or reserved",
}


def _bad(path: Path, message: str, hint: str) -> OrchError:
    return OrchError(f"{path}: {message}", hint=hint, exit_code=ExitCode.CONFIG)


def line_of(text: str, key: str) -> int:
    """The 1-based line that sets KEY (tomllib keeps no positions of the values it returns)."""
    name = rf"""(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')"""
    pattern = re.compile(rf"\s*(?:{name}\s*[=.]|\[+\s*{name}\s*[\].])")  # `key = ...`, `key.sub = ...`, `[key]`
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return 0


def read(path: Path, *, required: bool) -> dict[str, tuple[str, int]]:
    """{key: (value, line)} from PATH; {} when it does not exist and is not REQUIRED (the default path)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise _bad(path, "does not exist (ORCH_CONFIG names it)", "create it, or unset ORCH_CONFIG") from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(path, f"cannot be read: {exc}", "fix its permissions or encoding, or remove it") from None
    import tomllib  # here: most calls of orch find no file, and `orch status` should start fast

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message ends with the place: "Invalid value (at line 2, column 7)"
        place = re.search(r"\s*\(at line (\d+), column \d+\)$", str(exc))
        said = (
            f"line {place.group(1)}: not valid TOML: {str(exc)[: place.start()]}" if place else f"not valid TOML: {exc}"
        )
        raise _bad(path, said, 'write one `key = "value"` per line') from None
    values = {}
    for key, value in data.items():
        line = line_of(text, key)
        if key not in KEYS:
            raise _bad(path, f"line {line}: unknown key {key!r}", f"the keys are {', '.join(KEYS)}")
        if not isinstance(value, str):
            raise _bad(path, f"line {line}: {key} must be a quoted string", f'e.g. {key} = "..."')
        values[key] = (value, line)
    return values
