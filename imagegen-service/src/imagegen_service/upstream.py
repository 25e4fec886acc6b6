"""The OpenAI Images API, called with the caller's key: retries, deadline, error mapping, and the
two response shapes (base64 JSON, or a URL to download).

A fresh ``AsyncOpenAI`` client (with its own connection pool and cookie jar) is made for every
request and closed after it, so nothing that carries or was authenticated by one caller's key is
ever reused for another. A TLS handshake per image is nothing next to the seconds the image takes.

The SDK's own retries are off: ours share one total deadline with the gRPC call's, and cancelling
the gRPC call cancels the awaiting task, which closes the upstream HTTP request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import random
import time
import traceback
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import grpc
import httpx
import openai

from imagegen_service.models import ModelProfile, Size
from imagegen_service.redact import redact
from imagegen_service.settings import Settings
from scene_rpc.errors import ServiceError

log = logging.getLogger(__name__)

# Keys travel in an HTTP header: anything but visible ASCII would break the request (or, with a
# newline, smuggle a header), and the transport's error would quote the key.
_MAX_KEY_CHARS = 512
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


@dataclass
class UpstreamImage:
    #: Encoded image bytes as the API sent them (PNG for both supported models).
    data: bytes
    revised_prompt: str
    #: "b64_json" or "url": which response shape carried the image.
    shape: str
    attempts: int
    timing_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Failure:
    error: ServiceError
    retryable: bool
    retry_after_s: float | None = None


def check_api_key(api_key: str) -> None:
    """Refuse a missing or malformed key before any upstream call (UNAUTHENTICATED)."""
    if not api_key:
        raise ServiceError(
            grpc.StatusCode.UNAUTHENTICATED, "openai_api_key is required (the caller's OpenAI key)"
        )
    if len(api_key) > _MAX_KEY_CHARS or not all("!" <= ch <= "~" for ch in api_key):
        raise ServiceError(
            grpc.StatusCode.UNAUTHENTICATED,
            "openai_api_key is malformed (it must be printable ASCII without spaces)",
        )


def _upstream_message(exc: openai.APIStatusError, api_key: str) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message:
        message = f"HTTP {exc.status_code}"
    return redact(message, api_key)


def _retry_after_s(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            # An HTTP date: rare for OpenAI; our own backoff applies instead.
            return None
    return None


def classify(exc: openai.APIStatusError, api_key: str) -> _Failure:
    """An HTTP error from the API -> the gRPC status the caller gets, and whether to retry it."""
    status = exc.status_code
    code = exc.code or ""
    if status == 401:
        # OpenAI's message quotes part of the key; ours says what happened and nothing more.
        detail = f"HTTP 401, {code}" if code else "HTTP 401"
        return _Failure(
            ServiceError(grpc.StatusCode.UNAUTHENTICATED,
                         f"the image API rejected the API key ({detail})"),
            retryable=False,
        )
    message = _upstream_message(exc, api_key)
    if code in _QUOTA_CODES:
        # Billing limits come as 429 or 400; no retry can fix them.
        return _Failure(
            ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"the key's quota or billing limit is exhausted: {message}"),
            retryable=False,
        )
    if status == 429:
        return _Failure(
            ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"the image API's rate limit was hit: {message}"),
            retryable=True,
            retry_after_s=_retry_after_s(exc),
        )
    if status >= 500:
        return _Failure(
            ServiceError(grpc.StatusCode.UNAVAILABLE,
                         f"the image API failed (HTTP {status}): {message}"),
            retryable=True,
            retry_after_s=_retry_after_s(exc),
        )
    if status == 403:
        return _Failure(
            ServiceError(grpc.StatusCode.PERMISSION_DENIED,
                         f"the image API refused this key access: {message}"),
            retryable=False,
        )
    # 400 (including content-policy refusals), 404 (model unknown to this key), 422, ...
    label = "the image API refused the prompt" if "policy" in code or "moderation" in code else (
        "the image API refused the request")
    return _Failure(
        ServiceError(grpc.StatusCode.INVALID_ARGUMENT, f"{label} (HTTP {status}): {message}"),
        retryable=False,
    )


class OpenAIImages:
    """Generates one image through the Images API with the caller's key."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.profile: ModelProfile = settings.profile

    def _client(self, api_key: str) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.settings.openai_base_url,
            max_retries=0,
            timeout=self.settings.attempt_timeout_s,
        )
        # The SDK fills these from the server's environment (OPENAI_ORG_ID, OPENAI_PROJECT_ID):
        # the operator's organisation must not be attached to a caller's key.
        client.organization = None
        client.project = None
        return client

    def _backoff_s(self, attempt: int) -> float:
        ceiling = min(self.settings.backoff_max_s,
                      self.settings.backoff_initial_s * 2 ** (attempt - 1))
        # Jitter spreads out callers that were throttled together.
        return ceiling * random.uniform(0.5, 1.0)

    async def generate(self, *, prompt: str, size: Size, api_key: str,
                       deadline: float) -> UpstreamImage:
        """``deadline`` is a ``time.monotonic()`` instant by which everything must be done."""
        try:
            return await self._generate(prompt, size, api_key, deadline)
        except (ServiceError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise self._unexpected(exc, api_key) from None

    async def _generate(self, prompt: str, size: Size, api_key: str,
                        deadline: float) -> UpstreamImage:
        params: dict[str, object] = {
            "model": self.profile.model_id, "prompt": prompt, "size": str(size), "n": 1,
        }
        if self.profile.accepts_response_format:
            # Inline bytes spare a second round trip (and its expiry) for the download.
            params["response_format"] = "b64_json"
        if self.settings.quality:
            params["quality"] = self.settings.quality
        started = time.perf_counter()
        async with self._client(api_key) as client:
            response, attempts = await self._call_with_retries(client, params, api_key, deadline)
        timing = {"upstream_ms": (time.perf_counter() - started) * 1000}
        item = response.data[0] if response.data else None
        if item is not None and item.b64_json:
            try:
                data = base64.b64decode(item.b64_json, validate=True)
            except (binascii.Error, ValueError):
                raise ServiceError(grpc.StatusCode.UNAVAILABLE,
                                   "the image API returned invalid base64 image data") from None
            shape = "b64_json"
        elif item is not None and item.url:
            download_started = time.perf_counter()
            data = await self._download(item.url, deadline)
            timing["download_ms"] = (time.perf_counter() - download_started) * 1000
            shape = "url"
        else:
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, "the image API returned no image")
        return UpstreamImage(data=data, revised_prompt=item.revised_prompt or "", shape=shape,
                             attempts=attempts, timing_ms=timing)

    async def _call_with_retries(self, client: openai.AsyncOpenAI, params: dict[str, object],
                                 api_key: str, deadline: float):
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                   "the deadline passed before the image API could be called")
            timeout = min(self.settings.attempt_timeout_s, remaining)
            try:
                # asyncio's timeout bounds the whole call; the SDK's bounds each socket phase.
                async with asyncio.timeout(timeout):
                    response = await client.images.generate(**params, timeout=timeout)
                return response, attempt
            except (TimeoutError, openai.APITimeoutError):
                # Not retried: the image may be generated (and billed) after all.
                raise ServiceError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"the image API did not answer within {timeout:.1f}s",
                ) from None
            except openai.APIStatusError as exc:
                failure = classify(exc, api_key)
            except openai.APIConnectionError as exc:
                cause = redact(f"{type(exc.__cause__ or exc).__name__}: {exc.__cause__ or exc}",
                               api_key)
                failure = _Failure(
                    ServiceError(grpc.StatusCode.UNAVAILABLE,
                                 f"could not reach the image API: {cause}"),
                    retryable=True,
                )
            if not failure.retryable or attempt > self.settings.max_retries:
                raise failure.error
            delay = self._backoff_s(attempt)
            if failure.retry_after_s is not None:
                delay = max(delay, failure.retry_after_s)
            if time.monotonic() + delay >= deadline:
                raise ServiceError(
                    failure.error.code,
                    f"{failure.error.message} (no time left to retry within the deadline)",
                )
            log.warning("%s; retrying in %.2fs (attempt %d of %d)", failure.error.message, delay,
                        attempt + 1, self.settings.max_retries + 1)
            await asyncio.sleep(delay)

    async def _download(self, url: str, deadline: float) -> bytes:
        """Fetch an image URL from the API's answer, bounded in size and time."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise ServiceError(grpc.StatusCode.UNAVAILABLE,
                               "the image API returned a URL that is not http(s)")
        limit = self.settings.max_download_bytes
        timeout = min(self.settings.download_timeout_s, deadline - time.monotonic())
        if timeout <= 0:
            raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               "no time left to download the image")
        try:
            async with asyncio.timeout(timeout), httpx.AsyncClient(
                timeout=timeout, follow_redirects=True, max_redirects=3
            ) as http, http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise ServiceError(
                        grpc.StatusCode.UNAVAILABLE,
                        f"downloading the image failed: HTTP {response.status_code}",
                    )
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise self._too_big(limit)
                chunks: list[bytes] = []
                received = 0
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    if received > limit:
                        raise self._too_big(limit)
                    chunks.append(chunk)
                return b"".join(chunks)
        except (TimeoutError, httpx.TimeoutException):
            raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               f"downloading the image took over {timeout:.1f}s") from None
        except httpx.HTTPError as exc:
            # Signed download URLs carry their own credentials: say what failed, not where.
            raise ServiceError(grpc.StatusCode.UNAVAILABLE,
                               f"downloading the image failed: {type(exc).__name__}") from None

    @staticmethod
    def _too_big(limit: int) -> ServiceError:
        return ServiceError(grpc.StatusCode.UNAVAILABLE,
                            f"the image at the API's URL is over the limit of {limit} bytes")

    @staticmethod
    def _unexpected(exc: Exception, api_key: str) -> ServiceError:
        # Logged here, redacted, because the interceptor would log the raw traceback, and
        # exception messages from the transport can quote request headers.
        details = redact("".join(traceback.format_exception(exc)), api_key)
        log.error("unexpected error calling the image API:\n%s", details)
        return ServiceError(grpc.StatusCode.INTERNAL,
                            f"internal error calling the image API: "
                            f"{redact(f'{type(exc).__name__}: {exc}', api_key)}")
