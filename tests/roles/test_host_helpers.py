"""The small programs the roles install on hosts, run here for real: the deploy-key fetch against moto's SSM,
the job log cleanup on aged directories, and the writer pause that makes copytruncate lossless."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

ROLES = Path(__file__).resolve().parents[2] / "roles"
FETCH = ROLES / "orch_repos" / "files" / "orch_fetch_deploy_key.py"
RETENTION = ROLES / "orch_log_retention" / "files" / "orch_log_retention.py"
WRITERS = ROLES / "orch_log_retention" / "files" / "orch_log_writers.py"
FAKE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAfake\n-----END OPENSSH PRIVATE KEY-----\n"
DAY = 86400


def run(*args: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env, timeout=60)


# --- orch-fetch-deploy-key ----------------------------------------------------------------------------------------


@pytest.fixture
def ssm(aws_env):
    client = boto3.client(
        "ssm",
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        region_name=aws_env["AWS_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.put_parameter(Name="/orch/t/deploy-keys/alpha", Value=FAKE_KEY, Type="SecureString", Overwrite=True)
    client.put_parameter(Name="/orch/t/deploy-keys/token", Value="not a key", Type="SecureString", Overwrite=True)
    return client


def test_fetch_writes_the_key_0600_and_never_prints_it(ssm, aws_env, tmp_path):
    dest = tmp_path / "ssh" / "orch_deploy_alpha"
    first = run(FETCH, "alpha", "/orch/t/deploy-keys/alpha", dest, env=aws_env)
    second = run(FETCH, "alpha", "/orch/t/deploy-keys/alpha", dest, env=aws_env)
    assert (first.returncode, first.stdout.strip()) == (0, "changed"), first.stderr
    assert (second.returncode, second.stdout.strip()) == (0, "unchanged"), second.stderr
    assert dest.read_text() == FAKE_KEY
    assert dest.stat().st_mode & 0o777 == 0o600
    assert (dest.parent.stat().st_mode & 0o777) == 0o700
    assert "PRIVATE KEY" not in first.stdout + first.stderr + second.stdout + second.stderr


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [
        ("/orch/t/deploy-keys/missing", "repo alpha: SSM parameter /orch/t/deploy-keys/missing does not exist"),
        ("/orch/t/deploy-keys/token", "repo alpha: SSM parameter /orch/t/deploy-keys/token does not hold an SSH"),
    ],
    ids=["missing-parameter", "not-a-private-key"],
)
def test_fetch_failure_names_the_repo_and_keeps_the_old_key(ssm, aws_env, tmp_path, parameter, expected):
    dest = tmp_path / "orch_deploy_alpha"
    dest.write_text("previous key\n")
    result = run(FETCH, "alpha", parameter, dest, env=aws_env)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(expected), result.stderr
    assert "Traceback" not in result.stderr
    assert dest.read_text() == "previous key\n"


def test_fetch_unreachable_endpoint_names_the_repo(aws_env, tmp_path):
    env = {**aws_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    result = run(FETCH, "beta", "/orch/t/deploy-keys/beta", tmp_path / "k", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("repo beta: cannot reach SSM for parameter /orch/t/deploy-keys/beta"), result.stderr
    assert not (tmp_path / "k").exists()


# --- orch-log-retention -------------------------------------------------------------------------------------------


def make_job(logs: Path, name: str, age_days: float, job: dict | None = None) -> Path:
    path = logs / name
    path.mkdir(parents=True)
    (path / "run.log").write_text("output\n")
    if job is not None:
        (path / "job.json").write_text(json.dumps(job))
    stamp = time.time() - age_days * DAY
    for item in [*path.iterdir(), path]:
        os.utime(item, (stamp, stamp))
    return path


def test_retention_removes_old_job_logs_and_keeps_recent_and_running(tmp_path):
    logs = tmp_path / "logs"
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    make_job(logs, "old", 31, {"state": "SUCCEEDED"})
    make_job(logs, "recent", 1, {"state": "FAILED"})
    make_job(logs, "old-running", 31, {"state": "RUNNING", "boot_id": boot_id, "pid": os.getpid()})
    make_job(logs, "old-lost", 31, {"state": "RUNNING", "boot_id": "another-boot", "pid": os.getpid()})
    touched = make_job(logs, "old-with-new-file", 40)
    (touched / "run.log.1").write_text("recent rotation\n")
    result = run(RETENTION, "--days", "30", logs)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in logs.iterdir()) == ["old-running", "old-with-new-file", "recent"]
    assert result.stdout.count("removed ") == 2


@pytest.mark.parametrize("days", ["0", "-3", "30d"])
def test_retention_refuses_a_bad_day_count(tmp_path, days):
    make_job(tmp_path, "old", 31)
    result = run(RETENTION, "--days", days, tmp_path)
    assert result.returncode == 2
    assert "--days must be a positive integer" in result.stderr
    assert (tmp_path / "old").exists()


# --- orch-log-writers ---------------------------------------------------------------------------------------------


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_for(condition, what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.01)


def test_writers_are_paused_and_resumed_around_a_rotation(tmp_path):
    log = tmp_path / "job" / "run.log"
    log.parent.mkdir()
    writer = subprocess.Popen(
        [sys.executable, "-c", "import os,sys,time\nfd=os.open(sys.argv[1],os.O_WRONLY|os.O_APPEND|os.O_CREAT,0o644)\n"
         "while True:\n os.write(fd,b'x'*10+b'\\n'); time.sleep(0.001)", str(log)],
    )  # fmt: skip
    reader = subprocess.Popen(["sleep", "60"], stdin=open(log.parent / "other", "w"))  # holds no run.log descriptor
    try:
        wait_for(lambda: log.exists() and log.stat().st_size > 100, "the writer to start")
        assert run(WRITERS, "stop", log).returncode == 0
        assert proc_state(writer.pid) == "T"
        assert proc_state(reader.pid) != "T"
        size = log.stat().st_size
        log.write_bytes(b"")  # what copytruncate does while the writer is paused
        assert log.stat().st_size == 0 and size > 0
        assert run(WRITERS, "cont", log).returncode == 0
        wait_for(lambda: log.stat().st_size > 0, "the writer to resume")
        assert proc_state(writer.pid) != "T"
        assert not (log.parent / ".run.log.paused").exists()
    finally:
        for proc in (writer, reader):
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()


def test_writers_cont_all_resumes_what_a_failed_rotation_left_paused(tmp_path):
    log = tmp_path / "logs" / "job" / "run.log"
    log.parent.mkdir(parents=True)
    writer = subprocess.Popen(
        [sys.executable, "-c", "import os,sys,time\nfd=os.open(sys.argv[1],os.O_WRONLY|os.O_APPEND|os.O_CREAT,0o644)\n"
         "while True:\n os.write(fd,b'y\\n'); time.sleep(0.001)", str(log)],
    )  # fmt: skip
    try:
        wait_for(lambda: log.exists() and log.stat().st_size > 10, "the writer to start")
        run(WRITERS, "stop", log)
        assert proc_state(writer.pid) == "T"
        assert run(WRITERS, "cont-all", tmp_path / "logs").returncode == 0
        assert proc_state(writer.pid) != "T"
    finally:
        writer.send_signal(signal.SIGCONT)
        writer.kill()
        writer.wait()
