"""Shipping this package to the host: its files and their content hash, the installed copy under ~/.orch/lib,
the argv that runs it, and the bootstrap the CLI's read paths send over ssh.

The Ansible module installs the package at ~/.orch/lib/<hash>/orch_host/ (the supervisors run from there); the
read paths import that same copy, bytecode cached, and send the files on stdin only for a host that lacks it.
"""

import hashlib
import os
import pkgutil

PACKAGE = "orch_host"
# The package's files: what is shipped and hashed (a test checks this against the folder and shipped_modules()).
FILES = (
    "__init__.py",
    "admission.py",
    "autostop.py",
    "bundle.py",
    "contract.py",
    "control.py",
    "follow.py",
    "idle.py",
    "memory.py",
    "metadata.py",
    "notify.py",
    "powerlog.py",
    "procs.py",
    "records.py",
    "repos.py",
    "scope.py",
    "spot.py",
    "script.py",
    "supervisor.py",
    "terminal.py",
    "wait.py",
)
# Runs the installed copy: python3 -I -c ENTRY LIBDIR VERB ARGS... (-I: no PYTHON* variable or user site of the
# environment it starts in, a tmux server's, decides what the supervisor imports)
ENTRY = "import sys; sys.path.insert(0, sys.argv[1]); from orch_host.script import main; sys.exit(main(sys.argv[2:]))"


def sources():
    """{file name: source} of every file of this package (FILES), read through its loader (a zip under Ansible)."""
    package = __name__.rpartition(".")[0]  # orch_host, or ansible.module_utils.orch_host under Ansible
    return {name: pkgutil.get_data(package, name).decode() for name in FILES}


def shipped_modules():
    """Every module of the package, imported. Ansible packs into a module's payload only the module_utils that code
    imports; the module calls this before it installs the package, so that its payload holds every file of FILES."""
    from . import (
        admission,
        autostop,
        bundle,
        contract,
        control,
        follow,
        idle,
        memory,
        metadata,
        notify,
        powerlog,
        procs,
        records,
        repos,
        scope,
        script,
        spot,
        supervisor,
        terminal,
        wait,
    )

    return (
        admission,
        autostop,
        bundle,
        contract,
        control,
        follow,
        idle,
        memory,
        metadata,
        notify,
        powerlog,
        procs,
        records,
        repos,
        scope,
        script,
        spot,
        supervisor,
        terminal,
        wait,
    )


def digest(files):
    """16 hex digits of SHA-256 over the files' names and sources: the name of the installed copy."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()[:16]


def lib_root():
    return os.path.join(os.path.expanduser("~"), ".orch", "lib")


def install(files):
    """Install FILES as ~/.orch/lib/<digest>/orch_host/ unless that copy exists; return the copy's folder."""
    target = os.path.join(lib_root(), digest(files))
    if os.path.isdir(target):
        return target
    import shutil

    tmp = f"{target}.tmp.{os.getpid()}"
    try:
        os.makedirs(os.path.join(tmp, PACKAGE))
        for name, source in files.items():
            with open(os.path.join(tmp, PACKAGE, os.path.basename(name)), "w") as f:
                f.write(source)
    except OSError:  # a full disk: no half-written copy stays behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, target)
    except OSError:  # another call installed it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def entry_argv(python, libdir, *args):
    return [python, "-I", "-c", ENTRY, libdir, *args]


# What the read paths run on the host (`python3 -I -S -c BOOTSTRAP VERB ARGS...`): the installed copy when it is there,
# else the files from stdin (JSON, as sources() gives them) installed as install() does, then the same entry.
_BOOTSTRAP = """import os, sys
d = os.path.join(os.path.expanduser("~"), ".orch", "lib", "%s")
if not os.path.isdir(d):
    import json, shutil
    files = json.loads(sys.stdin.buffer.read()); t = "%%s.tmp.%%d" %% (d, os.getpid())
    os.makedirs(os.path.join(t, "orch_host"))
    for n, s in files.items():
        with open(os.path.join(t, "orch_host", os.path.basename(n)), "w") as f: f.write(s)
    try: os.rename(t, d)
    except OSError: shutil.rmtree(t, True)
sys.path.insert(0, d)
from orch_host.script import main
sys.exit(main(sys.argv[1:]))
"""


def read_path_command(args, files=None):
    """(remote argv, stdin bytes) that run this package's script with ARGS on a host, as the CLI sends them."""
    import json

    files = sources() if files is None else files
    # -I -S: the host code needs nothing but the standard library; skipping site-packages saves start-up time.
    return ["python3", "-I", "-S", "-c", _BOOTSTRAP % digest(files), *args], json.dumps(files).encode()
