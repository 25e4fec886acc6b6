"""The generation store: records in the database with their metadata.json copy, commit as the
last step, recovery, the import of file-only records and the lock."""

from __future__ import annotations

import json

import pytest

from orchestrator.records import GenerationRecord
from orchestrator.storage import DataDirInUse, GenerationStore, valid_id

ID = "0123456789abcdef0123456789abcdef"
FILES = {"image.png": b"i", "depth.png": b"d", "segments.png": b"s", "pointcloud.bin": b"p"}


@pytest.fixture
async def store(tmp_path):
    store = GenerationStore(tmp_path / "data")
    await store.open()
    yield store
    await store.close()


def rec(fields: dict) -> GenerationRecord:
    return GenerationRecord.model_validate(fields)


def stage(store: GenerationStore, generation_id: str = ID):
    staging = store.staging(generation_id)
    for name, data in FILES.items():
        (staging / name).write_bytes(data)
    return staging


def test_ids_are_32_hex_digits():
    assert valid_id(ID)
    for bad in ("", "../" + ID[3:], ID.upper(), ID + "0", "/etc/passwd", ID[:31] + "/"):
        assert not valid_id(bad)


async def test_a_record_is_written_whole(store):
    await store.write_record(rec({"id": ID, "status": "queued", "created_at": "1"}))
    folder = store.root / ID
    assert [p.name for p in folder.iterdir()] == ["metadata.json"]
    assert json.loads((folder / "metadata.json").read_text())["status"] == "queued"
    assert (await store.read_record(ID)).status == "queued"
    assert await store.read_record("f" * 32) is None
    assert await store.read_record("../../etc/passwd") is None


async def test_commit_moves_the_assets_then_writes_the_completed_record(store):
    await store.write_record(rec({"id": ID, "status": "running"}))
    staging = stage(store)
    await store.commit(staging, rec({"id": ID, "status": "completed"}))
    assert not staging.exists()
    assert sorted(p.name for p in (store.root / ID).iterdir()) == sorted(
        [*FILES, "metadata.json"])
    assert (await store.asset_path(ID, "depth.png")).read_bytes() == b"d"
    assert await store.asset_path(ID, "metadata.json") is None
    assert await store.asset_path(ID, "../metadata.json") is None


async def test_assets_of_a_record_that_is_not_completed_are_not_served(store):
    # As if a crash happened after the moves and before the record said completed.
    await store.write_record(rec({"id": ID, "status": "running"}))
    for name, data in FILES.items():
        (store.root / ID / name).write_bytes(data)
    assert await store.asset_path(ID, "image.png") is None


async def test_recovery_fails_unfinished_records_and_removes_their_files(store, tmp_path):
    running, queued, done = "a" * 32, "b" * 32, "c" * 32
    await store.write_record(rec({"id": running, "status": "running", "job": {"last_event_id": 7}}))
    (store.root / running / "image.png").write_bytes(b"partial")
    await store.write_record(rec({"id": queued, "status": "queued"}))
    await store.commit(stage(store, done), rec({"id": done, "status": "completed"}))
    leftover = store.staging("d" * 32)
    await store.close()

    again = GenerationStore(tmp_path / "data")
    await again.open()
    assert not leftover.exists()  # staging of a process that died
    changed = await again.recover_interrupted("2026-01-01T00:00:00Z")
    assert sorted(r.id for r in changed) == [running, queued]
    for generation_id in (running, queued):
        record = await again.read_record(generation_id)
        assert record.status == "failed" and record.error == "interrupted"
        assert record.finished_at == "2026-01-01T00:00:00Z"
        assert [p.name for p in (again.root / generation_id).iterdir()] == ["metadata.json"]
    assert (await again.read_record(done)).status == "completed"
    assert await again.asset_path(done, "pointcloud.bin") is not None
    await again.close()


async def test_one_process_per_data_directory(store, tmp_path):
    with pytest.raises(DataDirInUse):
        await GenerationStore(tmp_path / "data").open()
    await store.close()
    other = GenerationStore(tmp_path / "data")
    await other.open()
    await other.close()


async def test_listing_is_newest_first_and_skips_foreign_entries(store):
    for i, generation_id in enumerate(("1" * 32, "2" * 32, "3" * 32)):
        await store.write_record(rec({"id": generation_id, "status": "completed",
                                "created_at": f"2026-01-0{i + 1}T00:00:00Z"}))
    (store.root / "notes.txt").write_text("not a generation")
    (store.root / ("e" * 32)).mkdir()  # no record yet
    assert [r.id for r in await store.list_records()] == ["3" * 32, "2" * 32, "1" * 32]


async def test_delete(store):
    await store.commit(stage(store), rec({"id": ID, "status": "completed"}))
    assert await store.delete(ID)
    assert not (store.root / ID).exists()
    assert list(store.tmp.iterdir()) == []
    assert not await store.delete(ID)
    assert not await store.delete("../generations")


async def test_a_derived_asset_is_built_once_and_a_failed_build_leaves_nothing(store):
    await store.commit(stage(store), rec({"id": ID, "status": "completed", "created_at": "1"}))
    folder = store.root / ID
    before = sorted(p.name for p in folder.iterdir())
    source, record = await store.completed_cloud(ID)

    def failing(source, record):
        raise RuntimeError("the build failed")

    with pytest.raises(RuntimeError):
        store.derived_asset(ID, "scene.glb", source, record, failing)
    assert sorted(p.name for p in folder.iterdir()) == before

    calls = []

    def build(source, record):
        calls.append((source.name, record.status))
        return source.read_bytes() * 2

    path = store.derived_asset(ID, "scene.glb", source, record, build)
    assert path == folder / "scene.glb" and path.read_bytes() == b"pp"
    assert store.derived_asset(ID, "scene.glb", source, record, build) == path
    assert calls == [("pointcloud.bin", "completed")]
    # Only known derived names, and only for completed generations.
    assert store.derived_asset(ID, "metadata.json", source, record, build) is None
    await store.write_record(rec({"id": ID, "status": "failed", "created_at": "1"}))
    assert await store.completed_cloud(ID) is None


async def test_the_listing_pages_from_the_database(store, tmp_path):
    ids = [f"{i:032x}" for i in range(30)]
    for i, generation_id in enumerate(ids):
        status = "failed" if i % 3 == 0 else "completed"
        await store.write_record(rec({"id": generation_id, "status": status,
                                      "created_at": f"2026-01-01T00:00:{i:02d}Z"}))
    newest_first = ids[::-1]
    records, total = await store.page(5, offset=10)
    assert [r.id for r in records] == newest_first[10:15] and total == 30
    failed, total_failed = await store.page(4, offset=2, status="failed")
    assert total_failed == 10
    assert [r.id for r in failed] == [g for g in newest_first if int(g, 16) % 3 == 0][2:6]
    assert await store.page(5, offset=40) == ([], 30)

    # A status change moves the record between the per-status pages; a delete removes it.
    await store.write_record(rec({"id": ids[0], "status": "completed",
                                  "created_at": "2026-01-01T00:00:00Z"}))
    assert (await store.page(1, status="failed"))[1] == 9
    await store.commit(stage(store, ids[1]), rec({"id": ids[1], "status": "completed",
                                                  "created_at": "2026-01-01T00:00:01Z"}))
    assert await store.delete(ids[1])
    page, total = await store.page(100)
    assert total == 29 and ids[1] not in [r.id for r in page]

    # The totals come from the counts the writes keep: they agree with a count of the rows.
    await store.recount()
    assert (await store.page(1))[1] == 29
    assert (await store.page(1, status="failed"))[1] == 9
    assert (await store.page(1, status="running"))[1] == 0

    # The database is the record: a reopened store pages without reading any metadata.json.
    await store.close()
    for generation_id in ids:
        (store.root / generation_id / "metadata.json").unlink(missing_ok=True)
    again = GenerationStore(tmp_path / "data")
    await again.open()
    assert [r.id for r in (await again.page(100))[0]] == [r.id for r in page]
    assert (await again.page(1, status="failed"))[1] == 9
    await again.close()


async def test_records_that_only_have_a_metadata_json_are_imported_once(store, tmp_path):
    await store.write_record(rec({"id": ID, "status": "completed", "created_at": "1"}))
    old = "a" * 32
    (store.root / old).mkdir()
    (store.root / old / "metadata.json").write_text(json.dumps(
        {"id": old, "status": "completed", "created_at": "0", "prompt": "from an old version"}))
    bad = store.root / ("b" * 32)
    bad.mkdir()
    (bad / "metadata.json").write_text("{not json")
    await store.close()

    again = GenerationStore(tmp_path / "data")
    await again.open()
    assert [r.id for r in (await again.page(10))[0]] == [ID, old]
    assert (await again.read_record(old)).prompt == "from an old version"
    # Imported: a second import reads nothing it has (the unreadable one is left out again).
    assert await again.import_files() == 0
    await again.close()
