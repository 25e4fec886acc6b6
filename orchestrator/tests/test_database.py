"""The database: where DATABASE_URL points, and what the API answers when it stops answering."""

from __future__ import annotations

from pathlib import Path

from orchestrator.database import SQLITE_FILE, resolve_url
from scene_dev.postgres import TempPostgres


def test_the_default_is_a_sqlite_file_under_the_data_directory(tmp_path):
    assert resolve_url("", tmp_path) == f"sqlite+aiosqlite:///{tmp_path.resolve() / SQLITE_FILE}"


def test_postgresql_urls_as_people_write_them_get_the_async_driver():
    for written in ("postgresql://u:p@db:5432/scene", "postgres://u:p@db:5432/scene"):
        assert resolve_url(written, Path(".")) == "postgresql+asyncpg://u:p@db:5432/scene"
    assert resolve_url("postgresql+asyncpg://u@db/x", Path(".")) == "postgresql+asyncpg://u@db/x"


async def test_a_database_that_stops_answering_is_a_503_not_a_500(make_api):
    """PostgreSQL going away under a running orchestrator: requests that need it answer 503
    with Retry-After; /health stays 200 and says degraded."""
    server = TempPostgres()
    server.start()
    try:
        async with make_api(database_url=server.create_database("gone")) as api:
            assert (await api.client.get("/generations")).status_code == 200
            server.stop()
            for path in ("/generations", "/jobs", f"/generations/{'a' * 32}"):
                response = await api.client.get(path)
                assert response.status_code == 503, (path, response.text)
                assert response.headers["Retry-After"] == "5"
                assert "database" in response.json()["detail"]
            health = await api.client.get("/health")
            assert health.status_code == 200
            assert "database" in health.json()["reason"]
    finally:
        server.stop()
