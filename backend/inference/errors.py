"""Errors of the inference engine that the HTTP service answers with their own status codes."""

from __future__ import annotations

from backend.errors import UserError


class InferenceBusyError(UserError):
    """The model stayed busy with other requests for the whole time this one may wait."""


class InferenceTimeoutError(UserError):
    """The request ran past its time limit and was stopped."""
