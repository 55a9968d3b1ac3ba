"""orch's own tmux server (`tmux -L orch`): a server the user started on the default socket is never touched."""

from __future__ import annotations

from orch_host.contract import TMUX_SOCKET


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
