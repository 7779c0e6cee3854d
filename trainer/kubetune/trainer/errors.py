"""Error classes that decide the trainer's exit code and termination-message reason.

A ``UserError`` means the run cannot succeed until someone changes the spec or the data
(exit ``EXIT_USER_ERROR``, never retried); everything else is an infrastructure error that
the Job may retry. ``__main__`` is the only place that maps these to exit codes.
"""

from __future__ import annotations

from kubetune.api import contract


class UserError(Exception):
    """Bad config, data or model: retrying will not help, the message says what to change."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class InvalidConfigError(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(contract.REASON_INVALID_CONFIG, message)


class InvalidDatasetError(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(contract.REASON_INVALID_DATASET, message)


class InvalidModelError(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(contract.REASON_INVALID_MODEL, message)


class InfraError(Exception):
    """A failure of the platform (storage, network, device) that a retry may cure."""
