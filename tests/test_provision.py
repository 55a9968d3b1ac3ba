"""playbooks/provision.yml against moto: idempotence, the exact properties of every resource, secrets, bad input."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parent.parent
REGION = "ap-northeast-1"

PLAYBOOK = ROOT / "playbooks" / "provision.yml"
ACCOUNT = "123456789012"  # moto's account
CIDRS = ["203.0.113.7/32", "2001:db8::/64"]


def provision(env: dict[str, str], extravars: dict, inventory: str | None = None) -> subprocess.CompletedProcess:
    """Run the real playbook with ansible-playbook (verbose, so module results show in the output we inspect)."""
    argv = ["ansible-playbook", "-v", "-i", inventory or str(ROOT / "inventory"), str(PLAYBOOK)]
    argv += ["-e", json.dumps(extravars)]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def recap(result: subprocess.CompletedProcess) -> dict[str, int]:
    match = re.search(r"^localhost\s+:\s+(.*)$", result.stdout, re.MULTILINE)
    assert match, result.stdout[-3000:] + result.stderr[-3000:]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def fatal_msg(result: subprocess.CompletedProcess) -> str:
    """The message of the play's last failure."""
    msgs = re.findall(r"^fatal: \[localhost\]: FAILED! => (\{.*\})$", result.stdout, re.MULTILINE)
    assert msgs, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(msgs[-1])["msg"]


def clients(endpoint: str):
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return {name: session.client(name, endpoint_url=endpoint) for name in ("ec2", "iam", "ssm", "logs")}


@pytest.fixture(scope="module")
def fleet(moto: str, make_aws_env, tmp_path_factory: pytest.TempPathFactory):
    """One fleet provisioned twice with two instances, public access and two SSH CIDRs, shared by this module."""
    name = f"p{uuid.uuid4().hex[:8]}"
    home = tmp_path_factory.mktemp("provision") / "home"
    env = make_aws_env(moto, home, ORCH_FLEET=name)
    extravars = {"orch_instance_count": 2, "orch_ssh_cidrs": CIDRS, "orch_access": "public"}
    first = provision(env, extravars)
    second = provision(env, extravars)
    return {"name": name, "home": home, "env": env, "extravars": extravars, "runs": [first, second], **clients(moto)}


def instances(ec2, fleet_name: str) -> list[dict]:
    reservations = ec2.describe_instances(
        Filters=[
            {"Name": "tag:orch-fleet", "Values": [fleet_name]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )["Reservations"]
    return sorted((i for r in reservations for i in r["Instances"]), key=lambda i: tags(i)["Name"])


def tags(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def test_first_run_creates_and_second_run_changes_nothing(fleet):
    first, second = fleet["runs"]
    assert first.returncode == 0, first.stdout[-3000:]
    assert recap(first)["changed"] > 0
    assert second.returncode == 0, second.stdout[-3000:]
    assert recap(second)["changed"] == 0
    assert recap(second)["failed"] == 0


def test_security_group_allows_ssh_from_the_listed_cidrs_only(fleet):
    (group,) = fleet["ec2"].describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"orch-{fleet['name']}"]}]
    )["SecurityGroups"]
    ingress = [
        (
            p["IpProtocol"],
            p.get("FromPort"),
            p.get("ToPort"),
            sorted(r["CidrIp"] for r in p["IpRanges"]),
            sorted(r["CidrIpv6"] for r in p["Ipv6Ranges"]),
        )
        for p in group["IpPermissions"]
    ]
    v4 = [("tcp", 22, 22, ["203.0.113.7/32"], [])]
    v6 = [("tcp", 22, 22, [], ["2001:db8::/64"])]
    assert sorted(ingress) == sorted(v4 + v6) or sorted(ingress) == [
        ("tcp", 22, 22, ["203.0.113.7/32"], ["2001:db8::/64"])
    ]
    egress = [(p["IpProtocol"], [r["CidrIp"] for r in p["IpRanges"]]) for p in group["IpPermissionsEgress"]]
    assert egress == [("-1", ["0.0.0.0/0"])]
    assert tags(group)["orch-fleet"] == fleet["name"]


def test_iam_role_has_least_privilege(fleet):
    iam, name = fleet["iam"], fleet["name"]
    role_name = f"orch-{name}-host"
    role = iam.get_role(RoleName=role_name)["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]]
    assert attached == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]
    assert iam.list_role_policies(RoleName=role_name)["PolicyNames"] == [role_name]
    document = iam.get_role_policy(RoleName=role_name, PolicyName=role_name)["PolicyDocument"]
    statements = {s["Sid"]: s for s in document["Statement"]}
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/orch/{name}"
    parameters = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/orch/{name}"
    assert statements == {
        "OrchLogsToFleetGroup": {
            "Sid": "OrchLogsToFleetGroup",
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
                "logs:PutRetentionPolicy",
            ],
            "Resource": [log_group, f"{log_group}:*", f"{log_group}/power", f"{log_group}/power:*"],
        },
        "OrchReadFleetParameters": {
            "Sid": "OrchReadFleetParameters",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:GetParameters"],
            "Resource": [f"{parameters}/deploy-keys/*", f"{parameters}/secrets/*"],
        },
        "OrchDenyOtherParameters": {
            "Sid": "OrchDenyOtherParameters",
            "Effect": "Deny",
            "Action": ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory"],
            "NotResource": [f"{parameters}/deploy-keys/*", f"{parameters}/secrets/*"],
        },
        "OrchStopOwnFleet": {
            "Sid": "OrchStopOwnFleet",
            "Effect": "Allow",
            "Action": "ec2:StopInstances",
            "Resource": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*",
            "Condition": {"StringEquals": {"aws:ResourceTag/orch-fleet": name}},
        },
    }
    profile = iam.get_instance_profile(InstanceProfileName=role_name)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [role_name]


def test_log_group_keeps_30_days_and_the_power_record_400(fleet):
    groups = fleet["logs"].describe_log_groups(logGroupNamePrefix=f"/orch/{fleet['name']}")["logGroups"]
    found = sorted((g["logGroupName"], g.get("retentionInDays")) for g in groups)
    assert found == [(f"/orch/{fleet['name']}", 30), (f"/orch/{fleet['name']}/power", 400)]


def test_instances_have_the_configured_properties(fleet):
    ec2, name = fleet["ec2"], fleet["name"]
    found = instances(ec2, name)
    assert [tags(i)["Name"] for i in found] == [f"{name}-1", f"{name}-2"]
    ami = fleet["ssm"].get_parameter(Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
    (group,) = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"orch-{name}"]}])[
        "SecurityGroups"
    ]
    for instance in found:
        assert instance["InstanceType"] == "t3.2xlarge"
        assert instance["ImageId"] == ami["Parameter"]["Value"]
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["MetadataOptions"]["HttpEndpoint"] == "enabled"
        assert instance["KeyName"] == f"orch-{name}"
        assert instance["IamInstanceProfile"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:instance-profile/orch-{name}-host"
        assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group["GroupId"]]
        assert {k: v for k, v in tags(instance).items() if k != "Name"} == {
            "orch-fleet": name,
            "orch-access": "public",
            "orch-user": "ec2-user",
            "orch-plan": "on-demand",
        }
        (mapping,) = instance["BlockDeviceMappings"]
        assert mapping["DeviceName"] == instance["RootDeviceName"]
        (volume,) = ec2.describe_volumes(VolumeIds=[mapping["Ebs"]["VolumeId"]])["Volumes"]
        assert (volume["Size"], volume["VolumeType"], volume["Encrypted"]) == (100, "gp3", True)
        assert mapping["Ebs"]["DeleteOnTermination"] is True


def test_private_key_lives_only_in_ssm(fleet):
    name = fleet["name"]
    parameter = fleet["ssm"].get_parameter(Name=f"/orch/{name}/ssh/private-key", WithDecryption=True)["Parameter"]
    assert parameter["Type"] == "SecureString"
    private = serialization.load_ssh_private_key(parameter["Value"].encode(), password=None)
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    (pair,) = fleet["ec2"].describe_key_pairs(KeyNames=[f"orch-{name}"], IncludePublicKey=True)["KeyPairs"]
    assert pair["PublicKey"].split()[:2] == public.decode().split()[:2]
    # No trace of the private key in the playbook's (verbose) output or anywhere under the laptop's home: neither
    # the PEM's lines (but those that only repeat the public key, which OpenSSH's format embeds) nor the raw seed.
    public_b64 = public.decode().split()[1]
    lines = [line for line in parameter["Value"].strip().splitlines()[1:-1] if line not in public_b64]
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    secrets = [*lines, base64.b64encode(seed).decode(), seed.hex(), "PRIVATE KEY"]
    texts = {f"run {n}": run.stdout + run.stderr for n, run in enumerate(fleet["runs"], 1)}
    texts.update(
        {str(path): path.read_text(errors="replace") for path in Path(fleet["home"]).rglob("*") if path.is_file()}
    )
    assert any(name.endswith(".orch/inventory-cache") or "inventory-cache" in name for name in texts)
    for where, text in texts.items():
        assert not [secret for secret in secrets if secret in text], where


def test_provision_refreshes_the_inventory_cache(fleet):
    """Right after provisioning, the cached inventory (no --flush-cache) already lists the new hosts."""
    result = subprocess.run(
        ["ansible-inventory", "-i", str(ROOT / "inventory"), "--list"],
        cwd=ROOT,
        env={**fleet["env"], "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},  # would fail if the cache were not used
        capture_output=True,
        text=True,
        check=True,
    )
    listed = json.loads(result.stdout)
    assert sorted(listed[f"fleet_{fleet['name']}"]["hosts"]) == [f"{fleet['name']}-1", f"{fleet['name']}-2"]


@pytest.mark.parametrize(
    ("instance_type", "arch"),
    [
        ("t3.2xlarge", "x86_64"),
        ("m7g.2xlarge", "arm64"),
        ("c7gn.xlarge", "arm64"),
        ("t4g.large", "arm64"),
        ("g5.xlarge", "x86_64"),
        ("m7i.large", "x86_64"),
    ],
)
def test_ami_architecture_follows_the_instance_type(instance_type, arch):
    result = subprocess.run(
        [
            "ansible",
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-m",
            "ansible.builtin.debug",
            "-a",
            "msg={{ _orch_arch }}={{ _orch_ami_parameter }}",
        ]
        + ["-e", f"@{ROOT / 'playbooks' / 'vars' / 'provision.yml'}", "-e", f"orch_instance_type={instance_type}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f'"msg": "{arch}=/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"' in result.stdout


@pytest.mark.parametrize(
    ("extravars", "message"),
    [
        ({"orch_ssh_cidrs": ["0.0.0.0/0"]}, "orch_ssh_cidrs 0.0.0.0/0 opens SSH to the whole internet"),
        ({"orch_ssh_cidrs": ["::/0"]}, "orch_ssh_cidrs ::/0 opens SSH to the whole internet"),
        (
            {"orch_ssh_cidrs": ["203.0.113.7/32", "10.0.0.300/8"]},
            "orch_ssh_cidrs has entries that are not CIDRs: 10.0.0.300/8",
        ),
        ({"orch_ssh_cidrs": ["example.com"]}, "orch_ssh_cidrs has entries that are not CIDRs: example.com"),
        ({"orch_ssh_cidrs": "203.0.113.7/32"}, "orch_ssh_cidrs must be a list of CIDRs"),
        ({"orch_region": "xx-nowhere-1"}, "Unknown region 'xx-nowhere-1'"),
        ({"orch_region": "Tokyo"}, "orch_region 'Tokyo' is not an AWS region name"),
        ({"orch_instance_count": -1}, "orch_instance_count must be a whole number >= 0 (got '-1')"),
        ({"orch_fleet": ""}, "orch_fleet '' is not a valid fleet name"),
        ({"orch_access": "telnet"}, "orch_access 'telnet' is not one of ssm, public, private, endpoint"),
        ({"orch_access": "public"}, "orch_access=public connects over SSH but orch_ssh_cidrs is empty"),
        (
            {"orch_log_group_retention_days": 31},
            "orch_log_group_retention_days '31' is not a CloudWatch Logs retention",
        ),
    ],
    ids=[
        "open-ipv4",
        "open-ipv6",
        "bad-octet",
        "hostname",
        "not-a-list",
        "unknown-region",
        "region-spelling",
        "negative-count",
        "empty-fleet",
        "unknown-access",
        "public-without-cidrs",
        "bad-retention",
    ],
)
def test_bad_input_fails_early_with_its_message(aws_env, fleet_name, extravars, message):
    result = provision({**aws_env, "ORCH_FLEET": fleet_name}, extravars, inventory="localhost,")
    assert result.returncode != 0
    assert message in fatal_msg(result)
    assert recap(result)["changed"] == 0
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env_change", "message"),
    [
        ({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}, "AWS credentials are missing or invalid"),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}, "Cannot reach AWS at http://127.0.0.1:9"),
    ],
    ids=["no-credentials", "endpoint-down"],
)
def test_environment_faults_get_one_line_messages(aws_env, fleet_name, env_change, message):
    env = {**aws_env, "ORCH_FLEET": fleet_name, **{k: v for k, v in env_change.items() if v is not None}}
    for key in [k for k, v in env_change.items() if v is None]:
        env.pop(key)
    result = provision(env, {}, inventory="localhost,")
    assert result.returncode != 0
    assert fatal_msg(result).startswith(message)


def test_lowering_the_count_terminates_the_surplus_and_keeps_foreign_tags(fleet):
    """Runs last in this module: it changes the shared fleet. Tags the sandbox adds (the SSH endpoint) survive."""
    (first, _second) = instances(fleet["ec2"], fleet["name"])
    endpoint_tags = [{"Key": "orch-ssh-host", "Value": "127.0.0.1"}, {"Key": "orch-ssh-port", "Value": "2201"}]
    fleet["ec2"].create_tags(Resources=[first["InstanceId"]], Tags=endpoint_tags)
    result = provision(fleet["env"], {**fleet["extravars"], "orch_instance_count": 1})
    assert result.returncode == 0, result.stdout[-3000:]
    assert recap(result)["changed"] == 1
    (remaining,) = instances(fleet["ec2"], fleet["name"])
    assert remaining["InstanceId"] == first["InstanceId"]
    assert tags(remaining)["Name"] == f"{fleet['name']}-1"
    assert {k: tags(remaining)[k] for k in ("orch-ssh-host", "orch-ssh-port")} == {
        "orch-ssh-host": "127.0.0.1",
        "orch-ssh-port": "2201",
    }


def test_spot_market_launches_through_a_persistent_stop_on_interruption_template(moto, make_aws_env, tmp_path):
    """orch_market spot: the instance comes from the fleet's launch template, whose market options make a persistent
    spot request that stops (never terminates) on interruption; tag orch-plan says spot to the inventory and cost."""
    name = f"s{uuid.uuid4().hex[:8]}"
    env = make_aws_env(moto, tmp_path / "home", ORCH_FLEET=name)
    result = provision(env, {"orch_market": "spot"})
    assert result.returncode == 0, result.stdout[-3000:]
    aws = clients(moto)
    versions = aws["ec2"].describe_launch_template_versions(LaunchTemplateName=f"orch-{name}-spot")
    (version,) = versions["LaunchTemplateVersions"]
    assert version["LaunchTemplateData"]["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"},
    }
    (instance,) = instances(aws["ec2"], name)
    assert tags(instance)["orch-plan"] == "spot"
    assert instance["MetadataOptions"]["HttpTokens"] == "required"  # IMDSv2 as on-demand: the spot watch reads it
    again = provision(env, {"orch_market": "spot"})
    assert again.returncode == 0 and [i["InstanceId"] for i in instances(aws["ec2"], name)] == [instance["InstanceId"]]


def test_an_unknown_market_is_refused(aws_env, fleet_name):
    result = provision({**aws_env, "ORCH_FLEET": fleet_name}, {"orch_market": "reserved"}, inventory="localhost,")
    assert result.returncode != 0 and "orch_market 'reserved' is not one of on-demand, spot" in fatal_msg(result)
