"""follow's tail: the last N lines, capped in bytes (issue 9, item 5: a long line without a newline made it
quadratic in time and unbounded in memory)."""

from __future__ import annotations

import io

import pytest
from orch_host import follow
from orch_host.follow import TAIL_CAP, tail_lines

FINAL = b"[orch] job exited with code 4 (FAILED)\n"


def test_follow_tail_of_a_long_line_prints_at_most_the_cap_from_the_end(jobhost):
    # 20 MB in one line, no newline: python writes it, so the log's bytes are known exactly.
    jobhost.start("bar", "python3 -c \"import sys; sys.stdout.write('x' * 20_000_000 + 'END'); sys.exit(4)\"")
    jobhost.wait_done("bar")
    log = (jobhost.home / "logs" / "bar" / "run.log").read_bytes()
    assert len(log) > 20_000_000 and log.endswith(b"END\n" + FINAL)  # the end line on a line of its own
    res = jobhost.script("follow", "bar", "--tail", "10")
    assert res.returncode == 4, res.stderr
    assert 0 < len(res.stdout) <= TAIL_CAP  # the job had ended: the end line is in the log, inside the tail
    assert log.endswith(res.stdout)


def test_follow_tail_of_many_short_lines_is_exactly_the_last_lines(jobhost):
    jobhost.start("short", "seq 1 200000")
    jobhost.wait_done("short")
    res = jobhost.script("follow", "short", "--tail", "5")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"199997\n199998\n199999\n200000\n[orch] job exited with code 0 (SUCCEEDED)\n"


@pytest.mark.parametrize(
    ("content", "count", "want"),
    [
        (b"", 3, b""),
        (b"a\nb\n", 3, b"a\nb\n"),  # fewer lines than asked
        (b"a\nb\nc\n", 3, b"a\nb\nc\n"),  # exactly as many
        (b"a\nb\nc\nd\n", 3, b"b\nc\nd\n"),
        (b"a\nb\nc\nd", 2, b"c\nd"),  # ends without a newline: the partial line is the last one
        (b"a\nb\nc\nd", 1, b"d"),
        (b"a\n\n\nb\n", 2, b"\nb\n"),  # empty lines count
        (b"a\nb\n", 0, b""),
    ],
    ids=["empty", "fewer", "exact", "more", "no-newline", "no-newline-one", "empty-lines", "zero"],
)
def test_tail_lines(content, count, want):
    data, size = tail_lines(io.BytesIO(content), count)
    assert (data, size) == (want, len(content))


def test_tail_lines_count_zero_reads_nothing():
    f = io.BytesIO(b"x" * (3 * TAIL_CAP))
    assert tail_lines(f, 0) == (b"", 3 * TAIL_CAP)


def test_tail_lines_stops_at_the_cap_on_a_long_line():
    noise = bytes(b for b in range(256) if b != 10)  # every byte but b"\n": one line, progress-bar b"\r"s and all
    content = b"head\n" + noise * (3 * TAIL_CAP // len(noise)) + b"\r" * 10 + b"tail"
    data, size = tail_lines(io.BytesIO(content), 10)
    assert size == len(content)
    assert data == content[-TAIL_CAP:]  # the output starts at the cap boundary, mid-line


def test_tail_lines_cap_cuts_many_lines_too():
    lines = [b"%07d\n" % i for i in range(TAIL_CAP // 4)]  # 8 bytes a line: the file is twice the cap
    content = b"".join(lines)
    data, size = tail_lines(io.BytesIO(content), len(lines))
    assert size == len(content) and data == content[-TAIL_CAP:]
    assert data == b"".join(lines[-TAIL_CAP // 8 :])  # the cap falls on a line boundary here


def test_tail_lines_with_a_small_cap():
    assert tail_lines(io.BytesIO(b"abcdef\nghij"), 5, cap=3) == (b"hij", 11)
    assert tail_lines(io.BytesIO(b"ab\ncd\n"), 1, cap=100) == (b"cd\n", 6)


def test_follow_module_names_the_cap():
    assert follow.TAIL_CAP == TAIL_CAP >= 65536
