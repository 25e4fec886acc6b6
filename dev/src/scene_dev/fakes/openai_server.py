"""A fake OpenAI Images API: real HTTP on loopback, real PNG images, OpenAI's error shapes.

Used by the imagegen-service tests, the end-to-end tests and ``make run``'s offline mode. It checks
what the real API checks (the ``Authorization`` header, the model, the size for that model, the
prompt length, the parameters a model accepts) and answers like it, so a client that passes here
sends requests the real API would take.

Run it as a process::

    python -m scene_dev.fakes.openai_server --host 127.0.0.1 --port 0
    # prints: READY http://127.0.0.1:PORT/v1   (the value for OPENAI_BASE_URL)

or in-process with ``serve_in_thread()`` / as a child with ``serve_as_process()``.

Behaviour is chosen per request by tags in the prompt, so that tests can trigger failures through
every layer above (orchestrator -> imagegen-service -> here) with nothing but the prompt text:

==========================  ===================================================================
``[fake:401]``              401 invalid_api_key (the message echoes a masked key, as OpenAI's does)
``[fake:STATUS]``           that HTTP error (400, 403, 404, 429, 500, 502, 503, ...) every time
``[fake:STATUSxN]``         that error for the first N requests with this prompt, then success
``[fake:policy]``           400 content_policy_violation (the safety system refusal)
``[fake:quota]``            429 insufficient_quota (not worth retrying)
``[fake:retry-after=S]``    error responses carry ``Retry-After: S``
``[fake:slow=S]``           answer after S seconds (a client disconnect is noticed and recorded)
``[fake:url]``              answer with a URL to the image (served here) instead of base64
``[fake:download-slow=S]``  that URL answers after S seconds
``[fake:size=WxH]``         return a W x H image whatever size was asked for (like some gateways)
``[fake:garbage]``          base64 of bytes that are not an image
``[fake:rgba]``             an RGBA PNG with a transparent corner (GPT image models can do that)
``[fake:empty]``            a response with no image in ``data``
``[fake:echo-key]``         400 whose message quotes the key, whole and masked (as careless
                            gateways do): for testing that callers never see or log it
==========================  ===================================================================

Keys: a missing ``Authorization`` header or a key not starting with ``sk-`` gets a 401.
Without ``response_format`` DALL·E 3 answers with a URL, as the real API does; GPT image models
always answer base64 and reject ``response_format``.

What it received is listed at ``GET /_fake/requests`` (``FakeOpenAI.requests()``) and cleared with
``DELETE /_fake/requests`` (``FakeOpenAI.reset()``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image


@dataclass(frozen=True)
class FakeModel:
    sizes: tuple[str, ...]
    default_size: str
    max_prompt_chars: int
    accepts_response_format: bool
    qualities: tuple[str, ...]
    revises_prompt: bool


MODELS = {
    "dall-e-3": FakeModel(
        sizes=("1024x1024", "1792x1024", "1024x1792"), default_size="1024x1024",
        max_prompt_chars=4000, accepts_response_format=True, qualities=("standard", "hd"),
        revises_prompt=True,
    ),
    "gpt-image-1": FakeModel(
        sizes=("1024x1024", "1536x1024", "1024x1536", "auto"), default_size="auto",
        max_prompt_chars=32000, accepts_response_format=False,
        qualities=("low", "medium", "high", "auto"), revises_prompt=False,
    ),
}

_TAG = re.compile(r"\[fake:([^\]]+)\]")


@dataclass
class Behaviour:
    status: int | None = None
    #: Fail only this many times per prompt (None: always).
    times: int | None = None
    error_code: str | None = None
    retry_after: str | None = None
    slow_s: float = 0.0
    url: bool = False
    download_slow_s: float = 0.0
    size: str | None = None
    garbage: bool = False
    rgba: bool = False
    empty: bool = False
    echo_key: bool = False


def parse_behaviour(prompt: str) -> Behaviour:
    behaviour = Behaviour()
    for tag in _TAG.findall(prompt):
        name, _, value = tag.partition("=")
        if match := re.fullmatch(r"(\d{3})(?:x(\d+))?", tag):
            behaviour.status = int(match.group(1))
            behaviour.times = int(match.group(2)) if match.group(2) else None
        elif name == "policy":
            behaviour.status, behaviour.error_code = 400, "content_policy_violation"
        elif name == "quota":
            behaviour.status, behaviour.error_code = 429, "insufficient_quota"
        elif name == "retry-after":
            behaviour.retry_after = value
        elif name == "slow":
            behaviour.slow_s = float(value)
        elif name == "url":
            behaviour.url = True
        elif name == "download-slow":
            behaviour.download_slow_s = float(value)
        elif name == "size":
            behaviour.size = value
        elif name == "garbage":
            behaviour.garbage = True
        elif name == "rgba":
            behaviour.rgba = True
        elif name == "empty":
            behaviour.empty = True
        elif name == "echo-key":
            behaviour.status, behaviour.echo_key = 400, True
        else:
            raise ValueError(f"unknown fake tag [fake:{tag}]")
    return behaviour


# ---------------------------------------------------------------------------------------------
# Images: a deterministic outdoor scene, so depth and segmentation downstream get sky, ground,
# a horizon and objects rather than noise.


def render_scene(width: int, height: int, seed: int) -> np.ndarray:
    """uint8 [height, width, 3]: sky, ground with perspective stripes, a few shaded objects.

    The colours drift from left to right and do not wrap, so a panorama made from it has a
    visible seam to remove.
    """
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    horizon = 0.5 + rng.uniform(-0.04, 0.04)
    sky_top = rng.uniform([20, 40, 110], [70, 90, 170]).astype(np.float32)
    sky_low = rng.uniform([150, 170, 200], [220, 220, 250]).astype(np.float32)
    ground_far = rng.uniform([90, 100, 60], [140, 150, 100]).astype(np.float32)
    ground_near = rng.uniform([40, 50, 20], [80, 90, 50]).astype(np.float32)
    drift = np.array([60.0, 20.0, -40.0], dtype=np.float32) * (x - 0.5)

    t_sky = np.clip(y / horizon, 0.0, 1.0)
    sky = sky_top * (1.0 - t_sky) + sky_low * t_sky
    t_ground = np.clip((y - horizon) / (1.0 - horizon), 0.0, 1.0)
    # Stripes that get wider towards the viewer, like furrows seen in perspective.
    stripes = 0.5 + 0.5 * np.sin(np.float32(40.0) / (t_ground + np.float32(0.08)))
    ground = ground_far * (1.0 - t_ground) + ground_near * t_ground + 12.0 * stripes
    image = (np.where(y < horizon, sky, ground) + drift).astype(np.float32)

    for _ in range(int(rng.integers(3, 7))):
        # Objects stand on the ground: nearer (lower) ones are bigger.
        base = rng.uniform(horizon + 0.05, 0.95)
        radius = 0.05 + 0.25 * (base - horizon)
        cx = rng.uniform(0.1, 0.9) * width
        cy = (base - radius) * height
        r = radius * height
        top, bottom = max(0, int(cy - r)), min(height, int(cy + r) + 1)
        left, right = max(0, int(cx - r)), min(width, int(cx + r) + 1)
        yy, xx = np.mgrid[top:bottom, left:right].astype(np.float32)
        dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / r
        inside = dist < 1.0
        colour = rng.uniform(40, 230, size=3).astype(np.float32)
        patch = image[top:bottom, left:right]
        patch[inside] = colour * (1.0 - 0.5 * dist[inside])[:, None]
    return np.clip(image, 0, 255).astype(np.uint8)


#: Distinct scenes per image size; a prompt always gets the same one. Few enough to cache, so
#: that the fake answers in milliseconds and suites that call it often stay fast.
SCENES_PER_SIZE = 16


@functools.lru_cache(maxsize=64)
def scene_png(width: int, height: int, seed: int) -> bytes:
    """``render_scene`` as PNG bytes; cached, since tests repeat the same prompts and sizes."""
    return png_bytes(render_scene(width, height, seed))


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# The app.


def _error(status: int, message: str, *, type_: str = "invalid_request_error",
           code: str | None = None, param: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _masked(key: str) -> str:
    # What OpenAI prints for a rejected key: the first 8 characters, stars, the last 4.
    return key[:8] + "*" * max(4, len(key) - 12) + key[-4:]


_STATUS_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request (forced by the fake server)."),
    401: ("invalid_request_error", "invalid_api_key", None),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Your organization must be verified to use the model."),
    404: ("invalid_request_error", "model_not_found",
          "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded",
          "Rate limit reached for images per minute. Limit: 5/1min. Please try again in 12s."),
}
_SPECIAL_ERRORS = {
    "content_policy_violation": (
        "invalid_request_error",
        "Your request was rejected as a result of our safety system. Your prompt may contain "
        "text that is not allowed by our safety system.",
    ),
    "insufficient_quota": (
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
}


@dataclass
class FakeState:
    requests: list[dict] = field(default_factory=list)
    #: Failures served so far per (tag, prompt), for ``[fake:STATUSxN]``.
    failures: dict[tuple[int, str], int] = field(default_factory=dict)
    #: Images served by URL: name -> (png, delay before answering).
    files: dict[str, tuple[bytes, float]] = field(default_factory=dict)

    def reset(self) -> None:
        self.requests.clear()
        self.failures.clear()
        self.files.clear()


async def _wait_unless_disconnected(request: Request, seconds: float) -> bool:
    """Sleep; True if the client went away meanwhile (a cancelled upstream call)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(min(0.05, left))
    return await request.is_disconnected()


def _validate(body: object, model_name: str | None) -> JSONResponse | FakeModel:
    if not isinstance(body, dict):
        return _error(400, "We could not parse the JSON body of your request.")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return _error(400, "Missing required parameter: 'prompt'.", param="prompt",
                      code="missing_required_parameter")
    model = MODELS.get(model_name or "")
    if model is None:
        return _error(400, f"Invalid model {model_name!r}: the fake serves "
                      f"{', '.join(sorted(MODELS))}.", param="model", code="invalid_value")
    if len(prompt) > model.max_prompt_chars:
        return _error(400, f"Invalid 'prompt': string too long. Expected a string with maximum "
                      f"length {model.max_prompt_chars}, but got a string with length "
                      f"{len(prompt)} instead.", param="prompt", code="string_above_max_length")
    size = body.get("size") or model.default_size
    if size not in model.sizes:
        return _error(400, f"Invalid size '{size}'. Supported sizes are "
                      f"{', '.join(model.sizes)}.", param="size", code="invalid_value")
    if body.get("n", 1) != 1:
        return _error(400, "The fake server (like DALL·E 3) makes one image per request.",
                      param="n", code="invalid_value")
    response_format = body.get("response_format")
    if response_format is not None:
        if not model.accepts_response_format:
            return _error(400, "Unknown parameter: 'response_format'.", param="response_format",
                          code="unknown_parameter")
        if response_format not in ("url", "b64_json"):
            return _error(400, f"Invalid response_format {response_format!r}.",
                          param="response_format", code="invalid_value")
    quality = body.get("quality")
    if quality is not None and quality not in model.qualities:
        return _error(400, f"Invalid quality {quality!r}.", param="quality", code="invalid_value")
    return model


def create_app() -> FastAPI:
    """The fake as an ASGI app; its ``FakeState`` is ``app.state.fake``."""
    app = FastAPI(title="fake OpenAI Images API", docs_url=None, redoc_url=None)
    state = FakeState()
    app.state.fake = state

    @app.post("/v1/images/generations")
    async def generations(request: Request) -> Response:
        record: dict = {
            "path": request.url.path, "method": "POST",
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": None, "status": None, "disconnected": False, "time": time.time(),
        }
        state.requests.append(record)
        response = await _generate(request, record)
        record["status"] = response.status_code
        return response

    async def _generate(request: Request, record: dict) -> Response:
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            return _error(401, "You didn't provide an API key. You need to provide your API key "
                          "in an Authorization header using Bearer auth (i.e. Authorization: "
                          "Bearer YOUR_KEY).")
        key = authorization[7:].strip()
        if not key.startswith("sk-"):
            return _error(401, f"Incorrect API key provided: {_masked(key)}. You can find your "
                          "API key at https://platform.openai.com/account/api-keys.",
                          code="invalid_api_key")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        record["body"] = body
        model = _validate(body, body.get("model") if isinstance(body, dict) else None)
        if isinstance(model, JSONResponse):
            return model
        prompt: str = body["prompt"]
        try:
            behaviour = parse_behaviour(prompt)
        except ValueError as exc:
            return _error(400, str(exc), param="prompt")

        if behaviour.slow_s and await _wait_unless_disconnected(request, behaviour.slow_s):
            record["disconnected"] = True
            return Response(status_code=499)
        if behaviour.status is not None:
            served = state.failures.get((behaviour.status, prompt), 0)
            if behaviour.times is None or served < behaviour.times:
                state.failures[(behaviour.status, prompt)] = served + 1
                return _forced_error(behaviour, key)

        size = behaviour.size or body.get("size") or model.default_size
        if size == "auto":
            size = "1024x1024"
        width, height = (int(n) for n in size.split("x"))
        # One of SCENES_PER_SIZE scenes, chosen by the prompt: deterministic, and cached.
        digest = hashlib.sha256(prompt.encode()).digest()
        png = scene_png(width, height, int.from_bytes(digest[:8], "little") % SCENES_PER_SIZE)
        if behaviour.rgba:
            rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).copy()
            rgba[: height // 4, : width // 4, 3] = 0
            png = png_bytes(rgba)
        if behaviour.garbage:
            png = b"this is not an image " * 8
        item: dict = {}
        if model.revises_prompt:
            item["revised_prompt"] = f"A detailed rendering: {prompt}"
        wants_url = behaviour.url or (
            model.accepts_response_format and body.get("response_format", "url") == "url")
        if wants_url:
            name = f"{uuid.uuid4().hex}.png"
            state.files[name] = (png, behaviour.download_slow_s)
            item["url"] = str(request.base_url) + f"files/{name}"
        else:
            item["b64_json"] = base64.b64encode(png).decode("ascii")
        answer = {"created": int(time.time()), "data": [] if behaviour.empty else [item]}
        if not model.revises_prompt:
            answer.update(size=f"{width}x{height}", output_format="png", quality="medium")
        return JSONResponse(answer)

    def _forced_error(behaviour: Behaviour, key: str) -> JSONResponse:
        headers = {"retry-after": behaviour.retry_after} if behaviour.retry_after else None
        status = behaviour.status or 500
        if behaviour.echo_key:
            return _error(status, f"Key {key} ({_masked(key)}) may not use this endpoint.",
                          headers=headers)
        if behaviour.error_code in _SPECIAL_ERRORS:
            type_, message = _SPECIAL_ERRORS[behaviour.error_code]
            return _error(status, message, type_=type_, code=behaviour.error_code,
                          headers=headers)
        if status == 401:
            return _error(401, f"Incorrect API key provided: {_masked(key)}. You can find your "
                          "API key at https://platform.openai.com/account/api-keys.",
                          code="invalid_api_key", headers=headers)
        if status in _STATUS_ERRORS:
            type_, code, message = _STATUS_ERRORS[status]
            return _error(status, message, type_=type_, code=code, headers=headers)
        return _error(status, "The server had an error while processing your request. Sorry "
                      "about that!", type_="server_error", headers=headers)

    @app.get("/files/{name}")
    async def files(name: str, request: Request) -> Response:
        state.requests.append({"path": request.url.path, "method": "GET",
                               "headers": {k.lower(): v for k, v in request.headers.items()},
                               "body": None, "status": 200, "disconnected": False,
                               "time": time.time()})
        if name not in state.files:
            return Response(status_code=404)
        png, delay = state.files[name]
        if delay and await _wait_unless_disconnected(request, delay):
            state.requests[-1]["disconnected"] = True
            return Response(status_code=499)
        return Response(png, media_type="image/png")

    @app.get("/_fake/requests")
    async def list_requests() -> JSONResponse:
        return JSONResponse(state.requests)

    @app.delete("/_fake/requests")
    async def reset() -> Response:
        state.reset()
        return Response(status_code=204)

    return app


# ---------------------------------------------------------------------------------------------
# Running it.


@dataclass
class FakeOpenAI:
    """A running fake: where it is, and what it received."""

    host: str
    port: int

    @property
    def root_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The value for ``OPENAI_BASE_URL``."""
        return f"{self.root_url}/v1"

    def requests(self, path: str = "/v1/images/generations") -> list[dict]:
        """Requests received at ``path`` (all paths for ""), oldest first."""
        with urllib.request.urlopen(f"{self.root_url}/_fake/requests", timeout=10) as answer:
            received = json.loads(answer.read())
        return [r for r in received if not path or r["path"] == path]

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.root_url}/_fake/requests", method="DELETE")
        with urllib.request.urlopen(request, timeout=10):
            pass


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def _config(app: FastAPI) -> uvicorn.Config:
    # A slow request in flight must not hold up a test session's teardown.
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                          timeout_graceful_shutdown=2)


@contextlib.contextmanager
def serve_in_thread(host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeOpenAI]:
    """The fake in a background thread of this process (its own event loop)."""
    sock = _bind(host, port)
    server = uvicorn.Server(_config(create_app()))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="fake-openai", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake OpenAI server did not start")
        time.sleep(0.01)
    try:
        yield FakeOpenAI(host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def serve_as_process(host: str = "127.0.0.1", port: int = 0,
                     start_timeout_s: float = 30) -> Iterator[FakeOpenAI]:
    """The fake as a child process (``python -m scene_dev.fakes.openai_server``), stopped after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "scene_dev.fakes.openai_server", "--host", host, "--port",
         str(port)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        base_url = _await_ready(process, start_timeout_s)
        bound_port = int(base_url.rsplit(":", 1)[1].split("/", 1)[0])
        yield FakeOpenAI(host, bound_port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _await_ready(process: subprocess.Popen, timeout_s: float) -> str:
    result: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("READY "):
                result.append(line.split()[1])
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not result:
        process.kill()
        raise RuntimeError(f"the fake OpenAI server did not print READY within {timeout_s}s")
    return result[0]


class _AnnouncingServer(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            host = f"[{host}]" if ":" in host else host
            print(f"READY http://{host}:{port}/v1", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    sock = _bind(args.host, args.port)
    _AnnouncingServer(_config(create_app())).run(sockets=[sock])


if __name__ == "__main__":
    main()
