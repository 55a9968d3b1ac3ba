"""Where the Ansible project lives: the folder holding ansible.cfg, playbooks/, inventory/, library/, roles/."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ExitCode, OrchError


def project() -> Path:
    """The project root: `ORCH_PROJECT` if set, else the folder above this package (a source or editable install)."""
    root = Path(os.environ.get("ORCH_PROJECT") or Path(__file__).resolve().parent.parent)
    if not (root / "playbooks").is_dir():
        raise OrchError(
            f"the orch project (playbooks/, inventory/) is not at {root}",
            hint="set ORCH_PROJECT to the folder holding ansible.cfg",
            exit_code=ExitCode.CONFIG,
        )
    return root


def ansible_cfg() -> Path:
    return project() / "ansible.cfg"


def inventory() -> Path:
    return project() / "inventory"


def playbook(name: str) -> Path:
    """`playbook("job_start")` -> the absolute path of playbooks/job_start.yml."""
    path = project() / "playbooks" / f"{name}.yml"
    if not path.is_file():
        raise OrchError(f"playbook {path.name} is missing from {path.parent}", exit_code=ExitCode.CONFIG)
    return path
