"""A job on its own terminal (issue 8), driven as a user drives it: a real tmux client attached to the job's session,
running in a pane of another local tmux server, fed with send-keys and read with capture-pane."""

from __future__ import annotations

import time

import pytest

OUTER = "outer"  # the user's terminal: a tmux server of the test's own, beside orch's


class Client:
    """`tmux -L orch attach -t =orch-NAME` in a 100x30 pane of the OUTER server."""

    def __init__(self, jobhost, name: str, read_only: bool = False, size: tuple[int, int] = (100, 30)):
        self.jobhost = jobhost
        attach = f"tmux -L orch attach-session -t =orch-{name}" + (" -r" if read_only else "")
        cols, rows = (str(n) for n in size)
        res = jobhost.tmux(
            "new-session", "-d", "-s", "user", "-x", cols, "-y", rows, f"env -u TMUX {attach}", socket=OUTER
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

    def open_client(name: str, read_only: bool = False, size: tuple[int, int] = (100, 30)) -> Client:
        clients.append(Client(jobhost, name, read_only, size))
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


# A full-screen program: the alternate screen, a word in each corner of the terminal it is given, redrawn on every
# resize, 'q' ends it. curses is in Python's standard library, so the test needs nothing a host lacks.
CORNERS = r"""
import curses, sys

BUSY = "busy" in sys.argv

def main(screen):
    curses.curs_set(0)
    screen.timeout(1 if BUSY else -1)
    while True:
        rows, cols = screen.getmaxyx()
        screen.clear()  # a full repaint, as vim and htop do on SIGWINCH
        screen.addstr(0, 0, "TOP-LEFT")
        screen.addstr(rows - 1, cols - 13, "BOTTOM-RIGHT")
        screen.addstr(rows // 2, 0, f"size {rows}x{cols}")
        screen.refresh()
        key = screen.getch()
        while key == -1:  # BUSY: rewrite one line without a full redraw until a key comes
            screen.addstr(rows // 2 + 1, 0, f"tick {ticks()} " + "." * 40)
            screen.refresh()
            key = screen.getch()
        if key == ord("q"):
            return

def ticks(count=[0]):
    count[0] += 1
    return count[0]

curses.wrapper(main)
print("corners-done")
"""


def corners(screen: str, rows: int = 29) -> tuple[str, str, list[str]]:
    """The first and the last row of the job's terminal on a client's screen, and all of its lines."""
    lines = screen.split("\n")
    return lines[0], lines[rows - 1], lines


@pytest.mark.parametrize("attach_first", [True, False], ids=["drawn-attached", "drawn-detached"])
def test_a_full_screen_program_fills_the_pane(jobhost, attach, tmp_path, attach_first):
    # drawn while attached, or drawn on tmux's detached 80x24 and repainted at the client's size on attach
    script = tmp_path / "corners.py"
    script.write_text(CORNERS)
    if attach_first:
        jobhost.start("full", "sleep 1; TERM=screen python3 " + str(script))
        client = attach("full")
    else:
        jobhost.start("full", "TERM=screen python3 " + str(script))
        jobhost.wait_log("full", "BOTTOM-RIGHT")
        client = attach("full")
    client.shows("size 29x100")  # the client's 30 rows less the inner tmux's status line
    # the redraw may still be on its way into the pane (capture-pane can catch it halfway): wait for its last row
    client.jobhost.wait_until(lambda: corners(client.screen())[1].endswith("BOTTOM-RIGHT"), "the redraw's last row")
    top, bottom, lines = corners(client.screen())
    assert top.startswith("TOP-LEFT"), lines
    assert bottom.endswith("BOTTOM-RIGHT") and len(bottom) == 99, lines  # the last row, at the right edge
    assert sum("BOTTOM-RIGHT" in line for line in lines) == 1 and "size 24x80" not in "\n".join(lines), lines
    client.keys("q")
    job = jobhost.wait_done("full")
    assert job["state"] == "SUCCEEDED" and "corners-done" in jobhost.log("full")


def test_a_full_screen_program_redraws_for_a_client_of_the_same_size(jobhost, attach, tmp_path):
    # The program drew once, then only rewrote one line, for longer than the pane's repaint holds: its corners are
    # gone from the replayed output, and a client of tmux's detached size (80x24) changes no size. Only orch's own
    # nudge (a size change and back) makes the program draw its whole screen again.
    script = tmp_path / "corners.py"
    script.write_text(CORNERS)
    jobhost.start("busy", f"TERM=screen python3 {script} busy")
    jobhost.wait_until(lambda: (jobhost.logs / "busy" / "run.log").stat().st_size > 300_000, "300 KB of redraws")
    client = attach("busy", size=(80, 25))
    client.shows("BOTTOM-RIGHT")
    client.jobhost.wait_until(lambda: corners(client.screen(), rows=24)[0].startswith("TOP-LEFT"), "the redraw")
    top, bottom, lines = corners(client.screen(), rows=24)
    assert top.startswith("TOP-LEFT") and bottom.endswith("BOTTOM-RIGHT"), lines
    client.keys("q")
    assert jobhost.wait_done("busy")["state"] == "SUCCEEDED"


def test_the_panes_scrollback_holds_what_it_showed_while_attached(jobhost, attach):
    jobhost.start("scroll", "read -r go; for i in $(seq 1 1500); do echo scroll-$i; done; echo scroll-end; sleep 600")
    client = attach("scroll")
    client.keys("go", "Enter")
    client.shows("scroll-end")
    history = jobhost.tmux("capture-pane", "-p", "-S", "-", "-t", "=orch-scroll:").stdout
    shown = [line for line in history.splitlines() if line.startswith("scroll-")]
    assert shown == [f"scroll-{i}" for i in range(1, 1501)] + ["scroll-end"]
