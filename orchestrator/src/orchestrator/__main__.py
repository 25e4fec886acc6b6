"""``python -m orchestrator``: serve the API with uvicorn until SIGTERM (graceful)."""

from __future__ import annotations

from scene_rpc.logs import configure_logging
from scene_rpc.tracing import configure_tracing


def main() -> None:
    from orchestrator.settings import Settings
    from scene_rpc.service import load_settings

    # A bad setting (CORS_ORIGINS with a path, say) stops the start, naming it.
    settings = load_settings("orchestrator", Settings)
    configure_logging("orchestrator", settings.log_level)
    configure_tracing("orchestrator", settings.trace_exporter)

    import signal

    import uvicorn

    from orchestrator.app import create_app

    # uvicorn stops accepting on SIGTERM, lets requests finish within the grace period, then
    # runs the lifespan's shutdown (jobs still running end as failed: interrupted). Once done it
    # restores the handler it found and raises the signal again: with the default handler the
    # process would then die of SIGTERM (exit 143) after a clean stop, so the handler it finds is
    # one that does nothing, and main() returns: exit 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(create_app(settings), host=settings.orchestrator_host,
                port=settings.orchestrator_port, log_config=None,
                log_level=settings.log_level.lower(),
                timeout_graceful_shutdown=settings.shutdown_grace_s)


if __name__ == "__main__":
    main()
