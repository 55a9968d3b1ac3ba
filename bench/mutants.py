"""Do the tests still bite? Apply each deliberate break ("mutant") to a scratch copy of the project, run the tests
that should catch it, and report which breaks survived (every test still green).

    python3 bench/mutants.py             # every mutant, the unit and host suites (a few minutes)
    python3 bench/mutants.py --list      # what each mutant breaks
    python3 bench/mutants.py oom-flag    # one mutant (or several, by name)

The breaks are the ones issue 13 found surviving the suite; a mutant whose code no longer matches says so (the code
moved: update its snippet). Not a test and not run by CI: it takes minutes, and what it prints is a report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "module_utils/orch_host"
UNIT = ("tests/test_cli.py", "tests/test_runner.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    path: str
    old: str  # must occur exactly once in PATH
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    Mutant(
        "oom-flag",
        "the supervisor never records an OOM",
        f"{HOST}/supervisor.py",
        "    end.update(oom=oom, oom_cause=oom_cause)\n",
        "    oom = False\n    end.update(oom=oom, oom_cause=oom_cause)\n",
        ("tests/host",),
    ),
    Mutant(
        "restart-unseen",
        "a changed PID 1 start (a container restart) no longer makes a job LOST",
        f"{HOST}/records.py",
        'rec.get("init_start") is not None and facts.init_start is not None and rec["init_start"] != facts.init_start',
        "False",
        ("tests/host",),
    ),
    Mutant(
        "name-lock",
        "two starts of one name are no longer serialised",
        f"{HOST}/control.py",
        "fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
        "fcntl.flock(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)",
        ("tests/host",),
    ),
    Mutant(
        "doctor-tools",
        "doctor stops checking the local tools",
        "orch_wrapper/commands/doctor.py",
        "missing = [tool for tool in TOOLS if shutil.which(tool) is None]",
        "missing = []",
        UNIT,
    ),
    Mutant(
        "doctor-rejected-credentials",
        "doctor passes credentials that AWS rejected",
        "orch_wrapper/commands/doctor.py",
        'return Check("AWS credentials", False, f"rejected: {code}", "check AWS_PROFILE or run `aws configure`")',
        'return Check("AWS credentials", True, f"rejected: {code}")',
        UNIT,
    ),
    Mutant(
        "doctor-empty-fleet",
        "doctor passes an empty fleet",
        "orch_wrapper/commands/doctor.py",
        "    if not hosts:\n        record(",
        "    if False:\n        record(",
        UNIT,
    ),
    Mutant(
        "doctor-key",
        "doctor passes a fleet key that will not load",
        "orch_wrapper/commands/doctor.py",
        'record(Check("fleet key in orch\'s agent", False, exc.message, exc.hint or ""))\n        return checks',
        "pass",
        UNIT,
    ),
    Mutant(
        "artifact-credentials",
        "ansible-runner's record of the environment (credentials) stays on disk",
        "orch_wrapper/transport/runner.py",
        "    _drop_environment_artifact(Path(run.config.artifact_dir))\n",
        "",
        ("tests/test_runner.py", "tests/test_cli_sshd.py"),
    ),
    Mutant(
        "uncapped-no-cap",
        "status shows '(uncapped)' for a job that asked for no cap",
        "orch_wrapper/ui.py",
        "    if not isinstance(job.memory_max, int):\n        return used\n",
        '    if not isinstance(job.memory_max, int):\n        return f"{used} (uncapped)"\n',
        UNIT,
    ),
    Mutant(
        "rerun-elsewhere",
        "a finished job is rerun on the least busy host instead of where its history is",
        "orch_wrapper/commands/jobs.py",
        "    if same:  # a finished job",
        "    if False:  # a finished job",
        UNIT,
    ),
)


def scratch_copy() -> Path:
    """The project's tracked files (as they are in the working tree) in a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="orch-mutants-"))
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        source = ROOT / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    return folder


def run_tests(folder: Path, tests: Sequence[str]) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(folder / "module_utils")])}
    env["ANSIBLE_CONFIG"] = str(folder / "ansible.cfg")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        cwd=folder,
        env=env,
        capture_output=True,
        check=False,
    )
    return proc.returncode, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    if args.list or not chosen:
        for m in MUTANTS:
            print(f"{m.name:28} {m.what} ({m.path}; tests: {' '.join(m.tests)})")
        return 0 if chosen else 2
    folder = scratch_copy()
    try:
        suites = sorted({t for m in chosen for t in m.tests})
        code, seconds = run_tests(folder, suites)
        print(f"baseline: {' '.join(suites)}: {'green' if code == 0 else f'RED (exit {code})'} in {seconds:.0f} s")
        if code != 0:
            print("the unmutated suite fails: fix that first")
            return 1
        survived = []
        for m in chosen:
            path = folder / m.path
            original = path.read_text()
            if original.count(m.old) != 1:
                print(f"{m.name:28} NO LONGER APPLIES: its snippet is not in {m.path} exactly once")
                survived.append(m.name)
                continue
            path.write_text(original.replace(m.old, m.new))
            try:
                code, seconds = run_tests(folder, m.tests)
            finally:
                path.write_text(original)
            verdict = "killed" if code != 0 else "SURVIVED"
            print(f"{m.name:28} {verdict:9} {seconds:4.0f} s  {m.what}")
            if code == 0:
                survived.append(m.name)
        left = f"; survived: {', '.join(survived)}" if survived else ""
        print(f"{len(chosen) - len(survived)} of {len(chosen)} killed{left}")
        return 1 if survived else 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
