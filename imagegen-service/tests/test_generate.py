"""The service driven through its gRPC client against the fake OpenAI server: the happy paths."""

import asyncio
import io

import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from imagegen_service.panorama import seam_mad
from scene.common.v1 import common_pb2
from scene.imagegen.v1 import imagegen_pb2
from scene_dev.fakes.openai_server import scene_png

PANORAMA = imagegen_pb2.GENERATION_MODE_PANORAMA
STANDARD = imagegen_pb2.GENERATION_MODE_STANDARD


def decode(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "RGB"
    return np.asarray(image)


async def test_standard_dalle3_is_a_landscape_png_with_prompt_and_timing(
    imagegen, request_for, fake_openai, api_key
):
    response = await imagegen.GenerateImage(
        request_for("a fishing village at dusk", vibe="dreamy, pastel", request_id="r1"))
    rgb = decode(response.image_png)
    assert rgb.shape == (1024, 1792, 3)
    assert (response.width_px, response.height_px) == (1792, 1024)
    assert response.model_id == "dall-e-3"
    assert response.prompt == "a fishing village at dusk" and response.vibe == "dreamy, pastel"
    assert response.prompt_sent.startswith(
        "a fishing village at dusk. Mood and style: dreamy, pastel.")
    # DALL·E 3 rewrites prompts and says so.
    assert response.revised_prompt == f"A detailed rendering: {response.prompt_sent}"
    assert not response.HasField("seam_mad_before") and not response.HasField("seam_mad_after")
    assert {"upstream_ms", "postprocess_ms", "total_ms"} <= set(response.timing_ms)
    assert response.timing_ms["total_ms"] >= response.timing_ms["upstream_ms"] > 0

    [sent] = fake_openai.requests()
    assert sent["headers"]["authorization"] == f"Bearer {api_key}"
    assert sent["body"] == {"model": "dall-e-3", "prompt": response.prompt_sent, "n": 1,
                            "size": "1792x1024", "response_format": "b64_json"}


async def test_gpt_image_1_gets_its_own_sizes_and_no_response_format(
    start_service, request_for, fake_openai
):
    imagegen = await start_service(model="gpt-image-1", quality="low")
    response = await imagegen.GenerateImage(request_for("a glass greenhouse"))
    assert (response.width_px, response.height_px) == (1536, 1024)
    assert response.model_id == "gpt-image-1"
    assert response.revised_prompt == ""
    [sent] = fake_openai.requests()
    assert sent["body"]["size"] == "1536x1024" and sent["body"]["quality"] == "low"
    assert "response_format" not in sent["body"]


async def test_a_requested_size_is_passed_through(imagegen, request_for, fake_openai):
    response = await imagegen.GenerateImage(
        request_for("a tall waterfall", mode=STANDARD, width_px=1024, height_px=1792))
    assert decode(response.image_png).shape == (1792, 1024, 3)
    assert fake_openai.requests()[0]["body"]["size"] == "1024x1792"


async def test_url_responses_are_downloaded(imagegen, request_for, fake_openai):
    response = await imagegen.GenerateImage(request_for("an old mill [fake:url]"))
    assert decode(response.image_png).shape == (1024, 1792, 3)
    assert response.timing_ms["download_ms"] > 0
    downloads = fake_openai.requests(path="")
    assert [r["method"] for r in downloads] == ["POST", "GET"]
    # The key goes to the API only, never to wherever the image is stored.
    assert "authorization" not in downloads[1]["headers"]


async def test_the_same_prompt_gives_the_same_image(imagegen, request_for):
    first = await imagegen.GenerateImage(request_for("a pier"))
    second = await imagegen.GenerateImage(request_for("a pier"))
    np.testing.assert_array_equal(decode(first.image_png), decode(second.image_png))


async def test_panorama_is_exactly_2_to_1_and_wraps_without_a_seam(
    imagegen, request_for, fake_openai
):
    response = await imagegen.GenerateImage(
        request_for("a mountain lake", vibe="crisp morning", mode=PANORAMA))
    rgb = decode(response.image_png)
    height, width, _ = rgb.shape
    assert width == 2 * height
    assert (width, height) == (response.width_px, response.height_px) == (1728, 864)
    # Asked at the model's widest size, with the equirectangular template.
    [sent] = fake_openai.requests()
    assert sent["body"]["size"] == "1792x1024"
    assert "equirectangular" in sent["body"]["prompt"]
    # The fake's scene does not wrap; the panorama does.
    assert response.seam_mad_before > 20
    assert response.seam_mad_after < 2
    assert response.seam_mad_after == pytest.approx(seam_mad(rgb), abs=1e-3)


async def test_panorama_with_gpt_image_1_crop_and_a_requested_size(
    start_service, request_for, fake_openai
):
    imagegen = await start_service(model="gpt-image-1", panorama_fit="crop")
    natural = await imagegen.GenerateImage(request_for("a forest clearing", mode=PANORAMA))
    assert (natural.width_px, natural.height_px) == (1472, 736)
    sized = await imagegen.GenerateImage(
        request_for("a forest clearing", mode=PANORAMA, width_px=2048, height_px=1024))
    assert decode(sized.image_png).shape == (1024, 2048, 3)
    assert sized.seam_mad_after < 3 < sized.seam_mad_before
    assert {r["body"]["size"] for r in fake_openai.requests()} == {"1536x1024"}


async def test_an_unspecified_mode_is_standard(imagegen, request_for):
    response = await imagegen.GenerateImage(request_for("a barn"))
    assert (response.width_px, response.height_px) == (1792, 1024)


async def test_info_reports_the_model(imagegen):
    info = await imagegen.GetInfo(common_pb2.GetInfoRequest())
    assert info.service == "scene.imagegen.v1.ImageGenService"
    [model] = info.models
    assert (model.role, model.model_id, model.requested_model_id) == (
        "imagegen", "dall-e-3", "dall-e-3")
    assert model.loaded and model.device == "openai-api" and not model.last_error


async def test_health_and_reflection(imagegen):
    health = health_pb2_grpc.HealthStub(imagegen.channel)
    for service in ("", "scene.imagegen.v1.ImageGenService"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(imagegen.channel)

    async def ask():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for answer in reflection.ServerReflectionInfo(ask()):
        names = {s.name for s in answer.list_services_response.service}
        assert "scene.imagegen.v1.ImageGenService" in names
        break


async def test_concurrent_callers_keep_their_own_keys(imagegen, request_for, fake_openai,
                                                      make_api_key):
    keys = [make_api_key() for _ in range(4)]
    await asyncio.gather(*(
        imagegen.GenerateImage(request_for(f"a scene number {i}", openai_api_key=key))
        for i, key in enumerate(keys)
    ))
    seen = {r["body"]["prompt"].split(".")[0]: r["headers"]["authorization"]
            for r in fake_openai.requests()}
    assert seen == {f"a scene number {i}": f"Bearer {key}" for i, key in enumerate(keys)}


async def test_panorama_from_an_image_of_another_size(imagegen, request_for):
    # Some gateways answer with their own size whatever was asked; the panorama still comes out.
    response = await imagegen.GenerateImage(
        request_for("a plaza [fake:size=1024x1024]", mode=PANORAMA))
    assert response.width_px == 2 * response.height_px
    assert response.seam_mad_after < response.seam_mad_before


async def test_a_standard_rgb_png_is_returned_as_the_api_sent_it(imagegen, request_for,
                                                                  fake_openai):
    response = await imagegen.GenerateImage(request_for("a lantern"))
    # The fake's answer is one of its cached scenes; the service passed those bytes through.
    sent = fake_openai.requests()[0]
    assert sent["status"] == 200
    assert any(response.image_png == scene_png(1792, 1024, seed) for seed in range(16))


async def test_an_rgba_answer_is_flattened_to_rgb(imagegen, request_for):
    response = await imagegen.GenerateImage(request_for("a lantern [fake:rgba]"))
    rgb = decode(response.image_png)
    # The transparent corner is flattened on white.
    assert (rgb[:100, :100] == 255).all()
