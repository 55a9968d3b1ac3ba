"""The CLI end to end on this machine: moto as AWS, a local sshd as the job host, the real host code and playbooks.

The sandbox's containers are the lead's end-to-end suite; this one needs no image, so it runs in seconds and shows
that the pieces the CLI owns (inventory -> fleet, SSM key -> orch's agent, ansible-runner -> job playbooks ->
orch_job, ssh -> query/follow) fit together.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from orch_host.contract import TMUX_SOCKET

from orch_wrapper import cli, config
from orch_wrapper.transport import agent, inventory, ssh

# openssh-server (scripts/install); sshd runs as root here, as on the sandbox hosts
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen) -> None:
    for _ in range(100):
        if proc.poll() is not None:
            raise RuntimeError("sshd exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("sshd did not listen")


@pytest.fixture(scope="module")
def box(moto, make_aws_env):
    """A fleet of one: an EC2 instance in moto tagged to reach a local sshd whose sessions get a private HOME."""
    root = Path(tempfile.mkdtemp(prefix="orch-"))
    fleet_name = f"c{os.getpid()}"
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    host_home, tmux_dir, laptop_home = root / "hosthome", root / "tmux", root / "laptop"
    for path in (host_home / "work", tmux_dir, laptop_home):
        path.mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "hostkey")], check=True)
    (root / "authorized_keys").write_bytes(public + b"\n")
    port = _free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root}/hostkey\nPidFile {root}/sshd.pid\n"
        f"AuthorizedKeysFile {root}/authorized_keys\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
        f"PasswordAuthentication no\nSetEnv HOME={host_home} TMUX_TMPDIR={tmux_dir}\nMaxSessions 50\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory (its unit makes it)
    sshd = subprocess.Popen([SSHD, "-D", "-f", str(root / "sshd_config"), "-E", str(root / "sshd.log")])
    env = make_aws_env(moto, laptop_home, ORCH_FLEET=fleet_name, ORCH_HOME=str(root / "o"))
    try:
        _wait_port(port, sshd)
        session = boto3.Session(region_name=env["AWS_REGION"], aws_access_key_id="testing", aws_secret_access_key="t")
        ssm = session.client("ssm", endpoint_url=moto)
        ssm.put_parameter(Name=f"/orch/{fleet_name}/ssh/private-key", Value=private, Type="SecureString")
        ec2 = session.client("ec2", endpoint_url=moto)
        image = ec2.describe_images()["Images"][0]["ImageId"]
        tags = {
            "Name": f"{fleet_name}-1",
            "orch-fleet": fleet_name,
            "orch-access": "endpoint",
            "orch-ssh-host": "127.0.0.1",
            "orch-ssh-port": str(port),
            "orch-user": "root",
        }
        ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )
        yield {"env": env, "fleet": fleet_name, "port": port, "host_home": host_home, "tmux": tmux_dir}
    finally:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            settings = config.load()
            try:
                ssh.close_masters(settings, inventory.load(settings))
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass
            agent.stop(settings)
        # orch's own tmux server (-L orch) in the sessions' TMUX_TMPDIR
        subprocess.run(["tmux", "-S", str(tmux_dir / "tmux-0" / TMUX_SOCKET), "kill-server"], capture_output=True)
        sshd.send_signal(signal.SIGTERM)
        sshd.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def orch(box, monkeypatch, capfd):
    for key in [k for k in os.environ if k.startswith(("AWS_", "ORCH_"))]:
        monkeypatch.delenv(key)
    for key, value in box["env"].items():
        monkeypatch.setenv(key, value)

    def call(*argv):
        code = cli.main(list(argv))
        out, err = capfd.readouterr()
        return code, out, err

    return call


def _wait_state(orch, name, states, tries=100):
    for _ in range(tries):
        code, out, _ = orch("status", name, "--json")
        jobs = json.loads(out)["jobs"] if code == 0 else []
        if jobs and jobs[0]["state"] in states:
            return jobs[0]
        time.sleep(0.1)
    raise AssertionError(f"{name} never reached {states}: {out}")


def test_hosts_doctor_and_ssh_config(box, orch):
    code, out, err = orch("hosts", "--refresh", "--json")
    assert code == 0, err
    (host,) = json.loads(out)
    assert (host["name"], host["address"], host["ssh_user"], host["access"]) == (
        f"{box['fleet']}-1",
        f"127.0.0.1:{box['port']}",
        "root",
        "endpoint",
    )
    code, out, err = orch("doctor")
    assert code == 0, out + err
    assert f"ok   ssh {box['fleet']}-1: 127.0.0.1:{box['port']} as root" in out
    # this machine is no configured job host (no orch.slice, no scope helper): doctor says caps cannot hold
    caps = f"warn memory caps {box['fleet']}-1: not enforced: orch's scope helper"
    assert caps in out and "-> run `orch configure`" in out and "all checks passed, 1 warning(s)" in out, out
    code, out, _ = orch("ssh-config")
    assert f"Host {box['fleet']}-1\n  HostName 127.0.0.1\n  Port {box['port']}\n  User root\n" in out


def test_run_logs_status_stop_rm(box, orch):
    command = "echo \"it's $((1+2))\" '{{ not templated }}'\nexit 3"
    code, out, err = orch("run", "fails", command)
    assert code == 0, err
    assert out.startswith("fails: ") and f" on {box['fleet']}-1 (127.0.0.1:{box['port']})" in out  # or done already
    code, out, err = orch("logs", "fails", "--follow")
    assert code == 3, err
    assert "it's 3 {{ not templated }}" in out
    job = _wait_state(orch, "fails", {"FAILED"})
    assert job["exit_code"] == 3
    code, out, _ = orch("logs", "fails", "--tail", "50")
    assert code == 0 and "it's 3 {{ not templated }}" in out
    for argv in (["logs", "ghost"], ["logs", "ghost", "--follow"]):
        code, out, err = orch(*argv)
        assert code == 3 and out == "", argv
        assert err.startswith("orch: no ") and "ghost" in err and len(err.strip().splitlines()) == 1, err

    code, out, err = orch("run", "sleeper", "echo started; sleep 300")
    assert code == 0, err
    code, _, err = orch("run", "sleeper", "true")
    assert code != 0 and "already running" in err and len(err.strip().splitlines()) == 1
    _wait_state(orch, "sleeper", {"RUNNING"})
    code, out, _ = orch("status")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["sleeper"][2] == "RUNNING" and rows["fails"][2] == "FAILED" and rows["fails"][-1] == "3"
    code, out, err = orch("stop", "sleeper", "--grace", "2")
    assert code == 0, err
    assert _wait_state(orch, "sleeper", {"KILLED"})["state"] == "KILLED"
    code, out, err = orch("rm", "sleeper", "--purge")
    assert code == 0, err
    code, _, err = orch("status", "sleeper")
    assert code == 3 and "no job sleeper" in err
    assert not (box["host_home"] / "logs" / "sleeper").exists()
    # the key went from SSM into orch's agent only
    laptop = Path(box["env"]["ORCH_HOME"])
    leaked = [p for p in laptop.rglob("*") if p.is_file() and b"OPENSSH PRIVATE KEY" in p.read_bytes()]
    assert leaked == []


def test_the_aws_secret_key_stays_out_of_every_file_orch_and_ansible_write(box, orch, monkeypatch):
    """Real ansible-runner writes its whole environment, AWS_SECRET_ACCESS_KEY included, into
    artifacts/<id>/command; orch deletes that file after each run. Nothing else may keep the key either."""
    sentinel = f"sentinel-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", sentinel)
    assert config.load().aws_env["AWS_SECRET_ACCESS_KEY"] == sentinel  # what the CLI hands Ansible and boto3
    orch_home, home = Path(box["env"]["ORCH_HOME"]), Path(box["env"]["HOME"])
    artifacts = orch_home / "runner" / "artifacts"
    before = set(artifacts.iterdir()) if artifacts.is_dir() else set()
    code, out, err = orch("run", "creds", "echo creds-ok")
    assert code == 0, err
    code, out, err = orch("logs", "creds", "--follow")
    assert code == 0 and "creds-ok" in out, err
    code, _, err = orch("rm", "creds", "--purge")
    assert code == 0, err
    runs = [p for p in set(artifacts.iterdir()) - before if (p / "stdout").is_file()]
    assert len(runs) == 2, runs  # run and rm went through ansible-runner, which left their artifacts
    scanned, leaked = 0, []
    for top in (orch_home, home, box["host_home"]):
        for path in top.rglob("*"):
            if path.is_file():  # regular files only: no sockets, fifos or devices
                scanned += 1
                if sentinel.encode() in path.read_bytes():
                    leaked.append(str(path))
    assert scanned > 0
    assert leaked == []


def test_doctor_names_a_host_that_is_down(box, orch):
    session = boto3.Session(region_name="ap-northeast-1", aws_access_key_id="testing", aws_secret_access_key="t")
    ec2 = session.client("ec2", endpoint_url=box["env"]["AWS_ENDPOINT_URL"])
    tags = {"Name": f"{box['fleet']}-2", "orch-fleet": box["fleet"], "orch-access": "endpoint"}
    tags.update({"orch-ssh-host": "127.0.0.1", "orch-ssh-port": str(_free_port()), "orch-user": "root"})
    image = ec2.describe_images()["Images"][0]["ImageId"]
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    (instance,) = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", TagSpecifications=spec
    )["Instances"]
    try:
        code, out, _ = orch("doctor")
        assert code == 1
        assert f"ok   ssh {box['fleet']}-1: 127.0.0.1:{box['port']} as root" in out
        (fail,) = [line for line in out.splitlines() if line.startswith("FAIL")]
        assert fail.startswith(f"FAIL ssh {box['fleet']}-2: 127.0.0.1:{tags['orch-ssh-port']}: ")
        assert "Connection refused" in fail and "-> start the instance" in fail
    finally:
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
        orch("hosts", "--refresh")
