"""A job on its own terminal (issue 8), driven as a user drives it: a real tmux client attached to the job's session,
running in a pane of another local tmux server, fed with send-keys and read with capture-pane."""

from __future__ import annotations

import time

import pytest

OUTER = "outer"  # the user's terminal: a tmux server of the test's own, beside orch's


class Client:
    """`tmux -L orch attach -t =orch-NAME` in a 100x30 pane of the OUTER server."""

    def __init__(self, jobhost, name: str, read_only: bool = False):
        self.jobhost = jobhost
        attach = f"tmux -L orch attach-session -t =orch-{name}" + (" -r" if read_only else "")
        res = jobhost.tmux(
            "new-session", "-d", "-s", "user", "-x", "100", "-y", "30", f"env -u TMUX {attach}", socket=OUTER
        )
        assert res.returncode == 0, res.stderr
        jobhost.wait_until(lambda: self.attached_clients(name) > 0, "the client to attach")

    def attached_clients(self, name: str) -> int:
        out = self.jobhost.tmux("display-message", "-p", "-t", f"=orch-{name}:", "#{session_attached}").stdout
        return int(out.strip() or 0)

    def keys(self, *keys: str) -> None:
        assert self.jobhost.tmux("send-keys", "-t", "=user:", *keys, socket=OUTER).returncode == 0

    def screen(self) -> str:
        return self.jobhost.tmux("capture-pane", "-p", "-t", "=user:", socket=OUTER).stdout

    def shows(self, text: str) -> str:
        return self.jobhost.wait_until(lambda: text in self.screen() and self.screen(), f"the pane to show {text!r}")

    def close(self) -> None:
        self.jobhost.tmux("kill-server", socket=OUTER)


@pytest.fixture
def attach(jobhost):
    clients = []

    def open_client(name: str, read_only: bool = False) -> Client:
        clients.append(Client(jobhost, name, read_only))
        return clients[-1]

    yield open_client
    for client in clients:
        client.close()


def test_a_line_typed_in_the_attached_pane_reaches_the_job(jobhost, attach):
    jobhost.start("asks", "read -p 'name? ' answer; echo \"got:$answer\"")
    client = attach("asks")
    client.shows("name?")  # capture-pane drops trailing spaces
    client.keys("hello world", "Enter")
    job = jobhost.wait_done("asks")
    assert job["state"] == "SUCCEEDED" and job["tty"] is True
    assert "got:hello world\n" in jobhost.log("asks")


def test_ctrl_c_interrupts_the_job_not_its_supervisor(jobhost, attach):
    jobhost.start("intr", "trap 'echo got INT; exit 130' INT; echo waiting; sleep 600")
    client = attach("intr")
    client.shows("waiting")
    client.keys("C-c")
    job = jobhost.wait_done("intr")
    assert (job["state"], job["exit_code"]) == ("FAILED", 130), job  # never LOST: the supervisor saw it end
    assert "got INT" in jobhost.log("intr")


def test_pdb_in_the_job_takes_commands_from_the_pane(jobhost, attach):
    jobhost.start("debug", "python3 -c \"x = 41; breakpoint(); print('after pdb', x + 1)\"")
    client = attach("debug")
    client.shows("(Pdb)")
    client.keys("p x", "Enter")
    client.shows("41")
    client.keys("c", "Enter")
    job = jobhost.wait_done("debug")
    assert job["state"] == "SUCCEEDED" and "after pdb 42" in jobhost.log("debug")


def test_the_terminal_size_follows_the_pane(jobhost, attach):
    # prints the size at start (detached: tmux's default 80x24) and on every SIGWINCH
    loop = "stty size; trap 'stty size' WINCH; while :; do sleep 0.1; done"
    jobhost.start("sized", loop)
    jobhost.wait_log("sized", "24 80")
    client = attach("sized")
    jobhost.wait_log("sized", "29 100")  # the client's 30 rows less tmux's status line
    assert jobhost.tmux("resize-window", "-t", "=user:", "-x", "90", "-y", "25", socket=OUTER).returncode == 0
    jobhost.wait_log("sized", "24 90")
    client.keys("C-c")
    assert jobhost.wait_done("sized")["state"] == "FAILED"


def test_detach_and_attach_again_show_the_recent_output(jobhost, attach):
    jobhost.start("chatty", "for i in $(seq 1 500); do echo line-$i; done; echo marker-done; sleep 600")
    jobhost.wait_log("chatty", "marker-done")
    client = attach("chatty")
    client.shows("marker-done")  # written while nobody watched: repainted from the latest output
    assert "line-500" in client.screen()
    client.keys("C-b", "d")
    jobhost.wait_until(lambda: client.attached_clients("chatty") == 0, "the client to detach")
    assert jobhost.job("chatty")["state"] == "RUNNING"  # detaching never touches the job
    client.close()
    again = attach("chatty")
    again.shows("marker-done")


def test_a_read_only_client_cannot_type_into_the_job(jobhost, attach):
    jobhost.start("guarded", 'read -t 3 answer; echo "got:[$answer] rc=$?"')
    client = attach("guarded", read_only=True)
    client.keys("typed", "Enter")
    job = jobhost.wait_done("guarded")
    assert job["state"] == "SUCCEEDED"
    assert "got:[] rc=" in jobhost.log("guarded") and "typed" not in jobhost.log("guarded")


def test_the_window_is_named_after_the_job(jobhost):
    jobhost.start("named-job", "sleep 600")
    time.sleep(0.5)  # tmux's automatic rename would act on the running command by now
    res = jobhost.tmux("display-message", "-p", "-t", "=orch-named-job:", "#{window_name}")
    assert res.stdout.strip() == "named-job"


@pytest.mark.parametrize(("tty", "seen"), [(True, "tty tty tty"), (False, "notty notty notty")])
def test_a_job_runs_on_a_terminal_unless_no_tty(jobhost, tty, seen):
    probe = "for fd in 0 1 2; do if [ -t $fd ]; then printf 'tty '; else printf 'notty '; fi; done; echo"
    jobhost.start("probe", probe, tty=tty)
    job = jobhost.wait_done("probe")
    assert job["tty"] is tty and job["state"] == "SUCCEEDED"
    assert seen in jobhost.log("probe")


def test_binary_output_escapes_and_a_closed_terminal_keep_the_log_whole(jobhost):
    # every byte but the terminal's own line discipline (b"\r\n" is logged as b"\n"), then the job closes its
    # terminal and writes to /dev/tty directly
    script = (
        "import os, sys; data = bytes(range(256)) * 64 + b'\\x1b[31mred\\x1b[0m\\x1b]0;title\\x07'; "
        "sys.stdout.buffer.write(data); sys.stdout.flush(); os.close(1); os.close(2); "
        "tty = open('/dev/tty', 'wb'); tty.write(b'\\nvia-dev-tty\\n'); tty.close()"
    )
    jobhost.start("binary", f'python3 -c "{script}"')
    job = jobhost.wait_done("binary")
    assert job["state"] == "SUCCEEDED", job
    log = (jobhost.home / "logs" / "binary" / "run.log").read_bytes()
    assert b"\x1b[31mred\x1b[0m\x1b]0;title\x07" in log and b"via-dev-tty" in log


def test_job_control_in_the_jobs_own_shell(jobhost, attach):
    # an interactive shell as the job: Ctrl-Z stops its foreground command, fg brings it back, Ctrl-C ends it
    jobhost.start("shell", "PS1='orch-shell$ ' bash --norc -i")
    client = attach("shell")
    client.shows("orch-shell$")
    client.keys("sleep 600", "Enter")
    time.sleep(0.5)
    client.keys("C-z")
    client.shows("Stopped")
    client.keys("fg", "Enter")
    client.shows("sleep 600")
    client.keys("C-c")
    client.keys("echo back-$((40 + 2))", "Enter")
    client.shows("back-42")
    client.keys("exit 3", "Enter")
    job = jobhost.wait_done("shell")
    assert (job["state"], job["exit_code"]) == ("FAILED", 3), job


def test_a_long_line_without_a_newline_on_the_terminal_is_logged_whole(jobhost):
    jobhost.start("bar", "python3 -c \"import sys; sys.stdout.write('x' * 20_000_000 + 'END'); sys.stdout.flush()\"")
    job = jobhost.wait_done("bar")
    assert job["state"] == "SUCCEEDED" and job["log_note"] is None
    log = (jobhost.home / "logs" / "bar" / "run.log").read_bytes()
    assert b"Z\n" + b"x" * 20_000_000 + b"END\n[orch] job exited with code 0 (SUCCEEDED)\n" in log  # every byte
