"""Errors with an HTTP meaning, and the one place where gRPC statuses become HTTP statuses.

Every error leaves the API as JSON ``{"detail": ...}`` (see ``app.py``'s exception handlers).
"""

from __future__ import annotations

import logging

import grpc
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# What a client is told of a failure inside the server: the details are in the log, not theirs.
INTERNAL_DETAIL = "internal error"


class ApiError(Exception):
    """An error a client should see as ``status`` with ``detail``."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class QueueFull(ApiError):
    def __init__(self, retry_after_s: int, queued: int):
        super().__init__(
            429,
            f"the generation queue is full ({queued} waiting); retry in about {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )


# What a downstream status means for the client that started the generation. INVALID_ARGUMENT is
# only ever the services' InvalidInput (scene_rpc's interceptor maps anything else to INTERNAL),
# so its text is about the request. Anything else is the service misbehaving: 502, naming it.
_HTTP_FOR_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def from_rpc_error(service: str, address: str, exc: grpc.aio.AioRpcError,
                   deadline_s: float | None = None) -> ApiError:
    """The HTTP error for a failed call to ``service`` (e.g. "depth") at ``address``."""
    code = exc.code()
    details = exc.details() or code.name
    status = _HTTP_FOR_GRPC.get(code, 502)
    if code == grpc.StatusCode.UNAVAILABLE:
        detail = f"the {service} service at {address} is unavailable: {details}"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        limit = f" within {deadline_s:g} s" if deadline_s is not None else ""
        detail = f"the {service} service at {address} did not answer{limit}"
    elif status in (400, 401, 403, 429):
        # The service's own words (e.g. OpenAI's refusal): they are about the client's request.
        detail = details
    else:
        # INTERNAL, UNKNOWN and the rest: the service's own failure, and its words are about its
        # insides (a numpy message, a path), not the request. The client gets the service and
        # the code; the text goes to this log (the service logged its traceback).
        log.warning("the %s service at %s failed: %s: %s", service, address, code.name, details)
        detail = f"the {service} service at {address} failed ({code.name})"
    # A restarting service is usually back within seconds; say so rather than let clients guess.
    headers = {"Retry-After": "10"} if status == 503 else None
    return ApiError(status, detail, headers=headers)


class InternalErrorMiddleware:
    """Answers an unexpected exception as a generic 500 (the traceback goes to the log) without
    letting it reach the server.

    Starlette's own catch-all answers too, but re-raises, and uvicorn then closes the connection:
    the client's next request on it fails as well. This one sits inside the other middlewares,
    so that they (CORS, metrics) still see and decorate the 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                # Half an answer is out (a stream): nothing honest can follow; the server
                # closes the connection.
                raise
            log.error("unhandled error in %s %s", scope.get("method"), scope.get("path"),
                      exc_info=exc)
            await JSONResponse({"detail": INTERNAL_DETAIL}, status_code=500)(scope, receive, send)
