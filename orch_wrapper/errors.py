"""The one exception type for expected failures, and orch's named exit codes."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit statuses of the `orch` command (after httpie: one name per kind of failure)."""

    OK = 0
    FAILURE = 1  # a remote operation failed (playbook failed, job refused)
    USAGE = 2  # bad command line or bad input: nothing was done
    NOT_FOUND = 3  # unknown job or host, empty fleet
    UNREACHABLE = 4  # a host or the AWS endpoint could not be reached
    CONFIG = 5  # missing credentials, bad settings, missing local tool
    TIMEOUT = 124  # `orch wait --timeout` ran out with jobs still active (as timeout(1) exits)
    INTERRUPTED = 130  # Ctrl-C


class OrchError(Exception):
    """Every expected failure: `main` prints `orch: MESSAGE (HINT)` on one line and exits with `exit_code`."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = ExitCode.FAILURE):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = int(exit_code)

    def __str__(self) -> str:
        text = f"{self.message} ({self.hint})" if self.hint else self.message
        # One line, whatever the message carries (a remote error may span lines).
        return " ".join(text.split())


def no_credentials() -> OrchError:
    return OrchError(
        "no AWS credentials",
        hint="set AWS_PROFILE or run `aws configure` (or `orch sandbox up`)",
        exit_code=ExitCode.CONFIG,
    )
