"""The dashboard's routes (imported only when the ``web`` extra is installed).

FastAPI reads the routes' annotations at run time, so this module imports FastAPI at its
top; :mod:`segvalue.web` imports it lazily, after checking the extra is there.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from segvalue.errors import DataValidationError, SegvalueError
from segvalue.web import pages

if TYPE_CHECKING:
    from segvalue.project import Project, RunView

__all__ = ["build_router", "format_number", "format_percent"]

_HERE = Path(__file__).parent
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


def _static_files() -> dict[str, Path]:
    """The files served under /static/: ours and plotly's bundle (by name: no paths)."""
    files = {p.name: p for p in (_HERE / "static").iterdir() if p.suffix in _STATIC_TYPES}
    files["plotly.min.js"] = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    return files


def format_number(value: Any, digits: int = 3) -> str:
    """A number for a person: thousands separated, about ``digits`` significant digits.

    Examples
    --------
    >>> format_number(1234567.8), format_number(0.123456), format_number(None), format_number(7)
    ('1,234,568', '0.123', '–', '7')
    """
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return "–"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def format_percent(value: float | None) -> str:
    """A share as a percentage with one decimal.

    Examples
    --------
    >>> format_percent(0.4567), format_percent(None)
    ('45.7%', '–')
    """
    return "–" if value is None else f"{100 * value:.1f}%"


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = format_number
    environment.filters["pct"] = format_percent
    # A scheme or segment name as one path segment ("/" and "?" quoted too).
    environment.filters["path"] = lambda value: quote(str(value), safe="")
    return environment


def build_router(project: Project) -> APIRouter:
    """The dashboard's router over ``project`` (see :func:`segvalue.web.dashboard_router`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.project import Project
    >>> project = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}},
    ...                                base_dir=pathlib.Path(tempfile.mkdtemp())))
    >>> "/segments/{scheme}/{segment}" in [route.path for route in build_router(project).routes]
    True
    """
    environment = _environment()
    static = _static_files()
    # The project's one store connection is shared: requests read it one at a time.
    lock = threading.Lock()
    router = APIRouter(include_in_schema=False)

    def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("charts", [])
        html = environment.get_template(template).render(request_path=request.url.path, **context)
        return HTMLResponse(html, status_code=status)

    def page(
        request: Request,
        template: str,
        run_id: str | None,
        build: Callable[[RunView], dict[str, Any]],
    ) -> Response:
        with lock:
            runs = project.runs.list(status="complete")
            if run_id is None and not runs:
                return render(request, "no_run.html", run=None, runs=[])
            try:
                view = project.runs.require_latest(run_id)
            except DataValidationError as exc:  # an unknown run id
                return render(request, "not_found.html", 404, message=str(exc), run=None)
            if view.info.status != "complete":
                message = f"run {view.run_id} is {view.info.status}: it holds no results"
                return render(request, "not_found.html", 404, message=message, run=None)
            try:
                context = build(view)
            except pages.NotFound as exc:
                return render(request, "not_found.html", 404, message=str(exc), run=view)
            except SegvalueError as exc:  # a result this run does not hold
                return render(request, "missing.html", message=str(exc), run=view, runs=runs)
        return render(request, template, run=view, runs=runs, **context)

    @router.get("/", response_class=HTMLResponse)
    def overview(request: Request, run: str | None = None) -> Response:
        return page(request, "overview.html", run, pages.overview_page)

    @router.get("/segments", response_class=HTMLResponse)
    def segments(request: Request, run: str | None = None, scheme: str | None = None) -> Response:
        return page(request, "segments.html", run, lambda v: pages.segments_page(v, scheme))

    @router.get("/segments/{scheme}/{segment}", response_class=HTMLResponse)
    def segment(request: Request, scheme: str, segment: str, run: str | None = None) -> Response:
        return page(request, "segment.html", run, lambda v: pages.segment_page(v, scheme, segment))

    @router.get("/models", response_class=HTMLResponse)
    def models(request: Request, run: str | None = None) -> Response:
        return page(request, "models.html", run, pages.models_page)

    @router.get("/static/{name}")
    def static_file(name: str) -> Response:
        path = static.get(name)
        if path is None:
            raise HTTPException(status_code=404, detail=f"no static file {name!r}")
        return FileResponse(path, media_type=_STATIC_TYPES.get(path.suffix))

    return router
