"""The job manager with a scripted runner: FIFO order, events, eviction and replay from disk."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.errors import ApiError, QueueFull
from orchestrator.flow import JobInputs, Outcome
from orchestrator.job_manager import JobManager
from orchestrator.jobs import MAX_EVENTS_PER_JOB
from orchestrator.records import GenerationResult
from orchestrator.settings import Settings
from orchestrator.storage import GenerationStore


class ScriptedRunner:
    """Each job waits for its release; records the order in which jobs started."""

    def __init__(self, store: GenerationStore):
        self.store = store
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}
        self.fail: dict[str, Exception] = {}

    async def __call__(self, generation_id, inputs, progress) -> Outcome:
        self.started.append(inputs.prompt)
        gate = self.release.setdefault(inputs.prompt, asyncio.Event())
        progress.enter_stage("depth")
        for step in range(1, 201):
            progress.stage_progress("depth", step / 200)
            progress.stage_progress("segment", step / 200)
        await gate.wait()
        if inputs.prompt in self.fail:
            raise self.fail[inputs.prompt]
        staging = self.store.staging(generation_id)
        for name in ("image.png", "depth.png", "segments.png", "pointcloud.bin"):
            (staging / name).write_bytes(b"x")
        return Outcome(staging, GenerationResult(point_count=1))


@pytest.fixture
async def manager(tmp_path, each_database_url):
    # On SQLite and on PostgreSQL.
    settings = Settings(data_dir=tmp_path, max_concurrent_jobs=2, max_queued_jobs=3,
                        job_history=2, database_url=each_database_url)
    store = GenerationStore(tmp_path, each_database_url)
    await store.open()
    runner = ScriptedRunner(store)
    manager = JobManager(settings, store, runner)
    await manager.start()
    manager.runner_script = runner
    yield manager
    await manager.close()
    await store.close()


def inputs(prompt: str) -> JobInputs:
    return JobInputs(source="prompt", mode="standard", prompt=prompt, vibe="",
                     openai_api_key="sk-x")


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def test_jobs_start_in_submission_order(manager):
    script = manager.runner_script
    views = [(await manager.submit(inputs(p)))[0] for p in "abcde"]
    await settle()
    assert script.started == ["a", "b"]
    assert [(await manager.view(v.id)).queue_position for v in views[2:]] == [1, 2, 3]
    with pytest.raises(QueueFull) as refused:
        await manager.submit(inputs("f"))
    assert refused.value.status == 429 and "Retry-After" in refused.value.headers
    for prompt in "abcde":
        script.release.setdefault(prompt, asyncio.Event()).set()
        await settle()
    for view in views:
        await manager.wait(view.id)
    assert script.started == list("abcde")
    assert manager.stats == {"running": 0, "queued": 0, "max_concurrent_jobs": 2,
                             "max_queued_jobs": 3}


async def test_progress_events_are_throttled_and_monotonic(manager):
    view, _ = await manager.submit(inputs("a"))
    manager.runner_script.release.setdefault("a", asyncio.Event()).set()
    await manager.wait(view.id)
    job = manager.get(view.id)
    progress = [e.data["progress"] for e in job.events if e.name == "progress"]
    # 400 reports from the services, at most one event per percent of overall progress.
    assert 10 <= len(progress) <= 101
    assert progress == sorted(progress)
    assert [e.id for e in job.events] == list(range(1, len(job.events) + 1))
    assert job.events[-1].name == "completed"
    assert len(job.events) < MAX_EVENTS_PER_JOB


async def test_the_stage_names_the_model_still_running(manager):
    view, _ = await manager.submit(inputs("a"))
    job = manager.get(view.id)
    await settle()
    job.stages.clear()
    job.enter_stage("depth")
    job.stage_progress("depth", 1.0)
    assert job.stage == "segment"
    assert [e.name for e in job.events[-2:]] == ["stage", "progress"]
    assert job.events[-2].data["stage"] == "segment"
    manager.runner_script.release.setdefault("a", asyncio.Event()).set()
    await manager.wait(view.id)


async def test_failures_keep_their_status_and_message(manager, caplog):
    view, _ = await manager.submit(inputs("a"))
    manager.runner_script.fail["a"] = ApiError(503, "the depth service is down")
    manager.runner_script.release.setdefault("a", asyncio.Event()).set()
    job = await manager.wait(view.id)
    assert (job.status, job.error_status, job.error) == (
        "failed", 503, "the depth service is down")
    manager.runner_script.fail["b"] = RuntimeError("a bug")
    view, _ = await manager.submit(inputs("b"))
    manager.runner_script.release.setdefault("b", asyncio.Event()).set()
    job = await manager.wait(view.id)
    # A bug is not described to the client: the generic answer, the traceback in the log.
    assert (job.error_status, job.error) == (500, "internal error")
    assert "a bug" in caplog.text


async def test_finished_jobs_leave_memory_but_replay_from_disk(manager):
    ids = []
    for prompt in "abc":
        view, _ = await manager.submit(inputs(prompt))
        manager.runner_script.release.setdefault(prompt, asyncio.Event()).set()
        await manager.wait(view.id)
        ids.append(view.id)
    # job_history=2: the first job is only on disk now.
    assert manager.get(ids[0]) is None and manager.get(ids[2]) is not None
    assert (await manager.view(ids[0])).status == "completed"
    replay = [event async for event in manager.events(ids[0], 0)]
    assert [e.name for e in replay] == ["completed"]
    assert [e async for e in manager.events(ids[0], replay[0].id)] == []
    live = [event.name async for event in manager.events(ids[2], 0)]
    assert live[0] == "queued" and live[-1] == "completed"
    assert [item.id for item in await manager.list(10)] == ids[::-1]


async def test_a_result_that_cannot_be_stored_fails_the_job_and_stores_nothing(manager,
                                                                               monkeypatch):
    """A commit that fails (here: the record cannot be written) is the server's fault: the job
    ends failed with a record (not stuck running), and its staged files are gone. (A result
    key the record lacks, the old way to get here, cannot be built any more: the outcome is
    typed.)"""
    script = manager.runner_script
    store = manager.store
    real_put = store.put_row

    async def refuse_completed(conn, record):
        if record.status == "completed":
            raise OSError("not_a_field: the disk refused the record")
        await real_put(conn, record)

    monkeypatch.setattr(store, "put_row", refuse_completed)
    view, _ = await manager.submit(inputs("a"))
    script.release.setdefault("a", asyncio.Event()).set()
    job = await manager.wait(view.id)
    assert job.status == "failed" and job.error_status == 500
    assert "not_a_field" in job.error
    assert (await manager.store.read_record(view.id)).status == "failed"
    assert list(manager.store.tmp.iterdir()) == []
    assert sorted(p.name for p in (manager.store.root / view.id).iterdir()) == ["metadata.json"]
