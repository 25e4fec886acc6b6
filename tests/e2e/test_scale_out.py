"""Several orchestrators over one database, as real processes over the fake model services.

With PostgreSQL: replicas A and B share the database and the data directory; a job submitted to
one streams and is served through the other, a replica killed mid-job has its job taken up by
the other, the queue bound holds across both, a delete is seen everywhere at once. With SQLite
(the default) the same tests run against one orchestrator, which is then both A and B.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from pointcloud import decode
from scene_dev.paths import REPO_ROOT
from scene_dev.run_plan import free_ports

pytestmark = pytest.mark.slow

# Model seconds per call of the fakes: long enough to find a job running, short for the suite.
DEPTH_DELAY_S = 1.0
LEASE_S = 1.5
STORED = ["depth.png", "image.png", "metadata.json", "pointcloud.bin", "segments.png"]


def _wait_until(ready, process: subprocess.Popen, log: Path, what: str,
                timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready in {timeout_s:.0f} s:\n{log.read_text()}")
        time.sleep(0.1)


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@pytest.fixture(scope="module")
def fake_services(tmp_path_factory) -> Iterator[dict[str, str]]:
    """The fake depth, segment and imagegen services (one process); their addresses."""
    folder = tmp_path_factory.mktemp("fakes")
    ports = dict(zip(("depth", "segment", "imagegen"), free_ports(3), strict=True))
    log = folder / "fakes.log"
    process = _spawn([sys.executable, "-m", "scene_dev.fakes.grpc_services",
                      "--depth-port", str(ports["depth"]),
                      "--segment-port", str(ports["segment"]),
                      "--imagegen-port", str(ports["imagegen"]),
                      "--depth-delay", str(DEPTH_DELAY_S), "--image-size", "96x64"],
                     dict(os.environ), log)
    _wait_until(lambda: any(line.startswith("{") for line in log.read_text().splitlines()),
                process, log, "the fakes")
    try:
        yield {f"{name.upper()}_SERVICE_ADDR": f"127.0.0.1:{port}"
               for name, port in ports.items()}
    finally:
        _stop(process)


@dataclass
class Replica:
    name: str
    url: str
    process: subprocess.Popen
    log: Path

    def kill(self) -> None:
        _stop(self.process, signal.SIGKILL)


@dataclass
class Cluster:
    a: Replica
    b: Replica
    data_dir: Path
    engine: str
    start: object  # starts one more replica: start(name) -> Replica

    @property
    def shared(self) -> bool:
        return self.a is not self.b


@pytest.fixture
def replica_env() -> dict[str, str]:
    """Settings of the cluster's replicas beyond the fixture's (a test parametrises it)."""
    return {}


@pytest.fixture(params=["postgresql", "sqlite"])
def cluster(request, tmp_path, fake_services, replica_env) -> Iterator[Cluster]:
    """Two orchestrators over one PostgreSQL database and data directory; or, for SQLite, one
    orchestrator that is both."""
    engine = request.param
    database_url = request.getfixturevalue("postgres_url") if engine == "postgresql" else ""
    data_dir = tmp_path / "data"
    started: list[Replica] = []

    def start(name: str) -> Replica:
        (port,) = free_ports(1)
        env = {**os.environ, **fake_services, "ORCHESTRATOR_HOST": "127.0.0.1",
               "ORCHESTRATOR_PORT": str(port), "DATA_DIR": str(data_dir),
               "DATABASE_URL": database_url, "JOB_LEASE_S": str(LEASE_S), "JOB_POLL_S": "0.1",
               "HEALTH_TIMEOUT_S": "1", "SSE_PING_S": "1", **replica_env}
        log = tmp_path / f"orchestrator-{name}.log"
        process = _spawn([sys.executable, "-m", "orchestrator"], env, log)
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait_until(healthy, process, log, f"orchestrator {name}")
        replica = Replica(name, url, process, log)
        started.append(replica)
        return replica

    try:
        a = start("a")
        b = start("b") if engine == "postgresql" else a
        yield Cluster(a, b, data_dir, engine, start)
    finally:
        for replica in started:
            _stop(replica.process)


def png(seed: int, width: int = 96, height: int = 64) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


async def submit(client: httpx.AsyncClient, replica: Replica, seed: int,
                 path: str = "/jobs") -> httpx.Response:
    return await client.post(f"{replica.url}{path}",
                             files={"image": ("photo.png", png(seed), "image/png")},
                             data={"mode": "standard"})


async def wait_status(client: httpx.AsyncClient, replica: Replica, job_id: str, *statuses: str,
                      timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = (await client.get(f"{replica.url}/jobs/{job_id}")).json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {job['status']}, not one of {statuses}")
        await asyncio.sleep(0.05)


async def events(client: httpx.AsyncClient, replica: Replica, job_id: str,
                 last_event_id: int | None = None, limit: int | None = None) -> list[dict]:
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    found: list[dict] = []
    current: dict = {}
    async with client.stream("GET", f"{replica.url}/jobs/{job_id}/events",
                             headers=headers) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line == "":
                if current:
                    current["data"] = json.loads(current["data"])
                    current["id"] = int(current["id"])
                    found.append(current)
                    current = {}
                    if limit is not None and len(found) >= limit:
                        break
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            current[key] = value.removeprefix(" ")
    return found


@contextlib.asynccontextmanager
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as client:
        yield client


def stored_files(cluster: Cluster, job_id: str) -> list[str]:
    folder = cluster.data_dir / "generations" / job_id
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


async def test_a_job_sent_to_a_streams_through_b_and_is_served_by_b(cluster):
    async with http() as client:
        accepted = await submit(client, cluster.a, seed=1)
        assert accepted.status_code == 202
        job_id = accepted.json()["id"]
        # The first events through A, the rest through B after them (Last-Event-ID).
        first = await events(client, cluster.a, job_id, limit=2)
        rest = await events(client, cluster.b, job_id, last_event_id=first[-1]["id"])
        stream = first + rest
        names = [e["event"] for e in stream]
        assert names[0] == "queued" and "started" in names and names[-1] == "completed"
        ids = [e["id"] for e in stream]
        assert ids == sorted(set(ids))
        assert all(e["data"]["id"] == job_id for e in stream)
        # A client that saw it all gets nothing more, from either replica.
        assert await events(client, cluster.b, job_id, last_event_id=ids[-1]) == []

        job = (await client.get(f"{cluster.b.url}/jobs/{job_id}")).json()
        assert job["status"] == "completed"
        cloud_b = await client.get(f"{cluster.b.url}/generations/{job_id}/pointcloud.bin")
        cloud_a = await client.get(f"{cluster.a.url}/generations/{job_id}/pointcloud.bin")
        assert cloud_b.status_code == 200 and cloud_b.content == cloud_a.content
        record = (await client.get(f"{cluster.b.url}/generations/{job_id}")).json()
        assert decode(cloud_b.content).count == record["point_count"]
        assert stored_files(cluster, job_id) == STORED


async def test_a_replica_killed_mid_job_has_its_job_taken_up(cluster, fake_services):
    async with http() as client:
        upload = (await submit(client, cluster.a, seed=2)).json()["id"]
        prompt = (await client.post(f"{cluster.a.url}/jobs", json={"prompt": "a quiet lake"},
                                    headers={"X-OpenAI-Key": "sk-test"})).json()["id"]
        await wait_status(client, cluster.b, upload, "running")
        await wait_status(client, cluster.b, prompt, "running")
        cluster.a.kill()
        if not cluster.shared:
            # SQLite: the only orchestrator comes back, and finds both jobs interrupted.
            cluster.b = cluster.a = cluster.start("a-again")
        survivor = cluster.b
        ended = await wait_status(client, survivor, upload, "completed", "failed")
        if cluster.shared:
            # The upload's bytes are in the database: B ran it again, under the same id.
            assert ended["status"] == "completed", ended
            assert stored_files(cluster, upload) == STORED
            cloud = await client.get(f"{survivor.url}/generations/{upload}/pointcloud.bin")
            record = (await client.get(f"{survivor.url}/generations/{upload}")).json()
            assert decode(cloud.content).count == record["point_count"]
        else:
            assert (ended["status"], ended["error"]) == ("failed", "interrupted")
            assert stored_files(cluster, upload) == ["metadata.json"]
        # The prompt's key was only in A's memory: it cannot run anywhere else.
        gone = await wait_status(client, survivor, prompt, "completed", "failed")
        assert (gone["status"], gone["error"], gone["error_status"]) == (
            "failed", "interrupted", 503)
        assert stored_files(cluster, prompt) == ["metadata.json"]
        # Each once in the listing; the end of each replays through the survivor.
        listing = (await client.get(f"{survivor.url}/generations",
                                    params={"limit": 50})).json()
        ids = [item["id"] for item in listing["items"]]
        assert sorted(ids) == sorted([upload, prompt]) and listing["total"] == 2
        replay = await events(client, survivor, prompt)
        assert [e["event"] for e in replay][-1] == "failed"


@pytest.mark.parametrize("replica_env", [{"MAX_QUEUED_JOBS": "20", "MAX_CONCURRENT_JOBS": "2"}])
async def test_a_burst_over_both_replicas_keeps_the_queue_bound(cluster):
    async with http() as client:
        replicas = [cluster.a, cluster.b]

        async def one(i: int) -> tuple[str, httpx.Response]:
            path = "/generate" if i % 3 == 0 else "/jobs"
            return path, await submit(client, replicas[i % 2], seed=100 + i, path=path)

        answers = await asyncio.gather(*(one(i) for i in range(60)))
        statuses = [response.status_code for _, response in answers]
        assert set(statuses) <= {200, 202, 429}, statuses
        assert 429 in statuses
        for _, response in answers:
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
        # Every 200 is what was stored, byte for byte.
        for _, response in answers:
            if response.status_code == 200:
                job_id = response.headers["X-Generation-Id"]
                stored = cluster.data_dir / "generations" / job_id / "pointcloud.bin"
                assert stored.read_bytes() == response.content
        # Every accepted job ends completed, its files whole, its cloud what its record says.
        accepted = [r.json()["id"] for p, r in answers if r.status_code == 202]
        for job_id in accepted:
            job = await wait_status(client, cluster.b, job_id, "completed", "failed",
                                    "cancelled", timeout_s=120)
            assert job["status"] == "completed", job
            assert stored_files(cluster, job_id) == STORED
            served = await client.get(f"{cluster.a.url}/generations/{job_id}/pointcloud.bin")
            stored = cluster.data_dir / "generations" / job_id / "pointcloud.bin"
            assert served.content == stored.read_bytes()
        # Nothing lost, nothing twice: the listing holds each stored generation once.
        done = {r.headers["X-Generation-Id"] for p, r in answers if r.status_code == 200}
        listing = (await client.get(f"{cluster.b.url}/generations",
                                    params={"limit": 200})).json()
        ids = [item["id"] for item in listing["items"]]
        assert len(ids) == len(set(ids)) == listing["total"]
        assert set(ids) == done | set(accepted)


async def test_a_delete_through_a_is_seen_by_b_and_the_listings_agree(cluster):
    async with http() as client:
        made = []
        for seed in (10, 11, 12):
            response = await submit(client, cluster.a, seed=seed, path="/generate")
            assert response.status_code == 200
            made.append(response.headers["X-Generation-Id"])
        for offset in (0, 2):
            pages = [(await client.get(f"{replica.url}/generations",
                                       params={"limit": 2, "offset": offset})).json()
                     for replica in (cluster.a, cluster.b)]
            assert pages[0] == pages[1]
        first = (await client.get(f"{cluster.b.url}/generations", params={"limit": 2})).json()
        assert [item["id"] for item in first["items"]] == made[::-1][:2]
        assert first["total"] == 3

        assert (await client.delete(f"{cluster.a.url}/generations/{made[1]}")).status_code == 204
        assert (await client.get(f"{cluster.b.url}/generations/{made[1]}")).status_code == 404
        assert (await client.get(f"{cluster.b.url}/jobs/{made[1]}")).status_code == 404
        listing = (await client.get(f"{cluster.b.url}/generations")).json()
        assert [item["id"] for item in listing["items"]] == [made[2], made[0]]
        assert stored_files(cluster, made[1]) == []


async def test_a_cancellation_through_b_reaches_the_replica_running_the_job(cluster):
    async with http() as client:
        job_id = (await submit(client, cluster.a, seed=20)).json()["id"]
        await wait_status(client, cluster.b, job_id, "running")
        cancelled = await client.post(f"{cluster.b.url}/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200
        job = await wait_status(client, cluster.a, job_id, "cancelled", "completed")
        assert job["status"] == "cancelled"
        assert stored_files(cluster, job_id) == ["metadata.json"]
        stream = await events(client, cluster.b, job_id)
        assert stream[-1]["event"] == "cancelled"


async def test_a_replica_stopped_hands_its_uploads_to_the_other(cluster):
    """SIGTERM (a rolling update): with PostgreSQL the other replica runs the upload; with one
    orchestrator on SQLite it ends failed: interrupted, as it always has."""
    async with http() as client:
        job_id = (await submit(client, cluster.a, seed=30)).json()["id"]
        await wait_status(client, cluster.b, job_id, "running")
        _stop(cluster.a.process)
        if not cluster.shared:
            cluster.b = cluster.a = cluster.start("a-again")
        ended = await wait_status(client, cluster.b, job_id, "completed", "failed")
        if cluster.shared:
            assert ended["status"] == "completed", ended
            assert stored_files(cluster, job_id) == STORED
            stream = await events(client, cluster.b, job_id)
            assert stream[-1]["event"] == "completed"
        else:
            assert (ended["status"], ended["error"]) == ("failed", "interrupted")
            assert stored_files(cluster, job_id) == ["metadata.json"]


@pytest.mark.parametrize("replica_env", [{"MAX_CONCURRENT_JOBS": "1"}])
async def test_an_idle_replica_takes_uploads_queued_at_a_busy_one(cluster):
    """Three uploads to A, which runs one at a time: with PostgreSQL, idle B takes the ones
    waiting in A's queue (claimed with FOR UPDATE SKIP LOCKED); every one is stored once."""
    async with http() as client:
        ids = [(await submit(client, cluster.a, seed=40 + i)).json()["id"] for i in range(3)]
        for job_id in ids:
            job = await wait_status(client, cluster.b, job_id, "completed", "failed",
                                    "cancelled")
            assert job["status"] == "completed", job
            assert stored_files(cluster, job_id) == STORED
            stream = await events(client, cluster.b, job_id)
            assert stream[-1]["event"] == "completed"
        listing = (await client.get(f"{cluster.a.url}/generations")).json()
        assert sorted(item["id"] for item in listing["items"]) == sorted(ids)
        if cluster.shared:
            taken = [job_id for job_id in ids
                     if f"job {job_id}: taken from another replica's queue"
                     in cluster.b.log.read_text()]
            assert taken, cluster.b.log.read_text()[-3000:]
