"""The job's terminal: a pseudo-terminal the job runs on, relayed by its supervisor inside the tmux pane.

The job gets the pty's slave as its controlling terminal (stdin, stdout, stderr) in a session of its own. The
supervisor reads the master into run.log at full speed, and into the pane only while a tmux client is attached
(tmux's hooks tell it); keys typed in the pane (put in raw mode) go to the master, so Ctrl-C reaches the job's
foreground processes through the terminal's line discipline, never the supervisor. The pane's size follows onto the
job's terminal, with the SIGWINCH that comes with it.

In the log, the terminal's CRLF line ends are written as LF (what a pipe would have recorded); a bare CR (a
progress bar redrawing its line) and every escape sequence stay as the job wrote them.
"""

import errno
import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time

CHUNK = 1 << 20  # bytes gathered from the master before one log write (a pty gives ~4 KiB per read)
RECENT = 1 << 16  # bytes of the latest output kept, to repaint the pane when a client attaches
ATTACH_SIGNAL = signal.SIGUSR1  # sent by the session's client-attached and client-detached hooks
CLEAR = b"\x1b[H\x1b[2J"
# How long the nudge's narrower size holds: ncurses reads the size when it handles SIGWINCH, and a size changed and
# restored before then looks unchanged to it, so it would not redraw.
NUDGE_HOLD = 0.1


def hooks():
    """tmux arguments that make the session just created signal its supervisor (the pane's process) when a client
    attaches or detaches: chained after new-session with `;`, so they apply to that session (no -t: the `=NAME`
    form does not resolve inside the sequence)."""
    argv = []
    for hook in ("client-attached", "client-detached"):
        argv += [";", "set-hook", hook, "run-shell -b 'kill -USR1 #{pane_pid}'"]
    return argv


def _winsize(fd):
    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)


class Terminal:
    """The pty of one job and its relay (see the module's docstring). LOG(data) appends to the job's log and
    returns an OSError when it could not (a full disk), else None."""

    def __init__(self, log, tmux_argv, session, pane_in=0, pane_out=1):
        self.log = log
        self.tmux_argv = tmux_argv  # [tmux, -L, socket]: asked how many clients are attached
        self.session = session
        self.pane_in, self.pane_out = pane_in, pane_out
        self.master, self.slave = os.openpty()
        size = _winsize(pane_out)
        if size is not None:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
        self.buf = bytearray(CHUNK)
        self.off = 0
        self.cr = False  # the last chunk ended in b"\r": its b"\n" may follow
        self.recent = bytearray()
        self.attached = False
        self.log_error = None
        self.pane_ok = True
        self.open = True
        self.saved_mode = None
        self.restore_size_at = None  # when the nudge's narrower size gives way to the pane's again
        self.wake_r, self.wake_w = os.pipe()

    # --- in the forked child, before exec -----------------------------------------------------------------------
    def become_controlling(self):
        """The job's side: a new session whose controlling terminal is the slave, as stdin, stdout and stderr."""
        os.setsid()
        os.close(self.master)
        fcntl.ioctl(self.slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(self.slave, fd)
        if self.slave > 2:
            os.close(self.slave)

    # --- in the supervisor --------------------------------------------------------------------------------------
    def started(self):
        """The job runs: this side keeps only the master; the pane goes raw; the signals that steer the relay wake
        its poll."""
        os.close(self.slave)
        os.set_blocking(self.master, False)
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGWINCH, ATTACH_SIGNAL):
            signal.signal(signum, lambda *_: None)  # a Python handler, so that the wakeup fd gets the signal
        for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(signum, signal.SIG_IGN)  # typed keys are the job's: nothing in the pane ends this process
        try:
            self.saved_mode = termios.tcgetattr(self.pane_in)
            import tty

            tty.setraw(self.pane_in)
        except (OSError, termios.error):
            self.saved_mode = None
        self.check_attached()

    def fds(self):
        fds = [self.wake_r]
        if self.open:
            fds.append(self.master)
        if self.pane_ok and self.saved_mode is not None:
            fds.append(self.pane_in)
        return fds

    def wait_bound(self, remaining):
        """REMAINING, shortened so that a poll wakes for a pending size restore."""
        if self.restore_size_at is None:
            return remaining
        return max(0.0, min(remaining, self.restore_size_at - time.monotonic()))

    def service(self, ready):
        """Handle the fds poll found READY: output, keys, signals, a due size restore."""
        if self.restore_size_at is not None and time.monotonic() >= self.restore_size_at:
            self.restore_size_at = None
            self.resize()
        if self.wake_r in ready:
            try:
                signums = os.read(self.wake_r, 512)
            except BlockingIOError:
                signums = b""
            if signal.SIGWINCH in signums:
                self.resize()
            if ATTACH_SIGNAL in signums:
                self.check_attached()
        if self.pane_in in ready:
            self.keys()
        if self.master in ready:
            self.pump()

    def pump(self):
        """Read what the job wrote until the master would block, writing the log once per CHUNK."""
        view = memoryview(self.buf)
        while self.open:
            try:
                n = os.readv(self.master, [view[self.off :]])
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                n = 0  # EIO: every copy of the slave is closed (the job and all it started have ended)
            if n == 0:
                self.flush()
                self.close()
                return
            self.off += n
            if self.off >= CHUNK - 65536:
                self.flush()
        self.flush()

    def flush(self):
        if not self.off:
            return
        data = bytes(self.buf[: self.off])
        self.off = 0
        if self.attached:
            self.to_pane(data)
        self.recent += data
        if len(self.recent) > 2 * RECENT:
            del self.recent[:-RECENT]
        self.to_log(data)

    def to_log(self, data):
        if self.cr:
            data = b"\r" + data
        self.cr = data.endswith(b"\r")
        if self.cr:
            data = data[:-1]
        failed = self.log(data.replace(b"\r\n", b"\n"))
        self.log_error = self.log_error or failed

    def to_pane(self, data):
        if not self.pane_ok:
            return
        try:
            _write_all(self.pane_out, data)
        except OSError:
            self.pane_ok = False  # the pane is gone (its session closed): the log goes on

    def keys(self):
        try:
            data = os.read(self.pane_in, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.pane_ok = False
            return
        if self.open:
            try:
                _write_all(self.master, data)
            except OSError:
                pass  # the job's terminal is closing

    def resize(self):
        """The pane's size onto the job's terminal."""
        size = _winsize(self.pane_out)
        if size is not None and self.open:
            try:
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)  # the kernel sends the job its SIGWINCH
            except OSError:
                pass

    def check_attached(self):
        """Ask tmux whether a client is attached; on attach, repaint the pane with the latest output."""
        try:
            out = subprocess.run(
                [*self.tmux_argv, "display-message", "-p", "-t", f"={self.session}:", "#{session_attached}"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        attached = out.isdigit() and int(out) > 0
        if attached and not self.attached:
            self.flush()
            recent = bytes(self.recent[-RECENT:])
            start = recent.find(b"\n") + 1 if len(self.recent) > RECENT else 0  # from a line's start
            self.to_pane(CLEAR + recent[start:])
            self.nudge()
        self.attached = attached

    def nudge(self):
        """Make a full-screen program redraw for a client that just attached: a size change, and back after
        NUDGE_HOLD (service() restores it)."""
        size = _winsize(self.pane_out)
        if size is None or not self.open:
            return
        rows, cols, xp, yp = struct.unpack("HHHH", size)
        try:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, max(cols - 1, 1), xp, yp))
        except OSError:
            return
        self.restore_size_at = time.monotonic() + NUDGE_HOLD

    def write_line(self, line):
        """An [orch] line of the supervisor's own, into the pane too when a client is attached."""
        if self.attached:
            self.to_pane(line.replace(b"\n", b"\r\n"))

    def close(self):
        if self.open:
            self.open = False
            try:
                os.close(self.master)  # the slave hangs up: what still holds it gets SIGHUP
            except OSError:
                pass

    def finish(self):
        """The job has ended: what is left in the master into the log, then the pane back as it was."""
        self.pump()
        if self.cr:
            self.cr = False
            self.log_error = self.log_error or self.log(b"\r")
        self.close()
        signal.set_wakeup_fd(-1)
        if self.saved_mode is not None:
            try:
                termios.tcsetattr(self.pane_in, termios.TCSADRAIN, self.saved_mode)
            except (OSError, termios.error):
                pass
