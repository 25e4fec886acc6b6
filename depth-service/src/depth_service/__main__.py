"""``python -m depth_service``: settings and logging first, then the heavy imports."""

from __future__ import annotations

import asyncio

from depth_service.settings import Settings
from scene_rpc.logs import configure_logging
from scene_rpc.tracing import configure_tracing


def main() -> None:
    settings = Settings()
    configure_logging("depth-service", settings.log_level)
    configure_tracing("depth-service", settings.trace_exporter)
    from depth_service.server import serve

    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
