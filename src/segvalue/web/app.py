"""The dashboard's routes (imported only when the ``web`` extra is installed).

FastAPI reads the routes' annotations at run time, so this module imports FastAPI at its
top; :mod:`segvalue.web` imports it lazily, after checking the extra is there.
"""

from __future__ import annotations

import functools
import logging
import math
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from segvalue.errors import DataValidationError, SegvalueError
from segvalue.project import Project, RunView
from segvalue.web import pages
from segvalue.web.login import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    LoginThrottle,
    Session,
    Sessions,
    safe_next,
    same_token,
)

PageBuilder = Callable[[RunView], dict[str, Any]]

__all__ = ["build_router", "format_number", "format_percent"]

_HERE = Path(__file__).parent
# Pages of complete runs kept in memory (a few tens of kB each).
_KEPT_PAGES = 256
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
# A login form's body is a key, a token and a path: anything much larger is not one.
_FORM_LIMIT = 16_384
#: Dashboard logins: failures and sessions ended (never a key, a token or a client address).
LOGIN_LOG = logging.getLogger("segvalue.web.login")


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
    # A value through the filter named in the template ("num" or "pct").
    environment.filters["apply"] = lambda value, name: environment.filters[name](value)
    # A scheme or segment name as one path segment ("/" and "?" quoted too).
    environment.filters["path"] = lambda value: quote(str(value), safe="")
    return environment


def build_router(project: Project, *, login: bool = False) -> APIRouter:
    """The dashboard's router over ``project`` (see :func:`segvalue.web.dashboard_router`).

    With ``login`` every page needs a session (``/login`` with an API key of the project);
    ``/static/`` stays open.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.project import Project
    >>> project = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}},
    ...                                base_dir=pathlib.Path(tempfile.mkdtemp())))
    >>> "/segments/{scheme}/{segment}" in [route.path for route in build_router(project).routes]
    True
    >>> [r.path for r in build_router(project, login=True).routes if "log" in r.path]
    ['/login', '/login', '/logout']
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

    sessions = Sessions(lifetime_seconds=3600 * project.config.serve.session_hours)
    throttle = LoginThrottle()

    def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("charts", [])
        session: Session | None = getattr(request.state, "session", None)
        html = environment.get_template(template).render(
            request_path=request.url.path, session=session, **context
        )
        response = HTMLResponse(html, status_code=status)
        if login:  # a page behind the login (or the login form) is no one else's to keep
            response.headers["Cache-Control"] = "no-store"
        return response

    # ------------------------------------------------------------ the login (off loopback)

    def set_cookie(
        response: Response, request: Request, name: str, value: str, *, path: str, max_age: int
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=path,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def end_cookie(response: Response, request: Request, name: str, *, path: str) -> None:
        response.delete_cookie(
            name, path=path, secure=request.url.scheme == "https", httponly=True, samesite="strict"
        )

    def key_is_active(key_id: str) -> bool:
        with lock:
            try:
                return any(key.key_id == key_id and key.active for key in reader.keys.list())
            finally:
                reader.close()

    def verify(key: str) -> str | None:
        """The id of ``key`` when it is a known, unrevoked key of the project (any scope)."""
        with lock:
            try:
                info = reader.keys.verify(key)
            finally:
                reader.close()
        return None if info is None else info.key_id

    def current_session(request: Request) -> Session | None:
        """The request's live session; a revoked key's sessions end here."""
        session = sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is not None and not key_is_active(session.key_id):
            ended = sessions.end_key(session.key_id)
            LOGIN_LOG.info(
                "dashboard: API key %s is revoked: %d session(s) ended", session.key_id, ended
            )
            return None
        return session

    def to_login(request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
        if SESSION_COOKIE in request.cookies:  # an ended or expired session's cookie
            end_cookie(response, request, SESSION_COOKIE, path="/")
        return response

    def guarded(handler: Callable[..., Response]) -> Callable[..., Response]:
        """The page ``handler``, behind the login when the dashboard has one."""
        if not login:
            return handler

        @functools.wraps(handler)  # FastAPI reads the handler's own parameters
        def checked(*args: Any, **kwargs: Any) -> Response:
            request: Request = kwargs["request"]
            session = current_session(request)
            if session is None:
                return to_login(request)
            request.state.session = session
            return handler(*args, **kwargs)

        return checked

    def problem_page(request: Request, status: int, title: str, message: str) -> Response:
        return render(request, "problem.html", status, title=title, message=message, run=None)

    def forbidden(request: Request) -> Response:
        return problem_page(
            request,
            403,
            "Forbidden",
            "The form came without its security token (CSRF), which keeps other sites from "
            "sending it in your name: reload the page and send the form again.",
        )

    async def read_form(request: Request) -> dict[str, str] | None:
        """A url-encoded POST body, the first value of each field; None when too large."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > _FORM_LIMIT:
            return None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _FORM_LIMIT:
                return None
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return {}
        try:
            fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
        except ValueError:  # more fields than a login form has
            return {}
        return {name: values[0] for name, values in fields.items()}

    def login_page(
        request: Request,
        next_path: str,
        status: int = 200,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        # Double submit: the form carries the value of a cookie only this site can set.
        csrf = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not (32 <= len(csrf) <= 64 and csrf.replace("-", "").replace("_", "").isalnum()):
            csrf = secrets.token_urlsafe(32)
        response = render(
            request,
            "login.html",
            status,
            run=None,
            runs=[],
            next_path=next_path,
            csrf_token=csrf,
            message=message,
            logged_out=request.query_params.get("logged_out") == "1",
        )
        set_cookie(response, request, LOGIN_CSRF_COOKIE, csrf, path="/login", max_age=3600)
        response.headers.update(headers or {})
        return response

    if login:

        @router.get("/login", response_class=HTMLResponse)
        def login_form(
            request: Request, next_path: str | None = Query(None, alias="next")
        ) -> Response:
            if current_session(request) is not None:
                return RedirectResponse(safe_next(next_path), status_code=303)
            return login_page(request, safe_next(next_path))

        @router.post("/login", response_class=HTMLResponse)
        async def login_submit(request: Request) -> Response:
            form = await read_form(request)
            if form is None:
                return problem_page(request, 413, "Too large", "That is not a login form.")
            next_path = safe_next(form.get("next"))
            if not same_token(request.cookies.get(LOGIN_CSRF_COOKIE), form.get("csrf_token")):
                return forbidden(request)
            client = request.client.host if request.client else "unknown"
            wait = throttle.wait_seconds(client)
            if wait:
                LOGIN_LOG.warning("dashboard: logins refused for %d s after failed ones", wait)
                message = f"Too many failed logins from this address: try again in {wait} seconds."
                return login_page(request, next_path, 429, message, {"Retry-After": str(wait)})
            key = form.get("api_key", "").strip()
            if not key:
                message = "Enter an API key (create one with: segvalue keys create --scope read)."
                return login_page(request, next_path, 401, message)
            key_id = await run_in_threadpool(verify, key)
            if key_id is None:
                throttle.failed(client)
                LOGIN_LOG.warning("dashboard: a login failed: unknown or revoked API key")
                message = (
                    "That API key is unknown or revoked. Check it, or create a new one with: "
                    "segvalue keys create --scope read."
                )
                return login_page(request, next_path, 401, message)
            throttle.succeeded(client)
            sessions.end(request.cookies.get(SESSION_COOKIE))  # a fresh token at every login
            token, _ = sessions.create(key_id)
            LOGIN_LOG.info("dashboard: API key %s logged in", key_id)
            response = RedirectResponse(next_path, status_code=303)
            max_age = int(sessions.lifetime_seconds)
            set_cookie(response, request, SESSION_COOKIE, token, path="/", max_age=max_age)
            end_cookie(response, request, LOGIN_CSRF_COOKIE, path="/login")
            return response

        @router.post("/logout")
        async def logout(request: Request) -> Response:
            form = await read_form(request) or {}
            token = request.cookies.get(SESSION_COOKIE)
            session = sessions.get(token)
            if session is not None and not same_token(session.csrf_token, form.get("csrf_token")):
                return forbidden(request)
            sessions.end(token)
            response = RedirectResponse("/login?logged_out=1", status_code=303)
            end_cookie(response, request, SESSION_COOKIE, path="/")
            return response

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
    @guarded
    def overview(request: Request, run: str | None = None) -> Response:
        return page(request, run, pages.overview_page, "overview.html")

    @router.get("/segments", response_class=HTMLResponse)
    @guarded
    def segments(request: Request, run: str | None = None, scheme: str | None = None) -> Response:
        build = partial(pages.segments_page, scheme=scheme)
        return page(request, run, build, "segments.html", scheme or "")

    @router.get("/segments/{scheme}/{segment}", response_class=HTMLResponse)
    @guarded
    def segment(request: Request, scheme: str, segment: str, run: str | None = None) -> Response:
        build = partial(pages.segment_page, scheme=scheme, segment=segment)
        return page(request, run, build, "segment.html", scheme, segment)

    @router.get("/models", response_class=HTMLResponse)
    @guarded
    def models(request: Request, run: str | None = None) -> Response:
        return page(request, run, pages.models_page, "models.html")

    @router.get("/migration", response_class=HTMLResponse)
    @guarded
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
    @guarded
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
