"""The host's power record (issue 11's `orch cost`): each start and stop of this host, with its reason, written by
the host itself to the fleet's power log group in CloudWatch Logs (/orch/FLEET/power, stream INSTANCE_ID), which
outlives the host being stopped, and to ~/.orch/power.log.

The orch_autostop role's orch-power-log.service runs `power-log start` at boot and `power-log stop` at shutdown
(systemd runs a oneshot unit's ExecStop as the host goes down, network still up). The reason of a stop is what the
idle auto-stop left in ~/.orch/stop-reason just before it called EC2 ("idle 30 min"), else "shutdown": `orch down`,
the console, or anything else that stopped the instance.
"""

import json
import os
import time

from . import records


def reason_file():
    return records.orch_dir("stop-reason")


def leave_reason(reason):
    """What the coming shutdown is for, for the stop event to say."""
    records.ensure_dir(records.orch_dir())
    records.write_atomic(reason_file(), (reason + "\n").encode())


def _take_reason(event):
    if event != "stop":
        return "boot"
    try:
        with open(reason_file()) as f:
            reason = f.read().strip()
        os.unlink(reason_file())
    except OSError:
        return "shutdown"
    return reason or "shutdown"


def send(group, instance, region, message, stamp_ms):
    """MESSAGE into GROUP's stream INSTANCE (made when missing)."""
    import boto3

    # Debian 12's botocore ignores AWS_ENDPOINT_URL: pass it (unset on EC2: the regional endpoint)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_LOGS") or os.environ.get("AWS_ENDPOINT_URL") or None
    logs = boto3.client("logs", region_name=region, endpoint_url=endpoint)
    try:
        logs.create_log_stream(logGroupName=group, logStreamName=instance)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.put_log_events(
        logGroupName=group, logStreamName=instance, logEvents=[{"timestamp": stamp_ms, "message": message}]
    )


def record(event, conf, identity):
    """Record EVENT (start or stop) of this host; returns the message. A CloudWatch failure is kept in the local
    log with the event: it never fails the boot or the shutdown."""
    now = time.time()
    entry = {"event": event, "at": records.now_iso(), "reason": _take_reason(event), "host": os.uname().nodename}
    try:
        instance, region = identity(conf["metadata"])
        entry["instance"] = instance
        if conf.get("power_log_group"):
            send(conf["power_log_group"], instance, region, json.dumps(entry), int(now * 1000))
    except Exception as exc:  # noqa: BLE001 - kept beside the event, for `orch cost` to be explained
        entry["not_sent"] = f"{type(exc).__name__}: {exc}"
    try:
        records.ensure_dir(records.orch_dir())
        with open(records.orch_dir("power.log"), "a") as f:
            f.write(json.dumps(entry) + "\n")
    except OSError:
        pass
    return entry
