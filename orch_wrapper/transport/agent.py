"""orch's own ssh-agent: the fleet key comes from SSM Parameter Store straight into the agent, never onto disk."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess

from orch_host import contract

from ..config import Settings
from ..errors import ExitCode, OrchError, no_credentials
from . import aws

KEY_LIFETIME = 3600  # seconds the agent keeps the key (ssh-add -t)


def key_parameter(settings: Settings) -> str:
    return contract.ssm_key_parameter(settings.fleet)


def _missing(tool: str) -> OrchError:
    return OrchError(f"{tool} is not installed", hint="install OpenSSH's client", exit_code=ExitCode.CONFIG)


def _ssh_add(settings: Settings, *args: str, key: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "SSH_AUTH_SOCK": str(settings.agent_sock)}
    try:
        return subprocess.run(["ssh-add", *args], input=key, capture_output=True, env=env, timeout=30, check=False)
    except FileNotFoundError:
        raise _missing("ssh-add") from None


def _start_agent(settings: Settings) -> None:
    settings.ensure_home()
    settings.agent_sock.unlink(missing_ok=True)  # a socket nobody answers on
    try:
        proc = subprocess.run(
            ["ssh-agent", "-a", str(settings.agent_sock)], capture_output=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise _missing("ssh-agent") from None
    if proc.returncode != 0:
        raise OrchError(f"ssh-agent failed: {proc.stderr.decode(errors='replace').strip()}", exit_code=ExitCode.CONFIG)
    match = re.search(rb"SSH_AGENT_PID=(\d+)", proc.stdout)
    if match:
        (settings.home / "agent.pid").write_text(match.group(1).decode() + "\n")


def stop(settings: Settings) -> bool:
    """Stop orch's agent (the keys go with it). True if one was running."""
    try:
        pid = int((settings.home / "agent.pid").read_text())
    except (OSError, ValueError):
        return False
    env = {**os.environ, "SSH_AUTH_SOCK": str(settings.agent_sock), "SSH_AGENT_PID": str(pid)}
    proc = subprocess.run(["ssh-agent", "-k"], env=env, capture_output=True, timeout=30, check=False)
    (settings.home / "agent.pid").unlink(missing_ok=True)
    settings.agent_sock.unlink(missing_ok=True)
    return proc.returncode == 0


def fingerprint(private_key: bytes) -> str:
    """The SHA256 fingerprint `ssh-add -l` prints for this key, computed in memory."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_ssh_private_key(private_key, password=None)
    blob = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    raw = base64.b64decode(blob.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def fetch_key(settings: Settings) -> bytes:
    """The fleet's private key from SSM (SecureString, decrypted), kept in memory only."""
    import botocore.exceptions

    try:
        reply = aws.client(settings, "ssm").get_parameter(Name=key_parameter(settings), WithDecryption=True)
    except botocore.exceptions.NoCredentialsError:
        raise no_credentials() from None
    except botocore.exceptions.EndpointConnectionError:
        raise OrchError(
            "cannot reach the AWS endpoint",
            hint="check AWS_ENDPOINT_URL and the network",
            exit_code=ExitCode.UNREACHABLE,
        ) from None
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ParameterNotFound":
            raise OrchError(
                f"no SSH key for fleet {settings.fleet} in SSM ({key_parameter(settings)})",
                hint="run the provisioning playbook or `orch sandbox up`",
                exit_code=ExitCode.NOT_FOUND,
            ) from None
        raise OrchError(f"SSM refused to give the fleet key: {code}", hint="check the IAM permissions") from None
    value = reply["Parameter"]["Value"]
    return (value if value.endswith("\n") else value + "\n").encode()


def ensure(settings: Settings) -> str:
    """Start orch's agent if nobody answers on its socket and load the fleet key unless it is already there.

    Returns the socket path. Cheap when warm: one `ssh-add -l`.
    """
    listed = _ssh_add(settings, "-l")
    if listed.returncode == 2:  # no agent on the socket
        _start_agent(settings)
        listed = _ssh_add(settings, "-l")
    known = settings.home / f"key-{settings.fleet}.fingerprint"  # a public fingerprint, not a secret
    try:
        want = known.read_text().strip()
    except OSError:
        want = ""
    if want and want in listed.stdout.decode(errors="replace"):
        return str(settings.agent_sock)
    key = fetch_key(settings)
    try:
        added = _ssh_add(settings, "-t", str(KEY_LIFETIME), "-", key=key)
        if added.returncode != 0:
            raise OrchError(
                f"ssh-add refused the fleet key: {added.stderr.decode(errors='replace').strip()}",
                hint=f"check the SSM parameter {key_parameter(settings)}",
            )
        known.write_text(fingerprint(key) + "\n")
    finally:
        del key
    return str(settings.agent_sock)
