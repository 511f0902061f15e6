"""The dashboard: server-rendered pages over a project's stored runs.

``dashboard_router(project)`` is a FastAPI router with the pages under ``/`` and their
static files (the stylesheet, the page script and Plotly's own ``plotly.min.js`` from the
installed plotly package) under ``/static/``: no CDN, it works offline. The API's app
includes it; :func:`create_dashboard_app` is an app with the dashboard only.

Every page takes ``?run=ID`` (default: the latest complete run) and reads the store only
through :class:`~segvalue.project.Project`; it never runs the pipeline. Needs the ``web``
extra (``pip install 'segvalue[web]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segvalue.errors import MissingDependencyError

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

    from segvalue.project import Project

__all__ = ["create_dashboard_app", "dashboard_router"]


def _require_web() -> None:
    try:
        import fastapi  # noqa: F401
        import jinja2  # noqa: F401
        import plotly  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"the dashboard needs {exc.name}, which is not installed",
            fix="install the web extra: pip install 'segvalue[web]'",
        ) from exc


def dashboard_router(project: Project, *, login: bool = False, prepare: bool = False) -> APIRouter:
    """The dashboard's pages and static files as a FastAPI router over ``project``.

    Parameters
    ----------
    project
        The project whose store the pages read, through its one
        :class:`~segvalue.api.auth.ProjectGate` (one request at a time, shared with the
        API's routes and its real-time writes: a DuckDB file is open for one writer or
        for readers), and closed after each page, so a run in another process can write
        the store while the dashboard is up; pages of complete runs (which never change)
        are kept in memory.
    login
        Every page needs a login with one of the project's API keys (either scope):
        ``GET /login`` shows the form, ``POST /login`` starts a session (cookie
        ``segvalue_session``, for ``serve.session_hours``), ``POST /logout`` ends it; a
        page without a session redirects (303) to ``/login?next=PATH``. ``segvalue
        serve`` asks for it on any address but loopback. Without it the pages are open
        (loopback only).
    prepare
        Build the overview of the latest complete run and the budget plan (whose curves
        are fitted from every source: seconds on a large project) now, on a background
        thread, and again when a new run appears, so that the first visitor finds them
        built. ``segvalue serve`` asks for it; a request for a page being built waits
        for it.

    Returns
    -------
    fastapi.APIRouter
        Pages ``/``, ``/segments``, ``/segments/{scheme}/{segment}``, ``/migration``,
        ``/models``, ``/attribution`` and ``/channels`` (``?segment=S``),
        ``/experiments`` (``?experiment=E&outcome=O``), ``/campaigns`` and
        ``/campaigns/{name}`` (each takes ``?run=ID``),
        ``/budget`` (the plan of the configuration, and the what-if form:
        ``?from=ITEM&to=ITEM&share=0.2``), ``/customers`` and
        ``/customers/{customer_id}`` (with its order form, ``POST .../orders``: a
        real-time event) and ``/static/{name}``;
        with ``login``, ``/login`` and ``/logout`` too.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.project import Project
    >>> project = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}},
    ...                                base_dir=pathlib.Path(tempfile.mkdtemp())))
    >>> paths = sorted(route.path for route in dashboard_router(project).routes)
    >>> paths[:5]
    ['/', '/attribution', '/budget', '/campaigns', '/campaigns/{name:path}']
    >>> paths[5:9]
    ['/channels', '/customers', '/customers/{customer_id}', '/customers/{customer_id}/orders']
    >>> paths[9:12]
    ['/experiments', '/migration', '/models']
    >>> paths[12:]
    ['/segments', '/segments/{scheme}/{segment}', '/static/{name}']
    """
    _require_web()
    from segvalue.web.app import build_router

    return build_router(project, login=login, prepare=prepare)


def create_dashboard_app(
    project: Project, *, login: bool = False, prepare: bool = False
) -> FastAPI:
    """A FastAPI app with the dashboard only (development and tests; ``segvalue serve``
    mounts :func:`dashboard_router` into the API's app). ``login``, ``prepare``: see
    :func:`dashboard_router`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from fastapi.testclient import TestClient
    >>> from segvalue.config import parse_config
    >>> from segvalue.project import Project
    >>> project = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}},
    ...                                base_dir=pathlib.Path(tempfile.mkdtemp())))
    >>> response = TestClient(create_dashboard_app(project)).get("/")
    >>> response.status_code, "No complete run" in response.text
    (200, True)
    >>> app = create_dashboard_app(project, login=True)
    >>> TestClient(app).get("/", follow_redirects=False).headers["location"]
    '/login?next=%2F'
    """
    _require_web()
    from fastapi import FastAPI

    app = FastAPI(title="segvalue dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(dashboard_router(project, login=login, prepare=prepare))
    return app
