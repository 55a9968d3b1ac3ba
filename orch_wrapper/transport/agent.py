"""orch's own ssh-agent: the fleet key comes from SSM Parameter Store straight into the agent, never onto disk."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
from pathlib import Path

from orch_host import contract

from ..config import Settings
from ..errors import ExitCode, OrchError, no_credentials
from . import aws

KEY_LIFETIME = 3600  # seconds the agent keeps the key (ssh-add -t)
# ssh-agent protocol message numbers (draft-miller-ssh-agent): list the keys, and the answer
_REQUEST_IDENTITIES = 11
_IDENTITIES_ANSWER = 12


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


def listed_fingerprints(sock: Path) -> list[str] | None:
    """The SHA256 fingerprints of the keys the agent on SOCK holds (what `ssh-add -l` lists), or None when no agent
    answers there. Asked in-process over the agent protocol (REQUEST_IDENTITIES): `orch status` runs this every
    time, and a `ssh-add -l` child costs it more than the question does."""
    import socket
    import struct

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            conn.connect(str(sock))
            conn.sendall(struct.pack(">IB", 1, _REQUEST_IDENTITIES))
            data = b""
            while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
                chunk = conn.recv(65536)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    if data[4] != _IDENTITIES_ANSWER:
        return None
    (count,), pos, found = struct.unpack(">I", data[5:9]), 9, []
    for _key in range(count):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        blob = data[pos + 4 : pos + 4 + size]
        (comment_size,) = struct.unpack(">I", data[pos + 4 + size : pos + 8 + size])
        pos += 8 + size + comment_size
        found.append("SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("="))
    return found


def ensure(settings: Settings) -> str:
    """Start orch's agent if nobody answers on its socket and load the fleet key unless it is already there.

    Returns the socket path. Cheap when warm: one question to the agent, no child process.
    """
    listed = listed_fingerprints(settings.agent_sock)
    if listed is None:  # no agent on the socket
        _start_agent(settings)
        listed = listed_fingerprints(settings.agent_sock) or []
    known = settings.home / f"key-{settings.fleet}.fingerprint"  # a public fingerprint, not a secret
    try:
        want = known.read_text().strip()
    except OSError:
        want = ""
    if want and want in listed:
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
