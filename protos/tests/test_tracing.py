"""Tracing is off unless configured: nothing is installed and log lines keep their old shape.
(With it on, tests/e2e/test_observability.py follows one trace through the four processes.)"""

import logging
import subprocess
import sys

from scene_rpc import tracing


def test_off_by_default_adds_nothing():
    assert not tracing.enabled()
    assert tracing.server_interceptors() == []
    assert tracing.client_interceptors() is None
    assert tracing.current_trace_id() is None
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert tracing.TraceIdFilter().filter(record) and record.trace == ""


def test_console_tracing_puts_the_trace_id_in_log_lines_and_spans():
    # In a child process: the tracer provider is process-wide and cannot be unset.
    script = """
import logging
from opentelemetry import trace
from scene_rpc.logs import configure_logging
from scene_rpc.tracing import configure_tracing, current_trace_id
configure_logging("test")
assert configure_tracing("test", "console")
with trace.get_tracer("t").start_as_current_span("work"):
    logging.getLogger("t").info("inside")
    print("ID", current_trace_id(), flush=True)
logging.getLogger("t").info("outside")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    trace_id = next(line.split()[1] for line in done.stdout.splitlines()
                    if line.startswith("ID "))
    assert f'"trace_id": "0x{trace_id}"' in done.stdout  # the console exporter's span
    inside, outside = [line for line in done.stderr.splitlines() if " t:" in line]
    assert inside.endswith(f"t: trace={trace_id} inside")
    assert outside.endswith("t: outside")
