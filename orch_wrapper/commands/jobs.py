"""The verbs that change jobs: run (with placement), stop, rm. Input is validated before any remote work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import ui
from ..config import Settings
from ..errors import ExitCode, OrchError
from ..model import Host, Job, RunResult
from ..transport import inventory, runner
from . import shared
from .spec import build_spec, encode_spec, validate_name

# --- placement: --host, else the reachable host with the fewest active jobs --------------------------------------


def _pick_host(settings: Settings, hosts: list[Host], name: str, wanted: str | None) -> Host:
    if wanted is not None:
        target = inventory.find(hosts, wanted)
        if len(hosts) == 1:
            return target
    elif len(hosts) == 1:
        return hosts[0]  # the module refuses a duplicate running name itself, under its lock
    jobs, errors = shared.query_all(settings, hosts)
    shared.report_unreachable(errors)
    same = [j for j in jobs if j.name == name]
    for job in same:
        if job.has_processes:
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
    running = {h.name: sum(1 for j in jobs if j.host == h.name and j.has_processes) for h in reachable}
    return min(reachable, key=lambda h: running[h.name])


def _job_from(result: RunResult, host: str) -> dict[str, Any]:
    found = result.results(host, "job")
    return found[-1] if found and isinstance(found[-1], dict) else {}


def _ending(record: dict[str, Any]) -> str:
    """How the job ended, as " (exit 3)" or " (SIGTERM)" (the host records one or the other), else ""."""
    if record.get("exit_code") is not None:
        return f" (exit {record['exit_code']})"
    return f" ({record['signal']})" if record.get("signal") else ""


# --- verbs ---------------------------------------------------------------------------------------------------------


def run(
    settings: Settings,
    *,
    name: str,
    command: str,
    host: str | None,
    cwd: str | None,
    env: Sequence[str],
    secrets: Sequence[str],
    mem: str | None,
    tty: bool = True,
) -> int:
    spec = build_spec(name, command, cwd, env, secrets, mem, tty)
    hosts = shared.usable_hosts(settings)
    target = _pick_host(settings, hosts, spec["name"], host)
    agent_error = shared.load_key(settings)
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
    print(f"{name}: {state}{_ending(record)} on {target.name} ({target.address})")
    print(f"  follow: orch logs {name} -f")
    print(f"  attach: orch attach {name}")
    cap = record.get("memory_cap")
    if record.get("memory_max") is not None and cap != "enforced":  # never silently uncapped
        ui.warn(f"job {name} runs without its --mem cap on {target.name}: {cap or 'not recorded'}")
    return ExitCode.OK


def _change(settings: Settings, playbook: str, job: Job, extravars: dict[str, Any]) -> dict[str, Any]:
    agent_error = shared.load_key(settings)
    result = runner.run_playbook(
        settings, playbook, {"orch_host": job.host, "orch_job_name": job.name, **extravars}, limit=job.host
    )
    if agent_error is not None and result.unreachable:
        raise agent_error
    return _job_from(result.check(), job.host)


def stop(settings: Settings, *, name: str, grace: int | None) -> int:
    validate_name(name)
    job = shared.locate(settings, name)
    if not job.has_processes:
        print(f"{name} on {job.host} already ended ({job.state})")
        return ExitCode.OK
    record = _change(settings, "job_stop", job, {"orch_job_grace": grace} if grace is not None else {})
    print(f"{name} on {job.host}: {record.get('state', 'KILLED')}{_ending(record)}")
    return ExitCode.OK


def rm(settings: Settings, *, name: str, purge: bool) -> int:
    validate_name(name)
    job = shared.locate(settings, name)
    if job.has_processes:
        raise OrchError(
            f"job {name} is {job.state.lower()} on {job.host}"
            + (f" with {job.live_processes} of its processes still running" if job.live_processes else ""),
            hint=f"`orch stop {name}` first",
            exit_code=ExitCode.USAGE,
        )
    _change(settings, "job_remove", job, {"orch_job_purge_logs": purge})
    print(f"removed {name} from {job.host}" + (" with its logs" if purge else " (logs kept; --purge removes them)"))
    return ExitCode.OK
