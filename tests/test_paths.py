"""Where orch finds its Ansible project: the checkout, a wheel's packaged copy, ORCH_PROJECT; and the one-line errors
when it is not there. Each case runs the real `orch` in a child process, importing orch_wrapper from where the case
puts it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PARTS = ("ansible.cfg", "inventory", "playbooks", "roles", "library")


@pytest.fixture
def env(tmp_path):
    """A clean environment: ORCH_HOME of its own (short: ssh socket paths), nothing pointing at a project."""
    home = Path(tempfile.mkdtemp(prefix="orch-"))
    out = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "AWS_", "ANSIBLE_", "PYTHONPATH"))}
    out.update(
        ORCH_HOME=str(home),
        HOME=str(tmp_path / "home"),
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_REGION="ap-northeast-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    yield out
    shutil.rmtree(home, ignore_errors=True)


def site_with_orch(tmp_path: Path, project_parts: tuple[str, ...] = ()) -> Path:
    """A folder laid out as a wheel installs orch into site-packages, with only PROJECT_PARTS in its _project."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "orch_wrapper", site / "orch_wrapper", ignore=shutil.ignore_patterns("__pycache__"))
    for part in project_parts:
        src, dest = ROOT / part, site / "orch_wrapper" / "_project" / part
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest) if src.is_dir() else shutil.copy(src, dest)
    return site


def orch(env: dict[str, str], *args: str, pythonpath: Path | None = None, cwd: Path) -> subprocess.CompletedProcess:
    if pythonpath is not None:
        env = {**env, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [sys.executable, "-m", "orch_wrapper", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def project_of(env: dict[str, str], pythonpath: Path, cwd: Path) -> tuple[Path, Path]:
    """(orch_wrapper's folder, paths.project()) as that interpreter sees them."""
    code = "from orch_wrapper import paths; print(paths.__file__); print(paths.project())"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": str(pythonpath)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    module, project = result.stdout.splitlines()
    return Path(module).parent, Path(project)


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 5, result.stdout + result.stderr  # ExitCode.CONFIG
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_from_the_checkout_the_project_is_the_checkout(env, tmp_path):
    package, project = project_of(env, ROOT, cwd=tmp_path)
    assert package == ROOT / "orch_wrapper"
    assert project == ROOT


def test_a_wheel_install_uses_its_packaged_copy_and_orch_project_overrides_it(env, tmp_path):
    site = site_with_orch(tmp_path, PROJECT_PARTS)
    package, project = project_of(env, site, cwd=tmp_path)
    assert package == site / "orch_wrapper"
    assert project == site / "orch_wrapper" / "_project"
    _, overridden = project_of({**env, "ORCH_PROJECT": str(ROOT)}, site, cwd=tmp_path)
    assert overridden == ROOT


def test_a_wheel_install_without_its_project_data_is_one_line(env, tmp_path):
    site = site_with_orch(tmp_path)
    line = one_line(orch(env, "hosts", pythonpath=site, cwd=tmp_path))
    packaged = site / "orch_wrapper" / "_project"
    assert line == (
        f"orch: orch's install lacks its project data: ansible.cfg, inventory/, playbooks/, roles/, library/ "
        f"missing from {packaged} (reinstall orch from its wheel, or set ORCH_PROJECT to a checkout)"
    )


def test_a_wheel_install_missing_part_of_its_project_names_that_part(env, tmp_path):
    site = site_with_orch(tmp_path, tuple(p for p in PROJECT_PARTS if p not in ("playbooks", "roles")))
    line = one_line(orch(env, "run", "job-1", "echo hi", pythonpath=site, cwd=tmp_path))
    assert line.startswith("orch: orch's install lacks its project data: playbooks/, roles/ missing from ")


def test_orch_project_without_playbooks_is_one_line(env, tmp_path):
    folder = tmp_path / "not-a-project"
    (folder / "inventory").mkdir(parents=True)
    (folder / "ansible.cfg").write_text("[defaults]\n")
    line = one_line(orch({**env, "ORCH_PROJECT": str(folder)}, "hosts", pythonpath=ROOT, cwd=tmp_path))
    assert line == (
        f"orch: ORCH_PROJECT={folder} is not an orch project: it has no playbooks/, roles/, library/ "
        "(point it at the folder holding ansible.cfg and playbooks/, or unset it)"
    )


def test_a_checkout_missing_its_playbooks_is_one_line(env, tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "orch_wrapper", checkout / "orch_wrapper", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", checkout)
    for part in ("ansible.cfg", "inventory", "roles", "library"):
        src = ROOT / part
        shutil.copytree(src, checkout / part) if src.is_dir() else shutil.copy(src, checkout)
    line = one_line(orch(env, "hosts", pythonpath=checkout, cwd=tmp_path))
    assert line == (
        f"orch: the orch checkout at {checkout} has no playbooks/ "
        "(restore them with git, or set ORCH_PROJECT to a complete checkout)"
    )
