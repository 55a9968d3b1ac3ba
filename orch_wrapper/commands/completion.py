"""Shell completion: `orch completion bash|zsh` prints a script generated from orch's own argparse parser by shtab
(so it never drifts from the verbs and flags), and the script completes job and host names through
`orch __complete jobs|hosts`, which reads orch's local caches only (seen.json, fleet.json): no network while
typing. Names appear once a `status`, `run` or `hosts` has seen them."""

from __future__ import annotations

import argparse

from ..config import Settings
from ..errors import ExitCode
from ..transport import inventory
from . import seen

JOBS, HOSTS = "jobs", "hosts"  # the kinds of names; cli.py tags the arguments that take them
_BASH = r"""
_orch_names() { "${COMP_WORDS[0]:-orch}" __complete "$1" 2>/dev/null; }
_orch_jobs() { compgen -W "$(_orch_names jobs)" -- "$1"; }
_orch_hosts() { compgen -W "$(_orch_names hosts)" -- "$1"; }
"""
_ZSH = r"""
_orch_jobs() { local -a names; names=(${(f)"$(orch __complete jobs 2>/dev/null)"}); compadd -a names; }
_orch_hosts() { local -a names; names=(${(f)"$(orch __complete hosts 2>/dev/null)"}); compadd -a names; }
"""


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    import shtab  # here: only `orch completion` needs it

    return shtab.complete(parser, shell=shell, preamble={"bash": _BASH, "zsh": _ZSH})


def names(settings: Settings, kind: str) -> int:
    """`orch __complete KIND`: one name per line, from the local caches."""
    found = seen.names(settings) if kind == JOBS else inventory.cached_names(settings) if kind == HOSTS else None
    if found is None:
        return ExitCode.USAGE
    for name in found:
        print(name)
    return ExitCode.OK
