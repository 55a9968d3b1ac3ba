"""The long fault test (issue 9): many short jobs, a few at a time, with random exit codes, random stops and random
session kills. Every record must end in exactly the terminal state that what was done to it implies, with its own
exit code, and nothing of any run may be left alive."""

from __future__ import annotations

import os
import random
from pathlib import Path

JOBS = 40
AT_ONCE = 5


def processes_of(run_id: str) -> list[int]:
    """Live processes whose environment carries the run's mark, read here independently of orch_host.procs."""
    mark = f"ORCH_RUN_ID={run_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if mark in env.split(b"\0") and stat[stat.rfind(")") + 2] != "Z":
            found.append(int(entry))
    return found


def test_random_codes_stops_and_session_kills_end_in_one_consistent_state(jobhost):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    done = []
    for batch in range(JOBS // AT_ONCE):
        plans = []
        for i in range(AT_ONCE):
            name = f"f{batch}-{i}"
            code = rng.randrange(256)
            action = rng.choice(["exit", "exit", "stop", "kill-session"])
            # a child in the background (some in a session of their own) that would outlive a careless end
            child = rng.choice(["", "sleep 300 & ", "setsid sleep 300 & "])
            wait = f"sleep {rng.uniform(0, 0.3):.2f}" if action == "exit" else "sleep 300"
            job = jobhost.start(name, f"{child}{wait}; exit {code}", grace=rng.choice([0, 1]))
            plans.append((name, code, action, job["run_id"]))
        for name, _code, action, _run in plans:
            if action == "stop":
                assert jobhost.module(name=name, state="stopped", grace=rng.choice([0, 1]))["changed"], name
            elif action == "kill-session":
                assert jobhost.tmux("kill-session", "-t", f"=orch-{name}").returncode == 0, name
        for name, code, action, run_id in plans:
            rec = jobhost.wait_done(name)
            assert rec["run_id"] == run_id
            want = {
                "exit": ("SUCCEEDED" if code == 0 else "FAILED", code),
                "stop": ("KILLED", None),
                "kill-session": ("LOST", None),
            }[action]
            assert (rec["state"], rec["exit_code"]) == want, (seed, name, action, rec)
            assert rec["ended"] and (rec["signal"] is None) == (action == "exit"), (seed, name, rec)
            done.append((name, run_id))
    # a finished command's leftovers end within its grace (at most 1 s here) plus the SIGKILL wait
    jobhost.wait_until(lambda: not any(processes_of(run_id) for _name, run_id in done), "no process of any run left")
    assert {r["name"] for r in jobhost.query()} == {name for name, _ in done}
    assert not list((jobhost.home / "logs").glob("*/job.json.tmp*"))
