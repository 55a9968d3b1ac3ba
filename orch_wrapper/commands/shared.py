"""What the job and read verbs share: the usable hosts, the fleet key, every host's jobs, finding one job."""

from __future__ import annotations

from .. import timings, ui
from ..config import Settings
from ..errors import ExitCode, OrchError
from ..model import Host, HostMemory, Job, collect
from ..transport import agent, inventory, ssh


def usable_hosts(settings: Settings) -> list[Host]:
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


def load_key(settings: Settings) -> OrchError | None:
    """Load the key; a failure only matters if ssh then fails too (a warm control socket needs no key)."""
    try:
        agent.ensure(settings)
    except OrchError as exc:
        return exc
    return None


def query_all(settings: Settings, hosts: list[Host], name: str | None = None) -> tuple[list[Job], dict[str, str]]:
    jobs, errors, _memory = query_fleet(settings, hosts, name)
    return jobs, errors


def query_fleet(
    settings: Settings, hosts: list[Host], name: str | None = None
) -> tuple[list[Job], dict[str, str], dict[str, HostMemory]]:
    """Every host's jobs (all, or NAME's), the unreachable hosts' errors, and, for a whole-host query, each host's
    memory as it reports it."""
    agent_error = load_key(settings)
    timings.mark("agent check")
    replies = ssh.query(settings, hosts, name)
    jobs, errors = collect(replies)
    timings.mark("host call")
    if agent_error is not None and len(errors) == len(hosts):
        raise agent_error
    memory = {r.host.name: m for r in replies if (m := HostMemory.from_reply(r.data)) is not None}
    return jobs, errors, memory


def report_unreachable(errors: dict[str, str]) -> None:
    for host, error in errors.items():
        ui.warn(f"{host} is unreachable: {error} (run `orch doctor`)")


def locate(settings: Settings, name: str) -> Job:
    """The job called NAME, wherever it is in the fleet."""
    jobs, errors = query_all(settings, usable_hosts(settings), name)
    found = [j for j in jobs if j.name == name]
    if not found:
        report_unreachable(errors)
        if errors:
            raise OrchError(
                f"no job {name} on the reachable hosts", hint="run `orch doctor`", exit_code=ExitCode.UNREACHABLE
            )
        raise OrchError(f"no job {name}", hint="see `orch status --all`", exit_code=ExitCode.NOT_FOUND)
    found.sort(key=lambda j: (j.has_processes, j.started or ""))
    return found[-1]
