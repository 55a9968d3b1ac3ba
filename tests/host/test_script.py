"""The host script's command line, parsed by hand (the query path does not pay for argparse)."""

from __future__ import annotations

import pytest
from orch_host import script
from orch_host.contract import JobError


@pytest.mark.parametrize(
    ("argv", "parsed"),
    [
        (["query"], ("query", None, 10, None)),
        (["query", "a"], ("query", "a", 10, None)),
        (["follow", "a"], ("follow", "a", 10, None)),
        (["follow", "a", "--tail", "3"], ("follow", "a", 3, None)),
        (["follow", "--tail", "0", "a"], ("follow", "a", 0, None)),
        (["follow", "--", "-rf"], ("follow", "-rf", 10, None)),
        (["supervise", "a", "/home/u/.orch/run/a.spec"], ("supervise", "a", 10, "/home/u/.orch/run/a.spec")),
        (["wait", "a", "b"], ("wait", ["a", "b"], None, None)),
        (["wait", "a", "--timeout", "30"], ("wait", ["a"], 30, None)),
    ],
    ids=["query-all", "query-one", "follow", "tail", "tail-first", "dash-name", "supervise", "wait", "wait-timeout"],
)
def test_valid_command_lines(argv, parsed):
    assert script.parse(argv) == parsed


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["query", "a", "b"],
        ["follow"],
        ["follow", "a", "--tail", "x"],
        ["supervise"],
        ["supervise", "a"],
        ["supervise", "a", "run/a.spec"],
        ["wait"],
        ["wait", "a", "--timeout", "soon"],
    ],
    ids=[
        "empty",
        "unknown-verb",
        "two-names",
        "follow-no-name",
        "tail-not-a-number",
        "supervise-no-name",
        "supervise-no-spec",
        "supervise-relative-spec",
        "wait-no-name",
        "wait-timeout-not-a-number",
    ],
)
def test_bad_command_lines_are_one_line_errors_with_the_unknown_job_code(argv, capsys):
    with pytest.raises(JobError):
        script.parse(argv)
    assert script.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("orch: ") and err.count("\n") == 1


def test_supervise_takes_only_the_named_jobs_spec_and_leaves_any_other_file(tmp_path, capsys):
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    assert script.main(["supervise", "a", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("orch: ") and "is not a job spec of a" in err and err.count("\n") == 1
    assert other.read_text() == "mine"  # the supervisor unlinks its spec once read: never another file
