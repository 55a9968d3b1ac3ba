"""How the supervisor writes a job's end: on a line of its own, and with the peak memory it sampled, also when its
session goes away."""

from __future__ import annotations

import sys
import time

from orch_host import supervisor


def test_the_end_line_stands_on_its_own_after_an_unfinished_last_line(jobhost):
    jobhost.start("partial", "printf 'no newline'; exit 4")
    assert jobhost.wait_done("partial")["state"] == "FAILED"
    assert jobhost.log("partial").endswith("no newline\n[orch] job exited with code 4 (FAILED)\n")
    jobhost.start("whole", "echo line; exit 0")
    jobhost.wait_done("whole")
    assert jobhost.log("whole").endswith("line\n[orch] job exited with code 0 (SUCCEEDED)\n")  # no blank line


def test_a_job_lost_to_its_session_closing_keeps_the_peak_memory_sampled(jobhost):
    hold = f"{sys.executable} -c \"import time; b = b'x' * (60 << 20); print('ready', flush=True); time.sleep(60)\""
    # The memory is held by a process the job never reaps (the job's own process is `sleep`): only the supervisor's
    # samples see it, not the exit status's resource usage.
    jobhost.start("held", f"{hold} & exec sleep 60")
    jobhost.wait_log("held", "ready")
    time.sleep(supervisor.SAMPLE_EVERY + 0.5)  # one sampling period: the supervisor has measured the held memory
    jobhost.tmux("kill-session", "-t", "=orch-held")
    rec = jobhost.wait_until(lambda: (lambda r: r if r["state"] == "LOST" else None)(jobhost.record("held")), "LOST")
    assert rec["lost_reason"].startswith("the supervisor got SIGHUP")
    assert rec["memory_peak"] >= 50 << 20
