"""The job-end webhook: when a job ends, its supervisor posts a Slack incoming-webhook message (name, state, exit
code, duration, peak memory, host) to the URL the job's notify parameter holds in SSM Parameter Store.

The URL is fetched on the host when the job starts and lives in the supervisor's memory only: never in job.json,
a log, an error message or anything sent to the laptop. A failed post never changes the job's state: its outcome
is recorded in job.json's `notify` and shown by `orch status NAME`."""

import http.client
import json
import ssl
from urllib.parse import urlsplit

from . import records

TIMEOUT = 10  # seconds for the whole post: a webhook that hangs must not keep the supervisor for long


def duration_text(seconds):
    """12 -> '12s', 3725 -> '1h02m'."""
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _seconds(rec):
    from datetime import datetime

    try:
        start = datetime.fromisoformat(str(rec["started"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(rec["ended"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        return None
    return (end - start).total_seconds()


def message(rec):
    """The Slack incoming-webhook body for the ended job REC: a line of text, and the same facts as fields."""
    seconds = _seconds(rec)
    took = duration_text(seconds) if seconds is not None else "unknown"
    peak = records.size_text(rec["memory_peak"]) if isinstance(rec.get("memory_peak"), int) else "unknown"
    code = rec.get("exit_code") if rec.get("exit_code") is not None else rec.get("signal") or "none"
    facts = {
        "job": rec.get("name"),
        "state": rec.get("state"),
        "exit code": code,
        "duration": took,
        "peak memory": peak,
        "host": rec.get("host"),
    }
    text = f"orch: job {facts['job']} {facts['state']} (exit {code}) on {facts['host']} after {took}, peak {peak}"
    return {
        "text": text,
        "attachments": [{"fields": [{"title": k, "value": str(v), "short": True} for k, v in facts.items()]}],
    }


def post(url, body):
    """POST BODY as JSON to URL; (HTTP status, None) or (None, why), never naming the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None, "the notify parameter does not hold an http(s) URL"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=TIMEOUT, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        conn.request("POST", target, json.dumps(body).encode(), {"Content-Type": "application/json"})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc.strerror or exc}" if isinstance(exc, OSError) else type(exc).__name__
    finally:
        conn.close()
    if 200 <= status < 300:
        return status, None
    return status, f"the webhook answered HTTP {status}"


def send(parameter, url, rec):
    """Post REC's end; the outcome as job.json's `notify`: {parameter, at, status, error}."""
    status, error = post(url, message(rec))
    return {"parameter": parameter, "at": records.now_iso(), "status": status, "error": error}
