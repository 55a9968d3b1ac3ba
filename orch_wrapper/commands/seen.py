"""Where each job was last seen: ORCH_HOME/seen.json, {fleet: {job: host}}, kept by every fleet query. Read when a
job is on no running host (a stopped host may hold it: say which, and how to start it). Local only: no network."""

from __future__ import annotations

import json
import os

from ..config import Settings
from ..model import Job

FILE = "seen.json"


def _read(settings: Settings) -> dict[str, dict[str, str]]:
    try:
        data = json.loads((settings.home / FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update(settings: Settings, jobs: list[Job], answered: set[str], name: str | None = None) -> None:
    """JOBS as the hosts in ANSWERED reported them: all their jobs, or job NAME's runs alone."""
    data = _read(settings)
    fleet = data.get(settings.fleet)
    known = {k: v for k, v in fleet.items() if isinstance(v, str)} if isinstance(fleet, dict) else {}
    if name is None:  # a whole-host answer lists every job there: the ones it lacks are gone from it
        known = {job: host for job, host in known.items() if host not in answered}
    elif known.get(name) in answered:
        del known[name]
    for job in sorted(jobs, key=lambda j: (j.has_processes, j.started or "")):  # the latest run's host wins
        known[job.name] = job.host
    if known == (fleet if isinstance(fleet, dict) else {}):
        return
    data[settings.fleet] = known
    try:
        settings.ensure_home()
        tmp = settings.home / f"{FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, sort_keys=True))
        tmp.replace(settings.home / FILE)
    except OSError:
        pass  # a hint cache: a full laptop disk must not fail the query that feeds it


def host_of(settings: Settings, name: str) -> str | None:
    known = _read(settings).get(settings.fleet)
    host = known.get(name) if isinstance(known, dict) else None
    return host if isinstance(host, str) else None


def names(settings: Settings) -> list[str]:
    """Every job of the fleet seen so far (shell completion: no network while typing)."""
    known = _read(settings).get(settings.fleet)
    return sorted(str(name) for name in known) if isinstance(known, dict) else []
