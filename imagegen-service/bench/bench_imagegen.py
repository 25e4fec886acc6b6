"""imagegen-service benchmark: what the service adds on top of the API call, and what the
panorama finishing costs and buys. Every figure is compared with a baseline measured in this run.

1. Service overhead: GenerateImage through gRPC against the fake OpenAI server (a separate
   process, so that it does not share this process's CPU), against the baseline of calling the
   same fake directly with the openai SDK and decoding the base64 (what any client must do).
   The real API takes 5-30 s per image, so an overhead of tens of milliseconds is what matters.
2. Finishing, per image at DALL·E 3's widest size, against the baseline of decoding and
   re-encoding the PNG: the standard path returns the API's PNG as it came after an integrity
   check; the panorama path decodes, cross-fades the wrap, makes it 2:1 and encodes.
3. Seam quality: the wrap seam (mean absolute difference of the first and last columns, 0..255)
   before and after, on the fake's scenes and on real photographs when ../shared is present.

Run from the repository root: ``python imagegen-service/bench/bench_imagegen.py``.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import time
from pathlib import Path

import grpc
import numpy as np
import openai
from PIL import Image

from imagegen_service.generator import intact_rgb_png_size
from imagegen_service.panorama import make_panorama, seam_mad
from imagegen_service.server import build
from imagegen_service.settings import Settings
from scene.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc
from scene_dev.fakes.openai_server import render_scene, serve_as_process
from scene_rpc import server as rpc_server
from scene_rpc.images import decode_image_bytes, encode_png

REPO_ROOT = Path(__file__).resolve().parents[2]

KEY = "sk-bench-" + "x" * 40
ROUNDS = 15


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def interleaved(calls: dict, rounds: int = ROUNDS) -> dict[str, list[float]]:
    """Time each call once per round, in turn, so that a change in machine load hits all alike."""
    for call in calls.values():
        await call()  # warm-up: connections, caches, lazy imports
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            await call()
            samples[name].append(time.perf_counter() - started)
    return samples


async def bench_overhead(base_url: str) -> None:
    # The fake caches one scene per prompt; the same prompt in both arms keeps upstream work equal.
    prompt = "a harbour at dusk. Mood and style: calm."

    async def direct() -> None:
        async with openai.AsyncOpenAI(api_key=KEY, base_url=base_url, max_retries=0) as client:
            answer = await client.images.generate(model="dall-e-3", prompt=prompt, n=1,
                                                  size="1792x1024", response_format="b64_json")
        base64.b64decode(answer.data[0].b64_json)

    settings = Settings(host="127.0.0.1", port=0, model="dall-e-3", openai_base_url=base_url)
    service = build(settings, 1)
    port = await service.start()
    await service.info.models[0].load()
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            options=rpc_server.message_size_options(rpc_server.DEFAULT_MAX_MESSAGE_BYTES),
        ) as channel:
            stub = imagegen_pb2_grpc.ImageGenServiceStub(channel)

            def via_service(mode: int):
                async def call() -> None:
                    await stub.GenerateImage(imagegen_pb2.GenerateImageRequest(
                        prompt="a harbour at dusk", vibe="calm", mode=mode, openai_api_key=KEY))
                return call

            samples = await interleaved({
                "baseline": direct,
                "standard": via_service(imagegen_pb2.GENERATION_MODE_STANDARD),
                "panorama": via_service(imagegen_pb2.GENERATION_MODE_PANORAMA),
            })
    finally:
        await service.stop(0)

    base = median_ms(samples["baseline"])
    print(f"1. Service overhead per image (median of {ROUNDS}, 1792x1024, fake API in a process)")
    print(f"   baseline: SDK call + base64 decode       {base:8.1f} ms   1.00x")
    for name in ("standard", "panorama"):
        ms = median_ms(samples[name])
        print(f"   GenerateImage via gRPC, {name:9s}       {ms:8.1f} ms   {ms / base:.2f}x"
              f"   (+{ms - base:.0f} ms; the real API takes 5000-30000 ms)")

    started = time.perf_counter()
    for _ in range(20):
        openai.AsyncOpenAI(api_key=KEY, base_url=base_url, max_retries=0)
    per_client = (time.perf_counter() - started) / 20 * 1000
    print(f"   (both arms make a fresh SDK client per request, as the service must so that no "
          f"key-bearing client is reused: {per_client:.1f} ms each)")


def bench_finishing() -> None:
    rgb = render_scene(1792, 1024, seed=1)
    png = encode_png(rgb)
    limit = 1 << 25

    def reencode() -> None:
        encode_png(decode_image_bytes(png, max_pixels=limit))

    def standard() -> None:
        assert intact_rgb_png_size(png, limit) is not None

    def panorama() -> None:
        encode_png(make_panorama(decode_image_bytes(png, max_pixels=limit), band_px=64,
                                 fit="resize"))

    def crossfade_only() -> None:
        make_panorama(rgb, band_px=64, fit="crop")

    fns = {"reencode": reencode, "standard": standard, "panorama": panorama,
           "crossfade": crossfade_only}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(ROUNDS):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - started)
    ms = {name: median_ms(times) for name, times in samples.items()}
    base = ms["reencode"]
    print(f"\n2. Finishing one 1792x1024 image (median of {ROUNDS}, this process, one core)")
    rows = [
        ("baseline: decode + re-encode the PNG", "reencode"),
        ("standard: intact-PNG check, bytes as sent", "standard"),
        ("panorama: decode, cross-fade, 2:1, encode", "panorama"),
        ("  of which cross-fade + crop (no PNG coding)", "crossfade"),
    ]
    for label, name in rows:
        print(f"   {label:45s} {ms[name]:7.1f} ms   {ms[name] / base:5.2f}x")


def bench_seams() -> None:
    print("\n3. Wrap seam, mean |first column - last column| (0..255), 64 px band")
    print(f"   {'image':34s} {'before':>7s} {'after':>7s}  {'after/before':>12s}")
    rows = [(f"fake scene {seed} (1792x1024)", render_scene(1792, 1024, seed)) for seed in range(3)]
    photos = REPO_ROOT.parent / "shared" / "images"
    if photos.is_dir():
        for path in sorted(photos.iterdir()):
            if path.suffix.lower() in (".png", ".jpg"):
                rows.append((f"photo {path.stem}", np.asarray(Image.open(path).convert("RGB"))))
    else:
        print(f"   ({photos} not found: real photographs skipped)")
    for name, rgb in rows:
        before = seam_mad(rgb)
        after = seam_mad(make_panorama(rgb, band_px=64, fit="resize"))
        print(f"   {name:34s} {before:7.2f} {after:7.2f}  {after / max(before, 1e-9):12.3f}")
    print("   (after = the difference of two neighbouring columns of the original: no seam left)")


def main() -> None:
    print("imagegen-service benchmark\n")
    with serve_as_process() as fake:
        asyncio.run(bench_overhead(fake.base_url))
    bench_finishing()
    bench_seams()


if __name__ == "__main__":
    main()
