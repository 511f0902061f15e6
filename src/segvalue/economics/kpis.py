"""The segment KPI table: one row per segment, every rate and mean with its interval.

:func:`segment_kpis` builds one row per customer in the engine (features, plus per-customer
sums of the orders and touchpoints), joins the memberships and aggregates per segment:
counts, sums, sums of squares and the few cross-products the ratio KPIs need. Only those
per-segment sufficient statistics leave the engine; the intervals are computed from them
by the vectorised functions of :mod:`segvalue.economics.intervals`. An extra row per
scheme, segment ``"all customers"``, aggregates the whole customer base (every row of the
features).

:func:`kpi_status` compares the table with the targets of ``kpis.targets`` and gives each
(segment, KPI) a status that takes the interval into account (:func:`target_status`).

Definitions, per segment (``n`` = members found in the features; a *buyer* has at least
one purchase; *scored* customers have a CLV-step score):

=====================  ===================================================  ==============
KPI                    definition                                           interval
=====================  ===================================================  ==============
customers              members                                              (count)
share                  members / all customers                              Wilson
revenue, orders,       summed net revenue, purchases and buyers of the      (observed)
buyers                 members
average_order_value    revenue / orders (net revenue per purchase)          delta (ratio)
purchase_frequency     orders per buyer                                     t
repeat_rate            buyers with 2+ orders / buyers                       Wilson
retention_rate         bought in the latest window, of those who bought     Wilson
                       in the window before (``retention_days`` each)
churn_risk             mean churn risk of the scored members                t
clv_mean               mean CLV of the scored members                       t
clv_total              summed CLV                                           model bounds
clv_at_risk            mean churn risk x CLV (value exposed to churn)       t
margin                 summed order margin (``margin``, or amount -         (observed)
                       ``cost``), else ``margin_rate`` x revenue
marketing_cost         touchpoint cost of the members + ``channel_spend``   (observed)
                       rows whose ``segment`` is this segment
cac                    touchpoint cost before (or on the day of) each       delta (ratio)
                       member's first purchase, never-buyers' touches
                       included / buyers
clv_cac                clv_mean / cac                                       delta
roi                    (margin - marketing_cost) / marketing_cost           delta
conversion_rate        touched members with a ``conversion`` event /        Wilson
                       touched members (``conversion_rate_<channel>``:
                       the same on one channel)
=====================  ===================================================  ==============

Every rate and mean has ``<kpi>_lower``, ``<kpi>_upper`` (the ``level`` interval) and
``<kpi>_n`` (the customers in its denominator). Totals that are observed, not estimated
(customers, revenue, orders, margin, marketing cost) carry none. ``clv_total`` carries
the sum of the members' ``clv_lower`` / ``clv_upper`` (parameter uncertainty of the CLV
model; exact when the customers' CLVs move together with the parameters). A KPI whose
inputs are missing is null, never guessed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from segvalue.config import KPIConfig, KPITarget, RuleSchemeConfig, SegmentsConfig
from segvalue.economics.intervals import (
    Interval,
    delta_interval,
    ratio_interval,
    t_interval,
    total_covariance,
    wilson_interval,
)
from segvalue.errors import ConfigError, DataValidationError, did_you_mean
from segvalue.features.customer import column_slug
from segvalue.features.materialise import distinct_values, to_arrow
from segvalue.segments.profiles import as_memberships

__all__ = [
    "ALL_CUSTOMERS",
    "INTERVAL_KPIS",
    "STATUSES",
    "kpi_status",
    "resolve_kpi_scheme",
    "segment_kpis",
    "target_status",
]

FloatArray = NDArray[np.float64]

#: The segment label of the row that aggregates the whole customer base.
ALL_CUSTOMERS = "all customers"

#: KPIs that carry ``_lower`` / ``_upper`` / ``_n`` columns (besides conversion_rate_<channel>).
INTERVAL_KPIS: tuple[str, ...] = (
    "share",
    "average_order_value",
    "purchase_frequency",
    "repeat_rate",
    "retention_rate",
    "churn_risk",
    "clv_mean",
    "clv_total",
    "clv_at_risk",
    "cac",
    "clv_cac",
    "roi",
    "conversion_rate",
)

#: The statuses :func:`target_status` gives.
STATUSES: tuple[str, ...] = ("on_track", "at_risk", "off_track", "no_data")

Status = Literal["on_track", "at_risk", "off_track", "no_data"]


def resolve_kpi_scheme(kpis: KPIConfig, segments: SegmentsConfig) -> str:
    """The scheme the KPI table reports: ``kpis.scheme``, else the first exclusive scheme.

    Parameters
    ----------
    kpis
        The ``kpis`` section of ``segvalue.yaml``.
    segments
        The ``segments`` section (tag schemes, where a customer may carry several
        segments, are not exclusive).

    Returns
    -------
    str

    Raises
    ------
    ConfigError
        If ``kpis.scheme`` names no configured scheme, or no scheme is exclusive.

    Examples
    --------
    >>> resolve_kpi_scheme(KPIConfig(), SegmentsConfig())
    'lifecycle'
    """
    names = [s.name for s in segments.schemes]
    if kpis.scheme is not None:
        if kpis.scheme not in names:
            raise ConfigError(
                f"key 'kpis.scheme': {kpis.scheme!r} is not a scheme in segments.schemes"
                + did_you_mean(kpis.scheme, names),
                fix=f"use one of: {', '.join(names) or '(none configured)'}",
            )
        return kpis.scheme
    for scheme in segments.schemes:
        if not (isinstance(scheme, RuleSchemeConfig) and scheme.mode == "tags"):
            return scheme.name
    raise ConfigError(
        "no exclusive segmentation scheme for the KPI table (tag schemes only)",
        fix="set kpis.scheme to the scheme to report, or add an exclusive scheme",
    )


# --------------------------------------------------------------------------- per customer


@dataclass
class _Plan:
    """Which per-customer variables exist, and the sums / cross-products to aggregate."""

    variables: list[str]
    channels: list[str]
    pairs: set[tuple[str, str]]
    as_of: dt.date | None
    windows: dict[str, str]
    sources: dict[str, Any]

    def pair(self, a: str, b: str) -> None:
        if a in self.variables and b in self.variables:
            self.pairs.add((min(a, b), max(a, b)))


def _flag(condition: ir.BooleanValue) -> ir.FloatingValue:
    """1.0 / 0.0 for a non-null condition (PostgreSQL cannot cast boolean to double)."""
    # From integers: PostgreSQL types CASE ... THEN 1.0 as numeric (decimals in Arrow), and
    # Ibis drops a cast from float64 to float64.
    return condition.ifelse(1, 0).cast("float64")


def _check_features(features: ir.Table) -> None:
    for name in ("customer_id", "orders", "revenue"):
        if name not in features.columns:
            hint = did_you_mean(name, features.columns)
            raise DataValidationError(
                f"segment KPIs: column {name!r} is not in the customer features{hint}",
                fix="pass the table of segvalue.features.customer.customer_features",
            )


def _order_columns(
    orders: ir.Table, as_of: dt.date, retention_days: int, margin: bool
) -> tuple[ir.Table, dict[str, str]]:
    """Per customer: margin, bought in the previous / latest retention window."""
    end = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())
    latest = end - dt.timedelta(days=retention_days)
    previous = latest - dt.timedelta(days=retention_days)
    purchase = orders.amount >= 0
    ts = orders.order_ts
    aggs: dict[str, ir.Value] = {
        "_prev": _flag(purchase & (ts >= previous) & (ts < latest)).max(),
        "_latest": _flag(purchase & (ts >= latest) & (ts < end)).max(),
    }
    if margin:
        if "margin" in orders.columns:
            aggs["_margin"] = orders.margin.cast("float64").sum()
        else:
            aggs["_margin"] = (orders.amount - orders.cost).cast("float64").sum()
    windows = {
        "previous": f"{previous.date()} to {(latest - dt.timedelta(days=1)).date()}",
        "latest": f"{latest.date()} to {as_of}",
    }
    return orders.group_by("customer_id").aggregate(**aggs), windows


def _touch_columns(
    touchpoints: ir.Table, first_purchase: ir.Table | None, channels: list[str]
) -> ir.Table:
    """Per customer: cost, acquisition cost, touched / converted overall and per channel."""
    tp = touchpoints
    acquisition = "cost" in tp.columns and first_purchase is not None
    if acquisition:
        tp = tp.left_join(first_purchase, "customer_id").drop("customer_id_right")
    aggs: dict[str, ir.Value] = {"_touches": tp.count()}
    if "cost" in tp.columns:
        cost = tp.cost.cast("float64").fill_null(0.0)
        aggs["_cost"] = cost.sum()
        if acquisition:
            before = tp._first.isnull() | (tp.ts.date() <= tp._first)
            aggs["_acq"] = before.ifelse(cost, 0.0).sum()
    if "event" in tp.columns:
        converted = (tp.event == "conversion").fill_null(False)
        aggs["_converted"] = _flag(converted).max()
        for i, channel in enumerate(channels):
            on = (tp.channel == channel).fill_null(False)
            aggs[f"_t{i}"] = _flag(on).max()
            aggs[f"_k{i}"] = _flag(on & converted).max()
    return tp.group_by("customer_id").aggregate(**aggs)


def _per_customer(
    features: ir.Table,
    *,
    orders: ir.Table | None,
    touchpoints: ir.Table | None,
    as_of: dt.date | None,
    retention_days: int,
    margin_rate: float | None,
    channels: Sequence[str] | None,
) -> tuple[ir.Table, _Plan]:
    f = features
    cols: dict[str, ir.Value] = {
        "customer_id": f.customer_id,
        "o": f.orders.cast("float64").fill_null(0.0),
        "r": f.revenue.cast("float64").fill_null(0.0),
    }
    for name, key in (("churn_risk", "ch"), ("clv", "v")):
        if name in f.columns:
            cols[key] = f[name].cast("float64")
    for name, key in (("clv_lower", "vlo"), ("clv_upper", "vhi")):
        if name in f.columns and "clv" in f.columns:
            cols[key] = f[name].cast("float64")
    table = f.select(**cols)
    windows: dict[str, str] = {}
    margin_in_orders = orders is not None and (
        "margin" in orders.columns or "cost" in orders.columns
    )
    if orders is not None:
        if as_of is None:
            latest = orders.aggregate(m=orders.order_ts.max()).to_pyarrow().column("m")[0]
            if latest.as_py() is None:
                raise DataValidationError(
                    "segment KPIs: the orders table is empty", fix="pass orders with purchases"
                )
            as_of = latest.as_py().date()
        per_order, windows = _order_columns(orders, as_of, retention_days, margin_in_orders)
        table = table.left_join(per_order, "customer_id").drop("customer_id_right")
    touch_cols: list[str] = []
    chans: list[str] = []
    if touchpoints is not None:
        if "event" in touchpoints.columns:
            chans = list(channels) if channels is not None else distinct_values(touchpoints.channel)
        first = None
        if "first_purchase" in f.columns:
            first = f.select("customer_id", _first=f.first_purchase.cast("date"))
        per_touch = _touch_columns(touchpoints, first, chans)
        touch_cols = [c for c in per_touch.columns if c != "customer_id"]
        table = table.left_join(per_touch, "customer_id").drop("customer_id_right")

    out: dict[str, ir.Value] = {"customer_id": table.customer_id, "o": table.o, "r": table.r}
    out["b"] = _flag(table.o >= 1)
    out["rep"] = _flag(table.o >= 2)
    if "ch" in table.columns:
        out["ch"] = table.ch.fill_null(0.0)
        out["hch"] = _flag(table.ch.notnull())
    if "v" in table.columns:
        out["v"] = table.v.fill_null(0.0)
        out["hv"] = _flag(table.v.notnull())
        if "vlo" in table.columns:
            out["vlo"] = table.vlo.fill_null(0.0)
            out["vhi"] = table.vhi.fill_null(0.0)
        if "ch" in table.columns:
            both = table.v.notnull() & table.ch.notnull()
            out["risk"] = both.ifelse(table.ch * table.v, 0.0)
            out["hrisk"] = _flag(both)
    if orders is not None:
        out["prev"] = table._prev.fill_null(0.0)
        out["kept"] = (table._prev * table._latest).fill_null(0.0)
    if margin_in_orders:
        out["m"] = table._margin.fill_null(0.0)
    elif margin_rate is not None:
        out["m"] = table.r * float(margin_rate)
    names = {"_cost": "c", "_acq": "a", "_converted": "kk"}
    for col in touch_cols:
        if col == "_touches":
            out["tt"] = _flag(table._touches.fill_null(0) > 0)
        else:
            out[names.get(col, col.lstrip("_"))] = table[col].fill_null(0.0)
    per_customer = table.select(**out)
    variables = [k for k in out if k != "customer_id"]
    sources: dict[str, Any] = {
        "margin": None,
        "marketing_cost": "touchpoints.cost" if "c" in variables else None,
        "cac": "touchpoints.cost up to the first purchase" if "a" in variables else None,
        "retention": "orders" if orders is not None else None,
        "conversion": "touchpoints.event" if "kk" in variables else None,
        "clv": "features.clv" if "v" in variables else None,
    }
    if margin_in_orders and orders is not None:
        sources["margin"] = (
            "orders.margin" if "margin" in orders.columns else "orders.amount - orders.cost"
        )
    elif margin_rate is not None:
        sources["margin"] = f"{float(margin_rate):g} x revenue"
    plan = _Plan(variables, chans, set(), as_of, windows, sources)
    for a, b in (("r", "r"), ("o", "o"), ("r", "o"), ("ch", "ch"), ("v", "v")):
        plan.pair(a, b)
    plan.pair("risk", "risk")
    for a, b in (("m", "m"), ("c", "c"), ("m", "c")):
        plan.pair(a, b)
    group = ["v", "hv", "a", "b"]  # clv_cac = clv_mean / cac and cac = acq / buyers
    for i, a in enumerate(group):
        for b in group[i:]:
            plan.pair(a, b)
    return per_customer, plan


# --------------------------------------------------------------------------- aggregation


class _Stats:
    """Per-segment sums and cross-products, as numpy arrays."""

    def __init__(self, table: pa.Table, plan: _Plan) -> None:
        self.plan = plan
        self.columns = {
            name: np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
            for name in table.column_names
            if name not in ("scheme", "segment")
        }
        self.n = self.columns["n"]

    def has(self, *names: str) -> bool:
        return all(name in self.plan.variables for name in names)

    def s(self, name: str) -> FloatArray:
        return self.columns[f"s_{name}"]

    def p(self, a: str, b: str) -> FloatArray:
        a, b = min(a, b), max(a, b)
        if (a, b) in self.plan.pairs:
            return self.columns[f"p_{a}_{b}"]
        if a == b:  # a 0 / 1 indicator: its square is itself
            return self.s(a)
        raise KeyError((a, b))  # pragma: no cover - every pair used is planned

    def cov(self, names: Sequence[str]) -> FloatArray:
        k = len(names)
        sums = np.stack([self.s(x) for x in names], axis=-1)
        cross = np.empty((self.n.size, k, k))
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                cross[:, i, j] = self.p(a, b)
        return total_covariance(self.n, sums, cross)


def _aggregate(joined: ir.Table, plan: _Plan) -> ir.Table:
    aggs: dict[str, ir.Value] = {"n": joined.count()}
    for name in plan.variables:
        aggs[f"s_{name}"] = joined[name].sum()
    for a, b in sorted(plan.pairs):
        aggs[f"p_{a}_{b}"] = (joined[a] * joined[b]).sum()
    return joined.group_by(["scheme", "segment"]).aggregate(**aggs)


def _schemes(members: ir.Table, scheme: str | Sequence[str] | None) -> list[str]:
    present = [str(v) for v in distinct_values(members.scheme)]
    if scheme is None:
        if len(present) == 1:
            return present
        raise ConfigError(
            f"the memberships hold {len(present)} schemes and none is named for the KPI "
            "table" + (f": {', '.join(present)}" if present else ""),
            fix="pass scheme=... (or set kpis.scheme in segvalue.yaml)",
        )
    wanted = [scheme] if isinstance(scheme, str) else list(scheme)
    for name in wanted:
        if name not in present:
            raise ConfigError(
                f"key 'kpis.scheme': {name!r} is not a scheme of the memberships"
                + did_you_mean(name, present),
                fix=f"use one of: {', '.join(present) or '(no memberships)'}",
            )
    return wanted


def _segment_spend(channel_spend: ir.Table | None) -> dict[str, float]:
    if channel_spend is None or "segment" not in channel_spend.columns:
        return {}
    cs = channel_spend.filter(channel_spend.segment.notnull())
    grouped = cs.group_by(segment=cs.segment.cast("string")).aggregate(
        spend=cs.spend.cast("float64").sum()
    )
    rows = to_arrow(grouped).to_pylist()
    return {str(r["segment"]): float(r["spend"] or 0.0) for r in rows}


# --------------------------------------------------------------------------- KPI maths


#: The support of a KPI that cannot be negative (counts, frequencies, CLV).
NON_NEGATIVE = (0.0, np.inf)


def _nan(size: int) -> FloatArray:
    return np.full(size, np.nan)


def _put(
    columns: dict[str, Any],
    name: str,
    interval: Interval | None,
    size: int,
    *,
    support: tuple[float, float] | None = None,
) -> None:
    """Store a KPI and its interval; bounds are clipped to the KPI's ``support``.

    A t interval of a mean of non-negative values (frequency, CLV) or of probabilities
    (churn risk) can reach past what the quantity can be in a small, skewed segment;
    the interval is then reported as its intersection with the support.
    """
    if interval is None:
        interval = Interval(_nan(size), _nan(size), _nan(size), _nan(size))
    lower, upper = interval.lower, interval.upper
    if support is not None:
        lower, upper = np.clip(lower, *support), np.clip(upper, *support)
    columns[name] = interval.estimate
    columns[f"{name}_lower"] = lower
    columns[f"{name}_upper"] = upper
    columns[f"{name}_n"] = interval.n


def _kpi_columns(
    st: _Stats,
    *,
    total_n: FloatArray,
    is_all: NDArray[np.bool_],
    fixed_cost: FloatArray,
    has_fixed_cost: bool,
    level: float,
) -> dict[str, Any]:
    size = st.n.size
    n = st.n
    cols: dict[str, Any] = {"customers": n}
    share = wilson_interval(n, total_n, level=level)
    one = np.ones(size)
    share = Interval(
        np.where(is_all, one, share.estimate),
        np.where(is_all, one, share.lower),
        np.where(is_all, one, share.upper),
        total_n,
    )
    _put(cols, "share", share, size)
    cols["revenue"] = st.s("r")
    cols["orders"] = st.s("o")
    cols["buyers"] = st.s("b")
    buyers = st.s("b")
    _put(
        cols,
        "average_order_value",
        ratio_interval(
            st.s("r"),
            st.s("o"),
            st.p("r", "r"),
            st.p("o", "o"),
            st.p("r", "o"),
            buyers,
            level=level,
        ),
        size,
    )
    frequency = t_interval(st.s("o"), st.p("o", "o"), buyers, level=level)
    _put(cols, "purchase_frequency", frequency, size, support=NON_NEGATIVE)
    _put(cols, "repeat_rate", wilson_interval(st.s("rep"), buyers, level=level), size)
    retention = None
    if st.has("prev"):
        retention = wilson_interval(st.s("kept"), st.s("prev"), level=level)
    _put(cols, "retention_rate", retention, size)
    churn = None
    if st.has("ch"):
        churn = t_interval(st.s("ch"), st.p("ch", "ch"), st.s("hch"), level=level)
    _put(cols, "churn_risk", churn, size, support=(0.0, 1.0))
    clv_mean = clv_total = at_risk = None
    if st.has("v"):
        scored = st.s("hv")
        clv_mean = t_interval(st.s("v"), st.p("v", "v"), scored, level=level)
        low = st.s("vlo") if st.has("vlo") else _nan(size)
        high = st.s("vhi") if st.has("vhi") else _nan(size)
        none = scored == 0  # no scored member: no CLV total (rather than 0)
        clv_total = Interval(
            np.where(none, np.nan, st.s("v")),
            np.where(none, np.nan, low),
            np.where(none, np.nan, high),
            scored,
        )
        if st.has("risk"):
            at_risk = t_interval(st.s("risk"), st.p("risk", "risk"), st.s("hrisk"), level=level)
    _put(cols, "clv_mean", clv_mean, size, support=NON_NEGATIVE)
    _put(cols, "clv_total", clv_total, size, support=NON_NEGATIVE)
    _put(cols, "clv_at_risk", at_risk, size, support=NON_NEGATIVE)

    margin = st.s("m") if st.has("m") else _nan(size)
    cols["margin"] = margin
    customer_cost = st.s("c") if st.has("c") else np.zeros(size)
    cost = customer_cost + fixed_cost
    if not (st.has("c") or has_fixed_cost):
        cost = _nan(size)
    cols["marketing_cost"] = cost

    cac = clv_cac = None
    if st.has("a"):
        acq = st.s("a")
        with np.errstate(invalid="ignore", divide="ignore"):
            estimate = np.where(buyers > 0, acq / buyers, np.nan)
            grad = np.stack([1.0 / buyers, -estimate / buyers], axis=-1)
        cac = delta_interval(estimate, grad, st.cov(["a", "b"]), buyers, level=level, df_n=n)
        if st.has("v"):
            v, hv = st.s("v"), st.s("hv")
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where((hv > 0) & (acq > 0), v * buyers / (hv * acq), np.nan)
                grad = np.stack(
                    [
                        buyers / (hv * acq),
                        v / (hv * acq),
                        -ratio / hv,
                        -ratio / acq,
                    ],
                    axis=-1,
                )
            clv_cac = delta_interval(
                ratio, grad, st.cov(["v", "b", "hv", "a"]), buyers, level=level, df_n=n
            )
    _put(cols, "cac", cac, size)
    _put(cols, "clv_cac", clv_cac, size)

    roi = None
    if st.has("m") and (st.has("c") or has_fixed_cost):
        with np.errstate(invalid="ignore", divide="ignore"):
            estimate = np.where(cost > 0, (margin - cost) / cost, np.nan)
            names = ["m", "c"] if st.has("c") else ["m"]
            parts = [1.0 / cost, -margin / cost**2][: len(names)]
            grad = np.stack(parts, axis=-1)
        roi = delta_interval(estimate, grad, st.cov(names), n, level=level)
    _put(cols, "roi", roi, size)

    conversion = None
    if st.has("kk"):
        conversion = wilson_interval(st.s("kk"), st.s("tt"), level=level)
    _put(cols, "conversion_rate", conversion, size)
    used: set[str] = set()
    for i, channel in enumerate(st.plan.channels):
        slug = column_slug(channel)
        if slug in used:  # "Paid Social" and "paid_social": keep both, apart
            slug = f"{slug}_{i}"
        used.add(slug)
        _put(
            cols,
            f"conversion_rate_{slug}",
            wilson_interval(st.s(f"k{i}"), st.s(f"t{i}"), level=level),
            size,
        )
    return cols


_COUNT_COLUMNS = {"customers", "orders", "buyers"}


def _to_arrow(scheme: list[str], segment: list[str], cols: dict[str, Any]) -> pa.Table:
    arrays: dict[str, pa.Array] = {
        "scheme": pa.array(scheme, pa.string()),
        "segment": pa.array(segment, pa.string()),
    }
    for name, raw in cols.items():
        values = np.asarray(raw, dtype=np.float64)
        missing = ~np.isfinite(values)
        if name in _COUNT_COLUMNS or name.endswith("_n"):
            ints = np.where(missing, 0, np.round(values)).astype(np.int64)
            arrays[name] = pa.array(ints, pa.int64(), mask=missing)
        else:
            arrays[name] = pa.array(np.where(missing, 0.0, values), pa.float64(), mask=missing)
    return pa.table(arrays)


def segment_kpis(
    memberships: ir.Table | pa.Table,
    features: ir.Table,
    *,
    orders: ir.Table | None = None,
    touchpoints: ir.Table | None = None,
    channel_spend: ir.Table | None = None,
    config: KPIConfig | None = None,
    scheme: str | Sequence[str] | None = None,
    as_of: dt.date | None = None,
    margin_rate: float | None = None,
    channels: Sequence[str] | None = None,
) -> pa.Table:
    """The segment KPI table, aggregated in the engine, with intervals and sample sizes.

    Parameters
    ----------
    memberships
        ``(customer_id, scheme, segment)`` (Ibis or Arrow), e.g.
        ``Segmentation.memberships``; members missing from ``features`` are not counted.
    features
        One row per customer (:func:`segvalue.features.customer.customer_features`), with
        ``churn_risk``, ``clv``, ``clv_lower``, ``clv_upper`` when the CLV step ran.
    orders
        Clean orders: margin (``margin`` or ``cost`` column) and retention windows.
    touchpoints
        Marketing cost (``cost``), acquisition cost and, with ``event``, conversion rates.
    channel_spend
        Rows with a ``segment`` column add their spend to that segment's marketing cost
        (rows without a segment are not attributable to customers and are left out).
    config
        The ``kpis`` section: ``retention_days`` and the interval ``level``.
    scheme
        The scheme (or schemes) to report; default ``config.scheme``, else the only
        scheme of ``memberships``.
    as_of
        Observation end for the retention windows (default: the date of the latest order).
    margin_rate
        Profit share of revenue when the orders carry no margin or cost (e.g.
        ``clv.margin``); without either, ``margin`` and ``roi`` are null.
    channels
        Channels for ``conversion_rate_<channel>`` (default: those in the touchpoints).

    Returns
    -------
    pyarrow.Table
        One row per (scheme, segment), the ``"all customers"`` row of each scheme first,
        then segments by size. Columns: see the module docstring; the schema metadata
        ``segvalue.kpis`` (JSON) records the level, as-of date, retention windows and
        interval methods.

    Raises
    ------
    ConfigError
        If the scheme is ambiguous or unknown.
    DataValidationError
        If the features lack ``customer_id``, ``orders`` or ``revenue``, or a segment is
        named ``"all customers"``.

    Examples
    --------
    >>> import ibis
    >>> f = ibis.memtable({"customer_id": ["a", "b", "c", "d"], "orders": [1, 3, 0, 2],
    ...     "revenue": [10.0, 50.0, 0.0, 30.0]})
    >>> m = ibis.memtable({"customer_id": ["a", "b", "c", "d"], "scheme": ["s"] * 4,
    ...     "segment": ["x", "x", "y", "x"]})
    >>> k = segment_kpis(m, f).to_pylist()
    >>> [(r["segment"], r["customers"], r["average_order_value"]) for r in k]
    [('all customers', 4, 15.0), ('x', 3, 15.0), ('y', 1, None)]
    >>> round(k[1]["average_order_value_lower"], 3), k[1]["repeat_rate"]
    (8.79, 0.6666666666666666)
    """
    cfg = config if config is not None else KPIConfig()
    _check_features(features)
    members = as_memberships(memberships)
    names = _schemes(members, scheme if scheme is not None else cfg.scheme)
    members = members.filter(members.scheme.isin(names)).select("customer_id", "scheme", "segment")
    clash = members.filter(members.segment == ALL_CUSTOMERS).count().to_pyarrow().as_py()
    if clash:
        raise DataValidationError(
            f"a segment is named {ALL_CUSTOMERS!r}, the label of the whole-base row",
            fix="rename that segment",
        )
    per_customer, plan = _per_customer(
        features,
        orders=orders,
        touchpoints=touchpoints,
        as_of=as_of,
        retention_days=cfg.retention_days,
        margin_rate=margin_rate,
        channels=channels,
    )
    base = features.select("customer_id")
    everyone = [
        base.select(
            "customer_id",
            scheme=ibis.literal(name, type="string"),
            segment=ibis.literal(ALL_CUSTOMERS, type="string"),
        )
        for name in names
    ]
    labelled = ibis.union(members, *everyone)
    joined = labelled.join(per_customer, "customer_id")
    table = to_arrow(_aggregate(joined, plan))
    st = _Stats(table, plan)
    schemes = [str(s) for s in table.column("scheme").to_pylist()]
    segments = [str(s) for s in table.column("segment").to_pylist()]
    is_all = np.array([s == ALL_CUSTOMERS for s in segments])
    totals = {sc: float(st.n[i]) for i, sc in enumerate(schemes) if is_all[i]}
    spend = _segment_spend(channel_spend)
    per_scheme_spend: dict[str, float] = {}
    for sc, seg in zip(schemes, segments, strict=True):
        if seg != ALL_CUSTOMERS:
            per_scheme_spend[sc] = per_scheme_spend.get(sc, 0.0) + spend.get(seg, 0.0)
    fixed = np.array(
        [
            per_scheme_spend.get(sc, 0.0) if all_row else spend.get(seg, 0.0)
            for sc, seg, all_row in zip(schemes, segments, is_all, strict=True)
        ]
    )
    cols = _kpi_columns(
        st,
        total_n=np.array([totals.get(sc, np.nan) for sc in schemes]),
        is_all=is_all,
        fixed_cost=fixed,
        has_fixed_cost=any(seg in spend for seg in segments),
        level=cfg.level,
    )
    order = sorted(
        range(len(schemes)),
        key=lambda i: (names.index(schemes[i]), not is_all[i], -st.n[i], segments[i]),
    )
    result = _to_arrow(
        [schemes[i] for i in order],
        [segments[i] for i in order],
        {k: np.asarray(v, dtype=np.float64)[order] for k, v in cols.items()},
    )
    meta = {
        "level": cfg.level,
        "as_of": None if plan.as_of is None else plan.as_of.isoformat(),
        "retention_days": cfg.retention_days,
        "retention_windows": plan.windows,
        "channels": plan.channels,
        "intervals": {
            "proportions": "Wilson score",
            "means": "Student t",
            "ratios": "delta method on customer totals, t quantile",
            "clv_total": "sum of the members' clv_lower / clv_upper",
        },
        "sources": {
            **plan.sources,
            "segment_spend": "channel_spend.segment"
            if any(seg in spend for seg in segments)
            else None,
        },
    }
    return result.replace_schema_metadata({"segvalue.kpis": json.dumps(meta)})


# --------------------------------------------------------------------------- targets


def target_status(
    estimate: float | None,
    lower: float | None,
    upper: float | None,
    target: float,
    direction: Literal["at_least", "at_most"] = "at_least",
    tolerance: float = 0.05,
) -> Status:
    """Status of a KPI against a target, taking its interval into account.

    Parameters
    ----------
    estimate, lower, upper
        The KPI and its interval (an observed total has ``lower = upper = estimate``;
        a missing bound counts as unbounded on that side).
    target
        The target value.
    direction
        ``at_least``: higher is better; ``at_most``: lower is better.
    tolerance
        Relative band below (``at_least``) or above (``at_most``) the target before a
        miss counts as ``off_track``: the band is ``tolerance x |target|``.

    Returns
    -------
    str
        ``on_track`` when the whole interval meets the target (``lower >= target``, or
        ``upper <= target`` for ``at_most``); ``off_track`` when the whole interval misses
        it by more than the band (``upper < target - band``, or ``lower > target + band``);
        ``at_risk`` otherwise; ``no_data`` when there is no estimate.

    Examples
    --------
    Repeat rate at least 0.30, tolerance 5 % (band 0.015, so off track below 0.285):

    >>> target_status(0.33, 0.31, 0.35, 0.30)
    'on_track'
    >>> target_status(0.31, 0.29, 0.33, 0.30)
    'at_risk'
    >>> target_status(0.27, 0.26, 0.284, 0.30)
    'off_track'
    >>> target_status(0.28, 0.27, 0.29, 0.30)
    'at_risk'

    CAC at most 40 (band 2): an interval of 43 to 47 is off track, 41 to 47 at risk.

    >>> target_status(45.0, 43.0, 47.0, 40.0, "at_most")
    'off_track'
    >>> target_status(44.0, 41.0, 47.0, 40.0, "at_most")
    'at_risk'
    """
    if estimate is None or (isinstance(estimate, float) and math.isnan(estimate)):
        return "no_data"
    low = -math.inf if lower is None or math.isnan(lower) else float(lower)
    high = math.inf if upper is None or math.isnan(upper) else float(upper)
    band = tolerance * abs(target)
    if direction == "at_least":
        if low >= target:
            return "on_track"
        if high < target - band:
            return "off_track"
        return "at_risk"
    if high <= target:
        return "on_track"
    if low > target + band:
        return "off_track"
    return "at_risk"


def _value(row: Mapping[str, Any], name: str) -> float | None:
    value = row.get(name)
    return None if value is None else float(value)


def kpi_status(kpis: pa.Table, targets: Sequence[KPITarget]) -> pa.Table:
    """Each target against every matching (scheme, segment) row of the KPI table.

    Parameters
    ----------
    kpis
        From :func:`segment_kpis`.
    targets
        ``kpis.targets`` of ``segvalue.yaml``. A target without ``scheme`` applies to
        every scheme of the table, without ``segment`` to every row of the scheme
        (the ``"all customers"`` row included); a target for a scheme not in the table
        is skipped (its KPIs were not computed).

    Returns
    -------
    pyarrow.Table
        ``scheme``, ``segment``, ``kpi``, ``estimate``, ``lower``, ``upper``, ``n``,
        ``target``, ``direction``, ``tolerance``, ``status`` (see :func:`target_status`),
        in the order of the targets and the table.

    Raises
    ------
    ConfigError
        If a target names a segment that no matching scheme has.

    Examples
    --------
    >>> import pyarrow as pa
    >>> table = pa.table({"scheme": ["s", "s"], "segment": ["all customers", "x"],
    ...     "customers": [10, 4], "repeat_rate": [0.3, 0.5], "repeat_rate_lower": [0.2, 0.4],
    ...     "repeat_rate_upper": [0.4, 0.6], "repeat_rate_n": [10, 4]})
    >>> rows = kpi_status(table, [KPITarget(kpi="repeat_rate", target=0.35)]).to_pylist()
    >>> [(r["segment"], r["status"]) for r in rows]
    [('all customers', 'at_risk'), ('x', 'on_track')]
    """
    rows = kpis.to_pylist()
    out: list[dict[str, Any]] = []
    for index, target in enumerate(targets):
        matched = [r for r in rows if target.scheme is None or r["scheme"] == target.scheme]
        if target.segment is not None:
            known = sorted({str(r["segment"]) for r in matched})
            selected = [r for r in matched if r["segment"] == target.segment]
            if matched and not selected:
                raise ConfigError(
                    f"key 'kpis.targets[{index}].segment': {target.segment!r} is not a "
                    "segment of the reported scheme" + did_you_mean(target.segment, known),
                    fix=f"use one of: {', '.join(known)}",
                )
            matched = selected
        kpi = target.kpi
        for row in matched:
            estimate = _value(row, kpi)
            if f"{kpi}_lower" in row:
                lower, upper = _value(row, f"{kpi}_lower"), _value(row, f"{kpi}_upper")
                n = row.get(f"{kpi}_n")
            else:  # an observed total: exact
                lower = upper = estimate
                n = row.get("customers")
            out.append(
                {
                    "scheme": row["scheme"],
                    "segment": row["segment"],
                    "kpi": kpi,
                    "estimate": estimate,
                    "lower": lower,
                    "upper": upper,
                    "n": n,
                    "target": target.target,
                    "direction": target.direction,
                    "tolerance": target.tolerance,
                    "status": target_status(
                        estimate, lower, upper, target.target, target.direction, target.tolerance
                    ),
                }
            )
    schema = pa.schema(
        [
            ("scheme", pa.string()),
            ("segment", pa.string()),
            ("kpi", pa.string()),
            ("estimate", pa.float64()),
            ("lower", pa.float64()),
            ("upper", pa.float64()),
            ("n", pa.int64()),
            ("target", pa.float64()),
            ("direction", pa.string()),
            ("tolerance", pa.float64()),
            ("status", pa.string()),
        ]
    )
    return pa.Table.from_pylist(out, schema=schema)
