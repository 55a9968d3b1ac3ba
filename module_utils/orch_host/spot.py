"""Spot interruption (issue 11). EC2 warns a spot instance two minutes before it reclaims it: instance metadata's
spot/instance-action then holds {"action": "stop", "time": "..."} (404 until then). On spot hosts the orch_autostop
role's orch-spot-watch.service polls it every few seconds (`spot watch`); on a notice the host
- refuses new jobs (admission asks interrupting(), under the host's lock, which the notice is recorded under too);
- leaves "spot interruption" as the coming shutdown's reason for the power record (powerlog.py);
- ends every RUNNING and QUEUED job as `orch stop` would, each with its own grace, all at once: they end INTERRUPTED,
  not FAILED, and the exit code the job gave its SIGTERM is kept.
The instance's persistent request stops it rather than terminating it, and starts it again with the same volume
once there is capacity: a new boot, which the notice recorded for the last one does not hold.
"""

import json
import os
import threading
import time

from . import autostop, records
from .contract import ACTIVE_STATES, JobError
from .metadata import read

NOTICE_PATH = "meta-data/spot/instance-action"
POLL_SECONDS = 5  # AWS's advice for the two minutes' notice
STOP_REASON = "spot interruption"


def state_file():
    return records.orch_dir("spot-state.json")


def notice(source):
    """The interruption notice SOURCE's metadata holds (a dict), else None."""
    text = read(source, NOTICE_PATH)
    if not text:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    return found if isinstance(found, dict) else {"action": "unknown", "notice": text[:200]}


def interrupting(facts=None):
    """The notice this boot of the host received (a dict), else None."""
    state = autostop.read_json(state_file())
    if state.get("notice") and state.get("boot") == autostop.boot_key(facts):
        return state["notice"]
    return None


def _end(name, grace, ended):
    from .control import stop_job

    try:
        ended[name] = stop_job({"name": name, "grace": grace}, False, interrupt=True)[1]["state"]
    except JobError as exc:
        ended[name] = f"not ended: {exc}"


def check(source=None):
    """One look at the metadata: on a new notice, refuse jobs and end those that run or wait. Returns what it did:
    {"notice": the notice or None, "interrupted": {job: the state it ended in}}."""
    from .admission import HOST_LOCK
    from .control import NameLock

    source = source or autostop.settings()["metadata"]
    found = notice(source)
    facts = records.HostFacts()
    if found is None:
        if os.path.exists(state_file()):  # withdrawn (the sandbox's tests), or an earlier boot's
            os.unlink(state_file())
        return {"notice": None, "interrupted": {}}
    if interrupting(facts) is not None:
        return {"notice": found, "interrupted": {}}  # this boot's notice is handled already
    records.ensure_dir(records.orch_dir())
    with NameLock(HOST_LOCK):  # a job admitted before this is in the list below; one after it is refused
        state = {"boot": autostop.boot_key(facts), "notice": found, "seen": time.time()}
        records.write_atomic(state_file(), (json.dumps(state) + "\n").encode())
    from .powerlog import leave_reason

    leave_reason(STOP_REASON)
    active = [r for r in records.query_jobs(None)[1] if r.get("state") in ACTIVE_STATES]
    ended = {}
    threads = [threading.Thread(target=_end, args=(r["name"], r.get("grace", 10), ended)) for r in active]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    autostop.log("spot interruption", notice=found, jobs=ended)
    return {"notice": found, "interrupted": ended}


def watch(interval=POLL_SECONDS):
    """Look every INTERVAL seconds, for ever (the watch service). A failed look is logged once, until it changes."""
    said = None
    while True:
        try:
            check()
            said = None
        except Exception as exc:  # noqa: BLE001 - a service that dies would miss the notice: log, look again
            error = f"{type(exc).__name__}: {exc}"
            if error != said:
                autostop.log("spot watch failed", error=error)
                said = error
        time.sleep(interval)
