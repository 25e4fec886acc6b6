"""The stored record and its views: strict when written, lenient when read."""

from __future__ import annotations

import pytest

from orchestrator.records import GenerationRecord, JobView

ID = "0123456789abcdef0123456789abcdef"


def test_a_new_record_refuses_keys_the_model_does_not_know():
    with pytest.raises(TypeError, match="queue_position"):
        GenerationRecord.build(id=ID, status="failed", queue_position=None)
    assert GenerationRecord.build(id=ID, status="queued").job.last_event_id is None


def test_a_record_read_back_ignores_unknown_keys_and_defaults_missing_ones():
    record = GenerationRecord.model_validate_json(
        f'{{"id": "{ID}", "status": "completed", "retired": 1, "queue_position": 3}}')
    assert record.mode == "standard" and record.timing_ms == {} and record.labels is None
    assert "retired" not in record.model_dump()


def test_the_old_recoverys_top_level_event_id_clears_the_jobs():
    record = GenerationRecord.model_validate(
        {"id": ID, "status": "failed", "last_event_id": None, "job": {"last_event_id": 12}})
    assert record.job.last_event_id is None


def test_the_views_hide_the_bookkeeping():
    record = GenerationRecord.build(id=ID, status="completed", prompt="p",
                                    job={"idempotency_key": "k", "last_event_id": 3})
    assert "job" not in record.public().model_dump()
    view = JobView.from_record(record)
    assert view.prompt == "p" and view.queue_position is None
    assert view.result_url == f"/generations/{ID}/pointcloud.bin"


def test_a_field_in_an_older_shape_is_left_out_not_the_whole_record():
    raw = (f'{{"id": "{ID}", "status": "completed", "prompt": "kept", "bounds": [0, 1],'
           ' "labels": [{"label": "sky"}]}').encode()
    record = GenerationRecord.from_json(raw)
    assert record.prompt == "kept" and record.bounds is None and record.labels is None
    with pytest.raises(ValueError):
        GenerationRecord.from_json(f'{{"id": "{ID}", "status": "lost"}}'.encode())
    with pytest.raises(ValueError):
        GenerationRecord.from_json(b"[1, 2]")
