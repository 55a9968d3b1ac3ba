"""The job verbs: run, status, logs, attach, stop, rm, ssh-config. Input is validated before any remote work."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from .. import ui
from ..config import Settings
from ..errors import ExitCode, OrchError
from ..model import Host, Job, collect, shown_by_default, tmux_session
from ..transport import agent, inventory, ssh

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SSM_PARAM_RE = re.compile(r"/[A-Za-z0-9_.\-/]{1,1010}")
MEM_RE = re.compile(r"([0-9]{1,7})([KMGT]?)(?:I?B)?", re.IGNORECASE)


def _usage(message: str, hint: str | None = None) -> OrchError:
    return OrchError(message, hint=hint, exit_code=ExitCode.USAGE)


# --- validation (pure) ---------------------------------------------------------------------------------------------


def validate_name(name: str) -> str:
    if not NAME_RE.fullmatch(name) or ".." in name:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise _usage(
            f"invalid job name {json.dumps(shown)}",
            hint="use 1-63 of a-z 0-9 . _ -, starting with a letter or digit, no '..'",
        )
    return name


def validate_command(command: str) -> str:
    if not command.strip():
        raise _usage("empty command", hint='give the command to run, e.g. orch run NAME "make train"')
    if "\0" in command:
        raise _usage("the command contains a NUL byte")
    return command


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
        if not sep or not VAR_RE.fullmatch(key) or "\0" in value:
            raise _usage(f"invalid --env {json.dumps(item)}", hint="use --env NAME=VALUE with NAME like MY_VAR")
        env[key] = value
    return env


def parse_secrets(items: Iterable[str]) -> dict[str, str]:
    secrets: dict[str, str] = {}
    for item in items:
        key, sep, param = item.partition("=")
        if not sep or not VAR_RE.fullmatch(key) or not SSM_PARAM_RE.fullmatch(param) or "//" in param:
            raise _usage(
                f"invalid --secret {json.dumps(item)}",
                hint="use --secret VAR=/ssm/parameter/name",
            )
        secrets[key] = param
    return secrets


def parse_mem(value: str | None) -> str | None:
    """`8G`, `512m`, `1.5`? -> normalised `8G`, `512M`; None when not given."""
    if value is None:
        return None
    match = MEM_RE.fullmatch(value.strip())
    if not match or int(match.group(1)) == 0:
        raise _usage(f"invalid --mem {json.dumps(value)}", hint="use a size like 8G or 512M")
    return f"{int(match.group(1))}{match.group(2).upper()}"


def build_spec(
    name: str,
    command: str,
    cwd: str | None = None,
    env: Iterable[str] = (),
    secrets: Iterable[str] = (),
    mem: str | None = None,
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
        "env": env_map,
        "secrets": secret_map,
        "memory_max": parse_mem(mem),
    }


def encode_spec(spec: dict[str, Any]) -> str:
    """base64(JSON): the command reaches the host verbatim, never templated by Ansible."""
    return base64.b64encode(json.dumps(spec, ensure_ascii=False).encode()).decode("ascii")


def decode_spec(blob: str) -> dict[str, Any]:
    return json.loads(base64.b64decode(blob))


# --- helpers shared by the verbs -----------------------------------------------------------------------------------


def _usable_hosts(settings: Settings) -> list[Host]:
    hosts = inventory.require(settings)
    usable = [h for h in hosts if h.usable]
    for host in hosts:
        if not host.usable:
            ui.warn(f"{host.name} is {host.state}: skipped")
    if not usable:
        raise OrchError(
            f"no running host in fleet {settings.fleet}",
            hint="start an instance (or `orch sandbox up`)",
            exit_code=ExitCode.UNREACHABLE,
        )
    return usable


def _agent(settings: Settings) -> OrchError | None:
    """Load the key; a failure only matters if ssh then fails too (a warm control socket needs no key)."""
    try:
        agent.ensure(settings)
    except OrchError as exc:
        return exc
    return None


def _query_all(settings: Settings, hosts: list[Host], name: str | None = None) -> tuple[list[Job], dict[str, str]]:
    agent_error = _agent(settings)
    jobs, errors = collect(ssh.query(settings, hosts, name))
    if agent_error is not None and len(errors) == len(hosts):
        raise agent_error
    return jobs, errors


def _report_unreachable(errors: dict[str, str]) -> None:
    for host, error in errors.items():
        ui.warn(f"{host} is unreachable: {error} (run `orch doctor`)")


def locate(settings: Settings, name: str) -> Job:
    """The job called NAME, wherever it is in the fleet."""
    jobs, errors = _query_all(settings, _usable_hosts(settings), name)
    found = [j for j in jobs if j.name == name]
    if not found:
        _report_unreachable(errors)
        if errors:
            raise OrchError(
                f"no job {name} on the reachable hosts", hint="run `orch doctor`", exit_code=ExitCode.UNREACHABLE
            )
        raise OrchError(f"no job {name}", hint="see `orch status --all`", exit_code=ExitCode.NOT_FOUND)
    found.sort(key=lambda j: (j.active, j.started or ""))
    return found[-1]


def _pick_host(settings: Settings, hosts: list[Host], name: str, wanted: str | None) -> Host:
    if wanted is not None:
        target = inventory.find(hosts, wanted)
        if len(hosts) == 1:
            return target
    elif len(hosts) == 1:
        return hosts[0]  # the module refuses a duplicate running name itself, under its lock
    jobs, errors = _query_all(settings, hosts)
    _report_unreachable(errors)
    same = [j for j in jobs if j.name == name]
    for job in same:
        if job.active:
            raise OrchError(
                f"job {name} is already {job.state.lower()} on {job.host}",
                hint=f"`orch stop {name}` first, or choose another name",
                exit_code=ExitCode.USAGE,
            )
    if wanted is not None:
        return target
    if same:  # a finished job of that name: rerun it where its history is
        return inventory.find(hosts, same[-1].host)
    reachable = [h for h in hosts if h.name not in errors]
    if not reachable:
        raise OrchError("no host of the fleet is reachable", hint="run `orch doctor`", exit_code=ExitCode.UNREACHABLE)
    running = {h.name: sum(1 for j in jobs if j.host == h.name and j.active) for h in reachable}
    return min(reachable, key=lambda h: running[h.name])


def _job_from(result: Any, host: str) -> dict[str, Any]:
    found = result.results(host, "job")
    return found[-1] if found and isinstance(found[-1], dict) else {}


# --- verbs ---------------------------------------------------------------------------------------------------------


def run(
    settings: Settings,
    name: str,
    command: str,
    host: str | None = None,
    cwd: str | None = None,
    env: Sequence[str] = (),
    secrets: Sequence[str] = (),
    mem: str | None = None,
) -> int:
    from ..transport import runner

    spec = build_spec(name, command, cwd, env, secrets, mem)
    hosts = _usable_hosts(settings)
    target = _pick_host(settings, hosts, spec["name"], host)
    agent_error = _agent(settings)
    result = runner.run_playbook(
        settings,
        "job_start",
        {"orch_host": target.name, "orch_job_spec_b64": encode_spec(spec)},
        limit=target.name,
    )
    if agent_error is not None and result.unreachable:
        raise agent_error
    result.check()
    record = _job_from(result, target.name)
    state = record.get("state", "RUNNING")
    ended = f" (exit {record['exit_code']})" if record.get("exit_code") is not None else ""
    print(f"{name}: {state}{ended} on {target.name} ({target.address})")
    print(f"  follow: orch logs {name} -f")
    print(f"  attach: orch attach {name}")
    return ExitCode.OK


def status(settings: Settings, name: str | None = None, show_all: bool = False, as_json: bool = False) -> int:
    if name is not None:
        validate_name(name)
    hosts = _usable_hosts(settings)
    jobs, errors = _query_all(settings, hosts, name)
    now = datetime.now(timezone.utc)
    if name is not None:
        jobs = [j for j in jobs if j.name == name]
    elif not show_all:
        jobs = [j for j in jobs if shown_by_default(j, now)]
    if as_json:
        json.dump({"jobs": [asdict(j) for j in jobs], "unreachable": errors}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif jobs:
        ui.print_jobs(jobs, now)
    _report_unreachable(errors)
    if errors:
        return ExitCode.UNREACHABLE
    if name is not None and not jobs:
        raise OrchError(f"no job {name}", hint="see `orch status --all`", exit_code=ExitCode.NOT_FOUND)
    if not jobs and not as_json:
        print("no jobs" + ("" if show_all else " running or finished in the last 24 h (`orch status --all`)"))
    return ExitCode.OK


def logs(settings: Settings, name: str, follow: bool = False, tail: int | None = None) -> int:
    validate_name(name)
    hosts = _usable_hosts(settings)
    if len(hosts) == 1:
        host = hosts[0]
        _agent(settings)
    else:
        host = inventory.find(hosts, locate(settings, name).host)
    if follow:
        remote, source = ssh.host_command(["follow", name, "--tail", str(10 if tail is None else tail)])
        cmd = ssh.argv(settings, host, remote)
    else:
        log = f"~/logs/{name}/run.log"  # NAME is validated: nothing in it a shell would expand
        cmd = ssh.argv(settings, host, shell=f"tail -n {tail} -- {log}" if tail is not None else f"cat -- {log}")
        source = None
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if source else subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if source and proc.stdin is not None:
            try:
                proc.stdin.write(source)
                proc.stdin.close()
            except BrokenPipeError:  # ssh ended early: its exit status and stderr say why
                pass
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        return ExitCode.INTERRUPTED
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    if rc == 255:
        raise OrchError(
            f"{host.name} is unreachable: {err.splitlines()[-1] if err else 'ssh failed'}",
            hint="run `orch doctor`",
            exit_code=ExitCode.UNREACHABLE,
        )
    if rc != 0 and err:
        if not follow and "No such file" in err:
            raise OrchError(
                f"no log for job {name} on {host.name}", hint="see `orch status --all`", exit_code=ExitCode.NOT_FOUND
            )
        message = err.splitlines()[-1].removeprefix("orch: ")
        raise OrchError(message, exit_code=ExitCode.NOT_FOUND if rc == ssh.UNKNOWN_JOB else rc)
    return rc


def attach(settings: Settings, name: str, read_only: bool = False) -> int:
    validate_name(name)
    job = locate(settings, name)
    if not job.active:
        raise OrchError(
            f"job {name} has finished ({job.state})", hint=f"see `orch logs {name}`", exit_code=ExitCode.USAGE
        )
    host = inventory.find(inventory.require(settings), job.host)
    remote = ["tmux", "attach-session", "-t", "=" + tmux_session(job), *(["-r"] if read_only else [])]
    cmd = ssh.argv(settings, host, remote, tty=True)
    sys.stdout.flush()
    os.execvp(cmd[0], cmd)
    return ExitCode.OK  # not reached: execvp replaces the process


def _change(settings: Settings, playbook: str, job: Job, extravars: dict[str, Any]) -> dict[str, Any]:
    from ..transport import runner

    agent_error = _agent(settings)
    result = runner.run_playbook(
        settings, playbook, {"orch_host": job.host, "orch_job_name": job.name, **extravars}, limit=job.host
    )
    if agent_error is not None and result.unreachable:
        raise agent_error
    return _job_from(result.check(), job.host)


def stop(settings: Settings, name: str, grace: int | None = None) -> int:
    validate_name(name)
    job = locate(settings, name)
    if not job.active:
        print(f"{name} on {job.host} already ended ({job.state})")
        return ExitCode.OK
    record = _change(settings, "job_stop", job, {"orch_job_grace": grace} if grace is not None else {})
    exit_code = record.get("exit_code")
    code = f" (exit {exit_code})" if exit_code is not None else ""
    print(f"{name} on {job.host}: {record.get('state', 'KILLED')}{code}")
    return ExitCode.OK


def rm(settings: Settings, name: str, purge: bool = False) -> int:
    validate_name(name)
    job = locate(settings, name)
    if job.active:
        raise OrchError(
            f"job {name} is {job.state.lower()} on {job.host}",
            hint=f"`orch stop {name}` first",
            exit_code=ExitCode.USAGE,
        )
    _change(settings, "job_remove", job, {"orch_job_purge_logs": purge})
    print(f"removed {name} from {job.host}" + (" with its logs" if purge else " (logs kept; --purge removes them)"))
    return ExitCode.OK


def ssh_config_text(settings: Settings, hosts: Iterable[Host]) -> str:
    lines = [
        "# orch fleet " + settings.fleet + ": generated by `orch ssh-config`; the key lives in orch's agent,",
        "# loaded by any orch command (e.g. `orch status`) for an hour at a time.",
    ]
    for host in hosts:
        lines += ["", f"Host {host.name}", f"  HostName {host.ssh_host}"]
        lines += [f"  Port {host.ssh_port}", f"  User {host.ssh_user}"]
        lines += [f"  {key} {value}" for key, value in ssh.options(settings) if key != "BatchMode"]
        args = list(host.ssh_common_args)
        for i, arg in enumerate(args):
            value = arg[2:] if arg.startswith("-o") and len(arg) > 2 else (args[i + 1] if arg == "-o" else None)
            if value:
                key, _, rest = value.partition("=")
                lines.append(f"  {key.strip()} {rest.strip()}")
    return "\n".join(lines) + "\n"


def ssh_config(settings: Settings) -> int:
    hosts = inventory.require(settings)
    error = _agent(settings)
    if error is not None:
        ui.warn(f"the fleet key is not loaded yet: {error}")
    sys.stdout.write(ssh_config_text(settings, hosts))
    return ExitCode.OK
