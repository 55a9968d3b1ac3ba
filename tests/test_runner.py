"""The ansible-runner adapter's arguments and results, and the job playbooks with real Ansible templating."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import ansible_runner
import pytest

from orch_wrapper import config, paths
from orch_wrapper.commands.spec import build_spec, encode_spec
from orch_wrapper.errors import OrchError
from orch_wrapper.transport import ansible_env, runner

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(monkeypatch):
    home = Path(tempfile.mkdtemp(prefix="orch-"))
    monkeypatch.setenv("ORCH_HOME", str(home))
    monkeypatch.setenv("ORCH_FLEET", "f")
    monkeypatch.setenv("AWS_REGION", "ap-northeast-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("AWS_PROFILE", "sandbox")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    yield config.load()
    shutil.rmtree(home, ignore_errors=True)


class FakeRun:
    """What ansible_runner.run returns, as far as the adapter reads it."""

    def __init__(self, artifact_dir: Path, status: str, rc: int):
        self.config = type("Config", (), {"artifact_dir": str(artifact_dir)})()
        self.status = status
        self.rc = rc


EVENTS = [
    {"event": "playbook_on_task_start", "event_data": {"task": "Ensure the job is started"}},
    {"event": "runner_on_ok", "event_data": {"host": "f-1", "res": {"changed": False}}},
    {"event": "runner_on_ok", "event_data": {"host": "f-1", "res": {"changed": True, "job": {"state": "RUNNING"}}}},
    {"event": "runner_on_failed", "event_data": {"host": "f-2", "ignore_errors": True, "res": {"msg": "ignored"}}},
    {"event": "runner_on_failed", "event_data": {"host": "f-2", "res": {"msg": "job x is already running"}}},
    {"event": "runner_on_unreachable", "event_data": {"host": "f-3", "res": {"msg": "Connection refused"}}},
    {
        "event": "playbook_on_stats",
        "event_data": {"ok": {"f-1": 2}, "changed": {"f-1": 1}, "failures": {"f-2": 1}, "dark": {"f-3": 1}},
    },
]


def test_run_playbook_builds_the_runner_arguments_in_one_place(settings, monkeypatch):
    calls = []
    seen = []

    def fake_run(**kwargs):
        calls.append(kwargs)
        artifact_dir = settings.home / "runner" / "artifacts" / kwargs["ident"]
        artifact_dir.mkdir(parents=True)
        (artifact_dir / "command").write_text('{"env": {"AWS_SECRET_ACCESS_KEY": "x"}}')
        (artifact_dir / "stdout").write_text("kept")
        for event in EVENTS:
            assert kwargs["event_handler"](event) is True  # True: the runner keeps the event
        return FakeRun(artifact_dir, "failed", 2)

    monkeypatch.setattr(ansible_runner, "run", fake_run)
    result = runner.run_playbook(
        settings, "job_start", {"orch_host": "f-1", "orch_job_spec_b64": "e30="}, limit="f-1", on_event=seen.append
    )
    kwargs = dict(calls[0])
    assert callable(kwargs.pop("event_handler"))
    ident = kwargs.pop("ident")
    assert re.fullmatch(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}", ident), ident  # sorts by age: runner._rotate_artifacts
    home = settings.home
    assert kwargs == {
        "private_data_dir": str(home / "runner"),
        "project_dir": str(PROJECT),
        "playbook": str(PROJECT / "playbooks" / "job_start.yml"),
        "inventory": str(PROJECT / "inventory"),
        "extravars": {"orch_fleet": "f", "orch_host": "f-1", "orch_job_spec_b64": "e30="},
        "envvars": {
            "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"),
            "ANSIBLE_SSH_ARGS": (
                f"-o BatchMode=yes -o ControlMaster=auto -o ControlPath={home}/cm/%C -o ControlPersist=10m "
                f"-o ConnectTimeout=5 -o ServerAliveInterval=15 -o IdentityAgent={home}/agent.sock "
                f"-o IdentitiesOnly=no -o UserKnownHostsFile={home}/known_hosts -o StrictHostKeyChecking=accept-new"
            ),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cm"),
            "SSH_AUTH_SOCK": str(home / "agent.sock"),
            "ORCH_FLEET": "f",
            "AWS_REGION": "ap-northeast-1",
            "ANSIBLE_INVENTORY_CACHE_PLUGIN_PREFIX": "orch_f_ap-northeast-1_f9413619c309_",
            "ANSIBLE_INVENTORY_CACHE_CONNECTION": str(home / "inventory-cache"),
            "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
            "AWS_PROFILE": "sandbox",
        },
        "quiet": True,
        "suppress_env_files": True,
        "rotate_artifacts": 0,  # orch rotates: ansible-runner's rotation crashed concurrent runs
        "limit": "f-1",
    }
    assert f"ControlPath={home}/cm/%C" in kwargs["envvars"]["ANSIBLE_SSH_ARGS"]
    assert f"IdentityAgent={home}/agent.sock" in kwargs["envvars"]["ANSIBLE_SSH_ARGS"]
    # results come from the events
    assert result.ok == {"f-1": [{"changed": False}, {"changed": True, "job": {"state": "RUNNING"}}]}
    assert result.results("f-1", "job") == [{"state": "RUNNING"}]
    assert result.failed == {"f-2": "job x is already running"}
    assert result.unreachable == {"f-3": "Connection refused"}
    assert result.stats["f-1"] == {"ok": 2, "changed": 1, "failed": 0, "unreachable": 0, "skipped": 0}
    assert result.stats["f-2"]["failed"] == 1 and result.stats["f-3"]["unreachable"] == 1
    assert seen == EVENTS  # the progress callback sees every event
    # the environment the runner recorded is gone, the rest of the artifacts stay
    artifact_dir = home / "runner" / "artifacts" / ident
    assert not (artifact_dir / "command").exists() and (artifact_dir / "stdout").exists()
    with pytest.raises(OrchError, match="f-3 is unreachable: Connection refused"):
        result.check()


def test_concurrent_runs_rotate_the_artifacts_without_tripping_over_each_other(tmp_path):
    # Ten `orch run`s at once (tests/fleet) each rotated the artifacts with ansible-runner's rotation, and one of two
    # removing the same old folder died of FileNotFoundError. orch's rotation keeps the newest and shrugs.
    import threading

    artifacts = tmp_path / "artifacts"
    names = [f"20261202T0400{i:02d}Z-{i:012x}" for i in range(38)]
    for name in ["older-uuid-a", "older-uuid-b", *names]:  # an older orch's runner named them by uuid
        (artifacts / name / "job_events").mkdir(parents=True)
        for j in range(20):
            (artifacts / name / "job_events" / f"{j}.json").write_text("{}")
    barrier, errors = threading.Barrier(8), []

    def rotate():
        barrier.wait()
        try:
            runner._rotate_artifacts(artifacts)
        except Exception as exc:  # noqa: BLE001 - the test reports any
            errors.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(p.name for p in artifacts.iterdir()) == names[-20:]  # the newest by name, whatever the mtimes
    runner._rotate_artifacts(tmp_path / "none-yet")  # before the first run: nothing to rotate


def test_cache_prefix_names_fleet_region_and_endpoint(settings, monkeypatch):
    # the last part: the first 12 hex digits of the endpoint's SHA-256 ("aws" without one)
    assert ansible_env.cache_prefix(settings) == "orch_f_ap-northeast-1_f9413619c309_"  # http://127.0.0.1:5000
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5001")
    assert ansible_env.cache_prefix(config.load()) == "orch_f_ap-northeast-1_09d233189244_"
    monkeypatch.setenv("ORCH_FLEET", "g")
    assert ansible_env.cache_prefix(config.load()) == "orch_g_ap-northeast-1_09d233189244_"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert ansible_env.cache_prefix(config.load()) == "orch_g_eu-west-1_09d233189244_"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert ansible_env.cache_prefix(config.load()) == "orch_g_eu-west-1_7d1507284a57_"


FAKE_MODULE = """#!/usr/bin/python
import json, os
from ansible.module_utils.basic import AnsibleModule

def main():
    module = AnsibleModule(argument_spec=dict(
        name=dict(type="str", required=True), state=dict(type="str"), command=dict(type="str"),
        cwd=dict(type="str"), env=dict(type="dict"), secrets=dict(type="dict", no_log=True),
        memory_max=dict(type="str"), grace=dict(type="int"), purge_logs=dict(type="bool"),
        tty=dict(type="bool"), queue=dict(type="bool")))
    given = {k: v for k, v in module.params.items() if v is not None}
    with open(os.environ["ORCH_TEST_PARAMS"], "a") as f:
        f.write(json.dumps(given) + "\\n")
    module.exit_json(changed=True, job={"name": module.params["name"], "state": "RUNNING"})

main()
"""

COMMANDS = {
    "quotes-and-vars": """echo "it's $HOME" '$USER' `id -u` $(date) \\"done\\" """,
    "newlines-and-tabs": "line one\n\tline two\r\n; rm -rf /tmp/nothing && echo ok",
    "jinja": "echo {{ lookup('env', 'HOME') }} {% raw %}x{% endraw %} {# c #} ${{x}}",
    "unicode": "echo ジョブ ✓ \\u00e9",
}


def run_job_playbook(tmp_path: Path, playbook: str, extravars: dict) -> list[dict]:
    """ansible-playbook for real on localhost, with a test double of orch_job that records its parameters."""
    library = tmp_path / "library"
    library.mkdir(exist_ok=True)
    (library / "orch_job.py").write_text(FAKE_MODULE)
    params = tmp_path / "params.jsonl"
    params.unlink(missing_ok=True)
    (tmp_path / "vars.json").write_text(json.dumps(extravars))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"),
        "ANSIBLE_LIBRARY": str(library),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ORCH_TEST_PARAMS": str(params),
    }
    proc = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            f"@{tmp_path / 'vars.json'}",
            str(paths.playbook(playbook)),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [json.loads(line) for line in params.read_text().splitlines()]


def test_job_start_passes_commands_verbatim(tmp_path):
    # every hard case in one command: one Ansible run instead of one per case
    command = "\n".join(COMMANDS.values())
    spec = build_spec("job-1", command, env=["X={{ y }}"], secrets=["TOKEN=/orch/f/secrets/t"])
    extravars = {"orch_host": "localhost", "orch_job_spec_b64": encode_spec(spec)}
    (given,) = run_job_playbook(tmp_path, "job_start", extravars)
    assert given["command"] == command
    assert given == {
        "name": "job-1",
        "state": "started",
        "command": command,
        "env": {"X": "{{ y }}"},
        "secrets": {"TOKEN": "/orch/f/secrets/t"},
        "tty": True,
        "queue": True,
    }  # cwd and memory_max omitted: the module's defaults apply


def test_job_start_passes_cwd_and_memory(tmp_path):
    spec = build_spec("train", "python train.py", cwd="~/work/lros", mem="8G", tty=False, queue=False)
    (given,) = run_job_playbook(
        tmp_path, "job_start", {"orch_host": "localhost", "orch_job_spec_b64": encode_spec(spec)}
    )
    assert given["cwd"] == "~/work/lros" and given["memory_max"] == "8G" and given["tty"] is False
    assert given["queue"] is False


def test_job_stop_and_remove_playbooks(tmp_path):
    (stop,) = run_job_playbook(
        tmp_path, "job_stop", {"orch_host": "localhost", "orch_job_name": "a", "orch_job_grace": 3}
    )
    assert stop == {"name": "a", "state": "stopped", "grace": 3}
    (default_stop,) = run_job_playbook(tmp_path, "job_stop", {"orch_host": "localhost", "orch_job_name": "a"})
    assert default_stop == {"name": "a", "state": "stopped"}
    (rm,) = run_job_playbook(
        tmp_path, "job_remove", {"orch_host": "localhost", "orch_job_name": "a", "orch_job_purge_logs": True}
    )
    assert rm == {"name": "a", "state": "absent", "purge_logs": True}


def test_configure_progress_prints_one_line_per_task_and_a_summary():
    import io

    from orch_wrapper import ui

    out = io.StringIO()
    progress = ui.TaskProgress(file=out)
    with progress:
        for event in EVENTS:
            progress(event)
        progress({"event": "playbook_on_task_start", "event_data": {"task": "Ensure tmux is configured"}})
        progress({"event": "runner_on_skipped", "event_data": {"host": "f-1"}})
    ui.print_summary({"f-1": {"ok": 2, "changed": 1, "failed": 0, "unreachable": 0, "skipped": 1}}, file=out)
    lines = [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]
    assert lines[0] == "x Ensure the job is started (changed: f-1; failed: f-2; unreachable: f-3)"
    assert lines[1] == "✓ Ensure tmux is configured (skipped: f-1)"
    assert lines[-2].split() == ["HOST", "OK", "CHANGED", "FAILED", "UNREACHABLE", "SKIPPED"]
    assert lines[-1].split() == ["f-1", "2", "1", "0", "0", "1"]
