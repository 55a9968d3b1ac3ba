"""Idle auto-stop, run on the host by the orch_autostop role's systemd timer about once a minute (`autostop check`).

Each check looks at what keeps the host busy (idle.busy_reasons) and keeps, in ~/.orch/autostop-state.json, since
when nothing has. Once the host has been idle for the setting's minutes it stops its own instance through EC2 (its
instance role allows StopInstances on the fleet's instances only): stop, never terminate. Before the stop it runs
the optional pre-stop command (bounded by its timeout: it can never block the stop), and it records each stop with
its reason in ~/.orch/autostop.log. Under the host's lock it looks once more and marks the host stopping, so a job
that starts meanwhile either counts (and nothing stops) or is refused by admission (admission.stopping).

Settings: the role's /etc/orch/autostop.json (mode, idle minutes, pre-stop command and timeout, where the
instance's identity comes from), and over it the job user's ~/.orch/autostop.json, which `orch autostop` writes.
The instance id and region come from instance metadata (IMDSv2) on AWS, from files configure wrote in the sandbox.
"""

import json
import os
import subprocess
import time

from . import idle, records
from .contract import JobError
from .metadata import identity

SYSTEM_SETTINGS = "/etc/orch/autostop.json"  # the role's; tests/host point SETTINGS_ENV at their own
SETTINGS_ENV = "ORCH_AUTOSTOP_SETTINGS"
DEFAULTS = {
    "mode": "jobs_and_sessions",
    "idle_minutes": 30,
    "pre_stop": "",
    "pre_stop_timeout": 60,
    "metadata": "imds",
    "power_log_group": "",  # CloudWatch Logs group of the fleet's power record (powerlog.py); "" for none
}
MAX_IDLE_MINUTES = 7 * 24 * 60


def system_settings_file():
    return os.environ.get(SETTINGS_ENV) or SYSTEM_SETTINGS


def user_settings_file():
    return records.orch_dir("autostop.json")


def state_file():
    return records.orch_dir("autostop-state.json")


def log_file():
    return records.orch_dir("autostop.log")


def read_json(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def settings():
    """The defaults, the role's file over them, the user's over that; values of the wrong kind are ignored."""
    merged = dict(DEFAULTS)
    for layer in (read_json(system_settings_file()), read_json(user_settings_file())):
        for key, value in layer.items():
            if key in DEFAULTS and isinstance(value, type(DEFAULTS[key])) and not isinstance(value, bool):
                merged[key] = value
    if merged["mode"] not in idle.MODES:
        merged["mode"] = DEFAULTS["mode"]
    return merged


def change(mode=None, idle_minutes=None):
    """Persist MODE and IDLE_MINUTES for this host (the user's layer); a JobError names a bad value."""
    if mode is not None and mode not in idle.MODES:
        raise JobError(f"autostop mode {mode!r} is not one of {', '.join(idle.MODES)}")
    if idle_minutes is not None and not 1 <= idle_minutes <= MAX_IDLE_MINUTES:
        raise JobError(f"autostop idle minutes must be 1 to {MAX_IDLE_MINUTES}, not {idle_minutes}")
    mine = read_json(user_settings_file())
    if mode is not None:
        mine["mode"] = mode
    if idle_minutes is not None:
        mine["idle_minutes"] = idle_minutes
    records.ensure_dir(records.orch_dir())
    records.write_atomic(user_settings_file(), (json.dumps(mine) + "\n").encode())
    state = read_json(state_file())
    state["idle_since"] = None  # a new setting counts from now
    records.write_atomic(state_file(), (json.dumps(state) + "\n").encode())


def keepalive(seconds, now=None):
    """Keep the host up for SECONDS from now (0 ends a keep-alive)."""
    now = time.time() if now is None else now
    records.ensure_dir(records.orch_dir())
    records.write_atomic(idle.keepalive_file(), (json.dumps({"until": now + seconds}) + "\n").encode())
    return now + seconds


def boot_key(facts=None):
    facts = facts or records.HostFacts()
    return f"{facts.boot_id}/{facts.init_start}"


def stopping(facts=None):
    """When this boot of the host began stopping itself (seconds since the epoch), else None."""
    state = read_json(state_file())
    if state.get("stopping") and state.get("boot") == boot_key(facts):
        return state["stopping"]
    return None


def _summary(conf, facts, busy, since, now, checked):
    started = facts.init_started_at()
    if busy or conf["mode"] == "off":
        since = None
    return {
        "mode": conf["mode"],
        "idle_minutes": conf["idle_minutes"],
        "busy": busy,
        "idle_since": since,
        "stops_in": None if since is None else max(0, since + conf["idle_minutes"] * 60 - now),
        "keepalive_until": idle.keepalive_until(now),
        "stopping": stopping(facts),
        "uptime": None if started is None else max(0, now - started),
        "checked": checked,
    }


def report(now=None):
    """The host's auto-stop as the laptop shows it, looked at now: the settings, what keeps it busy, since when it
    is idle and in how many seconds it stops, its uptime."""
    now = time.time() if now is None else now
    conf = settings()
    facts, jobs = records.query_jobs()
    busy = idle.busy_reasons(conf["mode"], jobs, now)
    state = read_json(state_file())
    since = state.get("idle_since") if state.get("boot") == boot_key(facts) else None
    return _summary(conf, facts, busy, since if since is not None else now, now, state.get("checked"))


def brief(facts, now=None):
    """The auto-stop as the last check left it, for the query path (no look at processes or tmux: it stays cheap);
    None where the role is not installed."""
    if not os.path.exists(system_settings_file()):
        return None
    now = time.time() if now is None else now
    state = read_json(state_file())
    if state.get("boot") != boot_key(facts):
        state = {}
    busy = state.get("busy") if isinstance(state.get("busy"), list) else []
    return _summary(settings(), facts, busy, state.get("idle_since"), now, state.get("checked"))


def log(event, **fields):
    line = json.dumps({"at": records.now_iso(), "event": event, **fields})
    try:
        with open(log_file(), "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def stop_instance(instance, region):
    import boto3

    # Debian 12's botocore ignores AWS_ENDPOINT_URL: pass it (unset on EC2: the regional endpoint)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_EC2") or os.environ.get("AWS_ENDPOINT_URL") or None
    boto3.client("ec2", region_name=region, endpoint_url=endpoint).stop_instances(InstanceIds=[instance])


def pre_stop(command, timeout):
    """Run the pre-stop COMMAND, at most TIMEOUT seconds: its outcome is logged, and never holds the stop."""
    if not command:
        return
    try:
        done = subprocess.run(["bash", "-c", command], capture_output=True, timeout=timeout, check=False)
        log("pre-stop", exit_code=done.returncode, output=(done.stdout + done.stderr)[-2000:].decode(errors="replace"))
    except subprocess.TimeoutExpired:
        log("pre-stop", timed_out=timeout)
    except OSError as exc:
        log("pre-stop", error=str(exc))


def check(now=None):
    """One look (the timer's): update since when the host is idle; stop it once that is the setting's minutes.
    Returns what it decided: "busy", "idle", "off" or "stopped"."""
    from .admission import HOST_LOCK
    from .control import NameLock

    now = time.time() if now is None else now
    records.ensure_dir(records.orch_dir())
    conf = settings()
    facts, jobs = records.query_jobs()
    key = boot_key(facts)
    state = read_json(state_file())
    if state.get("boot") != key:  # a new boot: whatever the last one counted is gone
        state = {"boot": key}
    busy = idle.busy_reasons(conf["mode"], jobs, now)
    if conf["mode"] == "off" or busy:
        state["idle_since"] = None
    elif not state.get("idle_since"):
        state["idle_since"] = now
    state.update(checked=now, busy=busy)
    decided = "off" if conf["mode"] == "off" else "busy" if busy else "idle"
    if decided == "idle" and now - state["idle_since"] >= conf["idle_minutes"] * 60:
        with NameLock(HOST_LOCK):  # a job admitted meanwhile counts; one that comes later is refused
            busy = idle.busy_reasons(conf["mode"], records.query_jobs()[1], time.time())
            if busy:
                state.update(idle_since=None, busy=busy)
                decided = "busy"
            else:
                state["stopping"] = time.time()
                records.write_atomic(state_file(), (json.dumps(state) + "\n").encode())
                decided = "stopped"
    records.write_atomic(state_file(), (json.dumps(state) + "\n").encode())
    if decided == "stopped":
        reason = f"idle {conf['idle_minutes']} min"
        pre_stop(conf["pre_stop"], conf["pre_stop_timeout"])
        try:
            from .powerlog import leave_reason

            leave_reason(reason)  # for the shutdown's stop event
            instance, region = identity(conf["metadata"])
            stop_instance(instance, region)
            log("stop", reason=reason, instance=instance)
        except Exception as exc:  # noqa: BLE001 - logged; the next check tries again
            log("stop failed", reason=reason, error=f"{type(exc).__name__}: {exc}")
            state.update(stopping=None, idle_since=now)
            records.write_atomic(state_file(), (json.dumps(state) + "\n").encode())
            return "stop failed"
    return decided
