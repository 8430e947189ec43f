"""Errors a user can act on.

Every refusal names the field (argument, column, option) it is about, so the CLI and the Dagster UI can
print one precise line instead of a stack trace.
"""

from __future__ import annotations


class ReportPipelinesError(Exception):
    """Base class of the errors we expect and explain (as opposed to bugs)."""


class InvalidInput(ReportPipelinesError, ValueError):
    """A value given by a user or a file is not acceptable."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class NotFound(ReportPipelinesError, LookupError):
    """A named thing (client, report, ...) does not exist."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class Conflict(ReportPipelinesError):
    """The thing asked for would clash with what already exists (duplicate slug, ...)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
