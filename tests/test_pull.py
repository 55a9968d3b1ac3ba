"""`orch pull`'s paths (issue 12): relative to the job's cwd, never out of it unless absolute and asked for, the log
folder by default. Local only; tests/e2e/test_jobs.py pulls from a sandbox host with rsync."""

from __future__ import annotations

import pytest

from orch_wrapper.commands.pull import remote_paths
from orch_wrapper.errors import ExitCode, OrchError

CWD = "/home/ec2-user/work/lros"


@pytest.mark.parametrize(
    ("paths", "absolute", "expected"),
    [
        ([], False, ["logs/train/"]),
        (["out"], False, [f"{CWD}/out"]),
        (["out/../results/a.csv", "."], False, [f"{CWD}/results/a.csv", CWD]),
        (["/data/shared.bin"], True, ["/data/shared.bin"]),
        (["~/logs/other/run.log"], True, ["./logs/other/run.log"]),
    ],
    ids=["default-log-folder", "relative", "normalised", "absolute-asked", "home-asked"],
)
def test_paths_resolve_under_the_jobs_cwd(paths, absolute, expected):
    assert remote_paths("train", CWD, paths, absolute) == expected


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("..", "leaves job train's cwd"),
        ("../lros-other/secret", "leaves job train's cwd"),
        ("out/../../x", "leaves job train's cwd"),
        ("/etc/passwd", "is not under job train's cwd"),
        ("~/.ssh/id", "is not under job train's cwd"),
        ("a\nb", "invalid path"),
    ],
    ids=["parent", "sibling", "nested-escape", "absolute", "home", "newline"],
)
def test_a_path_out_of_the_cwd_is_refused_unless_absolute_and_asked(path, said):
    with pytest.raises(OrchError) as raised:
        remote_paths("train", CWD, [path], absolute=False)
    assert said in str(raised.value) and raised.value.exit_code == ExitCode.USAGE
