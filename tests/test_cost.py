"""`orch cost` (issue 11) against moto: instances of a fleet, their power record in CloudWatch Logs as the hosts write
it, EC2's current state; the hours, the compute and storage figures, and the always-on comparison."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from orch_wrapper import cli, config
from orch_wrapper.commands import cost

REGION = "ap-northeast-1"
UTC = timezone.utc


@pytest.fixture
def world(moto, fleet_name, tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "orch"))
    monkeypatch.setenv("ORCH_FLEET", fleet_name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    ec2, logs = session.client("ec2", endpoint_url=moto), session.client("logs", endpoint_url=moto)
    image = ec2.describe_images()["Images"][0]["ImageId"]

    def instance(name: str, plan: str | None = None) -> dict:
        tags = [{"Key": "orch-fleet", "Value": fleet_name}, {"Key": "Name", "Value": name}]
        tags += [{"Key": "orch-plan", "Value": plan}] if plan else []
        made = ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.2xlarge",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 100, "VolumeType": "gp3"}}],
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]  # fmt: skip
        return made

    group = f"/orch/{fleet_name}/power"
    logs.create_log_group(logGroupName=group)

    def power(instance_id: str, *events: tuple[datetime, str]) -> None:
        logs.create_log_stream(logGroupName=group, logStreamName=instance_id)
        logs.put_log_events(
            logGroupName=group,
            logStreamName=instance_id,
            logEvents=[
                {"timestamp": int(when.timestamp() * 1000), "message": json.dumps({"event": event, "reason": "x"})}
                for when, event in events
            ],
        )

    return ec2, instance, power


def launched(ec2, made: dict) -> datetime:
    return ec2.describe_instances(InstanceIds=[made["InstanceId"]])["Reservations"][0]["Instances"][0]["LaunchTime"]


def month_of(when: datetime) -> str:
    return when.strftime("%Y-%m")


def test_running_hours_come_from_the_power_record_and_storage_accrues_while_stopped(world):
    ec2, instance, power = world
    made = instance("c-1")
    base = launched(ec2, made)
    minute = timedelta(minutes=1)  # CloudWatch takes events up to 2 h ahead: the record stays within that
    power(made["InstanceId"], (base + 6 * minute, "start"), (base + 30 * minute, "stop"),
          (base + 42 * minute, "start"), (base + 60 * minute, "stop"))  # fmt: skip
    ec2.stop_instances(InstanceIds=[made["InstanceId"]])
    end = base + 90 * minute
    report = cost.estimate(config.load(), month_of(base), now=end)
    (host,) = report["hosts"]
    assert (host["running_hours"], host["hours_from"], host["plan"]) == (0.7, "power record", "on-demand")
    assert host["compute"] == round(0.7 * 0.33, 2)  # the design document's on-demand price
    assert host["stopped_hours"] == 0.8  # 90 minutes since launch, 42 of them running
    start, following, _end = cost.month_bounds(month_of(base), end)
    month_hours = (following - start).total_seconds() / 3600
    assert host["storage"] == round(100 * 0.096 * 1.5 / month_hours, 2)  # 100 GB gp3, stopped hours too
    assert report["always_on"] == round(1.5 * 0.33 + 100 * 0.096 * 1.5 / month_hours, 2)


def test_a_host_running_now_runs_until_now_and_one_without_a_record_counts_from_its_launch(world):
    ec2, instance, power = world
    busy = instance("c-1", plan="reserved")
    instance("c-2")
    base = launched(ec2, busy)
    power(busy["InstanceId"], (base + timedelta(minutes=30), "start"))
    report = cost.estimate(config.load(), month_of(base), now=base + timedelta(hours=10, minutes=30))
    by_host = {h["host"]: h for h in report["hosts"]}
    assert by_host["c-1"]["running_hours"] == 10.0 and by_host["c-1"]["compute"] == round(10 * 0.21, 2)
    assert by_host["c-2"]["hours_from"] == "EC2 launch time (no power record)"
    assert by_host["c-2"]["running_hours"] == pytest.approx(10.5, abs=0.01)


def instance_now(state: str, launched_at: datetime, reason: str = "") -> dict:
    return {"LaunchTime": launched_at, "State": {"Name": state}, "StateTransitionReason": reason}


MONTH = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def day(d: int, h: int = 0) -> datetime:
    return datetime(2026, 11, d, h, tzinfo=UTC)


@pytest.mark.parametrize(
    ("events", "ec2", "hours", "source"),
    [
        ([(day(2, 9), "start"), (day(2, 21), "stop")], instance_now("stopped", day(1)), 12, "power record"),
        # ran since before the month, stopped on the 3rd: counted from the month's start
        ([(day(1) - timedelta(days=20), "start"), (day(3), "stop")],
         instance_now("stopped", day(1) - timedelta(days=60)), 48, "power record"),
        # a start with no stop, EC2 running: until the end counted (here the month's end)
        ([(day(30, 12), "start")], instance_now("running", day(1)), 12, "power record"),
        # a start with no stop, EC2 stopped: until EC2's own transition time (a crash, a forced stop)
        ([(day(10, 6), "start")], instance_now("stopped", day(1), "User initiated (2026-11-10 10:00:00 GMT)"), 4,
         "power record, end from EC2"),
        # no record: from its launch, until now if running
        ([], instance_now("running", day(29)), 48, "EC2 launch time (no power record)"),
        ([], instance_now("stopped", day(29), "User initiated (2026-11-29 05:00:00 GMT)"), 5,
         "EC2 launch time (no power record)"),
    ],
    ids=["within", "from-before-the-month", "running-to-the-end", "end-from-ec2", "no-record", "no-record-stopped"],
)  # fmt: skip
def test_running_spans_reconcile_the_record_with_ec2(events, ec2, hours, source):
    spans, said = cost.running_spans(events, ec2, *MONTH)
    assert (sum((b - a).total_seconds() for a, b in spans) / 3600, said) == (hours, source)


def test_cost_prints_an_estimate_and_refuses_a_bad_month(world, capsys):
    _ec2, instance, _power = world
    instance("c-1")
    assert cli.main(["cost"]) == 0
    out = capsys.readouterr().out
    assert "an estimate" in out and "always on, the same fleet would have cost" in out and "c-1" in out
    for month in ("2026-13", "26-11", "2999-01"):
        assert cli.main(["cost", "--month", month]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") <= 2 and "Traceback" not in err and "--month" in err


def test_a_price_file_overrides_the_table_and_a_bad_one_is_named(world, capsys, tmp_path):
    _ec2, instance, _power = world
    instance("c-1")
    settings = config.load()
    settings.ensure_home()
    (settings.home / "prices.json").write_text(json.dumps({"hourly": {"t3.2xlarge": {"on-demand": 0.4352}}}))
    assert config.prices(settings)["hourly"]["t3.2xlarge"] == {"on-demand": 0.4352, "reserved": 0.21, "spot": 0.10}
    (settings.home / "prices.json").write_text("{not json")
    assert cli.main(["cost"]) != 0
    err = capsys.readouterr().err
    assert "prices.json" in err and "Traceback" not in err


def test_the_configured_plan_prices_on_demand_instances_and_never_a_spot_one(world, monkeypatch):
    _ec2, instance, _power = world
    instance("c-1", plan="on-demand")
    instance("c-2", plan="spot")
    settings = config.load()
    settings.ensure_home()
    (settings.home / "config.toml").write_text('plan = "reserved"\n')
    rows = {r["host"]: r["plan"] for r in cost.estimate(config.load(), None)["hosts"]}
    assert rows == {"c-1": "reserved", "c-2": "spot"}  # a reservation is billing; spot is the instance itself


def test_the_month_bounds():
    now = datetime(2026, 12, 2, 5, tzinfo=UTC)
    assert cost.month_bounds(None, now) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), now)
    start, following, end = cost.month_bounds("2026-02", now)
    assert (start.day, following.month, end) == (1, 3, following)
    assert timedelta(days=28) == following - start


def test_cost_without_credentials_or_endpoint_says_so_in_one_line(world, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    assert cli.main(["cost"]) == 4
    err = capsys.readouterr().err
    assert "orch: cannot reach the AWS endpoint" in err and "Traceback" not in err
