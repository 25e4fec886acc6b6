"""Exceptions with a gRPC meaning. Raised anywhere in a service; turned into a status code in one
place (:class:`scene_rpc.server.ErrorMappingInterceptor`), by kind, as KServe does:

- :class:`InvalidInput` (and subclasses), raised by the checks of what a caller sent ->
  INVALID_ARGUMENT with its message: the caller can fix the request.
- :class:`ModelUnavailable` -> UNAVAILABLE (the load is retried, so trying again may work).
- :class:`ServiceError` -> the code it carries (an upstream API's refusal, say).
- ``TimeoutError`` -> DEADLINE_EXCEEDED.
- anything else, a ``ValueError`` from deep inside numpy included -> INTERNAL with a generic
  message; the traceback goes to the service's log, never to the caller, because an internal
  check's text describes our code, not the request.
"""

from __future__ import annotations

import grpc


class InvalidInput(ValueError):
    """The request cannot be served as sent (bad image, bad field). -> INVALID_ARGUMENT.

    A ValueError subclass so that code catching ValueError around a parser still catches it; the
    reverse does not hold: a plain ValueError is an internal error.
    """


class ImageTooLarge(InvalidInput):
    """An image over the pixel limit. Still INVALID_ARGUMENT over gRPC; an HTTP front end can
    tell it apart to answer 413 rather than 400."""


class ModelUnavailable(RuntimeError):
    """The model could not be loaded; the message carries the reason. -> UNAVAILABLE.

    UNAVAILABLE rather than FAILED_PRECONDITION because the load is retried on a later request,
    so a client may succeed by trying again.
    """


class ServiceError(Exception):
    """An error that already knows its status code (e.g. an upstream API's refusal)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status for an expected exception, or None for one that is a bug (INTERNAL)."""
    if isinstance(exc, ServiceError):
        return exc.code, exc.message
    if isinstance(exc, ModelUnavailable):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, InvalidInput):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc) or "deadline exceeded"
    return None


def internal_message(service: str, error_id: str = "") -> str:
    """What a caller is told about a bug: where to look, nothing about our code."""
    where = f" (error id {error_id})" if error_id else ""
    return f"internal error in {service}; see its log{where}"
