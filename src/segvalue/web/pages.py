"""What each dashboard page shows, read from one stored run through ``RunView``.

Each ``*_page`` function returns the template context of its page as plain Python values
and :class:`~segvalue.web.charts.Chart` objects; nothing here knows HTTP or HTML. A
segment or scheme the run does not hold raises :class:`NotFound`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from segvalue.errors import DataValidationError
from segvalue.web import charts

if TYPE_CHECKING:
    import pyarrow as pa

    from segvalue.config import ResponseItem
    from segvalue.project import BudgetCurves, Project, Runs, RunView

__all__ = [
    "ALL_CUSTOMERS",
    "AUDIENCE_SAMPLE",
    "CHANNEL_ROLES",
    "InvalidInput",
    "NotFound",
    "attribution_page",
    "budget_page",
    "campaign_page",
    "campaigns_page",
    "channels_page",
    "experiments_page",
    "migration_page",
    "models_page",
    "overview_page",
    "rfm_grid",
    "segment_page",
    "segments_page",
    "what_if_result",
]

# z of a two-sided 95% interval.
_Z95 = 1.959963984540054


class NotFound(LookupError):  # noqa: N818 - the page's answer: 404 Not Found
    """The run holds no such scheme or segment (the page answers 404)."""


class InvalidInput(ValueError):  # noqa: N818 - the page's answer: 400 Bad Request
    """A form's input the page cannot use (the page answers 400 with the message)."""


def _rows(view: RunView, table: str) -> list[dict[str, Any]]:
    return list(view.table(table).to_pylist()) if view.has_table(table) else []


def _kpi_scheme(view: RunView) -> str | None:
    rows = _rows(view, "segment_kpis")
    return str(rows[0]["scheme"]) if rows else None


def overview_page(view: RunView) -> dict[str, Any]:
    """KPI cards against targets, data freshness per table, the run, rejects by rule.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.project import Project
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = "order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n2,b,2024-01-09,7\\n"
    >>> _ = (d / "o.csv").write_text(rows)
    >>> project = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d))
    >>> _ = project.run()
    >>> view = project.runs.latest()
    >>> overview_page(view)["freshness"][1]
    {'table': 'orders', 'latest': '2024-01-09T00:00:00', 'rows': 2}
    >>> project.close()
    """
    info = view.info
    status_rows = _rows(view, "kpi_status")
    by_kpi: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in status_rows:
        by_kpi[str(row["kpi"])].append(row)
    kpis = [
        {
            "name": name,
            "target": rows[0]["target"],
            "direction": rows[0]["direction"],
            "tolerance": rows[0]["tolerance"],
            "cards": rows,
            "chart": charts.kpi_chart(name, rows),
        }
        for name, rows in by_kpi.items()
    ]
    tables = sorted(set(info.freshness) | set(info.row_counts))
    freshness = [
        {"table": t, "latest": info.freshness.get(t), "rows": info.row_counts.get(t)}
        for t in tables
    ]
    rejects = sorted(info.rejects.items(), key=lambda item: (-item[1], item[0]))
    duration = None
    if info.finished_at is not None:
        duration = (info.finished_at - info.started_at).total_seconds()
    kpi_scheme = str(status_rows[0]["scheme"]) if status_rows else _kpi_scheme(view)
    return {
        "kpi_scheme": kpi_scheme,
        # The segments with a page (not the "all customers" row).
        "kpi_segments": {
            r["segment"] for r in _rows(view, "segment_sizes") if r["scheme"] == kpi_scheme
        },
        "kpis": kpis,
        "freshness": freshness,
        "rejects": rejects,
        "duration": duration,
        # Whether the run measured attribution, channels or experiments (links to them).
        "measured": view.has_document("measurement"),
        "charts": [k["chart"] for k in kpis],
    }


def segments_page(view: RunView, scheme: str | None) -> dict[str, Any]:
    """One scheme's segments: size, CLV, churn risk, ROI and priority, sortable.

    ``scheme`` None: the KPI scheme when the run has one, else the run's first scheme.
    ROI and priority exist for the KPI scheme only (the other schemes show none).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.project import Project
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = "order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n2,b,2024-01-09,7\\n"
    >>> _ = (d / "o.csv").write_text(rows)
    >>> project = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d))
    >>> _ = project.run()
    >>> view = project.runs.latest()
    >>> page = segments_page(view, "lifecycle")
    >>> [(s["segment"], s["customers"]) for s in page["segments"]]
    [('new', 2)]
    >>> project.close()
    """
    schemes = list(view.info.schemes)
    kpi_scheme = _kpi_scheme(view)
    if scheme is None:
        scheme = kpi_scheme if kpi_scheme in schemes else (schemes[0] if schemes else None)
    if scheme is None or scheme not in schemes:
        raise NotFound(f"run {view.run_id} has no scheme {scheme!r}")
    sizes = [r for r in _rows(view, "segment_sizes") if r["scheme"] == scheme]
    profiles = {r["segment"]: r for r in _rows(view, "segment_profiles") if r["scheme"] == scheme}
    roi = {r["segment"]: r.get("roi") for r in _rows(view, "segment_kpis") if r["scheme"] == scheme}
    ranks = {r["segment"]: r for r in _rows(view, "segment_priorities") if r["scheme"] == scheme}
    personas = {
        p["segment"]: p.get("name")
        for p in (view.personas() if view.has_document("personas") else [])
        if p.get("scheme") == scheme
    }
    segments = [
        {
            "segment": r["segment"],
            "persona": personas.get(r["segment"]),
            "customers": r["customers"],
            "share": r["share"],
            # Without profiles or a CLV model a run has no CLV or churn risk.
            "clv_mean": profiles.get(r["segment"], {}).get("clv_mean"),
            "churn_risk": profiles.get(r["segment"], {}).get("churn_risk_mean"),
            "roi": roi.get(r["segment"]),
            "priority": ranks[r["segment"]]["rank"] if r["segment"] in ranks else None,
            "priority_reasons": ranks[r["segment"]]["reasons"] if r["segment"] in ranks else None,
        }
        for r in sizes
    ]
    segments.sort(key=lambda s: -s["customers"])
    grid = rfm_grid(view, scheme)
    return {
        "scheme": scheme,
        "schemes": schemes,
        "is_kpi_scheme": scheme == kpi_scheme,
        "segments": segments,
        "rfm": grid,
        "charts": [] if grid is None else [charts.rfm_heatmap(grid["cells"], bins=grid["bins"])],
    }


def segment_page(view: RunView, scheme: str, segment: str) -> dict[str, Any]:
    """One segment: profile against the base, persona, CLV of its members, migration.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.project import Project
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = "order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n2,b,2024-01-09,7\\n"
    >>> _ = (d / "o.csv").write_text(rows)
    >>> project = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d))
    >>> _ = project.run()
    >>> view = project.runs.latest()
    >>> page = segment_page(view, "lifecycle", "new")
    >>> page["members"], [chart.chart_id for chart in page["charts"]]
    (2, ['profile-index'])
    >>> project.close()
    """
    import pyarrow.compute as pc

    if scheme not in view.info.schemes:
        raise NotFound(f"run {view.run_id} has no scheme {scheme!r}")

    def find(table: str) -> dict[str, Any] | None:
        rows = _rows(view, table)
        return next((r for r in rows if r["scheme"] == scheme and r["segment"] == segment), None)

    summary = find("segment_profiles") or find("segment_sizes")
    if summary is None:
        raise NotFound(f"scheme {scheme!r} of run {view.run_id} has no segment {segment!r}")
    summary = {
        key: summary.get(key)
        for key in ("customers", "share", "revenue_share", "clv_mean", "clv_total")
    } | {"churn_risk_mean": summary.get("churn_risk_mean")}
    numeric = [
        r
        for r in _rows(view, "segment_profiles_numeric")
        if r["scheme"] == scheme and r["segment"] == segment
    ]
    attributes = sorted(
        (
            r
            for r in _rows(view, "segment_profiles_attributes")
            if r["scheme"] == scheme
            and r["segment"] == segment
            and r.get("index") is not None
            and r.get("z") is not None
        ),
        key=lambda r: -r["z"],
    )[:10]
    persona = next(
        (
            p
            for p in (view.personas() if view.has_document("personas") else [])
            if p.get("scheme") == scheme and p.get("segment") == segment
        ),
        None,
    )
    members = view.memberships(scheme)
    member_ids = members.filter(pc.equal(members.column("segment"), segment)).column("customer_id")
    scores = view.customer_scores()
    member_scores = scores.filter(pc.is_in(scores.column("customer_id"), value_set=member_ids))
    page_charts = []
    if numeric:
        page_charts.append(charts.profile_index_chart(numeric))
    if "clv" in member_scores.column_names:  # a run without a CLV model has none
        page_charts.append(charts.clv_histogram(member_scores.column("clv").to_pylist()))
    channels = _channel_use(member_scores, scores)
    if channels:
        page_charts.append(charts.channel_chart(channels))
    grid = rfm_grid(view, scheme, segment)
    if grid is not None:
        page_charts.append(charts.rfm_heatmap(grid["cells"], bins=grid["bins"]))
    migration = _segment_migration(view, scheme, segment)
    if migration is not None and (migration["came_from"] or migration["went_to"]):
        page_charts.append(charts.migration_chart(migration["came_from"], migration["went_to"]))
    return {
        "scheme": scheme,
        "segment": segment,
        "summary": summary,
        "numeric": sorted(numeric, key=lambda r: -abs(r["z"] or 0.0))[:12],
        "attributes": attributes,
        "persona": persona,
        "members": member_scores.num_rows,
        "migration": migration,
        "rfm": grid,
        "charts": page_charts,
    }


def _channel_use(members: pa.Table, everyone: pa.Table) -> list[dict[str, Any]]:
    """Per channel (``engaged_<channel>`` columns), the share of members and of all
    customers with at least one engaged touch; empty without touchpoint data."""
    import numpy as np

    def share(table: pa.Table, column: str) -> float | None:
        values = np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=float)
        return float(np.mean(values > 0)) if values.size else None

    return [
        {
            "channel": column.removeprefix("engaged_"),
            "segment": share(members, column),
            "base": share(everyone, column),
        }
        for column in everyone.column_names
        if column.startswith("engaged_")
    ]


def _segment_migration(view: RunView, scheme: str, segment: str) -> dict[str, Any] | None:
    """Customers in and out of one segment since the run's previous run, or None."""
    if not view.has_table("segment_migration"):
        return None
    rows = [r for r in _rows(view, "segment_migration") if r["scheme"] == scheme]
    previous = view.report().get("migration") or {}
    if not rows:
        return {
            "scheme_compared": False,
            "previous_run": previous.get("previous_run"),
            "previous_as_of": previous.get("previous_as_of"),
            "came_from": [],
            "went_to": [],
            "stayed": 0,
        }
    came_from = [
        {"segment": r["from_segment"], "customers": r["customers"]}
        for r in rows
        if r["to_segment"] == segment and r["from_segment"] != segment
    ]
    went_to = [
        {"segment": r["to_segment"], "customers": r["customers"]}
        for r in rows
        if r["from_segment"] == segment and r["to_segment"] != segment
    ]
    stayed = sum(r["customers"] for r in rows if r["from_segment"] == segment == r["to_segment"])
    return {
        "scheme_compared": True,
        "previous_run": previous.get("previous_run"),
        "previous_as_of": previous.get("previous_as_of"),
        "came_from": sorted(came_from, key=lambda r: -r["customers"]),
        "went_to": sorted(went_to, key=lambda r: -r["customers"]),
        "stayed": stayed,
    }


def _parameters(document: dict[str, Any]) -> list[dict[str, Any]]:
    """A fitted model's parameters with 95% intervals.

    The models are fitted on log-parameters, so the interval is the delta-method one on
    that scale: ``value * exp(±1.96 * stderr / value)`` (the run report's own intervals).
    """
    params = document.get("params") or {}
    stderr = document.get("stderr") or {}
    out = []
    for name, value in params.items():
        se = stderr.get(name)
        lower = upper = None
        if se is not None and value is not None and value > 0 and math.isfinite(se):
            lower = value * math.exp(-_Z95 * se / value)
            upper = value * math.exp(_Z95 * se / value)
        out.append({"name": name, "value": value, "stderr": se, "lower": lower, "upper": upper})
    return out


def models_page(view: RunView) -> dict[str, Any]:
    """The CLV models: parameters with intervals, frequency histogram, holdout tracking.

    The charts are drawn only when the run's report holds their data (a run without a
    holdout period has no tracking curve).

    Examples
    --------
    A run without a CLV model (too few customers to fit one) has none to show:

    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.project import Project
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = "order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n2,b,2024-01-09,7\\n"
    >>> _ = (d / "o.csv").write_text(rows)
    >>> project = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d))
    >>> _ = project.run()
    >>> view = project.runs.latest()
    >>> models_page(view)
    Traceback (most recent call last):
    ...
    segvalue.errors.DataValidationError: run ... holds no CLV model ...
    >>> project.close()
    """
    documents = view.models()
    models = [
        {
            "name": name,
            "type": doc.get("type"),
            "n_customers": doc.get("n_customers"),
            "loglik": doc.get("loglik"),
            "converged": doc.get("converged"),
            "time_unit": doc.get("time_unit"),
            "parameters": _parameters(doc),
        }
        for name, doc in documents.items()
        if doc.get("params")
    ]
    clv = (view.report().get("clv") if view.has_document("run") else None) or {}
    holdout = clv.get("holdout") or {}
    page_charts = []
    if holdout.get("frequency_histogram"):
        page_charts.append(charts.frequency_histogram(holdout["frequency_histogram"]))
    if holdout.get("cumulative"):
        page_charts.append(
            charts.holdout_tracking(holdout["cumulative"], time_unit=clv.get("time_unit"))
        )
    fit = {
        key: holdout[key]
        for key in ("actual_repeat", "predicted_repeat", "mae", "rmse", "correlation")
        if holdout.get(key) is not None
    }
    return {
        "models": models,
        "selection": clv.get("selection"),
        "candidates": clv.get("candidates") or {},
        "holdout_fit": fit,
        "warnings": clv.get("warnings") or [],
        "charts": page_charts,
    }


def migration_page(
    runs: Runs, view: RunView, scheme: str | None, before: str | None
) -> dict[str, Any]:
    """Segment sizes and transitions of one scheme from an earlier run to ``view``.

    ``before`` None: the complete run just before ``view`` (newest first in the store);
    ``scheme`` None: the KPI scheme, else the first scheme both runs hold. A run with
    nothing before it says so (``before_run`` None).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.project import Project
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = "order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n2,b,2024-01-09,7\\n"
    >>> _ = (d / "o.csv").write_text(rows)
    >>> project = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d))
    >>> _ = project.run()
    >>> page = migration_page(project.runs, project.runs.latest(), None, None)
    >>> page["before_run"] is None, page["charts"]
    (True, [])
    >>> project.close()
    """
    earlier = [
        info
        for info in runs.list(status="complete")
        if info.run_id != view.run_id
        and (info.as_of, info.finished_at) <= (view.info.as_of, view.info.finished_at)
    ]
    context: dict[str, Any] = {
        "earlier": earlier,
        "before_run": None,
        "scheme": scheme,
        "schemes": [],
        "sizes": [],
        "tags": False,
        "charts": [],
    }
    if before is None:
        if not earlier:
            return context
        before = earlier[0].run_id
    try:
        before_view = runs.get(before)
    except DataValidationError as exc:  # an unknown run id
        raise NotFound(str(exc)) from exc
    if before_view.run_id == view.run_id:
        raise NotFound(f"run {before} is the run shown: compare it with an earlier one")
    diff = runs.diff(before_view, view)
    schemes = [s for s in view.info.schemes if s in diff.schemes]
    if scheme is None:
        kpi_scheme = diff.kpi_scheme
        scheme = kpi_scheme if kpi_scheme in schemes else (schemes[0] if schemes else None)
    if scheme is None or scheme not in diff.schemes:
        raise NotFound(f"runs {before} and {view.run_id} have no scheme {scheme!r} to compare")
    scheme_diff = diff.schemes[scheme]
    context.update(
        before_run=before_view.info,
        scheme=scheme,
        schemes=schemes,
        sizes=scheme_diff.sizes.to_pylist(),
        tags=scheme_diff.transitions is None,
    )
    if scheme_diff.transitions is not None and scheme_diff.transitions.num_rows:
        context["charts"] = [
            charts.migration_sankey(
                scheme_diff.transitions.to_pylist(),
                before=str(before_view.info.as_of),
                after=str(view.info.as_of),
            )
        ]
    return context


def rfm_grid(view: RunView, scheme: str, segment: str | None = None) -> dict[str, Any] | None:
    """Customers per recency score x frequency score of an RFM scheme (None for another).

    A run stores each customer's RFM segment, not the scores, so the scores are given
    again from the customer's stored features with the scheme's saved state (the run's
    bin boundaries, ``RunView.document("scorer")``) by
    :func:`segvalue.segments.scoring.assign`, with one rule per (R, F) cell: the scores
    the run gave. ``segment`` None: every customer of the scheme; else its members only.

    Returns
    -------
    dict or None
        ``bins``; ``cells`` (``recency``, ``frequency``, ``customers``, ``clv_mean``:
        None without a CLV model), only cells with customers; ``members`` (customers of
        the scheme or segment) and ``unscored`` (of them, those without a score: no
        purchase, the scheme's unassigned segment).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.pipeline import run_demo
    >>> from segvalue.project import Project
    >>> _, path = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
    >>> with Project.from_yaml(path) as project:
    ...     grid = rfm_grid(project.runs.latest(), "rfm")
    >>> sum(c["customers"] for c in grid["cells"]) + grid["unscored"] == grid["members"]
    True
    """
    return view.rfm_grid(scheme, segment)


def _curve_points(
    item: ResponseItem, current: float, planned: float, points: int = 101
) -> dict[str, Any]:
    """An item's return ``value * response`` from no spend to past its planned spend."""
    from segvalue.project import response_curve_points

    return response_curve_points(item, current, planned, points)


def _curve_row(curve: dict[str, Any]) -> dict[str, Any]:
    """A curve's line in the page's table: parameters with their 95% intervals, fit."""
    fit = curve["fit"]
    names = ["beta", "k", "slope"] + (["theta"] if fit is not None else [])
    params = []
    for name in names:
        if fit is None:
            value, bounds = curve["params"][name], None
        else:
            value, bounds = fit["params"][name], fit["intervals"].get(name)
        if name == "slope" and curve["form"] == "michaelis_menten":
            continue  # 1 by definition
        if name == "theta" and bounds is None and value == 0:
            continue  # fitted without adstock
        finite = bounds is not None and all(math.isfinite(b) for b in bounds)
        params.append({"name": name, "value": value, "interval": bounds if finite else None})
    return curve | {"param_rows": params}


def budget_page(project: Project) -> dict[str, Any]:
    """The budget of the project's configuration: current against planned allocation.

    The plan is :meth:`Project.budget` with the configuration's ``budget`` section
    (objective, total, limits). Its response curves, given (``budget.items``) or fitted
    from ``channel_spend`` (:meth:`Project.budget_curves`), are charted with each item's
    current and planned spend marked, and listed with their parameters and, when fitted,
    their fit quality (``curves``). A configuration without budget data (no
    ``budget.items`` and no ``channel_spend`` source) gives ``available`` False and a
    message.

    Examples
    --------
    >>> from segvalue.config import parse_config
    >>> from segvalue.project import Project
    >>> cfg = parse_config({
    ...     "sources": {"orders": {"path": "o.csv"}},
    ...     "budget": {"objective": "revenue", "items": [
    ...         {"name": "a", "form": "michaelis_menten", "beta": 1000, "k": 200, "current": 300},
    ...         {"name": "b", "form": "michaelis_menten", "beta": 600, "k": 100, "current": 50}]}})
    >>> page = budget_page(Project(cfg))
    >>> page["objective"], [row["item"] for row in page["items"]], len(page["charts"])
    ('revenue', ['a', 'b'], 2)
    """
    settings = project.config.budget
    if not settings.items and "channel_spend" not in project.config.sources:
        return {
            "available": False,
            "message": "This configuration has no budget data: neither budget.items (explicit "
            "response curves) nor a channel_spend source to fit curves from.",
            "charts": [],
        }
    # Read and fitted once: the plan, the chart and every what-if answer use these curves.
    budget_curves = project.budget_curves()
    plan: Any
    plan, warnings = budget_curves.plan()
    items = [
        {
            "item": name,
            "current": plan.current.get(name, 0.0),
            "planned": planned,
            "change": planned - plan.current.get(name, 0.0),
            "marginal_roi": plan.marginal_roi.get(name),
        }
        for name, planned in plan.allocation.items()
    ]
    page_charts = [charts.allocation_chart(plan.current, plan.allocation)]
    curves = [c for c in budget_curves if c.item.name in plan.allocation]
    if curves:
        points = [
            _curve_points(c.item, plan.current.get(c.item.name, 0.0), plan.allocation[c.item.name])
            for c in curves
        ]
        page_charts.append(charts.response_curves_chart(points))
    return {
        "available": True,
        "objective": plan.objective,
        "total": plan.total,
        "spend": plan.spend,
        "current_spend": plan.current_spend,
        "expected_outcome": plan.expected_outcome,
        "current_outcome": plan.current_outcome,
        "expected_response": plan.expected_response,
        "current_response": plan.current_response,
        "method": plan.method,
        "binding_constraints": list(plan.binding_constraints),
        "curves_given": bool(settings.items),
        "curves": [_curve_row(c.to_dict()) for c in curves],
        "budget_curves": budget_curves,  # for the what-if form's answers
        "warnings": list(warnings),
        "items": items,
        "charts": page_charts,
    }


def what_if_result(
    curves: BudgetCurves, source: str | None, destination: str | None, share: str | None
) -> dict[str, Any]:
    """The what-if form's answer: :meth:`Project.what_if` of ``FROM:TO:SHARE``, on the
    curves the page was planned with (``curves``: :meth:`Project.budget_curves`).

    Raises
    ------
    InvalidInput
        A field is missing or the share is not a number.
    segvalue.errors.ConfigError
        From the what-if: an unknown item, a share outside 0 to 1.

    Examples
    --------
    >>> from segvalue.config import parse_config
    >>> from segvalue.project import Project
    >>> cfg = parse_config({
    ...     "sources": {"orders": {"path": "o.csv"}},
    ...     "budget": {"items": [
    ...         {"name": "a", "form": "michaelis_menten", "beta": 1000, "k": 200, "current": 300},
    ...         {"name": "b", "form": "michaelis_menten", "beta": 600, "k": 100, "current": 50}]}})
    >>> curves = Project(cfg).budget_curves()
    >>> result = what_if_result(curves, "a", "b", "0.2")
    >>> result["move"], round(result["change_value"], 3)
    ('a:b:0.2', 59.74)
    >>> what_if_result(curves, "a", "b", "lots")
    Traceback (most recent call last):
    ...
    segvalue.web.pages.InvalidInput: the share to move must be a number from 0 to 1, got 'lots'
    """
    if not source or not destination or share is None or not share.strip():
        raise InvalidInput("give the item to move spend from, the item to move it to and the share")
    try:
        fraction = float(share)
    except ValueError:
        raise InvalidInput(
            f"the share to move must be a number from 0 to 1, got {share!r}"
        ) from None
    move = f"{source}:{destination}:{fraction!r}"
    result: dict[str, Any] = curves.what_if(source, destination, fraction).to_dict()
    by_item = [
        {
            "item": name,
            "baseline": result["baseline"][name],
            "scenario": result["scenario"][name],
            "change_value": change,
        }
        for name, change in result["change_by_item"].items()
        if result["scenario"][name] != result["baseline"][name] or change != 0
    ]
    return result | {
        "move": move,
        "source": source,
        "destination": destination,
        "share": fraction,
        "by_item": by_item,
    }


#: The features shown on a customer's page, in order (others are in the full table).
CUSTOMER_FACTS = (
    ("orders", "Orders"),
    ("revenue", "Revenue"),
    ("average_order_value", "Average order value"),
    ("frequency", "Repeat purchase days"),
    ("recency", "Recency (time units)"),
    ("T", "Age as a customer (time units)"),
    ("monetary_value", "Mean repeat spend"),
    ("days_since_last_order", "Days since the last order"),
    ("first_purchase", "First purchase"),
    ("last_purchase", "Last purchase"),
)


def customer_page(project: Project, customer_id: str) -> dict[str, Any]:
    """One customer now: predictions, segments, features, real-time segment moves.

    What :meth:`Project.customer` gives (the latest run, re-scored with the events
    received since), and :meth:`Project.segment_events` of the customer.

    Raises
    ------
    NotFound
        When neither the run nor the events know the customer.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.pipeline import run_demo
    >>> from segvalue.project import Project
    >>> _, path = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
    >>> with Project.from_yaml(path) as project:
    ...     page = customer_page(project, "C0000001")
    >>> page["customer"]["customer_id"], page["facts"][0][0], page["moves"]
    ('C0000001', 'Orders', [])
    """
    customer = project.customer(customer_id)
    if customer is None:
        raise NotFound(f"the latest run holds no customer {customer_id!r}")
    features = customer["features"]
    facts = [(label, features.get(key)) for key, label in CUSTOMER_FACTS if key in features]
    others = sorted(
        (key, value)
        for key, value in features.items()
        if key not in dict(CUSTOMER_FACTS) and not isinstance(value, (dict, list))
    )
    memberships = []
    for scheme, held in sorted(customer["memberships"].items()):
        segments = held if isinstance(held, list) else ([] if held is None else [held])
        memberships.append({"scheme": scheme, "segments": segments})
    return {
        "customer": customer,
        "facts": facts,
        "others": others,
        "memberships": memberships,
        "moves": project.segment_events(customer_id=customer_id, limit=20),
    }


# ------------------------------------------------------------------ measurement

#: The segment of the whole base in the measurement's rows.
ALL_CUSTOMERS = "all customers"


def _measurement(view: RunView) -> dict[str, Any]:
    """:meth:`RunView.measurement`, or an error saying when a run has one."""
    if not view.has_document("measurement"):
        raise DataValidationError(
            f"run {view.run_id} holds no measurement: a run measures attribution, channel "
            "effectiveness and experiments when its configuration has a touchpoints or an "
            "experiments source",
            fix="add one to segvalue.yaml (and keep measurement.enabled true), then run again",
        )
    return view.measurement()


def _segments_of(rows: list[dict[str, Any]]) -> list[str]:
    """The segments of measurement rows: the whole base first, then the rest by name."""
    found = {str(r["segment"]) for r in rows if r.get("segment") is not None}
    return ([ALL_CUSTOMERS] if ALL_CUSTOMERS in found else []) + sorted(found - {ALL_CUSTOMERS})


def _chosen_segment(view: RunView, segments: list[str], segment: str | None) -> str | None:
    """``segment`` when the measurement has it (None: the whole base, or the first)."""
    if segment is None:
        return segments[0] if segments else None
    if segment not in segments:
        raise NotFound(f"the measurement of run {view.run_id} has no segment {segment!r}")
    return segment


def _ordered(preferred: Any, present: set[str]) -> list[str]:
    """``present`` in the order of ``preferred`` (a list of names), the others after it."""
    ordered = [str(name) for name in preferred or [] if str(name) in present]
    return ordered + sorted(present - set(ordered))


def _conversion_meaning(details: dict[str, Any]) -> str | None:
    """What a conversion is, in words (``measurement.attribution.conversions``)."""
    kind = details.get("conversions")
    value = details.get("conversion_value")
    if kind == "touchpoints":
        meaning = "a touchpoint whose event is a conversion"
    elif kind == "orders":
        meaning = "an order with an amount above 0"
    elif kind is None:
        return None
    else:
        meaning = str(kind)
    return f"{meaning}; its value: {value}" if value else meaning


def attribution_page(view: RunView, segment: str | None) -> dict[str, Any]:
    """The attribution models side by side for one segment (None: the whole base).

    Per channel, the share of the conversions and the value each model of the run's
    measurement credits to it, the Markov removal effects, and the facts of the journeys.

    Raises
    ------
    NotFound
        The measurement has no such segment.
    segvalue.errors.DataValidationError
        The run holds no measurement (no touchpoints or experiments).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.pipeline import run_demo
    >>> from segvalue.project import Project
    >>> _, path = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
    >>> with Project.from_yaml(path) as project:
    ...     page = attribution_page(project.runs.latest(), None)
    >>> page["segment"], page["models"][-1], [c.chart_id for c in page["charts"]]
    ('all customers', 'shapley', ['attribution-shares'])
    """
    found = _measurement(view)
    details = found["details"]
    rows: list[dict[str, Any]] = found["attribution"]
    segments = _segments_of(rows)
    chosen = _chosen_segment(view, segments, segment)
    rows = [r for r in rows if r["segment"] == chosen]
    models = _ordered(details.get("models"), {str(r["model"]) for r in rows})
    credit_model = details.get("credit_model")
    by_cell = {(str(r["model"]), str(r["channel"])): r for r in rows}
    # Channels by the share the run's credit model gives them (it also credits the
    # channel effectiveness), largest first.
    ranking = credit_model if credit_model in models else (models[0] if models else None)
    channels = sorted(
        _ordered(details.get("channels"), {str(r["channel"]) for r in rows}),
        key=lambda c: -((by_cell.get((str(ranking), c)) or {}).get("share") or 0.0),
    )
    table = [
        {"channel": channel, "cells": [by_cell.get((model, channel)) or {} for model in models]}
        for channel in channels
    ]
    removal = sorted(
        (
            {"channel": str(r["channel"]), "removal_effect": r["removal_effect"]}
            for r in rows
            if r.get("removal_effect") is not None
        ),
        key=lambda r: -r["removal_effect"],
    )
    conversions = sum(
        (by_cell.get((str(ranking), c)) or {}).get("conversions") or 0.0 for c in channels
    )
    return {
        "scheme": details.get("scheme"),
        "segments": segments,
        "segment": chosen,
        "details": details,
        "conversion_meaning": _conversion_meaning(details),
        "models": models,
        "credit_model": credit_model,
        "table": table,
        "conversions": conversions if rows else None,
        "removal": removal,
        "charts": (
            [charts.attribution_chart(rows, models=models, channels=channels)] if rows else []
        ),
    }


#: The recommended channel roles, strongest first (docs/measurement.md).
CHANNEL_ROLES = ("primary", "secondary", "support", "test", "reduce")


def channels_page(view: RunView, segment: str | None) -> dict[str, Any]:
    """Channel effectiveness in one segment (None: the whole base), and the roles matrix.

    Per channel: customers reached, conversion rate, cost per conversion and ROAS with
    their intervals, the recommended role and its reason; charts of the conversion rate
    and (where there are costs) the ROAS with their intervals; every segment's role per
    channel. The numbers are observational (docs/measurement.md).

    Raises
    ------
    NotFound
        The measurement has no such segment.
    segvalue.errors.DataValidationError
        The run holds no measurement (no touchpoints or experiments).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.pipeline import run_demo
    >>> from segvalue.project import Project
    >>> _, path = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
    >>> with Project.from_yaml(path) as project:
    ...     page = channels_page(project.runs.latest(), None)
    >>> page["segment"], page["rows"][0]["rank"], page["matrix"][0]["segment"]
    ('all customers', 1, 'all customers')
    """
    found = _measurement(view)
    details = found["details"]
    everything: list[dict[str, Any]] = found["channels"]
    segments = _segments_of(everything)
    chosen = _chosen_segment(view, segments, segment)
    channels = _ordered(details.get("channels"), {str(r["channel"]) for r in everything})
    unranked = len(channels) + 1
    rows = sorted(
        (r for r in everything if r["segment"] == chosen),
        key=lambda r: (r.get("rank") if r.get("rank") is not None else unranked, r["channel"]),
    )
    roles = {(str(r["segment"]), str(r["channel"])): r for r in everything}
    matrix = [
        {"segment": name, "cells": [roles.get((name, channel)) or {} for channel in channels]}
        for name in segments
    ]
    level = float(details.get("level") or 0.95)
    page_charts = []
    if rows:
        page_charts.append(
            charts.channel_interval_chart(
                rows, measure="conversion_rate", label="conversion rate", level=level, percent=True
            )
        )
    roas = [r["roas"] for r in rows if r.get("roas") is not None]
    if roas:
        # ROAS is a ratio: channels apart by orders of magnitude read on a log axis.
        spread = min(roas) > 0 and max(roas) / min(roas) > 20
        page_charts.append(
            charts.channel_interval_chart(
                rows, measure="roas", label="ROAS", level=level, break_even=1.0, log=spread
            )
        )
    return {
        "scheme": details.get("scheme"),
        "segments": segments,
        "segment": chosen,
        "details": details,
        "level_label": f"{level:.0%}",
        "rows": rows,
        "channels": channels,
        "matrix": matrix,
        "roles": [role for role in CHANNEL_ROLES if any(r["role"] == role for r in everything)],
        "charts": page_charts,
    }


def experiments_page(view: RunView, experiment: str | None, outcome: str | None) -> dict[str, Any]:
    """One experiment's lift per segment for one outcome, per arm, and its uplift model.

    ``experiment`` None: the run's first experiment; ``outcome`` None: the outcome of
    the segment priorities (``priority_lift``) in that experiment, else its first.

    Raises
    ------
    NotFound
        The measurement has no such experiment, or the experiment no such outcome.
    segvalue.errors.DataValidationError
        The run holds no measurement (no touchpoints or experiments).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.pipeline import run_demo
    >>> from segvalue.project import Project
    >>> _, path = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
    >>> with Project.from_yaml(path) as project:
    ...     page = experiments_page(project.runs.latest(), None, None)
    >>> page["experiment"], page["outcome"], page["arms"][0]["arm"], page["charts"][0].chart_id
    ('EXP-2025-RETENTION', 'converted', 'treatment', 'lift-0')
    """
    found = _measurement(view)
    details = found["details"]
    lift: list[dict[str, Any]] = found["lift"]
    uplift: dict[str, Any] = found["uplift"]
    experiments = _ordered(
        details.get("experiments"), {str(r["experiment_id"]) for r in lift} | set(uplift)
    )
    if experiment is None:
        experiment = experiments[0] if experiments else None
    elif experiment not in experiments:
        raise NotFound(f"the measurement of run {view.run_id} has no experiment {experiment!r}")
    rows = [r for r in lift if r["experiment_id"] == experiment]
    outcomes = list(dict.fromkeys(str(r["outcome"]) for r in rows))
    if outcome is None:
        priority = details.get("priority_lift") or {}
        wanted = priority.get("outcome") if priority.get("experiment_id") == experiment else None
        outcome = wanted if wanted in outcomes else (outcomes[0] if outcomes else None)
    elif outcome not in outcomes:
        raise NotFound(f"experiment {experiment!r} has no outcome {outcome!r}")
    level = float(details.get("level") or 0.95)
    arms: list[dict[str, Any]] = []
    page_charts = []
    for arm in dict.fromkeys(str(r["arm"]) for r in rows):
        chosen = [r for r in rows if r["arm"] == arm and r["outcome"] == outcome]
        if not chosen:
            continue
        chosen.sort(key=lambda r: (r["segment"] != ALL_CUSTOMERS, str(r["segment"])))
        binary = bool(chosen[0].get("binary"))
        chart = charts.lift_forest_chart(
            chosen,
            chart_id=f"lift-{len(arms)}",
            title=f"Lift of {outcome} per segment, {arm} against control",
            level=level,
            binary=binary,
        )
        page_charts.append(chart)
        arms.append(
            {
                "arm": arm,
                "binary": binary,
                "rows": chosen,
                "under_powered": sum(bool(r.get("under_powered")) for r in chosen),
                "has_roi": any(r.get("roi") is not None for r in chosen),
                "chart": chart,
            }
        )
    model = uplift.get(experiment) if experiment is not None else None
    if model is not None and model.get("curves"):
        model = model | {"chart": charts.qini_chart(model["curves"])}
        page_charts.append(model["chart"])
    return {
        "scheme": details.get("scheme"),
        "experiments": experiments,
        "experiment": experiment,
        "outcomes": outcomes,
        "outcome": outcome,
        "level_label": f"{level:.0%}",
        "arms": arms,
        "uplift": model,
        "charts": page_charts,
    }


# ------------------------------------------------------------------ activation

#: Rows of a campaign's audience the campaign page shows.
AUDIENCE_SAMPLE = 20


def _activation(view: RunView) -> dict[str, Any]:
    """The run's activation document, or an error saying how to get one."""
    if not view.has_document("activation"):
        raise DataValidationError(
            f"run {view.run_id} holds no activation: run segvalue activate to plan the "
            "campaigns of segvalue.yaml on it",
            fix="add campaign plans under `campaigns` in segvalue.yaml, then run "
            "segvalue activate -c segvalue.yaml",
        )
    document: dict[str, Any] = view.document("activation")
    return document


def _plan_facts(document: dict[str, Any]) -> dict[str, Any]:
    """What every campaign of the plan shares: the global control group, the caps, the
    default time zone, the channels nobody can be contacted on."""
    return {
        "scheme": document.get("scheme"),
        "customers": document.get("customers"),
        "global_control": document.get("global_control"),
        "global_control_share": document.get("global_control_share"),
        "caps": list(document.get("caps") or []),
        "default_time_zone": document.get("default_time_zone"),
        "customers_in_default_zone": document.get("customers_in_default_zone"),
        "no_consent_column": dict(document.get("no_consent_column") or {}),
    }


def campaigns_page(view: RunView) -> dict[str, Any]:
    """Every campaign of the run's activation, in the order they were planned.

    Per campaign its objective, segments, dates, priority, members, eligible customers
    and holdout, and per step its day, channel and audience; the plan's global control
    group, caps and default time zone.

    Raises
    ------
    segvalue.errors.DataValidationError
        The run holds no activation (``segvalue activate`` was not run on it).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.pipeline import run_demo
    >>> from segvalue.project import Project
    >>> _, path = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
    >>> _ = path.write_text(path.read_text() + (
    ...     "campaigns:\\n  - {name: winback, segments: [cluster_1], objective: win_back,\\n"
    ...     "     start: 2026-01-05, steps: [{channel: email}]}\\n"))
    >>> with Project.from_yaml(path) as project:
    ...     _ = project.activate()
    ...     page = campaigns_page(project.runs.latest())
    >>> [c["name"] for c in page["campaigns"]], page["plan"]["scheme"]
    (['winback'], 'clusters')
    """
    document = _activation(view)
    return {"campaigns": list(document["campaigns"]), "plan": _plan_facts(document)}


def campaign_page(view: RunView, name: str) -> dict[str, Any]:
    """One campaign of the run's activation: the audience funnel of each step as a chart,
    the steps, the contacts suppressed and capped by reason per step, the holdout per
    segment, the plan's global control group, caps and time zone, and the first rows of
    its audience (what each send is: no contact details).

    Raises
    ------
    NotFound
        The activation has no campaign ``name``.
    segvalue.errors.DataValidationError
        The run holds no activation.
    """
    import pyarrow.compute as pc

    from segvalue.api.routes import AUDIENCE_COLUMNS, activation_campaign

    document = _activation(view)
    found = activation_campaign(view, name)
    if found is None:
        raise NotFound(f"the activation of run {view.run_id} has no campaign {name!r}")
    funnels = [
        funnel
        | {
            "chart": charts.activation_funnel_chart(
                funnel["stages"],
                chart_id=f"funnel-{funnel['step']}",
                title=f"Step {funnel['step']} ({funnel['day']}, {funnel['channel']}): "
                "from the members to the audience",
            )
        }
        for funnel in found["funnel"]
    ]
    # Each reason a contact was left out, with its count per step (the campaign-level
    # reasons leave a customer out of every step).
    reasons: dict[tuple[str, str], dict[str, Any]] = {}
    for index, funnel in enumerate(found["funnel"]):
        for stage in funnel["stages"]:
            if stage["stage"] not in ("suppressed", "capped"):
                continue
            key = (str(stage["stage"]), str(stage["reason"]))
            row = reasons.setdefault(
                key,
                {
                    "kind": stage["stage"],
                    "reason": stage["reason"],
                    "campaign_level": stage["reason"] in found["campaign"]["suppressed"]
                    and stage["stage"] == "suppressed",
                    "counts": [0] * len(found["funnel"]),
                },
            )
            row["counts"][index] = stage["customers"]
    audiences = view.table("activation_audiences")
    mine = audiences.filter(pc.equal(audiences.column("campaign"), name))
    sample = mine.slice(0, AUDIENCE_SAMPLE).select(
        [c for c in AUDIENCE_COLUMNS if c in mine.column_names]
    )
    return {
        "name": name,
        "campaign": found["campaign"],
        "steps": found["steps"],
        "funnels": funnels,
        "reasons": list(reasons.values()),
        "holdouts": found["holdouts"],
        "plan": _plan_facts(document),
        "audience": sample.to_pylist(),
        "audience_total": mine.num_rows,
        "charts": [funnel["chart"] for funnel in funnels],
    }
