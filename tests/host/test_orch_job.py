"""library/orch_job.py and its host package against a real tmux: the module's states, the supervisor's records, the
script verbs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from orch_host import bundle, records

REPO = Path(__file__).resolve().parents[2]

# What ARCHITECTURE.md promises every job.json holds ("Host side"), no more and no less; the query adds
# memory_current.
RECORD_KEYS = {
    "name",
    "run_id",
    "command",
    "cwd",
    "host",
    "state",
    "started",
    "ended",
    "exit_code",
    "signal",
    "oom",
    "oom_cause",
    "grace",
    "memory_max",
    "memory_cap",
    "memory_cgroup",
    "memory_peak",
    "pid",
    "pgid",
    "job_start",
    "tty",
    "tmux_session",
    "tmux_socket",
    "cgroup",
    "boot_id",
    "init_start",
    "supervisor_pid",
    "supervisor_start",
    "secrets",
    "repo",
    "notify",
    "log",
    "lost_reason",
    "log_note",
    "reservation",
    "queued",
    "admitted",
    "admitted_at",
}
ISO_UTC = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"


def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


# --- lifecycle -------------------------------------------------------------------------------------------------


def test_exit_zero_succeeds_with_a_full_record(jobhost):
    job = jobhost.start("ok", "echo hello; echo to-stderr >&2")
    assert job["state"] in ("RUNNING", "SUCCEEDED")
    follow = jobhost.script("follow", "ok")
    assert follow.returncode == 0
    assert b"hello" in follow.stdout and b"to-stderr" in follow.stdout
    assert set(jobhost.record("ok")) == RECORD_KEYS  # the file itself
    rec = jobhost.job("ok")
    assert set(rec) == RECORD_KEYS | {"memory_current", "live_processes", "queue_position"}
    assert rec["state"] == "SUCCEEDED" and rec["exit_code"] == 0 and rec["signal"] is None
    assert rec["cwd"] == str(jobhost.home / "work")
    assert rec["tmux_session"] == "orch-ok" and rec["tmux_socket"] == "orch" and rec["boot_id"] == boot_id()
    assert rec["pid"] == rec["pgid"] and rec["memory_current"] is None and rec["live_processes"] is None
    for key in ("started", "ended"):
        assert re.match(ISO_UTC, rec[key]), rec[key]
    log = jobhost.log("ok")
    assert "hello\n" in log and log.rstrip().endswith("[orch] job exited with code 0 (SUCCEEDED)")
    assert oct((jobhost.home / ".orch" / "run").stat().st_mode & 0o777) == "0o700"  # where specs pass through


def test_exit_three_is_failed_and_follow_returns_three(jobhost):
    jobhost.start("three", "echo before; exit 3")
    follow = jobhost.script("follow", "three", "--tail", "50")
    assert follow.returncode == 3
    assert b"before" in follow.stdout
    rec = jobhost.job("three")
    assert (rec["state"], rec["exit_code"]) == ("FAILED", 3)


def test_running_job_duplicate_refused_then_stop_is_killed_and_idempotent(jobhost):
    job = jobhost.start("long", "echo started; exec sleep 60")
    assert job["state"] == "RUNNING" and jobhost.alive(job["pid"])
    assert set(jobhost.record("long")) == RECORD_KEYS  # the first record, written before the job ends
    assert "orch-long" in jobhost.sessions()
    assert [j["name"] for j in jobhost.query()] == ["long"]
    assert jobhost.job("long")["memory_current"] > 0
    # the pane says where the log is (the job's own output reaches it once a client attaches: test_terminal.py)
    jobhost.wait_until(
        lambda: "Ctrl-b d detaches" in jobhost.tmux("capture-pane", "-p", "-t", "=orch-long:").stdout, "the pane"
    )

    again = jobhost.module(name="long", state="started", command="echo other")
    assert again["failed"] and "already running" in again["msg"] and "\n" not in again["msg"]
    assert jobhost.job("long")["run_id"] == job["run_id"]

    stopped = jobhost.module(name="long", state="stopped", grace=5)
    assert stopped["changed"] is True
    assert stopped["job"]["state"] == "KILLED" and stopped["job"]["signal"] == "SIGTERM"
    assert not jobhost.alive(job["pid"])
    assert jobhost.module(name="long", state="stopped")["changed"] is False
    assert jobhost.script("follow", "long").returncode == 137
    jobhost.wait_until(lambda: "orch-long" not in jobhost.sessions(), "the tmux session to end")


def test_stop_escalates_to_sigkill_after_grace(jobhost):
    jobhost.start("stubborn", "trap '' TERM; echo armed; sleep 60; echo never")
    jobhost.wait_log("stubborn", "armed")
    stopped = jobhost.module(name="stubborn", state="stopped", grace=1)
    assert stopped["job"]["state"] == "KILLED" and stopped["job"]["signal"] == "SIGKILL"
    assert "never" not in jobhost.log("stubborn")


def test_two_concurrent_starts_exactly_one_wins(jobhost):
    procs = [jobhost.module_async(name="race", state="started", command="sleep 60") for _ in range(2)]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    winners = [r for r in results if not r.get("failed")]
    losers = [r for r in results if r.get("failed")]
    assert len(winners) == 1 and len(losers) == 1, results
    assert "already running" in losers[0]["msg"]
    assert jobhost.job("race")["run_id"] == winners[0]["job"]["run_id"]
    assert jobhost.sessions() == ["orch-race"]


def test_a_finished_name_is_replaced_and_its_log_kept(jobhost):
    first = jobhost.start("again", "echo first-run")
    jobhost.wait_done("again")
    second = jobhost.start("again", "echo second-run; exit 2")
    assert second["run_id"] != first["run_id"]
    assert jobhost.wait_done("again")["exit_code"] == 2
    log = jobhost.log("again")
    assert log.index("first-run") < log.index("second-run")
    assert log.count("[orch] job again started") == 2


def test_absent_forgets_finished_jobs_and_refuses_running_ones(jobhost):
    jobhost.start("gone", "echo bye")
    jobhost.wait_done("gone")
    removed = jobhost.module(name="gone", state="absent")
    assert removed["changed"] is True and removed["job"]["state"] == "SUCCEEDED"
    assert not (jobhost.home / "logs/gone/job.json").exists()
    assert "bye" in jobhost.log("gone")
    assert jobhost.query("gone") == []
    assert jobhost.module(name="gone", state="absent")["changed"] is False
    assert jobhost.module(name="gone", state="absent", purge_logs=True)["changed"] is True
    assert not (jobhost.home / "logs/gone").exists()

    jobhost.start("busy", "sleep 60")
    refused = jobhost.module(name="busy", state="absent")
    assert refused["failed"] and "stop it first" in refused["msg"]
    assert jobhost.job("busy")["state"] == "RUNNING"


def test_check_mode_changes_nothing(jobhost):
    res = jobhost.module(check_mode=True, name="dry", state="started", command="touch ~/work/ran")
    assert res["changed"] is True and not res.get("failed")
    assert not (jobhost.home / "logs").exists() and not (jobhost.home / ".orch").exists()
    assert jobhost.sessions() == []

    jobhost.start("live", "sleep 60")
    assert jobhost.module(check_mode=True, name="live", state="stopped")["changed"] is True
    assert jobhost.job("live")["state"] == "RUNNING"
    jobhost.module(name="live", state="stopped", grace=5)
    assert jobhost.module(check_mode=True, name="live", state="absent")["changed"] is True
    assert (jobhost.home / "logs/live/job.json").exists()
    assert not (jobhost.home / "work/ran").exists()


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "has space",
        "quote'd",
        'dquote"d',
        "$(touch pwned)",
        "a;touch pwned",
        "a..b",
        "a/b",
        "../up",
        "-leading-dash",
        "x" * 200,
        "caf\u00e9",
        "UPPER",
        "",
        "trailing-newline\n",
    ],
    ids=[
        "space",
        "single-quote",
        "double-quote",
        "command-substitution",
        "semicolon",
        "dot-dot",
        "slash",
        "parent",
        "leading-dash",
        "200-chars",
        "non-ascii",
        "uppercase",
        "empty",
        "trailing-newline",
    ],
)
def test_invalid_names_are_refused_before_anything_happens(jobhost, name):
    res = jobhost.module(name=name, state="started", command="touch pwned")
    assert res["failed"] and res["msg"].startswith("invalid job name") and "\n" not in res["msg"]
    follow = jobhost.script("follow", "--", name)
    assert follow.returncode == 2 and follow.stderr.decode().startswith("orch: invalid job name")
    assert not (jobhost.home / "logs").exists() and not list(jobhost.root.rglob("pwned"))
    assert jobhost.sessions() == []


@pytest.mark.parametrize("command", ["", "   ", "\n\t"], ids=["empty", "spaces", "whitespace"])
def test_an_empty_command_is_refused(jobhost, command):
    res = jobhost.module(name="empty", state="started", command=command)
    assert res["failed"] and "command is empty" in res["msg"]
    assert jobhost.sessions() == []


def test_missing_command_and_bad_values_are_refused(jobhost):
    res = jobhost.module(name="nocmd", state="started")
    assert res["failed"] and "command" in res["msg"]
    res = jobhost.module(name="nodir", state="started", command="true", cwd="no-such-repo")
    assert res["failed"] and str(jobhost.home / "work/no-such-repo") in res["msg"]
    res = jobhost.module(name="mem", state="started", command="true", memory_max="lots")
    assert res["failed"] and "invalid memory_max" in res["msg"]
    res = jobhost.module(name="envname", state="started", command="true", env={"BAD-NAME": "x"})
    assert res["failed"] and "BAD-NAME" in res["msg"]
    res = jobhost.module(name="x", state="paused")
    assert res["failed"] and "state" in res["msg"]
    assert jobhost.sessions() == []


def test_command_with_quotes_newlines_and_vars_runs_verbatim(jobhost):
    command = (
        'printf \'%s\\n\' "it\'s" \'say "hi"\' "$GREETING" \'$GREETING\' "$HOME"\n'
        "echo `echo backticks` $(( 6 * 7 )); echo 'semi;colon' && echo \"a\\\\b\"\n"
        "pwd"
    )
    (jobhost.home / "work/repo").mkdir()
    jobhost.start("verbatim", command, cwd="repo", env={"GREETING": "hello $(world) ;"})
    jobhost.wait_done("verbatim")
    expected = subprocess.run(
        ["bash", "-c", command],
        cwd=jobhost.home / "work/repo",
        env={**jobhost.env, "GREETING": "hello $(world) ;"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    log = jobhost.log("verbatim")
    body = log.split("\n", 1)[1].rsplit("[orch] job exited", 1)[0]
    assert body == expected
    assert jobhost.record("verbatim")["command"] == command
    assert "hello $(world) ;" in expected and "42" in expected


def test_dotted_names_map_to_a_valid_tmux_session(jobhost):
    jobhost.start("v1.2_x-y", "sleep 60")
    assert "orch-v1,2_x-y" in jobhost.sessions()
    assert jobhost.job("v1.2_x-y")["tmux_session"] == "orch-v1,2_x-y"


def test_unknown_jobs_get_clear_answers(jobhost):
    res = jobhost.module(name="nope", state="query")
    assert res["failed"] and res["msg"].startswith("no job named nope")
    res = jobhost.module(name="nope", state="stopped")
    assert res["failed"] and res["msg"].startswith("no job named nope")
    res = jobhost.module(name="nope", state="absent")
    assert res["changed"] is False and res["job"] is None
    follow = jobhost.script("follow", "nope")
    assert follow.returncode == 2 and follow.stdout == b""
    assert follow.stderr.decode().startswith("orch: no job named nope") and follow.stderr.count(b"\n") == 1
    assert jobhost.query("nope") == [] and jobhost.query() == []
    assert jobhost.module(state="query")["jobs"] == []


# --- faults ------------------------------------------------------------------------------------------------


def test_killing_the_tmux_session_makes_the_job_lost(jobhost):
    job = jobhost.start("victim", "echo up; sleep 60")
    jobhost.wait_log("victim", "up")
    assert jobhost.tmux("kill-session", "-t", "=orch-victim").returncode == 0
    rec = jobhost.wait_until(lambda: (lambda j: j if j["state"] != "RUNNING" else None)(jobhost.job("victim")), "LOST")
    assert rec["state"] == "LOST" and "tmux session" in rec["lost_reason"]
    jobhost.wait_until(lambda: not jobhost.alive(job["pid"]), "the job to be terminated")
    assert jobhost.script("follow", "victim").returncode == 1


def test_a_vanished_supervisor_or_a_reboot_is_lost_never_running(jobhost):
    job = jobhost.start("orphan", "sleep 60", tty=False)  # no terminal to hang up: the job outlives its supervisor
    os.kill(job["supervisor_pid"], signal.SIGKILL)
    jobhost.wait_until(lambda: not jobhost.alive(job["supervisor_pid"]), "the supervisor to die")
    rec = jobhost.job("orphan")
    assert rec["state"] == "LOST" and rec["lost_reason"].startswith("supervisor gone; 1 process(es) of the job")
    assert jobhost.module(name="orphan", state="query")["job"]["state"] == "LOST"
    os.killpg(job["pgid"], signal.SIGKILL)  # nobody supervises the orphan any more
    jobhost.wait_until(lambda: not jobhost.alive(job["pid"]), "the orphan to die")
    assert jobhost.job("orphan")["lost_reason"] == "supervisor gone"

    jobhost.start("rebooted", "sleep 60")
    path = jobhost.home / "logs/rebooted/job.json"
    rec = json.loads(path.read_text())
    rec["boot_id"] = "00000000-0000-0000-0000-000000000000"
    path.write_text(json.dumps(rec))
    rec = jobhost.job("rebooted")
    assert rec["state"] == "LOST" and rec["lost_reason"] == "host rebooted"
    # a LOST name can be started again
    assert jobhost.start("orphan", "true")["run_id"] != job["run_id"]


def test_a_container_restart_a_new_pid_1_on_the_same_boot_is_lost(jobhost):
    job = jobhost.start("restarted", "sleep 60")
    path = jobhost.home / "logs/restarted/job.json"
    rec = json.loads(path.read_text())
    assert isinstance(rec["init_start"], int) and rec["boot_id"] == boot_id()
    rec["init_start"] += 1  # the container's PID 1 started at another time: the same kernel, a new container
    path.write_text(json.dumps(rec))
    assert jobhost.alive(job["supervisor_pid"])  # only PID 1's start tells: the supervisor's pid still lives
    rec = jobhost.job("restarted")
    assert (rec["state"], rec["lost_reason"], rec["memory_current"]) == ("LOST", "host rebooted", None)
    assert jobhost.module(name="restarted", state="query")["job"]["state"] == "LOST"
    follow = jobhost.script("follow", "restarted", timeout=30)
    assert follow.returncode == 1  # contract.EXIT_BY_STATE["LOST"]


def test_a_job_the_shutdown_ended_reads_lost_because_the_host_rebooted(jobhost):
    """At a restart the supervisor gets the shutdown's SIGTERM first and records the hangup; once the host is back,
    a hangup shortly before PID 1 started again was the restart's doing."""
    job = jobhost.start("shutdown", "sleep 60")
    os.kill(job["supervisor_pid"], signal.SIGTERM)
    jobhost.wait_until(lambda: jobhost.record("shutdown")["state"] == "LOST", "the supervisor to record the hangup")
    hangup = jobhost.record("shutdown")
    assert hangup["lost_reason"].startswith("the supervisor got SIGTERM")
    pid1_started = records.HostFacts().init_started_at()
    path = jobhost.home / "logs/shutdown/job.json"

    def reads(ended: float, init_start: int) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ended))
        path.write_text(json.dumps({**hangup, "ended": stamp, "init_start": init_start}))
        return jobhost.job("shutdown")["lost_reason"]

    assert reads(pid1_started - 5, hangup["init_start"] + 1) == "host rebooted"
    # the same hangup with no restart since, long before it, or after PID 1 came up: the supervisor's own words
    assert reads(pid1_started - 5, hangup["init_start"]) == hangup["lost_reason"]
    assert reads(pid1_started - 2 * records.RESTART_WINDOW, hangup["init_start"] + 1) == hangup["lost_reason"]
    assert reads(time.time(), hangup["init_start"] + 1) == hangup["lost_reason"]


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("echo closing; exec >&- 2>&-; sleep 0.3; exit 4", 4),
        ("sleep 60 & echo backgrounded; exit 5", 5),
        ("setsid sleep 1 & exit 6", 6),
    ],
    ids=["closes-stdout", "background-child", "setsid-child"],
)
def test_exit_code_recorded_when_the_job_closes_stdout_or_forks(jobhost, command, code):
    jobhost.start("fork", command)
    follow = jobhost.script("follow", "fork")
    assert follow.returncode == code
    rec = jobhost.job("fork")
    assert (rec["state"], rec["exit_code"]) == ("FAILED", code)
    end = jobhost.log("fork").rstrip().splitlines()[-1]
    assert end.startswith(f"[orch] job exited with code {code} (FAILED)")


def test_follow_streams_and_survives_copytruncate_rotation(jobhost):
    command = (
        "for i in $(seq 1 50); do echo before-$i; done\n"
        "while [ ! -e rotated ]; do sleep 0.05; done\n"
        "echo after-1; echo after-2; exit 7"
    )
    jobhost.start("rotate", command)
    follow = jobhost.follow_async("rotate", "--tail", "1000")
    seen = b""
    while b"before-50\n" not in seen:
        chunk = follow.stdout.read1(65536)
        assert chunk, "follow ended early"
        seen += chunk
    log = jobhost.home / "logs/rotate/run.log"
    shutil.copyfile(log, log.with_name("run.log.1"))  # copytruncate, as logrotate does it
    os.truncate(log, 0)
    (jobhost.home / "work/rotated").touch()
    rest, err = follow.communicate(timeout=60)
    assert follow.returncode == 7, err
    out = (seen + rest).decode()
    assert out.count("before-1\n") == 1 and out.count("before-50\n") == 1
    assert out.index("before-50") < out.index("after-1\nafter-2\n")
    assert "after-2" in log.read_text() and "after" not in log.with_name("run.log.1").read_text()


def test_follow_tail_prints_the_last_lines_of_a_finished_job(jobhost):
    jobhost.start("tail", "seq 1 100")
    jobhost.wait_done("tail")
    follow = jobhost.script("follow", "tail", "--tail", "3")
    assert follow.returncode == 0
    assert follow.stdout.decode().splitlines() == ["99", "100", "[orch] job exited with code 0 (SUCCEEDED)"]
    assert jobhost.script("follow", "tail", "--tail", "0").stdout == b""


# --- secrets, memory ------------------------------------------------------------------------------------------


def test_secrets_reach_the_job_environment_only(jobhost, moto_ssm):
    import boto3

    value = "s3cr3t-Value-9f2c"
    ssm = boto3.client(
        "ssm",
        endpoint_url=moto_ssm["AWS_ENDPOINT_URL"],
        region_name=moto_ssm["AWS_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ssm.put_parameter(Name="/orch/test/secrets/token", Value=value, Type="SecureString", Overwrite=True)
    secrets = {"API_TOKEN": "/orch/test/secrets/token"}
    digest = hashlib.sha256(value.encode()).hexdigest()
    command = (
        f'[ "$(printf %s "$API_TOKEN" | sha256sum | cut -c1-64)" = {digest} ] || exit 9\necho token-ok; exec sleep 60'
    )
    path = jobhost.module_args_file(name="secret", state="started", command=command, secrets=secrets)
    proc = subprocess.run(
        jobhost.module_argv(path),
        env={**jobhost.env, **moto_ssm},
        capture_output=True,
        text=True,
        check=False,
    )
    result = json.loads(proc.stdout)
    assert proc.returncode == 0, result
    assert result["changed"] and value not in proc.stdout + proc.stderr
    job = result["job"]
    assert job["secrets"] == ["API_TOKEN"]
    jobhost.wait_log("secret", "token-ok")
    # the job has it in its environment...
    with open(f"/proc/{job['pid']}/environ", "rb") as f:
        assert f"API_TOKEN={value}".encode() in f.read().split(b"\0")
    # ...and nowhere else: no argv on the host, no file under HOME, not the tmux environment, not the log.
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert value.encode() not in f.read(), f"secret in argv of pid {pid}"
        except OSError:
            continue
    for path in jobhost.home.rglob("*"):
        if path.is_file():
            assert value.encode() not in path.read_bytes(), path
    for scope in (["-g"], ["-t", "orch-secret"]):
        assert value not in jobhost.tmux("show-environment", *scope).stdout
    assert not list((jobhost.home / ".orch/run").iterdir())

    missing = jobhost.module(
        name="nosecret",
        state="started",
        command="true",
        secrets={"MISSING": "/orch/test/secrets/absent"},
        proc_env=moto_ssm,
    )
    assert missing["failed"] and missing["msg"].startswith("cannot read secret MISSING from SSM parameter")
    assert "orch-nosecret" not in jobhost.sessions() and not (jobhost.home / "logs/nosecret").exists()


def test_memory_figures_are_plausible(jobhost):
    command = f"{sys.executable} -c \"import time; b = b'x' * (100 << 20); print('ready', flush=True); time.sleep(60)\""
    job = jobhost.start("mem", command, memory_max="512M")
    assert job["memory_max"] == 512 << 20
    assert job["memory_cap"] == "enforced" or job["memory_cap"].startswith("not enforced: ")
    jobhost.wait_log("mem", "ready")
    assert jobhost.job("mem")["memory_current"] >= 80 << 20
    assert [j["memory_current"] for j in jobhost.query()][0] >= 80 << 20
    stopped = jobhost.module(name="mem", state="stopped", grace=5)["job"]
    assert stopped["state"] == "KILLED" and stopped["memory_peak"] >= 80 << 20
    assert stopped["memory_current"] is None


def test_a_sigkill_without_a_cap_is_failed_not_oom(jobhost):
    jobhost.start("killed", "echo up; kill -9 $$")
    assert jobhost.script("follow", "killed").returncode == 1  # FAILED by a signal; OOM would be 137
    rec = jobhost.record("killed")
    assert (rec["state"], rec["signal"], rec["exit_code"]) == ("FAILED", "SIGKILL", None)
    assert (rec["oom"], rec["oom_cause"], rec["memory_cap"]) == (False, None, "none")
    assert jobhost.log("killed").rstrip().endswith("[orch] job exited with signal SIGKILL (FAILED)")


# --- through Ansible ---------------------------------------------------------------------------------------


def test_through_ansible_the_module_installs_its_host_package(jobhost):
    env = {
        **jobhost.env,
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_LOCAL_TEMP": str(jobhost.root / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(jobhost.root / "ansible-remote"),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    }
    args = json.dumps({"name": "viaansible", "state": "started", "command": "echo via-ansible; env; exit 3"})
    proc = subprocess.run(
        ["ansible", "localhost", "-c", "local", "-M", str(REPO / "library"), "-m", "orch_job", "-a", args],
        env={**env, "ANSIBLE_MODULE_UTILS": str(REPO / "module_utils")},
        cwd=jobhost.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CHANGED" in proc.stdout
    # The copy Ansible's payload installed is the package as the laptop ships it: same files, same hash.
    files = bundle.sources()
    (lib,) = (jobhost.home / ".orch/lib").iterdir()
    assert lib.name == bundle.digest(files)
    assert {p.name: p.read_text() for p in (lib / "orch_host").glob("*.py")} == files
    assert jobhost.script("follow", "viaansible").returncode == 3
    assert "via-ansible" in jobhost.log("viaansible")
    # the job's environment is the run's, without Ansible's own (the controller's ANSIBLE_* reach a local module)
    lines = jobhost.log("viaansible").splitlines()
    assert f"HOME={jobhost.home}" in lines and "ORCH_JOB=viaansible" in lines
    assert not [line for line in lines if line.startswith(("ANSIBLE_", "_ANSIBLE_", "TMUX=", "TMUX_PANE="))]
