"""Every upstream failure -> its gRPC status; retries; deadlines; requests refused up front."""

import asyncio
import socket
import time

import grpc
import pytest

from imagegen_service.settings import Settings
from scene.imagegen.v1 import imagegen_pb2

PANORAMA = imagegen_pb2.GENERATION_MODE_PANORAMA
Code = grpc.StatusCode


async def fails(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details()


# ---- upstream refusals ---------------------------------------------------------------------


async def test_rejected_key_is_unauthenticated_without_echoing_it(
    imagegen, request_for, fake_openai, api_key
):
    details = await fails(imagegen.GenerateImage(request_for("a cave [fake:401]")),
                          Code.UNAUTHENTICATED)
    assert "rejected the API key" in details
    # The fake, like OpenAI, quoted the key's first 8 and last 4 characters.
    assert api_key[-4:] not in details and api_key[:12] not in details
    assert len(fake_openai.requests()) == 1


async def test_a_key_the_api_does_not_know_is_unauthenticated(imagegen, request_for):
    await fails(imagegen.GenerateImage(request_for(openai_api_key="not-a-real-key-123456")),
                Code.UNAUTHENTICATED)


async def test_content_policy_refusal_is_invalid_argument_with_openais_message(
    imagegen, request_for
):
    details = await fails(imagegen.GenerateImage(request_for("something [fake:policy]")),
                          Code.INVALID_ARGUMENT)
    assert "refused the prompt" in details
    assert "rejected as a result of our safety system" in details


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, Code.INVALID_ARGUMENT), (404, Code.INVALID_ARGUMENT), (422, Code.INVALID_ARGUMENT),
     (403, Code.PERMISSION_DENIED)],
)
async def test_client_errors_are_not_retried(imagegen, request_for, fake_openai, status, code):
    details = await fails(imagegen.GenerateImage(request_for(f"a field [fake:{status}]")), code)
    assert f"HTTP {status}" in details or status == 403
    assert len(fake_openai.requests()) == 1


# ---- retries ---------------------------------------------------------------------------------


async def test_rate_limit_is_retried_then_succeeds(imagegen, request_for, fake_openai):
    response = await imagegen.GenerateImage(request_for("a bridge [fake:429x2]"))
    assert response.width_px == 1792
    assert [r["status"] for r in fake_openai.requests()] == [429, 429, 200]


async def test_persistent_rate_limit_is_resource_exhausted_after_the_retries(
    imagegen, request_for, fake_openai
):
    details = await fails(imagegen.GenerateImage(request_for("a bridge [fake:429]")),
                          Code.RESOURCE_EXHAUSTED)
    assert "Rate limit reached" in details
    assert len(fake_openai.requests()) == 4  # the first attempt and max_retries=3


async def test_exhausted_quota_is_not_retried(imagegen, request_for, fake_openai):
    details = await fails(imagegen.GenerateImage(request_for("a bridge [fake:quota]")),
                          Code.RESOURCE_EXHAUSTED)
    assert "quota" in details
    assert len(fake_openai.requests()) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retried_then_unavailable(
    start_service, request_for, fake_openai, status
):
    imagegen = await start_service(max_retries=2)
    await fails(imagegen.GenerateImage(request_for(f"a dune [fake:{status}]")), Code.UNAVAILABLE)
    assert len(fake_openai.requests()) == 3


async def test_a_server_error_then_success(imagegen, request_for, fake_openai):
    await imagegen.GenerateImage(request_for("a dune [fake:500x1]"))
    assert [r["status"] for r in fake_openai.requests()] == [500, 200]


async def test_retry_after_is_honoured(imagegen, request_for):
    started = time.monotonic()
    await imagegen.GenerateImage(request_for("a quay [fake:429x1] [fake:retry-after=0.3]"))
    assert time.monotonic() - started >= 0.3


async def test_no_retry_is_started_that_cannot_finish_before_the_deadline(
    imagegen, request_for, fake_openai
):
    started = time.monotonic()
    details = await fails(
        imagegen.GenerateImage(request_for("a quay [fake:429] [fake:retry-after=60]")),
        Code.RESOURCE_EXHAUSTED)
    assert time.monotonic() - started < 5
    assert "no time left" in details
    assert len(fake_openai.requests()) == 1


async def test_an_unreachable_api_is_unavailable(start_service, request_for):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    imagegen = await start_service(openai_base_url=f"http://127.0.0.1:{closed_port}/v1",
                                   max_retries=1)
    details = await fails(imagegen.GenerateImage(request_for()), Code.UNAVAILABLE)
    assert "could not reach the image API" in details


# ---- time limits and cancellation ---------------------------------------------------------


async def test_a_slow_api_is_deadline_exceeded_and_not_retried(
    start_service, request_for, fake_openai
):
    imagegen = await start_service(attempt_timeout_s=0.5)
    details = await fails(imagegen.GenerateImage(request_for("a slow tide [fake:slow=3]")),
                          Code.DEADLINE_EXCEEDED)
    assert "did not answer within 0.5s" in details
    assert len(fake_openai.requests()) == 1


async def test_the_service_deadline_bounds_everything(start_service, request_for):
    imagegen = await start_service(deadline_s=0.5, attempt_timeout_s=10)
    started = time.monotonic()
    await fails(imagegen.GenerateImage(request_for("a slow tide [fake:slow=3]")),
                Code.DEADLINE_EXCEEDED)
    assert time.monotonic() - started < 2


async def wait_for(predicate, timeout_s: float = 3.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def test_a_caller_deadline_cancels_the_upstream_request(imagegen, request_for, fake_openai):
    await fails(imagegen.GenerateImage(request_for("a long night [fake:slow=5]"), timeout=0.5),
                Code.DEADLINE_EXCEEDED)
    # The fake notices its client (the service) hang up, long before it would have answered.
    assert await wait_for(lambda: fake_openai.requests()[0]["disconnected"])


async def test_a_cancelled_call_cancels_the_upstream_request(imagegen, request_for, fake_openai):
    call = imagegen.GenerateImage(request_for("a long night [fake:slow=5]"))
    assert await wait_for(lambda: len(fake_openai.requests()) == 1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await wait_for(lambda: fake_openai.requests()[0]["disconnected"])


# ---- unusable answers --------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["garbage", "empty"])
async def test_an_unusable_answer_is_unavailable(imagegen, request_for, tag):
    details = await fails(imagegen.GenerateImage(request_for(f"a hill [fake:{tag}]")),
                          Code.UNAVAILABLE)
    assert "unusable image" in details or "no image" in details


async def test_a_download_over_the_size_limit_is_refused(start_service, request_for):
    imagegen = await start_service(max_download_bytes=10_000)
    details = await fails(imagegen.GenerateImage(request_for("a hill [fake:url]")),
                          Code.UNAVAILABLE)
    assert "over the limit of 10000 bytes" in details


async def test_a_slow_download_is_deadline_exceeded(start_service, request_for, fake_openai):
    imagegen = await start_service(download_timeout_s=0.5)
    await fails(imagegen.GenerateImage(request_for("a hill [fake:url] [fake:download-slow=3]")),
                Code.DEADLINE_EXCEEDED)
    assert await wait_for(lambda: fake_openai.requests(path="")[-1]["disconnected"])


# ---- refused before any upstream call ---------------------------------------------------------


def too_long_prompt() -> str:
    settings = Settings(model="dall-e-3", max_prompt_chars=4000, max_vibe_chars=300)
    return "a" * (settings.prompt_limit + 1)


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({"prompt": ""}, Code.INVALID_ARGUMENT, "prompt is empty"),
        ({"prompt": " \n\t. "}, Code.INVALID_ARGUMENT, "prompt is empty"),
        ({"prompt": too_long_prompt()}, Code.INVALID_ARGUMENT, "characters; at most"),
        ({"vibe": "v" * 301}, Code.INVALID_ARGUMENT, "vibe is 301 characters; at most 300"),
        ({"prompt": "a cat\x00[fake:url]"}, Code.INVALID_ARGUMENT, "control character U+0000"),
        ({"vibe": "calm\x1b[2J"}, Code.INVALID_ARGUMENT, "control character U+001B"),
        ({"mode": 7}, Code.INVALID_ARGUMENT, "unknown generation mode 7"),
        ({"width_px": 1536, "height_px": 1024}, Code.INVALID_ARGUMENT, "1792x1024"),
        ({"width_px": 1792}, Code.INVALID_ARGUMENT, "both"),
        ({"width_px": -2, "height_px": -1}, Code.INVALID_ARGUMENT, "both"),
        ({"mode": PANORAMA, "width_px": 2000, "height_px": 1024}, Code.INVALID_ARGUMENT, "2:1"),
        ({"mode": PANORAMA, "width_px": 128, "height_px": 64}, Code.INVALID_ARGUMENT, "2:1"),
        ({"openai_api_key": ""}, Code.UNAUTHENTICATED, "openai_api_key is required"),
        ({"openai_api_key": "sk-has space"}, Code.UNAUTHENTICATED, "malformed"),
        ({"openai_api_key": "sk-line\nX-Injected: 1"}, Code.UNAUTHENTICATED, "malformed"),
    ],
)
async def test_bad_requests_are_refused_before_any_upstream_call(
    imagegen, request_for, fake_openai, fields, code, message
):
    prompt = fields.pop("prompt", "a meadow")
    details = await fails(imagegen.GenerateImage(request_for(prompt, **fields)), code)
    assert message in details
    assert fake_openai.requests(path="") == []


async def test_the_longest_allowed_prompt_is_accepted(imagegen, request_for, fake_openai):
    prompt = too_long_prompt()[:-1]
    await imagegen.GenerateImage(request_for(prompt))
    sent = fake_openai.requests()[0]["body"]["prompt"]
    assert prompt in sent and len(sent) <= 4000  # dall-e-3's limit, template included
