"""``python -m imagegen_service``: the shared bootstrap (``scene_rpc.service.main``)."""

from __future__ import annotations

from imagegen_service import NAME
from imagegen_service.settings import Settings
from scene_rpc.service import main as run


def _redact_logs() -> None:
    # Before the OpenAI client is imported: nothing it logs may show a key.
    from imagegen_service.redact import install_log_redaction

    install_log_redaction()


def main() -> None:
    # No torch here: the work is remote; GetInfo's cpu_threads are the cores the process may use
    # (PNG coding and the panorama).
    run(NAME, Settings, "imagegen_service.server:build", torch_threads=False,
        before_build=_redact_logs)


if __name__ == "__main__":
    main()
