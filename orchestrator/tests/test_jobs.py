"""A job on its own: its record never holds the inputs, and its live view and the view rebuilt
from its record agree."""

from __future__ import annotations

import numpy as np

from orchestrator.flow import JobInputs
from orchestrator.jobs import Job
from orchestrator.records import GenerationRecord, JobView


async def test_the_record_holds_no_inputs_and_the_two_views_agree():
    job = Job(JobInputs(source="upload", mode="panorama", prompt=None, vibe="calm",
                        rgb=np.zeros((2, 4, 3), np.uint8), openai_api_key="sk-secret",
                        quality="draft"), idempotency_key="k", fingerprint="f")
    job.enter_stage("depth")
    job.stage_progress("depth", 1.0)
    job.record_timing("depth", 0.25)
    job.status = "completed"
    record = job.record(last_event_id=9)
    assert isinstance(record, GenerationRecord)
    assert "sk-secret" not in record.model_dump_json()
    assert (record.job.idempotency_key, record.job.fingerprint, record.job.last_event_id) == (
        "k", "f", 9)
    stored = GenerationRecord.from_json(record.to_json())
    live = job.view().model_dump(exclude={"status", "stages", "queue_position", "progress",
                                          "stage"})
    rebuilt = JobView.from_record(stored).model_dump(
        exclude={"status", "stages", "queue_position", "progress", "stage"})
    assert live == rebuilt
    assert rebuilt["timing_ms"] == {"depth": 250.0} and rebuilt["quality"] == "draft"
    # Each event carries the view as JSON-ready data.
    assert job.events[-1].data["stages"]["depth"] == 1.0
