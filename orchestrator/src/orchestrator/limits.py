"""A request body limit that answers like every other error: JSON with a ``detail``.

Starlette's own body limit answers in plain text whenever Content-Length is over it, whatever
the route would have said, so the API uses this one instead.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.errors import ApiError


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.detail = (f"the request body is over the limit of {max_body_bytes} bytes (an "
                       f"uploaded image may have at most {max_upload_bytes} bytes)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            # Refused before a byte of it is read.
            await JSONResponse({"detail": self.detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Raised inside the route that reads the body: the API's handler answers.
                    raise ApiError(413, self.detail)
            return message

        await self.app(scope, limited_receive, send)
