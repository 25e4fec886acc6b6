"""The fake OpenAI Images server itself (scene_dev.fakes.openai_server): it must check what the
real API checks, or the service's tests would prove less than they claim."""

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from scene_dev.fakes.openai_server import parse_behaviour

KEY = "sk-test-abcdefghijklmnopqrstuvwxyz"


def post(fake, body: dict, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(f"{fake.base_url}/images/generations", json=body, headers=headers,
                      timeout=10)


def error_of(response: httpx.Response) -> dict:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.size


def test_authorization_is_checked(fake_openai):
    body = {"model": "dall-e-3", "prompt": "a cat"}
    missing = post(fake_openai, body, key=None)
    assert missing.status_code == 401
    assert "didn't provide an API key" in error_of(missing)["message"]
    wrong = post(fake_openai, body, key="xx-abcdefghijklmnop")
    error = error_of(wrong)
    assert wrong.status_code == 401 and error["code"] == "invalid_api_key"
    # Masked like OpenAI's: first 8 and last 4 characters.
    assert "xx-abcde****" in error["message"] and "mnop" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "dall-e-3"}, "prompt"),
        ({"model": "dall-e-2", "prompt": "a cat"}, "model"),
        ({"model": "dall-e-3", "prompt": "a cat", "size": "1536x1024"}, "size"),
        ({"model": "gpt-image-1", "prompt": "a cat", "size": "1792x1024"}, "size"),
        ({"model": "dall-e-3", "prompt": "a" * 4001}, "prompt"),
        ({"model": "gpt-image-1", "prompt": "a cat", "response_format": "b64_json"},
         "response_format"),
        ({"model": "dall-e-3", "prompt": "a cat", "n": 2}, "n"),
        ({"model": "dall-e-3", "prompt": "a cat", "quality": "low"}, "quality"),
    ],
)
def test_the_body_is_checked_per_model(fake_openai, body, param):
    response = post(fake_openai, body)
    assert response.status_code == 400
    assert error_of(response)["param"] == param


def test_gpt_image_1_takes_long_prompts(fake_openai):
    response = post(fake_openai, {"model": "gpt-image-1", "prompt": "a" * 5000,
                                  "size": "1024x1024"})
    assert response.status_code == 200


def test_base64_answer_is_a_png_of_the_requested_size(fake_openai):
    body = {"model": "dall-e-3", "prompt": "a cat", "size": "1792x1024",
            "response_format": "b64_json"}
    first = post(fake_openai, body).json()["data"][0]
    assert png_size(base64.b64decode(first["b64_json"])) == (1792, 1024)
    assert first["revised_prompt"].endswith("a cat")
    again = post(fake_openai, body).json()["data"][0]
    assert again["b64_json"] == first["b64_json"]


def test_dalle3_without_response_format_answers_a_url_like_the_real_api(fake_openai):
    answer = post(fake_openai, {"model": "dall-e-3", "prompt": "a cat"}).json()["data"][0]
    image = httpx.get(answer["url"], timeout=10)
    assert image.headers["content-type"] == "image/png"
    assert png_size(image.content) == (1024, 1024)


def test_the_scene_has_sky_ground_and_a_seam(fake_openai):
    answer = post(fake_openai, {"model": "gpt-image-1", "prompt": "a cat",
                                "size": "1536x1024"}).json()
    rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["data"][0]["b64_json"]))))
    sky, ground = rgb[:100].astype(float), rgb[-100:].astype(float)
    assert sky[..., 2].mean() > ground[..., 2].mean()  # blue above, earth below
    assert np.abs(rgb[:, 0].astype(int) - rgb[:, -1].astype(int)).mean() > 10


def test_counted_failures_and_reset(fake_openai):
    body = {"model": "dall-e-3", "prompt": "a cat [fake:503x2]", "response_format": "b64_json"}
    assert [post(fake_openai, body).status_code for _ in range(3)] == [503, 503, 200]
    assert [r["status"] for r in fake_openai.requests()] == [503, 503, 200]
    assert fake_openai.requests()[0]["headers"]["authorization"] == f"Bearer {KEY}"
    fake_openai.reset()
    assert fake_openai.requests() == []
    assert post(fake_openai, body).status_code == 503


def test_retry_after_and_forced_size(fake_openai):
    limited = post(fake_openai, {"model": "dall-e-3",
                                 "prompt": "x [fake:429] [fake:retry-after=7]"})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    resized = post(fake_openai, {"model": "dall-e-3", "prompt": "x [fake:size=640x480]",
                                 "response_format": "b64_json"})
    assert png_size(base64.b64decode(resized.json()["data"][0]["b64_json"])) == (640, 480)


def test_unknown_tags_are_refused(fake_openai):
    response = post(fake_openai, {"model": "dall-e-3", "prompt": "x [fake:explode]"})
    assert response.status_code == 400 and "unknown fake tag" in error_of(response)["message"]
    with pytest.raises(ValueError):
        parse_behaviour("[fake:nope]")


def test_the_fake_runs_as_a_process(fake_openai_process):
    # `python -m scene_dev.fakes.openai_server --port 0` printed READY with its base URL.
    assert fake_openai_process.base_url.startswith("http://127.0.0.1:")
    fake_openai_process.reset()
    response = post(fake_openai_process, {"model": "gpt-image-1", "prompt": "a cat"})
    assert response.status_code == 200
    assert len(fake_openai_process.requests()) == 1
