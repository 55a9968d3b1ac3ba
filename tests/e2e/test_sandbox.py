"""The sandbox itself: a fleet reachable through the dynamic inventory, and the verbs that read it."""

from __future__ import annotations

import json
import subprocess

from orch_wrapper import config
from orch_wrapper.cli import main
from orch_wrapper.transport import ansible_env

from .conftest import ROOT, orch


def test_ansible_pings_every_host_through_the_dynamic_inventory(env):
    settings = config.load()
    result = subprocess.run(
        ["ansible", "all", "-i", str(ROOT / "inventory"), "-m", "ansible.builtin.ping", "-o"],
        capture_output=True,
        text=True,
        env=ansible_env.child_environ(settings),
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sandbox-1 | SUCCESS" in result.stdout and '"ping": "pong"' in result.stdout


def test_hosts_lists_the_fleet_with_its_endpoint(env, capfd):
    capfd.readouterr()
    assert main(["hosts", "--json"]) == 0
    hosts = json.loads(capfd.readouterr().out)
    (host,) = hosts if isinstance(hosts, list) else hosts["hosts"]
    assert host["name"] == "sandbox-1" and host["instance_type"] == "t3.2xlarge" and host["state"] == "running"
    assert host["instance_id"].startswith("i-") and host["ssh_host"] == "127.0.0.1"


def test_plain_ssh_works_with_orch_ssh_config(env, tmp_path):
    result = orch("ssh-config")
    assert result.returncode == 0 and "Host sandbox-1" in result.stdout
    config_file = tmp_path / "ssh_config"
    config_file.write_text(result.stdout)
    plain = subprocess.run(
        ["ssh", "-F", str(config_file), "-o", "BatchMode=yes", "sandbox-1", "hostname"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == "sandbox-1"


def test_a_second_sandbox_up_is_refused_with_one_line(env):
    result = orch("sandbox", "up")
    assert result.returncode == 2
    assert result.stderr.strip() == "orch: the sandbox is already up (use it, or run `orch sandbox down` first)"


def test_doctor_passes_on_a_healthy_sandbox(env):
    result = orch("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sandbox-1" in result.stdout
    assert "ok   memory caps sandbox-1: enforced (orch.slice " in result.stdout  # the sandbox holds caps
    assert "all checks passed\n" in result.stdout  # and nothing to warn about


def test_configure_again_changes_nothing(env):
    # `orch sandbox up` configured the host once; a second run through the CLI must find nothing to do.
    result = orch("configure", timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith("sandbox-1"))
    ok, changed, failed, unreachable = (int(v) for v in row[1:5])
    assert ok > 10 and (changed, failed, unreachable) == (0, 0, 0), row
