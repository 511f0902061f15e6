"""The dashboard's routes (imported only when the ``web`` extra is installed).

FastAPI reads the routes' annotations at run time, so this module imports FastAPI at its
top; :mod:`segvalue.web` imports it lazily, after checking the extra is there.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import logging
import math
import secrets
import threading
import time
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

from segvalue.api.auth import ProjectGate
from segvalue.errors import DataValidationError, SegvalueError
from segvalue.project import Project, RunView
from segvalue.web import pages
from segvalue.web.login import (
    FORM_CSRF_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    LoginThrottle,
    Session,
    Sessions,
    safe_next,
    same_token,
    token_shaped,
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
LOG = logging.getLogger("segvalue.web")


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


def _activation_stamp(view: RunView) -> str:
    """What identifies the activation attached to ``view`` ("" none): ``segvalue
    activate`` attaches it to a complete run, and again replaces it, so a kept page of
    the run's campaigns is kept per activation."""
    if not view.has_document("activation"):
        return ""
    text = json.dumps(view.document("activation"), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


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


def build_router(project: Project, *, login: bool = False, prepare: bool = False) -> APIRouter:
    """The dashboard's router over ``project`` (see :func:`segvalue.web.dashboard_router`).

    With ``login`` every page needs a session (``/login`` with an API key of the project);
    ``/static/`` stays open. With ``prepare`` the overview of the latest run and the
    budget plan are built on a background thread now and again when a new run appears.

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
    gate = ProjectGate.of(project)
    reader = gate.project
    kept: OrderedDict[tuple[str, ...], dict[str, Any]] = OrderedDict()
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
        with gate.use(close=True):
            return any(key.key_id == key_id and key.active for key in reader.keys.list())

    def verify(key: str) -> str | None:
        """The id of ``key`` when it is a known, unrevoked key of the project (any scope)."""
        with gate.use(close=True):
            info = reader.keys.verify(key)
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
        if not token_shaped(csrf):
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

    # The kept pages are shared by requests (under the gate) and the budget's planner
    # and the start-up preparation (outside it): their own small lock.
    kept_lock = threading.Lock()

    def remember(key: tuple[str, ...], build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The kept context of ``key``, built now if need be (and then kept)."""
        with kept_lock:
            if key in kept:
                kept.move_to_end(key)
                return kept[key]
        context = build()
        with kept_lock:
            kept[key] = context
            while len(kept) > _KEPT_PAGES:
                kept.popitem(last=False)
        return context

    def kept_context(key: tuple[str, ...]) -> dict[str, Any] | None:
        with kept_lock:
            return kept.get(key)

    # The budget is planned through a Project of its own, outside the gate: fitting its
    # curves reads every source through the engine (seconds on a large project), not the
    # store, and no page or API request waits for it. It opens the store only for
    # objective clv (the latest run's segment CLV), briefly, and closes it.
    planner = Project(project.config)
    planning = threading.Lock()  # one plan at a time: a request waits for one under way

    def budget_context(latest: str) -> dict[str, Any]:
        """The budget page of the latest complete run ``latest`` ("" none), planned once."""
        key = ("budget", latest)  # objective clv plans with the latest run's CLV
        with planning:
            context = kept_context(key)
            if context is not None:
                return context
            try:
                context = pages.budget_page(planner)
            except SegvalueError as exc:  # the configuration's budget cannot be planned
                return {"available": False, "message": f"The budget cannot be planned: {exc}"}
            finally:
                planner.close()
            return remember(key, lambda: context)

    prepared: set[str] = set()

    def prepare_for(latest: str | None) -> None:
        """With ``prepare``: build the first pages of the latest complete run and the budget
        plan on a background thread, once per latest run (None: find it there)."""
        if not prepare or (latest is not None and latest in prepared):
            return
        if latest is not None:
            prepared.add(latest)
        threading.Thread(target=prepare_now, name="segvalue-dashboard-prepare", daemon=True).start()

    def prepare_now() -> None:
        started = time.perf_counter()
        try:
            latest = prepare_pages()
            budget_context(latest)
            warm_real_time()
        except Exception as exc:  # each page shows its own error when asked for
            LOG.warning("dashboard: preparing the pages stopped: %s", type(exc).__name__)
        else:
            LOG.info("dashboard: pages prepared in %.1f s", time.perf_counter() - started)
        # What start-up built (the run's documents, models, prepared pages) lives as long
        # as the server: out of the collector's full passes, which would otherwise walk
        # all of it every few seconds under load (a pause of 100 ms and more).
        gc.freeze()

    def warm_real_time() -> None:
        """What applying an event needs, loaded before the freeze: the first event finds
        it ready, and it is frozen with the rest."""
        with gate.use(close=True):
            reader.prepare_real_time()

    def prepare_pages() -> str:
        """Build the latest run's first pages, one at a time through the gate as a request
        does; the latest run's id ("" none)."""
        try:
            with gate.use():
                runs = reader.runs.list(status="complete")
                view = reader.runs.latest()
            latest = runs[0].run_id if runs else ""
            prepared.add(latest)
            if view is None:
                return latest
            # The pages a visitor opens first, with the keys their routes use: the overview,
            # the segments of every scheme, the CLV model, then the KPI scheme's segments
            # (the overview's cards and the segments table link to them), then the
            # measurement pages (a run without a measurement shows its message there).
            builds: list[tuple[tuple[str, ...], PageBuilder]] = [
                (("overview.html",), pages.overview_page),
                (("segments.html", ""), partial(pages.segments_page, scheme=None)),
                *[
                    (("segments.html", name), partial(pages.segments_page, scheme=name))
                    for name in view.info.schemes
                ],
                (("models.html",), pages.models_page),
            ]
            measured: list[tuple[tuple[str, ...], PageBuilder]] = [
                (("attribution.html", ""), partial(pages.attribution_page, segment=None)),
                (("channels.html", ""), partial(pages.channels_page, segment=None)),
                (
                    ("experiments.html", "", ""),
                    partial(pages.experiments_page, experiment=None, outcome=None),
                ),
            ]
            compiled = False
            while builds:
                key, build = builds.pop(0)
                context = prepared_page(key, build)
                if not compiled:  # after the overview: every template, compiled once
                    for name in environment.list_templates():
                        environment.get_template(name)
                    compiled = True
                if key == ("segments.html", "") and context is not None:
                    scheme = str(context["scheme"])
                    builds += [
                        (
                            ("segment.html", scheme, str(row["segment"])),
                            partial(pages.segment_page, scheme=scheme, segment=str(row["segment"])),
                        )
                        for row in context["segments"]
                    ]
            for key, build in measured:
                prepared_page(key, build)
            return latest
        finally:
            with gate.use(close=True):  # as every page leaves it: closed
                pass

    def prepared_page(key: tuple[str, ...], build: PageBuilder) -> dict[str, Any] | None:
        """One page of the run a page without ?run= shows, kept (None: it has an error)."""
        # Through the gate, one page at a time: requests (the API's too) take turns with
        # it. The store stays open from one page to the next (its tables loaded once),
        # unless a request closes it meanwhile; the preparation closes it at its end.
        with gate.use():
            try:
                return context_of(reader.runs.require_latest(None), key, build)
            except (pages.NotFound, SegvalueError):  # the page says so when asked
                return None

    def context_of(view: RunView, key: tuple[str, ...], build: PageBuilder) -> dict[str, Any]:
        return remember((view.run_id, *key), partial(build, view))

    def page(
        request: Request,
        run_id: str | None,
        build: PageBuilder,
        template: str,
        *args: str,
        on_other_runs: bool = False,
        attached: bool = False,
    ) -> Response:
        with gate.use(close=True):
            runs = reader.runs.list(status="complete")
            prepare_for(runs[0].run_id if runs else None)
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
                if attached:  # the page shows what was attached to the run after it
                    key += (_activation_stamp(view),)
                context = context_of(view, key, build)
            except pages.NotFound as exc:
                return render(request, "not_found.html", 404, message=str(exc), run=view)
            except SegvalueError as exc:  # a result this run does not hold
                return render(request, "missing.html", message=str(exc), run=view, runs=runs)
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

    @router.get("/attribution", response_class=HTMLResponse)
    @guarded
    def attribution(
        request: Request, run: str | None = None, segment: str | None = None
    ) -> Response:
        build = partial(pages.attribution_page, segment=segment or None)
        return page(request, run, build, "attribution.html", segment or "")

    @router.get("/channels", response_class=HTMLResponse)
    @guarded
    def channels(request: Request, run: str | None = None, segment: str | None = None) -> Response:
        build = partial(pages.channels_page, segment=segment or None)
        return page(request, run, build, "channels.html", segment or "")

    @router.get("/experiments", response_class=HTMLResponse)
    @guarded
    def experiments(
        request: Request,
        run: str | None = None,
        experiment: str | None = None,
        outcome: str | None = None,
    ) -> Response:
        build = partial(
            pages.experiments_page, experiment=experiment or None, outcome=outcome or None
        )
        return page(request, run, build, "experiments.html", experiment or "", outcome or "")

    @router.get("/campaigns", response_class=HTMLResponse)
    @guarded
    def campaigns(request: Request, run: str | None = None) -> Response:
        return page(request, run, pages.campaigns_page, "campaigns.html", attached=True)

    # A campaign's name is free text: the path converter takes one with a "/" in it too.
    @router.get("/campaigns/{name:path}", response_class=HTMLResponse)
    @guarded
    def campaign(request: Request, name: str, run: str | None = None) -> Response:
        build = partial(pages.campaign_page, name=name)
        return page(request, run, build, "campaign.html", name, attached=True)

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
        with gate.use(close=True):
            runs = reader.runs.list(status="complete")
        latest = runs[0].run_id if runs else ""
        prepare_for(latest or None)
        # The plan depends on the configuration and (objective clv) the latest run: it is
        # computed once per latest run, and each what-if answer on its very curves.
        context = budget_context(latest)
        if asked and context["available"]:
            key = ("budget", latest, "what-if", move_from or "", move_to or "", share or "")
            build = partial(
                pages.what_if_result, context["budget_curves"], move_from, move_to, share
            )
            try:
                answer["what_if"] = remember(key, build)
            except (pages.InvalidInput, SegvalueError) as exc:
                status, answer["form_error"] = 400, str(exc)
        return render(
            request, "budget.html", status, run=None, runs=[], form=form, **context, **answer
        )

    # ------------------------------------------------------------ customers (real time)

    def form_token(request: Request) -> tuple[str, bool]:
        """The token a POST form carries: the session's, or (no login) a double-submit
        cookie's value; and whether the cookie is new (to be set)."""
        session: Session | None = getattr(request.state, "session", None)
        if session is not None:
            return session.csrf_token, False
        token = request.cookies.get(FORM_CSRF_COOKIE, "")
        if token_shaped(token):
            return token, False
        return secrets.token_urlsafe(32), True

    def customer_response(
        request: Request, customer_id: str, status: int = 200, **extra: Any
    ) -> Response:
        token, fresh = form_token(request)
        with gate.use(close=True):
            try:
                context = pages.customer_page(reader, customer_id)
            except pages.NotFound as exc:
                message = str(exc)
                return render(request, "customers.html", 404, message=message, searched=customer_id)
            except SegvalueError as exc:  # no complete run yet
                return render(request, "customers.html", 404, message=str(exc))
        response = render(
            request,
            "customer.html",
            status,
            csrf_token=token,
            form=extra.pop("form", {}),
            **context,
            **extra,
        )
        if fresh:
            set_cookie(response, request, FORM_CSRF_COOKIE, token, path="/customers", max_age=28800)
        return response

    def key_can_write(key_id: str) -> bool:
        with gate.use(close=True):
            keys = reader.keys.list()
        return any(k.key_id == key_id and k.active and k.scope == "write" for k in keys)

    @router.get("/customers", response_class=HTMLResponse)
    @guarded
    def customers(request: Request, id: str | None = None) -> Response:
        if id is not None and id.strip():
            return RedirectResponse("/customers/" + quote(id.strip(), safe=""), status_code=303)
        return render(request, "customers.html")

    @router.get("/customers/{customer_id}", response_class=HTMLResponse)
    @guarded
    def customer(request: Request, customer_id: str) -> Response:
        return customer_response(request, customer_id)

    @router.post("/customers/{customer_id}/orders", response_class=HTMLResponse)
    async def record_order(request: Request, customer_id: str) -> Response:
        """The customer page's order form: a real-time event (``Project.record_event``)."""
        session = None
        if login:
            session = await run_in_threadpool(current_session, request)
            if session is None:
                return to_login(request)
            request.state.session = session
        form = await read_form(request)
        if form is None:
            return problem_page(request, 413, "Too large", "The form is larger than it can be.")
        expected = session.csrf_token if session else request.cookies.get(FORM_CSRF_COOKIE)
        if not same_token(expected, form.get("csrf_token")):
            return forbidden(request)
        if session is not None and not await run_in_threadpool(key_can_write, session.key_id):
            return problem_page(
                request,
                403,
                "Forbidden",
                "You logged in with a read key: recording an order needs a key of the write "
                "scope (segvalue keys create --scope write).",
            )
        amount: Any = form.get("amount", "").strip()
        with contextlib.suppress(ValueError):  # text that is no number: the check names it
            amount = float(amount)
        event = {
            "type": "order",
            "customer_id": customer_id,
            "order_id": form.get("order_id"),
            "order_ts": form.get("order_ts", "").strip() or None,
            "amount": amount if amount != "" else None,
        }

        def record() -> Response:
            try:
                with gate.use(close=True):
                    reply = reader.record_event(event)
            except SegvalueError as exc:
                return customer_response(request, customer_id, 422, form_error=str(exc), form=form)
            if reply["duplicate"]:
                notice = "That order was recorded already: nothing changed."
            elif reply["events"]:
                moved = "; ".join(
                    f"{m['scheme']}: {m['from'] or '–'} → {m['to'] or '–'}" for m in reply["events"]
                )
                notice = f"Order recorded. Segments changed: {moved}."
            else:
                notice = "Order recorded. No segment changed."
            return customer_response(request, customer_id, notice=notice)

        return await run_in_threadpool(record)

    @router.get("/static/{name}")
    def static_file(name: str) -> Response:
        path = static.get(name)
        if path is None:
            raise HTTPException(status_code=404, detail=f"no static file {name!r}")
        return FileResponse(path, media_type=_STATIC_TYPES.get(path.suffix))

    prepare_for(None)  # with `prepare`: the latest run's, now, on a background thread
    return router
