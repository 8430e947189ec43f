"""Errors a user can act on.

Every refusal names the field (argument, column, option) it is about, so the CLI and the Dagster UI can
print one precise line instead of a stack trace.
"""

from __future__ import annotations


class ReportPipelinesError(Exception):
    """Base class of the errors we expect and explain (as opposed to bugs)."""


class _FieldError(ReportPipelinesError):
    """An error about one named field; survives pickling (worker processes send them back)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def __reduce__(self):
        return (type(self), (self.field, self.message))


class InvalidInput(_FieldError, ValueError):
    """A value given by a user or a file is not acceptable."""


class NotFound(_FieldError, LookupError):
    """A named thing (client, report, ...) does not exist."""


class Conflict(_FieldError):
    """The thing asked for would clash with what already exists (duplicate slug, ...)."""
