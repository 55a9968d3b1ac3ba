"""`orch wait` across the fleet (issue 12): jobs on two hosts, one ssh channel to each, each host sending its job's
end as it happens; the exit code is the first failure's."""

from __future__ import annotations

from e2e.conftest import orch

from orch_wrapper.cli import main


def test_wait_on_jobs_of_two_hosts_exits_with_the_first_failures_code(env, by_size):
    small, large = by_size[1], by_size[4]
    assert main(["run", "fw-fails", "--host", small, "sleep 1; exit 5"]) == 0
    assert main(["run", "fw-later", "--host", large, "sleep 4; exit 6"]) == 0
    waited = orch("wait", "fw-later", "fw-fails")
    assert waited.returncode == 5, waited  # fw-fails failed first, whatever the order on the command line
    lines = waited.stdout.splitlines()
    assert (
        lines[0].startswith(f"fw-fails: FAILED (exit 5) on {small}")
        and f"fw-later: FAILED (exit 6) on {large}" in lines[1]
    )
