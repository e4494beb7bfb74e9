"""Errors of the inference engine that the HTTP service answers with their own status codes, and the
one table of those codes that the service (backend/server.py) and its client (remote.py) both read."""

from __future__ import annotations

from backend.errors import NotFoundError, UserError

# The environment variable holding the service's bearer token, read by the service and by the UI's client.
BACKEND_TOKEN_ENV = "BACKEND_TOKEN"


class InferenceBusyError(UserError):
    """The model stayed busy with other requests for the whole time this one may wait."""


class InferenceTimeoutError(UserError):
    """The request ran past its time limit and was stopped."""


# Every other UserError is a 400; the client turns any other 4xx back into a plain UserError.
_STATUS_BY_ERROR: dict[type[UserError], int] = {InferenceBusyError: 503, InferenceTimeoutError: 504, NotFoundError: 404}
_ERROR_BY_STATUS: dict[int, type[UserError]] = {status: error for error, status in _STATUS_BY_ERROR.items()}


def status_for(error: UserError) -> int:
    """The HTTP status the service answers `error` with (its own class or the nearest base in the table)."""
    for cls in type(error).__mro__:
        if cls in _STATUS_BY_ERROR:
            return _STATUS_BY_ERROR[cls]
    return 400


def error_for(status: int) -> type[UserError] | None:
    """The UserError class the client raises for an HTTP status: None for a failure of the service itself."""
    if status in _ERROR_BY_STATUS:
        return _ERROR_BY_STATUS[status]
    return UserError if 400 <= status < 500 else None
