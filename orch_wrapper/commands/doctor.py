"""`orch doctor`: one pass/fail line per check, each failure with what to do about it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

from .. import ui
from ..config import Settings
from ..errors import ExitCode, OrchError
from ..model import Check, Host, HostMemory
from ..transport import agent, aws, inventory, ssh

TOOLS = ("ssh", "ssh-agent", "ssh-add", "ansible-playbook", "ansible-inventory")


def check_tools() -> list[Check]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return [Check("local tools", False, "missing: " + ", ".join(missing), "run scripts/install")]
    return [Check("local tools", True, ", ".join(TOOLS))]


def check_region(settings: Settings) -> Check:
    if settings.region in aws.known_regions():
        return Check("region", True, settings.region)
    return Check("region", False, f"unknown region {settings.region}", "set AWS_REGION, e.g. ap-northeast-1")


def check_endpoint(settings: Settings) -> Check:
    import socket  # here: the other verbs, which import this module with the parser, do not need it

    url = settings.endpoint or f"https://sts.{settings.region}.amazonaws.com"
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=3):
            pass
    except OSError as exc:
        fix = "start it with `orch sandbox up`, or fix AWS_ENDPOINT_URL" if settings.endpoint else "check the network"
        return Check("AWS endpoint", False, f"{url}: {exc.strerror or exc}", fix)
    return Check("AWS endpoint", True, url)


def check_credentials(settings: Settings) -> Check:
    import botocore.exceptions

    try:
        who = aws.client(settings, "sts").get_caller_identity()
    except botocore.exceptions.NoCredentialsError:
        return Check(
            "AWS credentials", False, "none found", "set AWS_PROFILE or run `aws configure` (or `orch sandbox up`)"
        )
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        return Check("AWS credentials", False, f"rejected: {code}", "check AWS_PROFILE or run `aws configure`")
    except botocore.exceptions.BotoCoreError as exc:
        return Check("AWS credentials", False, str(exc), "check AWS_PROFILE, AWS_ENDPOINT_URL and the network")
    return Check("AWS credentials", True, f"account {who.get('Account')} ({who.get('Arn')})")


def check_host(settings: Settings, host: Host) -> Check:
    name = f"ssh {host.name}"
    try:
        proc = subprocess.run(ssh.argv(settings, host, ["true"]), capture_output=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return Check(name, False, f"{host.address}: no answer in 20 s", "start the instance or check the network")
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        return Check(
            name,
            False,
            f"{host.address}: {lines[-1] if lines else 'exit ' + str(proc.returncode)}",
            "start the instance (or `orch sandbox up`), check the security group and the key in SSM",
        )
    return Check(name, True, f"{host.address} as {host.ssh_user}")


def check_caps(settings: Settings, host: Host) -> Check:
    """Whether the host can hold a job's --mem cap (its own query says): a warning, never silence, when not."""
    name = f"memory caps {host.name}"
    (reply,) = ssh.query(settings, [host])
    memory = HostMemory.from_reply(reply.data)
    if memory is None or memory.memory_caps is None:
        return Check(name, True, "not reported by this host", warning=True)
    if memory.memory_caps != "enforced":
        return Check(name, True, memory.memory_caps, "run `orch configure`", warning=True)
    return Check(name, True, f"enforced (orch.slice {ui.human_size(memory.memory_allocatable)})")


def run_checks(settings: Settings, say: Callable[[Check], None]) -> list[Check]:
    checks: list[Check] = []

    def record(check: Check) -> Check:
        checks.append(check)
        say(check)
        return check

    for check in check_tools():
        record(check)
    record(check_region(settings))
    endpoint = record(check_endpoint(settings))
    creds = record(check_credentials(settings)) if endpoint.ok else None
    if not (creds and creds.ok):
        return checks
    try:
        hosts = inventory.load(settings, refresh=True)
    except OrchError as exc:
        record(Check("inventory", False, exc.message, exc.hint or "run `orch sandbox up` or provision"))
        return checks
    if not hosts:
        record(Check("inventory", False, f"no hosts in fleet {settings.fleet}", "run `orch sandbox up` or provision"))
        return checks
    record(Check("inventory", True, f"{len(hosts)} host(s) in fleet {settings.fleet}"))
    try:
        agent.ensure(settings)
        record(Check("fleet key in orch's agent", True, agent.key_parameter(settings)))
    except OrchError as exc:
        record(Check("fleet key in orch's agent", False, exc.message, exc.hint or ""))
        return checks
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        reached = []
        for host, check in zip(hosts, pool.map(lambda h: check_host(settings, h), hosts), strict=True):
            record(check)
            if check.ok:
                reached.append(host)
        for check in pool.map(lambda h: check_caps(settings, h), reached):
            record(check)
    return checks


def doctor(settings: Settings) -> int:
    def say(check: Check) -> None:
        mark = "FAIL" if not check.ok else "warn" if check.warning else "ok  "
        line = f"{mark} {check.name}: {check.detail}"
        if (not check.ok or check.warning) and check.fix:
            line += f"  -> {check.fix}"
        print(line, flush=True)

    checks = run_checks(settings, say)
    failed = [c for c in checks if not c.ok]
    warned = [c for c in checks if c.ok and c.warning]
    if failed:
        print(f"{len(failed)} check(s) failed", flush=True)
        return ExitCode.FAILURE
    print("all checks passed" + (f", {len(warned)} warning(s)" if warned else ""))
    return ExitCode.OK
