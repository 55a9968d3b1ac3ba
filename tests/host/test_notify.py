"""The job-end webhook (issue 12): the host fetches the URL from SSM when the job starts and, when the job ends,
posts a Slack incoming-webhook message to it; a webhook that is down leaves the job's state as it was and says so in
the record. The webhook here is an HTTP server on 127.0.0.1; SSM is moto."""

from __future__ import annotations

import json
import socket

import boto3
import pytest
from _webhook import webhook_server
from orch_host import notify


@pytest.fixture
def webhook():
    with webhook_server("/services/T000/B000/secret-path") as hook:
        yield hook


def store(moto_ssm, name: str, url: str) -> None:
    ssm = boto3.client("ssm", endpoint_url=moto_ssm["AWS_ENDPOINT_URL"], region_name=moto_ssm["AWS_REGION"],
                       aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    ssm.put_parameter(Name=name, Value=url, Type="SecureString", Overwrite=True)


def posted(jobhost, name: str) -> dict:
    """The job's record once the supervisor has recorded how the post went."""
    return jobhost.wait_until(lambda: (jobhost.record(name).get("notify") or {}).get("at") and jobhost.record(name),
                              f"{name}'s notify outcome")  # fmt: skip


def test_a_job_end_posts_name_state_code_duration_peak_and_host(jobhost, moto_ssm, webhook):
    url, bodies = webhook
    store(moto_ssm, "/orch/test/notify/slack", url)
    result = jobhost.module(name="told", state="started", command="sleep 1; exit 3",
                            notify="/orch/test/notify/slack", proc_env=moto_ssm)  # fmt: skip
    assert not result.get("failed"), result
    rec = posted(jobhost, "told")
    assert rec["state"] == "FAILED" and rec["exit_code"] == 3
    assert rec["notify"]["parameter"] == "/orch/test/notify/slack" and rec["notify"]["status"] == 200
    assert rec["notify"]["error"] is None
    (body,) = bodies
    fields = {f["title"]: f["value"] for f in body["attachments"][0]["fields"]}
    assert fields["job"] == "told" and fields["state"] == "FAILED" and fields["exit code"] == "3"
    assert fields["host"] == socket.gethostname() and fields["duration"].endswith("s")
    assert fields["peak memory"] != "" and "told FAILED (exit 3)" in body["text"]
    for path in (jobhost.logs / "told" / "job.json", jobhost.logs / "told" / "run.log"):
        assert "secret-path" not in path.read_text()  # the URL lives in the supervisor's memory only


def test_a_webhook_that_is_down_leaves_the_state_and_says_why(jobhost, moto_ssm):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store(moto_ssm, "/orch/test/notify/down", f"http://127.0.0.1:{port}/hook")
    result = jobhost.module(name="unheard", state="started", command="true",
                            notify="/orch/test/notify/down", proc_env=moto_ssm)  # fmt: skip
    assert not result.get("failed"), result
    rec = posted(jobhost, "unheard")
    assert rec["state"] == "SUCCEEDED" and rec["exit_code"] == 0  # as it ended, whatever the webhook did
    assert rec["notify"]["status"] is None and "ConnectionRefusedError" in rec["notify"]["error"]
    assert str(port) not in json.dumps(rec)


def test_a_notify_parameter_that_does_not_exist_refuses_the_run(jobhost, moto_ssm):
    result = jobhost.module(name="nobody", state="started", command="true",
                            notify="/orch/test/notify/missing", proc_env=moto_ssm)  # fmt: skip
    assert result.get("failed") is True
    assert "cannot read the notify webhook URL from SSM parameter /orch/test/notify/missing" in result["msg"]
    assert not (jobhost.logs / "nobody" / "job.json").exists()


def test_durations_read_as_a_person_says_them():
    assert [notify.duration_text(s) for s in (0, 12, 75, 3725, 90000)] == ["0s", "12s", "1m15s", "1h02m", "25h00m"]
