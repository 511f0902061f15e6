"""``create_app(project)``: the FastAPI application of ``segvalue serve``."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

try:
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "the REST API needs the web extra: pip install 'segvalue[web]' "
        "(FastAPI, uvicorn, Jinja2, Plotly)"
    ) from exc

from segvalue.api.auth import ProjectGate
from segvalue.api.problems import Problem, add_problem_handlers, problem_response
from segvalue.api.routes import API_PREFIX, events_router, health_router, v1_router
from segvalue.project import Project

__all__ = ["ACCESS_LOG", "API_PREFIX", "create_app"]

#: The access log: method, route template (never the path: it may hold a customer id),
#: status and milliseconds.
ACCESS_LOG = logging.getLogger("segvalue.api.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with a 413 problem.

    By ``Content-Length`` at once; a body sent without one is read (up to the limit)
    before the app sees it.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        if length is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            # No Content-Length (a chunked body): read it here, up to the limit, then
            # hand the app the bytes read.
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > self.limit:
                    await self._refuse(scope, receive, send)
                    return
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = Problem(
            413,
            f"the request body is larger than {self.limit:,} bytes",
            parameter="serve.max_body_bytes",
        )
        await problem_response(problem)(scope, receive, send)


class AccessLog:
    """One log line per request, naming the route template, not the path (no PII)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or "(no route)"
            ACCESS_LOG.info(
                "%s %s %d %.1f ms",
                scope.get("method", "?"),
                template,
                status,
                (time.perf_counter() - start) * 1000,
            )


def create_app(project: Project) -> FastAPI:
    """The REST API over ``project`` (see docs/api.md).

    Routes under ``/api/v1`` need an API key; ``/health`` is open. ``serve`` in the
    project's configuration sets CORS origins and the request size limit.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from fastapi.testclient import TestClient
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> project = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d))
    >>> key, _ = project.keys.create("read")
    >>> with TestClient(create_app(project)) as client:
    ...     health = client.get("/health").json()
    ...     runs = client.get("/api/v1/runs", headers={"Authorization": f"Bearer {key}"})
    ...     refused = client.get("/api/v1/runs")
    >>> health["status"], runs.json(), refused.status_code, refused.json()["title"]
    ('ok', {'runs': []}, 401, 'Unauthorized')
    >>> project.close()
    """
    from segvalue import __version__

    settings = project.config.serve

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Release the store when idle, so that runs can write it while the API is up.
        gate: ProjectGate = app.state.gate
        with gate.releasing():
            yield

    app = FastAPI(
        lifespan=lifespan,
        title="segvalue",
        version=__version__,
        summary="Customer segments, lifetime value and budgets from a segvalue results store.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # the docs UI would load its scripts from a CDN
        redoc_url=None,
    )
    app.state.project = project
    app.state.gate = ProjectGate.of(project)
    add_problem_handlers(app)
    app.include_router(health_router)
    app.include_router(v1_router)
    app.include_router(events_router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(AccessLog)
    return app
