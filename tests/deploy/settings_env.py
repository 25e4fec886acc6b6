"""The environment variables each service's settings object reads, and their defaults.

Derived from the pydantic-settings classes themselves, so the deployment files are checked
against the code, not against a second hand-written list.
"""

from __future__ import annotations

import importlib
from enum import Enum
from typing import Any

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

SETTINGS_MODULES = {
    "depth": "depth_service.settings",
    "segment": "segment_service.settings",
    "imagegen": "imagegen_service.settings",
    "orchestrator": "orchestrator.settings",
}


def settings_class(service: str) -> type[BaseSettings]:
    return importlib.import_module(SETTINGS_MODULES[service]).Settings


def env_names(service: str) -> dict[str, str]:
    """Upper-case environment variable -> field name, for every field of the service."""
    cls = settings_class(service)
    prefix = cls.model_config.get("env_prefix", "")
    names = {}
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            # The first choice is the variable; the field's own name is for keyword construction.
            names[str(alias.choices[0]).upper()] = field_name
        elif isinstance(alias, str):
            names[alias.upper()] = field_name
        else:
            names[f"{prefix}{field_name}".upper()] = field_name
    return names


def default_of(service: str, field_name: str) -> Any:
    value = settings_class(service).model_fields[field_name].get_default(call_default_factory=True)
    return value.value if isinstance(value, Enum) else value


def parse_as(service: str, env: str, text: str) -> Any:
    """What the service's settings make of ``env=text`` (validation included)."""
    cls = settings_class(service)
    field_name = env_names(service)[env]
    # model_validate reads no environment: only this one value differs from the defaults.
    key = env if cls.model_fields[field_name].validation_alias is not None else field_name
    value = getattr(cls.model_validate({key: text}), field_name)
    return value.value if isinstance(value, Enum) else value
