"""The verbs that change jobs: run (with placement), stop, rm. Input is validated before any remote work."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from orch_host import contract

from .. import ui
from ..config import Settings
from ..errors import ExitCode, OrchError
from ..model import Host, HostMemory, Job, RunResult
from ..transport import inventory, runner
from . import instances, seen, shared
from .spec import build_spec, encode_spec, validate_name

# --- placement: --host, else by memory (where the job fits now, else where it starts soonest) -----------------------


def _pick_host(
    settings: Settings,
    hosts: list[Host],
    name: str,
    wanted: str | None,
    reservation: int | None = None,
    queue: bool = True,
) -> Host:
    """Where job NAME runs: --host WANTED; else where a finished run of the name has its history; else by memory
    (_by_memory), the fewest active jobs breaking ties. One host is used as it is (its module refuses what it must)."""
    if wanted is not None:
        target = inventory.find(hosts, wanted)
        if len(hosts) == 1:
            return target
    elif len(hosts) == 1:
        return hosts[0]  # the module refuses a duplicate running name itself, under its lock
    jobs, errors, memory, _idle = shared.query_fleet(settings, hosts)
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
    waiting = {h.name: sum(1 for j in jobs if j.host == h.name and j.queue_position is not None) for h in reachable}
    return _by_memory(reachable, memory, reservation, running, waiting, queue)


def _by_memory(
    hosts: list[Host],
    memory: dict[str, HostMemory],
    reservation: int | None,
    running: dict[str, int],
    waiting: dict[str, int],
    queue: bool = True,
) -> Host:
    """Where a job reserving RESERVATION (else the default reservation) goes: the host with the most unreserved
    memory for jobs (orch.slice's limit less active reservations) that holds it now; when none does, the host where
    it starts soonest: one whose orch.slice can hold it, with the fewest jobs WAITING ahead (then the most
    unreserved), or with QUEUE false a refusal. A reservation larger than every host's orch.slice is refused with the
    figures. Hosts that report no slice (not configured yet: they admit at once) come after those that do; among
    equals, the fewest active jobs."""
    wanted = contract.DEFAULT_RESERVATION if reservation is None else reservation

    def free(host: Host) -> int | None:
        mem = memory.get(host.name)
        if mem is None or mem.memory_allocatable is None:
            return None
        return mem.memory_allocatable - (mem.memory_reserved or 0)

    known = {h.name: m.memory_allocatable for h in hosts if (m := memory.get(h.name)) and m.memory_allocatable}
    if known and len(known) == len(hosts) and wanted > max(known.values()):
        largest = max(known, key=lambda n: known[n])
        what = "--mem " + ui.human_size(wanted) if reservation is not None else f"the default {ui.human_size(wanted)}"
        raise OrchError(
            f"{what} is more than any host can give a job: the largest, {largest}, "
            f"has {ui.human_size(known[largest])} for jobs (orch.slice)",
            hint="ask for less, or add a larger host to the fleet",
            exit_code=ExitCode.USAGE,
        )
    holding = [h for h in hosts if free(h) is None or free(h) >= wanted]
    if holding:
        return min(holding, key=lambda h: (free(h) is None, -(free(h) or 0), running[h.name]))
    freest = max(hosts, key=lambda h: free(h) or 0)
    if not queue:
        raise OrchError(
            f"no host has {ui.human_size(wanted)} unreserved now: the freest, {freest.name}, has "
            f"{ui.human_size(max(free(freest) or 0, 0))} (--no-queue refuses rather than queues)",
            hint="run it without --no-queue to wait for memory, or ask for less with --mem",
            exit_code=ExitCode.USAGE,
        )
    able = [h for h in hosts if h.name not in known or known[h.name] >= wanted]
    chosen = min(able, key=lambda h: (waiting[h.name], -(free(h) or 0), running[h.name]))
    print(
        f"orch: no host has {ui.human_size(wanted)} unreserved now: {name_queue(chosen.name, waiting[chosen.name])}",
        file=sys.stderr,
    )
    return chosen


def name_queue(host: str, ahead: int) -> str:
    """Where a job that must wait goes, and how many wait before it there."""
    return f"queued on {host}, where {ahead} job(s) wait before it" if ahead else f"queued on {host}, first in line"


def _hosts_for_a_run(settings: Settings, wanted: str | None) -> list[Host]:
    """The running hosts a job may go to. A fleet with none running, or a stopped --host, gets that host started
    first (the first stopped one by name without --host), so `orch run` works on a fleet that stopped itself."""
    fleet = inventory.require(settings)
    named = inventory.find(fleet, wanted) if wanted is not None else None
    if named is not None and named.usable or named is None and any(h.usable for h in fleet):
        return shared.usable_hosts(settings)
    stopped = [h for h in fleet if h.state == "stopped" and (named is None or h.name == named.name)]
    if not stopped:
        return shared.usable_hosts(settings)  # pending or stopping: says so
    chosen = stopped[0]
    why = f"{chosen.name} is stopped" if named is not None else f"no host of fleet {settings.fleet} is running"
    print(f"orch: {why}: starting {chosen.name} for the job", file=sys.stderr)
    instances.start_hosts(settings, [chosen], lambda line: print(f"  {line}", file=sys.stderr))
    return shared.usable_hosts(settings)


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
    queue: bool = True,
    repo: str | None = None,
    notify: str | None = None,
) -> int:
    mem = mem if mem is not None else settings.mem
    spec = build_spec(name, command, cwd, env, secrets, mem, tty, queue, repo, notify or settings.notify)
    hosts = _hosts_for_a_run(settings, host)
    reservation = contract.memory_size(spec["memory_max"])[0] if spec.get("memory_max") else None
    target = _pick_host(settings, hosts, spec["name"], host, reservation, queue)
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
    if record:
        seen.update(settings, [Job.from_record(target.name, record)], {target.name}, name)
    state = record.get("state", "RUNNING")
    queued = ""
    if state == "QUEUED":
        wants = record.get("reservation")
        size = ui.human_size(wants) if isinstance(wants, int) else "its memory"
        queued = f" (#{record.get('queue_position') or '?'} in its queue: starts when {size} of orch.slice frees)"
    print(f"{name}: {state}{_ending(record)}{queued} on {target.name} ({target.address})")
    if isinstance(record.get("repo"), dict):
        print(
            f"  repo:   {record['repo'].get('name')}@{record['repo'].get('ref')}, commit {record['repo'].get('commit')}"
        )
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
