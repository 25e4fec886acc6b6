#!/usr/bin/env python
"""Benchmark of ``GET /generations`` with many stored generations: the store's listing index
against the full scan it replaced (every ``metadata.json`` read and sorted per request), in the
same run on the same files.

Writes ``--count`` records (default 100,000: a metadata.json each, shaped like a real completed
generation's with labels and descriptors, no asset files) into a data directory kept under
.cache/bench-listing/ so that later runs skip the writing; then reports

- the start-up rebuild of the index (GenerationStore.open),
- one page of 20 over HTTP (the generations router in process, with its response model's
  validation and serialisation), median of ``--repeats``: the first page, a deep page (the
  last one) and a status-filtered page,
- the old full scan for the same first page (median of ``--scan-repeats``, default 1: it takes
  about a minute at 100,000 on a 2-core machine; the page cache is warm from the rebuild).

    python scripts/bench_listing.py [--count 100000] [--repeats 25] [--scan-repeats 1]

Target: a page at most 50 ms at 100,000 stored. Nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from fastapi import FastAPI
from fastapi.testclient import TestClient

from orchestrator.records import GenerationRecord
from orchestrator.routes import generations
from orchestrator.storage import METADATA, GenerationStore, valid_id

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE = REPO_ROOT / ".cache" / "bench-listing"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
PAGE = 20
TARGET_MS = 50.0
CATEGORIES = ("BASS_SUBJECT", "MID_ORGANIC", "HIGH_SKY", "BEAT_GROUND", "MID_STRUCTURE",
              "LOW_AMBIENT")


def template() -> dict:
    """A completed record as the server writes it (values from a fake-stack run)."""
    labels = [{"label": name, "ade20k_id": i, "category": i % 6,
               "category_name": CATEGORIES[i % 6], "pixel_fraction": 0.1}
              for i, name in enumerate(("person", "sky", "tree", "road", "building", "wall"))]
    descriptors = {"count": 6048, "categories": [
        {"index": i, "name": name, "count": 1000, "share": 0.16, "pixel_share": 0.16,
         "centroid": [0.1, 0.2, -3.0], "spread": [1.0, 0.5, 0.7], "depth_mean": 3.1}
        for i, name in enumerate(CATEGORIES)]}
    record = GenerationRecord.build(
        id="0" * 32, status="completed", progress=1.0, prompt="a cat on a sofa", vibe="",
        mode="standard", source="prompt", quality="standard",
        created_at="2026-01-01T00:00:00.000000Z", updated_at="2026-01-01T00:00:01.000000Z",
        started_at="2026-01-01T00:00:00.100000Z", finished_at="2026-01-01T00:00:01.000000Z",
        timing_ms={"queue": 40.3, "imagegen": 239.7, "decode": 19.1, "depth": 48.3,
                   "segment": 46.6, "models": 48.6, "png": 0.9, "pointcloud": 2.9,
                   "storage": 3.2, "total": 430.0},
        models={"imagegen": "fake-image-1", "depth": "fake/depth", "sam": None,
                "semantic": "fake/semantic"},
        service_timing_ms={"depth": {"total": 12.2}, "segment": {"total": 15.8}},
        transfer_ms={"depth": 36.1, "segment": 30.8}, revised_prompt="revised: a cat",
        image={"width": 96, "height": 64}, segment_mode="SEGMENT_MODE_SEMANTIC",
        depth_is_metric=False, tile_count=0, labels=labels,
        services={"depth": {"address": "127.0.0.1:50051", "version": "0.1.0"}},
        point_count=6048, bounds={"min": [-2.6, -0.4, -4.6], "max": [2.6, 1.7, -1.0]},
        projection="planar", camera={"model": "pinhole", "width": 96, "height": 64},
        edges={"rtol": 0.1, "dropped": 96}, point_stride=1, descriptors=descriptors,
        focal_source="default_fov", fov_deg=60.0,
        assets={"image.png": 696, "depth.png": 725, "segments.png": 205,
                "pointcloud.bin": 99624},
        job={"fingerprint": "6d1e" * 16, "last_event_id": 16})
    return json.loads(record.to_json())


def populate(data_dir: Path, count: int) -> float:
    """Write ``count`` records (one in ten failed); returns the seconds it took."""
    started = time.perf_counter()
    root = data_dir / "generations"
    root.mkdir(parents=True)
    base = template()
    failed = {**base, "status": "failed", "error": "the depth service is down",
              "error_status": 503}
    for key in ("labels", "descriptors", "point_count", "assets", "bounds", "camera"):
        failed.pop(key)
    for i in range(count):
        generation_id = f"{i:032x}"
        record = failed if i % 10 == 0 else base
        # One a second, as the server writes them (utcnow in orchestrator.jobs).
        stamp = (EPOCH + timedelta(seconds=i)).isoformat(timespec="microseconds")
        stamp = stamp.replace("+00:00", "Z")
        body = json.dumps({**record, "id": generation_id, "created_at": stamp}, indent=1)
        folder = root / generation_id
        folder.mkdir()
        (folder / METADATA).write_text(body)
    return time.perf_counter() - started


def data_for(count: int) -> Path:
    data_dir = CACHE / str(count)
    marker = data_dir / ".complete"
    if not marker.exists():
        shutil.rmtree(data_dir, ignore_errors=True)
        seconds = populate(data_dir, count)
        marker.write_text("")
        print(f"wrote {count:,} records in {seconds:.1f} s into {data_dir}")
    else:
        print(f"reusing {count:,} records in {data_dir}")
    return data_dir


def old_full_scan(store: GenerationStore, limit: int, offset: int) -> dict:
    """GET /generations before the index: every record read, sorted, then sliced."""
    records = []
    for folder in store.root.iterdir():
        if valid_id(folder.name):
            try:
                records.append(json.loads((folder / METADATA).read_bytes()))
            except (OSError, ValueError):
                continue
    records.sort(key=lambda r: (r.get("created_at", ""), r["id"]), reverse=True)
    items = [{k: v for k, v in r.items() if k != "job"} for r in records[offset:offset + limit]]
    return {"items": items, "total": len(records), "limit": limit, "offset": offset}


def rss_mb() -> float:
    """This process's resident memory now (Linux), in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def median_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--scan-repeats", type=int, default=1)
    args = parser.parse_args()
    data_dir = data_for(args.count)
    (data_dir / ".lock").unlink(missing_ok=True)

    store = GenerationStore(data_dir)
    rss_before = rss_mb()
    started = time.perf_counter()
    store.open()
    rebuild_s = time.perf_counter() - started
    index_mb = rss_mb() - rss_before
    app = FastAPI()
    app.include_router(generations.router)
    app.state.runtime = SimpleNamespace(store=store)
    try:
        client = TestClient(app)
        deep = max(args.count - PAGE, 0)

        def page(offset: int, status: str | None = None) -> dict:
            params = {"limit": PAGE, "offset": offset, **({"status": status} if status else {})}
            response = client.get("/generations", params=params)
            response.raise_for_status()
            return response.json()

        first = page(0)
        assert first["total"] == len(store.index) and len(first["items"]) == PAGE
        scanned = old_full_scan(store, PAGE, 0)
        # The same page, but for the fields a record lacks, which the model shows as null.
        shown = [{k: v for k, v in item.items() if v is not None} for item in first["items"]]
        old = [{k: v for k, v in item.items() if v is not None} for item in scanned["items"]]
        assert shown == json.loads(json.dumps(old)), "the pages differ"
        assert page(deep)["items"][-1]["id"] == f"{0:032x}"
        first_ms = median_ms(lambda: page(0), args.repeats)
        deep_ms = median_ms(lambda: page(deep), args.repeats)
        failed_ms = median_ms(lambda: page(PAGE, "failed"), args.repeats)
        scan_ms = median_ms(lambda: old_full_scan(store, PAGE, 0), args.scan_repeats)
    finally:
        store.close()

    worst = max(first_ms, deep_ms, failed_ms)
    print(f"\nGET /generations with {args.count:,} stored (python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs)")
    print(f"  start-up index rebuild          {rebuild_s:8.2f} s")
    print(f"  index memory (RSS growth)       {index_mb:8.1f} MiB")
    print(f"  first page of {PAGE} (index)        {first_ms:8.2f} ms")
    print(f"  last page (offset {deep:,})   {deep_ms:8.2f} ms")
    print(f"  failed only, second page        {failed_ms:8.2f} ms")
    print(f"  first page, old full scan       {scan_ms:8.1f} ms")
    print(f"  old scan / index, first page    {scan_ms / first_ms:8.0f}x")
    verdict = "met" if worst <= TARGET_MS else "MISSED"
    print(f"  target: a page <= {TARGET_MS:.0f} ms: {verdict} (worst {worst:.2f} ms)")
    print(json.dumps({"count": args.count, "rebuild_s": round(rebuild_s, 3),
                      "index_mib": round(index_mb, 1),
                      "first_page_ms": round(first_ms, 3), "deep_page_ms": round(deep_ms, 3),
                      "failed_page_ms": round(failed_ms, 3), "old_scan_ms": round(scan_ms, 1),
                      "ratio": round(scan_ms / first_ms, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
