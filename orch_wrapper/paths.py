"""Where the Ansible project lives: the folder holding ansible.cfg, playbooks/, inventory/, library/, roles/.

Run from a checkout (or an editable install) that is the checkout itself. A wheel carries a copy inside the
package, `orch_wrapper/_project` (pyproject.toml maps it in), found with importlib.resources. `ORCH_PROJECT`
overrides both. orch only reads there: its state goes to ORCH_HOME, so a read-only install folder is fine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from .errors import ExitCode, OrchError

PACKAGE = "orch_wrapper"
# What a project folder must hold, as the messages name them.
PARTS = ("ansible.cfg", "inventory/", "playbooks/", "roles/", "library/")


def _missing(root: Path) -> list[str]:
    return [
        part
        for part in PARTS
        if not ((root / part.rstrip("/")).is_dir() if part.endswith("/") else (root / part).is_file())
    ]


def _complete(root: Path, message: Callable[[str], str], hint: str) -> Path:
    """ROOT, or a one-line error: MESSAGE of the parts that are not there."""
    missing = _missing(root)
    if missing:
        raise OrchError(message(", ".join(missing)), hint=hint, exit_code=ExitCode.CONFIG)
    return root


def project() -> Path:
    """The project root: `ORCH_PROJECT` if set, else the wheel's packaged copy, else the checkout."""
    override = os.environ.get("ORCH_PROJECT")
    if override:
        return _complete(
            Path(override).expanduser().resolve(),
            lambda missing: f"ORCH_PROJECT={override} is not an orch project: it has no {missing}",
            "point it at the folder holding ansible.cfg and playbooks/, or unset it",
        )
    package = Path(str(resources.files(PACKAGE)))
    packaged = package / "_project"
    checkout = package.parent
    if packaged.is_dir() or not (checkout / "pyproject.toml").is_file():
        # Installed from a wheel: the project must have come with it.
        return _complete(
            packaged,
            lambda missing: f"orch's install lacks its project data: {missing} missing from {packaged}",
            "reinstall orch from its wheel, or set ORCH_PROJECT to a checkout",
        )
    return _complete(
        checkout,
        lambda missing: f"the orch checkout at {checkout} has no {missing}",
        "restore them with git, or set ORCH_PROJECT to a complete checkout",
    )


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
