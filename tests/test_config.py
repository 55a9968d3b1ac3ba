"""The config file and `orch config` (issue 12): defaults from ORCH_HOME/config.toml (or ORCH_CONFIG), the
running sandbox and the environment over them, each setting's source shown, and a bad file a one-line error that
names its line. Local only: nothing here reaches a host or AWS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orch_wrapper import cli, config
from orch_wrapper.errors import ExitCode, OrchError


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "orch"


def environ(home: Path, **extra: str) -> dict[str, str]:
    return {"ORCH_HOME": str(home), **extra}


def write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(text)
    return path


def test_without_a_file_every_setting_is_a_default_or_unset(home):
    settings = config.load(environ(home))
    assert (settings.fleet, settings.region, settings.mem, settings.plan) == ("orch", "ap-northeast-1", None, None)
    assert settings.config_file == home / "config.toml"
    assert settings.sources["fleet"] == "default" and settings.sources["mem"] == "unset"


def test_the_file_sets_defaults_and_the_environment_overrides_them(home):
    path = write(
        home, '# mine\nfleet = "research"\nregion = "us-west-2"\nprofile = "work"\nmem = "8g"\nplan = "reserved"\n'
    )
    settings = config.load(environ(home))
    assert (settings.fleet, settings.region, settings.mem, settings.plan) == ("research", "us-west-2", "8G", "reserved")
    assert settings.aws_env["AWS_PROFILE"] == "work"  # what boto3 and Ansible are given
    assert settings.sources["fleet"] == f"file: {path}, line 2" and settings.sources["plan"] == f"file: {path}, line 6"
    write(home, (home / "config.toml").read_text() + 'notify = "/orch/research/notify/slack"\n')
    assert config.load(environ(home)).notify == "/orch/research/notify/slack"
    over = config.load(environ(home, ORCH_FLEET="other", ORCH_MEM="2G", AWS_DEFAULT_REGION="eu-west-1"))
    assert (over.fleet, over.mem, over.region) == ("other", "2G", "eu-west-1")
    assert (
        over.sources["fleet"] == "environment: ORCH_FLEET"
        and over.sources["region"] == "environment: AWS_DEFAULT_REGION"
    )
    assert over.sources["profile"] == f"file: {path}, line 4"


def test_orch_config_names_another_file_and_a_missing_one_is_an_error(home, tmp_path):
    other = tmp_path / "elsewhere.toml"
    other.write_text('mem = "4G"\n')
    settings = config.load(environ(home, ORCH_CONFIG=str(other)))
    assert settings.mem == "4G" and settings.sources["mem"] == f"file: {other}, line 1"
    with pytest.raises(OrchError, match="does not exist"):
        config.load(environ(home, ORCH_CONFIG=str(tmp_path / "missing.toml")))


def test_a_running_sandbox_wins_over_the_file_and_its_profile_is_unused(home):
    write(home, 'fleet = "research"\nprofile = "work"\n')
    (home / "sandbox").mkdir()
    sandbox = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5999", "AWS_ACCESS_KEY_ID": "testing", "ORCH_FLEET": "sandbox"}
    (home / "sandbox" / "env.json").write_text(json.dumps(sandbox))
    settings = config.load(environ(home))
    assert settings.fleet == "sandbox" and settings.sources["fleet"].startswith("sandbox: ")
    assert "AWS_PROFILE" not in settings.aws_env  # the sandbox's own credentials, not the laptop's profile
    assert settings.sources["endpoint"].startswith("sandbox: ")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('fleet = "research"\nmem = 8G\n', "line 2: not valid TOML: Expected newline"),
        ('fleet = "research"\n\nflet = "x"\n', "line 3: unknown key 'flet'"),
        ('mem = "8X"\n', "invalid mem '8X' (file: "),
        ('region = "mars"\n', "invalid region 'mars'"),
        ('fleet = "Big Fleet"\n', "invalid fleet 'Big Fleet'"),
        ('plan = "spot"\n', "invalid plan 'spot'"),
        ('notify = "hooks.slack.com/x"\n', "invalid notify 'hooks.slack.com/x'"),
        ("mem = 8\n", "line 1: mem must be a quoted string"),
        ('[fleet]\nname = "x"\n', "line 1: fleet must be a quoted string"),
    ],
    ids=["toml", "unknown-key", "mem", "region", "fleet", "plan", "notify", "number", "table"],
)
def test_a_bad_file_is_one_line_that_names_the_file_and_its_line(home, text, said, capsys, monkeypatch):
    path = write(home, text)
    with pytest.raises(OrchError) as raised:
        config.load(environ(home))
    assert said in str(raised.value) and str(path) in str(raised.value)
    assert raised.value.exit_code == ExitCode.CONFIG
    monkeypatch.setenv("ORCH_HOME", str(home))
    assert cli.main(["status"]) == ExitCode.CONFIG  # any verb: the settings come first
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("orch: ") and "Traceback" not in err
    assert path.read_text() == text  # the file is never rewritten


def test_bad_environment_values_name_the_variable(home):
    for var, value in (("ORCH_MEM", "lots"), ("ORCH_PLAN", "free"), ("AWS_PROFILE", "a b")):
        with pytest.raises(OrchError, match=f"invalid {var} '{value}'"):
            config.load(environ(home, **{var: value}))


def test_orch_config_shows_each_setting_its_value_and_its_source(home, capsys, monkeypatch):
    path = write(home, 'mem = "8G"\nplan = "reserved"\n')
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "ORCH_FLEET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCH_HOME", str(home))
    monkeypatch.setenv("ORCH_FLEET", "research")
    assert cli.main(["config"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:] if line.strip()}
    assert lines["mem"].split()[1:3] == ["8G", "file:"] and f"{path}, line 1" in lines["mem"]
    assert lines["fleet"].split()[1:] == ["research", "environment:", "ORCH_FLEET"]
    assert lines["region"].split()[1:] == ["ap-northeast-1", "default"]
    assert lines["profile"].split()[1] == "-" and "unset" in lines["profile"]
    assert lines["home"].split()[1:] == [str(home), "environment:", "ORCH_HOME"]
    assert cli.main(["config", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["exists"] is True and data["settings"]["plan"] == {
        "value": "reserved",
        "source": f"file: {path}, line 2",
    }
