"""Refusals raised by service functions: plain exceptions, no web framework.

A service raises one of these when a request cannot be carried out as asked; the web
layer (``backend.errors``) maps each class to an HTTP status and a JSON body or a page,
the CLI prints the message.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal a user can act on: a stable ``code``, a message and the field at fault."""

    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str]:
        """The error as plain data: ``{"error": code, "message": ..., "field": ...}``."""
        body = {"error": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


class NotFound(ServiceError):
    """The object does not exist, or belongs to another team (never say which)."""

    code = "not_found"


class Conflict(ServiceError):
    """The request clashes with the current state (e.g. resuming a plan that is not on hold)."""

    code = "conflict"


class InvalidInput(ServiceError):
    """A value is well-formed JSON but not acceptable (e.g. an unknown regimen)."""

    code = "invalid"
