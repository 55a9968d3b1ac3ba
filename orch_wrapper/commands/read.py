"""The verbs that read jobs: status, logs, attach, ssh-config. Input is validated before any remote work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from .. import timings, ui
from ..config import Settings
from ..errors import ExitCode, OrchError
from ..model import Host, shown_by_default, tmux_server, tmux_session
from ..transport import inventory, ssh
from . import shared
from .spec import validate_name


def status(settings: Settings, *, name: str | None, show_all: bool, as_json: bool) -> int:
    if name is not None:
        validate_name(name)
    hosts = shared.usable_hosts(settings)
    timings.mark("fleet")
    jobs, errors, _memory, idle = shared.query_fleet(settings, hosts, name)
    now = datetime.now(timezone.utc)
    if name is not None:
        jobs = [j for j in jobs if j.name == name]
    elif not show_all:
        jobs = [j for j in jobs if shown_by_default(j, now)]
    fleet = inventory.load(settings) if name is None else []  # the whole fleet: stopped hosts too
    if as_json:
        hosts_json = [
            {"name": h.name, "state": h.state, "autostop": i.as_json() if (i := idle.get(h.name)) else None}
            for h in fleet
        ]
        json.dump({"jobs": [asdict(j) for j in jobs], "unreachable": errors, "hosts": hosts_json}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif jobs:
        ui.print_jobs(jobs, now)
        if name is not None:
            for job in jobs:
                for line in [ui.mode_text(job), *ui.memory_lines(job)]:
                    print("  " + line)
    if not as_json and jobs and fleet:  # under the table, indented like its detail lines
        for host in fleet:
            print("  " + ui.host_line(host, idle.get(host.name)))
    timings.mark("rendering")
    for job in jobs:
        if job.error:
            ui.warn(f"job {job.name} on {job.host}: {job.error}; `orch rm {job.name}` forgets it")
        if job.live_processes:
            ui.warn(
                f"job {job.name} on {job.host} is LOST but {job.live_processes} of its processes still run; "
                f"`orch stop {job.name}` ends them"
            )
        if job.log_note:
            ui.warn(f"job {job.name} on {job.host}: {job.log_note}")
    shared.report_unreachable(errors)
    if errors:
        return ExitCode.UNREACHABLE
    if name is not None and not jobs:
        raise OrchError(f"no job {name}", hint="see `orch status --all`", exit_code=ExitCode.NOT_FOUND)
    if not jobs and not as_json:
        print("no jobs" + ("" if show_all else " running or finished in the last 24 h (`orch status --all`)"))
    return ExitCode.OK


def logs(settings: Settings, *, name: str, follow: bool, tail: int | None, plain: bool = False) -> int:
    validate_name(name)
    hosts = shared.usable_hosts(settings)
    if len(hosts) == 1:
        shared.not_on_a_stopped_host(settings, name)  # local: the fleet cache and where the job was last seen
        host = hosts[0]
        shared.load_key(settings)
    else:
        host = inventory.find(hosts, shared.locate(settings, name).host)
    if follow:
        remote, source = ssh.host_command(["follow", name, "--tail", str(10 if tail is None else tail)])
        cmd = ssh.argv(settings, host, remote)
    else:
        log = f"~/logs/{name}/run.log"  # NAME is validated: nothing in it a shell would expand
        cmd = ssh.argv(settings, host, shell=f"tail -n {tail} -- {log}" if tail is not None else f"cat -- {log}")
        source = None
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE if source else subprocess.DEVNULL,
        stdout=subprocess.PIPE if plain else None,
        stderr=subprocess.PIPE,
    )
    try:
        if source and proc.stdin is not None:
            try:
                proc.stdin.write(source)
                proc.stdin.close()
            except BrokenPipeError:  # ssh ended early: its exit status and stderr say why
                pass
        if plain and proc.stdout is not None:
            _print_plain(proc.stdout)
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


def _print_plain(stream: Any) -> None:
    """Copy STREAM to stdout as plain text (orch logs --plain), as it arrives."""
    from ..plain import Plain

    text, out = Plain(), sys.stdout.buffer
    while chunk := stream.read1(1 << 16):
        out.write(text.feed(chunk))
        out.flush()
    out.write(text.close())
    out.flush()


def attach(settings: Settings, *, name: str, read_only: bool) -> int:
    validate_name(name)
    job = shared.locate(settings, name)
    if not job.active:
        raise OrchError(
            f"job {name} has finished ({job.state})", hint=f"see `orch logs {name}`", exit_code=ExitCode.USAGE
        )
    host = inventory.find(inventory.require(settings), job.host)
    server, session = tmux_server(job), "=" + tmux_session(job)
    remote = ["tmux", *server, "attach-session", "-t", session, *(["-r"] if read_only else [])]
    cmd = ssh.argv(settings, host, remote, tty=True)
    sys.stdout.flush()
    os.execvp(cmd[0], cmd)
    return ExitCode.OK  # not reached: execvp replaces the process


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
    error = shared.load_key(settings)
    if error is not None:
        ui.warn(f"the fleet key is not loaded yet: {error}")
    sys.stdout.write(ssh_config_text(settings, hosts))
    return ExitCode.OK
