"""orch logs --plain: a terminal's log as text."""

from __future__ import annotations

import pytest

from orch_wrapper.plain import MAX_LINE, Plain


def plain(*chunks: bytes) -> bytes:
    text = Plain()
    return b"".join(text.feed(chunk) for chunk in chunks) + text.close()


@pytest.mark.parametrize(
    ("log", "want"),
    [
        (b"\x1b[1;31mred\x1b[0m text\n", b"red text\n"),
        (b"10%\r50%\r100%\n", b"100%\n"),  # a progress bar: the final state of its line
        (b"loading....\rdone\n", b"doneing....\n"),  # a shorter redraw leaves the rest, as on a terminal
        (b"\x1b]0;title\x07hi\x1b[2K\n", b"hi\n"),  # a window title and an erase
        (b"crlf\r\n", b"crlf\n"),
        (b"tab\there\n", b"tab\there\n"),
        (b"no newline at the end", b"no newline at the end"),
        (b"bell\x07 and nul\x00\n", b"bell and nul\n"),
    ],
    ids=["colour", "progress", "shorter-redraw", "osc", "crlf", "tab", "no-newline", "controls"],
)
def test_plain(log, want):
    assert plain(log) == want


def test_an_escape_cut_between_chunks_is_still_dropped():
    assert plain(b"a\x1b[3", b"1mb\n") == b"ab\n"


def test_byte_by_byte_is_the_same_as_at_once():
    log = b"\x1b[32m[##   ]\r[#### ]\r\x1b[2K[#####] done\x1b[0m\nnext\n"
    assert plain(*[log[i : i + 1] for i in range(len(log))]) == plain(log) == b"[#####] done\nnext\n"


def test_a_line_that_never_ends_is_held_to_its_last_max_line_bytes():
    text = Plain()
    for _ in range(5):
        assert text.feed(b"x" * MAX_LINE) == b""
    assert len(text.pending) == MAX_LINE
