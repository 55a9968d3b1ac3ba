"""Bad role inputs fail before any host is touched, with a message naming the repository or the variable.

The roles' checks run on the controller (`run_once`, `delegate_to: localhost`), so these tests run the real
configure playbook with only the check tags against a host that no task can reach (ssh to a closed port): a check
that ran on the host instead of the controller would make it unreachable. Facts are not gathered (`--skip-tags
always`): the checks need none. Nothing on this machine is configured.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK_TAGS = ",".join(
    f"{role}_assert"
    for role in ("orch_base", "orch_memory", "orch_tmux", "orch_repos", "orch_log_retention", "orch_cloudwatch")
)
GOOD_REPO = {"name": "alpha", "url": "git@example.invalid:team/alpha.git", "key_parameter": "/orch/t/deploy-keys/alpha"}


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_checks(tmp_path: Path, extravars: dict) -> subprocess.CompletedProcess:
    varsfile = tmp_path / "vars.json"
    local = {"ansible_become": False, "ansible_python_interpreter": sys.executable}
    varsfile.write_text(json.dumps({**local, **extravars}))
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"target ansible_host=127.0.0.1 ansible_port={closed_port()} ansible_user=nobody\n")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_GATHERING": "explicit",
        # should a task try the host after all: nothing of it lands in this machine's ~/.orch
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cm"),
        "ANSIBLE_SSH_ARGS": f"-o BatchMode=yes -o ConnectTimeout=5 -o UserKnownHostsFile={tmp_path / 'known_hosts'}",
    }
    return subprocess.run(
        ["ansible-playbook", str(ROOT / "playbooks" / "configure.yml"), "-i", str(inventory),
         "--tags", CHECK_TAGS, "--skip-tags", "always", "-e", f"@{varsfile}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def assert_only_the_controller_worked(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Every task result came from the controller on the host's behalf, none reached the host; the host's recap."""
    output = result.stdout + result.stderr
    results = re.findall(r"^(?:ok|changed|fatal|failed|skipping|unreachable): \[([^\]]+)\]", output, re.MULTILINE)
    assert results, output[-2000:]
    assert set(results) == {"target -> localhost"}, output[-2000:]
    assert "UNREACHABLE!" not in output, output[-2000:]
    recap = re.search(r"^target\s*:((?:\s+\w+=\d+)+)", output, re.MULTILINE)
    assert recap, output[-2000:]
    counts = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", recap.group(1))}
    assert (counts["unreachable"], counts["changed"]) == (0, 0), recap.group(0)
    return counts


def test_good_inputs_pass_every_check(tmp_path):
    result = run_checks(tmp_path, {"orch_repos_list": [GOOD_REPO, {**GOOD_REPO, "name": "beta", "branch": "dev"}]})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout
    counts = assert_only_the_controller_worked(result)
    assert counts["ok"] > 0 and counts["failed"] == 0, counts


@pytest.mark.parametrize(
    ("extravars", "expected"),
    [
        pytest.param(
            {"orch_repos_list": [GOOD_REPO, {"name": "beta", "key_parameter": "/orch/t/deploy-keys/beta"}]},
            ["orch_repos_list[1]", "repo beta", "url is missing"],
            id="repo-without-url",
        ),
        pytest.param(
            {"orch_repos_list": [{"name": "gamma", "url": "git@example.invalid:t/g.git"}]},
            ["orch_repos_list[0]", "repo gamma", "key_parameter is missing"],
            id="repo-without-key-parameter",
        ),
        pytest.param(
            {"orch_repos_list": [{**GOOD_REPO, "name": "../evil"}]},
            ["repo ../evil", "name must be a directory name"],
            id="repo-name-escaping-work",
        ),
        pytest.param(
            {"orch_repos_list": [GOOD_REPO, GOOD_REPO]},
            ["repository names must be unique", "duplicated: alpha"],
            id="duplicate-repo-names",
        ),
        pytest.param(
            {"orch_log_retention_days": -5},
            ["orch_log_retention_days must be a positive whole number", "got -5"],
            id="negative-retention",
        ),
        pytest.param({"orch_log_retention_days": "30d"}, ["orch_log_retention_days"], id="retention-not-a-number"),
        pytest.param(
            {"orch_log_retention_max_size": "lots"},
            ["orch_log_retention_max_size must be a size like 100M", "got lots"],
            id="rotation-size-malformed",
        ),
        pytest.param(
            {"orch_memory_reserve": "2 GB"},
            ["orch_memory_reserve and orch_memory_sshd_min must be sizes like 2G or 512M", "got 2 GB"],
            id="memory-reserve-malformed",
        ),
        pytest.param(
            {"orch_cloudwatch_retention_days": 31},
            ["orch_cloudwatch_retention_days must be one of CloudWatch's retention periods", "got 31"],
            id="cloudwatch-retention-not-allowed",
        ),
    ],
)
def test_bad_input_fails_early_naming_it(tmp_path, extravars, expected):
    result = run_checks(tmp_path, extravars)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    for text in expected:
        assert text in output, f"{text!r} not in: {output[-2000:]}"
    # The checks ran on the controller only: no task of the roles reached the host.
    assert "changed=0" in output
    assert assert_only_the_controller_worked(result)["failed"] == 1
