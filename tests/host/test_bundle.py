"""The host package as it is shipped: every file, one hash, stdlib only, and the read paths' bootstrap."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import orch_host
from orch_host import bundle

PACKAGE_DIR = Path(orch_host.__file__).resolve().parent


def test_the_bundle_holds_every_file_of_the_package():
    files = bundle.sources()
    assert sorted(files) == sorted(p.name for p in PACKAGE_DIR.glob("*.py"))
    # Under Ansible a file travels in the module's payload only if it is imported: shipped_modules() imports them all.
    shipped = {m.__name__.rpartition(".")[2] + ".py" for m in bundle.shipped_modules()}
    assert shipped | {"__init__.py"} == set(bundle.FILES)
    assert all(files[name] == (PACKAGE_DIR / name).read_text() for name in files)


def test_the_hash_names_the_content():
    files = bundle.sources()
    assert bundle.digest(files) == bundle.digest(dict(reversed(list(files.items()))))
    changed = {**files, "records.py": files["records.py"] + "\n"}
    assert bundle.digest(changed) != bundle.digest(files)


# Secrets are fetched on the host with its instance role: boto3, imported only where a job has secrets.
OPTIONAL = {"boto3", "botocore"}


def test_the_host_package_imports_only_the_standard_library_and_itself():
    for path in PACKAGE_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                where = f"{path.name}:{node.lineno} imports {name}"
                assert root in sys.stdlib_module_names or (root in OPTIONAL and id(node) not in top_level), where


def test_the_bootstrap_installs_from_stdin_once_then_imports_the_copy(tmp_path):
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    remote, payload = bundle.read_path_command(["query"])
    cmd = [sys.executable, *remote[1:]]
    first = subprocess.run(cmd, input=payload, env=env, capture_output=True, check=False)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["jobs"] == []
    installed = tmp_path / ".orch" / "lib" / bundle.digest(bundle.sources()) / "orch_host"
    assert sorted(p.name for p in installed.glob("*.py")) == sorted(bundle.sources())
    # Warm: nothing on stdin, the installed copy answers.
    second = subprocess.run(cmd, input=b"", env=env, capture_output=True, check=False)
    assert second.returncode == 0 and json.loads(second.stdout)["jobs"] == [], second.stderr
    # An unknown job: the contract's exit status, one line.
    unknown = subprocess.run([*cmd[:-1], "follow", "nosuchjob"], input=b"", env=env, capture_output=True, check=False)
    assert unknown.returncode == orch_host.contract.EXIT_UNKNOWN_JOB
    assert unknown.stderr.decode().strip().count("\n") == 0 and "no job named nosuchjob" in unknown.stderr.decode()
