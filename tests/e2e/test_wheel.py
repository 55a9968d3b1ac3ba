"""orch installed from its wheel, far from the checkout: the built wheel in a fresh venv drives a sandbox of its own
(up, run, status, logs, down) from a folder that is not the checkout, and writes nothing outside its ORCH_HOME."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from orch_wrapper import sandbox

from .conftest import ROOT

# Variables that would point the wheel's orch at the checkout, at AWS or at another sandbox.
_LEAKS = ("PYTHONPATH", "VIRTUAL_ENV", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN")


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under FOLDER with its size and mtime; bytecode caches aside (Python's own, skipped silently when
    the folder is read-only)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, installed into a fresh venv outside it."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = dist.glob("orch-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # The dependencies come from the environment running this test (the checkout's .venv in CI, where the system
    # Python has none, so --system-site-packages would not do), as plain path entries: their .pth files (this
    # checkout's editable install among them) are not processed, so orch itself can only come from the wheel.
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "zz_test_dependencies.pth").write_text("".join(f"{d}\n" for d in deps))
    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], capture_output=True, text=True, timeout=300
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    return {"venv": venv, "site": site}


@pytest.fixture
def run_env(installed, tmp_path):
    """A person's shell far from the checkout: the venv's bin first on PATH, its own short ORCH_HOME and HOME."""
    home = Path(tempfile.mkdtemp(prefix="orch-"))  # short: ssh control socket paths live in it
    env = {k: v for k, v in os.environ.items() if k not in _LEAKS and not k.startswith("ORCH_")}
    env.update(
        PATH=f"{installed['venv'] / 'bin'}{os.pathsep}{os.environ['PATH']}",
        ORCH_HOME=str(home),
        HOME=str(tmp_path / "home"),
    )
    (tmp_path / "home").mkdir()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    yield {"env": env, "cwd": cwd, "orch_home": home, "home": tmp_path / "home"}
    shutil.rmtree(home, ignore_errors=True)


def run(run_env, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(argv), env=run_env["env"], cwd=run_env["cwd"], capture_output=True, text=True, timeout=timeout
    )


def test_orch_and_its_project_come_from_the_wheel(installed, run_env):
    code = (
        "import orch_wrapper, orch_host; from orch_wrapper import paths; "
        "print(orch_wrapper.__file__); print(orch_host.__file__); print(paths.project())"
    )
    result = run(run_env, str(installed["venv"] / "bin" / "python"), "-c", code)
    assert result.returncode == 0, result.stderr
    package, host_package, project = (Path(line) for line in result.stdout.splitlines())
    site = installed["site"]
    assert package == site / "orch_wrapper" / "__init__.py"
    assert host_package == site / "orch_host" / "__init__.py"
    assert project == site / "orch_wrapper" / "_project"
    for part in ("ansible.cfg", "inventory/orch.aws_ec2.yml", "playbooks/job_start.yml", "library/orch_job.py"):
        assert (project / part).is_file(), part
    assert (site / "orch_wrapper" / "sandbox" / "containers.conf").is_file()
    version = run(run_env, "orch", "--version")
    assert version.returncode == 0 and version.stdout.startswith("orch "), version.stderr


def test_the_wheel_drives_a_sandbox_and_writes_only_under_orch_home(installed, run_env):
    before = snapshot(installed["site"])
    up = run(run_env, "orch", "sandbox", "up", timeout=900)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        started = run(run_env, "orch", "run", "hello", "echo hi")
        assert started.returncode == 0, started.stdout + started.stderr
        status = run(run_env, "orch", "status")
        assert status.returncode == 0, status.stderr
        (row,) = [line.split() for line in status.stdout.splitlines() if line.startswith("hello ")]
        assert row[1] == "sandbox-1" and row[2] in {"RUNNING", "SUCCEEDED"}, status.stdout
        assert list((run_env["orch_home"] / "inventory-cache").iterdir()), "no inventory cache in ORCH_HOME"
        logs = run(run_env, "orch", "logs", "hello", "--follow")
        assert logs.returncode == 0 and "hi" in logs.stdout.splitlines(), logs.stdout + logs.stderr
    finally:
        down = run(run_env, "orch", "sandbox", "down", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    label = f"label={sandbox.LABEL}={sandbox.sandbox_id(run_env['orch_home'])}"
    left = subprocess.run(
        ["podman", "ps", "-a", "--filter", label, "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        env=sandbox.podman.env(),
    )
    assert left.returncode == 0 and left.stdout.strip() == "", left.stdout + left.stderr
    # Nothing written into the install or the working folder, and in the home only Ansible's own scratch folder
    # (~/.ansible): no ~/.orch, the inventory cache went to ORCH_HOME too.
    assert snapshot(installed["site"]) == before
    assert list(run_env["cwd"].iterdir()) == []
    assert {p.name for p in run_env["home"].iterdir()} <= {".ansible"}, sorted(run_env["home"].rglob("*"))
