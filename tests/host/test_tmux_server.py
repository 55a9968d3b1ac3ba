"""orch's own tmux server (`tmux -L orch`), and a job's environment: exactly the run's, whatever that server's.

The supervisor runs in a tmux pane, so it inherits the environment of whoever started the server: a user, or an
earlier module run with another HOME. None of it may reach the job, nor decide where its spec, record or log are.
A server the user started on the default socket is never touched.
"""

from __future__ import annotations

import os

from orch_host.contract import TMUX_SOCKET


def environ(pid: int) -> dict[str, str]:
    """The environment process PID was started with (its execve's)."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [entry.split(b"=", 1) for entry in f.read().split(b"\0") if entry]
    return {key.decode(): value.decode() for key, value in pairs}


def test_the_job_gets_the_runs_environment_not_the_tmux_servers(jobhost):
    # orch's server, started by someone else with an environment of its own (a Python of its own too)
    theirs = {"FOO": "a", "BAR": "server", "PYTHONHOME": "/nowhere"}
    server = jobhost.tmux("new-session", "-d", "-s", "elsewhere", "sleep 600", env=theirs)
    assert server.returncode == 0, server.stderr
    assert "BAR=server" in jobhost.tmux("show-environment", "-g").stdout.split()
    # the run: the login environment (with FOO of its own), what Ansible and a surrounding tmux add, and env FOO=b
    payload = "/tmp/ansible_orch_job_payload_x1/ansible_orch_job_payload.zip"
    pythonpath = jobhost.env.get("PYTHONPATH")
    run_env = {
        "FOO": "login",
        "LOGIN_ONLY": "x",
        "ANSIBLE_ASYNC_DIR": "/nowhere",
        "_ANSIBLE_NOISE": "1",
        "TMUX": "/nowhere/tmux-0/default,1,0",
        "TMUX_PANE": "%9",
        "PYTHONPATH": ":".join(filter(None, (payload, pythonpath))),
    }
    job = jobhost.start("envjob", "echo ready; sleep 60; true", env={"FOO": "b"}, proc_env=run_env)
    jobhost.wait_log("envjob", "ready")
    expected = {**jobhost.env, "FOO": "b", "LOGIN_ONLY": "x", "PWD": str(jobhost.home / "work")}
    expected.update(ORCH_JOB="envjob", ORCH_RUN_ID=job["run_id"])
    assert environ(job["pid"]) == expected  # no BAR, no TMUX, nothing of Ansible's
    assert jobhost.sessions() == ["elsewhere", "orch-envjob"]
    assert not list((jobhost.home / ".orch" / "run").iterdir())  # the spec went once read


def test_the_supervisor_finds_its_spec_whatever_home_the_tmux_server_has(jobhost):
    # orch's server started by an earlier run with another HOME: the server keeps that HOME in its environment
    other = jobhost.root / "other-home"
    (other / "work").mkdir(parents=True)
    first = jobhost.module(name="first", state="started", command="sleep 600", proc_env={"HOME": str(other)})
    assert first["changed"] and first["job"]["log"] == str(other / "logs" / "first" / "run.log"), first
    assert f"HOME={other}" in jobhost.tmux("show-environment", "-g").stdout.split()
    try:
        job = jobhost.start("homejob", 'echo "home=$HOME"')  # this run's HOME: jobhost.home (no 20 s timeout)
        assert job["log"] == str(jobhost.home / "logs" / "homejob" / "run.log")
        assert jobhost.wait_done("homejob")["state"] == "SUCCEEDED"
        assert f"home={jobhost.home}\n" in jobhost.log("homejob")
        assert os.listdir(other / "logs") == ["first"]  # nothing of this run under the server's HOME
        assert not list((jobhost.home / ".orch" / "run").iterdir())
    finally:
        stopped = jobhost.module(name="first", state="stopped", grace=5, proc_env={"HOME": str(other)})
        assert stopped["job"]["state"] == "KILLED", stopped


def test_a_tmux_server_the_user_started_is_never_touched(jobhost):
    # the user's own server (the default socket), with a session named as orch names the job's
    user = jobhost.tmux("new-session", "-d", "-s", "orch-mine", "sleep 600", socket=None)
    assert user.returncode == 0, user.stderr
    shown = jobhost.tmux("display-message", "-p", "-t", "=orch-mine:", "#{socket_path} #{pid} #{pane_pid}", socket=None)
    socket_path, server_pid, pane_pid = shown.stdout.split()
    # the module runs inside that server's session (TMUX set), as a local run from the user's tmux would
    inside = {"TMUX": f"{socket_path},{server_pid},0", "TMUX_PANE": "%0"}

    def untouched():
        assert jobhost.sessions(socket=None) == ["orch-mine"]
        pane = jobhost.tmux(
            "display-message", "-p", "-t", "=orch-mine:", "#{pane_pid} #{session_attached}", socket=None
        )
        assert pane.stdout.split() == [pane_pid, "0"]  # the same pane (the same sleep), and nobody attached
        assert jobhost.tmux("list-clients", socket=None).stdout == ""

    job = jobhost.start("mine", "echo ready; sleep 60", proc_env=inside)
    assert job["tmux_session"] == "orch-mine" and job["tmux_socket"] == TMUX_SOCKET
    jobhost.wait_log("mine", "ready")
    assert jobhost.sessions() == ["orch-mine"]  # orch's server holds the job
    untouched()
    assert [j["name"] for j in jobhost.query()] == ["mine"]
    assert jobhost.module(name="mine", state="stopped", grace=5, proc_env=inside)["job"]["state"] == "KILLED"
    again = jobhost.start("mine", "echo again", proc_env=inside)  # ends the old run's session: orch's only
    assert again["run_id"] != job["run_id"]
    jobhost.wait_done("mine")
    untouched()
    assert jobhost.module(name="mine", state="absent", proc_env=inside)["changed"] is True
    jobhost.wait_until(lambda: "orch-mine" not in jobhost.sessions(), "orch's session to end")
    untouched()


def test_the_users_tmux_conf_applies_to_orchs_server(jobhost):
    (jobhost.home / ".tmux.conf").write_text("set-option -g history-limit 54321\n")  # as the orch_tmux role writes it
    jobhost.start("conf", "sleep 60")
    assert jobhost.tmux("show-options", "-g", "history-limit").stdout.split() == ["history-limit", "54321"]


def test_the_login_environment_drops_only_what_ansible_and_tmux_add(monkeypatch):
    from orch_host import control

    for key in list(os.environ):
        monkeypatch.delenv(key)
    kept = {"HOME": "/home/u", "PATH": "/usr/bin:/bin", "ANSIBLEX": "mine", "TMUX_TMPDIR": "/run/t", "MY_TMUX": "1"}
    added = {"ANSIBLE_ASYNC_DIR": "/a", "_ANSIBLE_X": "1", "TMUX": "/t/default,1,0", "TMUX_PANE": "%1"}
    for key, value in {**kept, **added}.items():
        monkeypatch.setenv(key, value)
    assert control.login_env() == kept
    for pythonpath, left in (
        ("/tmp/ansible_orch_job_payload_q/ansible_orch_job_payload.zip", None),  # Ansible's only: no PYTHONPATH
        ("/tmp/x/ansible_modlib.zip:/opt/lib", "/opt/lib"),  # older Ansible's payload
        ("/home/u/.ansible/tmp/t/debug_dir:/opt/lib", "/opt/lib"),  # an exploded payload
        ("/opt/lib::/srv/lib", "/opt/lib::/srv/lib"),  # the user's own, as it is
    ):
        monkeypatch.setenv("PYTHONPATH", pythonpath)
        assert control.login_env().get("PYTHONPATH") == left, pythonpath
