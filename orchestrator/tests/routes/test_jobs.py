"""/jobs: asynchronous generations, live events, reconnection, cancellation, the queue,
idempotency and restarts."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pointcloud import decode


@pytest.fixture
def database_url(each_database_url: str) -> str:
    # Every job test runs on SQLite and on PostgreSQL (one orchestrator each).
    return each_database_url


async def follow(api, job_id: str, last_event_id: str | None = None, limit: int | None = None):
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    async with api.client.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return await api.events(response, limit)


async def test_submit_then_events_in_order_then_the_result(api):
    api.fakes.depth.behaviour.progress_steps = 3
    response = await api.submit("a lighthouse", vibe="stormy")
    assert response.status_code == 202, response.text
    job = response.json()
    job_id = job["id"]
    # With a free slot it is already running when the answer leaves.
    assert job["status"] in ("queued", "running")
    assert job == {"id": job_id, "status": job["status"], "status_url": f"/jobs/{job_id}",
                   "events_url": f"/jobs/{job_id}/events",
                   "result_url": f"/generations/{job_id}/pointcloud.bin"}
    assert response.headers["location"] == f"/jobs/{job_id}"

    events = await follow(api, job_id)
    names = [e["event"] for e in events]
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
    assert names[:3] == ["queued", "started", "stage"]
    assert names[-1] == "completed"
    stages = [e["data"]["stage"] for e in events if e["event"] == "stage"]
    # "segment" is announced when depth finishes first and segmentation is still running.
    assert [s for s in stages if s != "segment"] == ["imagegen", "depth", "pointcloud", "storage"]
    assert stages.count("segment") <= 1
    assert "progress" in names
    progress = [e["data"]["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    final = events[-1]["data"]
    assert final["status"] == "completed" and final["error"] is None
    assert set(final["timing_ms"]) >= {"imagegen", "depth", "segment", "storage", "total"}

    state = (await api.client.get(f"/jobs/{job_id}")).json()
    for key in ("id", "status", "stage", "progress", "queue_position", "timing_ms", "error",
                "created_at", "updated_at", "prompt", "vibe", "mode", "source"):
        assert key in state
    assert state["status"] == "completed" and state["source"] == "prompt"
    assert state["prompt"] == "a lighthouse" and state["vibe"] == "stormy"

    result = await api.client.get(job["result_url"])
    assert result.status_code == 200
    # The same inputs through /generate give the same cloud (the fakes are deterministic).
    direct = await api.generate("a lighthouse", vibe="stormy")
    a, b = decode(result.content), decode(direct.content)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.colors, b.colors)
    np.testing.assert_array_equal(a.segments, b.segments)


async def test_upload_jobs(api):
    response = await api.upload("/jobs", api.png(64, 64), mode="standard", vibe="x")
    assert response.status_code == 202, response.text
    job = await api.wait_status(response.json()["id"], "completed")
    assert job["source"] == "upload" and job["prompt"] is None
    assert api.fakes.imagegen.calls == []


async def test_reconnecting_with_last_event_id_misses_nothing(api):
    api.fakes.depth.behaviour.delay_s = 0.3
    api.fakes.depth.behaviour.progress_steps = 3
    job_id = (await api.submit()).json()["id"]
    first = await follow(api, job_id, limit=3)
    assert [e["id"] for e in first] == ["1", "2", "3"]
    rest = await follow(api, job_id, last_event_id="3")
    assert rest[0]["id"] == "4"
    assert rest[-1]["event"] == "completed"
    everything = await follow(api, job_id, last_event_id="0")
    assert [(e["id"], e["event"]) for e in first + rest] == [
        (e["id"], e["event"]) for e in everything]
    # Past the end: nothing more, the stream just ends.
    assert await follow(api, job_id, last_event_id=everything[-1]["id"]) == []
    # A query parameter does the same for clients that cannot set headers.
    async with api.client.stream("GET", f"/jobs/{job_id}/events?after=3") as response:
        assert [e["id"] for e in await api.events(response)] == [e["id"] for e in rest]


async def test_keep_alive_comments_while_waiting(make_api):
    async with make_api(sse_ping_s=0.2) as api:
        api.fakes.depth.behaviour.delay_s = 0.7
        job_id = (await api.submit()).json()["id"]
        comments = 0
        async with api.client.stream("GET", f"/jobs/{job_id}/events") as response:
            async for line in response.aiter_lines():
                comments += line.startswith(":")
        assert comments >= 2


async def test_cancel_a_queued_job_at_once(make_api):
    async with make_api(max_concurrent_jobs=1) as api:
        api.fakes.depth.behaviour.stall = True
        running = (await api.submit("first")).json()["id"]
        await api.fakes.depth.wait_for_call()
        queued = (await api.submit("second")).json()["id"]
        third = (await api.submit("third")).json()["id"]
        assert (await api.client.get(f"/jobs/{queued}")).json()["queue_position"] == 1
        assert (await api.client.get(f"/jobs/{third}")).json()["queue_position"] == 2

        cancelled = await api.client.post(f"/jobs/{queued}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert (await api.client.get(f"/jobs/{third}")).json()["queue_position"] == 1
        assert (await api.client.get(f"/jobs/{running}")).json()["status"] == "running"
        assert api.record(queued)["status"] == "cancelled"
        events = await follow(api, queued)
        assert [e["event"] for e in events] == ["queued", "cancelled"]
        # Nothing of it reached a service.
        assert all(c.request_id != queued for c in api.fakes.imagegen.calls)
        for job_id in (running, third):
            await api.client.delete(f"/jobs/{job_id}")


async def test_cancel_a_running_job_cancels_its_service_calls(api):
    api.fakes.depth.behaviour.stall = True
    api.fakes.segment.behaviour.stall = True
    job_id = (await api.submit()).json()["id"]
    depth_call = await api.fakes.depth.wait_for_call()
    segment_call = await api.fakes.segment.wait_for_call()

    response = await api.client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    await asyncio.wait_for(depth_call.cancelled.wait(), 5)
    await asyncio.wait_for(segment_call.cancelled.wait(), 5)
    assert depth_call.outcome == segment_call.outcome == "cancelled"
    events = await follow(api, job_id)
    assert events[-1]["event"] == "cancelled"
    assert api.files_in(api.folder(job_id)) == ["metadata.json"]
    assert api.record(job_id)["status"] == "cancelled"
    # Cancelling again, or with DELETE, changes nothing.
    again = await api.client.delete(f"/jobs/{job_id}")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


async def test_cancel_during_storage_leaves_nothing_half_stored(api, monkeypatch):
    import orchestrator.pipeline as pipeline

    written = asyncio.Event()
    original = pipeline._write_files

    def slow_write(folder, files):
        original(folder, dict(list(files.items())[:1]))
        api_loop.call_soon_threadsafe(written.set)
        import time
        time.sleep(0.3)
        original(folder, files)

    api_loop = asyncio.get_running_loop()
    monkeypatch.setattr(pipeline, "_write_files", slow_write)
    job_id = (await api.submit()).json()["id"]
    await asyncio.wait_for(written.wait(), 5)
    response = await api.client.post(f"/jobs/{job_id}/cancel")
    assert response.json()["status"] == "cancelled"
    assert api.files_in(api.folder(job_id)) == ["metadata.json"]
    assert api.files_in(api.data_dir / "tmp") == []


async def test_a_full_queue_answers_429_with_retry_after(make_api):
    async with make_api(max_concurrent_jobs=1, max_queued_jobs=2) as api:
        api.fakes.depth.behaviour.stall = True
        ids = [(await api.submit(f"p{i}")).json()["id"] for i in range(3)]
        response = await api.submit("one too many")
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["detail"].startswith("the generation queue is full")
        upload = await api.upload("/jobs", api.png())
        assert upload.status_code == 429
        listed = (await api.client.get("/jobs")).json()
        assert sorted(item["id"] for item in listed["items"]) == sorted(ids)
        for job_id in ids:
            await api.client.post(f"/jobs/{job_id}/cancel")


async def test_an_idempotency_key_returns_the_same_job(api):
    headers = {"Idempotency-Key": "order-66"}
    first = await api.submit("a forest", headers=headers)
    second = await api.submit("a forest", headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    other = await api.submit("a desert", headers=headers)
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]
    await api.wait_status(first.json()["id"], "completed")
    assert len((await api.client.get("/jobs")).json()["items"]) == 1
    assert len(api.fakes.imagegen.calls) == 1
    # Uploads too: the image's content is part of the request's identity.
    upload_headers = {"Idempotency-Key": "upload-1"}
    a = await api.upload("/jobs", api.png(seed=1), headers=upload_headers)
    b = await api.upload("/jobs", api.png(seed=1), headers=upload_headers)
    assert a.json()["id"] == b.json()["id"]
    c = await api.upload("/jobs", api.png(seed=2), headers=upload_headers)
    assert c.status_code == 422


async def test_an_invalid_idempotency_key_is_422(api):
    response = await api.submit(headers={"Idempotency-Key": "x" * 300})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "idempotency-key"]


async def test_unknown_jobs_are_404(api):
    for path in ("/jobs/0123456789abcdef0123456789abcdef", "/jobs/nope",
                 "/jobs/0123456789abcdef0123456789abcdef/events"):
        response = await api.client.get(path)
        assert response.status_code == 404, path
        assert response.json()["detail"] == "no job with this id"
    response = await api.client.post("/jobs/0123456789abcdef0123456789abcdef/cancel")
    assert response.status_code == 404


async def test_a_shutdown_interrupts_running_jobs_and_a_restart_shows_them(make_api):
    async with make_api() as api:
        api.fakes.depth.behaviour.stall = True
        job_id = (await api.submit()).json()["id"]
        done_id = None
        depth_call = await api.fakes.depth.wait_for_call()
    # The server is gone: its job ended failed, interrupted, and the service call was cancelled.
    await asyncio.wait_for(depth_call.cancelled.wait(), 5)
    async with make_api() as api:
        api.fakes.depth.behaviour.stall = False
        state = (await api.client.get(f"/jobs/{job_id}")).json()
        assert state["status"] == "failed" and state["error"] == "interrupted"
        events = await follow(api, job_id)
        assert [e["event"] for e in events] == ["failed"]
        done_id = (await api.submit()).json()["id"]
        await api.wait_status(done_id, "completed")
    async with make_api() as api:
        # Finished jobs stay visible after a restart, and their end replays.
        assert (await api.client.get(f"/jobs/{done_id}")).json()["status"] == "completed"
        events = await follow(api, done_id)
        assert [e["event"] for e in events] == ["completed"]
        assert await follow(api, done_id, last_event_id=events[0]["id"]) == []
        listed = [item["id"] for item in (await api.client.get("/jobs")).json()["items"]]
        assert listed == [done_id, job_id]


async def test_fifty_concurrent_submissions_all_complete(make_api):
    async with make_api(max_queued_jobs=64) as api:
        async def submit(i: int):
            if i % 5 == 0:
                return await api.upload("/jobs", api.png(48, 32, seed=i))
            return await api.submit(f"scene {i}")

        responses = await asyncio.gather(*(submit(i) for i in range(50)))
        assert [r.status_code for r in responses] == [202] * 50
        ids = {r.json()["id"] for r in responses}
        assert len(ids) == 50
        for job_id in ids:
            await api.wait_status(job_id, "completed", timeout_s=60)
        listed = (await api.client.get("/jobs", params={"limit": 100})).json()["items"]
        assert {item["id"] for item in listed} == ids
        assert all(item["status"] == "completed" for item in listed)
        generations = (await api.client.get("/generations", params={"limit": 100})).json()
        assert generations["total"] == 50
