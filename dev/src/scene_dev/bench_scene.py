"""Time to a scene, upload -> cloud, through the real services as processes.

The stack is the one ``make run`` starts (``scene_dev.run_plan``'s process plan), run with each
profile's models as full-size random-weight architectures (speed does not depend on weights;
built once into ``--cache`` by ``scene_dev.full_size_models``). For a 1 MP photo and a 2048x1024
panorama, per profile and per quality, it reports the wall time, every stage (the orchestrator's
timing and the services' own), and the resident memory of each service; then ratios measured in
the same run: fast vs quality (or the slowest profile run), draft vs standard, and the speed
settings toggled on the same service (SAM2 prompts on a uniform grid vs placed from the semantic
map; depth without vs with an input cap).

    python scripts/bench_scene.py --quick                 # fast profile, 1 MP, standard + draft
    python scripts/bench_scene.py --profiles fast,balanced --json bench-results/scene.json
    python scripts/bench_scene.py --profiles quality --device cuda      # on a GPU box
    python scripts/bench_scene.py --threads-study         # depth || segment vs each alone
    python scripts/bench_scene.py --profiles quality --qualities standard --no-panorama --before
                                  # the quality profile before / after the speed work

``--quick`` starts from an empty compiled-graph cache (``--first-scene``) and prints exactly one
JSON line last: ``{"profile": "fast", "image_mp": ..., "standard_s": ..., "draft_s": ...,
"first_standard_s": ..., "prepared_s": ..., "peak_rss_mb": {<service>: ..., "total": ...},
"first_start_peak_rss_mb": {...}}``
(``first_standard_s``: the first standard scene after the fresh start, before any warm-up;
``prepared_s``: from the start until every model was loaded and its graphs prepared;
``peak_rss_mb``: a restart's, which finds the graphs on the disk, over the timed scenes;
``first_start_peak_rss_mb``: the fresh start's, its exports included).

The command line is ``scripts/bench_scene.py`` (``python -m scene_dev.bench_scene`` is the same);
the plan of scenes (:func:`scene_plan`) and the ratios are checked by tests/deploy without running
a model.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from scene_dev import full_size_models
from scene_dev.paths import FULL_SIZE_DIR, REPO_ROOT
from scene_dev.run_plan import StackOptions, free_ports, plan_services
from scene_dev.supervisor import http_get_json
from scene_rpc.profiles import get_profile

SHARED_IMAGES = REPO_ROOT.parent / "shared" / "images"
if not SHARED_IMAGES.is_dir():
    SHARED_IMAGES = Path("/work/shared/images")
PHOTO_MP = 1.0
PANORAMA = (2048, 1024)
STARTUP_TIMEOUT_S = 900
REQUEST_TIMEOUT_S = 3600
PHOTO = "photo_1mp"
PANORAMA_NAME = f"panorama_{PANORAMA[0]}x{PANORAMA[1]}"
# `--quick` is the few-minute check of `make bench`: its timed scenes must fit in this on a
# 2-core CPU by the profile table's measured figures (start-up and model export take the rest).
QUICK_SCENES_BUDGET_S = 60.0


def log(text: str = "") -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Inputs


def source_photo() -> Image.Image:
    for name in ("indoor_room.jpg", "animal_cat_chelsea.png", "outdoor_colosseum_sky.jpg"):
        if (SHARED_IMAGES / name).exists():
            return Image.open(SHARED_IMAGES / name).convert("RGB")
    rng = np.random.default_rng(0)  # no shared photos: texture is irrelevant to speed
    return Image.fromarray(rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8))


def png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def inputs(with_panorama: bool) -> dict[str, tuple[str, bytes, tuple[int, int]]]:
    """name -> (mode, PNG, (width, height)): a 1 MP photo, and a 2:1 panorama."""
    photo = source_photo()
    scale = (PHOTO_MP * 1e6 / (photo.width * photo.height)) ** 0.5
    size = (round(photo.width * scale), round(photo.height * scale))
    result = {PHOTO: ("standard", png_bytes(photo.resize(size, Image.LANCZOS)), size)}
    if with_panorama:
        result[PANORAMA_NAME] = ("panorama", png_bytes(photo.resize(PANORAMA)), PANORAMA)
    return result


def scene_plan(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(profile, image, quality) of every timed scene, in run order (each ``args.repeats``
    times); ``--before`` runs each profile's part twice."""
    profiles = (["fast", "balanced", "quality"] if args.profiles == "all"
                else args.profiles.split(","))
    images = [PHOTO] + ([] if args.no_panorama else [PANORAMA_NAME])
    return [(profile, image, quality) for profile in profiles for image in images
            for quality in args.qualities.split(",")]


def measured_scene_s(plan: list[tuple[str, str, str]], repeats: int, device: str = "cpu2",
                     ) -> float | None:
    """What the timed scenes of ``plan`` take by the profile table's measured 1 MP figures
    (``scene_rpc.profiles``), or None where a scene has none (a panorama, ``high``, a profile
    not measured on ``device``)."""
    total = 0.0
    for profile, image, quality in plan:
        chosen = get_profile(profile)
        figures = {"standard": chosen.expected_scene_s, "draft": chosen.draft_scene_s}
        seconds = figures.get(quality, {}).get(device)
        if image != PHOTO or seconds is None:
            return None
        total += seconds
    return total * repeats


# ---------------------------------------------------------------------------------------------
# The stack


class Stack:
    """The services of one profile as processes, as ``make run`` plans them."""

    def __init__(self, profile: str, env: dict[str, str], work: Path) -> None:
        names = ["orchestrator", "depth", "segment", "imagegen", "openai"]
        options = StackOptions(
            ports=dict(zip(names, free_ports(5), strict=True)), data_dir=work / "data",
            profile=profile)
        self.specs = plan_services(options, environ=env)
        self.work = work
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return f"http://{self.specs[-1].address}"

    def address(self, name: str) -> str:
        return next(s.address for s in self.specs if s.name == name)

    def start(self) -> None:
        for spec in self.specs:
            with open(self.work / f"{spec.name}.log", "ab") as out:
                self.processes[spec.name] = subprocess.Popen(
                    spec.argv, env=spec.env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True)
            if spec.name == "imagegen":
                # The orchestrator starts last, once every backend answers.
                for backend in self.specs[:-1]:
                    self._wait(backend)
        self._wait(self.specs[-1])

    def _wait(self, spec) -> None:
        from scene_rpc.health_probe import check

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            process = self.processes[spec.name]
            if process.poll() is not None:
                raise RuntimeError(f"{spec.name} exited:\n{self.log_tail(spec.name)}")
            if spec.kind == "grpc":
                ready = check(spec.address, "", 1.0)[0]
            else:
                ready = http_get_json(f"http://{spec.address}/health", 2.0)[0] == 200
            if ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{spec.name} not healthy:\n{self.log_tail(spec.name)}")
            time.sleep(0.3)

    def wait_loaded(self) -> None:
        """Until /health reports every model of the depth and segment services loaded."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            _, health = http_get_json(f"{self.url}/health", 5.0)
            flags = list(_loaded_flags(health.get("services", health))) if isinstance(
                health, dict) else []
            if flags and all(flags):
                return
            time.sleep(1.0)
        raise RuntimeError("models not loaded in time")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.work / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def rss_mb(self) -> dict[str, dict[str, float]]:
        """Resident memory now and at its peak, per process, from /proc."""
        result = {}
        for name, process in self.processes.items():
            with contextlib.suppress(OSError):
                fields = dict(line.split(":", 1) for line in
                              Path(f"/proc/{process.pid}/status").read_text().splitlines()
                              if ":" in line)
                result[name] = {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
                                "peak_rss_mb": int(fields["VmHWM"].split()[0]) / 1024}
        return result

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _loaded_flags(node, inside_model_service: bool = False):
    """Every ``loaded`` flag under the depth and segment entries of the health report."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "loaded" and inside_model_service:
                yield bool(value)
            else:
                yield from _loaded_flags(value, inside_model_service or key in ("depth",
                                                                                "segment"))
    elif isinstance(node, list):
        for item in node:
            yield from _loaded_flags(item, inside_model_service)


# The settings as they were before the speed work of issue 12, on the same models: eager PyTorch
# for every model, SAM2 prompts on a uniform 32 x 32 grid (16 x 16 per crop), and each model
# service with a thread per core. `--before` runs each profile so too, in the same run.
BEFORE_SPEED_WORK = {
    "DEPTH_RUNTIME": "torch", "SEG_RUNTIME": "torch",
    "SEG_PROMPT_STRATEGY": "grid", "SEG_POINTS_PER_SIDE": "32", "SEG_CROP_POINTS_PER_SIDE": "16",
    "DEPTH_THREADS": "0", "SEG_THREADS": "0",
}
BEFORE = " (before)"


def model_env(profile: str, cache: Path, device: str, threads: tuple[int, int] | None,
              ) -> dict[str, str]:
    """The caller's environment with the profile's models as local full-size twins."""
    chosen = get_profile(profile)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEPTH_", "SEG_", "SAM_MODEL"))}
    env.update({
        "DEPTH_MODEL": str(full_size_models.ensure(cache, chosen.depth_model)),
        # The fallback loads only when the model cannot: not part of a timing.
        "DEPTH_FALLBACK_MODEL": "",
        "SAM_MODEL": str(full_size_models.ensure(cache, chosen.sam_model)),
        "SEG_MODEL": str(full_size_models.ensure(cache, chosen.semantic_model)),
        "HF_HUB_OFFLINE": "1",
        "DEPTH_PRELOAD": "true", "SEG_PRELOAD": "true",
        "DEPTH_DEVICE": device, "SEG_DEVICE": device,
        "LOG_LEVEL": "WARNING", "DEPTH_LOG_LEVEL": "WARNING", "SEG_LOG_LEVEL": "WARNING",
        "DEPTH_CALL_DEADLINE_S": str(REQUEST_TIMEOUT_S),
        "SEGMENT_CALL_DEADLINE_S": str(REQUEST_TIMEOUT_S),
    })
    # No SEG_/DEPTH_ density, tiling or cap here: quality=standard runs the profile's own
    # service defaults (scene_rpc.profiles), as under `make run`.
    if threads is not None:
        env["DEPTH_THREADS"], env["SEG_THREADS"] = (str(t) for t in threads)
    return env


# ---------------------------------------------------------------------------------------------
# Requests


def upload(url: str, png: bytes, mode: str, quality: str) -> tuple[float, dict, dict]:
    """POST /generate multipart; (wall seconds, Server-Timing ms by step, the metadata)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (("mode", mode), ("quality", quality)):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                 f'filename="bench.png"\r\nContent-Type: image/png\r\n\r\n'.encode() + png
                 + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{url}/generate", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
        response.read()
        wall = time.perf_counter() - started
        generation_id = response.headers["X-Generation-Id"]
        timing = {}
        for item in response.headers.get("Server-Timing", "").split(","):
            name, _, rest = item.strip().partition(";dur=")
            if rest:
                timing[name] = float(rest.split(";")[0])
    status, metadata = http_get_json(f"{url}/generations/{generation_id}", 30)
    if status != 200:
        raise RuntimeError(f"no metadata for {generation_id}: {status}")
    return wall, timing, metadata


def summary(wall: float, timing: dict, metadata: dict, rss: dict) -> dict:
    return {
        "wall_s": round(wall, 3),
        "server_timing_ms": timing,
        "service_timing_ms": metadata.get("service_timing_ms"),
        "point_count": metadata.get("point_count"),
        "labels": len(metadata.get("labels") or []),
        "segment_mode": metadata.get("segment_mode"),
        "tile_count": metadata.get("tile_count"),
        "rss_mb": rss,
    }


def grpc_calls(stack: Stack, rgb: np.ndarray, max_message: int = 256 * 2**20):
    """Direct calls to the depth and segment services (the toggles and the threads study)."""
    import grpc

    from scene.depth.v1 import depth_pb2, depth_pb2_grpc
    from scene.segment.v1 import segment_pb2, segment_pb2_grpc
    from scene_rpc.images import image_message

    options = [("grpc.max_send_message_length", max_message),
               ("grpc.max_receive_message_length", max_message)]
    depth = depth_pb2_grpc.DepthServiceStub(
        grpc.insecure_channel(stack.address("depth"), options=options))
    segment = segment_pb2_grpc.SegmentServiceStub(
        grpc.insecure_channel(stack.address("segment"), options=options))
    image = image_message(rgb)

    def call_depth(**knobs) -> tuple[float, dict]:
        started = time.perf_counter()
        response = depth.EstimateDepth(depth_pb2.EstimateDepthRequest(image=image, **knobs),
                                       timeout=REQUEST_TIMEOUT_S)
        return time.perf_counter() - started, dict(response.timing_ms)

    def call_segment(**knobs) -> tuple[float, dict]:
        started = time.perf_counter()
        response = segment.Segment(segment_pb2.SegmentRequest(image=image, **knobs),
                                   timeout=REQUEST_TIMEOUT_S)
        info = dict(response.timing_ms)
        info["prompt_count"] = response.prompt_count
        return time.perf_counter() - started, info

    return call_depth, call_segment, depth_pb2, segment_pb2


def toggles(stack: Stack, png: bytes) -> dict:
    """The speed settings toggled on the same loaded services: after vs before."""
    import io

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    call_depth, call_segment, depth_pb2, segment_pb2 = grpc_calls(stack, rgb)
    hybrid = dict(mode=segment_pb2.SEGMENT_MODE_HYBRID, points_per_side=32,
                  crop_points_per_side=16)
    grid_s, grid = call_segment(prompt_strategy=segment_pb2.PROMPT_STRATEGY_GRID, **hybrid)
    sem_s, sem = call_segment(prompt_strategy=segment_pb2.PROMPT_STRATEGY_SEMANTIC, **hybrid)
    full_s, _ = call_depth(tiling=depth_pb2.TILING_MODE_AUTO)
    capped_s, _ = call_depth(tiling=depth_pb2.TILING_MODE_AUTO, max_input_side_px=512)
    return {
        "segment_prompts_grid_s": round(grid_s, 3), "segment_prompts_semantic_s": round(sem_s, 3),
        "prompts_grid": grid.get("prompt_count"), "prompts_semantic": sem.get("prompt_count"),
        "semantic_vs_grid_speedup": round(grid_s / sem_s, 2),
        "depth_uncapped_s": round(full_s, 3), "depth_cap512_s": round(capped_s, 3),
        "depth_cap512_speedup": round(full_s / capped_s, 2),
    }


# ---------------------------------------------------------------------------------------------
# Runs


def bench_profile(profile: str, runs: list[tuple[str, str]], images: dict, args, work: Path, *,
                  before: bool = False) -> dict:
    """Time each (image, quality) of ``runs`` on this profile's stack."""
    log(f"\n== profile {profile}{BEFORE if before else ''}: building/loading full-size "
        "random-weight models ...")
    env = model_env(profile, args.cache, args.device, args.threads)
    if before:
        env.update(BEFORE_SPEED_WORK)
    folder = work / (profile + ("-before" if before else ""))
    first_scene = args.first_scene and not before
    if first_scene:
        # A fresh start: no compiled graph of any model on disk yet.
        env["DEPTH_RUNTIME_CACHE_DIR"] = env["SEG_RUNTIME_CACHE_DIR"] = str(folder / "compiled")
    stack = Stack(profile, env, folder)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stack.start()
    result: dict = {"startup_s": round(time.perf_counter() - started, 1), "runs": {}}
    try:
        # The preload runs in the background: wait for every model, then one small warm-up.
        stack.wait_loaded()
        result["prepared_s"] = round(time.perf_counter() - started, 1)
        if first_scene:
            # The first scene after the start, before any warm-up: what a new user waits.
            _, png, _ = images[PHOTO]
            result["first_standard_s"] = round(upload(stack.url, png, "standard", "standard")[0],
                                               3)
            log(f"  first scene after a fresh start (prepared in {result['prepared_s']} s): "
                f"{result['first_standard_s']:.2f} s")
            # The exports' peak is a first start's alone: the steady figures come from a start
            # that finds the graphs on the disk, as every later start does.
            result["first_start_peak_rss_mb"] = peak_rss(stack.rss_mb())
            log(f"  peak RSS of the fresh start (MB): {result['first_start_peak_rss_mb']}")
            stack.stop()
            stack = Stack(profile, env, folder / "restart")
            (folder / "restart").mkdir(parents=True, exist_ok=True)
            stack.start()
            stack.wait_loaded()
        small = png_bytes(Image.new("RGB", (320, 240), (90, 120, 150)))
        # Both paths once (SAM2 runs only at standard): CUDA kernels and caches are warm.
        upload(stack.url, small, "standard", "draft")
        upload(stack.url, small, "standard", "standard")
        result["loaded_s"] = round(time.perf_counter() - started, 1)
        for image_name, quality in runs:
            mode, png, size = images[image_name]
            walls = []
            for _ in range(args.repeats):
                wall, timing, metadata = upload(stack.url, png, mode, quality)
                walls.append(wall)
            run = summary(min(walls), timing, metadata, stack.rss_mb())
            run["image_mp"] = round(size[0] * size[1] / 1e6, 3)
            result["runs"][f"{image_name}/{quality}"] = run
            log(f"  {image_name:<20} {quality:<9} {run['wall_s']:8.2f} s   {_stages(timing)}")
        if args.toggles and not before:
            result["toggles"] = toggles(stack, next(iter(images.values()))[1])
            log(f"  toggles: {result['toggles']}")
        result["rss_mb"] = stack.rss_mb()
        result["peak_rss_mb"] = peak_rss(result["rss_mb"])
        log(f"  peak RSS (MB): {result['peak_rss_mb']}")
    finally:
        stack.stop()
    return result


def peak_rss(rss: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each service's peak resident memory (MB) and their sum, ``"total"`` (the peaks of the
    services need not coincide, so the sum is an upper bound). Graph exports run inside the
    services: a fresh start's peaks include them."""
    peaks = {name: round(values["peak_rss_mb"]) for name, values in rss.items()}
    return {**peaks, "total": sum(peaks.values())}


def _stages(timing: dict) -> str:
    keys = ("decode", "depth", "segment", "models", "pointcloud", "png", "storage", "total")
    return " ".join(f"{k}={timing[k] / 1000:.2f}" for k in keys if k in timing)


def ratios(results: dict) -> dict:
    out: dict = {}
    for profile, result in results.items():
        after = results.get(profile.removesuffix(BEFORE))
        if profile.endswith(BEFORE) and after:
            for key, run in result["runs"].items():
                if key in after["runs"]:
                    # > 1: the speed work made this scene that many times faster.
                    out[f"{profile.removesuffix(BEFORE)}/{key}: before / after the speed work"] = (
                        round(run["wall_s"] / after["runs"][key]["wall_s"], 2))
        runs = result["runs"]
        for key, run in runs.items():
            image, quality = key.split("/")
            standard = runs.get(f"{image}/standard")
            if standard and quality != "standard":
                # > 1: the standard scene takes that many times as long as this quality's.
                out[f"{profile}/{image}: standard / {quality} wall time"] = round(
                    standard["wall_s"] / run["wall_s"], 2)
    slowest = "quality" if "quality" in results else None
    if slowest and "fast" in results:
        for key, run in results["fast"]["runs"].items():
            other = results[slowest]["runs"].get(key)
            if other:
                out[f"{slowest} / fast wall time, {key}"] = round(
                    other["wall_s"] / run["wall_s"], 2)
    return out


def threads_study(args, work: Path) -> dict:
    """Depth || segment on this machine's cores against each alone, per thread setting."""
    import concurrent.futures
    import io

    cores = len(os.sched_getaffinity(0))
    settings = sorted({(0, 0), (max(cores // 2, 1), max(cores - cores // 2, 1))})
    _, png, _ = inputs(False)[PHOTO]
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    study: dict = {"cores": cores}
    for threads in settings:
        env = model_env("fast", args.cache, "cpu", threads)
        # OpenMP and MKL pools too: torch's intra-op setting does not bound them all.
        for name, value in (("OMP_NUM_THREADS", threads[0] or cores),
                            ("MKL_NUM_THREADS", threads[0] or cores)):
            env[name] = str(value)
        stack = Stack("fast", env, work / f"threads-{threads[0]}-{threads[1]}")
        stack.work.mkdir(parents=True, exist_ok=True)
        stack.start()
        try:
            call_depth, call_segment, depth_pb2, segment_pb2 = grpc_calls(stack, rgb)
            # One backbone pass each (the part that contends for the cores; SAM2's prompt
            # decoding would only lengthen the segment side).
            d = dict(tiling=depth_pb2.TILING_MODE_OFF)
            s = dict(mode=segment_pb2.SEGMENT_MODE_SEMANTIC)
            call_depth(**d), call_segment(**s)  # warm-up: models loaded
            depth_alone = min(call_depth(**d)[0] for _ in range(args.repeats))
            segment_alone = min(call_segment(**s)[0] for _ in range(args.repeats))
            together = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(2) as pool:
                    jobs = [pool.submit(call_depth, **d), pool.submit(call_segment, **s)]
                    for job in jobs:
                        job.result()
                together.append(time.perf_counter() - started)
        finally:
            stack.stop()
        label = "torch default (0 = every core, each)" if threads == (0, 0) else (
            f"DEPTH_THREADS={threads[0]} SEG_THREADS={threads[1]}")
        row = {"depth_alone_s": round(depth_alone, 2), "segment_alone_s": round(segment_alone, 2),
               "together_s": round(min(together), 2),
               "together_vs_sum_of_alone": round(min(together) / (depth_alone + segment_alone), 2)}
        study[label] = row
        log(f"  threads {label}: {row}")
    return study


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fast profile, 1 MP photo, standard and draft only; one JSON line")
    parser.add_argument("--profiles", default="fast,balanced",
                        help="comma-separated profiles, or 'all' (quality on a CPU is slow: "
                             "DepthPro takes minutes a pass)")
    parser.add_argument("--qualities", default="draft,standard,high")
    parser.add_argument("--no-panorama", action="store_true", help="the 1 MP photo only")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu",
                        help="cpu, or cuda (float16 and GPU batch sizes, the services' own "
                             "choice on CUDA)")
    parser.add_argument("--threads", type=lambda t: tuple(int(x) for x in t.split(",")),
                        help="DEPTH_THREADS,SEG_THREADS for the services (default: make run's)")
    parser.add_argument("--threads-study", action="store_true",
                        help="only: depth || segment against each alone, per thread setting")
    parser.add_argument("--before", action="store_true",
                        help="also run each profile with the settings from before the speed work "
                             "(eager models, a uniform SAM2 grid, a thread per core each) and "
                             "print before / after")
    parser.add_argument("--first-scene", action="store_true",
                        help="start each profile with an empty compiled-graph cache and time its "
                             "first standard scene on the photo before any warm-up")
    parser.add_argument("--no-toggles", dest="toggles", action="store_false",
                        help="skip the per-setting after/before comparisons")
    parser.add_argument("--cache", type=Path, default=FULL_SIZE_DIR,
                        help="where the full-size random-weight models are built once")
    parser.add_argument("--json", type=Path, help="write the whole result as one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.profiles, args.qualities, args.no_panorama, args.toggles, args.first_scene = (
            "fast", "standard,draft", True, False, True)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = scene_plan(args)
    with tempfile.TemporaryDirectory(prefix="bench-scene-") as tmp:
        work = Path(tmp)
        report: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                        "device": args.device, "cpus": len(os.sched_getaffinity(0)),
                        "load_average_at_start": os.getloadavg()[0]}
        if args.threads_study:
            report["threads_study"] = threads_study(args, work)
        else:
            images = inputs(not args.no_panorama)
            report["profiles"] = {}
            for profile in dict.fromkeys(p for p, _, _ in plan):
                runs = [(image, quality) for p, image, quality in plan if p == profile]
                if args.before:
                    report["profiles"][profile + BEFORE] = bench_profile(
                        profile, runs, images, args, work, before=True)
                report["profiles"][profile] = bench_profile(profile, runs, images, args, work)
            report["ratios"] = ratios(report["profiles"])
            log("\nratios (measured in this run):")
            for name, value in report["ratios"].items():
                log(f"  {name}: {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.quick:
        fast = report["profiles"]["fast"]
        runs = fast["runs"]
        print(json.dumps({"profile": "fast", "image_mp": runs[f"{PHOTO}/standard"]["image_mp"],
                          "standard_s": runs[f"{PHOTO}/standard"]["wall_s"],
                          "draft_s": runs[f"{PHOTO}/draft"]["wall_s"],
                          "first_standard_s": fast["first_standard_s"],
                          "prepared_s": fast["prepared_s"],
                          "peak_rss_mb": fast["peak_rss_mb"],
                          "first_start_peak_rss_mb": fast["first_start_peak_rss_mb"]}), flush=True)
    elif not args.json:
        print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
