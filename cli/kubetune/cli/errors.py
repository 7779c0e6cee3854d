"""Exit codes and the one error type commands raise for everything a user can fix."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
"""What was checked or watched failed: the dataset has problems, the run failed."""
EXIT_ERROR = 2
"""The command could not do its job: bad usage, unknown name, unreachable cluster or store."""
EXIT_TIMEOUT = 3
"""``watch --timeout`` ran out before the run finished."""
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A one-line message for the user (never a traceback), and the exit code."""

    def __init__(self, message: str, *, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
