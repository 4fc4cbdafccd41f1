"""One exception class per failure, and the one table from class to HTTP status.

Messages follow TensorFlow Serving's texts where it has one, so clients that
match on them keep working against real TF Serving.
"""

from __future__ import annotations


class ServingError(Exception):
    """A request that cannot be served; the message goes to the client as {"error": ...}."""


class InvalidArgument(ServingError):
    """Malformed JSON, wrong types, unknown signature or input (TF's INVALID_ARGUMENT)."""


class NotFound(ServingError):
    """Unknown model, version or route (TF's NOT_FOUND)."""


class PayloadTooLarge(ServingError):
    """The request body is over the configured limit."""


class RequestTimeout(ServingError):
    """The request body did not arrive within the body timeout (the connection is closed)."""


class ResourceExhausted(ServingError):
    """The batching queue is full (TF's RESOURCE_EXHAUSTED)."""


class Unavailable(ServingError):
    """No version of the model is loaded yet, or the server is shutting down."""


class MethodNotAllowed(ServingError):
    """The route exists but not for this HTTP method; `allow` lists the methods that are."""

    def __init__(self, message: str, allow: str = ""):
        super().__init__(message)
        self.allow = allow


class Internal(ServingError):
    """A real fault in the server or the model."""


STATUS: dict[type[ServingError], int] = {
    InvalidArgument: 400,
    NotFound: 404,
    MethodNotAllowed: 405,
    RequestTimeout: 408,
    PayloadTooLarge: 413,
    ResourceExhausted: 429,
    Unavailable: 503,
    Internal: 500,
}


def status_of(error: ServingError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500
