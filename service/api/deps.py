"""Typed dependencies of the routers: the service context and the API key."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader

from service.context import ServiceContext
from service.core.config import Settings
from service.core.errors import InvalidField, ServerBusy, Unauthorized

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="needed when the service sets a key")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_ctx(request: Request) -> ServiceContext:
    ctx = getattr(request.app.state, "ctx", None)
    if ctx is None:
        raise ServerBusy("the service is starting or stopping; try again shortly")
    return ctx


def key_matches(settings: Settings, given: str | None) -> bool:
    """True when no key is configured, or `given` is the key (compared in constant time)."""
    if settings.api_key is None:
        return True
    return given is not None and secrets.compare_digest(given.encode(), settings.api_key.get_secret_value().encode())


def require_api_key(request: Request, key: Annotated[str | None, Security(api_key_header)] = None) -> None:
    if not key_matches(get_settings(request), key):
        raise Unauthorized("missing or wrong API key: send it in the X-API-Key header")


SettingsDep = Annotated[Settings, Depends(get_settings)]
Ctx = Annotated[ServiceContext, Depends(get_ctx)]
ModelName = Annotated[str | None, Query(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                                        description="a loaded model's name (default: the task's default student)")]


def known_query_only(request: Request) -> None:
    """Refuse query parameters the route does not declare (422 naming them): a typo such as `?modle=` must not
    silently fall back to the default model."""
    declared = {p.alias for p in request.scope["route"].dependant.query_params}
    unknown = sorted(set(request.query_params) - declared)
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise InvalidField(f"unknown query parameter(s) {', '.join(unknown)}; this route takes: {known}")
