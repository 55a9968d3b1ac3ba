"""ssh for the read paths: argv from a Host's inventory settings; the host code run over a multiplexed connection."""

from __future__ import annotations

import functools
import json
import shlex
import subprocess
from collections.abc import Iterable, Sequence

from orch_host import bundle
from orch_host.contract import EXIT_UNKNOWN_JOB

from ..config import Settings
from ..errors import ExitCode, OrchError
from ..model import Host, HostReply

UNKNOWN_JOB = EXIT_UNKNOWN_JOB  # the host's exit status for `query NAME` / `follow NAME` of a job it does not have
QUERY_TIMEOUT = 30  # seconds for one host's query, connection included
_SUN_PATH_MAX = 104  # the smallest unix socket path limit (macOS); ssh adds a 17-character suffix while binding


def _quote_value(value: str) -> str:
    return f'"{value}"' if any(c.isspace() for c in value) else value


def options(settings: Settings) -> list[tuple[str, str]]:
    """The ssh options orch uses everywhere (direct ssh, Ansible, `orch ssh-config`)."""
    control_path = settings.control_dir / "%C"
    if len(str(control_path)) - 2 + 40 + 17 > _SUN_PATH_MAX:
        raise OrchError(
            f"ORCH_HOME {settings.home} is too long for ssh control sockets",
            hint="set ORCH_HOME to a shorter path",
            exit_code=ExitCode.CONFIG,
        )
    return [
        ("BatchMode", "yes"),
        ("ControlMaster", "auto"),
        ("ControlPath", _quote_value(str(control_path))),
        ("ControlPersist", "10m"),
        ("ConnectTimeout", "5"),
        ("ServerAliveInterval", "15"),
        ("IdentityAgent", _quote_value(str(settings.agent_sock))),
        ("IdentitiesOnly", "no"),
        ("UserKnownHostsFile", _quote_value(str(settings.known_hosts))),
        ("StrictHostKeyChecking", "accept-new"),
    ]


def option_args(settings: Settings) -> list[str]:
    return [arg for key, value in options(settings) for arg in ("-o", f"{key}={value}")]


def ansible_ssh_args(settings: Settings) -> str:
    """ANSIBLE_SSH_ARGS: the same options, so Ansible shares orch's control sockets and agent."""
    return shlex.join(option_args(settings))


def argv(
    settings: Settings, host: Host, remote: Sequence[str] = (), tty: bool = False, shell: str | None = None
) -> list[str]:
    """`ssh ... HOST -- REMOTE...` with the host's address, port, user and extra args taken from the inventory.

    REMOTE words are quoted for the remote shell; SHELL is a command line passed as is (callers build it from
    validated values only).
    """
    args = ["ssh", *option_args(settings)]
    if tty:
        args.append("-t")
    args += ["-p", str(host.ssh_port), "-l", host.ssh_user, *host.ssh_common_args, host.ssh_host]
    if remote:
        # The remote side hands the words to a shell: quote each one.
        args += ["--", shlex.join(remote)]
    elif shell:
        args += ["--", shell]
    return args


@functools.lru_cache(maxsize=1)
def _host_package() -> dict[str, str]:
    return bundle.sources()


def host_command(script_args: Sequence[str]) -> tuple[list[str], bytes]:
    """The remote argv that runs the host package's script with SCRIPT_ARGS, and the bytes to send on its stdin.

    The host imports its installed copy (~/.orch/lib/<hash>/, bytecode cached; the module installs the same one)
    and reads the package's files from stdin only when that copy is missing.
    """
    return bundle.read_path_command(list(script_args), _host_package())


def run_host_code(
    settings: Settings, host: Host, script_args: Sequence[str], timeout: float = QUERY_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """`ssh HOST python3 ... ARGS`: the host code as a stdlib script (see host_command)."""
    remote, source = host_command(script_args)
    return subprocess.run(argv(settings, host, remote), input=source, capture_output=True, timeout=timeout, check=False)


def call_json(settings: Settings, host: Host, script_args: Sequence[str]) -> HostReply:
    """The host script's JSON answer to SCRIPT_ARGS, or why there is none (ssh failed, no answer, its one-line
    error)."""
    try:
        proc = run_host_code(settings, host, script_args)
    except subprocess.TimeoutExpired:
        return HostReply(host, None, f"no answer within {QUERY_TIMEOUT} s")
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    if proc.returncode == 255:
        return HostReply(host, None, lines[-1] if lines else "ssh failed")
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        said = lines[-1].removeprefix("orch: ") if lines else "no output"
        return HostReply(host, None, said if proc.returncode == 1 else f"bad reply (exit {proc.returncode}): {said}")
    if not isinstance(data, dict):
        return HostReply(host, None, "bad reply: not a JSON object")
    return HostReply(host, data, None)


def _query_one(settings: Settings, host: Host, name: str | None) -> HostReply:
    try:
        proc = run_host_code(settings, host, ["query", *([name] if name else [])])
    except subprocess.TimeoutExpired:
        return HostReply(host, None, f"no answer within {QUERY_TIMEOUT} s")
    if proc.returncode == 255:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        return HostReply(host, None, lines[-1] if lines else "ssh failed")
    if proc.returncode == UNKNOWN_JOB and name:
        return HostReply(host, {"jobs": []}, None)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        return HostReply(host, None, f"bad reply (exit {proc.returncode}): {lines[-1] if lines else 'no output'}")
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        return HostReply(host, None, "bad reply: no jobs list")
    return HostReply(host, data, None)


def each(settings: Settings, hosts: Iterable[Host], script_args: Sequence[str]) -> list[HostReply]:
    """call_json on every host in parallel; replies in the hosts' order."""
    hosts = list(hosts)
    if len(hosts) == 1:
        return [call_json(settings, hosts[0], script_args)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(32, len(hosts))) as pool:
        return list(pool.map(lambda h: call_json(settings, h, script_args), hosts))


def query(settings: Settings, hosts: Iterable[Host], name: str | None = None) -> list[HostReply]:
    """Every host queried in parallel; replies in the hosts' order."""
    hosts = list(hosts)
    if len(hosts) == 1:
        return [_query_one(settings, hosts[0], name)]
    from concurrent.futures import ThreadPoolExecutor  # a one-host fleet does without (and its imports)

    with ThreadPoolExecutor(max_workers=min(32, len(hosts))) as pool:
        return list(pool.map(lambda h: _query_one(settings, h, name), hosts))


def close_masters(settings: Settings, hosts: Iterable[Host]) -> None:
    """End orch's multiplexed connections to these hosts (`ssh -O exit`), e.g. before the hosts go away."""
    for host in hosts:
        cmd = argv(settings, host)
        cmd[1:1] = ["-O", "exit"]
        subprocess.run(cmd, capture_output=True, timeout=10, check=False)
