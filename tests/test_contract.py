"""One contract between the laptop and the host (orch_host.contract): both sides and the playbooks agree on it."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
import yaml
from orch_host import contract

from orch_wrapper.commands import spec
from orch_wrapper.errors import OrchError
from orch_wrapper.model import Job, tmux_server, tmux_session
from orch_wrapper.transport import agent

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["a", "vma-scrape", "x.y_z-1", "9" * 63, "9" * 64, "A", "-a", "a..b", "a/b", "a b", "a;rm", "", ".a"]


@pytest.mark.parametrize("name", NAMES)
def test_the_laptop_and_the_host_accept_the_same_job_names(name):
    host_accepts = True
    try:
        contract.check_name(name)
    except contract.JobError as exc:
        host_accepts = False
        assert contract.NAME_RULE in str(exc)
    try:
        spec.validate_name(name)
        laptop_accepts = True
    except OrchError as exc:
        laptop_accepts = False
        assert exc.hint == contract.NAME_RULE
    assert laptop_accepts == host_accepts == contract.is_valid_name(name)


@pytest.mark.parametrize(
    ("text", "size", "shown"),
    [
        ("8G", 8 << 30, "8G"),
        ("512m", 512 << 20, "512M"),
        ("1GiB", 1 << 30, "1G"),
        ("0016384K", 16 << 20, "16384K"),
        ("16M", 16 << 20, "16M"),
        ("64T", 64 << 40, "64T"),
    ],
)
def test_memory_sizes_mean_the_same_on_both_sides(text, size, shown):
    assert contract.memory_size(text) == (size, shown)
    assert spec.parse_mem(text) == shown
    assert contract.memory_size(spec.parse_mem(text))[0] == size  # what the laptop sends, the host reads back


@pytest.mark.parametrize(
    "text", ["0", "0G", "lots", "1.5G", "12345678G", "8X", "-1G", "65T", "9999999T", "67108865M", "15M", "7K", "1024"]
)
def test_bad_memory_sizes_are_refused_on_both_sides(text):
    with pytest.raises(ValueError):
        contract.memory_size(text)
    with pytest.raises(OrchError):
        spec.parse_mem(text)


def test_the_laptop_finds_the_session_the_host_names():
    assert tmux_session(Job(name="a.b", host="h", state="RUNNING")) == contract.session_name("a.b") == "orch-a,b"


def test_the_laptop_finds_the_tmux_server_the_host_records():
    job = Job.from_record("h", {"name": "a", "state": "RUNNING", "tmux_socket": contract.TMUX_SOCKET})
    assert tmux_server(job) == ["-L", contract.TMUX_SOCKET] == ["-L", "orch"]
    assert tmux_server(Job.from_record("h", {"name": "a", "state": "RUNNING"})) == []  # an older host's record


def test_provisioning_keeps_the_key_and_grants_the_prefixes_of_the_contract():
    raw = yaml.safe_load((ROOT / "playbooks" / "vars" / "provision.yml").read_text())
    env = jinja2.Environment()
    values = {"_orch_fleet": "f", "_orch_arn": "arn:aws", "_orch_region": "r", "_orch_account": "1"}
    key = env.from_string(raw["_orch_key_parameter"]).render(**values)
    assert key == contract.ssm_key_parameter("f") == agent.key_parameter(type("S", (), {"fleet": "f"})())
    arn = env.from_string(raw["_orch_parameter_arn"]).render(**values)
    granted = [
        env.from_string(resource).render(_orch_parameter_arn=arn)
        for statement in raw["_orch_host_policy"]["Statement"]
        for resource in statement.get("Resource", [])
        if "_orch_parameter_arn" in resource
    ]
    prefix = "arn:aws:ssm:r:1:parameter"
    assert prefix + contract.ssm_deploy_key_prefix("f") + "*" in granted
    assert prefix + contract.ssm_secrets_prefix("f") + "*" in granted
