"""The limits the service advertises are the ones it enforces: the largest prompt and vibe it
accepts reach the (fake) API within the model's own limit; one character more is refused."""

from __future__ import annotations

import grpc
import pytest

from scene.common.v1 import common_pb2
from scene.imagegen.v1 import imagegen_pb2

MODES = [imagegen_pb2.GENERATION_MODE_STANDARD, imagegen_pb2.GENERATION_MODE_PANORAMA]


async def limits_of(stub) -> common_pb2.Limits:
    return (await stub.GetInfo(common_pb2.GetInfoRequest())).limits


async def test_info_advertises_the_limits_from_the_settings(start_service):
    stub = await start_service(max_prompt_chars=1500, max_vibe_chars=120,
                               max_image_pixels=2048 * 2048)
    limits = await limits_of(stub)
    assert (limits.max_prompt_chars, limits.max_vibe_chars) == (1500, 120)
    assert limits.max_image_pixels == 2048 * 2048
    assert limits.max_message_bytes > 0


@pytest.mark.parametrize("model", ["dall-e-3", "gpt-image-1"])
@pytest.mark.parametrize("mode", MODES)
async def test_the_largest_accepted_prompt_and_vibe_go_through(
        start_service, request_for, fake_openai, model, mode):
    stub = await start_service(model=model)
    limits = await limits_of(stub)
    assert limits.max_vibe_chars == 300
    # Words, not one long token: the template sees a prompt a person could write.
    prompt = ("a quiet harbour " * 1000)[:limits.max_prompt_chars - 1] + "x"
    vibe = ("misty calm " * 100)[:limits.max_vibe_chars - 1] + "y"
    assert (len(prompt), len(vibe)) == (limits.max_prompt_chars, limits.max_vibe_chars)
    response = await stub.GenerateImage(request_for(prompt, vibe=vibe, mode=mode))
    assert response.width_px > 0
    [sent] = fake_openai.requests()
    assert prompt.strip() in sent["body"]["prompt"] and vibe in sent["body"]["prompt"]

    for fields in ({"prompt": prompt + "x", "vibe": vibe}, {"prompt": prompt, "vibe": vibe + "y"}):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GenerateImage(request_for(fields["prompt"], vibe=fields["vibe"],
                                                 mode=mode))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most" in refused.value.details()
    assert len(fake_openai.requests()) == 1, "a refused request reached the API"
