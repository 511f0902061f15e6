"""The routes: each parses, calls ``Project`` (one request at a time), and formats.

Every route that reads a run takes ``?run=ID`` (default: the latest complete run).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from segvalue.api.auth import gate_of, presented_key, require_scope
from segvalue.api.problems import Problem, ProblemDocument, json_ready
from segvalue.errors import ConfigError
from segvalue.project import Project, RunView

__all__ = [
    "API_PREFIX",
    "AUDIENCE_COLUMNS",
    "activation_campaign",
    "activation_funnel",
    "events_router",
    "health_router",
    "v1_router",
]

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDocument, "description": text}
    for status, text in (
        (400, "the project's configuration does not allow it"),
        (401, "no API key, or an unknown or revoked one"),
        (403, "the API key's scope does not allow it"),
        (404, "no such run, scheme, segment or customer"),
        (422, "a parameter or body field is invalid"),
    )
}


class Health(BaseModel):
    """``GET /health``."""

    status: Literal["ok"] = "ok"
    latest_run: str | None = Field(description="the latest complete run's id, if any")
    store: Literal["reachable"] = "reachable"


class Run(BaseModel):
    """What the store records about one run."""

    run_id: str
    status: Literal["running", "complete", "failed"]
    as_of: str | None = Field(description="the run's observation end (ISO date)")
    started_at: str
    finished_at: str | None
    config_hash: str
    data_fingerprint: str
    schemes: list[str]
    row_counts: dict[str, int]
    rejects: dict[str, int] = Field(description="rejected rows per table.rule")
    freshness: dict[str, Any]
    timings: dict[str, float] = Field(description="seconds per stage")
    versions: dict[str, str]
    error: str | None = Field(description="why a failed run failed")


class RunDetail(Run):
    """One run, with what a complete run holds."""

    tables: list[str] | None = None
    documents: list[str] | None = None


class RunList(BaseModel):
    """``GET /api/v1/runs``."""

    runs: list[Run]


class Customer(BaseModel):
    """One customer as a run scored them (null where the run has no CLV model)."""

    customer_id: str
    as_of: str | None
    features: dict[str, Any] = Field(description="every customer_scores column but predictions")
    memberships: dict[str, str | list[str] | None] = Field(
        description="scheme: segment (a list for a tags scheme; null or [] for none)"
    )
    probability_alive: float | None
    churn_risk: float | None
    expected_purchases: float | None
    expected_spend: float | None
    clv: float | None
    clv_lower: float | None
    clv_upper: float | None
    purchase_propensity: float | None


health_router = APIRouter(tags=["health"])
#: Where the versioned API lives.
API_PREFIX = "/api/v1"
# The prefix is the router's own (not given at include time): each route's template is
# then the whole path, which the access log names.
v1_router = APIRouter(
    prefix=API_PREFIX, dependencies=[Depends(require_scope("read"))], responses=_ERRORS
)
#: ``POST events`` alone: its write key is checked in the turn that applies the event,
#: so a request waits for the project once (``require_scope`` would take it first).
events_router = APIRouter(prefix=API_PREFIX, responses=_ERRORS)

RunParam = Annotated[
    str | None,
    Query(description="run id (segvalue runs list); default: the latest complete run"),
]


def _view(project: Project, run: str | None) -> RunView:
    """The run asked for, or the latest complete one; a 404 problem if there is none."""
    if run is None:
        view = project.runs.latest()
        if view is None:
            raise Problem(
                404,
                "the results store holds no complete run yet: compute one with segvalue run",
                parameter="run",
            )
        return view
    view = project.runs.get(run)
    if view.info.status != "complete":
        raise Problem(
            404,
            f"run {run} is {view.info.status}: only complete runs hold results",
            parameter="run",
        )
    return view


def _segment_sizes(view: RunView) -> list[dict[str, Any]]:
    return list(view.table("segment_sizes").to_pylist()) if view.has_table("segment_sizes") else []


def _scheme_info(view: RunView) -> dict[str, dict[str, Any]]:
    if not view.has_document("segments"):
        return {}
    schemes: dict[str, Any] = view.segments().get("schemes", {})
    return {
        name: {"type": info.get("type"), "mode": info.get("mode", "exclusive")}
        for name, info in schemes.items()
    }


def _kpis_by_segment(view: RunView) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """The KPI scheme and, per segment, each KPI with its interval and sample size."""
    if not view.has_table("segment_kpis"):
        return None, {}
    table = view.segment_kpis()
    names = [
        c
        for c in table.column_names
        if c not in ("scheme", "segment") and not c.endswith(("_lower", "_upper", "_n"))
    ]
    schemes = set(table.column("scheme").to_pylist())
    scheme = schemes.pop() if len(schemes) == 1 else None
    out: dict[str, dict[str, Any]] = {}
    for row in table.to_pylist():
        out[str(row["segment"])] = {
            name: {
                "value": row[name],
                "lower": row.get(f"{name}_lower"),
                "upper": row.get(f"{name}_upper"),
                "n": row.get(f"{name}_n"),
            }
            for name in names
        }
    return scheme, out


def _priorities(view: RunView) -> dict[str, dict[str, Any]]:
    if not view.has_table("segment_priorities"):
        return {}
    return {str(r["segment"]): r for r in view.priorities().to_pylist()}


# ---------------------------------------------------------------------------- health
@health_router.get("/health", summary="Liveness and the store's latest run (no key needed)")
def health(request: Request) -> Health:
    """``{"status": "ok", "latest_run": ID or null, "store": "reachable"}``; 503 if not."""
    gate = gate_of(request)
    try:
        with gate.use() as project:
            latest = project.runs.latest()
    except ConfigError as exc:
        raise Problem(
            503,
            f"the results store is not readable: {exc}",
            kind="unavailable",
            store="unreachable",
        ) from None
    return Health(latest_run=None if latest is None else latest.run_id)


# ---------------------------------------------------------------------------- runs
@v1_router.get("/runs", summary="Every recorded run, newest first")
def list_runs(
    request: Request,
    status: Annotated[
        Literal["complete", "failed", "running"] | None, Query(description="only runs of it")
    ] = None,
) -> RunList:
    """``{"runs": [run, ...]}`` (what the store records about each run)."""
    gate = gate_of(request)
    with gate.use() as project:
        runs = project.runs.list(status=status)
    return RunList.model_validate({"runs": json_ready([r.to_dict() for r in runs])})


@v1_router.get("/runs/{run_id}", summary="One run: status, as-of date, counts, timings")
def get_run(
    request: Request, run_id: Annotated[str, Path(description="the run's id")]
) -> RunDetail:
    """What the store records about the run (its tables and documents when complete)."""
    gate = gate_of(request)
    with gate.use() as project:
        view = project.runs.get(run_id)
        doc = view.info.to_dict()
        if view.info.status == "complete":
            doc["tables"] = view.table_names()
            doc["documents"] = view.document_names()
    return RunDetail.model_validate(json_ready(doc))


# ---------------------------------------------------------------------------- segments
@v1_router.get("/segments", summary="Per scheme its segments: size, share, CLV, churn, ROI")
def list_segments(request: Request, run: RunParam = None) -> Any:
    """Per scheme its type, mode and segments with size and share; the KPI scheme's
    segments also carry mean CLV, churn risk, ROI and priority (null elsewhere)."""
    gate = gate_of(request)
    with gate.use() as project:
        view = _view(project, run)
        info = _scheme_info(view)
        sizes = _segment_sizes(view)
        kpi_scheme, kpis = _kpis_by_segment(view)
        priorities = _priorities(view)
    schemes: dict[str, dict[str, Any]] = {
        name: {**info.get(name, {"type": None, "mode": None}), "segments": []}
        for name in view.info.schemes
    }
    for row in sizes:
        scheme, segment = str(row["scheme"]), str(row["segment"])
        own = kpis.get(segment, {}) if scheme == kpi_scheme else {}
        rank = priorities.get(segment) if scheme == kpi_scheme else None
        entry = schemes.setdefault(scheme, {"type": None, "mode": None, "segments": []})
        entry["segments"].append(
            {
                "segment": segment,
                "customers": row["customers"],
                "share": row["share"],
                "clv_mean": own.get("clv_mean", {}).get("value"),
                "churn_risk": own.get("churn_risk", {}).get("value"),
                "roi": own.get("roi", {}).get("value"),
                "priority_rank": None if rank is None else rank["rank"],
                "priority_score": None if rank is None else rank["score"],
            }
        )
    return json_ready({"run_id": view.run_id, "kpi_scheme": kpi_scheme, "schemes": schemes})


@v1_router.get(
    "/segments/{scheme}/{segment}",
    summary="One segment: KPIs with intervals, profile, persona, migration in and out",
)
def get_segment(
    request: Request,
    scheme: Annotated[str, Path(description="the segmentation scheme")],
    segment: Annotated[str, Path(description="the segment's name (URL-encoded)")],
    run: RunParam = None,
) -> Any:
    """The segment's size; KPIs with their 95% intervals, target status and priority if
    ``scheme`` is the KPI scheme; its profile rows, persona, and the customers who moved
    in from / out to each other segment since the previous run (null without one)."""
    gate = gate_of(request)
    with gate.use() as project:
        view = _view(project, run)
        doc = _segment_detail(view, scheme, segment)
    return json_ready(doc)


def _rows_of(view: RunView, table: str, scheme: str, segment: str) -> list[dict[str, Any]]:
    if not view.has_table(table):
        return []
    return [
        r
        for r in view.table(table).to_pylist()
        if r["scheme"] == scheme and r["segment"] == segment
    ]


def _segment_detail(view: RunView, scheme: str, segment: str) -> dict[str, Any]:
    if scheme not in view.info.schemes:
        raise Problem(
            404,
            f"run {view.run_id} has no scheme {scheme!r} "
            f"(schemes: {', '.join(view.info.schemes) or 'none'})",
            parameter="scheme",
        )
    size = next(
        (r for r in _segment_sizes(view) if r["scheme"] == scheme and r["segment"] == segment),
        None,
    )
    if size is None:
        held = [r["segment"] for r in _segment_sizes(view) if r["scheme"] == scheme]
        raise Problem(
            404,
            f"scheme {scheme!r} of run {view.run_id} has no segment {segment!r} "
            f"(segments: {', '.join(map(str, held)) or 'none'})",
            parameter="segment",
        )
    kpi_scheme, kpis = _kpis_by_segment(view)
    is_kpi_scheme = scheme == kpi_scheme
    persona = None
    if view.has_document("personas"):
        persona = next(
            (
                p
                for p in view.personas()
                if p.get("scheme") == scheme and p.get("segment") == segment
            ),
            None,
        )
    migration = None
    if view.has_table("segment_migration"):
        moves = [r for r in view.table("segment_migration").to_pylist() if r["scheme"] == scheme]
        migration = {
            "in": [r for r in moves if r["to_segment"] == segment and r["from_segment"] != segment],
            "out": [
                r for r in moves if r["from_segment"] == segment and r["to_segment"] != segment
            ],
            "stayed": next(
                (
                    r["customers"]
                    for r in moves
                    if r["from_segment"] == segment and r["to_segment"] == segment
                ),
                0,
            ),
        }
    return {
        "run_id": view.run_id,
        "scheme": scheme,
        "segment": segment,
        "customers": size["customers"],
        "share": size["share"],
        "kpis": kpis.get(segment) if is_kpi_scheme else None,
        "kpi_status": _rows_of(view, "kpi_status", scheme, segment) if is_kpi_scheme else None,
        "priority": _priorities(view).get(segment) if is_kpi_scheme else None,
        "profile": {
            "summary": next(iter(_rows_of(view, "segment_profiles", scheme, segment)), None),
            "numeric": _rows_of(view, "segment_profiles_numeric", scheme, segment),
            "attributes": _rows_of(view, "segment_profiles_attributes", scheme, segment),
        },
        "persona": persona,
        "migration": migration,
    }


# ---------------------------------------------------------------------------- KPIs
@v1_router.get("/kpis", summary="Segment KPIs with intervals, target status and priorities")
def get_kpis(request: Request, run: RunParam = None) -> Any:
    """The KPI scheme's segments (first: all customers), each KPI with its 95% interval
    and sample size; each target's status per segment; the segments ranked."""
    gate = gate_of(request)
    with gate.use() as project:
        view = _view(project, run)
        if not view.has_table("segment_kpis"):
            raise Problem(
                404,
                f"run {view.run_id} holds no segment KPIs (segments or KPIs were disabled)",
                parameter="run",
            )
        scheme, kpis = _kpis_by_segment(view)
        status = view.kpi_status().to_pylist() if view.has_table("kpi_status") else []
        priorities = view.priorities().to_pylist() if view.has_table("segment_priorities") else []
    return json_ready(
        {
            "run_id": view.run_id,
            "as_of": view.info.as_of,
            "scheme": scheme,
            "segments": [{"segment": name, "kpis": values} for name, values in kpis.items()],
            "status": status,
            "priorities": priorities,
        }
    )


# ---------------------------------------------------------------------------- measurement
@v1_router.get(
    "/measurement/attribution",
    summary="Conversions and value credited to channels, for everyone and per segment",
)
def get_attribution(
    request: Request,
    run: RunParam = None,
    model: Annotated[
        Literal[
            "first",
            "last",
            "last-non-direct",
            "linear",
            "linear-unique",
            "position",
            "time-decay",
            "markov",
            "shapley",
        ],
        Query(description="the attribution model (docs/measurement.md)"),
    ] = "markov",
    scheme: Annotated[
        str | None, Query(description="per segment of this scheme too", max_length=200)
    ] = None,
    order: Annotated[int, Query(ge=1, le=4, description="Markov order")] = 1,
) -> Any:
    """The run's touchpoints as journeys (30-day lookback, conversion rows ending them),
    attributed by ``model``: ``{"run_id", "model", "scheme", "all": {"channels": {name:
    {"conversions", "value", "removal_effect" (markov)}}, "total_conversions", ...},
    "segments": {segment: ...}}``."""
    gate = gate_of(request)
    with gate.use() as project:
        _view(project, run)  # a 404 problem when there is no such run
        found = project.attribution(model, scheme=scheme, run_id=run, order=order)
    return json_ready(found)


SegmentParam = Annotated[
    str | None, Query(description="one segment only (`all customers`: the whole base)")
]


def _measured(project: Project, run: str | None) -> tuple[RunView, dict[str, Any]]:
    """The run and its stored measurement; a 404 problem when the run measured nothing."""
    view = _view(project, run)
    if not view.has_document("measurement"):
        raise Problem(
            404,
            f"run {view.run_id} holds no measurement (it had no touchpoints or experiments "
            "source, or measurement.enabled was false)",
            parameter="run",
        )
    return view, view.measurement()


def _only(rows: list[dict[str, Any]], **wanted: str | None) -> list[dict[str, Any]]:
    """The rows whose named columns equal the values asked for (None: any)."""
    return [r for r in rows if all(v is None or r.get(k) == v for k, v in wanted.items())]


@v1_router.get(
    "/measurement/stored-attribution",
    summary="The attribution models stored with a run, side by side, per segment",
)
def get_stored_attribution(
    request: Request,
    run: RunParam = None,
    segment: SegmentParam = None,
    model: Annotated[str | None, Query(description="one model only", max_length=40)] = None,
) -> Any:
    """The run's measurement of its touchpoints (docs/measurement.md): per segment of the
    measured scheme (and ``all customers``), model and channel, the conversions and value
    credited, the share and (markov) the removal effect; with the step's facts."""
    gate = gate_of(request)
    with gate.use() as project:
        view, found = _measured(project, run)
    return json_ready(
        {
            "run_id": view.run_id,
            "scheme": found["details"].get("scheme"),
            "details": found["details"],
            "attribution": _only(found["attribution"], segment=segment, model=model),
        }
    )


@v1_router.get(
    "/measurement/channels",
    summary="Channel effectiveness per segment, with intervals and the recommended roles",
)
def get_channels(request: Request, run: RunParam = None, segment: SegmentParam = None) -> Any:
    """Per segment and channel: reach, conversion rate, cost per conversion, ROAS and
    value per reached customer with their intervals, and the channel's role (primary,
    secondary, support, test, reduce) with the reason."""
    gate = gate_of(request)
    with gate.use() as project:
        view, found = _measured(project, run)
    return json_ready(
        {
            "run_id": view.run_id,
            "scheme": found["details"].get("scheme"),
            "channels": _only(found["channels"], segment=segment),
        }
    )


@v1_router.get(
    "/measurement/experiments",
    summary="Experiment lift per arm, outcome and segment, with intervals",
)
def get_experiments(
    request: Request,
    run: RunParam = None,
    segment: SegmentParam = None,
    experiment: Annotated[
        str | None, Query(description="one experiment_id only", max_length=200)
    ] = None,
    outcome: Annotated[str | None, Query(description="one outcome only", max_length=200)] = None,
) -> Any:
    """The lift rows of the run's experiments (treated and control means, lift with its
    interval, relative lift, p-value and the adjusted one, under-powered flag, incremental
    outcome, campaign ROI), the lift that feeds the priorities, and each experiment's
    uplift model evaluation with its Qini curves."""
    gate = gate_of(request)
    with gate.use() as project:
        view, found = _measured(project, run)
    uplift = found["uplift"]
    return json_ready(
        {
            "run_id": view.run_id,
            "scheme": found["details"].get("scheme"),
            "priority_lift": found["details"].get("priority_lift"),
            "lift": _only(
                found["lift"], segment=segment, experiment_id=experiment, outcome=outcome
            ),
            "uplift": {k: v for k, v in uplift.items() if experiment is None or k == experiment},
        }
    )


@v1_router.get(
    "/measurement/sample-size",
    summary="Customers a test needs to detect a lift, before it runs",
)
def get_sample_size(
    effect: Annotated[
        float, Query(description="the lift to detect: 0.02 (2 points) on a rate, or on a mean")
    ],
    baseline: Annotated[
        float | None, Query(description="a rate: the control group's expected rate, (0, 1)")
    ] = None,
    sd: Annotated[
        float | None, Query(description="a mean: its standard deviation per customer")
    ] = None,
    level: Annotated[float, Query(description="confidence of the two-sided test")] = 0.95,
    power: Annotated[float, Query(description="chance of detecting the lift")] = 0.8,
    treated_share: Annotated[float, Query(description="share of customers treated")] = 0.5,
) -> Any:
    """``{"effect", "baseline", "sd", "level", "power", "treated_share", "n_total",
    "n_treated", "n_control"}``, as ``segvalue sample-size --json``: give exactly one of
    ``baseline`` (a rate) or ``sd`` (a mean). Computed from the query alone: no run is
    read."""
    found = Project.sample_size(
        effect,
        baseline=baseline,
        sd=sd,
        level=level,
        power=power,
        treated_share=treated_share,
    )
    return json_ready(found)


# ---------------------------------------------------------------------------- customers
@v1_router.get(
    "/customers/{customer_id}",
    summary="One customer: features, memberships, P(alive), churn risk, CLV with interval",
)
def get_customer(
    request: Request,
    customer_id: Annotated[str, Path(description="the customer's id")],
    run: RunParam = None,
) -> Customer:
    """The customer as the run scored them, re-scored with the events received for them
    since (``POST /api/v1/events``); predictions are null where the run has no CLV
    model."""
    gate = gate_of(request)
    with gate.use() as project:
        view = _view(project, run)
        customer = project.customer(customer_id, view.run_id)
    if customer is None:
        raise Problem(
            404, f"run {view.run_id} holds no customer with that id", parameter="customer_id"
        )
    return Customer.model_validate(json_ready(customer))


# ---------------------------------------------------------------------------- events
class SegmentMove(BaseModel):
    """A segment the customer entered or left (``from`` / ``to`` null: none)."""

    model_config = ConfigDict(populate_by_name=True)

    scheme: str
    from_: str | None = Field(alias="from")
    to: str | None


class EventReply(BaseModel):
    """``POST /api/v1/events``: the customer re-scored and the segment changes."""

    customer: Customer
    events: list[SegmentMove]
    duplicate: bool = Field(description="the event had been applied already: nothing changed")


_EVENT_EXAMPLES = {
    "order": {
        "summary": "a new order",
        "value": {
            "type": "order",
            "customer_id": "C0000001",
            "order_id": "A-1",
            "order_ts": "2025-12-31T10:00:00",
            "amount": 42.5,
        },
    },
    "touchpoint": {
        "summary": "a touchpoint",
        "value": {
            "type": "touchpoint",
            "customer_id": "C0000001",
            "ts": "2025-12-31T09:30:00",
            "channel": "email",
            "event": "click",
        },
    },
}


@events_router.post(
    "/events",
    summary="A new order or touchpoint: stored, its customer re-scored in real time",
    response_model_by_alias=True,
)
async def post_event(
    request: Request,
    key: Annotated[str, Depends(presented_key)],
    event: Annotated[
        dict[str, Any],
        Body(
            description="an order (customer_id, order_id, order_ts, amount; optionally "
            "discount, currency, channel) or a touchpoint (customer_id, ts, channel; "
            "optionally event, touch_id, campaign_id, cost), with its type; checked with "
            "the rules of the files (docs/api.md)",
            openapi_examples=_EVENT_EXAMPLES,
        ),
    ],
) -> EventReply:
    """Checks the event (422 naming the rule and the field), stores it (an order id sent
    again is applied once), re-scores its customer with the latest run's scorer and
    stores the segments entered and left. The next ``segvalue run`` includes it."""
    # The key is checked with the event, in the turn that applies it (one wait, not two).
    reply = await gate_of(request).record_event_async(event, key=key)
    return EventReply.model_validate(json_ready(reply))


# ---------------------------------------------------------------------------- budget
class BudgetPlanRequest(BaseModel):
    """``Project.budget(total=..., objective=..., target=...)``."""

    model_config = ConfigDict(extra="forbid")

    total: float | None = Field(
        None, ge=0, description="budget to allocate (default: budget.total, else current spend)"
    )
    objective: Literal["profit", "revenue", "clv"] | None = Field(
        None, description="what to maximise (default: budget.objective)"
    )
    target: float | None = Field(
        None, gt=0, description="the smallest budget reaching this outcome instead"
    )


class WhatIfRequest(BaseModel):
    """``Project.what_if(move)``."""

    model_config = ConfigDict(extra="forbid")

    move: str = Field(
        description="FROM:TO:SHARE, e.g. email:search_ads:0.2 moves 20% of email's spend",
        examples=["email:search_ads:0.2"],
        min_length=1,
        max_length=400,
    )


@v1_router.post("/budget/plan", summary="The budget allocation maximising the objective")
def plan_budget(request: Request, body: BudgetPlanRequest) -> Any:
    """The plan (``Allocation.to_dict()``) and the curve-fitting warnings. Computes,
    stores nothing: a read key may call it."""
    gate = gate_of(request)
    with gate.use() as project:
        plan, warnings = project.budget(
            total=body.total, objective=body.objective, target=body.target
        )
    return json_ready({**plan.to_dict(), "warnings": list(warnings)})


@v1_router.post("/budget/what-if", summary="The change in outcome when spend moves")
def budget_what_if(request: Request, body: WhatIfRequest) -> Any:
    """The scenario (``WhatIf.to_dict()``): baseline, scenario, changes and interval."""
    gate = gate_of(request)
    with gate.use() as project:
        result = project.what_if(body.move)
    return json_ready(result.to_dict())


# ---------------------------------------------------------------------------- activation
#: The columns of an audience row the API answers with: what each send is, never how to
#: reach the customer (``activation_audiences`` holds no contact details, and a column
#: added to it later is not served until it is listed here).
AUDIENCE_COLUMNS = (
    "campaign",
    "step",
    "customer_id",
    "segment",
    "channel",
    "send_at_utc",
    "send_at_local",
    "time_zone",
    "objective",
    "theme",
    "tone",
    "offer",
    "offer_value",
    "next_best",
    "next_best_reason",
    "conditional",
)


def activation_funnel(
    step: dict[str, Any], campaign_suppressed: dict[str, int]
) -> list[dict[str, Any]]:
    """The way from a campaign's members to one step's audience, stage by stage.

    ``members``, each campaign-level suppression (``campaign_suppressed``: reason ->
    customers), ``eligible``, ``holdout``, each of the step's own suppressions and caps,
    ``audience``: each stage ``{"stage", "reason", "customers", "remaining"}``, where
    ``remaining`` is who is still in after it (the plan leaves every customer at one
    stage, so the last ``remaining`` is the audience).

    Examples
    --------
    >>> step = {"members": 10, "eligible": 8, "holdout": 1, "audience": 5,
    ...         "suppressed": {"global_control": 2, "no_consent": 1}, "capped": {"c": 1}}
    >>> [(s["stage"], s["reason"], s["remaining"])
    ...  for s in activation_funnel(step, {"global_control": 2})]  # doctest: +NORMALIZE_WHITESPACE
    [('members', None, 10), ('suppressed', 'global_control', 8), ('eligible', None, 8),
     ('holdout', None, 7), ('suppressed', 'no_consent', 6), ('capped', 'c', 5),
     ('audience', None, 5)]
    """

    def by_size(counts: dict[str, int]) -> list[tuple[str, int]]:
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    stages: list[dict[str, Any]] = []

    def stage(kind: str, reason: str | None, customers: int, remaining: int) -> None:
        stages.append(
            {"stage": kind, "reason": reason, "customers": customers, "remaining": remaining}
        )

    remaining = int(step["members"])
    stage("members", None, remaining, remaining)
    for reason, count in by_size(campaign_suppressed):
        remaining -= count
        stage("suppressed", reason, count, remaining)
    remaining = int(step["eligible"])
    stage("eligible", None, remaining, remaining)
    remaining -= int(step["holdout"])
    stage("holdout", None, int(step["holdout"]), remaining)
    own = {k: v for k, v in step["suppressed"].items() if k not in campaign_suppressed}
    for reason, count in by_size(own):
        remaining -= count
        stage("suppressed", reason, count, remaining)
    for cap, count in by_size(step["capped"]):
        remaining -= count
        stage("capped", cap, count, remaining)
    stage("audience", None, int(step["audience"]), int(step["audience"]))
    return stages


def _of_campaign(view: RunView, table: str, name: str) -> Any:
    """The rows of an activation table that belong to campaign ``name`` (a pyarrow table).

    The run's whole table, filtered: ``RunView.rows`` would keep the table in memory
    after a few lookups, and a later ``segvalue activate`` replaces a run's activation.
    """
    import pyarrow.compute as pc

    rows = view.table(table)
    return rows.filter(pc.equal(rows.column("campaign"), name))


def activation_campaign(view: RunView, name: str) -> dict[str, Any] | None:
    """One campaign of the run's activation (None: the activation has no such campaign).

    Its summary with the campaign-level suppressions by reason, its steps as planned,
    the funnel of each step (:func:`activation_funnel`), and per segment its eligible
    customers, treatment and holdout (``activation_holdouts``). The run must hold an
    activation (``view.has_document("activation")``).
    """
    from collections import Counter

    document = view.document("activation")
    campaign = next((c for c in document["campaigns"] if c["name"] == name), None)
    if campaign is None:
        return None
    left = _of_campaign(view, "activation_left_out", name)
    at_campaign = [
        reason
        for step, reason in zip(
            left.column("step").to_pylist(), left.column("reason").to_pylist(), strict=True
        )
        if step is None and reason != "holdout"  # the holdout is a stage of its own
    ]
    suppressed = dict(sorted(Counter(at_campaign).items()))
    held = _of_campaign(view, "activation_holdouts", name)
    groups: dict[str, Counter[str]] = {}
    for segment, group in zip(
        held.column("segment").to_pylist(), held.column("group").to_pylist(), strict=True
    ):
        groups.setdefault(str(segment), Counter())[str(group)] += 1
    order = [s for s in campaign["segments"] if s in groups] + sorted(
        set(groups) - set(campaign["segments"])
    )
    steps = list(campaign["steps"])
    return {
        "campaign": {k: v for k, v in campaign.items() if k != "steps"}
        | {"suppressed": suppressed},
        "steps": steps,
        "funnel": [
            {
                "step": step["step"],
                "day": step["day"],
                "channel": step["channel"],
                "stages": activation_funnel(step, suppressed),
            }
            for step in steps
        ],
        "holdouts": [
            {
                "segment": segment,
                "eligible": sum(groups[segment].values()),
                "treatment": groups[segment]["treatment"],
                "holdout": groups[segment]["holdout"],
            }
            for segment in order
        ],
    }


def _activated(project: Project, run: str | None) -> tuple[RunView, dict[str, Any]]:
    """The run and its activation document; a 404 problem when it was never activated."""
    view = _view(project, run)
    if not view.has_document("activation"):
        raise Problem(
            404,
            f"run {view.run_id} holds no activation: run segvalue activate",
            parameter="run",
        )
    return view, view.document("activation")


def _unknown_campaign(view: RunView, document: dict[str, Any], name: str) -> Problem:
    names = [str(c["name"]) for c in document["campaigns"]]
    return Problem(
        404,
        f"the activation of run {view.run_id} has no campaign {name!r} "
        f"(campaigns: {', '.join(names) or 'none'})",
        parameter="name",
    )


CampaignName = Annotated[
    str, Path(description="the campaign's name, as in segvalue.yaml (URL-encoded)")
]


@v1_router.get(
    "/activation/campaigns",
    summary="The run's activation: every campaign with its steps and counts by reason",
)
def list_campaigns(request: Request, run: RunParam = None) -> Any:
    """The activation document ``segvalue activate`` stored with the run: per campaign
    its members, eligible customers and holdout, per step the audience, the contacts
    suppressed by reason and capped by cap; the global control group, the caps, the
    default time zone. A 404 problem when the run was not activated."""
    gate = gate_of(request)
    with gate.use() as project:
        view, document = _activated(project, run)
    return json_ready({"run_id": view.run_id, **document})


# Before the campaign's own route: its name may hold a "/" (the path converter takes it).
@v1_router.get(
    "/activation/campaigns/{name:path}/audience",
    summary="A campaign's audience: one row per planned send, page by page",
)
def get_campaign_audience(
    request: Request,
    name: CampaignName,
    run: RunParam = None,
    step: Annotated[int | None, Query(ge=1, description="one step only (1, 2, ...)")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="rows per page")] = 100,
    offset: Annotated[int, Query(ge=0, description="rows to skip")] = 0,
) -> Any:
    """The planned sends of the campaign (of one ``step``) in the plan's order (step,
    then the customer's CLV, highest first): customer, segment, channel, send time in
    UTC and local, time zone, objective, theme, tone, offer and next-best item. No
    contact details: exports add them (docs/activation.md). ``total`` counts every
    row; ``rows`` holds ``limit`` of them from ``offset``."""
    import pyarrow.compute as pc

    gate = gate_of(request)
    with gate.use() as project:
        view, document = _activated(project, run)
        campaign = next((c for c in document["campaigns"] if c["name"] == name), None)
        if campaign is None:
            raise _unknown_campaign(view, document, name)
        numbers = [int(s["step"]) for s in campaign["steps"]]
        if step is not None and step not in numbers:
            raise Problem(
                404,
                f"campaign {name!r} has no step {step} (steps: {', '.join(map(str, numbers))})",
                parameter="step",
            )
        rows = _of_campaign(view, "activation_audiences", name)
    if step is not None:
        rows = rows.filter(pc.equal(rows.column("step"), step))
    page = rows.slice(offset, limit).select([c for c in AUDIENCE_COLUMNS if c in rows.column_names])
    return json_ready(
        {
            "run_id": view.run_id,
            "campaign": name,
            "step": step,
            "total": rows.num_rows,
            "offset": offset,
            "limit": limit,
            "rows": page.to_pylist(),
        }
    )


@v1_router.get(
    "/activation/campaigns/{name:path}",
    summary="One campaign: summary, steps, the audience funnel per step, holdout per segment",
)
def get_campaign(request: Request, name: CampaignName, run: RunParam = None) -> Any:
    """The campaign's summary (with its campaign-level suppressions by reason), its
    steps, per step the funnel from members to audience (``{"stage": "members" |
    "suppressed" | "eligible" | "holdout" | "capped" | "audience", "reason", "customers",
    "remaining"}``), and per segment the eligible customers, treatment and holdout."""
    gate = gate_of(request)
    with gate.use() as project:
        view, document = _activated(project, run)
        found = activation_campaign(view, name)
    if found is None:
        raise _unknown_campaign(view, document, name)
    plan = {k: v for k, v in document.items() if k != "campaigns"}
    return json_ready({"run_id": view.run_id, **found, "plan": plan})
