"""Shell completion (issue 12): the bash script shtab generates from orch's parser completes verbs, flags, job names
and host names, the names from orch's local caches (seen.json, fleet.json) with no network call while typing. The
bash side is driven as bash drives it: COMP_WORDS and COMP_CWORD set, the completion function called, COMPREPLY read."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _orch_helpers import endpoint_host

from orch_wrapper import cli, config
from orch_wrapper.transport import inventory, ssh

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "orch"
    home.mkdir()
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCH_HOME", str(home))
    monkeypatch.setenv("ORCH_FLEET", "f")
    (home / "seen.json").write_text(json.dumps({"f": {"alpha-train": "f-1", "alpha-eval": "f-2", "beta": "f-1"}}))
    settings = config.load()
    inventory._write_cache(settings, [endpoint_host("f-1", 2201), endpoint_host("f-2", 2202)])
    return home


def completions(script: Path, home: Path, *words: str) -> list[str]:
    """What bash offers for `orch WORDS...` (the last word is the one being completed)."""
    driver = f"""
source {script}
orch() {{ PYTHONPATH={ROOT}:{ROOT / "module_utils"} {sys.executable} -m orch_wrapper "$@"; }}
COMP_WORDS=(orch {" ".join(f"'{w}'" for w in words)})
COMP_CWORD={len(words)}
_shtab_orch
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {"PATH": "/usr/bin:/bin", "ORCH_HOME": str(home), "ORCH_FLEET": "f", "HOME": str(home)}
    out = subprocess.run(["bash", "-c", driver], capture_output=True, text=True, env=env, timeout=60, check=True)
    return sorted(line for line in out.stdout.splitlines() if line)


@pytest.fixture
def bash_script(home, tmp_path, capsys) -> Path:
    assert cli.main(["completion", "bash"]) == 0
    path = tmp_path / "orch.bash"
    path.write_text(capsys.readouterr().out)
    return path


def test_bash_completes_job_names_host_names_verbs_and_flags(bash_script, home):
    assert completions(bash_script, home, "logs", "al") == ["alpha-eval", "alpha-train"]
    assert completions(bash_script, home, "stop", "") == ["alpha-eval", "alpha-train", "beta"]
    assert completions(bash_script, home, "up", "f-") == ["f-1", "f-2"]
    assert completions(bash_script, home, "run", "job", "true", "--host", "f-2") == ["f-2"]
    assert completions(bash_script, home, "lo") == ["logs"]
    assert "--follow" in completions(bash_script, home, "logs", "beta", "--f")


def test_names_come_from_the_local_caches_however_old_and_never_the_network(home, capsys, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("completion reached the network")

    monkeypatch.setattr(inventory, "inventory_list", no_network)
    monkeypatch.setattr(ssh, "each", no_network)
    cache = home / inventory.CACHE_FILE
    data = json.loads(cache.read_text())
    cache.write_text(json.dumps({**data, "created": time.time() - 86400}))  # a day old: too old for orch status
    assert cli.main(["__complete", "hosts"]) == 0
    assert capsys.readouterr().out.split() == ["f-1", "f-2"]
    assert cli.main(["__complete", "jobs"]) == 0
    assert capsys.readouterr().out.split() == ["alpha-eval", "alpha-train", "beta"]
    monkeypatch.setenv("ORCH_FLEET", "other")  # another fleet's names are not offered
    assert cli.main(["__complete", "jobs"]) == 0 and capsys.readouterr().out == ""


def test_the_zsh_script_completes_the_same_names(home, capsys):
    assert cli.main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#compdef orch")
    assert "_orch_jobs() {" in script and "__complete jobs" in script and ":_orch_jobs" in script
    assert cli.main(["completion", "fish"]) == 2  # one of bash, zsh
