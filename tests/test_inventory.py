"""inventory/orch.aws_ec2.yml against moto: groups, connection hostvars per access mode, fleet and region filters,
and the jsonfile cache: under ~/.orch for plain Ansible runs, under ORCH_HOME for orch's own."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import boto3
import pytest

from orch_wrapper import config
from orch_wrapper.transport import ansible_env, runner

ROOT = Path(__file__).resolve().parent.parent
REGION = "ap-northeast-1"
PROXY = (
    'ProxyCommand=sh -c "aws ssm start-session --target %h --document-name AWS-StartSSHSession'
    ' --parameters portNumber=%p"'
)


def launch(endpoint: str, fleet: str, name: str, region: str = REGION, **tags: str) -> dict:
    """One instance tagged as provisioning (or the sandbox) tags it."""
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)
    ec2 = session.client("ec2", endpoint_url=endpoint)
    ssm = session.client("ssm", endpoint_url=endpoint)
    ami = ssm.get_parameter(Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
    all_tags = {"Name": name, "orch-fleet": fleet, **{k.replace("_", "-"): v for k, v in tags.items()}}
    (instance,) = ec2.run_instances(
        ImageId=ami["Parameter"]["Value"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}],
    )["Instances"]
    return instance


def inventory(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ansible-inventory", "-i", str(ROOT / "inventory"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def plain(value):
    """ansible-core 2.19's --list marks inventory strings {"__ansible_unsafe": "..."}: unwrap them."""
    if isinstance(value, dict):
        return (
            value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else {k: plain(v) for k, v in value.items()}
        )
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def listed(env: dict[str, str], *args: str) -> dict:
    result = inventory(env, "--list", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return plain(json.loads(result.stdout))


@pytest.fixture(scope="module")
def fleet(moto: str, make_aws_env, tmp_path_factory: pytest.TempPathFactory):
    """A fleet with one host per access mode, plus hosts the inventory must leave out."""
    name = f"i{uuid.uuid4().hex[:8]}"
    hosts = {
        "ssm": launch(moto, name, f"{name}-1", orch_access="ssm", orch_user="ec2-user"),
        "public": launch(moto, name, f"{name}-2", orch_access="public", orch_user="ec2-user"),
        "private": launch(moto, name, f"{name}-3", orch_access="private", orch_user="admin"),
        "endpoint": launch(
            moto,
            name,
            f"{name}-4",
            orch_access="endpoint",
            orch_user="ec2-user",
            orch_ssh_host="127.0.0.1",
            orch_ssh_port="2222",
        ),
    }
    gone = launch(moto, name, f"{name}-9", orch_access="ssm")
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    session.client("ec2", endpoint_url=moto).terminate_instances(InstanceIds=[gone["InstanceId"]])
    launch(moto, f"{name}-other", f"{name}-other-1", orch_access="ssm")  # another fleet
    launch(moto, name, f"{name}-west", region="us-west-2", orch_access="ssm")  # same fleet, another region
    home = tmp_path_factory.mktemp("inventory-home")
    env = make_aws_env(moto, home, ORCH_FLEET=name)
    return {"name": name, "hosts": hosts, "env": env, "home": home, "data": listed(env, "--flush-cache")}


def hostvars(fleet, host: str) -> dict:
    return fleet["data"]["_meta"]["hostvars"][f"{fleet['name']}-{host}"]


def test_lists_the_fleets_live_hosts_in_this_region_only(fleet):
    name = fleet["name"]
    assert sorted(fleet["data"]["_meta"]["hostvars"]) == [f"{name}-{n}" for n in (1, 2, 3, 4)]
    assert sorted(fleet["data"][f"fleet_{name}"]["hosts"]) == [f"{name}-{n}" for n in (1, 2, 3, 4)]


def test_keyed_groups(fleet):
    name, data = fleet["name"], fleet["data"]
    assert data["access_ssm"]["hosts"] == [f"{name}-1"]
    assert data["access_public"]["hosts"] == [f"{name}-2"]
    assert data["access_private"]["hosts"] == [f"{name}-3"]
    assert data["access_endpoint"]["hosts"] == [f"{name}-4"]
    assert sorted(data["type_t3_micro"]["hosts"]) == [f"{name}-{n}" for n in (1, 2, 3, 4)]
    assert sorted(data["state_running"]["hosts"]) == [f"{name}-{n}" for n in (1, 2, 3, 4)]


@pytest.mark.parametrize(
    ("host", "mode"),
    [("1", "ssm"), ("2", "public"), ("3", "private"), ("4", "endpoint")],
    ids=["ssm", "public", "private", "endpoint"],
)
def test_connection_hostvars_follow_the_access_mode(fleet, host, mode):
    instance = fleet["hosts"][mode]
    expected_host = {
        "ssm": instance["InstanceId"],
        "public": instance.get("PublicIpAddress"),
        "private": instance["PrivateIpAddress"],
        "endpoint": "127.0.0.1",
    }[mode]
    got = hostvars(fleet, host)
    assert expected_host
    assert got["ansible_host"] == expected_host
    assert got["ansible_port"] == (2222 if mode == "endpoint" else 22)
    assert got["ansible_user"] == ("admin" if mode == "private" else "ec2-user")
    assert got["ansible_python_interpreter"] == "/usr/bin/python3"
    assert got["orch_access"] == mode
    assert got["orch_instance_id"] == instance["InstanceId"]
    assert got["orch_instance_type"] == "t3.micro"
    assert got["orch_state"] == "running"
    if mode == "ssm":
        assert shlex.split(got["ansible_ssh_common_args"]) == ["-o", PROXY]
    else:
        assert got["ansible_ssh_common_args"] == ""


def test_region_comes_from_the_environment(fleet):
    data = listed({**fleet["env"], "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-west-2"}, "--flush-cache")
    assert sorted(data["_meta"]["hostvars"]) == [f"{fleet['name']}-west"]


def test_cache_lives_under_orch_home_and_answers_without_aws(fleet):
    listed(fleet["env"], "--flush-cache")
    cache = Path(fleet["home"]) / ".orch" / "inventory-cache"
    assert [p.name for p in cache.iterdir()], "no cache file written"
    # With AWS unreachable, the cached inventory still answers (and so is really used).
    offline = {**fleet["env"], "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    assert sorted(listed(offline)["_meta"]["hostvars"]) == sorted(fleet["data"]["_meta"]["hostvars"])


def cache_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


@pytest.fixture
def orch_home():
    home = Path(tempfile.mkdtemp(prefix="orch-"))  # short, as ssh control socket paths need
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_under_orch_the_cache_lives_in_orch_home(fleet, orch_home):
    """ansible-inventory with the environment orch gives it (as `orch hosts --refresh` runs it)."""
    env = {**fleet["env"], "ORCH_HOME": str(orch_home)}
    settings = config.load(env)
    env.update(ansible_env.envvars(settings))  # settings loaded from env: its AWS variables included
    plain_cache = Path(fleet["home"]) / ".orch" / "inventory-cache"
    before = cache_files(plain_cache)
    assert sorted(listed(env, "--flush-cache")["_meta"]["hostvars"]) == sorted(fleet["data"]["_meta"]["hostvars"])
    written = cache_files(orch_home / "inventory-cache")
    assert written and all(name.startswith(ansible_env.cache_prefix(settings)) for name in written), written
    assert cache_files(plain_cache) == before  # nothing new under ~/.orch


def test_playbooks_run_by_orch_cache_the_inventory_in_orch_home(fleet, orch_home, monkeypatch):
    """Through ansible-runner, which points Ansible's cache connection into each run's artifacts."""
    for name, value in {**fleet["env"], "ORCH_HOME": str(orch_home)}.items():
        monkeypatch.setenv(name, value)
    settings = config.load()
    # A real playbook run whose play matches no host: the inventory is still read in full, and cached.
    result = runner.run_playbook(settings, "job_stop", {"orch_host": "no-such-host", "orch_job_name": "x"})
    assert result.status == "successful", result
    written = cache_files(orch_home / "inventory-cache")
    assert written and all(name.startswith(ansible_env.cache_prefix(settings)) for name in written), written
    assert not list((orch_home / "runner" / "artifacts").rglob("fact_cache/*"))


def test_graph(fleet):
    result = inventory(fleet["env"], "--graph")
    assert result.returncode == 0, result.stderr
    assert f"@fleet_{fleet['name']}:" in result.stdout
    assert f"|--{fleet['name']}-4" in result.stdout
