"""Segment priorities and CLV-tied budget guidance, from the segment KPI table.

Both functions work on the small table of :func:`segvalue.economics.kpis.segment_kpis`
(one row per segment), in memory.

**Priorities** (:func:`segment_priorities`) rank the segments of each scheme by a score
of four components, each scaled to 0..1 across the scheme's segments:

- *value*: half the segment's total CLV relative to the largest segment total, half its
  mean CLV relative to the highest segment mean (revenue and revenue per customer when
  the table has no CLV);
- *growth*: growth potential = scored customers x (best segment mean CLV - own mean
  CLV), the value the segment would add if its customers were worth as much as those of
  the best segment (among segments with at least ``min_customers`` scored customers),
  relative to the largest growth potential;
- *responsiveness*: the measured lift (e.g. of a retention campaign, from a holdout
  test) relative to the largest lift; a negative lift scores 0; a segment without a
  measurement scores 0.5 (neutral);
- *cost*: the cheapest segment's CAC divided by the segment's CAC (marketing cost per
  customer when CAC is not available); 0.5 when unknown.

The score is ``100 x sum(weight x component) / sum(weight)`` over the components the
table supports (default weights: value 0.4, growth 0.2, responsiveness 0.2, cost 0.2;
responsiveness only when some lift is given). The ``reasons`` column says in words what
drives each rank, with indexes against the whole base (segment / all customers x 100).

**Budget guidance** (:func:`budget_guidance`) ties acquisition and retention spend to
CLV per segment:

- maximum allowable CAC = ``margin x CLV_payback / min_clv_cac``. The CLV column is a
  value over the CLV horizon; the part earned within the payback period is taken as
  ``CLV x payback / horizon`` (pro rata). Expected purchases of a BG/NBD-type customer
  accrue at a falling rate, so the pro-rata share is a lower bound on the true share:
  the maximum is conservative. A payback beyond the horizon counts no value after it.
- retention spend ceiling per customer = ``save_rate x margin x mean(churn risk x CLV)``:
  the expected value kept if a retention action saves ``save_rate`` of the customers who
  would otherwise be lost, each keeping their CLV. As CLV already discounts for churn,
  this understates the value of a saved customer (``CLV / P(alive)``): a conservative
  ceiling.

segvalue's ``clv`` column already is a margin (``clv.margin`` is applied when it is
computed), so ``margin`` defaults to 1; pass the profit share only for a revenue CLV.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from segvalue.economics.kpis import ALL_CUSTOMERS
from segvalue.errors import ConfigError, DataValidationError

__all__ = [
    "DEFAULT_WEIGHTS",
    "BudgetGuidance",
    "budget_guidance",
    "segment_priorities",
]

#: Weights of the priority score's components.
DEFAULT_WEIGHTS: dict[str, float] = {
    "value": 0.4,
    "growth": 0.2,
    "responsiveness": 0.2,
    "cost": 0.2,
}

Lift = Mapping[str, tuple[float, float, float]]


def _get(row: Mapping[str, Any], name: str) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _relative(values: Sequence[float | None], *, neutral: float = 0.0) -> list[float]:
    """Each value / the largest value (negatives count as 0; unknown -> ``neutral``)."""
    known = [max(v, 0.0) for v in values if v is not None]
    top = max(known, default=0.0)
    return [neutral if v is None else (max(v, 0.0) / top if top > 0 else 0.0) for v in values]


def _cheapness(values: Sequence[float | None]) -> list[float]:
    """The lowest cost / each cost (a zero cost scores 1; unknown -> 0.5)."""
    known = [v for v in values if v is not None and v >= 0]
    low = min(known, default=0.0)
    out = []
    for v in values:
        if v is None or v < 0:
            out.append(0.5)
        elif v == 0:
            out.append(1.0)
        else:
            out.append(low / v)
    return out


def _money(value: float) -> str:
    """Compact money: 1.23M, 45.6k, 789."""
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.2f}M"
    if size >= 1e4:
        return f"{value / 1e3:.1f}k"
    if size >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _share_of(value: float | None, total: float) -> float | None:
    return None if value is None or total <= 0 else value / total


def _index(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return 100.0 * value / base


def _level(index: float | None, high: str, low: str, middle: str) -> str | None:
    if index is None:
        return None
    if index >= 120:
        return high
    if index <= 80:
        return low
    return middle


def _scheme_rows(kpis: pa.Table) -> dict[str, tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
    for name in ("scheme", "segment", "customers"):
        if name not in kpis.column_names:
            raise DataValidationError(
                f"segment priorities: column {name!r} is not in the KPI table",
                fix="pass the table of segvalue.economics.kpis.segment_kpis",
            )
    out: dict[str, tuple[dict[str, Any] | None, list[dict[str, Any]]]] = {}
    for row in kpis.to_pylist():
        overall, rows = out.get(row["scheme"], (None, []))
        if row["segment"] == ALL_CUSTOMERS:
            overall = row
        else:
            rows.append(row)
        out[row["scheme"]] = (overall, rows)
    return out


def segment_priorities(
    kpis: pa.Table,
    *,
    lift: Lift | None = None,
    weights: Mapping[str, float] | None = None,
    min_customers: int = 30,
) -> pa.Table:
    """Rank the segments of each scheme by value, growth, responsiveness and cost.

    Parameters
    ----------
    kpis
        From :func:`segvalue.economics.kpis.segment_kpis`.
    lift
        Measured lift per segment name: ``(lift, lower, upper)``, e.g. the uplift in
        conversion of a holdout test; segments left out count as not measured.
    weights
        Weights of ``value``, ``growth``, ``responsiveness``, ``cost`` (default
        :data:`DEFAULT_WEIGHTS`; missing keys take the default).
    min_customers
        Scored customers a segment needs to set the "best segment" CLV of the growth
        potential (a tiny segment's mean is too noisy to aim for).

    Returns
    -------
    pyarrow.Table
        Per scheme, best first: ``scheme``, ``rank``, ``segment``, ``score`` (0..100),
        ``value_score``, ``growth_score``, ``responsiveness_score``, ``cost_score``
        (0..1, null when unused), ``customers``, ``share``, ``value_basis`` (``clv`` or
        ``revenue``), ``value_total``, ``value_mean``, ``value_index``,
        ``growth_potential``, ``lift``, ``lift_lower``, ``lift_upper``, ``cac``,
        ``cost_index``, ``churn_risk``, ``reasons``.

    Raises
    ------
    ConfigError
        For an unknown weight name or negative weights.
    DataValidationError
        If the table is not a KPI table.

    Examples
    --------
    >>> import pyarrow as pa
    >>> kpis = pa.table({"scheme": ["s"] * 4,
    ...     "segment": ["all customers", "vip", "regulars", "occasional"],
    ...     "customers": [1000, 100, 400, 500], "share": [1.0, 0.1, 0.4, 0.5],
    ...     "clv_mean": [31.0, 120.0, 40.0, 6.0], "clv_mean_n": [1000, 100, 400, 500],
    ...     "clv_total": [31000.0, 12000.0, 16000.0, 3000.0], "cac": [20.0, 30.0, 15.0, 20.0]})
    >>> p = segment_priorities(kpis).to_pylist()
    >>> [(r["rank"], r["segment"], round(r["score"], 1)) for r in p]
    [(1, 'regulars', 72.4), (2, 'vip', 56.3), (3, 'occasional', 49.7)]
    >>> print(*p[1]["reasons"].split(", "), sep="\\n")
    high CLV (index 387)
    holds 39% of total CLV
    small base (10% of customers)
    high cost per customer (CAC index 150)
    """
    w = dict(DEFAULT_WEIGHTS)
    for key, value in (weights or {}).items():
        if key not in DEFAULT_WEIGHTS:
            raise ConfigError(
                f"unknown priority weight {key!r}",
                fix=f"use {', '.join(DEFAULT_WEIGHTS)}",
            )
        if value < 0:
            raise ConfigError(f"priority weight {key!r} is negative ({value})", fix="use >= 0")
        w[key] = float(value)
    lift = lift or {}
    records: list[dict[str, Any]] = []
    for scheme, (overall, rows) in _scheme_rows(kpis).items():
        if not rows:
            continue
        records.extend(_rank_scheme(scheme, overall or {}, rows, lift, w, min_customers))
    return pa.Table.from_pylist(records, schema=_PRIORITY_SCHEMA)


def _rank_scheme(
    scheme: str,
    overall: Mapping[str, Any],
    rows: list[dict[str, Any]],
    lift: Lift,
    weights: Mapping[str, float],
    min_customers: int,
) -> list[dict[str, Any]]:
    k = len(rows)
    use_clv = any(_get(r, "clv_mean") is not None for r in rows)
    if use_clv:
        basis, label = "clv", "CLV"
        means = [_get(r, "clv_mean") for r in rows]
        totals = [_get(r, "clv_total") for r in rows]
        scored = [_get(r, "clv_mean_n") or 0.0 for r in rows]
        base_mean = _get(overall, "clv_mean")
    else:
        basis, label = "revenue", "revenue per customer"
        scored = [float(r["customers"] or 0) for r in rows]
        totals = [_get(r, "revenue") for r in rows]
        means = [
            None if t is None or n == 0 else t / n for t, n in zip(totals, scored, strict=True)
        ]
        revenue, customers = _get(overall, "revenue"), _get(overall, "customers")
        base_mean = None if revenue is None or not customers else revenue / customers
    eligible = [
        m for m, n in zip(means, scored, strict=True) if m is not None and n >= min_customers
    ]
    best = max(eligible or [m for m in means if m is not None] or [0.0])
    growth = [
        None if m is None else n * max(best - m, 0.0) for m, n in zip(means, scored, strict=True)
    ]
    value_score = [
        0.5 * a + 0.5 * b for a, b in zip(_relative(totals), _relative(means), strict=True)
    ]
    growth_score = _relative(growth)
    measured = [lift.get(str(r["segment"])) for r in rows]
    has_lift = any(m is not None for m in measured)
    lift_score = _relative([None if m is None else m[0] for m in measured], neutral=0.5)
    cacs = [_get(r, "cac") for r in rows]
    cost_basis = "cac"
    if all(c is None for c in cacs):
        cost_basis = "cost per customer"
        cacs = [
            None
            if _get(r, "marketing_cost") is None or not r["customers"]
            else float(r["marketing_cost"]) / float(r["customers"])
            for r in rows
        ]
    has_cost = any(c is not None for c in cacs)
    cost_score = _cheapness(cacs)
    if cost_basis == "cac":
        base_cost = _get(overall, "cac")
    else:
        mc, n = _get(overall, "marketing_cost"), _get(overall, "customers")
        base_cost = None if mc is None or not n else mc / n
    active = {
        "value": True,
        "growth": True,
        "responsiveness": has_lift,
        "cost": has_cost,
    }
    total_weight = sum(weights[c] for c, on in active.items() if on)
    value_sum = sum(t for t in totals if t is not None and t > 0)
    out = []
    for i, row in enumerate(rows):
        components = {
            "value": value_score[i],
            "growth": growth_score[i],
            "responsiveness": lift_score[i],
            "cost": cost_score[i],
        }
        score = (
            100.0 * sum(weights[c] * components[c] for c, on in active.items() if on) / total_weight
            if total_weight > 0
            else 0.0
        )
        m = measured[i]
        share = _get(row, "share")
        value_index = _index(means[i], base_mean)
        cost_index = _index(cacs[i], base_cost)
        reasons = _reasons(
            label=label,
            value_index=value_index,
            value_share=_share_of(totals[i], value_sum),
            share=share,
            k=k,
            growth=growth[i],
            growth_score=growth_score[i],
            best=best,
            lift=m,
            cost_basis=cost_basis,
            cost_index=cost_index,
            churn=_get(row, "churn_risk"),
        )
        out.append(
            {
                "scheme": scheme,
                "segment": row["segment"],
                "score": score,
                "value_score": components["value"],
                "growth_score": components["growth"],
                "responsiveness_score": components["responsiveness"] if has_lift else None,
                "cost_score": components["cost"] if has_cost else None,
                "customers": row["customers"],
                "share": share,
                "value_basis": basis,
                "value_total": totals[i],
                "value_mean": means[i],
                "value_index": value_index,
                "growth_potential": growth[i],
                "lift": None if m is None else float(m[0]),
                "lift_lower": None if m is None else float(m[1]),
                "lift_upper": None if m is None else float(m[2]),
                "cac": cacs[i],
                "cost_index": cost_index,
                "churn_risk": _get(row, "churn_risk"),
                "reasons": reasons,
            }
        )
    out.sort(key=lambda r: (-r["score"], -(r["value_total"] or 0.0), str(r["segment"])))
    for rank, record in enumerate(out, start=1):
        record["rank"] = rank
    return out


def _reasons(
    *,
    label: str,
    value_index: float | None,
    value_share: float | None,
    share: float | None,
    k: int,
    growth: float | None,
    growth_score: float,
    best: float,
    lift: tuple[float, float, float] | None,
    cost_basis: str,
    cost_index: float | None,
    churn: float | None,
) -> str:
    words: list[str] = []
    level = _level(value_index, f"high {label}", f"low {label}", f"average {label}")
    if level is not None and value_index is not None:
        words.append(f"{level} (index {value_index:.0f})")
    if value_share is not None and (
        value_share >= 0.25 or (share is not None and value_share >= 2 * share)
    ):
        noun = "CLV" if label == "CLV" else "revenue"
        words.append(f"holds {value_share:.0%} of total {noun}")
    if share is not None:
        if share >= 1.5 / k:
            words.append(f"large base ({share:.0%} of customers)")
        elif share <= 0.5 / k:
            words.append(f"small base ({share:.0%} of customers)")
    if growth is not None and growth > 0 and growth_score >= 0.5:
        words.append(
            f"growth potential {_money(growth)} if its {label} reached the best segment's "
            f"({_money(best)})"
        )
    if lift is not None:
        estimate, lower, upper = (float(x) for x in lift)
        significant = lower > 0 or upper < 0
        words.append(
            f"measured lift {estimate:+.3g} (interval {lower:.3g} to {upper:.3g}"
            + ("" if significant else ", not significant")
            + ")"
        )
    noun = "CAC" if cost_basis == "cac" else "cost"
    level = _level(
        cost_index,
        "high cost per customer",
        "low cost per customer",
        "average cost per customer",
    )
    if level is not None and cost_index is not None and level != "average cost per customer":
        words.append(f"{level} ({noun} index {cost_index:.0f})")
    if churn is not None and churn >= 0.5:
        words.append(f"high churn risk ({churn:.0%})")
    return ", ".join(words) if words else "close to the average on every measure"


_PRIORITY_SCHEMA = pa.schema(
    [
        ("scheme", pa.string()),
        ("rank", pa.int64()),
        ("segment", pa.string()),
        ("score", pa.float64()),
        ("value_score", pa.float64()),
        ("growth_score", pa.float64()),
        ("responsiveness_score", pa.float64()),
        ("cost_score", pa.float64()),
        ("customers", pa.int64()),
        ("share", pa.float64()),
        ("value_basis", pa.string()),
        ("value_total", pa.float64()),
        ("value_mean", pa.float64()),
        ("value_index", pa.float64()),
        ("growth_potential", pa.float64()),
        ("lift", pa.float64()),
        ("lift_lower", pa.float64()),
        ("lift_upper", pa.float64()),
        ("cac", pa.float64()),
        ("cost_index", pa.float64()),
        ("churn_risk", pa.float64()),
        ("reasons", pa.string()),
    ]
)


# --------------------------------------------------------------------------- budget guidance


@dataclass(frozen=True)
class BudgetGuidance:
    """Acquisition and retention spend limits per segment, with the assumptions behind them.

    Attributes
    ----------
    table
        One row per (scheme, segment), see :func:`budget_guidance`.
    assumptions
        The assumptions, in words, for reports and ``--json``.
    """

    table: pa.Table
    assumptions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``segments`` rows and ``assumptions``."""
        return {"segments": self.table.to_pylist(), "assumptions": list(self.assumptions)}


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"budget guidance: {name} must be a positive number, got {value!r}")
    return float(value)


def budget_guidance(
    kpis: pa.Table,
    *,
    horizon: float,
    payback: float | None = None,
    margin: float = 1.0,
    min_clv_cac: float = 1.0,
    save_rate: float | Mapping[str, float] = 0.1,
) -> BudgetGuidance:
    """Maximum allowable CAC and retention spend ceiling per segment, tied to CLV.

    Parameters
    ----------
    kpis
        From :func:`segvalue.economics.kpis.segment_kpis` (needs ``clv_mean``).
    horizon
        The horizon of the CLV column (``clv.horizon``, in time units).
    payback
        Payback target in the same units: acquisition spend must be earned back within
        it (default: the CLV horizon).
    margin
        Profit share of the CLV; 1 for segvalue's CLV, which is already a margin.
    min_clv_cac
        CLV:CAC ratio to keep (1: break even on the payback-period value; 3 is a common
        rule of thumb).
    save_rate
        Share of would-be churners a retention action keeps: one number, or one per
        segment name (e.g. a measured lift); default 0.1.

    Returns
    -------
    BudgetGuidance
        ``table`` columns: ``scheme``, ``segment``, ``customers``, ``clv_mean`` (and
        its interval), ``payback_share`` (of the CLV earned within the payback),
        ``max_cac`` with ``max_cac_lower`` / ``max_cac_upper`` (from the CLV interval),
        ``cac`` (current, with its interval), ``cac_headroom`` = max - current,
        ``acquisition_status`` (``within``: the whole CAC interval is at or below the
        maximum; ``above``: the whole interval is above it; ``uncertain`` otherwise),
        ``value_at_risk`` (mean churn risk x CLV per customer), ``save_rate``,
        ``retention_ceiling`` (per customer) and ``retention_budget`` (ceiling x scored
        customers).

    Raises
    ------
    ConfigError
        For a non-positive horizon, payback, margin or CLV:CAC ratio, or a save rate
        outside [0, 1].
    DataValidationError
        If the table has no ``clv_mean`` column.

    Examples
    --------
    CLV 120 over 52 weeks, payback 26 weeks, CLV:CAC of 3 kept: 120 x 26 / 52 / 3 = 20.

    >>> import pyarrow as pa
    >>> kpis = pa.table({"scheme": ["s"], "segment": ["vip"], "customers": [100],
    ...     "clv_mean": [120.0], "clv_mean_lower": [100.0], "clv_mean_upper": [140.0],
    ...     "clv_mean_n": [100], "churn_risk": [0.25], "cac": [15.0],
    ...     "cac_lower": [12.0], "cac_upper": [18.0]})
    >>> g = budget_guidance(kpis, horizon=52, payback=26, min_clv_cac=3).table.to_pylist()[0]
    >>> g["max_cac"], g["acquisition_status"], g["retention_ceiling"]
    (20.0, 'within', 3.0)
    """
    horizon = _positive("horizon", horizon)
    payback = horizon if payback is None else _positive("payback", payback)
    margin = _positive("margin", margin)
    min_clv_cac = _positive("min_clv_cac", min_clv_cac)
    rates = save_rate if isinstance(save_rate, Mapping) else None
    uniform = None if isinstance(save_rate, Mapping) else save_rate
    for value in [uniform] if rates is None else list(rates.values()):
        if not (isinstance(value, int | float) and 0 <= value <= 1):
            raise ConfigError(
                f"budget guidance: save_rate must be between 0 and 1, got {value!r}",
                fix="give the share of would-be churners a retention action keeps, e.g. 0.1",
            )
    if "clv_mean" not in kpis.column_names:
        raise DataValidationError(
            "budget guidance needs CLV: the KPI table has no 'clv_mean' column",
            fix="run the CLV step (clv.enabled: true) before computing KPIs",
        )
    share = min(payback, horizon) / horizon
    factor = margin * share / min_clv_cac
    rows = []
    for row in kpis.to_pylist():
        clv = _get(row, "clv_mean")
        low, high = _get(row, "clv_mean_lower"), _get(row, "clv_mean_upper")
        cac, cac_low, cac_high = _get(row, "cac"), _get(row, "cac_lower"), _get(row, "cac_upper")
        max_cac = None if clv is None else factor * clv
        status = None
        if max_cac is not None and cac is not None:
            if (cac_high if cac_high is not None else cac) <= max_cac:
                status = "within"
            elif (cac_low if cac_low is not None else cac) > max_cac:
                status = "above"
            else:
                status = "uncertain"
        at_risk = _get(row, "clv_at_risk")
        churn = _get(row, "churn_risk")
        if at_risk is None and churn is not None and clv is not None:
            at_risk = churn * clv
        if rates is None:
            rate = None if uniform is None else float(uniform)
        else:
            value = rates.get(str(row["segment"]))
            rate = None if value is None else float(value)
        ceiling = None if at_risk is None or rate is None else rate * margin * at_risk
        scored = _get(row, "clv_mean_n")
        rows.append(
            {
                "scheme": row["scheme"],
                "segment": row["segment"],
                "customers": row.get("customers"),
                "clv_mean": clv,
                "clv_mean_lower": low,
                "clv_mean_upper": high,
                "payback_share": share,
                "max_cac": max_cac,
                "max_cac_lower": None if low is None else factor * low,
                "max_cac_upper": None if high is None else factor * high,
                "cac": cac,
                "cac_lower": cac_low,
                "cac_upper": cac_high,
                "cac_headroom": None if max_cac is None or cac is None else max_cac - cac,
                "acquisition_status": status,
                "value_at_risk": at_risk,
                "save_rate": rate,
                "retention_ceiling": ceiling,
                "retention_budget": None if ceiling is None or scored is None else ceiling * scored,
            }
        )
    assumptions = [
        f"CLV is a margin over {horizon:g} time units"
        + ("" if margin == 1 else f", of which {margin:.0%} is profit"),
        f"payback within {payback:g} time units: {share:.0%} of the CLV counts (pro rata; "
        "conservative, as purchases accrue at a falling rate)"
        + (" - no value beyond the CLV horizon is counted" if payback > horizon else ""),
        f"maximum CAC keeps CLV:CAC at {min_clv_cac:g} or more on that value",
        "retention ceiling = save rate x mean(churn risk x CLV) per customer: a saved "
        "customer keeps their CLV (conservative: the value of a surely-alive customer is "
        "CLV / P(alive))",
        "save rate "
        + ("given per segment" if uniform is None else f"{float(uniform):g} in every segment"),
    ]
    return BudgetGuidance(pa.Table.from_pylist(rows, schema=_GUIDANCE_SCHEMA), assumptions)


_GUIDANCE_SCHEMA = pa.schema(
    [
        ("scheme", pa.string()),
        ("segment", pa.string()),
        ("customers", pa.int64()),
        ("clv_mean", pa.float64()),
        ("clv_mean_lower", pa.float64()),
        ("clv_mean_upper", pa.float64()),
        ("payback_share", pa.float64()),
        ("max_cac", pa.float64()),
        ("max_cac_lower", pa.float64()),
        ("max_cac_upper", pa.float64()),
        ("cac", pa.float64()),
        ("cac_lower", pa.float64()),
        ("cac_upper", pa.float64()),
        ("cac_headroom", pa.float64()),
        ("acquisition_status", pa.string()),
        ("value_at_risk", pa.float64()),
        ("save_rate", pa.float64()),
        ("retention_ceiling", pa.float64()),
        ("retention_budget", pa.float64()),
    ]
)
