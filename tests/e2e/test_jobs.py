"""The design document's three-job example and the job verbs, end to end on the sandbox fleet."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
import time

import boto3
import pytest
from _webhook import webhook_server

from orch_wrapper.cli import main

from .conftest import ROOT, host_sh, orch, status_json, wait_state


def hold(mb: int, name: str, then: str = "") -> str:
    """A job like the design document's: it holds `mb` of memory and prints a step every 0.2 s until the test
    releases it (a file on the host), so the test decides when each job ends, whatever the machine's load."""
    waiting = f"not os.path.exists(os.path.expanduser('~/release-{name}'))"
    loop = f"while {waiting}: print('step', i, flush=True); i += 1; time.sleep(0.2)"
    py = f"import os, time\nb = bytearray({mb} * 2**20)\ni = 0\n{loop}"
    return f'python3 -c "{py}"' + (f" && {then}" if then else "")


def release(name: str) -> None:
    host_sh(f"touch ~/release-{name}")


def test_three_jobs_run_side_by_side_and_end_honestly(env, capfd, home):
    assert main(["run", "vma-scrape", hold(200, "vma", "echo embeddings done")]) == 0
    assert main(["run", "coupon-backfill", hold(120, "coupon", "exit 3")]) == 0
    assert main(["run", "lros-train", hold(300, "lros", "echo report written")]) == 0

    jobs = status_json(capfd)
    assert {jobs[n]["state"] for n in ("vma-scrape", "coupon-backfill", "lros-train")} == {"RUNNING"}
    time.sleep(1)  # let each allocation settle
    jobs = status_json(capfd)
    for name, mb in (("vma-scrape", 200), ("coupon-backfill", 120), ("lros-train", 300)):
        assert mb * 0.9 * 2**20 <= jobs[name]["memory"] < (mb + 100) * 2**20, (name, jobs[name]["memory"])

    # logs -f streams the job's output, ends with the job and exits with its code.
    capfd.readouterr()
    release("coupon")
    assert main(["logs", "coupon-backfill", "--follow", "--tail", "1000"]) == 3
    out = capfd.readouterr().out
    assert "step 0" in out and "step 3" in out and "[orch] job exited with code 3" in out

    assert main(["stop", "vma-scrape"]) == 0
    release("lros")
    lros = wait_state(capfd, "lros-train", {"SUCCEEDED", "FAILED"})
    jobs = status_json(capfd)
    assert (jobs["coupon-backfill"]["state"], jobs["coupon-backfill"]["exit_code"]) == ("FAILED", 3)
    assert jobs["vma-scrape"]["state"] == "KILLED"
    assert (lros["state"], lros["exit_code"]) == ("SUCCEEDED", 0)
    capfd.readouterr()
    assert main(["logs", "lros-train", "--tail", "2"]) == 0
    assert "report written" in capfd.readouterr().out

    # The human table names every job with its state.
    capfd.readouterr()
    assert main(["status"]) == 0
    table = capfd.readouterr().out
    for word in ("NAME", "HOST", "STATE", "MEMORY", "vma-scrape", "KILLED", "SUCCEEDED", "FAILED"):
        assert word in table


def test_a_command_reaches_the_host_verbatim(env, capfd):
    command = """printf '%s|' "it's" "a \\"quoted\\" word" '$HOME' '{{ lookup("env", "HOME") }}'; echo
echo second line $((6 * 7))"""
    assert main(["run", "verbatim", command]) == 0
    capfd.readouterr()
    assert main(["logs", "verbatim", "--follow"]) == 0
    out = capfd.readouterr().out
    assert """it's|a "quoted" word|$HOME|{{ lookup("env", "HOME") }}|""" in out
    assert "second line 42" in out


def test_a_running_name_is_refused_and_concurrent_runs_have_one_winner(env, capfd):
    assert main(["run", "dup", "sleep 30"]) == 0
    capfd.readouterr()
    assert main(["run", "dup", "echo second"]) != 0
    err = capfd.readouterr().err.strip()
    assert "already running" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert main(["stop", "dup"]) == 0

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: orch("run", "race", "sleep 20"), range(2)))
    assert sorted(r.returncode == 0 for r in results) == [False, True], [r.stderr for r in results]
    loser = next(r for r in results if r.returncode != 0)
    assert "already running" in loser.stderr and "Traceback" not in loser.stderr
    assert main(["stop", "race"]) == 0


def test_wait_exits_with_the_jobs_own_code_and_a_timeout_with_its_own(env, capfd):
    assert main(["run", "w-ok", "sleep 1"]) == 0
    assert main(["run", "w-three", "sleep 2; exit 3"]) == 0
    ok = orch("wait", "w-ok")
    assert ok.returncode == 0 and ok.stdout.startswith("w-ok: SUCCEEDED (exit 0) on sandbox-1 after "), ok
    three = orch("wait", "w-three")
    assert three.returncode == 3 and "w-three: FAILED (exit 3) on sandbox-1" in three.stdout, three
    both = orch("wait", "w-ok", "w-three")  # both ended already: at once, the failure's code
    assert both.returncode == 3 and both.stdout.count("\n") == 2, both
    assert main(["run", "w-long", "sleep 600"]) == 0
    assert main(["run", "w-long2", "sleep 600"]) == 0
    timed = orch("wait", "w-long", "w-long2", "--timeout", "2s")
    assert timed.returncode == 124 and "still active after 2s: w-long, w-long2" in timed.stderr, timed
    assert status_json(capfd, "w-long")["w-long"]["state"] == "RUNNING"  # waiting never touches a job
    for name in ("w-long", "w-long2"):
        assert main(["stop", name]) == 0
    unknown = orch("wait", "w-ok", "no-such-job")
    assert unknown.returncode == 3 and unknown.stderr.count("\n") == 1 and "no-such-job" in unknown.stderr
    bad = orch("wait", "w-ok", "--timeout", "soon")
    assert bad.returncode == 2 and "invalid --timeout" in bad.stderr


# A clone as roles/orch_repos leaves one (its branch in `orch.branch`), its origin a bare repository on the host.
_REPO_SETUP = r"""
set -e
rm -rf ~/origin/e2e.git ~/work/e2e /tmp/e2e-seed
git init -q --bare -b main ~/origin/e2e.git
git init -q -b main /tmp/e2e-seed && cd /tmp/e2e-seed
id="-c user.name=e2e -c user.email=e2e@localhost"
echo one > README && git add README && git $id commit -q -m one
git checkout -q -b release && echo release > RELEASE && git add RELEASE && git $id commit -q -m release
git push -q ~/origin/e2e.git main release
git clone -q ~/origin/e2e.git ~/work/e2e && git -C ~/work/e2e config orch.branch main
git -C /tmp/e2e-seed rev-parse release
"""


def test_run_repo_at_a_ref_records_the_commit_and_refuses_a_dirty_clone_or_an_unknown_ref(env, capfd):
    release = host_sh(_REPO_SETUP).split()[-1]
    run = orch("run", "at-release", "--repo", "e2e@release", "cat RELEASE")
    assert run.returncode == 0 and f"commit {release}" in run.stdout, run
    job = wait_state(capfd, "at-release", {"SUCCEEDED", "FAILED"})
    assert job["state"] == "SUCCEEDED" and job["repo"] == {"name": "e2e", "ref": "release", "commit": release}
    assert job["cwd"].endswith("/work/e2e")
    shown = orch("status", "at-release")
    assert f"repo: e2e@release, commit {release}" in shown.stdout, shown
    unknown = orch("run", "no-ref", "--repo", "e2e@nope", "true")
    assert unknown.returncode != 0 and "ref nope does not exist in repo e2e" in unknown.stderr, unknown
    assert unknown.stderr.count("\n") == 1
    host_sh("echo mine >> ~/work/e2e/RELEASE")
    dirty = orch("run", "dirty", "--repo", "e2e@main", "true")
    assert dirty.returncode != 0 and "has local changes (M RELEASE)" in dirty.stderr, dirty
    assert host_sh("git -C ~/work/e2e rev-parse HEAD").strip() == release  # nothing moved
    assert "mine" in host_sh("cat ~/work/e2e/RELEASE")
    missing = orch("run", "stray", "--repo", "not-a-repo", "true")
    assert missing.returncode != 0 and "repo not-a-repo is not in the fleet's repos list" in missing.stderr
    bad = orch("run", "bad", "--repo", "e2e@a..b", "true")
    assert bad.returncode == 2 and "invalid --repo" in bad.stderr
    for name in ("no-ref", "dirty", "stray"):
        assert name not in status_json(capfd)  # refused before anything started


def test_pull_copies_what_the_job_made_and_a_second_pull_moves_nothing(env, capfd, tmp_path):
    make = "mkdir -p pulled && echo result-$RANDOM-$$ > pulled/r.txt && seq 200000 > pulled/big.txt"
    assert main(["run", "maker", make]) == 0
    assert wait_state(capfd, "maker", {"SUCCEEDED", "FAILED"})["state"] == "SUCCEEDED"
    got = tmp_path / "got"
    first = orch("pull", "maker", "pulled", "--to", str(got))
    assert first.returncode == 0 and "maker: 2 files transferred" in first.stdout, first
    assert (got / "pulled" / "r.txt").read_text() == host_sh("cat ~/work/pulled/r.txt")
    assert (got / "pulled" / "big.txt").read_text().splitlines()[-1] == "200000"
    again = orch("pull", "maker", "pulled", "--to", str(got))
    assert again.returncode == 0 and "maker: 0 files transferred (0 bytes)" in again.stdout, again  # rsync's stats
    logs = subprocess.run(  # no PATH: the job's log folder, into ./maker/
        [sys.executable, "-m", "orch_wrapper", "pull", "maker"], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "module_utils")])}, timeout=120,
    )  # fmt: skip
    assert logs.returncode == 0, logs
    assert "job exited with code 0" in (tmp_path / "maker" / "run.log").read_text()
    assert json.loads((tmp_path / "maker" / "job.json").read_text())["state"] == "SUCCEEDED"
    missing = orch("pull", "maker", "pulled/nope.txt", "--to", str(got))
    assert missing.returncode == 3 and "no /home/ec2-user/work/pulled/nope.txt on sandbox-1" in missing.stderr
    assert missing.stderr.count("\n") == 1
    for outside in ("../.ssh", "/etc/passwd"):
        refused = orch("pull", "maker", outside, "--to", str(got))
        assert refused.returncode == 2 and "maker's cwd" in refused.stderr, refused
    assert not (got / ".ssh").exists() and not (got / "passwd").exists()
    unknown = orch("pull", "no-such-job")
    assert unknown.returncode == 3 and unknown.stderr.count("\n") == 1


def test_unknown_job_gets_one_line_and_a_non_zero_exit(env):
    for verb in (["logs", "no-such-job"], ["stop", "no-such-job"], ["attach", "no-such-job"], ["rm", "no-such-job"],
                 ["wait", "no-such-job"]):  # fmt: skip
        result = orch(*verb)
        assert result.returncode == 3, (verb, result.stderr)
        assert result.stderr.startswith("orch: ") and len(result.stderr.strip().splitlines()) == 1


# What the host says about the "survivor" job's SSH side: the sshd serving this very query, every sshd of the job
# user, and the logind session scope the job's supervisor (in its tmux server) runs in, with that scope's SubState.
_SURVIVOR_PROBE = r"""
echo own $PPID
echo sshd $(pgrep -u ec2-user -x sshd)
pid=$(python3 -c 'import json; print(json.load(open("logs/survivor/job.json"))["supervisor_pid"])')
scope=$(grep -o 'session-[0-9a-z]*[.]scope' "/proc/$pid/cgroup" 2>/dev/null | head -n 1)
if [ -n "$scope" ]; then echo scope "$scope" "$(systemctl show "$scope" --property=SubState --value)"
else echo scope -; fi
"""


def test_tmux_sessions_survive_the_ssh_connection_closing(env, capfd, home):
    assert main(["run", "survivor", "sleep 300"]) == 0
    wait_state(capfd, "survivor", {"RUNNING"})
    # Close every multiplexed connection orch holds (it started and queried the job through them)...
    masters = list((home / "cm").glob("*"))
    assert masters
    for sock in masters:
        closed = subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "x"], capture_output=True, text=True)
        assert closed.returncode == 0 or not sock.exists(), (sock, closed.stderr)  # (or it ended on its own)
    # ...then drop one from the host's side: orch's next connection (its master stays), killed from another one.
    own = host_sh("echo $PPID").strip()
    killed = host_sh(
        'pids=$(pgrep -u ec2-user -x sshd | grep -vx "$PPID"); kill $pids && echo $pids', multiplexed=False
    )
    assert own in killed.split(), (own, killed)
    deadline = time.monotonic() + 30
    while any((home / "cm").glob("*")):  # orch's side of the dropped connection notices and goes
        assert time.monotonic() < deadline, list((home / "cm").glob("*"))
        time.sleep(0.2)
    # Until the host shows no sshd of the job user but the one answering, and logind has decided about the session
    # holding the job's tmux server: released with its processes ("abandoned"), or stopped, and the job with it.
    while True:
        probe = {
            key: value for key, _, value in (line.partition(" ") for line in host_sh(_SURVIVOR_PROBE).splitlines())
        }
        settled = probe["scope"] == "-" or probe["scope"].endswith(" abandoned")
        if probe["sshd"].split() == [probe["own"]] and settled:
            break
        assert time.monotonic() < deadline, probe
        time.sleep(0.5)
    assert probe["scope"].endswith(" abandoned"), probe
    assert status_json(capfd)["survivor"]["state"] == "RUNNING"
    assert main(["stop", "survivor"]) == 0


def test_a_job_that_backgrounds_a_child_or_closes_stdout_keeps_its_exit_code(env, capfd):
    assert main(["run", "forker", "exec 1>&- 2>&-; (sleep 60 &) ; exit 5"]) == 0
    capfd.readouterr()
    assert main(["logs", "forker", "--follow"]) == 5


@pytest.fixture
def webhook():
    with webhook_server("/services/hook-secret-path") as hook:
        yield hook


def test_a_job_end_reaches_the_webhook_and_a_webhook_down_leaves_the_state(env, capfd, home, webhook):
    url, bodies = webhook
    ssm = boto3.client("ssm", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"])
    ssm.put_parameter(Name="/orch/sandbox/notify/hook", Value=url, Type="SecureString", Overwrite=True)
    ssm.put_parameter(
        Name="/orch/sandbox/notify/down", Value="http://127.0.0.1:9/x", Type="SecureString", Overwrite=True
    )
    assert orch("run", "told", "--notify", "/orch/sandbox/notify/hook", "sleep 1; exit 3").returncode == 0
    assert orch("wait", "told").returncode == 3
    deadline = time.monotonic() + 60
    while not bodies and time.monotonic() < deadline:
        time.sleep(0.2)
    (body,) = bodies
    fields = {f["title"]: f["value"] for f in body["attachments"][0]["fields"]}
    assert (fields["job"], fields["state"], fields["exit code"]) == ("told", "FAILED", "3")
    assert fields["duration"] and fields["peak memory"] and fields["host"]
    shown = orch("status", "told")
    assert "notify: /orch/sandbox/notify/hook, posted at" in shown.stdout and "(HTTP 200)" in shown.stdout, shown
    assert orch("run", "unheard", "--notify", "/orch/sandbox/notify/down", "true").returncode == 0
    assert orch("wait", "unheard").returncode == 0
    unheard = wait_state(capfd, "unheard", {"SUCCEEDED"})
    deadline = time.monotonic() + 60
    while not (unheard.get("notify") or {}).get("at") and time.monotonic() < deadline:
        time.sleep(0.5)
        unheard = status_json(capfd, "unheard")["unheard"]
    assert unheard["state"] == "SUCCEEDED" and "ConnectionRefusedError" in unheard["notify"]["error"]
    assert "FAILED at" in orch("status", "unheard").stdout  # the post failed; the job stands as it ended
    missing = orch("run", "unsent", "--notify", "/orch/sandbox/notify/missing", "true")
    assert (
        missing.returncode != 0
        and "notify webhook URL from SSM parameter /orch/sandbox/notify/missing" in missing.stderr
    )
    assert "unsent" not in status_json(capfd)
    # The URL reaches neither the laptop's disk (ORCH_HOME: runner artifacts, caches) nor the job's record.
    for path in home.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert b"hook-secret-path" not in path.read_bytes(), path
    assert "hook-secret-path" not in host_sh("cat ~/logs/told/job.json ~/logs/told/run.log")
    # The fleet's orch_notify_parameter (group_vars) for a job that names none: the start playbook passes it on.
    from orch_wrapper import config
    from orch_wrapper.commands.spec import build_spec, encode_spec
    from orch_wrapper.transport import runner

    spec = encode_spec(build_spec("fleet-told", "true"))
    extra = {"orch_host": "sandbox-1", "orch_job_spec_b64": spec, "orch_notify_parameter": "/orch/sandbox/notify/hook"}
    runner.run_playbook(config.load(), "job_start", extra, limit="sandbox-1").check()
    deadline = time.monotonic() + 60
    while len(bodies) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "fleet-told SUCCEEDED" in bodies[-1]["text"]


def test_secrets_come_from_ssm_on_the_host_and_stay_out_of_records(env, capfd, home):
    value = "s3cr3t-token-value-9d41"
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    ssm = boto3.client("ssm", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"])
    ssm.put_parameter(Name="/orch/sandbox/secrets/api-token", Value=value, Type="SecureString", Overwrite=True)
    assert (
        main(
            [
                "run",
                "with-secret",
                "--secret",
                "API_TOKEN=/orch/sandbox/secrets/api-token",
                # The job checks the value by its digest: the command itself must not carry the secret.
                f'test "$(printf %s "$API_TOKEN" | sha256sum | cut -c1-16)" = {digest} && echo token-ok',
            ]
        )
        == 0
    )
    capfd.readouterr()
    assert main(["logs", "with-secret", "--follow"]) == 0
    assert "token-ok" in capfd.readouterr().out
    job_json = host_sh("cat ~/logs/with-secret/job.json")
    assert "API_TOKEN" in job_json and value not in job_json
    # Nothing on the laptop side holds it: not orch's home, not ansible-runner's artifacts.
    for path in home.rglob("*"):
        if path.is_file() and not path.is_socket():
            assert value.encode() not in path.read_bytes(), path
    ssm.delete_parameter(Name="/orch/sandbox/secrets/api-token")
    missing = orch("run", "no-secret", "--secret", "X=/orch/sandbox/secrets/missing", "true")
    assert missing.returncode != 0 and "cannot read secret X" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.parametrize("name", ["a b", "x;rm", "$(id)", "../up", "-lead", "café"])
def test_bad_names_are_refused_before_any_remote_work(env, name):
    result = orch("run", name, "true")
    # (argparse reads "-lead" as an option: it is refused for a missing CMD, still one line and exit 2)
    assert result.returncode == 2 and result.stderr.startswith("orch: ") and len(result.stderr.splitlines()) == 1


def test_rm_forgets_a_finished_job(env, capfd):
    assert main(["run", "short", "echo done"]) == 0
    wait_state(capfd, "short", {"SUCCEEDED"})
    assert main(["rm", "short", "--purge"]) == 0
    assert "short" not in status_json(capfd)


class UserTerminal:
    """`orch attach NAME` in a 120x30 pane of a local tmux server of the test's own: the user's terminal."""

    def __init__(self, tmp_path, name: str):
        self.tmux = ["tmux", "-S", str(tmp_path / "tmux.sock")]
        pane = f"{sys.executable} -m orch_wrapper attach {name}; echo attach-exit=$?; sleep 30"
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-x", "120", "-y", "30", "-s", "t", pane], check=True, cwd=ROOT
        )

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True).stdout

    def shows(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        screen = self.screen()
        while text not in screen and time.monotonic() < deadline:
            time.sleep(0.3)
            screen = self.screen()
        assert text in screen, screen
        return screen

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", "t", *keys], check=True)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


@pytest.fixture
def user_terminal(tmp_path):
    terminals = []

    def open_terminal(name: str) -> UserTerminal:
        terminals.append(UserTerminal(tmp_path, name))
        return terminals[-1]

    yield open_terminal
    for terminal in terminals:
        terminal.close()


def test_attach_opens_the_jobs_tmux_session_and_detaches(env, user_terminal):
    """`orch attach` in a real terminal: the job's session shows, C-b d detaches cleanly."""
    assert main(["run", "attachable", "while true; do echo attach-me-$((i+=1)); sleep 0.3; done"]) == 0
    terminal = user_terminal("attachable")
    screen = terminal.shows("attach-me-")
    assert "orch-attachable" in screen  # the remote tmux status line names the job's session
    terminal.keys("C-b", "d")
    terminal.shows("attach-exit=0")
    assert main(["stop", "attachable"]) == 0


def test_keys_typed_over_ssh_reach_the_job_and_ctrl_c_interrupts_it(env, capfd, user_terminal):
    """The job's own terminal through `ssh -t` and tmux: a typed line reaches its `read`, Ctrl-C its trap."""
    job = "read -r -p 'say? ' a; echo \"got:$a\"; trap 'echo got INT; exit 130' INT; while :; do sleep 1; done"
    assert main(["run", "typed", job]) == 0
    terminal = user_terminal("typed")
    terminal.shows("say?")
    terminal.keys("over ssh", "Enter")
    terminal.shows("got:over ssh")
    terminal.keys("C-c")
    ended = wait_state(capfd, "typed", {"FAILED", "LOST", "KILLED", "SUCCEEDED"})
    assert (ended["state"], ended["exit_code"]) == ("FAILED", 130), ended
    capfd.readouterr()
    assert main(["logs", "typed"]) == 0
    out = capfd.readouterr().out
    assert "got:over ssh" in out and "got INT" in out
