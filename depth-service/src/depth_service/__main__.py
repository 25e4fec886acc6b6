"""``python -m depth_service``: settings and logging first, then the heavy imports."""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from depth_service.settings import Settings
from scene_rpc.logs import configure_logging
from scene_rpc.tracing import configure_tracing


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        # A bad setting (an unknown PROFILE, say) stops the service with the reason, no traceback.
        raise SystemExit(f"depth-service: invalid settings: {exc}") from None
    configure_logging("depth-service", settings.log_level)
    configure_tracing("depth-service", settings.trace_exporter)
    from depth_service.server import serve

    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
