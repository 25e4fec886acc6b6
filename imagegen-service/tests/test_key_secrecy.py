"""The caller's key is never logged, echoed in an error, or returned: checked at DEBUG level,
across success, every kind of failure and a URL download."""

import logging

import grpc

from scene.imagegen.v1 import imagegen_pb2

LOGGERS = ("", "imagegen_service", "scene_rpc", "openai", "httpx", "httpx2", "httpcore",
           "httpcore2", "grpc", "asyncio", "uvicorn")

PROMPTS = [
    "a calm sea",
    "a calm sea [fake:url]",
    "a calm sea [fake:401]",
    "a calm sea [fake:policy]",
    "a calm sea [fake:429x1]",
    "a calm sea [fake:500]",
    "a calm sea [fake:garbage]",
    "a calm sea [fake:echo-key]",
]


def pieces(key: str) -> list[str]:
    # The key, and the parts of it that OpenAI's masked echo keeps (first 8 after sk-, last 4).
    return [key, key[3:], key[8:20], key[-12:], key[-4:]]


async def test_the_key_appears_nowhere(start_service, request_for, api_key, caplog):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    imagegen = await start_service(max_retries=1)
    said: list[str] = []
    for prompt in PROMPTS:
        try:
            response = await imagegen.GenerateImage(
                request_for(prompt, mode=imagegen_pb2.GENERATION_MODE_PANORAMA))
            said.append(str(response.__class__(**{
                f.name: getattr(response, f.name) for f in response.DESCRIPTOR.fields
                if f.name != "image_png" and f.name != "timing_ms"})))
        except grpc.aio.AioRpcError as error:
            said.append(f"{error.code()} {error.details()} {error.trailing_metadata()}")
    # With a key the fake refuses, the refusal quotes it masked.
    try:
        await imagegen.GenerateImage(request_for(openai_api_key="gw-" + api_key[3:]))
    except grpc.aio.AioRpcError as error:
        said.append(f"{error.code()} {error.details()}")

    logs = caplog.text + "\n".join(
        logging.Formatter().format(record) for record in caplog.records)
    # Proof the capture worked at DEBUG, including the SDK's own logger.
    assert any(r.levelno == logging.DEBUG and r.name.startswith("openai")
               for r in caplog.records)
    assert "retrying" in logs and "UNAUTHENTICATED" in "".join(said)
    for piece in pieces(api_key):
        assert piece not in logs, f"key fragment {piece!r} logged"
        assert piece not in "\n".join(said), f"key fragment {piece!r} returned to the caller"
