"""scripts/sanity's summary of ansible-test's junit files: verdicts, findings under the project's paths, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SUMMARY = Path(__file__).resolve().parent.parent / "scripts" / "sanity_summary.py"

# The shapes ansible-test 2.19 writes with --junit: a pass, a test with nothing to check, a failure.
PASS = '<testsuites><testsuite><testcase classname="sanity" name="pylint"/></testsuite></testsuites>'
IDLE = (
    '<testsuites><testsuite><testcase classname="sanity" name="shellcheck-python-3.11">'
    "<skipped>No tests applicable.</skipped></testcase></testsuite></testsuites>"
)
FAIL = (
    '<testsuites><testsuite><testcase classname="sanity" name="validate-modules">'
    '<failure message="The test failed with 2 errors:" type="failure">'
    "plugins/modules/orch_job.py:0:0: invalid-documentation: DOCUMENTATION.author: Invalid author\n"
    "plugins/module_utils/orch_host/job.py:3:1: no-assert: raise AssertionError instead of: assert"
    "</failure></testcase></testsuite></testsuites>"
)


def summarize(tmp_path: Path, files: dict[str, str], rc: int) -> subprocess.CompletedProcess:
    for name, xml in files.items():
        (tmp_path / f"ansible-test-sanity-{name}.xml").write_text(xml)
    return subprocess.run(
        [sys.executable, str(SUMMARY), str(tmp_path), str(rc)], capture_output=True, text=True, check=False
    )


def test_all_passed_names_the_tests_with_nothing_to_check(tmp_path):
    out = summarize(tmp_path, {"pylint": PASS, "shellcheck-python-3.11": IDLE}, 0)
    assert out.returncode == 0
    assert "  pass  pylint" in out.stdout
    assert "  n/a   shellcheck (No tests applicable.)" in out.stdout
    assert out.stdout.rstrip().endswith("all 2 tests passed (1 had nothing to check here: shellcheck)")


def test_a_failure_lists_findings_under_the_project_paths_and_fails(tmp_path):
    out = summarize(tmp_path, {"pylint": PASS, "validate-modules": FAIL}, 1)
    assert out.returncode == 1
    assert "  FAIL  validate-modules" in out.stdout
    assert "library/orch_job.py:0:0: invalid-documentation" in out.stdout
    assert "module_utils/orch_host/job.py:3:1: no-assert" in out.stdout
    assert "plugins/" not in out.stdout
    assert out.stdout.rstrip().endswith("1 of 2 tests FAILED: validate-modules")


def test_no_results_is_a_failure_even_when_ansible_test_exited_0(tmp_path):
    assert summarize(tmp_path, {}, 0).returncode == 1
    assert summarize(tmp_path, {}, 3).returncode == 3


def test_a_non_zero_exit_without_a_failed_test_is_kept(tmp_path):
    out = summarize(tmp_path, {"pylint": PASS}, 2)
    assert out.returncode == 2
    assert "exited 2 with no failed test" in out.stdout
