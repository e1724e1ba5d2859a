"""The one exception type that turns into an HTTP error response."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered to the client as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> ApiError:
    """Return a 400 error."""
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    """Return a 404 error."""
    return ApiError(404, message)
