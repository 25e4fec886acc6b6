"""What the app holds for its lifetime, and the dependencies that hand it to routes.

No ``from __future__ import annotations`` here: FastAPI reads the id dependencies' annotations,
which refer to the closure they are made in."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from orchestrator.errors import ApiError
from orchestrator.job_manager import JobManager
from orchestrator.services import ModelServices
from orchestrator.settings import Settings
from orchestrator.storage import GenerationStore, valid_id


@dataclass
class Runtime:
    settings: Settings
    store: GenerationStore
    services: ModelServices
    jobs: JobManager


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _id_dependency(kind: str):
    def checked_id(value: Annotated[str, Path(alias="id", description=f"The {kind}'s id "
                                                                     "(32 hex digits).")]) -> str:
        # Anything that is not an id is unknown: 404, never a path.
        if not valid_id(value):
            raise ApiError(404, f"no {kind} with this id")
        return value
    return checked_id


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
JobIdDep = Annotated[str, Depends(_id_dependency("job"))]
GenerationIdDep = Annotated[str, Depends(_id_dependency("generation"))]
