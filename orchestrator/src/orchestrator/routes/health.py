"""``GET /health``: the orchestrator and each model service it depends on."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from orchestrator import __version__
from orchestrator.records import HealthView
from orchestrator.runtime import RuntimeDep

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/health", summary="The orchestrator's state and each service's health and models",
            response_model=HealthView)
async def health(runtime: RuntimeDep) -> HealthView:
    """Always 200 while the orchestrator can answer: `status` is `ok`, or `degraded` with a
    `reason` naming each service that is down or not serving."""
    services = await runtime.services.health()
    problems = []
    for name, report in services.items():
        if not report["serving"]:
            why = report.get("error") or report["status"]
            problems.append(f"the {name} service at {report['address']} is not serving ({why})")
    try:
        jobs = await runtime.jobs.all_stats()
    except Exception as exc:  # the database: this replica's own counts meanwhile
        log.warning("health: the database did not answer: %s", exc)
        problems.append("the database is not answering")
        jobs = runtime.jobs.stats
    return HealthView(status="degraded" if problems else "ok", reason="; ".join(problems) or None,
                      version=__version__, services=services, jobs=jobs)
