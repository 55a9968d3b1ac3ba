"""What the job and read verbs share: the usable hosts, the fleet key, every host's jobs, finding one job."""

from __future__ import annotations

from typing import NamedTuple

from .. import timings, ui
from ..config import Settings
from ..errors import ExitCode, OrchError
from ..model import Host, HostIdle, HostMemory, Job, collect
from ..transport import agent, inventory, ssh
from . import seen


def usable_hosts(settings: Settings) -> list[Host]:
    hosts = inventory.require(settings)
    usable = [h for h in hosts if h.usable]
    for host in hosts:
        if not host.usable:
            ui.warn(f"{host.name} is {host.state}: skipped")
    if not usable:
        raise OrchError(
            f"no running host in fleet {settings.fleet} ({', '.join(f'{h.name} {h.state}' for h in hosts)})",
            hint="`orch up` starts the fleet's instances",
            exit_code=ExitCode.UNREACHABLE,
        )
    return usable


def load_key(settings: Settings) -> OrchError | None:
    """Load the key; a failure only matters if ssh then fails too (a warm control socket needs no key)."""
    try:
        agent.ensure(settings)
    except OrchError as exc:
        return exc
    return None


class Fleet(NamedTuple):
    """What the hosts answered: their jobs, the unreachable hosts' errors, and, for a whole-host query, each host's
    memory and idle auto-stop as it reports them."""

    jobs: list[Job]
    errors: dict[str, str]
    memory: dict[str, HostMemory]
    idle: dict[str, HostIdle]


def query_all(settings: Settings, hosts: list[Host], name: str | None = None) -> tuple[list[Job], dict[str, str]]:
    fleet = query_fleet(settings, hosts, name)
    return fleet.jobs, fleet.errors


def query_fleet(settings: Settings, hosts: list[Host], name: str | None = None) -> Fleet:
    """Every host's jobs (all, or NAME's), with what else a whole-host query tells (Fleet)."""
    agent_error = load_key(settings)
    timings.mark("agent check")
    replies = ssh.query(settings, hosts, name)
    jobs, errors = collect(replies)
    timings.mark("host call")
    seen.update(settings, jobs, {h.name for h in hosts} - set(errors), name)
    if agent_error is not None and len(errors) == len(hosts):
        raise agent_error
    memory = {r.host.name: m for r in replies if (m := HostMemory.from_reply(r.data)) is not None}
    idle = {r.host.name: i for r in replies if (i := HostIdle.from_reply(r.data)) is not None}
    return Fleet(jobs, errors, memory, idle)


def report_unreachable(errors: dict[str, str]) -> None:
    for host, error in errors.items():
        ui.warn(f"{host} is unreachable: {error} (run `orch doctor`)")


def not_on_a_stopped_host(settings: Settings, name: str) -> dict[str, str]:
    """The fleet's hosts that are not running, by name with their state; an OrchError saying how to start it when
    job NAME was last seen on one of them (its record and log wait on that host's disk)."""
    down = {h.name: h.state for h in inventory.load(settings) if not h.usable}
    last = seen.host_of(settings, name)
    if last in down:
        raise OrchError(
            f"job {name} is on {last}, which is {down[last]}",
            hint=f"`orch up {last}` starts it (then try again)",
            exit_code=ExitCode.UNREACHABLE,
        )
    return down


def locate(settings: Settings, name: str) -> Job:
    """The job called NAME, wherever it is in the fleet."""
    jobs, errors = query_all(settings, usable_hosts(settings), name)
    found = [j for j in jobs if j.name == name]
    if not found:
        down = not_on_a_stopped_host(settings, name)
        report_unreachable(errors)
        if errors:
            raise OrchError(
                f"no job {name} on the reachable hosts", hint="run `orch doctor`", exit_code=ExitCode.UNREACHABLE
            )
        if down:
            raise OrchError(
                f"no job {name} on the running hosts; {', '.join(down)} {'is' if len(down) == 1 else 'are'} "
                "not running and may hold it",
                hint=f"`orch up {next(iter(down))}` starts it, or see `orch status --all`",
                exit_code=ExitCode.NOT_FOUND,
            )
        raise OrchError(f"no job {name}", hint="see `orch status --all`", exit_code=ExitCode.NOT_FOUND)
    found.sort(key=lambda j: (j.has_processes, j.started or ""))
    return found[-1]
