"""`orch logs --plain`: a terminal's log as text. Escape sequences (colours, cursor moves, titles) are dropped, and
a line a progress bar redrew with CR keeps only what a terminal would finally show on it.

A streaming filter, bytes in and bytes out, holding back only the line being drawn (its final state is known at
its LF), and at most MAX_LINE bytes of it. A few regular expressions, not a terminal emulator library: a log line
needs no screen, only its last overdraw.
"""

from __future__ import annotations

import re

ESCAPES = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erasing
    rb"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window titles, hyperlinks
    rb"|\x1b[P^_][^\x1b]*\x1b\\"  # DCS, PM, APC strings
    rb"|\x1b[ -~]"  # two-byte escapes
    rb"|[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]"  # controls but TAB, LF, CR
)
MAX_LINE = 1 << 20  # a line redrawn for hours without a newline is cut to its last MAX_LINE bytes


def overdraw(line: bytes) -> bytes:
    """What a terminal shows of LINE (no LF in it) after each CR returned to its start."""
    shown = b""
    for part in line.split(b"\r"):
        shown = part + shown[len(part) :]
    return shown


class Plain:
    def __init__(self) -> None:
        self.pending = b""  # the line not ended yet, escapes and all (an escape may be cut between two chunks)

    def feed(self, data: bytes) -> bytes:
        data = self.pending + data
        end = data.rfind(b"\n")
        if end < 0:
            self.pending = data[-MAX_LINE:]
            return b""
        self.pending = data[end + 1 :][-MAX_LINE:]
        return b"".join(overdraw(ESCAPES.sub(b"", line)) + b"\n" for line in data[:end].split(b"\n"))

    def close(self) -> bytes:
        rest, self.pending = self.pending, b""
        return overdraw(ESCAPES.sub(b"", rest)) if rest else b""
