"""One error shape for the whole API: RFC 9457 problem details (``application/problem+json``).

``type`` is a URI naming the kind of problem (``https://segvalue.dev/problems/not-found``,
or ``about:blank`` for a plain HTTP status), ``title`` its short summary, ``status`` the
HTTP status, ``detail`` what went wrong this time, and, when one is at fault, the
offending ``parameter`` (a query or path parameter, a body field, or a config key).
"""

from __future__ import annotations

import http
import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from segvalue.errors import ConfigError, SegvalueError

__all__ = [
    "PROBLEM_BASE",
    "PROBLEM_MEDIA_TYPE",
    "REQUEST_PARAMETERS",
    "Problem",
    "ProblemDocument",
    "add_problem_handlers",
    "json_ready",
    "problem_response",
    "segvalue_problem",
]

PROBLEM_BASE = "https://segvalue.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

_log = logging.getLogger("segvalue.api")

# The problem type of a plain HTTP status (anything else: about:blank).
_KINDS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "request-too-large",
    422: "invalid-request",
    500: "internal-error",
    503: "unavailable",
}


class ProblemDocument(BaseModel):
    """The body of every error response (RFC 9457)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI of the kind of problem, or about:blank")
    title: str = Field(description="short summary of the kind of problem")
    status: int = Field(description="the HTTP status")
    detail: str = Field(description="what went wrong this time")
    parameter: str | None = Field(
        None, description="the offending parameter, body field or config key, when one is"
    )


class Problem(Exception):  # noqa: N818  (an RFC 9457 problem, raised by routes)
    """An error a route raises: becomes a problem+json response.

    Examples
    --------
    >>> p = Problem(404, "no customer 'C9' in run r1", parameter="customer_id")
    >>> p.document()["type"], p.document()["title"]
    ('https://segvalue.dev/problems/not-found', 'Not Found')
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        parameter: str | None = None,
        kind: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.parameter = parameter
        self.kind = kind
        self.headers = dict(headers or {})
        self.extra = extra

    def document(self) -> dict[str, Any]:
        """The problem's JSON body."""
        kind = self.kind or _KINDS.get(self.status)
        doc: dict[str, Any] = {
            "type": PROBLEM_BASE + kind if kind else "about:blank",
            "title": _title(self.status),
            "status": self.status,
            "detail": self.detail,
        }
        if self.parameter is not None:
            doc["parameter"] = self.parameter
        doc.update(json_ready(self.extra))
        return doc


def _title(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def json_ready(value: Any) -> Any:
    """``value`` with dates as ISO strings and NaN / infinities as None (strict JSON).

    Examples
    --------
    >>> import datetime as dt
    >>> json_ready({"a": float("nan"), "b": [dt.date(2025, 1, 2), 1.5]})
    {'a': None, 'b': ['2025-01-02', 1.5]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "isoformat"):  # date, datetime, time
        return value.isoformat()
    return value


def problem_response(problem: Problem) -> JSONResponse:
    """The response of ``problem``.

    Examples
    --------
    >>> r = problem_response(Problem(413, "too large", parameter="serve.max_body_bytes"))
    >>> r.status_code, r.media_type
    (413, 'application/problem+json')
    """
    return JSONResponse(
        problem.document(),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


#: The names of the API's own parameters and body fields: a library error naming one (or
#: none) is the request's fault (422); naming another, the project's (400).
REQUEST_PARAMETERS = frozenset(
    {"run", "run_id", "status", "scheme", "segment", "customer_id"}
    | {"total", "objective", "target", "move"}
)


def segvalue_problem(exc: SegvalueError) -> Problem:
    """The problem of a library error: 404 for what does not exist, 422 for what the
    request asked, 400 for what the project's configuration does not allow.

    Examples
    --------
    >>> from segvalue.errors import ConfigError
    >>> segvalue_problem(ConfigError("`move` 'x' is not FROM:TO:SHARE", parameter="move")).status
    422
    >>> segvalue_problem(ConfigError("no budget.items", parameter="budget.items")).status
    400
    """
    detail = str(exc)
    parameter = exc.parameter
    if parameter == "run_id":
        parameter = "run"  # the API's name for it
    not_found = exc.parameter in ("run_id", "key_id") or detail.startswith(
        ("no results store at", "no complete run in the store")
    )
    if not_found:
        return Problem(404, detail, parameter=parameter)
    if (
        isinstance(exc, ConfigError)
        and parameter is not None
        and (parameter not in REQUEST_PARAMETERS)
    ):
        return Problem(400, detail, parameter=parameter, kind="project-configuration")
    return Problem(422, detail, parameter=parameter, kind="invalid-parameter")


def _location(loc: Any) -> str:
    return ".".join(str(part) for part in loc)


def add_problem_handlers(app: FastAPI) -> None:
    """Every error the app can raise becomes a problem+json response.

    Examples
    --------
    >>> from fastapi.testclient import TestClient
    >>> app = FastAPI()
    >>> add_problem_handlers(app)
    >>> missing = TestClient(app).get("/nowhere")
    >>> missing.headers["content-type"], missing.json()["type"]
    ('application/problem+json', 'https://segvalue.dev/problems/not-found')
    """

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_segvalue(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SegvalueError)
        return problem_response(segvalue_problem(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"location": _location(e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"location": "", "message": "invalid request"}
        detail = (
            f"{first['location']}: {first['message']}" if first["location"] else first["message"]
        )
        return problem_response(
            Problem(422, detail, parameter=first["location"] or None, errors=errors)
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}"
        return problem_response(Problem(exc.status_code, detail, headers=exc.headers))

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        _log.error("unhandled error in %s %s", request.method, _route_of(request), exc_info=exc)
        return problem_response(
            Problem(500, "the server failed to answer this request; its log has the cause")
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(SegvalueError, on_segvalue)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)


def _route_of(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path_format", None) or getattr(route, "path", "?"))
