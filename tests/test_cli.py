"""The `orch` entry point: parsing, validation before any remote work, placement, status rendering, ssh argv."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import botocore.exceptions
import pytest
from _orch_helpers import (
    HOST_REPLIES,
    HOSTVARS,
    REAL_RECORDS,
    RECORD_KEYS,
    check_record,
    endpoint_host,
    endpoint_hostvars,
    host,
    query_reply,
    record,
    unsafe,
)
from orch_host import contract

from orch_wrapper import cli, config, model, ui
from orch_wrapper.commands import instances, read, spec
from orch_wrapper.errors import ExitCode, OrchError
from orch_wrapper.transport import agent, ansible_env, aws, inventory, runner, ssh

# The real ones, before the `remote` fixture replaces them: a test that runs a real child puts them back.
REAL_POPEN = subprocess.Popen
REAL_RUN = subprocess.run
REAL_WHICH = shutil.which
REAL_AGENT_ENSURE = agent.ensure


def iso(delta: timedelta) -> str:
    """A timestamp DELTA before now (now, not at import: a long suite collects this file minutes before it runs)."""
    return (datetime.now(timezone.utc) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def home(monkeypatch):
    """ORCH_HOME in a short temporary folder (ssh control socket paths must stay short), a clean AWS environment."""
    path = Path(tempfile.mkdtemp(prefix="orch-"))
    monkeypatch.setenv("ORCH_HOME", str(path))
    monkeypatch.setenv("HOME", str(path / "home"))  # nothing lands in the real home (Ansible writes ~/.ansible)
    monkeypatch.setenv("ORCH_FLEET", "f")
    monkeypatch.setenv("AWS_REGION", "ap-northeast-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    for name in (
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def remote(monkeypatch):
    """Records every call that would reach a host, AWS or Ansible; calls are refused unless a test allows them."""
    calls: list[tuple[str, tuple]] = []

    def refuse(label):
        def fake(*args, **kwargs):
            calls.append((label, args))
            raise AssertionError(f"unexpected remote call: {label}")

        return fake

    monkeypatch.setattr(inventory, "inventory_list", refuse("inventory"))
    monkeypatch.setattr(runner, "run_playbook", refuse("runner"))
    monkeypatch.setattr(ssh, "run_host_code", refuse("ssh"))
    monkeypatch.setattr(agent, "ensure", refuse("agent"))
    monkeypatch.setattr(aws, "session", refuse("aws"))
    monkeypatch.setattr(subprocess, "Popen", refuse("popen"))
    monkeypatch.setattr(read.os, "execvp", refuse("execvp"))
    return calls


def seed_fleet(hosts):
    """Write orch's fleet cache, so the real inventory.load reads these hosts without an inventory run."""
    inventory._write_cache(config.load(), list(hosts))


def run_main(capsys, argv):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str):
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("orch: ")


# --- parsing and validation: nothing remote happens --------------------------------------------------------------

BAD_NAMES = {
    "space": "a b",
    "single-quote": "it's",
    "double-quote": 'a"b',
    "command-substitution": "$(id)",
    "semicolon": "a;rm",
    "dot-dot": "a..b",
    "slash": "a/b",
    "uppercase": "Train",
    "200-chars": "a" * 200,
    "non-ascii": "jöb",
    "trailing-newline": "job\n",
    "empty": "",
    "leading-dot": ".job",
}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
@pytest.mark.parametrize("verb", ["run", "status", "logs", "attach", "stop", "rm"])
def test_bad_job_name_is_refused_before_any_remote_call(home, remote, capsys, verb, name):
    argv = [verb, name, "echo hi"] if verb == "run" else [verb, name]
    code, out, err = run_main(capsys, argv)
    assert code == ExitCode.USAGE
    assert_one_line_error(err)
    assert "invalid job name" in err
    assert remote == []


BAD_RUNS = {
    "leading-dash-name": (["run", "-rf", "echo"], "orch run --help"),
    "leading-dash-name-after-dashes": (["run", "--", "-rf", "echo"], "invalid job name"),
    "empty-command": (["run", "job", ""], "empty command"),
    "blank-command": (["run", "job", "  \n "], "empty command"),
    "nul-in-command": (["run", "job", "echo \0"], "NUL"),
    "env-without-equals": (["run", "job", "x", "--env", "FOO"], "invalid --env"),
    "env-bad-key": (["run", "job", "x", "--env", "1FOO=a"], "invalid --env"),
    "env-empty-key": (["run", "job", "x", "--env", "=a"], "invalid --env"),
    "env-injection-key": (["run", "job", "x", "--env", "A;B=c"], "invalid --env"),
    "secret-without-path": (["run", "job", "x", "--secret", "TOKEN"], "invalid --secret"),
    "secret-relative": (["run", "job", "x", "--secret", "TOKEN=orch/f/secrets/t"], "invalid --secret"),
    "secret-space": (["run", "job", "x", "--secret", "TOKEN=/orch/a b"], "invalid --secret"),
    "secret-double-slash": (["run", "job", "x", "--secret", "TOKEN=/orch//t"], "invalid --secret"),
    "secret-and-env": (["run", "job", "x", "--env", "T=1", "--secret", "T=/orch/t"], "both as --env and --secret"),
    "mem-unit": (["run", "job", "x", "--mem", "8X"], "invalid --mem"),
    "mem-zero": (["run", "job", "x", "--mem", "0G"], "invalid --mem"),
    "mem-negative": (["run", "job", "x", "--mem", "-1G"], "expected one argument"),
    "mem-decimal": (["run", "job", "x", "--mem", "1.5G"], "invalid --mem"),
    "mem-below-floor": (["run", "job", "x", "--mem", "8M"], "invalid --mem"),
    "mem-words": (["run", "job", "x", "--mem", "lots"], "invalid --mem"),
    "cwd-newline": (["run", "job", "x", "--cwd", "a\nb"], "invalid --cwd"),
    "missing-command": (["run", "job"], "required: CMD"),
    "tail-negative": (["logs", "job", "--tail", "-3"], "whole number"),
    "tail-word": (["logs", "job", "--tail", "ten"], "whole number"),
    "unknown-verb": (["frobnicate"], "invalid choice"),
    "sandbox-action": (["sandbox", "sideways"], "invalid choice"),
    "sandbox-memory-size": (["sandbox", "up", "--memory", "3G,lots"], "invalid --memory"),
    "sandbox-memory-decimal": (["sandbox", "up", "--memory", "2.5G"], "invalid --memory"),
    "sandbox-memory-count": (["sandbox", "up", "--hosts", "3", "--memory", "3G,4G"], "gives 2 sizes for 3 host(s)"),
}


@pytest.mark.parametrize(("argv", "message"), BAD_RUNS.values(), ids=BAD_RUNS.keys())
def test_bad_input_is_one_line_usage_error(home, remote, capsys, argv, message):
    code, out, err = run_main(capsys, argv)
    assert code == ExitCode.USAGE
    assert_one_line_error(err)
    assert message in err
    assert remote == []


def test_version_and_help(capsys):
    code, out, _ = run_main(capsys, ["--version"])
    assert code == 0 and out.startswith("orch ")
    code, out, _ = run_main(capsys, ["--help"])
    assert code == 0
    for verb in ("hosts", "doctor", "configure", "run", "status", "logs", "attach", "stop", "rm", "ssh-config"):
        assert verb in out


def test_bad_settings_are_one_line_config_errors(home, remote, capsys, monkeypatch):
    monkeypatch.setenv("ORCH_FLEET", "Bad Fleet")
    code, _, err = run_main(capsys, ["status"])
    assert code == ExitCode.CONFIG and "invalid ORCH_FLEET" in err
    assert_one_line_error(err)
    monkeypatch.setenv("ORCH_FLEET", "f")
    monkeypatch.setenv("AWS_REGION", "mars-1")
    code, _, err = run_main(capsys, ["hosts"])
    assert code == ExitCode.CONFIG and "invalid AWS_REGION" in err
    assert remote == []


def test_sandbox_memory_is_one_size_for_all_hosts_or_one_per_host():
    from orch_wrapper.commands.sandbox import host_memory

    assert host_memory(None, 2) == [None, None]
    assert host_memory("3G", 3) == [3 << 30] * 3
    assert host_memory("3G,4G,512M", 3) == [3 << 30, 4 << 30, 512 << 20]


@pytest.mark.parametrize(
    ("value", "normalised"), [("8G", "8G"), ("512m", "512M"), ("8GiB", "8G"), ("16384K", "16384K"), (None, None)]
)
def test_mem_values_are_normalised(value, normalised):
    assert spec.parse_mem(value) == normalised


# --- orch run ------------------------------------------------------------------------------------------------------


class FakeRunResult(model.RunResult):
    pass


def allow_run(monkeypatch, host_name, state="RUNNING", **fields):
    calls = []

    def run_playbook(settings, name, extravars, limit=None, on_event=None):
        calls.append({"playbook": name, "extravars": dict(extravars), "limit": limit})
        job_spec = spec.decode_spec(extravars["orch_job_spec_b64"])
        job = record(job_spec["name"], state, iso(timedelta(0)), **fields)
        res = {"changed": True, "job": job, "msg": "started"}
        return model.RunResult(status="successful", rc=0, ok={host_name: [{"changed": False}, res]})

    monkeypatch.setattr(runner, "run_playbook", run_playbook)
    monkeypatch.setattr(agent, "ensure", lambda settings: str(settings.agent_sock))
    return calls


def test_run_sends_the_validated_spec_to_the_start_playbook(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201)])
    calls = allow_run(monkeypatch, "f-1")
    command = "cd ~/work/lros && python train.py --config 'prod.yaml' \"$HOME\" {{ x }}\nsecond line"
    argv = ["run", "lros-train", command, "--cwd", "~/work/lros", "--env", "A=1=2", "--env", "B="]
    argv += ["--secret", "HF_TOKEN=/orch/f/secrets/hf", "--mem", "8g"]
    code, out, err = run_main(capsys, argv)
    assert code == 0, err
    assert [c["playbook"] for c in calls] == ["job_start"]
    assert calls[0]["limit"] == "f-1"
    assert set(calls[0]["extravars"]) == {"orch_host", "orch_job_spec_b64"}
    assert calls[0]["extravars"]["orch_host"] == "f-1"
    assert spec.decode_spec(calls[0]["extravars"]["orch_job_spec_b64"]) == {
        "name": "lros-train",
        "command": command,
        "cwd": "~/work/lros",
        "repo": None,
        "env": {"A": "1=2", "B": ""},
        "secrets": {"HF_TOKEN": "/orch/f/secrets/hf"},
        "memory_max": "8G",
        "tty": True,
        "queue": True,
        "notify": None,
    }
    assert "lros-train: RUNNING on f-1 (127.0.0.1:2201)" in out
    assert "orch logs lros-train -f" in out and "orch attach lros-train" in out
    assert remote == []  # a single host: no query before the playbook


def test_run_takes_mem_and_notify_from_the_config_and_flags_override_them(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201)])
    calls = allow_run(monkeypatch, "f-1")
    (home / "config.toml").write_text('mem = "6g"\n')
    assert run_main(capsys, ["run", "a", "true"])[0] == 0
    monkeypatch.setenv("ORCH_MEM", "2G")  # the environment over the file
    assert run_main(capsys, ["run", "b", "true"])[0] == 0
    assert run_main(capsys, ["run", "c", "true", "--mem", "512M"])[0] == 0
    sent = [spec.decode_spec(c["extravars"]["orch_job_spec_b64"])["memory_max"] for c in calls]
    assert sent == ["6G", "2G", "512M"]
    (home / "config.toml").write_text('notify = "/orch/f/notify/slack"\n')
    assert run_main(capsys, ["run", "d", "true"])[0] == 0
    assert run_main(capsys, ["run", "e", "true", "--notify", "/orch/f/notify/mine"])[0] == 0
    told = [spec.decode_spec(c["extravars"]["orch_job_spec_b64"])["notify"] for c in calls[3:]]
    assert told == ["/orch/f/notify/slack", "/orch/f/notify/mine"]
    code, _, err = run_main(capsys, ["run", "f", "true", "--notify", "https://hooks.example/x"])
    assert code == ExitCode.USAGE and "invalid --notify" in err


def test_run_no_tty_asks_for_batch_mode_and_status_name_says_which(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201)])
    calls = allow_run(monkeypatch, "f-1")
    assert run_main(capsys, ["run", "dump", "python dump.py", "--no-tty"])[0] == 0
    assert spec.decode_spec(calls[0]["extravars"]["orch_job_spec_b64"])["tty"] is False
    for tty, said in ((False, "mode: batch, --no-tty"), (True, "mode: terminal")):
        status_replies(monkeypatch, {2201: [record("dump", "RUNNING", iso(timedelta(minutes=1)), tty=tty)]})
        code, out, _ = run_main(capsys, ["status", "dump"])
        assert code == 0 and said in out


END = "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        (
            dict(state="OOM", oom=True, oom_cause="job cap", ended=END, signal="SIGKILL"),
            ["memory cap: 64.0M, enforced", "oom: job cap (it reached"],
        ),
        (
            dict(state="OOM", oom=True, oom_cause="host limit", ended=END, signal="SIGKILL"),
            ["oom: host limit (all jobs together reached orch.slice"],
        ),
        (dict(state="RUNNING", memory_cap="not enforced: no helper"), ["memory cap: 64.0M, not enforced: no helper"]),
    ],
    ids=["oom-job-cap", "oom-host-limit", "not-enforced"],
)
def test_status_name_says_how_the_cap_holds_and_why_a_job_ended_oom(home, remote, capsys, monkeypatch, fields, said):
    seed_fleet([endpoint_host("f-1", 2201)])
    fields = {"memory_max": 64 << 20, "memory_cap": "enforced", **fields}
    status_replies(monkeypatch, {2201: [record("hog", fields.pop("state"), iso(timedelta(minutes=1)), **fields)]})
    code, out, _ = run_main(capsys, ["status", "hog"])
    assert code == 0
    for text in said:
        assert text in out, out


@pytest.mark.parametrize(
    ("memory_cap", "warned"),
    [("enforced", False), ("not enforced: orch's scope helper is not installed", True)],
    ids=["enforced", "not-enforced"],
)
def test_run_warns_when_the_host_cannot_hold_the_cap(home, remote, capsys, monkeypatch, memory_cap, warned):
    seed_fleet([endpoint_host("f-1", 2201)])
    allow_run(monkeypatch, "f-1", memory_max=64 << 20, memory_cap=memory_cap)
    code, _out, err = run_main(capsys, ["run", "hog", "true", "--mem", "64M"])
    assert code == 0
    said = "orch: warning: job hog runs without its --mem cap on f-1: not enforced: orch's scope helper"
    assert (said in err) is warned, err


def test_a_queued_job_says_its_place_in_run_and_status(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201)])
    queued = {"pid": None, "pgid": None, "reservation": 8 << 30, "queue_position": 2, "admitted": False}
    allow_run(monkeypatch, "f-1", "QUEUED", **queued)
    code, out, _ = run_main(capsys, ["run", "big", "true", "--mem", "8G"])
    assert code == 0
    assert "big: QUEUED (#2 in its queue: starts when 8.0G of orch.slice frees) on f-1" in out
    status_replies(monkeypatch, {2201: [record("big", "QUEUED", iso(timedelta(minutes=1)), **queued)]})
    code, out, _ = run_main(capsys, ["status", "--json"])
    (job,) = json.loads(out)["jobs"]
    assert (job["state"], job["queue_position"], job["reservation"]) == ("QUEUED", 2, 8 << 30)
    code, out, _ = run_main(capsys, ["status"])
    assert status_table(out)["big"]["MEMORY"] == "queued #2"


def test_run_help_names_the_default_reservation(capsys):
    code, out, _ = run_main(capsys, ["run", "--help"])
    assert code == 0
    assert f"Without --mem the job reserves {contract.DEFAULT_RESERVATION >> 30}G" in " ".join(out.split())


def test_run_places_on_the_least_busy_host(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201), endpoint_host("f-2", 2202), endpoint_host("f-3", 2203)])
    replies = {
        2201: [record("a", "RUNNING", iso(timedelta(hours=1))), record("b", "RUNNING", iso(timedelta(hours=1)))],
        2202: [
            record("c", "RUNNING", iso(timedelta(hours=1))),
            record("old", "SUCCEEDED", iso(timedelta(days=3)), ended=iso(timedelta(days=3)), exit_code=0),
        ],
        2203: [record("d", "RUNNING", iso(timedelta(hours=1))), record("e", "QUEUED", iso(timedelta(hours=1)))],
    }
    monkeypatch.setattr(
        ssh,
        "run_host_code",
        lambda s, h, args, timeout=30: subprocess.CompletedProcess([], 0, query_reply(replies[h.ssh_port]), b""),
    )
    calls = allow_run(monkeypatch, "f-2")
    code, out, err = run_main(capsys, ["run", "new", "true"])
    assert code == 0, err
    assert calls[0]["extravars"]["orch_host"] == "f-2"


def memory_fleet(monkeypatch, free_gib: dict[int, tuple[int, int]], waiting: dict[int, int] | None = None):
    """Three hosts whose queries report (orch.slice GiB, reserved GiB) by port; f-3 runs no job, the others one;
    WAITING: how many QUEUED jobs wait on a host, by port."""
    seed_fleet([endpoint_host(f"f-{port - 2200}", port) for port in free_gib])
    replies = {}
    for port, (alloc, reserved) in free_gib.items():
        jobs = [] if port == 2203 else [record(f"j{port}", "RUNNING", iso(timedelta(hours=1)))]
        for i in range((waiting or {}).get(port, 0)):
            fields = {"pid": None, "pgid": None, "queue_position": i + 1, "admitted": False}
            jobs.append(record(f"w{port}-{i}", "QUEUED", iso(timedelta(minutes=5)), **fields))
        memory = {**HOST_MEMORY, "memory_allocatable": alloc << 30, "memory_reserved": reserved << 30}
        replies[port] = {"jobs": jobs, "memory": memory}
    status_replies(monkeypatch, replies)


@pytest.mark.parametrize(
    ("mem", "free_gib", "chosen"),
    [
        ("8G", {2201: (30, 10), 2202: (30, 2), 2203: (14, 0)}, "f-2"),  # 28G free beats f-3's 14G and fewer jobs
        ("20G", {2201: (30, 5), 2202: (30, 12), 2203: (14, 0)}, "f-1"),  # only f-1 and f-2 hold it: the freer
        (None, {2201: (30, 29), 2202: (6, 0), 2203: (6, 1)}, "f-2"),  # no --mem: the most free memory still
    ],
    ids=["most-free", "only-where-it-fits", "no-mem"],
)
def test_run_places_by_unreserved_memory(home, remote, capsys, monkeypatch, mem, free_gib, chosen):
    memory_fleet(monkeypatch, free_gib)
    calls = allow_run(monkeypatch, chosen)
    code, _out, err = run_main(capsys, ["run", "new", "true", *(["--mem", mem] if mem else [])])
    assert code == 0, err
    assert calls[0]["extravars"]["orch_host"] == chosen


def test_run_refuses_a_reservation_larger_than_every_host_naming_the_largest(home, remote, capsys, monkeypatch):
    memory_fleet(monkeypatch, {2201: (30, 0), 2202: (62, 0), 2203: (14, 0)})
    code, _out, err = run_main(capsys, ["run", "huge", "true", "--mem", "64G"])
    assert code == ExitCode.USAGE
    assert_one_line_error(err)
    assert "--mem 64.0G is more than any host can give a job: the largest, f-2, has 62.0G for jobs" in err


def test_run_queues_where_the_job_starts_soonest_when_no_host_has_it_free(home, remote, capsys, monkeypatch):
    # f-1 is the freest but two jobs wait there; f-3's orch.slice can never hold 8G; f-2 has no queue
    memory_fleet(monkeypatch, {2201: (30, 25), 2202: (30, 28), 2203: (6, 5)}, waiting={2201: 2})
    calls = allow_run(monkeypatch, "f-2", "QUEUED", pid=None, reservation=8 << 30, queue_position=1, admitted=False)
    code, out, err = run_main(capsys, ["run", "new", "true", "--mem", "8G"])
    assert code == 0 and calls[0]["extravars"]["orch_host"] == "f-2", err
    assert "orch: no host has 8.0G unreserved now: queued on f-2, first in line" in err
    assert "new: QUEUED (#1 in its queue: starts when 8.0G of orch.slice frees) on f-2" in out
    assert spec.decode_spec(calls[0]["extravars"]["orch_job_spec_b64"])["queue"] is True


def test_run_no_queue_refuses_when_no_host_has_the_reservation_free(home, remote, capsys, monkeypatch):
    memory_fleet(monkeypatch, {2201: (30, 25), 2202: (30, 28), 2203: (14, 10)})
    calls = allow_run(monkeypatch, "f-1")
    code, _out, err = run_main(capsys, ["run", "new", "true", "--mem", "8G", "--no-queue"])
    assert code == ExitCode.USAGE and calls == []
    assert_one_line_error(err)
    assert "no host has 8.0G unreserved now: the freest, f-1, has 5.0G (--no-queue refuses rather than queues)" in err


def test_run_no_queue_reaches_the_host_in_the_spec(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201)])  # one host: its module decides, under its lock
    calls = allow_run(monkeypatch, "f-1")
    assert run_main(capsys, ["run", "new", "true", "--no-queue"])[0] == 0
    assert spec.decode_spec(calls[0]["extravars"]["orch_job_spec_b64"])["queue"] is False


def test_run_of_a_finished_job_goes_to_the_host_with_its_latest_history(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201), endpoint_host("f-2", 2202), endpoint_host("f-3", 2203)])
    hour = iso(timedelta(hours=1))
    replies = {
        # the busiest host holds the last run of "train"; an idle one an older run; the third nothing
        2201: [
            record("a", "RUNNING", hour),
            record("b", "RUNNING", hour),
            record("train", "FAILED", iso(timedelta(hours=3)), ended=iso(timedelta(hours=2)), exit_code=1),
        ],
        2202: [record("train", "SUCCEEDED", iso(timedelta(days=3)), ended=iso(timedelta(days=3)), exit_code=0)],
        2203: [],
    }
    queried = []
    status_replies(monkeypatch, replies, queried)
    calls = allow_run(monkeypatch, "f-1")
    code, out, err = run_main(capsys, ["run", "train", "python train.py"])
    assert code == 0, err
    assert sorted(queried) == [("f-1", ["query"]), ("f-2", ["query"]), ("f-3", ["query"])]
    assert [(c["playbook"], c["limit"], c["extravars"]["orch_host"]) for c in calls] == [("job_start", "f-1", "f-1")]
    assert "train: RUNNING on f-1 (127.0.0.1:2201)" in out


def test_run_refuses_a_name_running_on_another_host(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201), endpoint_host("f-2", 2202)])
    replies = {2201: [], 2202: [record("train", "RUNNING", iso(timedelta(minutes=5)))]}
    monkeypatch.setattr(
        ssh,
        "run_host_code",
        lambda s, h, args, timeout=30: subprocess.CompletedProcess([], 0, query_reply(replies[h.ssh_port]), b""),
    )
    calls = allow_run(monkeypatch, "f-1")
    code, _, err = run_main(capsys, ["run", "train", "true", "--host", "f-1"])
    assert code == ExitCode.USAGE
    assert_one_line_error(err)
    assert "already running on f-2" in err
    assert calls == []


def test_run_on_an_unknown_host_is_refused(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201)])
    calls = allow_run(monkeypatch, "f-1")
    code, _, err = run_main(capsys, ["run", "job", "true", "--host", "nope"])
    assert code == ExitCode.NOT_FOUND and "no host 'nope'" in err and "f-1" in err
    assert calls == []


def test_playbook_failure_is_one_line(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201)])
    monkeypatch.setattr(agent, "ensure", lambda settings: "")
    monkeypatch.setattr(
        runner,
        "run_playbook",
        lambda *a, **k: model.RunResult("failed", 2, failed={"f-1": "job train is already running\n(see status)"}),
    )
    code, _, err = run_main(capsys, ["run", "train", "true"])
    assert code == ExitCode.FAILURE
    assert_one_line_error(err)
    assert "f-1: job train is already running (see status)" in err


def test_empty_fleet_is_a_one_line_error(home, capsys, monkeypatch):
    monkeypatch.setattr(inventory, "inventory_list", lambda settings, refresh=False: {"_meta": {"hostvars": {}}})
    code, _, err = run_main(capsys, ["hosts"])
    assert code == ExitCode.NOT_FOUND
    assert_one_line_error(err)
    assert "no hosts in fleet f" in err and "orch sandbox up" in err


# --- the fake host replies have the host's shape -----------------------------------------------------------------


def documented_record_fields() -> set[str]:
    """The job.json fields ARCHITECTURE.md promises (the contract's page for them)."""
    text = (Path(__file__).resolve().parent.parent / "ARCHITECTURE.md").read_text()
    found = re.search(r"`job\.json` \(written atomically[^)]*\): `([^`]+)`", text)
    assert found, "ARCHITECTURE.md no longer lists the job.json fields"
    return {re.sub(r"\(.*\)", "", field).strip() for field in found.group(1).split(",")}


def test_fake_records_have_exactly_the_keys_the_host_writes():
    # tests/fixtures/host_query.json is what the real host package answered: each record has the same keys, the
    # documented job.json fields and the query's memory_current, live_processes and queue_position
    assert {frozenset(real) for real in REAL_RECORDS} == {RECORD_KEYS}
    assert RECORD_KEYS == documented_record_fields() | {"memory_current", "live_processes", "queue_position"}
    by_state = {real["state"]: real for real in REAL_RECORDS}
    assert set(by_state) == {"RUNNING", "SUCCEEDED", "FAILED", "KILLED"}
    assert (by_state["KILLED"]["exit_code"], by_state["KILLED"]["signal"]) == (None, "SIGTERM")
    assert (by_state["FAILED"]["exit_code"], by_state["FAILED"]["signal"]) == (3, None)
    for real in REAL_RECORDS:
        assert check_record(real) is real  # the fakes' rules hold for what the host wrote
    fake = record("x", "KILLED", iso(timedelta(1)), ended=iso(timedelta(0)), signal="SIGKILL")
    assert set(fake) == RECORD_KEYS
    assert json.loads(query_reply([fake])).keys() == HOST_REPLIES["query"]["reply"].keys()


@pytest.mark.parametrize(
    ("state", "extra", "problem"),
    [
        ("KILLED", {"signal": 15}, "signal 15: the host names it"),
        ("KILLED", {"exit_code": 143, "signal": "SIGTERM"}, "both exit_code and signal"),
        ("SUCCEEDED", {"exit_code": None}, "SUCCEEDED without exit code 0"),
        ("FAILED", {"ended": None, "exit_code": 1}, "FAILED without an end"),
        ("RUNNING", {"exit_code": 0}, "RUNNING with an end"),
        ("FAILED", {"memory_current": 1024}, "memory_current of a job that is not running"),
        ("RUNNING", {"memory_max": "8G"}, "memory_max '8G': the host records bytes"),
        ("DONE", {}, "state 'DONE'"),
    ],
)
def test_a_fake_record_the_host_would_never_write_is_refused(state, extra, problem):
    ended = {"ended": iso(timedelta(0)), "exit_code": 0 if state == "SUCCEEDED" else None}
    values = {**(ended if state not in ("RUNNING", "QUEUED") else {}), **extra}
    with pytest.raises(ValueError, match=re.escape(problem)):
        record("x", state, iso(timedelta(1)), **values)


def test_a_fake_record_takes_only_the_keys_the_host_writes():
    with pytest.raises(TypeError, match="memory"):
        record("x", "RUNNING", iso(timedelta(1)), memory=1)  # a laptop field (model.Job), not the host's


# --- orch status ---------------------------------------------------------------------------------------------------


def status_replies(monkeypatch, by_port, calls=None):
    def fake(settings, h, args, timeout=30):
        if calls is not None:
            calls.append((h.name, list(args)))
        reply = by_port[h.ssh_port]
        if isinstance(reply, tuple):  # (rc, stderr): ssh failed
            return subprocess.CompletedProcess([], reply[0], b"", reply[1])
        if isinstance(reply, dict):  # a whole-host reply: {"jobs": [...], "memory": {...}, "autostop": {...}}
            data = query_reply(reply["jobs"], reply.get("memory"), reply.get("autostop"))
            return subprocess.CompletedProcess([], 0, data, b"")
        return subprocess.CompletedProcess([], 0, query_reply(reply), b"")

    monkeypatch.setattr(ssh, "run_host_code", fake)
    monkeypatch.setattr(agent, "ensure", lambda settings: "")


def status_table(out: str) -> dict[str, dict[str, str]]:
    """`orch status`'s table by job name and column: cells are two or more spaces apart (ui.columns), a cell holds
    single spaces at most (STARTED's date and time, MEMORY's "5.8G (uncapped)"). `status NAME`'s detail lines (indented
    "  key: value") follow the table."""
    header, *lines = [line for line in out.splitlines() if not line.startswith("  ")]
    columns = re.split(r" {2,}", header.strip())
    assert columns == ["NAME", "HOST", "STATE", "STARTED", "ELAPSED", "MEMORY", "EXIT"]
    table = {}
    for line in lines:
        cells = re.split(r" {2,}", line.strip())
        assert len(cells) == len(columns), line
        table[cells[0]] = dict(zip(columns, cells, strict=True))
    return table


def sample() -> dict:
    """Query replies by ssh port, with times relative to now (built per test: collection may be minutes earlier)."""
    return {
        2201: [
            record("vma-scrape", "RUNNING", iso(timedelta(hours=2, minutes=5)), memory_current=int(5.8 * 1024**3)),
            record(
                "lros-train",
                "FAILED",
                iso(timedelta(hours=3)),
                ended=iso(timedelta(hours=1)),
                exit_code=3,
                memory_peak=7 * 1024**3,
            ),
            record("ancient", "SUCCEEDED", iso(timedelta(days=9)), ended=iso(timedelta(days=8)), exit_code=0),
        ],
        2202: [
            record(
                "coupon-backfill", "RUNNING", iso(timedelta(minutes=30)), memory_current=3 * 1024**3 + 300 * 1024**2
            ),
            record(
                "stopped-one", "KILLED", iso(timedelta(minutes=20)), ended=iso(timedelta(minutes=10)), signal="SIGTERM"
            ),
        ],
    }


def test_status_table_shows_active_and_recent_jobs(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201), endpoint_host("f-2", 2202)])
    calls = []
    status_replies(monkeypatch, sample(), calls)
    code, out, err = run_main(capsys, ["status"])
    assert code == 0, err
    assert sorted(calls) == [("f-1", ["query"]), ("f-2", ["query"])]
    header = out.splitlines()[0].split()
    assert header == ["NAME", "HOST", "STATE", "STARTED", "ELAPSED", "MEMORY", "EXIT"]
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if not line.startswith("  ")}
    assert set(rows) == {"vma-scrape", "lros-train", "coupon-backfill", "stopped-one"}  # "ancient" is history
    assert out.splitlines()[-2:] == ["  f-1: running", "  f-2: running"]  # the hosts under the table
    assert rows["vma-scrape"][1:3] == ["f-1", "RUNNING"]
    assert rows["vma-scrape"][-3:] == ["2h05m", "5.8G", "-"]
    assert rows["coupon-backfill"][-2:] == ["3.3G", "-"]
    assert rows["lros-train"][2] == "FAILED" and rows["lros-train"][-3:] == ["2h00m", "7.0G", "3"]
    assert rows["stopped-one"][-3:] == ["10m00s", "-", "SIGTERM"]  # the host names the signal that ended it


@pytest.mark.parametrize(
    ("memory_max", "memory_cap", "shown"),
    [
        (None, "none", "5.8G"),
        (8 * 1024**3, "enforced", "5.8G/8.0G"),
        (8 * 1024**3, "not enforced: cgroup v1 host, user scopes cannot hold a memory cap", "5.8G (uncapped)"),
    ],
    ids=["no-cap", "cap-enforced", "cap-not-enforced"],
)
def test_status_shows_a_memory_cap_only_when_the_host_enforces_it(
    home, remote, capsys, monkeypatch, memory_max, memory_cap, shown
):
    seed_fleet([endpoint_host("f-1", 2201)])
    job = record(
        "big", "RUNNING", iso(timedelta(minutes=5)), memory_current=int(5.8 * 1024**3),
        memory_max=memory_max, memory_cap=memory_cap,
    )  # fmt: skip
    status_replies(monkeypatch, {2201: [job]})
    code, out, _ = run_main(capsys, ["status"])
    assert code == 0
    assert status_table(out)["big"]["MEMORY"] == shown
    assert status_table(out)["big"]["EXIT"] == "-"
    code, out, _ = run_main(capsys, ["status", "--json"])
    assert json.loads(out)["jobs"][0]["memory_cap"] == memory_cap


def test_status_all_and_json(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201), endpoint_host("f-2", 2202)])
    status_replies(monkeypatch, sample())
    code, out, _ = run_main(capsys, ["status", "--all"])
    assert code == 0 and "ancient" in out
    code, out, _ = run_main(capsys, ["status", "--json"])
    data = json.loads(out)
    assert data["unreachable"] == {}
    by_name = {j["name"]: j for j in data["jobs"]}
    assert by_name["vma-scrape"]["host"] == "f-1"
    assert by_name["vma-scrape"]["memory"] == int(5.8 * 1024**3)
    assert by_name["lros-train"]["exit_code"] == 3
    assert "ancient" not in by_name


def test_status_of_one_job_and_unknown_job(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201)])
    calls = []
    status_replies(monkeypatch, {2201: sample()[2201][:1]}, calls)
    code, out, _ = run_main(capsys, ["status", "vma-scrape"])
    assert code == 0 and "vma-scrape" in out
    assert calls == [("f-1", ["query", "vma-scrape"])]
    unknown = HOST_REPLIES["query_unknown"]  # the host's `query NAME` of a job it does not have: exit 0, no jobs
    assert (unknown["argv"], unknown["rc"], unknown["reply"]["jobs"]) == (["query", "nope"], 0, [])
    reply = json.dumps(unknown["reply"]).encode()
    monkeypatch.setattr(
        ssh,
        "run_host_code",
        lambda s, h, args, timeout=30: subprocess.CompletedProcess([], unknown["rc"], reply, b""),
    )
    code, _, err = run_main(capsys, ["status", "nope"])
    assert code == ExitCode.NOT_FOUND
    assert_one_line_error(err)
    assert "no job nope" in err


def test_status_with_an_unreachable_host_still_shows_the_others(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201), endpoint_host("f-2", 2202)])
    replies = {2201: sample()[2201], 2202: (255, b"ssh: connect to host 127.0.0.1 port 2202: Connection refused\n")}
    status_replies(monkeypatch, replies)
    code, out, err = run_main(capsys, ["status"])
    assert code == ExitCode.UNREACHABLE
    assert "vma-scrape" in out and "coupon-backfill" not in out
    assert err.strip().splitlines() == [
        "orch: warning: f-2 is unreachable: ssh: connect to host 127.0.0.1 port 2202: Connection refused "
        "(run `orch doctor`)"
    ]


def test_status_json_names_the_unreachable_hosts_and_exits_4(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201), endpoint_host("f-2", 2202)])
    replies = {2201: sample()[2201], 2202: (255, b"ssh: connect to host 127.0.0.1 port 2202: Connection refused\n")}
    status_replies(monkeypatch, replies)
    code, out, err = run_main(capsys, ["status", "--json"])
    assert code == 4
    data = json.loads(out)  # stdout holds the JSON alone; the warning is on stderr
    assert data["unreachable"] == {"f-2": "ssh: connect to host 127.0.0.1 port 2202: Connection refused"}
    assert [(j["name"], j["host"]) for j in data["jobs"]] == [("lros-train", "f-1"), ("vma-scrape", "f-1")]
    assert err.strip().splitlines() == [
        "orch: warning: f-2 is unreachable: ssh: connect to host 127.0.0.1 port 2202: Connection refused "
        "(run `orch doctor`)"
    ]


def test_status_skips_stopped_instances_with_a_warning(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201), host("public")])
    calls = []
    status_replies(monkeypatch, {2201: []}, calls)
    code, out, err = run_main(capsys, ["status"])
    assert code == 0
    assert calls == [("f-1", ["query"])]
    assert "f-3 is stopped: skipped" in err
    assert "no jobs" in out


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (0, "0B"), (1023, "1023B"), (1536, "1.5K"), (int(5.8 * 1024**3), "5.8G"), (300 * 1024**2, "300M")],
)
def test_human_sizes(value, text):
    assert ui.human_size(value) == text


# --- ssh argv from the inventory's hostvars ------------------------------------------------------------------------


def test_ssh_argv_for_each_access_mode(home):
    settings = config.load()
    opts = [
        "-o",
        "BatchMode=yes",
        "-o",
        "ControlMaster=auto",
        "-o",
        f"ControlPath={home}/cm/%C",
        "-o",
        "ControlPersist=10m",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        f"IdentityAgent={home}/agent.sock",
        "-o",
        "IdentitiesOnly=no",
        "-o",
        f"UserKnownHostsFile={home}/known_hosts",
        "-o",
        "StrictHostKeyChecking=accept-new",
    ]
    assert ssh.argv(settings, host("endpoint"), ["python3", "-", "query"]) == [
        "ssh",
        *opts,
        "-p",
        "2201",
        "-l",
        "ec2-user",
        "127.0.0.1",
        "--",
        "python3 - query",
    ]
    proxy = (
        'ProxyCommand=sh -c "aws ssm start-session --target %h --document-name AWS-StartSSHSession '
        '--parameters portNumber=%p"'
    )
    assert ssh.argv(settings, host("ssm"), ["true"]) == [
        "ssh",
        *opts,
        "-p",
        "22",
        "-l",
        "ec2-user",
        "-o",
        proxy,
        "i-0aaaaaaaaaaaaaaa1",
        "--",
        "true",
    ]
    assert ssh.argv(settings, host("public"), tty=True) == [
        "ssh",
        *opts,
        "-t",
        "-p",
        "22",
        "-l",
        "admin",
        "203.0.113.7",
    ]
    # Ansible gets exactly the same options
    assert ssh.ansible_ssh_args(settings).split() == opts


def test_hosts_from_inventory_filters_the_fleet():
    other = {**HOSTVARS["endpoint"], "aws_tags": {"Name": unsafe("g-1"), "orch-fleet": unsafe("g")}}
    untagged = {"ansible_host": "10.0.0.9"}
    listing = {
        "_meta": {"hostvars": {"f-10": HOSTVARS["endpoint"], "f-2": HOSTVARS["ssm"], "g-1": other, "static": untagged}}
    }
    found = inventory.hosts_from_inventory(listing, "f")
    assert [h.name for h in found] == ["f-2", "f-10"]
    ssm_host = found[0]
    assert (ssm_host.instance_id, ssm_host.instance_type, ssm_host.state, ssm_host.access) == (
        "i-0aaaaaaaaaaaaaaa1",
        "m7g.2xlarge",
        "running",
        "ssm",
    )
    assert ssm_host.proxy_command.startswith('sh -c "aws ssm start-session --target %h')
    assert found[1].address == "127.0.0.1:2201" and found[1].proxy_command is None


def test_fleet_cache_is_keyed_and_expires(home, monkeypatch):
    settings = config.load()
    reads = []

    def inventory_list(settings, refresh=False):
        reads.append(refresh)
        return {"_meta": {"hostvars": {"f-1": HOSTVARS["endpoint"]}}}

    monkeypatch.setattr(inventory, "inventory_list", inventory_list)
    first = inventory.load(settings)
    assert inventory.load(settings) == first and reads == [False]  # second read from the cache
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:10")
    inventory.load(config.load())  # another endpoint: another key
    assert reads == [False, False]
    data = json.loads((home / "fleet.json").read_text())
    data["created"] -= inventory.CACHE_TTL + 1
    (home / "fleet.json").write_text(json.dumps(data))
    inventory.load(config.load())
    assert reads == [False, False, False]
    inventory.load(config.load(), refresh=True)
    assert reads[-1] is True


HOST_MEMORY = {
    "memory_total": 32 << 30,
    "memory_allocatable": 30 << 30,
    "memory_reserved": 18 << 30,
    "memory_used": 11 << 30,
    "memory_caps": "enforced",
}


def test_hosts_json(home, remote, capsys, monkeypatch):
    seed_fleet([host("endpoint"), host("ssm")])
    status_replies(monkeypatch, {2201: {"jobs": [], "memory": HOST_MEMORY}, 22: (255, b"ssh: connect refused")})
    code, out, err = run_main(capsys, ["hosts", "--json"])
    assert code == 0
    data = json.loads(out)
    assert [(h["name"], h["instance_id"], h["instance_type"], h["state"], h["address"]) for h in data] == [
        ("f-1", "i-0123456789abcdef0", "t3.2xlarge", "running", "127.0.0.1:2201"),
        ("f-2", "i-0aaaaaaaaaaaaaaa1", "m7g.2xlarge", "running", "i-0aaaaaaaaaaaaaaa1:22"),
    ]
    assert {k: data[0][k] for k in HOST_MEMORY} == HOST_MEMORY  # bytes, as the host reports them
    assert all(data[1][k] is None for k in HOST_MEMORY)  # unreachable: unknown, and said so
    assert "f-2 is unreachable" in err


@pytest.mark.parametrize(
    ("caps", "shown", "warned"),
    [
        ("enforced", "yes", False),
        ("not enforced: orch.slice is missing (run `orch configure` on the host)", "NO", True),
    ],
    ids=["caps-held", "caps-not-held"],
)
def test_hosts_shows_each_hosts_memory_and_whether_caps_hold(home, remote, capsys, monkeypatch, caps, shown, warned):
    seed_fleet([host("endpoint")])
    idle = {"mode": "jobs_and_sessions", "idle_minutes": 30, "busy": [], "stops_in": 720, "uptime": 3720}
    status_replies(monkeypatch, {2201: {"jobs": [], "memory": {**HOST_MEMORY, "memory_caps": caps}, "autostop": idle}})
    code, out, err = run_main(capsys, ["hosts"])
    assert code == 0
    header, row = (re.split(r" {2,}", line.strip()) for line in out.splitlines())
    assert header[-7:] == ["TOTAL", "ALLOC", "RESERVED", "USED", "CAPS", "UPTIME", "AUTOSTOP"]
    assert row[-7:] == ["32.0G", "30.0G", "18.0G", "11.0G", shown, "1h02m", "stops in 12m00s"]
    assert ("f-1 cannot hold --mem caps: not enforced: orch.slice is missing" in err) is warned, err


def test_ssh_config_blocks(home, remote, capsys, monkeypatch):
    seed_fleet([host("endpoint"), host("ssm")])
    monkeypatch.setattr(agent, "ensure", lambda settings: "")
    code, out, _ = run_main(capsys, ["ssh-config"])
    assert code == 0
    block = out.split("Host f-2\n")[1]
    assert "  HostName i-0aaaaaaaaaaaaaaa1\n  Port 22\n  User ec2-user\n" in block
    assert f"  IdentityAgent {home}/agent.sock\n" in block
    assert '  ProxyCommand sh -c "aws ssm start-session --target %h' in block
    assert "ProxyCommand" not in out.split("Host f-2\n")[0]
    assert "BatchMode" not in out  # plain interactive ssh may ask questions


def test_logs_follow_ends_its_ssh_and_exits_130_on_ctrl_c(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201)])
    monkeypatch.setattr(agent, "ensure", lambda settings: "")
    started = []

    class Ssh(REAL_POPEN):
        """ssh's stand-in: a real child that takes the host code on stdin, then waits for the job's end. Ctrl-C (a real
        SIGINT to this process) comes while orch waits for it."""

        def __init__(self, cmd, **kwargs):
            started.append((cmd, self))
            super().__init__(
                [sys.executable, "-c", "import sys, time; sys.stdin.buffer.read(); time.sleep(60)"], **kwargs
            )
            self.waits = 0

        def wait(self, timeout=None):
            self.waits += 1
            if self.waits == 1:
                os.kill(os.getpid(), signal.SIGINT)
            return super().wait(timeout)

    monkeypatch.setattr(subprocess, "Popen", Ssh)
    # Ctrl-C as a terminal delivers it, whatever this test process inherited: a process started in the background
    # by a non-interactive shell (as CI may start the suite) has SIGINT ignored, and Python then raises nothing.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code, out, err = run_main(capsys, ["logs", "train", "-f"])
        ((cmd, child),) = started
        assert code == 130
        assert child.returncode == -signal.SIGTERM  # orch ended its ssh: nothing is left following the log
        assert cmd[0] == "ssh" and cmd[-1].endswith(" follow train --tail 10")
    finally:
        signal.signal(signal.SIGINT, previous)
        for _cmd, child in started:
            if child.poll() is None:
                child.kill()
                child.wait()


def test_attach_execs_ssh_with_a_tty(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201)])
    status_replies(monkeypatch, {2201: [record("a.b", "RUNNING", iso(timedelta(minutes=1)))]})
    execs = []
    monkeypatch.setattr(read.os, "execvp", lambda file, args: execs.append((file, args)))
    assert cli.main(["attach", "a.b", "--read-only"]) == 0
    file, args = execs[0]
    assert file == "ssh" and "-t" in args
    assert args[-3:] == ["127.0.0.1", "--", "tmux -L orch attach-session -t =orch-a,b -r"]  # orch's own server


def test_attach_to_a_job_whose_record_names_no_tmux_socket_uses_the_default_server(home, remote, monkeypatch):
    # a record written by an older host package: its job runs on the user's default tmux server
    seed_fleet([endpoint_host("f-1", 2201)])
    old = {k: v for k, v in record("old", "RUNNING", iso(timedelta(minutes=1))).items() if k != "tmux_socket"}
    reply = json.dumps({**HOST_REPLIES["query"]["reply"], "jobs": [old]}).encode()
    monkeypatch.setattr(ssh, "run_host_code", lambda *a, **k: subprocess.CompletedProcess([], 0, reply, b""))
    monkeypatch.setattr(agent, "ensure", lambda settings: "")
    execs = []
    monkeypatch.setattr(read.os, "execvp", lambda file, args: execs.append((file, args)))
    assert cli.main(["attach", "old"]) == 0
    ((file, args),) = execs
    assert file == "ssh" and args[-3:] == ["127.0.0.1", "--", "tmux attach-session -t =orch-old"]


def test_attach_to_a_finished_job_is_refused(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201)])
    status_replies(monkeypatch, {2201: sample()[2201]})
    code, _, err = run_main(capsys, ["attach", "lros-train"])
    assert code == ExitCode.USAGE and "has finished (FAILED)" in err and "orch logs lros-train" in err
    assert_one_line_error(err)


def test_stop_and_rm_go_through_their_playbooks(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201), endpoint_host("f-2", 2202)])
    status_replies(monkeypatch, sample())
    calls = []

    stopped = record("coupon-backfill", "KILLED", iso(timedelta(minutes=30)), ended=iso(timedelta(0)), signal="SIGTERM")
    removed = sample()[2201][1]  # orch_job returns the record it removed

    def run_playbook(settings, name, extravars, limit=None, on_event=None):
        calls.append((name, dict(extravars), limit))
        job = stopped if name == "job_stop" else removed
        return model.RunResult("successful", 0, ok={limit: [{"changed": True, "job": job, "msg": "done"}]})

    monkeypatch.setattr(runner, "run_playbook", run_playbook)
    code, out, _ = run_main(capsys, ["stop", "coupon-backfill", "--grace", "3"])
    assert code == 0 and "coupon-backfill on f-2: KILLED (SIGTERM)" in out.splitlines()
    code, out, _ = run_main(capsys, ["rm", "lros-train", "--purge"])
    assert code == 0 and "removed lros-train from f-1 with its logs" in out
    assert calls == [
        ("job_stop", {"orch_host": "f-2", "orch_job_name": "coupon-backfill", "orch_job_grace": 3}, "f-2"),
        ("job_remove", {"orch_host": "f-1", "orch_job_name": "lros-train", "orch_job_purge_logs": True}, "f-1"),
    ]
    code, _, err = run_main(capsys, ["rm", "vma-scrape"])
    assert code == ExitCode.USAGE and "`orch stop vma-scrape` first" in err
    code, _, err = run_main(capsys, ["stop", "ghost"])
    assert code == ExitCode.NOT_FOUND and "no job ghost" in err
    assert len(calls) == 2


def test_a_lost_job_whose_processes_live_on_is_shown_stoppable_and_not_forgotten(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201)])
    reason = "supervisor gone; 2 process(es) of the job still run (orch stop orphan ends them)"
    lost = record("orphan", "LOST", iso(timedelta(days=3)), lost_reason=reason, live_processes=2)
    status_replies(monkeypatch, {2201: [lost]})
    calls = []

    def run_playbook(settings, name, extravars, limit=None, on_event=None):
        calls.append(name)
        job = {**lost, "live_processes": None, "lost_reason": "supervisor gone; orch stop ended the 2 process(es)"}
        return model.RunResult("successful", 0, ok={limit: [{"changed": True, "job": job, "msg": "done"}]})

    monkeypatch.setattr(runner, "run_playbook", run_playbook)
    code, out, err = run_main(capsys, ["status"])  # shown although it started days ago: it still runs
    assert code == 0 and "orphan" in out
    assert "2 of its processes still run; `orch stop orphan` ends them" in err
    code, _, err = run_main(capsys, ["rm", "orphan"])
    assert code == ExitCode.USAGE and "2 of its processes still running" in err and "`orch stop orphan` first" in err
    assert_one_line_error(err)
    assert calls == []
    code, out, _ = run_main(capsys, ["stop", "orphan"])
    assert code == 0 and calls == ["job_stop"] and "orphan on f-1: LOST" in out


# --- credentials ---------------------------------------------------------------------------------------------------


def test_missing_credentials_message_from_ssm(home):
    with pytest.raises(OrchError) as caught:
        agent.fetch_key(config.load())
    assert caught.value.exit_code == ExitCode.CONFIG
    assert str(caught.value) == ("no AWS credentials (set AWS_PROFILE or run `aws configure` (or `orch sandbox up`))")


def test_missing_credentials_message_from_the_real_inventory(home, capsys):
    # ansible-inventory and the aws_ec2 plugin for real, with no credentials anywhere
    code, out, err = run_main(capsys, ["hosts", "--refresh"])
    assert code == ExitCode.CONFIG
    assert_one_line_error(err)
    assert "no AWS credentials" in err and "AWS_PROFILE" in err


# --- the sandbox's environment, doctor -----------------------------------------------------------------------------


def test_a_running_sandbox_is_adopted_unless_the_environment_names_aws(tmp_path):
    (tmp_path / "sandbox").mkdir()
    sandbox = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5999", "AWS_ACCESS_KEY_ID": "testing", "ORCH_FLEET": "sandbox"}
    (tmp_path / "sandbox" / "env.json").write_text(json.dumps(sandbox))
    environ = {"ORCH_HOME": str(tmp_path), "ORCH_FLEET": "mine"}
    settings = config.load(environ)
    # every variable of the sandbox is adopted, set variables are kept, and the environment is read, never written
    assert (settings.endpoint, settings.fleet) == ("http://127.0.0.1:5999", "mine")
    assert dict(settings.aws_env) == {"AWS_ACCESS_KEY_ID": "testing"}
    assert environ == {"ORCH_HOME": str(tmp_path), "ORCH_FLEET": "mine"}
    for own in ({"AWS_PROFILE": "work"}, {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}):
        environ = {"ORCH_HOME": str(tmp_path), **own}
        settings = config.load(environ)
        assert (settings.fleet, settings.endpoint) == ("orch", own.get("AWS_ENDPOINT_URL"))
        assert dict(settings.aws_env) == {k: v for k, v in own.items() if k == "AWS_PROFILE"}
        assert environ == {"ORCH_HOME": str(tmp_path), **own}
    elsewhere = config.load({"ORCH_HOME": str(tmp_path / "elsewhere")})
    assert (elsewhere.fleet, elsewhere.endpoint, dict(elsewhere.aws_env)) == ("orch", None, {})


SANDBOX_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:5999",
    "AWS_REGION": "us-west-2",
    "AWS_DEFAULT_REGION": "us-west-2",
    "ORCH_FLEET": "sandbox",
}


@pytest.fixture
def sandbox_up(home, monkeypatch):
    """What `orch sandbox up` leaves: its env.json, and a caller's environment that names no endpoint or fleet."""
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION", "ORCH_FLEET"):
        monkeypatch.delenv(name)
    (home / "sandbox").mkdir()
    (home / "sandbox" / "env.json").write_text(json.dumps(SANDBOX_ENV))
    return home


def test_commands_find_the_sandbox_through_env_json(sandbox_up, remote, capsys, monkeypatch):
    seen = []

    def inventory_list(settings, refresh=False):
        seen.append(settings)
        return {"_meta": {"hostvars": {}}}

    monkeypatch.setattr(inventory, "inventory_list", inventory_list)
    before = dict(os.environ)
    code, _, err = run_main(capsys, ["hosts", "--refresh"])
    assert code == ExitCode.NOT_FOUND and "no hosts in fleet sandbox" in err
    (settings,) = seen
    assert (settings.fleet, settings.region, settings.endpoint) == ("sandbox", "us-west-2", "http://127.0.0.1:5999")
    assert dict(os.environ) == before  # the settings travel in Settings, not in the environment


def test_the_sandbox_reaches_ansible_and_boto3_through_settings_alone(sandbox_up):
    before = dict(os.environ)
    settings = config.load()
    env = ansible_env.envvars(settings)
    wanted = {k: v for k, v in SANDBOX_ENV.items() if k != "AWS_DEFAULT_REGION"}  # AWS_REGION says it for Ansible
    assert {k: env[k] for k in wanted} == wanted
    assert ansible_env.child_environ(settings)["AWS_SECRET_ACCESS_KEY"] == "testing"
    credentials = aws.session(settings).get_credentials()
    assert (credentials.access_key, credentials.secret_key) == ("testing", "testing")
    ssm = aws.client(settings, "ssm")
    assert (ssm.meta.endpoint_url, ssm.meta.region_name) == ("http://127.0.0.1:5999", "us-west-2")
    assert dict(os.environ) == before
    assert "testing" not in repr(settings)  # credentials stay out of tracebacks and assertion messages


def test_doctor_names_an_unreachable_endpoint(home, capsys):
    code, out, _ = run_main(capsys, ["doctor"])
    assert code == ExitCode.FAILURE
    lines = out.splitlines()
    assert lines[0].startswith("ok   local tools: ssh, ssh-agent, ssh-add, ansible-playbook")
    assert "ok   region: ap-northeast-1" in lines
    fail = [line for line in lines if line.startswith("FAIL")]
    assert len(fail) == 1 and fail[0].startswith("FAIL AWS endpoint: http://127.0.0.1:9")
    assert "-> start it with `orch sandbox up`, or fix AWS_ENDPOINT_URL" in fail[0]


def test_doctor_names_missing_credentials(home, moto, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    code, out, _ = run_main(capsys, ["doctor"])
    assert code == ExitCode.FAILURE
    assert f"ok   AWS endpoint: {moto}" in out
    assert (
        "FAIL AWS credentials: none found  -> set AWS_PROFILE or run `aws configure` (or `orch sandbox up`)"
        in out.splitlines()
    )


def test_doctor_names_an_unknown_region(home, capsys, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "ap-nowhere-9")
    code, out, _ = run_main(capsys, ["doctor"])
    assert code == ExitCode.FAILURE
    assert "FAIL region: unknown region ap-nowhere-9  -> set AWS_REGION, e.g. ap-northeast-1" in out


@pytest.fixture
def doctor_world(home, remote, monkeypatch):
    """Everything `orch doctor` checks, answering as it should: a test breaks one part. The AWS endpoint is a socket
    that listens; STS and SSM answer in-process; the fleet (f-1) comes from a fake inventory; orch's agent holds the
    key; ssh to a host runs `true`."""
    listener = socket.create_server(("127.0.0.1", 0))
    world = SimpleNamespace(
        endpoint=f"http://127.0.0.1:{listener.getsockname()[1]}",
        missing_tools=set(),
        sts_error=None,
        fleet_key="",
        hostvars={"f-1": endpoint_hostvars("f-1", 2201)},
        ssh_timeout=set(),  # ports whose ssh gets no answer
        ssh_calls=[],
        caps="enforced",  # what every host's query says of --mem caps
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", world.endpoint)
    monkeypatch.setattr(
        shutil, "which", lambda tool, *a, **k: None if tool in world.missing_tools else REAL_WHICH(tool)
    )

    def client(settings, service):
        def get_caller_identity():
            if world.sts_error is not None:
                raise world.sts_error
            return {"UserId": "AIDAEXAMPLE", "Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/dev"}

        def get_parameter(Name, WithDecryption):  # noqa: N803 - boto3's keyword names
            assert (Name, WithDecryption) == ("/orch/f/ssh/private-key", True)
            return {"Parameter": {"Name": Name, "Type": "SecureString", "Value": world.fleet_key}}

        return SimpleNamespace(get_caller_identity=get_caller_identity, get_parameter=get_parameter)

    monkeypatch.setattr(aws, "client", client)
    monkeypatch.setattr(inventory, "inventory_list", lambda s, refresh=False: {"_meta": {"hostvars": world.hostvars}})
    monkeypatch.setattr(agent, "ensure", lambda settings: str(settings.agent_sock))

    def run(cmd, *args, **kwargs):
        if cmd[0] != "ssh":
            return REAL_RUN(cmd, *args, **kwargs)  # through the `remote` fixture's Popen: refused unless allowed
        port = int(cmd[cmd.index("-p") + 1])
        world.ssh_calls.append((port, cmd[-2:]))
        if port in world.ssh_timeout:
            raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])
        return subprocess.CompletedProcess(cmd, 0, b"", b"")

    monkeypatch.setattr(subprocess, "run", run)

    def host_code(settings, h, args, timeout=30):  # the host's query: its memory, as `orch_host.script` sends it
        memory = {**HOST_MEMORY, "memory_caps": world.caps}
        return subprocess.CompletedProcess([], 0, query_reply([], memory), b"")

    monkeypatch.setattr(ssh, "run_host_code", host_code)
    yield world
    listener.close()


def doctor_healthy(world) -> list[str]:
    """`orch doctor`'s lines when every check passes, but the last line."""
    return [
        "ok   local tools: ssh, ssh-agent, ssh-add, ansible-playbook, ansible-inventory",
        "ok   region: ap-northeast-1",
        f"ok   AWS endpoint: {world.endpoint}",
        "ok   AWS credentials: account 123456789012 (arn:aws:iam::123456789012:user/dev)",
        "ok   inventory: 1 host(s) in fleet f",
        "ok   fleet key in orch's agent: /orch/f/ssh/private-key",
        "ok   ssh f-1: 127.0.0.1:2201 as ec2-user",
        "ok   memory caps f-1: enforced (orch.slice 30.0G)",
    ]


def test_doctor_passes_when_every_check_does(doctor_world, capsys):
    code, out, err = run_main(capsys, ["doctor"])
    assert (code, err) == (0, "")
    assert out.splitlines() == [*doctor_healthy(doctor_world), "all checks passed"]
    assert doctor_world.ssh_calls == [(2201, ["--", "true"])]


def test_doctor_names_missing_local_tools(doctor_world, capsys):
    doctor_world.missing_tools = {"ssh-add", "ansible-inventory"}
    code, out, _ = run_main(capsys, ["doctor"])
    assert code == 1
    assert out.splitlines() == [
        "FAIL local tools: missing: ssh-add, ansible-inventory  -> run scripts/install",
        *doctor_healthy(doctor_world)[1:],
        "1 check(s) failed",
    ]


def test_doctor_names_rejected_credentials(doctor_world, capsys):
    error = {
        "Error": {"Code": "InvalidClientTokenId", "Message": "The security token included in the request is invalid."}
    }
    doctor_world.sts_error = botocore.exceptions.ClientError(error, "GetCallerIdentity")
    code, out, _ = run_main(capsys, ["doctor"])
    assert code == 1
    assert out.splitlines() == [
        *doctor_healthy(doctor_world)[:3],
        "FAIL AWS credentials: rejected: InvalidClientTokenId  -> check AWS_PROFILE or run `aws configure`",
        "1 check(s) failed",
    ]  # nothing past the credentials is asked with credentials AWS refuses


def test_doctor_names_an_empty_fleet(doctor_world, capsys):
    doctor_world.hostvars = {
        "g-1": {**HOSTVARS["endpoint"], "aws_tags": {"Name": unsafe("g-1"), "orch-fleet": unsafe("g")}}
    }
    code, out, _ = run_main(capsys, ["doctor"])
    assert code == 1
    assert out.splitlines() == [
        *doctor_healthy(doctor_world)[:4],
        "FAIL inventory: no hosts in fleet f  -> run `orch sandbox up` or provision",
        "1 check(s) failed",
    ]
    assert doctor_world.ssh_calls == []


def test_doctor_names_a_fleet_key_the_agent_will_not_load(doctor_world, home, capsys, monkeypatch):
    # orch's real agent and ssh-add, handed what SSM holds: not a key
    doctor_world.fleet_key = "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----"
    monkeypatch.setattr(subprocess, "Popen", REAL_POPEN)
    monkeypatch.setattr(agent, "ensure", REAL_AGENT_ENSURE)
    try:
        code, out, _ = run_main(capsys, ["doctor"])
    finally:
        stopped = agent.stop(config.load())
    assert stopped  # doctor started orch's own agent
    assert code == 1
    *first, fail, last = out.splitlines()
    assert first == doctor_healthy(doctor_world)[:5] and last == "1 check(s) failed"
    # ssh-add's own reason after its "(stdin)" differs between OpenSSH builds ("invalid format", "error in libcrypto")
    assert re.fullmatch(
        r"FAIL fleet key in orch's agent: ssh-add refused the fleet key: Error loading key \"\(stdin\)\": [^ ].*"
        r"  -> check the SSM parameter /orch/f/ssh/private-key",
        fail,
    ), fail
    assert not (home / "key-f.fingerprint").exists()
    assert doctor_world.ssh_calls == []


def test_doctor_names_a_host_that_does_not_answer_ssh(doctor_world, capsys):
    doctor_world.hostvars = {"f-1": endpoint_hostvars("f-1", 2201), "f-2": endpoint_hostvars("f-2", 2202)}
    doctor_world.ssh_timeout = {2201}
    code, out, _ = run_main(capsys, ["doctor"])
    assert code == 1
    assert out.splitlines() == [
        *doctor_healthy(doctor_world)[:4],
        "ok   inventory: 2 host(s) in fleet f",
        "ok   fleet key in orch's agent: /orch/f/ssh/private-key",
        "FAIL ssh f-1: 127.0.0.1:2201: no answer in 20 s  -> start the instance or check the network",
        "ok   ssh f-2: 127.0.0.1:2202 as ec2-user",  # one silent host does not stop the others' checks
        "ok   memory caps f-2: enforced (orch.slice 30.0G)",
        "1 check(s) failed",
    ]


def test_doctor_warns_of_a_host_that_cannot_hold_caps(doctor_world, capsys):
    doctor_world.caps = "not enforced: orch.slice is missing (run `orch configure` on the host)"
    code, out, _ = run_main(capsys, ["doctor"])
    assert code == 0  # the host works; its caps do not, and doctor says so
    assert out.splitlines() == [
        *doctor_healthy(doctor_world)[:-1],
        "warn memory caps f-1: not enforced: orch.slice is missing (run `orch configure` on the host)"
        "  -> run `orch configure`",
        "all checks passed, 1 warning(s)",
    ]


def test_columns_align_and_colour_only_on_request():
    rows = [["vma-scrape", "f-1", "RUNNING", "2h05m"], ["x", "f-10", "FAILED", "3s"]]
    plain = ui.columns(["NAME", "HOST", "STATE", "ELAPSED"], rows, right=("ELAPSED",))
    assert plain.splitlines() == [
        "NAME        HOST  STATE    ELAPSED",
        "vma-scrape  f-1   RUNNING    2h05m",
        "x           f-10  FAILED        3s",
    ]
    coloured = ui.columns(["NAME", "HOST", "STATE", "ELAPSED"], rows, ("ELAPSED",), ["32", "31"], colour=True)
    assert "\033[32mRUNNING\033[0m" in coloured and "\033[31mFAILED \033[0m" in coloured
    # the escapes take no room: without them the lines are the plain ones
    assert re.sub(r"\033\[[0-9;]*m", "", coloured) == plain


@pytest.mark.parametrize(("isatty", "no_color", "expected"), [(True, "", True), (True, "1", False), (False, "", False)])
def test_status_colours_only_a_terminal_without_no_color(monkeypatch, isatty, no_color, expected):
    monkeypatch.setenv("NO_COLOR", no_color)
    out = type("Out", (), {"isatty": lambda self: isatty})()
    assert ui._colour(out) is expected


def test_every_verb_hands_its_parsed_values_to_a_keyword_only_function():
    import inspect

    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "verb")
    for verb, sub in subparsers.choices.items():
        wrapper = sub.get_default("func")
        if wrapper is cli._completion:  # the parser printing itself as a script: it lives beside the parser
            func = wrapper
        else:
            module, name = wrapper.__qualname__.split(".")
            func = getattr(getattr(cli, f"_{module}")(), name)
        params = list(inspect.signature(func).parameters.values())
        assert params[0].name == "settings", verb
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), verb
        dests = {a.dest for a in sub._actions if a.dest not in ("help",)}
        assert {p.name for p in params[1:]} == dests, verb


def test_status_shows_an_unreadable_record_as_unknown_and_says_why(home, remote, capsys, monkeypatch):
    from orch_host import records as host_records

    seed_fleet([endpoint_host("f-1", 2201)])
    jobs = [host_records.unreadable("broken", "job.json is empty"), record("fine", "RUNNING", iso(timedelta(1)))]
    reply = json.dumps({"host": "h", "boot_id": "b", "jobs": jobs}).encode()
    monkeypatch.setattr(ssh, "run_host_code", lambda *a, **k: subprocess.CompletedProcess([], 0, reply, b""))
    monkeypatch.setattr(agent, "ensure", lambda settings: "")
    code, out, err = run_main(capsys, ["status"])
    assert code == 0
    table = status_table(out)
    assert table["broken"]["STATE"] == "UNKNOWN" and table["fine"]["STATE"] == "RUNNING"
    assert err == (
        "orch: warning: job broken on f-1: job.json is empty (~/logs/broken/job.json); `orch rm broken` forgets it\n"
    )


def test_status_shows_a_job_whose_log_is_incomplete_with_its_true_end_and_the_note(home, remote, capsys, monkeypatch):
    seed_fleet([endpoint_host("f-1", 2201)])
    note = "log incomplete: the disk holding ~/logs/fill (mounted at /home) was full (0 bytes free)"
    jobs = [record("fill", "FAILED", iso(timedelta(1)), ended=iso(timedelta(0)), exit_code=7, log_note=note)]
    monkeypatch.setattr(
        ssh, "run_host_code", lambda *a, **k: subprocess.CompletedProcess([], 0, query_reply(jobs), b"")
    )
    monkeypatch.setattr(agent, "ensure", lambda settings: "")
    code, out, err = run_main(capsys, ["status", "fill"])
    assert code == 0
    row = status_table(out)["fill"]
    assert (row["STATE"], row["EXIT"]) == ("FAILED", "7")
    assert err == f"orch: warning: job fill on f-1: {note}\n"
    code, out, err = run_main(capsys, ["status", "fill", "--json"])
    assert json.loads(out)["jobs"][0]["log_note"] == note


# --- orch up / orch down (issue 11) ---------------------------------------------------------------------------------


@pytest.fixture
def ec2_world(home, remote, monkeypatch):
    """A fleet f-1..f-3 whose instance states live here: the inventory reads them, the power playbook changes them,
    and a host answers ssh while it runs."""
    world = SimpleNamespace(states={"f-1": "running", "f-2": "running", "f-3": "stopped"}, playbooks=[], probes=[])

    def inventory_list(settings, refresh=False):
        hostvars = {}
        for i, (name, state) in enumerate(sorted(world.states.items())):
            hv = endpoint_hostvars(name, 2201 + i)
            hv["aws_instance_id"] = unsafe(f"i-{i + 1:017x}")
            hv["orch_instance_id"] = unsafe(f"i-{i + 1:017x}")
            hv["orch_state"] = unsafe(state)
            hostvars[name] = hv
        return {"_meta": {"hostvars": hostvars}, "fleet_f": {"hosts": sorted(hostvars)}}

    def run_playbook(settings, name, extravars, limit=None, on_event=None):
        world.playbooks.append((name, dict(extravars)))
        if name == "power":
            by_id = {f"i-{i + 1:017x}": n for i, n in enumerate(sorted(world.states))}
            for instance in extravars["orch_instance_ids"]:
                world.states[by_id[instance]] = extravars["orch_power_state"]
        return model.RunResult(status="successful", rc=0)

    real_run = subprocess.run

    def probe(argv, *args, **kwargs):
        if argv[0] == "ssh" and argv[-1] == "true":  # instances.wait_ssh's probe
            port = int(argv[argv.index("-p") + 1])
            name = sorted(world.states)[port - 2201]
            world.probes.append(name)
            return subprocess.CompletedProcess(argv, 0 if world.states[name] == "running" else 255, b"", b"")
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(inventory, "inventory_list", inventory_list)
    monkeypatch.setattr(runner, "run_playbook", run_playbook)
    monkeypatch.setattr(instances.subprocess, "run", probe)
    monkeypatch.setattr(agent, "ensure", lambda settings: "")
    monkeypatch.setattr(ssh, "close_masters", lambda settings, hosts: None)
    return world


def test_down_refuses_while_jobs_run_or_queue_there_naming_them(ec2_world, capsys, monkeypatch):
    queued = {"pid": None, "queue_position": 1, "admitted": False}
    replies = {2201: [record("train", "RUNNING", iso(timedelta(hours=1)))], 2202: []}
    replies[2202] = [record("waits", "QUEUED", iso(timedelta(minutes=1)), **queued)]
    status_replies(monkeypatch, replies)
    code, _out, err = run_main(capsys, ["down"])
    assert code == ExitCode.USAGE
    assert_one_line_error(err)
    assert "not stopping: f-1 runs train (RUNNING); f-2 runs waits (QUEUED)" in err and "--force" in err
    assert ec2_world.playbooks == [] and ec2_world.states["f-1"] == "running"


def test_down_stops_the_named_idle_host_and_says_a_stopped_one_is_already(ec2_world, capsys, monkeypatch):
    status_replies(
        monkeypatch,
        {2201: [record("old", "SUCCEEDED", iso(timedelta(days=1)), ended=iso(timedelta(days=1)), exit_code=0)]},
    )
    code, out, err = run_main(capsys, ["down", "f-1", "f-3"])
    assert code == 0, err
    assert ec2_world.playbooks == [
        ("power", {"orch_power_state": "stopped", "orch_instance_ids": ["i-" + "0" * 16 + "1"]})
    ]
    assert "f-3: already stopped" in out and "f-1: stopped (`orch up f-1` starts it" in out
    assert ec2_world.states == {"f-1": "stopped", "f-2": "running", "f-3": "stopped"}


def test_down_force_stops_a_host_with_jobs_without_asking_it(ec2_world, capsys):
    code, _out, err = run_main(capsys, ["down", "f-2", "--force"])  # no query: remote refuses ssh
    assert code == 0, err and ec2_world.states["f-2"] == "stopped"


def test_up_starts_the_stopped_hosts_and_waits_for_their_ssh(ec2_world, capsys):
    code, out, err = run_main(capsys, ["up"])
    assert code == 0, err
    assert ec2_world.playbooks == [
        ("power", {"orch_power_state": "running", "orch_instance_ids": ["i-" + "0" * 16 + "3"]})
    ]
    assert "f-3: starting" in out and "f-3: running, ssh answers" in out
    assert set(ec2_world.probes) == {"f-1", "f-2", "f-3"}


def test_run_on_a_fleet_with_no_running_host_starts_the_first_stopped_one(ec2_world, capsys, monkeypatch):
    ec2_world.states.update({"f-1": "stopped", "f-2": "stopped"})
    real = runner.run_playbook
    calls = allow_run(monkeypatch, "f-1")
    allowed = runner.run_playbook

    def both(settings, name, extravars, limit=None, on_event=None):
        target = real if name == "power" else allowed
        return target(settings, name, extravars, limit=limit, on_event=on_event)

    monkeypatch.setattr(runner, "run_playbook", both)
    code, out, err = run_main(capsys, ["run", "wakes", "true"])
    assert code == 0, err
    assert "orch: no host of fleet f is running: starting f-1 for the job" in err
    assert ec2_world.states["f-1"] == "running" and calls[0]["extravars"]["orch_host"] == "f-1"
    assert "wakes: RUNNING on f-1" in out


def test_a_job_last_seen_on_a_host_now_stopped_says_how_to_start_it(ec2_world, capsys, monkeypatch):
    status_replies(
        monkeypatch,
        {
            2201: [],
            2202: [record("train", "SUCCEEDED", iso(timedelta(hours=1)), ended=iso(timedelta(hours=1)), exit_code=0)],
        },
    )
    assert run_main(capsys, ["status"])[0] == 0  # seen: train on f-2
    ec2_world.states["f-2"] = "stopped"
    inventory.invalidate(config.load())
    code, _out, err = run_main(capsys, ["logs", "train"])
    assert code == ExitCode.UNREACHABLE
    assert "orch: job train is on f-2, which is stopped" in err and "`orch up f-2` starts it" in err


def test_the_hypervisor_acts_on_state_changes_only():
    from orch_wrapper.sandbox import hypervisor

    assert hypervisor.action(None, "stopped") is None  # what it found at its start: left as it is
    assert hypervisor.action("running", "running") is None  # a container stopped behind EC2's back stays stopped
    assert hypervisor.action("running", "stopping") == "stop"
    assert hypervisor.action("running", "stopped") == "stop"
    assert hypervisor.action("stopping", "stopped") is None
    assert hypervisor.action("running", "terminated") == "stop"
    assert hypervisor.action("stopped", "pending") == "start"
    assert hypervisor.action("stopped", "running") == "start"
    assert hypervisor.action("pending", "running") is None


def host_script_replies(monkeypatch, answers: dict[str, object], calls: list) -> None:
    """ssh.run_host_code answering the host script's autostop and keepalive verbs with ANSWERS by host name."""

    def fake(settings, h, args, timeout=30):
        calls.append((h.name, list(args)))
        answer = answers[h.name]
        if isinstance(answer, str):  # the script's one-line refusal
            return subprocess.CompletedProcess([], 1, b"", f"orch: {answer}\n".encode())
        return subprocess.CompletedProcess([], 0, json.dumps(answer).encode(), b"")

    monkeypatch.setattr(ssh, "run_host_code", fake)
    monkeypatch.setattr(agent, "ensure", lambda settings: "")


IDLE = {"mode": "jobs_and_sessions", "idle_minutes": 30, "busy": [], "stops_in": 754, "uptime": 7380, "stopping": None}


def test_autostop_shows_each_running_hosts_countdown(ec2_world, capsys, monkeypatch):
    calls = []
    busy = {**IDLE, "busy": ["2 jobs", "1 interactive login"], "stops_in": None}
    host_script_replies(monkeypatch, {"f-1": IDLE, "f-2": busy}, calls)
    code, out, err = run_main(capsys, ["autostop"])
    assert code == 0, err
    assert sorted(calls) == [("f-1", ["autostop", "status"]), ("f-2", ["autostop", "status"])]
    rows = [re.split(r" {2,}", line.strip()) for line in out.splitlines()]
    assert rows[0] == ["HOST", "MODE", "IDLE", "UPTIME", "AUTOSTOP"]
    assert rows[1] == ["f-1", "jobs_and_sessions", "30m", "2h03m", "stops in 12m34s"]
    assert rows[2][-1] == "busy: 2 jobs, 1 interactive login"
    assert "f-3 is stopped: skipped (`orch up f-3` starts it)" in err


def test_autostop_changes_the_named_hosts_and_says_a_refusal_in_one_line(ec2_world, capsys, monkeypatch):
    calls = []
    host_script_replies(monkeypatch, {"f-1": {**IDLE, "mode": "off"}}, calls)
    code, out, _ = run_main(capsys, ["autostop", "f-1", "--off", "--idle", "45"])
    assert code == 0 and calls == [("f-1", ["autostop", "set", "--mode", "off", "--idle", "45"])]
    assert out.splitlines()[1].split()[-1] == "off"
    for argv, said in (
        (["autostop", "--idle", "0"], "expected whole minutes from 1 to 10080"),
        (["autostop", "--mode", "sometimes"], "invalid choice"),
        (["keepalive", "f-1", "--for", "2 hours"], "invalid --for"),
        (["keepalive", "f-1", "--for", "31d"], "longer than 30 days"),
    ):
        code, _out, err = run_main(capsys, argv)
        assert code == ExitCode.USAGE and said in err, (argv, err)
        assert_one_line_error(err)
    host_script_replies(monkeypatch, {"f-1": "autostop idle minutes must be 1 to 10080, not 99999"}, calls)
    code, _out, err = run_main(capsys, ["autostop", "f-1", "--idle", "45"])
    assert code == ExitCode.UNREACHABLE and "no host answered: autostop idle minutes must be" in err


def test_keepalive_holds_the_named_host(ec2_world, capsys, monkeypatch):
    calls = []
    host_script_replies(monkeypatch, {"f-2": {"keepalive_until": 1e10}}, calls)
    code, out, err = run_main(capsys, ["keepalive", "f-2", "--for", "1h30m"])
    assert code == 0, err
    assert calls == [("f-2", ["keepalive", "5400"])] and "f-2: kept up for 1h30m" in out


def test_status_shows_each_hosts_uptime_and_countdown_under_the_table(ec2_world, capsys, monkeypatch):
    job = record("train", "RUNNING", iso(timedelta(hours=1)))
    status_replies(
        monkeypatch,
        {2201: {"jobs": [job], "autostop": {**IDLE, "busy": ["1 job"]}}, 2202: {"jobs": [], "autostop": IDLE}},
    )
    code, out, err = run_main(capsys, ["status"])
    assert code == 0, err
    assert out.splitlines()[-3:] == [
        "  f-1: running, up 2h03m, busy: 1 job",
        "  f-2: running, up 2h03m, stops in 12m34s",
        "  f-3: stopped (`orch up f-3` starts it)",
    ]
    code, out, err = run_main(capsys, ["status", "--json"])
    hosts = json.loads(out)["hosts"]
    assert [(h["name"], h["state"], (h["autostop"] or {}).get("busy")) for h in hosts] == [
        ("f-1", "running", ["1 job"]),
        ("f-2", "running", []),
        ("f-3", "stopped", None),
    ]
