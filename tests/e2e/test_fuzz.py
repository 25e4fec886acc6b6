"""API fuzzing: schemathesis generates requests from the orchestrator's own /openapi.json and
sends them to it, running as a process over the fake model services (also processes), so that
valid requests run whole generations.

Asserted for every operation (none excluded: the binary answers of /generate and the event
stream of /jobs/{id}/events are fuzzed like the rest; the stream ends with its job, and the fakes
finish jobs in milliseconds):

- ``not_a_server_error``: no 5xx, whatever the request;
- ``response_schema_conformance``: each answer matches the schema /openapi.json gives for it,
  where it gives one (routes without a ``response_model`` have only the generic object schema,
  so for them the check can only see that the answer is JSON of that shape);
- ``content_type_conformance``: each answer has a documented media type.

Not asserted: that every status code is documented (``status_code_conformance``: 404 for unknown
ids and 415 are not listed on every route) and that every schema-valid request is accepted
(``positive_data_acceptance``: e.g. an empty image file is schema-valid and refused).

Bounded: a fixed seed (a failure reproduces) and number of examples per operation, about 430
requests in all, on two workers: about a minute on two cores (schemathesis' own ``--max-time``
is not used: it repeats the fuzzing until the time is spent); the run is killed after
``MAX_TIME_S``. The generations' ids are not known to the generator, so ``/generations/{id}``
and its assets are fuzzed with ids that do not exist (404s), beside the listing.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from scene_dev.fakes.processes import fake_stack

pytestmark = pytest.mark.slow

CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
EXAMPLES_PER_OPERATION = 50
MAX_TIME_S = 170


@pytest.mark.timeout(240)
def test_fuzzing_the_api_finds_no_server_error_and_no_answer_off_its_schema(tmp_path):
    with fake_stack(tmp_path / "stack") as stack:
        command = [
            sys.executable, "-m", "schemathesis.cli", "run", f"{stack.url}/openapi.json",
            "--checks", CHECKS, "--phases", "examples,fuzzing",
            "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", "20261130",
            "--workers", "2", "--request-timeout", "60",
            "--generation-database", "none", "--no-color", "--suppress-health-check", "all",
            # A key, so that valid prompts get past 401 and run whole generations.
            "--header", "X-OpenAI-Key: sk-fuzz-0123456789abcdef",
        ]
        # In its own folder: schemathesis may write reports next to where it runs.
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                             timeout=MAX_TIME_S)
        output = run.stdout + run.stderr
        print(output[-600:])  # the summary: operations, requests, time
        assert run.returncode == 0, output[-12000:] + "\n" + stack.log("orchestrator")[-4000:]
        # Every operation of the schema was fuzzed.
        assert re.search(r"Selected: (\d+)/\1", output), output[-3000:]
        assert "Exception in ASGI application" not in stack.log("orchestrator")
