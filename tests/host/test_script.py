"""The host script's command line, parsed by hand (the query path does not pay for argparse)."""

from __future__ import annotations

import pytest
from orch_host import script
from orch_host.contract import JobError


@pytest.mark.parametrize(
    ("argv", "parsed"),
    [
        (["query"], ("query", None, 10)),
        (["query", "a"], ("query", "a", 10)),
        (["follow", "a"], ("follow", "a", 10)),
        (["follow", "a", "--tail", "3"], ("follow", "a", 3)),
        (["follow", "--tail", "0", "a"], ("follow", "a", 0)),
        (["follow", "--", "-rf"], ("follow", "-rf", 10)),
        (["supervise", "a"], ("supervise", "a", 10)),
    ],
    ids=["query-all", "query-one", "follow", "tail", "tail-first", "dash-name", "supervise"],
)
def test_valid_command_lines(argv, parsed):
    assert script.parse(argv) == parsed


@pytest.mark.parametrize(
    "argv",
    [[], ["nope"], ["query", "a", "b"], ["follow"], ["follow", "a", "--tail", "x"], ["supervise"]],
    ids=["empty", "unknown-verb", "two-names", "follow-no-name", "tail-not-a-number", "supervise-no-name"],
)
def test_bad_command_lines_are_one_line_errors_with_the_unknown_job_code(argv, capsys):
    with pytest.raises(JobError):
        script.parse(argv)
    assert script.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("orch: ") and err.count("\n") == 1
