"""``classify``: an HTTP error from the API -> gRPC status, retry or not, Retry-After."""

import grpc
import httpx2
import openai
import pytest

from imagegen_service.upstream import check_api_key, classify
from scene_rpc.errors import ServiceError

KEY = "sk-proj-QwErTyUiOpAsDfGhJkLzXcVbNm"


def api_error(status: int, code: str | None = None, message: str = "nope",
              headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://api.test/v1/images/generations")
    response = httpx2.Response(status, request=request, headers=headers or {})
    body = {"message": message, "type": "x", "param": None, "code": code}
    return openai.APIStatusError(f"Error code: {status}", response=response, body=body)


@pytest.mark.parametrize(
    ("status", "code", "expected", "retryable"),
    [
        (400, "content_policy_violation", grpc.StatusCode.INVALID_ARGUMENT, False),
        (400, "billing_hard_limit_reached", grpc.StatusCode.RESOURCE_EXHAUSTED, False),
        (401, "invalid_api_key", grpc.StatusCode.UNAUTHENTICATED, False),
        (403, None, grpc.StatusCode.PERMISSION_DENIED, False),
        (404, "model_not_found", grpc.StatusCode.INVALID_ARGUMENT, False),
        (429, "rate_limit_exceeded", grpc.StatusCode.RESOURCE_EXHAUSTED, True),
        (429, "insufficient_quota", grpc.StatusCode.RESOURCE_EXHAUSTED, False),
        (500, None, grpc.StatusCode.UNAVAILABLE, True),
        (503, None, grpc.StatusCode.UNAVAILABLE, True),
    ],
)
def test_classify(status, code, expected, retryable):
    failure = classify(api_error(status, code), KEY)
    assert failure.error.code == expected
    assert failure.retryable is retryable


def test_policy_refusal_keeps_openais_words():
    failure = classify(api_error(400, "content_policy_violation", "rejected by safety"), KEY)
    assert "refused the prompt" in failure.error.message
    assert "rejected by safety" in failure.error.message


def test_the_401_message_is_ours_and_other_messages_are_redacted():
    echo = f"Incorrect API key provided: {KEY[:8]}****{KEY[-4:]}."
    assert KEY[-4:] not in classify(api_error(401, "invalid_api_key", echo), KEY).error.message
    leaked = classify(api_error(400, None, f"bad key {KEY} here"), KEY).error.message
    assert KEY not in leaked and KEY[-8:] not in leaked


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"retry-after": "3"}, 3.0), ({"retry-after-ms": "250"}, 0.25),
     ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None), ({}, None)],
)
def test_retry_after(headers, seconds):
    assert classify(api_error(429, headers=headers), KEY).retry_after_s == seconds


@pytest.mark.parametrize("key", ["", "sk-a b", "sk-\tx", "sk-ünïcode", "sk-" + "a" * 600])
def test_keys_that_cannot_be_a_header_are_refused(key):
    with pytest.raises(ServiceError) as caught:
        check_api_key(key)
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert not key or key not in caught.value.message


def test_a_plausible_key_passes():
    check_api_key(KEY)
    check_api_key("gw-1234:abcd")  # gateways' keys need not start with sk-
