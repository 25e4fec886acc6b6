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


def test_an_otlp_endpoint_receives_the_spans():
    """The exporter posts protobuf spans to <endpoint>/v1/traces (a local stand-in collector)."""
    import http.server
    import threading

    received: list[tuple[str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = f"""
from opentelemetry import trace
from scene_rpc.tracing import configure_tracing
assert configure_tracing("otlp-test", "http://127.0.0.1:{server.server_address[1]}")
with trace.get_tracer("t").start_as_current_span("exported-span"):
    pass
trace.get_tracer_provider().shutdown()  # flushes the batch
"""
    try:
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60, check=True)
    finally:
        server.shutdown()
    assert [path for path, _ in received] == ["/v1/traces"]
    assert b"exported-span" in received[0][1] and b"otlp-test" in received[0][1]
