"""The dashboard's routes (imported only when the ``web`` extra is installed).

FastAPI reads the routes' annotations at run time, so this module imports FastAPI at its
top; :mod:`segvalue.web` imports it lazily, after checking the extra is there.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from segvalue.errors import DataValidationError, SegvalueError
from segvalue.project import Project, RunView
from segvalue.web import pages

PageBuilder = Callable[[RunView], dict[str, Any]]

__all__ = ["build_router", "format_number", "format_percent"]

_HERE = Path(__file__).parent
# Pages of complete runs kept in memory (a few tens of kB each).
_KEPT_PAGES = 256
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
    # The dashboard reads through a Project of its own, closed after every request: an
    # open DuckDB connection would keep `segvalue run` (another process) from writing
    # the store. A complete run never changes, so its pages are kept instead.
    reader = Project(project.config)
    kept: OrderedDict[tuple[str, ...], dict[str, Any]] = OrderedDict()
    lock = threading.Lock()  # one request reads at a time
    router = APIRouter(include_in_schema=False)

    def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("charts", [])
        html = environment.get_template(template).render(request_path=request.url.path, **context)
        return HTMLResponse(html, status_code=status)

    def remember(key: tuple[str, ...], build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if key in kept:
            kept.move_to_end(key)
        else:
            kept[key] = build()
            while len(kept) > _KEPT_PAGES:
                kept.popitem(last=False)
        return kept[key]

    def context_of(view: RunView, key: tuple[str, ...], build: PageBuilder) -> dict[str, Any]:
        return remember((view.run_id, *key), partial(build, view))

    def page(
        request: Request,
        run_id: str | None,
        build: PageBuilder,
        template: str,
        *args: str,
        on_other_runs: bool = False,
    ) -> Response:
        with lock:
            try:
                runs = reader.runs.list(status="complete")
                if run_id is None and not runs:
                    return render(request, "no_run.html", run=None, runs=[])
                try:
                    view = reader.runs.require_latest(run_id)
                except DataValidationError as exc:  # an unknown run id
                    return render(request, "not_found.html", 404, message=str(exc), run=None)
                if view.info.status != "complete":
                    message = f"run {view.run_id} is {view.info.status}: it holds no results"
                    return render(request, "not_found.html", 404, message=message, run=None)
                try:
                    key = (template, *args)
                    if on_other_runs:  # the page changes when a run is added or removed
                        key += tuple(info.run_id for info in runs)
                    context = context_of(view, key, build)
                except pages.NotFound as exc:
                    return render(request, "not_found.html", 404, message=str(exc), run=view)
                except SegvalueError as exc:  # a result this run does not hold
                    return render(request, "missing.html", message=str(exc), run=view, runs=runs)
            finally:
                reader.close()
        return render(request, template, run=view, runs=runs, **context)

    @router.get("/", response_class=HTMLResponse)
    def overview(request: Request, run: str | None = None) -> Response:
        return page(request, run, pages.overview_page, "overview.html")

    @router.get("/segments", response_class=HTMLResponse)
    def segments(request: Request, run: str | None = None, scheme: str | None = None) -> Response:
        build = partial(pages.segments_page, scheme=scheme)
        return page(request, run, build, "segments.html", scheme or "")

    @router.get("/segments/{scheme}/{segment}", response_class=HTMLResponse)
    def segment(request: Request, scheme: str, segment: str, run: str | None = None) -> Response:
        build = partial(pages.segment_page, scheme=scheme, segment=segment)
        return page(request, run, build, "segment.html", scheme, segment)

    @router.get("/models", response_class=HTMLResponse)
    def models(request: Request, run: str | None = None) -> Response:
        return page(request, run, pages.models_page, "models.html")

    @router.get("/migration", response_class=HTMLResponse)
    def migration(
        request: Request,
        run: str | None = None,
        scheme: str | None = None,
        before: str | None = None,
    ) -> Response:
        build = partial(pages.migration_page, reader.runs, scheme=scheme, before=before)
        return page(
            request, run, build, "migration.html", scheme or "", before or "", on_other_runs=True
        )

    @router.get("/budget", response_class=HTMLResponse)
    def budget(
        request: Request,
        move_from: str | None = Query(None, alias="from"),
        move_to: str | None = Query(None, alias="to"),
        share: str | None = None,
    ) -> Response:
        form = {"from": move_from, "to": move_to, "share": share}
        asked = any(value is not None for value in form.values())
        status, answer = 200, dict[str, Any]()
        with lock:
            try:
                runs = reader.runs.list(status="complete")
                # The plan depends on the configuration and (objective clv) the latest run:
                # it is computed once per latest run.
                key = ("budget", runs[0].run_id if runs else "")
                try:
                    context = remember(key, partial(pages.budget_page, reader))
                except SegvalueError as exc:  # the configuration's budget cannot be planned
                    context = {
                        "available": False,
                        "message": f"The budget cannot be planned: {exc}",
                    }
                if asked and context["available"]:
                    try:
                        answer["what_if"] = remember(
                            (*key, "what-if", move_from or "", move_to or "", share or ""),
                            partial(pages.what_if_result, reader, move_from, move_to, share),
                        )
                    except (pages.InvalidInput, SegvalueError) as exc:
                        status, answer["form_error"] = 400, str(exc)
            finally:
                reader.close()
        return render(
            request, "budget.html", status, run=None, runs=[], form=form, **context, **answer
        )

    @router.get("/static/{name}")
    def static_file(name: str) -> Response:
        path = static.get(name)
        if path is None:
            raise HTTPException(status_code=404, detail=f"no static file {name!r}")
        return FileResponse(path, media_type=_STATIC_TYPES.get(path.suffix))

    return router
