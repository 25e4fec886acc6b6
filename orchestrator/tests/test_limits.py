"""The request limits: the orchestrator's own settings combined with what each service
advertises in GetInfo.limits, learned at start and kept fresh, checked at the front door."""

from __future__ import annotations

import pytest

from orchestrator.limits import Advertised, RequestLimits, pixels_within, tightest
from orchestrator.settings import Settings

MIB = 1024 * 1024


def test_the_tightest_known_limit_wins_and_zero_means_none():
    assert tightest(4000, 3500) == 3500
    assert tightest(4000, 0, None) == 4000
    assert tightest(0, 0) == 0
    assert pixels_within(0, 8) == 0
    assert pixels_within(9 * MIB, 8) == MIB


def test_combined_limits():
    settings = Settings(max_prompt_chars=4000, max_vibe_chars=300, max_image_pixels=16_777_216,
                        max_message_bytes=256 * MIB)
    depth = Advertised(max_image_pixels=16_000_000, max_message_bytes=128 * MIB)
    segment = Advertised(max_image_pixels=16_777_216, max_message_bytes=128 * MIB)
    imagegen = Advertised(max_prompt_chars=3900, max_vibe_chars=0, max_image_pixels=4_000_000)
    limits = RequestLimits.combine(settings, depth, segment, imagegen)
    assert limits.max_prompt_chars == 3900  # imagegen's template needs the rest
    assert limits.max_vibe_chars == 300  # imagegen sets none: the orchestrator's own
    assert limits.max_image_pixels == 16_000_000  # depth's
    assert limits.max_message_bytes == 128 * MIB
    assert limits.max_generated_pixels == 4_000_000
    # Services not heard from: the orchestrator's settings, and its own message size (the depth
    # answer is 8 bytes a pixel) bounds the pixels.
    alone = RequestLimits.combine(Settings(max_message_bytes=128 * MIB), None, None, None)
    assert (alone.max_prompt_chars, alone.max_vibe_chars) == (4000, 300)
    # (the orchestrator's own pixel default is below that bound: 16,000,000, as the services')
    assert alone.max_image_pixels == min(Settings().max_image_pixels, (128 * MIB - MIB) // 8)
    tight = RequestLimits.combine(Settings(max_message_bytes=64 * MIB), None, None, None)
    assert tight.max_image_pixels == (64 * MIB - MIB) // 8


async def test_get_limits_shows_the_effective_limits_and_their_sources(api):
    body = (await api.client.get("/limits")).json()
    assert body["max_prompt_chars"] == 4000 and body["max_vibe_chars"] == 300
    assert body["orchestrator"]["max_image_pixels"] == api.settings.max_image_pixels
    assert body["services"]["imagegen"]["max_vibe_chars"] == 300
    assert body["services"]["depth"]["max_image_pixels"] == api.fakes.depth.limits.max_image_pixels


async def test_the_front_door_follows_a_smaller_advertised_vibe_limit(make_api, fakes):
    fakes.imagegen.limits.max_vibe_chars = 20
    async with make_api() as api:
        assert (await api.client.get("/limits")).json()["max_vibe_chars"] == 20
        ok = await api.submit(vibe="v" * 20)
        assert ok.status_code == 202, ok.text
        refused = await api.submit(vibe="v" * 21)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "vibe"]
        assert "the limit is 20" in refused.json()["detail"][0]["msg"]


async def test_the_front_door_follows_a_smaller_advertised_pixel_limit(make_api, fakes):
    fakes.segment.limits.max_image_pixels = 50 * 40
    async with make_api() as api:
        assert (await api.upload("/jobs", api.png(50, 40))).status_code == 202
        refused = await api.upload("/jobs", api.png(51, 40))
        assert refused.status_code == 413
        assert "over the limit of 2000" in refused.json()["detail"]
    assert len(fakes.segment.calls) <= 1  # the refused one never reached a service


async def test_a_service_down_at_start_is_learned_when_it_comes_back(make_api, fakes):
    fakes.imagegen.limits.max_prompt_chars = 100
    port = fakes.imagegen.port
    await fakes.imagegen.stop()
    async with make_api(limits_refresh_s=0.2) as api:
        # Not heard from: the orchestrator's own setting holds.
        body = (await api.client.get("/limits")).json()
        assert body["services"]["imagegen"] is None and body["max_prompt_chars"] == 4000
        await fakes.imagegen.start(port=port)
        await api.wait_until(lambda: api.runtime.services.limits.max_prompt_chars == 100,
                             timeout_s=10)
        refused = await api.submit("p" * 101)
        assert refused.status_code == 422


async def test_a_restarted_service_with_other_limits_is_followed(make_api, fakes):
    async with make_api(limits_refresh_s=3600) as api:
        assert api.runtime.services.limits.max_vibe_chars == 300
        # The service restarts with a smaller limit; the next failed call triggers a refresh.
        fakes.imagegen.limits.max_vibe_chars = 10
        response = await api.generate(vibe="v" * 50)
        assert response.status_code == 400  # the service refused it (InvalidInput)
        await api.wait_until(lambda: api.runtime.services.limits.max_vibe_chars == 10)
        refused = await api.submit(vibe="v" * 50)
        assert refused.status_code == 422


@pytest.mark.parametrize("field", ["max_prompt_chars", "max_vibe_chars"])
async def test_zero_means_no_limit_of_the_orchestrators_own(make_api, fakes, field):
    setattr(fakes.imagegen.limits, field, 0)
    async with make_api(**{field: 0}) as api:
        text = "w" * 5000
        body = {"prompt": text} if field == "max_prompt_chars" else {"vibe": text}
        assert (await api.submit(**body)).status_code == 202


async def test_a_generated_image_over_what_depth_takes_is_imagegens_fault_not_the_clients(
        make_api, fakes):
    fakes.depth.limits.max_image_pixels = 1000  # the fake imagegen makes 96x64 = 6144 pixels
    async with make_api() as api:
        response = await api.generate("a harbour")
        assert response.status_code == 502, response.text
        assert "imagegen service returned an unusable image" in response.json()["detail"]
        assert api.fakes.depth.calls == []  # refused before depth was asked
