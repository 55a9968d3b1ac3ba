"""The verbs that read jobs: status, logs, wait, attach, ssh-config. Input is validated before any remote work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from orch_host import contract

from .. import timings, ui
from ..config import Settings
from ..errors import ExitCode, OrchError
from ..model import Host, Job, shown_by_default, tmux_server, tmux_session
from ..transport import inventory, ssh
from . import shared
from .spec import parse_duration, validate_name


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
                for line in [
                    ui.mode_text(job),
                    *filter(None, [ui.repo_text(job), ui.notify_text(job)]),
                    *ui.memory_lines(job),
                ]:
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


def _hosts_of(settings: Settings, names: list[str]) -> dict[str, list[str]]:
    """{host: [job names]}: where each job of NAMES is (its latest run). A one-host fleet asks nothing: the host's
    own `wait` refuses a job it does not have."""
    hosts = shared.usable_hosts(settings)
    if len(hosts) == 1:
        for name in names:
            shared.not_on_a_stopped_host(settings, name)  # local: where the job was last seen
        shared.load_key(settings)
        return {hosts[0].name: names}
    jobs, errors = shared.query_all(settings, hosts)
    where = {j.name: j.host for j in sorted(jobs, key=lambda j: (j.has_processes, j.started or ""))}
    for name in names:
        if name not in where:
            shared.not_on_a_stopped_host(settings, name)
            shared.report_unreachable(errors)
            raise OrchError(f"no job {name}", hint="see `orch status --all`", exit_code=ExitCode.NOT_FOUND)
    grouped: dict[str, list[str]] = {}
    for name in names:
        grouped.setdefault(where[name], []).append(name)
    return grouped


def _watch(settings: Settings, host: Host, names: list[str], timeout: int | None, out: Any) -> None:
    """One ssh channel to HOST running its `wait`: each JSON line it writes goes to OUT (a queue) as (host, data),
    then (host, None) once the channel ends, or (host, OrchError)."""
    args = ["wait", *names, *(["--timeout", str(timeout)] if timeout is not None else [])]
    remote, source = ssh.host_command(args)
    try:
        proc = subprocess.Popen(
            ssh.argv(settings, host, remote), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:  # no ssh here: said, never a thread that dies and leaves `wait` waiting
        out.put((host.name, OrchError(f"cannot run ssh: {exc}", hint="run `orch doctor`", exit_code=ExitCode.CONFIG)))
        return
    try:
        if proc.stdin is not None:
            try:
                proc.stdin.write(source)
                proc.stdin.close()
            except BrokenPipeError:  # the installed copy reads no stdin, or ssh ended: its status says which
                pass
        for line in proc.stdout or ():
            try:
                out.put((host.name, json.loads(line)))
            except ValueError:
                continue
        rc = proc.wait()
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        if rc == 0:
            out.put((host.name, None))
        elif rc == 255:
            said = err.splitlines()[-1] if err else "ssh failed"
            out.put((host.name, OrchError(f"{host.name} is unreachable: {said}", hint="run `orch doctor`",
                                          exit_code=ExitCode.UNREACHABLE)))  # fmt: skip
        else:
            message = err.splitlines()[-1].removeprefix("orch: ") if err else f"wait ended with status {rc}"
            code = ExitCode.NOT_FOUND if rc == ssh.UNKNOWN_JOB else ExitCode.FAILURE
            out.put((host.name, OrchError(message, hint="see `orch status --all`", exit_code=code)))
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()


def wait(settings: Settings, *, names: list[str], timeout: str | None) -> int:
    """Until every job of NAMES has ended: one line each as it ends, sent by its host (no polling over SSH). Exits
    with the job's own code for one job; for several, with the code of the first to fail (in the order they
    ended), else 0; ExitCode.TIMEOUT when --timeout passes first."""
    import queue
    import threading

    names = list(dict.fromkeys(validate_name(n) for n in names))
    seconds = parse_duration(timeout, "--timeout") if timeout is not None else None
    by_host = _hosts_of(settings, names)
    fleet = {h.name: h for h in inventory.require(settings)}
    events: queue.Queue = queue.Queue()
    for host, group in by_host.items():
        threading.Thread(target=_watch, args=(settings, fleet[host], group, seconds, events), daemon=True).start()
    open_hosts, codes, still, failure = set(by_host), {}, [], None
    while open_hosts:
        host, data = events.get()
        if data is None or isinstance(data, OrchError):
            open_hosts.discard(host)
            failure = failure or (data if isinstance(data, OrchError) else None)
        elif "job" in data:
            job = Job.from_record(host, data["job"])
            codes[job.name] = contract.exit_code_of(data["job"])
            print(ui.ended_text(job), flush=True)
        elif "timeout" in data:
            still += [str(n) for n in data["timeout"]]
    if failure is not None:
        raise failure
    if still:
        ui.warn(f"still active after {ui.human_duration(seconds)}: {', '.join(still)}")
        return ExitCode.TIMEOUT
    if len(names) == 1:
        return codes[names[0]]
    return next((code for code in codes.values() if code != 0), ExitCode.OK)


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
