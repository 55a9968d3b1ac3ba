"""`orch pull NAME [PATH...] [--to DIR]`: a job's results copied back with rsync over orch's own SSH settings (its
agent, control socket and known_hosts: nothing is written to ~/.ssh). PATHs are relative to the job's cwd, the
default is the job's log folder, the destination ./NAME/. A path that leaves the cwd is refused; an absolute one is
taken only with --absolute. rsync moves only what changed: a second pull of the same files transfers nothing."""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..config import Settings
from ..errors import ExitCode, OrchError
from ..transport import inventory, ssh
from . import shared
from .spec import validate_name

# What rsync's --stats reports, by what orch says of it.
_STATS = {
    "files": re.compile(r"^Number of regular files transferred: ([\d,]+)", re.M),
    "bytes": re.compile(r"^Total transferred file size: ([\d,]+) bytes", re.M),
}
_MISSING = re.compile(r'link_stat "([^"]+)" failed: No such file')


def _usage(message: str, hint: str) -> OrchError:
    return OrchError(message, hint=hint, exit_code=ExitCode.USAGE)


def remote_paths(name: str, cwd: str, paths: Sequence[str], absolute: bool) -> list[str]:
    """Each PATH as the host's path: under CWD, the job's absolute working directory (its log folder, relative to
    the job user's home, when no PATH is given); an absolute PATH only when ABSOLUTE."""
    if not paths:
        return [f"logs/{name}/"]  # the folder's contents, into the destination itself
    found = []
    for path in paths:
        if not path or any(c in path for c in "\0\n\r"):
            raise _usage(f"invalid path {path!r}", hint="give a path relative to the job's cwd")
        if path.startswith(("/", "~")):
            if not absolute:
                raise _usage(
                    f"{path} is not under job {name}'s cwd ({cwd})",
                    hint="give a path relative to it, or pass --absolute to pull this one",
                )
            found.append("." + path[1:] if path.startswith("~/") else path)  # ~/x: relative to the home
            continue
        full = posixpath.normpath(posixpath.join(cwd, path))
        if full != cwd and not full.startswith(cwd.rstrip("/") + "/"):
            raise _usage(
                f"{path} leaves job {name}'s cwd ({cwd})",
                hint="give a path inside it, or its absolute path with --absolute",
            )
        found.append(full)
    return found


def _copy(argv: list[str], show: bool) -> tuple[int, str, str]:
    """Run rsync; its stdout goes on to ours as it comes when SHOW (the progress line), and is returned too."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = proc.stdout, proc.stderr
    out = bytearray()
    try:
        while stdout is not None and (chunk := stdout.read1(1 << 16)):
            out += chunk
            if show:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
        err = stderr.read() if stderr is not None else b""
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        raise
    return rc, out.decode(errors="replace"), err.decode(errors="replace").strip()


def pull(settings: Settings, *, name: str, paths: Sequence[str], to: str | None, absolute: bool) -> int:
    validate_name(name)
    rsync = shutil.which("rsync")
    if rsync is None:
        raise OrchError(
            "rsync is not installed here", hint="install it, e.g. apt install rsync", exit_code=ExitCode.CONFIG
        )
    job = shared.locate(settings, name)
    if not job.cwd.startswith("/"):
        raise OrchError(f"job {name}'s record names no working directory", hint=f"see `orch status {name}`")
    sources = remote_paths(name, job.cwd, paths, absolute)
    host = inventory.find(inventory.require(settings), job.host)
    dest = Path(to) if to else Path(name)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OrchError(f"cannot make {dest}: {exc.strerror}", hint="pass --to DIR", exit_code=ExitCode.USAGE) from None
    shell = ssh.argv(settings, host)[:-1]  # ssh with orch's options, port and user; rsync adds the host itself
    show = sys.stdout.isatty()
    argv = [rsync, "--archive", "--partial", "--stats", "--rsh", shlex.join(shell)]
    argv += ["--info=progress2"] if show else []  # one line of progress for the whole transfer
    argv += [f"{host.ssh_host}:{source}" for source in sources] + [f"{os.fspath(dest)}/"]
    rc, out, err = _copy(argv, show)
    last = err.splitlines()[-1] if err else f"rsync exited {rc}"
    if rc == 255 or (rc in (12, 255) and "connection unexpectedly closed" in err):
        raise OrchError(f"{host.name} is unreachable: {last}", hint="run `orch doctor`", exit_code=ExitCode.UNREACHABLE)
    missing = _MISSING.findall(err)
    if missing:
        raise OrchError(
            f"no {missing[0]} on {host.name} (job {name}'s cwd is {job.cwd})",
            hint=f"see `orch status {name}`",
            exit_code=ExitCode.NOT_FOUND,
        )
    if rc != 0:
        raise OrchError(f"rsync from {host.name} failed: {last}")
    stats = {key: int(m.group(1).replace(",", "")) if (m := rule.search(out)) else 0 for key, rule in _STATS.items()}
    print(f"{name}: {stats['files']} files transferred ({stats['bytes']} bytes) from {host.name} into {dest}/")
    return ExitCode.OK
