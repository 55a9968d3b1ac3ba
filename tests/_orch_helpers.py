"""Helpers shared by the CLI package's unit tests (not fixtures: conftest.py belongs to the integration suite)."""

from __future__ import annotations

import json
from typing import Any

from orch_wrapper.model import Host
from orch_wrapper.transport.inventory import host_from_hostvars


def unsafe(value: str) -> dict[str, str]:
    """How ansible-inventory (ansible-core 2.19) writes a string in its JSON."""
    return {"__ansible_unsafe": value}


# hostvars as `ansible-inventory --list` prints them for inventory/orch.aws_ec2.yml (plugin facts prefixed aws_,
# stable orch_* names composed), one per access mode; "public" has the plugin's unprefixed spelling.
HOSTVARS = {
    "endpoint": {
        "aws_instance_id": unsafe("i-0123456789abcdef0"),
        "aws_instance_type": unsafe("t3.2xlarge"),
        "aws_state": {"code": 16, "name": unsafe("running")},
        "aws_tags": {
            "Name": unsafe("f-1"),
            "orch-fleet": unsafe("f"),
            "orch-access": unsafe("endpoint"),
            "orch-user": unsafe("ec2-user"),
        },
        "ansible_host": unsafe("127.0.0.1"),
        "ansible_port": 2201,
        "ansible_user": unsafe("ec2-user"),
        "ansible_ssh_common_args": unsafe(""),
        "orch_instance_id": unsafe("i-0123456789abcdef0"),
        "orch_instance_type": unsafe("t3.2xlarge"),
        "orch_state": unsafe("running"),
        "orch_access": unsafe("endpoint"),
    },
    "ssm": {
        "aws_instance_id": unsafe("i-0aaaaaaaaaaaaaaa1"),
        "aws_instance_type": unsafe("m7g.2xlarge"),
        "aws_state": {"code": 16, "name": unsafe("running")},
        "aws_tags": {"Name": unsafe("f-2"), "orch-fleet": unsafe("f"), "orch-access": unsafe("ssm")},
        "ansible_host": unsafe("i-0aaaaaaaaaaaaaaa1"),
        "ansible_port": 22,
        "ansible_user": unsafe("ec2-user"),
        "ansible_ssh_common_args": unsafe(
            '-o ProxyCommand="sh -c \\"aws ssm start-session --target %h '
            '--document-name AWS-StartSSHSession --parameters portNumber=%p\\""'
        ),
        "orch_instance_id": unsafe("i-0aaaaaaaaaaaaaaa1"),
        "orch_instance_type": unsafe("m7g.2xlarge"),
        "orch_state": unsafe("running"),
        "orch_access": unsafe("ssm"),
    },
    "public": {
        "instance_id": "i-0bbbbbbbbbbbbbbb2",
        "instance_type": "t3.2xlarge",
        "state": {"code": 80, "name": "stopped"},
        "tags": {"Name": "f-3", "orch-fleet": "f", "orch-access": "public", "orch-user": "admin"},
        "ansible_host": "203.0.113.7",
        "ansible_port": 22,
        "ansible_user": "admin",
    },
}


def _name(hv: dict[str, Any]) -> str:
    tags = hv.get("aws_tags") or hv["tags"]
    name = tags["Name"]
    return name["__ansible_unsafe"] if isinstance(name, dict) else name


def host(access: str, name: str | None = None) -> Host:
    hv = HOSTVARS[access]
    return host_from_hostvars(name or _name(hv), hv)


def endpoint_host(name: str, port: int) -> Host:
    hv = {**HOSTVARS["endpoint"], "ansible_port": port}
    hv["aws_tags"] = {**hv["aws_tags"], "Name": unsafe(name)}
    return host_from_hostvars(name, hv)


def record(name: str, state: str, started: str, **extra: Any) -> dict[str, Any]:
    """A job record as `orch_job.py query` prints it."""
    rec = {
        "name": name,
        "command": "sleep 100",
        "cwd": "/home/ec2-user/work",
        "host": "sandbox-host",
        "state": state,
        "started": started,
        "ended": None,
        "exit_code": None,
        "signal": None,
        "oom": False,
        "memory_max": None,
        "memory_peak": None,
        "memory_current": None,
        "pid": 4242,
        "tmux_session": f"orch-{name.replace('.', ',')}",
        "lost_reason": None,
    }
    rec.update(extra)
    return rec


def query_reply(jobs: list[dict[str, Any]]) -> bytes:
    return json.dumps({"host": "sandbox-host", "boot_id": "b", "jobs": jobs}).encode()
