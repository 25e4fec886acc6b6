"""Logging set up once, before heavy imports, the same way in every service."""

from __future__ import annotations

import logging
import sys

from scene_rpc.tracing import TraceIdFilter


def configure_logging(service: str, level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        # %(trace)s is empty unless tracing is on and the line belongs to a traced call.
        format=f"%(asctime)s %(levelname)s {service} %(name)s:%(trace)s %(message)s",
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(TraceIdFilter())
    # Request URLs and headers of HTTP clients are not ours to log (they may carry keys).
    # openai 3.x sends through httpx2/httpcore2, which log under their own names.
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
