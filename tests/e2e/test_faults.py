"""Faults across processes: a model service that dies mid-request, one that is too slow for its
deadline, and an orchestrator killed with SIGKILL during a job.

The slow depth service is the real one configured to work hard: forced 16-pixel tiles, one per
forward pass, hundreds of passes for a small image. It makes progress (events flow) and burns
CPU the whole time, which is what lets the tests see it stop when the orchestrator cancels.
"""

from __future__ import annotations

import concurrent.futures
import signal
import time

import httpx
import pytest

from tests.stack import running_stack, wait_until

pytestmark = pytest.mark.slow
DEPTH_CALL_DEADLINE_S = 6.0
SLOW_DEPTH = {
    "DEPTH_TILE_MODE": "forced",
    "DEPTH_TILE_SIZE": "16",
    "DEPTH_TILE_MAX_COUNT": "100000",
    # Half of each tile shared: about 2.3x the tiles of the default overlap, so the pass outlasts
    # the deadline on a quiet machine too (at 0.25 it finished within 6 s once).
    "DEPTH_TILE_OVERLAP": "0.5",
    "DEPTH_BATCH_SIZE": "1",
    # Eager: the compiled runtime runs these tiles fast enough to beat the deadline.
    "DEPTH_RUNTIME": "torch",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_models_dir):
    env = {"DEPTH_CALL_DEADLINE_S": str(DEPTH_CALL_DEADLINE_S)}
    with running_stack(tmp_path_factory.mktemp("e2e-faults"), extra_env=env,
                       tiny_models_dir=tiny_models_dir) as stack:
        yield stack


def upload(client: httpx.Client, photo: bytes, path: str = "/generate") -> httpx.Response:
    return client.post(path, files={"image": ("chelsea.png", photo, "image/png")})


def depth_models_loaded(client: httpx.Client) -> bool:
    depth = client.get("/health").json()["services"]["depth"]
    return bool(depth.get("serving")) and all(
        m["loaded"] for m in (depth.get("info") or {}).get("models", [{"loaded": False}]))


def use_depth(stack, client, *, slow: bool) -> None:
    """Depth running and loaded, slow or as planned; restarted only when it must change."""
    wanted = {**stack.planned_env["depth"], **(SLOW_DEPTH if slow else {})}
    process = stack.processes.get("depth")
    if process is None or not process.alive or stack.specs["depth"].env != wanted:
        stack.restart("depth", env=SLOW_DEPTH if slow else None)
    wait_until(lambda: depth_models_loaded(client), 60, "the depth service loaded")


def running_job(client: httpx.Client, stage_started: str) -> dict | None:
    """The running job once the service of ``stage_started`` has reported progress."""
    for job in client.get("/jobs").json()["items"]:
        if job["status"] == "running" and (job.get("stages") or {}).get(stage_started, 0) > 0:
            return job
    return None


def assert_failed_without_assets(client: httpx.Client, stack, generation_id: str) -> dict:
    record = client.get(f"/generations/{generation_id}").json()
    assert record["status"] == "failed", record
    for asset in ("image.png", "depth.png", "segments.png", "pointcloud.bin"):
        assert client.get(f"/generations/{generation_id}/{asset}").status_code == 404, asset
    on_disk = stack.data_dir / "generations" / generation_id
    assert sorted(p.name for p in on_disk.iterdir()) == ["metadata.json"]
    assert not any((stack.data_dir / "tmp").iterdir()), "staged files left behind"
    return record


def test_a_stalled_service_ends_in_a_504_at_the_deadline_and_is_told_to_cancel(
        stack, client, photo):
    use_depth(stack, client, slow=True)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        pending = pool.submit(upload, client, photo)
        wait_until(lambda: running_job(client, "depth"), 30, "depth working on the job")
        busy_from = stack.cpu_seconds("depth"), time.monotonic()
        response = pending.result(timeout=60)
        elapsed_s = time.monotonic() - started
        busy_until = stack.cpu_seconds("depth"), time.monotonic()
    assert response.status_code == 504, response.text
    assert "depth" in response.json()["detail"]
    assert DEPTH_CALL_DEADLINE_S - 0.5 <= elapsed_s < DEPTH_CALL_DEADLINE_S + 5
    # It was working until the deadline ...
    working = (busy_until[0] - busy_from[0]) / (busy_until[1] - busy_from[1])
    # ... and stops once the cancellation arrives (after the forward pass in progress).
    time.sleep(1.0)
    cpu_before = stack.cpu_seconds("depth")
    time.sleep(2.0)
    idle = (stack.cpu_seconds("depth") - cpu_before) / 2.0
    assert working > 0.2 and idle < 0.1, (
        f"depth used {working:.2f} CPU while serving and {idle:.2f} after the deadline")
    assert "request '" not in stack.log("depth").split("---- start")[-1], (
        "the cancelled request was completed")
    assert_failed_without_assets(client, stack, response.headers["X-Generation-Id"])


def test_depth_killed_mid_request_is_a_503_naming_it_then_a_restart_recovers(
        stack, client, photo):
    use_depth(stack, client, slow=True)
    orchestrator_pid = stack.pid("orchestrator")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(upload, client, photo)
        job = wait_until(lambda: running_job(client, "depth"), 30, "depth working on the job")
        stack.kill("depth", signal.SIGKILL)
        killed_at = time.monotonic()
        response = pending.result(timeout=60)
        answered_after_s = time.monotonic() - killed_at
    assert response.status_code == 503, response.text
    assert "depth" in response.json()["detail"]
    assert answered_after_s < DEPTH_CALL_DEADLINE_S, "the failure waited for the deadline"
    generation_id = response.headers["X-Generation-Id"]
    assert generation_id == job["id"]
    record = assert_failed_without_assets(client, stack, generation_id)
    assert "depth" in record["error"]

    use_depth(stack, client, slow=False)
    response = upload(client, photo)
    assert response.status_code == 200, response.text
    assert stack.pid("orchestrator") == orchestrator_pid, "the orchestrator was restarted"


def test_orchestrator_killed_during_a_job_keeps_finished_generations_and_fails_the_rest(
        stack, client, photo):
    use_depth(stack, client, slow=False)
    finished = upload(client, photo)
    assert finished.status_code == 200, finished.text
    finished_id = finished.headers["X-Generation-Id"]
    assets = {name: client.get(f"/generations/{finished_id}/{name}").content
              for name in ("image.png", "depth.png", "segments.png", "pointcloud.bin")}

    # A job that cannot finish: depth stopped (SIGSTOP) while it is being served.
    stack.pause("depth")
    try:
        submitted = upload(client, photo, "/jobs")
        assert submitted.status_code == 202, submitted.text
        interrupted_id = submitted.json()["id"]
        wait_until(lambda: client.get(f"/jobs/{interrupted_id}").json()["status"] == "running",
                   30, "the job running")
        stack.kill("orchestrator", signal.SIGKILL)
    finally:
        stack.resume("depth")
    stack.start("orchestrator")

    record = client.get(f"/jobs/{interrupted_id}").json()
    assert record["status"] == "failed"
    assert "interrupted" in record["error"]
    assert_failed_without_assets(client, stack, interrupted_id)
    assert client.get(f"/generations/{finished_id}").json()["status"] == "completed"
    for name, content in assets.items():
        assert client.get(f"/generations/{finished_id}/{name}").content == content, name
    # And the restarted orchestrator serves new work with the services it reconnected to.
    assert upload(client, photo).status_code == 200
