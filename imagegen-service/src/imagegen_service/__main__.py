"""``python -m imagegen_service``: serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from scene_rpc.logs import configure_logging
from scene_rpc.tracing import configure_tracing


def main() -> None:
    from imagegen_service.settings import Settings

    settings = Settings()
    configure_logging("imagegen", settings.log_level)
    configure_tracing("imagegen", settings.trace_exporter)
    from imagegen_service.redact import install_log_redaction

    install_log_redaction()
    from imagegen_service.server import serve

    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
