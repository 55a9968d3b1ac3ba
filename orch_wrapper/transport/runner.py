"""The ansible-runner adapter: the only importer of ansible_runner, and the one place its arguments are built."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import paths
from ..config import Settings
from ..model import RunResult
from . import ansible_env

ARTIFACTS_KEPT = 20
_IDENT = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}")  # run_ident()


def runner_kwargs(
    settings: Settings,
    name: str,
    extravars: Mapping[str, Any],
    limit: str | None,
    handler: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    """All of ansible_runner.run's arguments, built here and nowhere else."""
    kwargs: dict[str, Any] = {
        "private_data_dir": str(settings.home / "runner"),
        "ident": run_ident(),
        "project_dir": str(paths.project()),
        "playbook": str(paths.playbook(name)),
        "inventory": str(paths.inventory()),
        "extravars": {"orch_fleet": settings.fleet, **extravars},
        "envvars": ansible_env.envvars(settings),
        "quiet": True,
        "suppress_env_files": True,  # env/extravars files would go stale and keep the environment on disk
        "rotate_artifacts": 0,  # rotated by _rotate_artifacts: the runner's own rotation races concurrent runs
        "event_handler": handler,
    }
    if limit:
        kwargs["limit"] = limit
    return kwargs


def run_playbook(
    settings: Settings,
    name: str,
    extravars: Mapping[str, Any],
    limit: str | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run playbooks/NAME.yml against the fleet and read its results from the runner's events."""
    import ansible_runner  # ~0.2 s of imports: paid only by the verbs that change state

    ok: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, str] = {}
    unreachable: dict[str, str] = {}
    stats: dict[str, dict[str, int]] = {}

    def handler(event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        kind = event.get("event")
        host = data.get("host")
        res = data.get("res") or {}
        if kind == "runner_on_ok" and host:
            ok.setdefault(host, []).append(res)
        elif kind == "runner_on_failed" and host and not data.get("ignore_errors"):
            failed.setdefault(host, str(res.get("msg") or "task failed"))
        elif kind == "runner_on_unreachable" and host:
            unreachable.setdefault(host, str(res.get("msg") or "unreachable"))
        elif kind == "playbook_on_stats":
            for key, name_ in (
                ("ok", "ok"),
                ("changed", "changed"),
                ("failures", "failed"),
                ("dark", "unreachable"),
                ("skipped", "skipped"),
            ):
                for h, count in (data.get(key) or {}).items():
                    stats.setdefault(h, {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0})
                    stats[h][name_] = count
        if on_event is not None:
            on_event(event)
        return True

    settings.ensure_home()
    (settings.home / "runner").mkdir(mode=0o700, exist_ok=True)
    run = ansible_runner.run(**runner_kwargs(settings, name, extravars, limit, handler))
    _drop_environment_artifact(Path(run.config.artifact_dir))
    _rotate_artifacts(settings.home / "runner" / "artifacts")
    return RunResult(
        status=str(run.status), rc=int(run.rc or 0), ok=ok, failed=failed, unreachable=unreachable, stats=stats
    )


def run_ident() -> str:
    """A run's artifact folder name: its UTC start, so names sort by age (a folder's mtime does not: removing its
    files updates it), and a random part."""
    import time
    import uuid

    return time.strftime("%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:12]


def _rotate_artifacts(artifacts: Path, keep: int = ARTIFACTS_KEPT) -> None:
    """Keep the KEEP newest runs' artifacts. Concurrent `orch` calls rotate at once: a folder another removed first
    is no error (ansible-runner's own rotation failed there, and the run with it). Folders of other names (older
    orch versions) count as the oldest."""
    import shutil

    try:
        names = sorted(p.name for p in artifacts.iterdir())
    except FileNotFoundError:
        return
    runs = [n for n in names if not _IDENT.fullmatch(n)] + [n for n in names if _IDENT.fullmatch(n)]
    for old in runs[: max(len(runs) - keep, 0)]:
        shutil.rmtree(artifacts / old, ignore_errors=True)


def _drop_environment_artifact(artifact_dir: Path) -> None:
    # ansible-runner records the whole process environment (AWS credentials included) in artifacts/<id>/command.
    try:
        (artifact_dir / "command").unlink()
    except FileNotFoundError:
        pass
