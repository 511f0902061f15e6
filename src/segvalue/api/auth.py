"""API keys on every ``/api/v1`` route: ``Authorization: Bearer KEY``, checked by scope."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from segvalue.api.problems import Problem
from segvalue.project import API_KEY_SCOPES, KeyInfo, Project

__all__ = ["bearer", "project_of", "require_scope"]

#: The OpenAPI security scheme; missing or malformed headers are ours to answer (401).
bearer = HTTPBearer(auto_error=False, description="an API key: segvalue keys create")

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def project_of(request: Request) -> tuple[Project, threading.Lock]:
    """The app's project and the lock that serialises its use (one store connection)."""
    state = request.app.state
    return state.project, state.project_lock


def require_scope(scope: str) -> Callable[..., KeyInfo]:
    """A dependency that admits a valid key of ``scope`` (a ``write`` key may also read).

    Raises a 401 problem (with ``WWW-Authenticate: Bearer``) without a key, or with an
    unknown or revoked one, and a 403 problem for a key of too narrow a scope.
    """
    if scope not in API_KEY_SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def admit(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> KeyInfo:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Problem(
                401,
                "this route needs an API key: send `Authorization: Bearer KEY` "
                "(create one with segvalue keys create)",
                headers=_CHALLENGE,
            )
        project, lock = project_of(request)
        with lock:
            info = project.keys.verify(credentials.credentials)
        if info is None:
            raise Problem(401, "the API key is unknown or revoked", headers=_CHALLENGE)
        if scope == "write" and info.scope != "write":
            raise Problem(
                403,
                f"the API key {info.key_id} has scope {info.scope}; this route needs {scope}",
            )
        return info

    return admit
