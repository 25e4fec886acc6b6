#!/usr/bin/env python
"""Try a running orchestrator: one ``POST /generate``, its timing breakdown, and the returned
point cloud decoded and checked.

    python scripts/try_generate.py "a lighthouse on a cliff at dusk" --vibe stormy
    python scripts/try_generate.py --image photo.jpg [--mode panorama]
    python scripts/try_generate.py --url http://host:8000 --quantized "a canyon"

The OpenAI key for a prompt comes from ``--key`` or the ``OPENAI_API_KEY`` environment variable;
it is sent in the ``X-OpenAI-Key`` header and printed nowhere. Exit status 0 when the server
answered with a valid cloud, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np

from pointcloud import CATEGORY_NAMES, decode


def multipart(fields: dict[str, str], image: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    content_type = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                 f'filename="{image.name}"\r\nContent-Type: {content_type}\r\n\r\n'.encode())
    parts.append(image.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def build_request(args: argparse.Namespace) -> urllib.request.Request:
    url = args.url.rstrip("/") + "/generate" + ("?format=quantized" if args.quantized else "")
    if args.image is not None:
        fields = {"mode": args.mode, **({"vibe": args.vibe} if args.vibe else {})}
        body, content_type = multipart(fields, args.image)
        return urllib.request.Request(url, data=body, method="POST",
                                      headers={"Content-Type": content_type})
    key = args.key or os.environ.get("OPENAI_API_KEY", "")
    if not key:
        sys.exit("a prompt needs an OpenAI key: --key or OPENAI_API_KEY (or use --image)")
    body = json.dumps({"prompt": args.prompt, "vibe": args.vibe, "mode": args.mode}).encode()
    return urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-OpenAI-Key": key})


def server_timing(header: str) -> list[tuple[str, float]]:
    steps = []
    for entry in filter(None, (part.strip() for part in header.split(","))):
        name, _, params = entry.partition(";")
        duration = dict(p.strip().split("=", 1) for p in params.split(";") if "=" in p)
        steps.append((name, float(duration.get("dur", "nan"))))
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prompt", nargs="?", help="what the scene shows (omit with --image)")
    parser.add_argument("--image", type=Path, help="a photo: the image-to-3D path, no key")
    parser.add_argument("--vibe", default="", help="a mood or style phrase")
    parser.add_argument("--mode", choices=["standard", "panorama"], default="standard")
    parser.add_argument("--quantized", action="store_true", help="ask for the quantised format")
    parser.add_argument("--url", default="http://localhost:8000", help="the orchestrator")
    parser.add_argument("--key", help="OpenAI API key (default: $OPENAI_API_KEY)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds (CPU is slow)")
    args = parser.parse_args()
    if (args.prompt is None) == (args.image is None):
        parser.error("give a prompt or --image, not both")

    request = build_request(args)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            body, headers = response.read(), response.headers
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail)["detail"]
        except (ValueError, KeyError, TypeError):
            pass
        print(f"HTTP {exc.code}: {detail}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"cannot reach {args.url}: {exc.reason}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - started

    print(f"generation {headers.get('X-Generation-Id')}: {len(body) / 1e6:.2f} MB in {wall:.2f} s")
    print("timing (server):")
    for name, ms in server_timing(headers.get("Server-Timing", "")):
        print(f"  {name:<12}{ms:>10.1f} ms")

    try:
        cloud = decode(body)
    except ValueError as exc:
        print(f"the returned buffer is not a valid point cloud: {exc}", file=sys.stderr)
        return 1
    header = cloud.header
    lo, hi = cloud.bounds()
    print(f"point cloud: {cloud.count:,} points, projection {header['mode']}, "
          f"{'quantised' if header['attributes'][0]['type'] == 'uint16' else 'float32'} "
          "positions")
    print(f"  bounds min {[round(float(v), 3) for v in lo]} "
          f"max {[round(float(v), 3) for v in hi]} (metres)")
    counts = np.bincount(cloud.segments, minlength=len(CATEGORY_NAMES))
    for name, count in zip(CATEGORY_NAMES, counts, strict=True):
        if count:
            print(f"  {name:<14}{count / max(cloud.count, 1):>7.1%}")
    if not np.isfinite(cloud.positions).all():
        print("non-finite positions in the cloud", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
