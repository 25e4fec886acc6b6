"""With tracing off (the default) a generation has no trace: metadata.json says so, and nothing
of OpenTelemetry's runs. (tests/e2e/test_observability.py covers tracing on.)"""

from __future__ import annotations

from orchestrator import tracing


async def test_without_tracing_the_record_has_a_null_trace_id(api):
    response = await api.generate()
    assert response.status_code == 200
    assert api.record(response.headers["x-generation-id"])["trace_id"] is None


def test_the_helpers_do_nothing_when_off():
    assert tracing.start_generation("0" * 32, "prompt", "standard") == (None, None)
    assert tracing.task_context(None) is None
    tracing.end_generation(None, "completed", None)
