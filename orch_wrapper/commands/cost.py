"""`orch cost [--month YYYY-MM] [--json]`: what the fleet cost in a month, an estimate.

Hours come from the hosts' own power record (every boot and shutdown, written by each host to the fleet's power log
group in CloudWatch Logs: roles/orch_autostop), reconciled with EC2's current state: a host running now runs until
now; one EC2 shows stopped whose record ends in a start (a crash, a forced stop) ran until EC2's transition time;
a host with no record at all counts from its launch. Compute is running hours times the hourly price of its type and
plan (the price table: config.prices); storage is its volumes' GB-months, which accrue while it is stopped too.
Every figure says where its hours came from, and the month is set beside what the same fleet would have cost
always on.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import ui
from ..config import Settings, prices
from ..errors import ExitCode, OrchError
from ..transport import aws

MONTH_RE = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
# EC2's StateTransitionReason for a stop: "User initiated (2026-12-01 10:00:00 GMT)"
TRANSITION_RE = re.compile(r"\(([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}) GMT\)")


@dataclass
class HostCost:
    host: str
    instance_id: str
    instance_type: str
    plan: str
    state: str
    running_hours: float
    stopped_hours: float
    volume_gb: int
    compute: float | None  # USD; None when the price table has no price for the type and plan
    storage: float
    always_on: float | None
    hours_from: str  # "power record", "power record, end from EC2", "EC2 launch time (no power record)"


def month_bounds(month: str | None, now: datetime) -> tuple[datetime, datetime, datetime]:
    """(first instant, first instant of the next month, the end counted: next month or now) of MONTH (YYYY-MM)."""
    if month is None:
        month = now.strftime("%Y-%m")
    match = MONTH_RE.fullmatch(month)
    if match is None:
        raise OrchError(f"invalid --month {month!r}", hint="give a month as YYYY-MM, e.g. 2026-12", exit_code=2)
    start = datetime(int(match[1]), int(match[2]), 1, tzinfo=timezone.utc)
    following = (start + timedelta(days=32)).replace(day=1)
    if start > now:
        raise OrchError(f"--month {month} has not begun", hint="give this month or an earlier one", exit_code=2)
    return start, following, min(following, now)


def _transition_time(instance: dict[str, Any]) -> datetime | None:
    match = TRANSITION_RE.search(instance.get("StateTransitionReason") or "")
    return datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc) if match else None


def running_spans(
    events: list[tuple[datetime, str]], instance: dict[str, Any], start: datetime, end: datetime
) -> tuple[list[tuple[datetime, datetime]], str]:
    """The spans in [START, END) when the instance ran, from its power EVENTS ((time, start|stop), in order) and EC2's
    view of it now; and where the hours came from."""
    launched = instance["LaunchTime"]
    state = instance["State"]["Name"]
    stopped_at = _transition_time(instance) if state != "running" else None
    if not events:
        until = end if state == "running" else (stopped_at or launched)
        spans = [(max(launched, start), min(until, end))]
        return [(a, b) for a, b in spans if b > a], "EC2 launch time (no power record)"
    spans, since, source = [], None, "power record"
    for when, event in events:
        if event == "start" and since is None:
            since = when
        elif event == "stop" and since is not None:
            spans.append((since, when))
            since = None
        elif event == "stop" and since is None and not spans:  # ran from before its first record
            spans.append((launched, when))
    if since is not None:  # no stop recorded after the last start
        if state == "running":
            spans.append((since, end))
        else:
            spans.append((since, stopped_at if stopped_at and stopped_at > since else end))
            source = "power record, end from EC2"
    clipped = [(max(a, start), min(b, end)) for a, b in spans]
    return [(a, b) for a, b in clipped if b > a], source


def _hours(spans: list[tuple[datetime, datetime]]) -> float:
    return sum((b - a).total_seconds() for a, b in spans) / 3600


def _power_events(logs: Any, group: str, end: datetime) -> dict[str, list[tuple[datetime, str]]]:
    """Each instance's power events up to END, by instance id (the stream), in order; {} when the group is missing."""
    found: dict[str, list[tuple[datetime, str]]] = {}
    try:
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=group, endTime=int(end.timestamp() * 1000)
        )
        for page in pages:
            for item in page.get("events", []):
                try:
                    event = json.loads(item["message"]).get("event")
                except (ValueError, AttributeError):
                    continue
                if event in ("start", "stop"):
                    when = datetime.fromtimestamp(item["timestamp"] / 1000, tz=timezone.utc)
                    found.setdefault(item["logStreamName"], []).append((when, event))
    except logs.exceptions.ResourceNotFoundException:
        return {}
    for events in found.values():
        events.sort()
    return found


def estimate(settings: Settings, month: str | None, now: datetime | None = None) -> dict[str, Any]:
    with aws.answering("the fleet's instances and power record"):
        return _estimate(settings, month, now or datetime.now(timezone.utc))


def _plan(settings: Settings, instance: dict, table: dict) -> str:
    """Spot when the instance is one; otherwise the configured plan (a reservation is billing, not a property of the
    instance, so the config's `plan = "reserved"` prices its on-demand instances), its orch-plan tag, the table's."""
    tagged = _tag(instance, "orch-plan")
    if tagged == "spot" or instance.get("InstanceLifecycle") == "spot":
        return "spot"
    return settings.plan or tagged or table["plan"]


def _estimate(settings: Settings, month: str | None, now: datetime) -> dict[str, Any]:
    start, following, end = month_bounds(month, now)
    table = prices(settings)
    ec2, logs = aws.client(settings, "ec2"), aws.client(settings, "logs")
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:orch-fleet", "Values": [settings.fleet]}]
    )
    instances = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
    events = _power_events(logs, f"/orch/{settings.fleet}/power", end)
    month_hours = (following - start).total_seconds() / 3600
    rows = []
    for instance in sorted(instances, key=lambda i: _tag(i, "Name") or i["InstanceId"]):
        if instance["LaunchTime"] >= end:
            continue
        spans, source = running_spans(events.get(instance["InstanceId"], []), instance, start, end)
        existed = max(0.0, (end - max(instance["LaunchTime"], start)).total_seconds() / 3600)
        running = _hours(spans)
        plan = _plan(settings, instance, table)
        hourly = table["hourly"].get(instance["InstanceType"], {}).get(plan)
        volume_gb = _volume_gb(ec2, instance)
        storage = volume_gb * table["gp3_gb_month"] * existed / month_hours
        rows.append(
            HostCost(
                host=_tag(instance, "Name") or instance["InstanceId"],
                instance_id=instance["InstanceId"],
                instance_type=instance["InstanceType"],
                plan=plan,
                state=instance["State"]["Name"],
                running_hours=round(running, 3),
                stopped_hours=round(max(0.0, existed - running), 3),
                volume_gb=volume_gb,
                compute=None if hourly is None else round(running * hourly, 2),
                storage=round(storage, 2),
                always_on=None if hourly is None else round(existed * hourly + storage, 2),
                hours_from=source,
            )
        )
    known = [r for r in rows if r.compute is not None]
    total = round(sum(r.compute or 0 for r in rows) + sum(r.storage for r in rows), 2)
    always_on = round(sum(r.always_on or 0 for r in known) + sum(r.storage for r in rows if r.compute is None), 2)
    return {
        "month": start.strftime("%Y-%m"),
        "through": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "estimate": True,
        "prices": table["source"],
        "hosts": [asdict(r) for r in rows],
        "total": total,
        "always_on": always_on,
        "unpriced": sorted({f"{r.instance_type} {r.plan}" for r in rows if r.compute is None}),
    }


def _tag(instance: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == key), None)


def _volume_gb(ec2: Any, instance: dict[str, Any]) -> int:
    ids = [m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", []) if "Ebs" in m]
    if not ids:
        return 0
    return sum(v["Size"] for v in ec2.describe_volumes(VolumeIds=ids)["Volumes"])


def cost(settings: Settings, *, month: str | None, as_json: bool) -> int:
    report = estimate(settings, month)
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return ExitCode.OK
    print(f"orch cost {report['month']} through {report['through']}: an estimate, at {report['prices']}")
    rows = []
    for h in report["hosts"]:
        hours = [f"{h['running_hours']:.1f}h", f"{h['stopped_hours']:.1f}h"]
        money = [_usd(h["compute"]), _usd(h["storage"])]
        rows.append([h["host"], h["instance_type"], h["plan"], h["state"], *hours, *money, h["hours_from"]])
    headers = ["HOST", "TYPE", "PLAN", "STATE", "RUNNING", "STOPPED", "COMPUTE", "STORAGE", "HOURS FROM"]
    sys.stdout.write(ui.columns(headers, rows, right=("RUNNING", "STOPPED", "COMPUTE", "STORAGE")))
    saved = report["always_on"] - report["total"]
    print(
        f"estimate {_usd(report['total'])} for the month so far; always on, the same fleet would have cost "
        f"{_usd(report['always_on'])} ({_usd(saved)} saved)"
    )
    for unpriced in report["unpriced"]:
        ui.warn(f"no price for {unpriced}: its compute is left out (add it to {settings.home / 'prices.json'})")
    return ExitCode.OK


def _usd(value: float | None) -> str:
    return "?" if value is None else f"${value:,.2f}"
