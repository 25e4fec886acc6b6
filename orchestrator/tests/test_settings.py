"""Settings: defaults, the environment, validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.settings import Settings


def test_defaults(monkeypatch):
    for name in ("DEPTH_SERVICE_ADDR", "DATA_DIR", "CORS_ORIGINS", "ORCHESTRATOR_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.orchestrator_port == 8000
    assert (settings.depth_service_addr, settings.segment_service_addr,
            settings.imagegen_service_addr) == ("localhost:50051", "localhost:50052",
                                                "localhost:50053")
    assert settings.data_dir == Path("./data")
    assert settings.max_upload_bytes == 25 * 1024 * 1024
    assert settings.cors_origin_list == ["https://captaingraybeard.github.io"]
    local = re.compile(settings.cors_origin_regex)
    for origin in ("http://localhost:3000", "http://localhost", "http://127.0.0.1:8000",
                   "http://[::1]:5173"):
        assert local.fullmatch(origin), origin
    for origin in ("https://captaingraybeard.github.io.evil.io", "http://localhost.evil.io",
                   "https://example.org", "https://localhost:8000"):
        assert not local.fullmatch(origin), origin


def test_the_environment_configures_it(monkeypatch, tmp_path):
    monkeypatch.setenv("DEPTH_SERVICE_ADDR", "dns:///depth:50051")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MAX_CONCURRENT_JOBS", "3")
    monkeypatch.setenv("SEGMENT_MODE", "semantic")
    settings = Settings()
    assert settings.depth_service_addr == "dns:///depth:50051"
    assert settings.data_dir == tmp_path
    assert settings.max_concurrent_jobs == 3
    assert settings.segment_mode == "semantic"


@pytest.mark.parametrize(("name", "value"), [
    ("cors_origin_regex", "(unclosed"), ("max_concurrent_jobs", 0), ("far_m", 0.5),
    ("segment_mode", "magic"), ("png_compress_level", 10),
])
def test_invalid_values_are_refused(name, value):
    with pytest.raises(ValidationError):
        Settings(**{name: value})


def test_cors_origins_is_a_comma_separated_list_as_people_write_it():
    settings = Settings(cors_origins=" https://a.example.org, http://localhost:8080 ,"
                                     "https://b.example.org:8443,https://[2001:db8::1]")
    assert settings.cors_origin_list == ["https://a.example.org", "http://localhost:8080",
                                         "https://b.example.org:8443", "https://[2001:db8::1]"]
    assert Settings(cors_origins="*").cors_origin_list == ["*"]
    assert Settings(cors_origins="").cors_origin_list == []


@pytest.mark.parametrize(("name", "value", "named"), [
    ("CORS_ORIGINS", "https://a.example.org/viewer", "CORS_ORIGINS"),
    ("CORS_ORIGINS", "https://a.example.org/", "CORS_ORIGINS"),
    ("CORS_ORIGINS", "a.example.org", "CORS_ORIGINS"),
    # Yesterday's regular expression in today's list setting: refused, pointing at the other.
    ("CORS_ORIGINS", r"https://a\.example\.org", "CORS_ORIGIN_REGEX"),
    ("CORS_ORIGIN_REGEX", "(unclosed", "CORS_ORIGIN_REGEX"),
])
def test_a_malformed_cors_setting_stops_the_start_naming_it(monkeypatch, name, value, named):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert named in str(caught.value)
