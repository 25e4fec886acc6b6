"""``python -m segment_service``: serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from scene_rpc.logs import configure_logging
from scene_rpc.tracing import configure_tracing
from segment_service.settings import Settings


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        # A bad setting (an unknown PROFILE, say) stops the service with the reason, no traceback.
        raise SystemExit(f"segment-service: invalid settings: {exc}") from None
    # Before torch and transformers are imported, so their start-up messages are formatted too.
    configure_logging("segment", settings.log_level)
    configure_tracing("segment", settings.trace_exporter)

    from scene_rpc.torch_runtime import configure_threads
    from segment_service.server import serve

    configure_threads(settings.threads)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
