"""Helpers shared by the CLI package's unit tests (not fixtures: conftest.py belongs to the integration suite)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from orch_host import contract

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


def endpoint_hostvars(name: str, port: int) -> dict[str, Any]:
    """The inventory's hostvars of an endpoint-access host NAME (fleet f) with sshd on 127.0.0.1:PORT."""
    hv = {**HOSTVARS["endpoint"], "ansible_port": port}
    hv["aws_tags"] = {**hv["aws_tags"], "Name": unsafe(name)}
    return hv


def endpoint_host(name: str, port: int) -> Host:
    return host_from_hostvars(name, endpoint_hostvars(name, port))


# What the real host package answers (tests/fixtures/make_host_records.py writes it): every fake below has its shape.
HOST_REPLIES: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent / "fixtures" / "host_query.json").read_text()
)
REAL_RECORDS: list[dict[str, Any]] = HOST_REPLIES["query"]["reply"]["jobs"]
RECORD_KEYS = frozenset(REAL_RECORDS[0])  # a job record as `query` prints it: job.json and memory_current
STATES = {
    contract.QUEUED,
    contract.RUNNING,
    contract.SUCCEEDED,
    contract.FAILED,
    contract.KILLED,
    contract.OOM,
    contract.LOST,
}


def check_record(rec: dict[str, Any]) -> dict[str, Any]:
    """REC, or a ValueError naming what the host would never write in it."""
    problems = []
    if set(rec) - RECORD_KEYS:
        problems.append(f"keys the host does not write {sorted(set(rec) - RECORD_KEYS)}")
    if RECORD_KEYS - set(rec):
        problems.append(f"no {sorted(RECORD_KEYS - set(rec))}, which the host always writes")
    state, code, sig = rec.get("state"), rec.get("exit_code"), rec.get("signal")
    if state not in STATES:
        problems.append(f"state {state!r}")
    if sig is not None and not (isinstance(sig, str) and sig.startswith("SIG")):
        problems.append(f"signal {sig!r}: the host names it (SIGTERM)")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        problems.append(f"exit_code {code!r}")
    if code is not None and sig is not None:
        problems.append("both exit_code and signal: exit_code is null when a signal ended the job")
    if state in contract.ACTIVE_STATES and (rec.get("ended"), code, sig) != (None, None, None):
        problems.append(f"{state} with an end")
    if state in (contract.SUCCEEDED, contract.FAILED, contract.KILLED, contract.OOM) and rec.get("ended") is None:
        problems.append(f"{state} without an end")
    if state == contract.SUCCEEDED and (code, sig) != (0, None):
        problems.append("SUCCEEDED without exit code 0")
    if state != contract.RUNNING and rec.get("memory_current") is not None:
        problems.append("memory_current of a job that is not running")
    if rec.get("memory_max") is not None and not isinstance(rec["memory_max"], int):
        problems.append(f"memory_max {rec['memory_max']!r}: the host records bytes")
    if rec.get("tmux_session") != contract.session_name(str(rec.get("name"))):
        problems.append(f"tmux_session {rec.get('tmux_session')!r}")
    if rec.get("tmux_socket") != contract.TMUX_SOCKET:
        problems.append(f"tmux_socket {rec.get('tmux_socket')!r}")
    if problems:
        raise ValueError(f"not a record the host writes ({rec.get('name')}): " + "; ".join(problems))
    return rec


def record(name: str, state: str, started: str, **extra: Any) -> dict[str, Any]:
    """A job record as the host's `query` prints it: a real record's keys, NAME's values, EXTRA on top (only keys
    the host writes, with values it could write)."""
    unknown = set(extra) - RECORD_KEYS
    if unknown:
        raise TypeError(f"the host writes no {sorted(unknown)} in a job record")
    rec = dict(next(r for r in REAL_RECORDS if r["state"] == contract.RUNNING))
    rec.update(
        name=name,
        run_id=hashlib.sha256(name.encode()).hexdigest()[:32],
        command="sleep 100",
        state=state,
        started=started,
        ended=None,
        exit_code=None,
        signal=None,
        memory_current=None,
        memory_peak=None,
        pid=4242,
        pgid=4242,
        tmux_session=contract.session_name(name),
        log=f"/home/ec2-user/logs/{name}/run.log",
        lost_reason=None,
    )
    rec.update(extra)
    return check_record(rec)


def query_reply(
    jobs: list[dict[str, Any]], memory: dict[str, Any] | None = None, autostop: dict[str, Any] | None = None
) -> bytes:
    """The host's `query` reply (stdout) with these JOBS, and the host's MEMORY and AUTOSTOP (a whole-host
    query's)."""
    reply = {**HOST_REPLIES["query"]["reply"], "jobs": [check_record(job) for job in jobs]}
    if memory is not None:
        reply["memory"] = memory
    if autostop is not None:
        reply["autostop"] = autostop
    return json.dumps(reply).encode()
