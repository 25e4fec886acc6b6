#!/usr/bin/env python
"""Benchmark of ``GET /generations`` with many stored generations, on each database engine the
orchestrator runs on (orchestrator.database): SQLite (the default, a file under DATA_DIR) and
PostgreSQL (a throwaway server from Debian's package: scene_dev.postgres; or ``--database-url``).

Writes ``--count`` records (default 100,000, shaped like a real completed generation's with
labels and descriptors, one in ten failed; no asset files) into the database (the SQLite file is
kept under .cache/bench-listing/ so that later runs skip the writing); then reports, per engine,

- the store's start-up (GenerationStore.open: the schema, the scan for records to import),
- one page of 20 over HTTP (the generations router in process, with its response model's
  validation and serialisation, and the page's ``total``), median of ``--repeats``: the first
  page, the last page by ``offset``, the last page by ``cursor`` (keyset) and a
  status-filtered page.

    python scripts/bench_listing.py [--count 100000] [--repeats 25] [--engines sqlite,postgresql]

Target (issue 28): a page of 20 at most 20 ms at 100,000 stored, on both engines. Nothing here
is asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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

from orchestrator.database import generations as generations_table
from orchestrator.records import GenerationRecord
from orchestrator.routes import generations
from orchestrator.storage import GenerationStore

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE = REPO_ROOT / ".cache" / "bench-listing"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
PAGE = 20
TARGET_MS = 20.0
BATCH = 5000
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


def stamp(i: int) -> str:
    # One a second, as the server writes them (utcnow in orchestrator.jobs).
    return (EPOCH + timedelta(seconds=i)).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


async def populate(store: GenerationStore, count: int) -> float:
    """Insert ``count`` records (one in ten failed); returns the seconds it took."""
    started = time.perf_counter()
    base = template()
    failed = {**base, "status": "failed", "error": "the depth service is down",
              "error_status": 503}
    for key in ("labels", "descriptors", "point_count", "assets", "bounds", "camera"):
        failed.pop(key)
    for first in range(0, count, BATCH):
        rows = []
        for i in range(first, min(first + BATCH, count)):
            record = {**(failed if i % 10 == 0 else base), "id": f"{i:032x}",
                      "created_at": stamp(i)}
            rows.append(dict(id=record["id"], status=record["status"],
                             created_at=record["created_at"], idempotency_key=None,
                             fingerprint=None, record=json.dumps(record, indent=1)))
        async with store.db.transaction() as conn:
            await conn.execute(generations_table.insert(), rows)
    await store.recount()  # the rows went in behind the store's back
    if not store.db.is_sqlite:
        # What autovacuum does after a bulk insert on a server that runs for a while.
        async with store.db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE generations")
    return time.perf_counter() - started


def cursor_after(i: int) -> str:
    """The cursor the page ending at record ``i`` gives (routes.generations)."""
    return base64.urlsafe_b64encode(f"{stamp(i)}\n{i:032x}".encode()).decode().rstrip("=")


def median_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def measure(engine: str, data_dir: Path, database_url: str, count: int,
                  repeats: int) -> dict:
    store = GenerationStore(data_dir, database_url)
    await store.open()
    async with store.db.reading() as conn:
        from sqlalchemy import func, select
        have = (await conn.execute(select(func.count()).select_from(generations_table))
                ).scalar_one()
    if have != count:
        seconds = await populate(store, count)
        print(f"{engine}: wrote {count:,} records in {seconds:.1f} s")
    else:
        print(f"{engine}: reusing {count:,} records")
    await store.close()

    store = GenerationStore(data_dir, database_url)
    started = time.perf_counter()
    await store.open()
    open_s = time.perf_counter() - started
    app = FastAPI()
    app.include_router(generations.router)
    app.state.runtime = SimpleNamespace(store=store)
    try:
        # The TestClient runs the app on a loop of its own (in a thread): the store's engine
        # must be made on that loop, so it is opened again there.
        await store.close()
        with TestClient(app) as client:
            client.portal.call(store.open)
            deep = max(count - PAGE, 0)

            def page(**params) -> dict:
                response = client.get("/generations", params={"limit": PAGE, **params})
                response.raise_for_status()
                return response.json()

            first = page()
            assert first["total"] == count and len(first["items"]) == PAGE
            assert page(offset=deep)["items"][-1]["id"] == f"{0:032x}"
            by_cursor = page(cursor=cursor_after(PAGE))
            assert [i["id"] for i in by_cursor["items"]] == [f"{i:032x}" for i in
                                                             range(PAGE - 1, -1, -1)]
            result = {
                "engine": engine, "count": count, "open_s": round(open_s, 3),
                "first_page_ms": median_ms(lambda: page(), repeats),
                "deep_offset_ms": median_ms(lambda: page(offset=deep), repeats),
                "deep_cursor_ms": median_ms(lambda: page(cursor=cursor_after(PAGE)), repeats),
                "failed_page_ms": median_ms(lambda: page(offset=PAGE, status="failed"),
                                            repeats),
            }
            client.portal.call(store.close)
    finally:
        await store.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--database-url", default="",
                        help="a PostgreSQL to use instead of a throwaway one (it is written to)")
    args = parser.parse_args()
    results = []
    for engine in args.engines.split(","):
        if engine == "sqlite":
            data_dir = CACHE / f"sqlite-{args.count}"
            data_dir.mkdir(parents=True, exist_ok=True)
            results.append(asyncio.run(measure(engine, data_dir, "", args.count, args.repeats)))
        elif args.database_url:
            data_dir = CACHE / "postgresql"
            shutil.rmtree(data_dir, ignore_errors=True)
            results.append(asyncio.run(measure(engine, data_dir, args.database_url, args.count,
                                               args.repeats)))
        else:
            from scene_dev.postgres import PostgresUnavailable, TempPostgres

            try:
                server = TempPostgres()
            except PostgresUnavailable as exc:
                print(f"postgresql: skipped ({exc})")
                continue
            with server:
                data_dir = CACHE / "postgresql"
                shutil.rmtree(data_dir, ignore_errors=True)
                url = server.create_database("bench")
                results.append(asyncio.run(measure(engine, data_dir, url, args.count,
                                                   args.repeats)))

    print(f"\nGET /generations, a page of {PAGE}, with {args.count:,} stored "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {args.repeats})")
    worst = 0.0
    for r in results:
        print(f"  {r['engine']:<10} store open {r['open_s']:6.2f} s | first page "
              f"{r['first_page_ms']:6.2f} ms | last page by offset "
              f"{r['deep_offset_ms']:6.2f} ms | by cursor {r['deep_cursor_ms']:6.2f} ms | "
              f"failed only {r['failed_page_ms']:6.2f} ms")
        worst = max(worst, r["first_page_ms"], r["deep_cursor_ms"], r["failed_page_ms"])
    verdict = "met" if worst <= TARGET_MS else "MISSED"
    print(f"  target: a page <= {TARGET_MS:.0f} ms (first, keyset and filtered pages): {verdict} "
          f"(worst {worst:.2f} ms)")
    print(json.dumps([{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                      for r in results]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
