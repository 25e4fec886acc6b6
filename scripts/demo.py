#!/usr/bin/env python
"""`make demo`: a real photo (scripts/demo/chelsea.png, CC0) becomes a stored 3D scene.

    python scripts/demo.py                       # uses the server on :8000, or starts one
    python scripts/demo.py --smoke               # if it starts one: tiny models, offline
    python scripts/demo.py --image my.jpg --mode panorama --url http://gpu-box:8000

The photo goes through the asynchronous API (`POST /jobs`, upload path: no image generation, no
OpenAI key), with the job's stage and progress printed as it runs. Then the timing breakdown,
the detected labels, the point cloud read back and checked, and where the generation is stored.
When nothing answers at --url, the stack is started with `scripts/run.py` for the demo and
stopped after it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_IMAGE = REPO_ROOT / "scripts" / "demo" / "chelsea.png"
READY_LINE = "scene server ready:"
TERMINAL = {"completed", "failed", "cancelled"}


def server_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def own_stack(url: str, smoke: bool, data_dir: Path, log_path: Path, timeout_s: float
              ) -> Iterator[None]:
    """``scripts/run.py`` on the URL's port for the duration of the demo; its output goes to a
    log file, shown if it fails to start."""
    port = urlsplit(url).port or 8000
    argv = [sys.executable, str(REPO_ROOT / "scripts" / "run.py"), "--orchestrator-port",
            str(port), "--data-dir", str(data_dir)]
    if smoke:
        argv.append("--smoke")
    print(f"no server at {url}: starting one ({'tiny models' if smoke else 'default models'}; "
          f"log {log_path})", flush=True)
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + timeout_s
        while READY_LINE not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
                raise SystemExit(f"the stack did not start:\n{tail}")
            time.sleep(0.5)
        yield
    finally:
        # run.py stops its services on SIGINT, exactly as on Ctrl-C.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def follow(client: httpx.Client, job_id: str, timeout_s: float) -> dict:
    """Poll the job, printing each change of stage or 10% of progress; return its final view."""
    deadline = time.monotonic() + timeout_s
    shown = None
    while True:
        view = client.get(f"/jobs/{job_id}").raise_for_status().json()
        progress = int(100 * (view.get("progress") or 0)) // 10 * 10
        state = (view["status"], view.get("stage"), progress)
        if state != shown:
            stage = view.get("stage") or ""
            position = view.get("queue_position")
            queued = f" (queue position {position})" if position else ""
            print(f"  {view['status']:<10} {stage:<11} {progress:3d}%{queued}", flush=True)
            shown = state
        if view["status"] in TERMINAL:
            return view
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} still {view['status']} after {timeout_s:.0f}s")
        time.sleep(0.5)


def print_report(client: httpx.Client, url: str, job_id: str, wall_s: float,
                 data_dir: Path | None) -> None:
    from pointcloud import decode

    metadata = client.get(f"/generations/{job_id}").raise_for_status().json()
    timing = metadata.get("timing_ms") or {}
    print("\ntiming breakdown (ms)")
    for step, ms in timing.items():
        if step != "total":
            print(f"  {step:<12} {ms:10.1f}")
    if "total" in timing:
        print(f"  {'total':<12} {timing['total']:10.1f}")
    print(f"  {'client wall':<12} {wall_s * 1000:10.1f}")

    labels = metadata.get("labels") or []
    if labels:
        print("\ndetected labels")
        for label in labels[:8]:
            print(f"  {label.get('label', '?'):<16} {100 * label.get('pixel_fraction', 0):5.1f}%")

    body = client.get(f"/generations/{job_id}/pointcloud.bin").raise_for_status().content
    cloud = decode(body)
    lo, hi = cloud.bounds()
    bounds = "  ".join(f"{axis} {a:.2f}..{b:.2f}" for axis, a, b in zip("xyz", lo, hi, strict=True))
    print(f"\npoint cloud: {cloud.count} points, {len(body) / 2**20:.1f} MiB; metres: {bounds}")
    print(f"\nstored as generation {job_id}")
    print(f"  metadata  {url}/generations/{job_id}")
    print(f"  assets    {url}/generations/{job_id}/{{image.png,depth.png,segments.png,"
          f"pointcloud.bin,pointcloud.ply}}")
    if data_dir is not None:
        print(f"  on disk   {data_dir}/generations/{job_id}/")
    else:
        print(f"  on disk   DATA_DIR/generations/{job_id}/ of the running server")
    print(f"  viewer    {url}/")


def run_demo(url: str, image: Path, vibe: str, mode: str, timeout_s: float,
             data_dir: Path | None) -> int:
    with httpx.Client(base_url=url, timeout=60.0) as client:
        print(f"uploading {image.name} ({image.stat().st_size / 1024:.0f} KB, mode {mode}) "
              f"to {url}", flush=True)
        started = time.perf_counter()
        response = client.post("/jobs", data={"vibe": vibe, "mode": mode},
                               files={"image": (image.name, image.read_bytes())})
        if response.status_code != 202:
            print(f"the server refused the upload: {response.status_code} {response.text}",
                  file=sys.stderr)
            return 1
        job_id = response.json()["id"]
        view = follow(client, job_id, timeout_s)
        wall_s = time.perf_counter() - started
        if view["status"] != "completed":
            print(f"\njob {job_id} {view['status']}: {view.get('error')}", file=sys.stderr)
            return 1
        print_report(client, url, job_id, wall_s, data_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the orchestrator")
    parser.add_argument("--image", type=Path, default=DEMO_IMAGE)
    parser.add_argument("--vibe", default="warm afternoon light")
    parser.add_argument("--mode", choices=["standard", "panorama"], default="standard")
    parser.add_argument("--smoke", action="store_true",
                        help="if the demo starts the stack: tiny models, fully offline")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds the generation may take (default 1800: CPU, real models, "
                             "first download included)")
    parser.add_argument("--start-timeout", type=float, default=600.0)
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data",
                        help="DATA_DIR of the stack the demo starts (default ./data, where "
                             "`make run` keeps its generations too)")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    if server_answers(url):
        return run_demo(url, args.image, args.vibe, args.mode, args.timeout, None)
    data_dir = args.data_dir.resolve()
    with tempfile.TemporaryDirectory(prefix="scene-demo-") as tmp:
        with own_stack(url, args.smoke, data_dir, Path(tmp) / "run.log", args.start_timeout):
            return run_demo(url, args.image, args.vibe, args.mode, args.timeout, data_dir)


if __name__ == "__main__":
    sys.exit(main())
