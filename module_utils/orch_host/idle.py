"""What keeps a host busy, read from live evidence (issue 11's idle auto-stop). Each reason is a short phrase the
laptop shows ("2 jobs", "1 tmux client attached"); no reason means idle.

- Jobs: an orch job RUNNING or QUEUED whose supervisor lives (records.live_state: a dead one's record reads LOST and
  counts for nothing), or a LOST run whose processes still live.
- Attached clients of orch's tmux server (`orch attach`, or tmux by hand).
- Interactive logins: a session leader on a pseudo-terminal whose parent is sshd (a PTY session over SSH) or SSM
  Session Manager's worker. Non-interactive commands (orch's own status calls, Ansible, which pipelines) have no
  terminal; an Ansible command given one (ssh -tt) is known by its markers and never counts.
- A keep-alive (`orch keepalive HOST --for DURATION`) that has not expired, for work orch did not start.

MODE `jobs` counts jobs and keep-alives only (sessions do not keep the host up); `jobs_and_sessions` all four.
"""

import json
import os
import subprocess

from . import records
from .contract import QUEUED, RUNNING, TMUX_SOCKET

MODES = ("jobs_and_sessions", "jobs", "off")
# The parent of an interactive login's shell: sshd (sshd-session from OpenSSH 9.8), SSM's session worker (the
# kernel keeps 15 characters of a command name).
LOGIN_PARENTS = (b"sshd", b"sshd-session", b"ssm-session-wor", b"ssm-session-worker")
ANSIBLE_MARKERS = (b"ansible-tmp-", b"BECOME-SUCCESS-", b"AnsiballZ_")


def keepalive_file():
    return records.orch_dir("keepalive.json")


def keepalive_until(now):
    """The keep-alive's end (seconds since the epoch) while it holds, else None."""
    try:
        with open(keepalive_file()) as f:
            until = json.load(f).get("until")
    except (OSError, ValueError, AttributeError):
        return None
    return until if isinstance(until, (int, float)) and until > now else None


def job_reasons(jobs):
    active = [r for r in jobs if r.get("state") in (RUNNING, QUEUED) or r.get("live_processes")]
    return [f"{len(active)} job{'s' if len(active) != 1 else ''}"] if active else []


def tmux_clients(tmux="tmux"):
    """How many clients are attached to orch's tmux server (0 when it does not run)."""
    try:
        out = subprocess.run(
            [tmux, "-L", TMUX_SOCKET, "list-clients", "-F", "#{client_tty}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return len(out.stdout.split()) if out.returncode == 0 else 0


def _stat(pid):
    """(comm, ppid, session, tty_nr) of PID, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    comm = data[data.index(b"(") + 1 : data.rindex(b")")]
    fields = data[data.rindex(b")") + 2 :].split()
    return comm, int(fields[1]), int(fields[3]), int(fields[4])


def interactive_logins():
    """How many interactive login sessions are open: session leaders on a terminal whose parent is sshd or SSM's
    session worker, Ansible's own commands aside."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(entry)
        if stat is None or stat[2] != int(entry) or stat[3] == 0:  # not a session leader, or no terminal
            continue
        parent = _stat(stat[1])
        if parent is None or parent[0] not in LOGIN_PARENTS:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if any(marker in cmdline for marker in ANSIBLE_MARKERS):
            continue
        count += 1
    return count


def busy_reasons(mode, jobs, now, tmux="tmux"):
    """Why the host is busy now under MODE (an empty list: idle); MODE off never stops, so nothing is looked at."""
    if mode == "off":
        return []
    reasons = job_reasons(jobs)
    if mode == "jobs_and_sessions":
        clients = tmux_clients(tmux)
        if clients:
            reasons.append(f"{clients} tmux client{'s' if clients != 1 else ''} attached")
        logins = interactive_logins()
        if logins:
            reasons.append(f"{logins} interactive login{'s' if logins != 1 else ''}")
    if keepalive_until(now) is not None:
        reasons.append("keep-alive")
    return reasons
