"""The environment of every Ansible child process (ansible-runner's playbooks, ansible-inventory): built here, from
Settings, and nowhere else."""

from __future__ import annotations

import hashlib
import os

from .. import paths
from ..config import Settings
from . import ssh


def cache_prefix(settings: Settings) -> str:
    endpoint = hashlib.sha256((settings.endpoint or "aws").encode()).hexdigest()[:12]
    return f"orch_{settings.fleet}_{settings.region}_{endpoint}_"


def envvars(settings: Settings) -> dict[str, str]:
    """What orch sets for an Ansible process: orch's agent and ssh options, the project's ansible.cfg, AWS."""
    out = {
        "ANSIBLE_CONFIG": str(paths.ansible_cfg()),
        "ANSIBLE_SSH_ARGS": ssh.ansible_ssh_args(settings),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(settings.control_dir),
        "SSH_AUTH_SOCK": str(settings.agent_sock),
        "ORCH_FLEET": settings.fleet,
        "AWS_REGION": settings.region,
        # The inventory's cache is keyed by its file alone: name the fleet, region and endpoint in the key.
        "ANSIBLE_INVENTORY_CACHE_PLUGIN_PREFIX": cache_prefix(settings),
        # ...and keep it in ORCH_HOME. This variable beats ansible.cfg's ~/.orch default and the fact cache folder
        # ansible-runner sets (ANSIBLE_CACHE_PLUGIN_CONNECTION, in each run's artifacts).
        "ANSIBLE_INVENTORY_CACHE_CONNECTION": str(settings.home / "inventory-cache"),
        # Under orch a broken inventory is an error, not an empty fleet. (Not in ansible.cfg: there it would also
        # fail ansible-lint's syntax checks and direct provisioning runs before their own one-line checks.)
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true",
    }
    if settings.endpoint:
        out["AWS_ENDPOINT_URL"] = settings.endpoint
    out.update(settings.aws_env)
    return out


def child_environ(settings: Settings) -> dict[str, str]:
    """The whole environment of an Ansible process orch starts itself: its own, with envvars on top.
    (ansible-runner is handed envvars alone: it adds the process environment itself.)"""
    return {**os.environ, **envvars(settings)}
