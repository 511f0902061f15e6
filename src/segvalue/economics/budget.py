"""Budget allocation over response curves: optimiser, inverse problem, what-if.

Each budget item (a channel, or a segment x channel) has a response curve
``response_i(s)`` (:mod:`segvalue.economics.curves`) and a ``value`` converting a unit
of response to money; its return is ``value_i * response_i(s_i)`` and its marginal ROI
``value_i * response_i'(s_i)`` (money back for the next unit of spend).

The optimiser maximises ``sum_i value_i response_i(s_i) - c * sum_i s_i`` over the
spends within each item's bounds and the total budget, where the charge per unit of
spend ``c`` encodes the objective:

- ``revenue`` / ``clv`` (``c = 0``): spend exactly the total, where it returns most
  (``clv`` is the same computation with each item's value scaled by the CLV of the
  segment it reaches relative to the whole base, :func:`clv_values`);
- ``profit`` (``c = 1``): the total is a cap; spending stops where the marginal ROI
  falls to 1, since a further unit of spend returns less than it costs;
- a marginal-ROI floor ``f`` (``c = max(c, f)``) is a hurdle rate: spend only where it
  returns at least ``f`` per unit at the margin; the total becomes a cap.

For concave curves (Michaelis-Menten, Hill with slope <= 1) the optimum is the
Karush-Kuhn-Tucker point: every item not at a bound has the same marginal ROI ``lambda``
(the Lagrange multiplier of the total), found by root finding with each item's inverse
marginal response; exact to rounding. For S-shaped curves (Hill slope > 1) the problem is
not concave; the optimiser takes the best of a dynamic programme on a fine spend grid
(globally optimal on the grid, the problem being separable), a greedy allocation on the
best average return of the next step, and multi-start SLSQP, each polished by the KKT
solution on its active items' concave parts. The current allocation (projected onto the
constraints) is always a candidate, so the result is never worse than it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError

from segvalue.config import CurvesFile, ResponseItem
from segvalue.economics.curves import (
    FittedCurve,
    hill,
    hill_inflection,
    hill_marginal,
    logistic,
)
from segvalue.errors import ConfigError, did_you_mean

__all__ = [
    "ALL_SEGMENTS",
    "Allocation",
    "WhatIf",
    "clv_values",
    "curves_from_mapping",
    "item_marginal_roi",
    "item_response",
    "optimise_budget",
    "smallest_budget",
    "what_if",
]

FloatArray = NDArray[np.float64]
Objective = Literal["profit", "revenue", "clv"]
_OBJECTIVES = ("profit", "revenue", "clv")
#: Spend grid of the dynamic programme for S-shaped curves (points across the budget).
GRID_POINTS = 2000
#: Relative tolerance on spend when deciding that a constraint binds.
_BIND_RTOL = 1e-7


# --------------------------------------------------------------------------- items


def _slope(item: ResponseItem) -> float:
    return 1.0 if item.slope is None else float(item.slope)


def item_response(item: ResponseItem, spend: float | Sequence[float] | FloatArray) -> FloatArray:
    """An item's response to a spend (not multiplied by ``value``).

    Examples
    --------
    >>> item = ResponseItem(name="email", form="michaelis_menten", beta=1000.0, k=200.0)
    >>> item_response(item, [0.0, 200.0]).tolist()
    [0.0, 500.0]
    """
    return hill(np.asarray(spend, dtype=np.float64), item.beta, item.k, _slope(item))


def item_marginal_roi(
    item: ResponseItem, spend: float | Sequence[float] | FloatArray
) -> FloatArray:
    """Money back for the next unit of spend: ``value * d response / d spend``.

    Examples
    --------
    >>> item = ResponseItem(name="email", form="michaelis_menten", beta=1000.0, k=200.0)
    >>> item_marginal_roi(item, [0.0, 200.0]).round(12).tolist()
    [5.0, 1.25]
    """
    spend_array = np.asarray(spend, dtype=np.float64)
    return item.value * hill_marginal(spend_array, item.beta, item.k, _slope(item))


def curves_from_mapping(data: Any, *, source: str = "curves") -> CurvesFile:
    """Validate a parsed curves file (YAML or JSON mapping) into a :class:`CurvesFile`.

    Parameters
    ----------
    data
        The parsed document: ``{"items": [{name, form, beta, k, slope, current, min, max,
        max_change, pinned, value}, ...], "total": ...}``.
    source
        Names the input in error messages (e.g. the file name).

    Raises
    ------
    ConfigError
        Naming the offending key and the fix.

    Examples
    --------
    >>> curves = curves_from_mapping({"total": 500, "items": [
    ...     {"name": "a", "form": "michaelis_menten", "beta": 1000, "k": 200, "current": 250}]})
    >>> curves.total, curves.items[0].k
    (500.0, 200.0)
    >>> curves_from_mapping({"items": [{"name": "a", "beta": 1, "k": 1, "slpoe": 2}]})
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: curves: unknown key 'items[0].slpoe' (did you mean 'slope'?)...
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: expected a mapping with 'items' (and 'total'), got {type(data).__name__}",
            fix="see docs/budget.md for the curves file format",
        )
    try:
        return CurvesFile.model_validate(dict(data))
    except ValidationError as exc:
        raise _curves_error(exc, source) from None


def _curves_error(exc: ValidationError, source: str) -> ConfigError:
    """The first problem of a curves file, with its key path and a did-you-mean."""
    errors = exc.errors()
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    first = unknown[0] if unknown else errors[0]
    loc = tuple(first["loc"])
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    key = key or "(top level)"
    more = len(errors) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    if first["type"] == "extra_forbidden":
        model = ResponseItem if len(loc) == 3 and loc[0] == "items" else CurvesFile
        allowed = list(model.model_fields)
        hint = did_you_mean(loc[-1], allowed)
        return ConfigError(
            f"{source}: unknown key '{key}'{hint}{tail}", fix=f"allowed keys: {', '.join(allowed)}"
        )
    if first["type"] == "missing":
        return ConfigError(
            f"{source}: required key '{key}' is missing{tail}",
            fix="each item needs name, beta and k (and slope for form hill)",
        )
    text = str(first["msg"]).removeprefix("Value error, ")
    given = first.get("input")
    shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
    return ConfigError(
        f"{source}: key '{key}': {text}{shown}{tail}", fix="see docs/budget.md for the format"
    )


# --------------------------------------------------------------------------- problem


def _number(value: float) -> str:
    """A spend amount for messages: thousands separators, at most two decimals."""
    if not math.isfinite(value):
        return "unlimited"
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass
class _Problem:
    """Validated arrays of one allocation problem."""

    names: tuple[str, ...]
    beta: FloatArray
    k: FloatArray
    slope: FloatArray
    value: FloatArray
    current: FloatArray
    lo: FloatArray
    hi: FloatArray
    lo_why: list[str]
    hi_why: list[str]
    lo_text: list[str]
    hi_text: list[str]
    pinned: NDArray[np.bool_]
    total: float  # cap or exact total; inf when free
    equality: bool
    cost: float  # charge per unit of spend in the optimised score
    objective: str
    floor: float | None

    @property
    def concave(self) -> bool:
        return bool(np.all(self.slope <= 1.0))

    def returns(self, spend: FloatArray) -> FloatArray:
        return self.value * hill(spend, self.beta, self.k, self.slope)

    def marginal(self, spend: FloatArray) -> FloatArray:
        return self.value * hill_marginal(spend, self.beta, self.k, self.slope)

    def score(self, spend: FloatArray) -> float:
        return float(np.sum(self.returns(spend)) - self.cost * np.sum(spend))


def _item_bounds(
    item: ResponseItem, max_change: float | None
) -> tuple[float, float, str, str, str, str, str | None]:
    """(lo, hi, lo_why, hi_why, lo_text, hi_text, conflict) of one item."""
    cur = float(item.current)
    hi_given = math.inf if item.max is None else float(item.max)
    if item.pinned:
        text = f"pinned at its current {_number(cur)}"
        conflict = None
        if cur < item.min or cur > hi_given:
            conflict = (
                f"'{item.name}' is pinned at its current {_number(cur)}, outside its "
                f"min {_number(item.min)} .. max {_number(hi_given)}"
            )
        return cur, cur, "pinned", "pinned", text, text, conflict
    lo, lo_why, lo_text = float(item.min), "min", f"min {_number(item.min)}"
    hi, hi_why, hi_text = hi_given, "max", f"max {_number(hi_given)}"
    change = item.max_change if item.max_change is not None else max_change
    if change is not None:
        low_change = max(cur * (1.0 - change), 0.0)
        high_change = cur * (1.0 + change)
        if low_change > lo:
            lo, lo_why = low_change, "max_change"
            lo_text = f"-{change:.0%} of its current {_number(cur)} = {_number(low_change)}"
        if high_change < hi:
            hi, hi_why = high_change, "max_change"
            hi_text = f"+{change:.0%} of its current {_number(cur)} = {_number(high_change)}"
    conflict = None
    if lo > hi * (1 + 1e-12) + 1e-12:
        conflict = (
            f"'{item.name}': its lower limit ({lo_text}) is above its upper limit ({hi_text})"
        )
    return lo, hi, lo_why, hi_why, lo_text, hi_text, conflict


def _problem(
    items: Sequence[ResponseItem],
    *,
    total: float | None,
    objective: str,
    min_marginal_roi: float | None,
    max_change: float | None,
    values: Mapping[str, float] | None,
) -> _Problem:
    if not items:
        raise ConfigError("budget: no items to allocate", fix="list at least one item")
    items = [i if isinstance(i, ResponseItem) else ResponseItem.model_validate(i) for i in items]
    names = [i.name for i in items]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"budget: item names repeat: {repeated}", fix="give each item a name")
    if objective not in _OBJECTIVES:
        raise ConfigError(
            f"budget: unknown objective {objective!r}", fix=f"use one of {', '.join(_OBJECTIVES)}"
        )
    if min_marginal_roi is not None and not (
        math.isfinite(min_marginal_roi) and min_marginal_roi >= 0
    ):
        raise ConfigError(
            f"budget: min_marginal_roi must be a number >= 0, got {min_marginal_roi!r}",
            fix="e.g. 1.2: spend only where the next unit returns at least 1.2",
        )
    if max_change is not None and not max_change >= 0:
        raise ConfigError(f"budget: max_change must be >= 0, got {max_change!r}", fix="e.g. 0.3")
    if values:
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(
                f"budget: values given for unknown items {unknown}", fix=f"items are {names}"
            )
    bounds = [_item_bounds(i, max_change) for i in items]
    conflicts = [b[6] for b in bounds if b[6] is not None]
    if conflicts:
        raise ConfigError(
            "budget: infeasible item limits: " + "; ".join(conflicts),
            fix="widen max_change, lower min / raise max, or unpin the item",
        )
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    current = np.array([float(i.current) for i in items])

    cost = 1.0 if objective == "profit" else 0.0
    if min_marginal_roi is not None:
        cost = max(cost, float(min_marginal_roi))
    if total is None:
        cap = float(current.sum())
        if cap <= 0:
            if cost <= 0:
                raise ConfigError(
                    f"budget: objective {objective!r} needs a total: no total was given and "
                    "the items' current spend adds up to 0",
                    fix="pass a total (`total`), or set each item's current spend",
                )
            cap = math.inf
    else:
        cap = float(total)
        if math.isnan(cap) or cap < 0:
            raise ConfigError(f"budget: total must be >= 0, got {total!r}", fix="e.g. 50000")
        if math.isinf(cap) and cost <= 0:
            raise ConfigError(
                f"budget: objective {objective!r} spends the whole total, which is unlimited",
                fix="pass a finite total, or use objective 'profit' or a min_marginal_roi",
            )
    equality = cost <= 0
    problem = _Problem(
        names=tuple(names),
        beta=np.array([i.beta for i in items], dtype=np.float64),
        k=np.array([i.k for i in items], dtype=np.float64),
        slope=np.array([_slope(i) for i in items], dtype=np.float64),
        value=np.array(
            [float((values or {}).get(i.name, i.value)) for i in items], dtype=np.float64
        ),
        current=current,
        lo=lo,
        hi=hi,
        lo_why=[b[2] for b in bounds],
        hi_why=[b[3] for b in bounds],
        lo_text=[b[4] for b in bounds],
        hi_text=[b[5] for b in bounds],
        pinned=np.array([i.pinned for i in items], dtype=bool),
        total=cap,
        equality=equality,
        cost=cost,
        objective=objective,
        floor=min_marginal_roi,
    )
    _check_total(problem)
    return problem


def _check_total(p: _Problem) -> None:
    """Raise a ConfigError naming the items when the total and the limits conflict."""
    tol = 1e-9 * max(1.0, p.total if math.isfinite(p.total) else 1.0)
    low = float(p.lo.sum())
    if low > p.total + tol:
        order = [i for i in np.argsort(-p.lo) if p.lo[i] > 0]
        parts = [f"'{p.names[i]}' {p.lo_text[i]}" for i in order]
        raise ConfigError(
            f"budget: the items' lower limits add up to {_number(low)}, above the total "
            f"{_number(p.total)}: " + "; ".join(parts),
            fix=f"raise the total to at least {_number(low)}, or lower these limits "
            "(min, max_change) or unpin items",
        )
    high = float(p.hi.sum())
    if p.equality and high < p.total - tol:
        order = list(np.argsort(-p.hi))
        parts = [f"'{p.names[i]}' {p.hi_text[i]}" for i in order]
        raise ConfigError(
            f"budget: the total {_number(p.total)} cannot be spent: the items' upper limits "
            f"add up to {_number(high)}: " + "; ".join(parts),
            fix=f"lower the total to at most {_number(high)}, raise these limits (max, "
            "max_change) or unpin items, or use objective 'profit' or a min_marginal_roi "
            "(which may spend less than the total)",
        )


# --------------------------------------------------------------------------- KKT solver


def _inverse_marginal(
    p: _Problem, idx: NDArray[np.intp], lam: float, lower: FloatArray, upper: FloatArray
) -> FloatArray:
    """Spend in ``[lower, upper]`` at which each item's marginal ROI equals ``lam``.

    The marginal ROI must be non-increasing on ``[lower, upper]`` (a concave curve, or
    the concave part of an S-shaped one): the result is ``lower`` where the marginal
    there is already at most ``lam`` and ``upper`` where it is still at least ``lam``.
    """
    beta, k, slope, value = p.beta[idx], p.k[idx], p.slope[idx], p.value[idx]
    if lam <= 0:
        return upper.copy()

    def g(s: FloatArray) -> FloatArray:
        return value * hill_marginal(s, beta, k, slope)

    out = np.empty(idx.size)
    mm = slope == 1.0
    if mm.any():  # closed form: value beta k / (k + s)^2 = lam
        out[mm] = np.sqrt(value[mm] * beta[mm] * k[mm] / lam) - k[mm]
    other = ~mm
    if other.any():
        out[other] = (
            _solve_log_marginal(
                value[other] * beta[other] * slope[other] / k[other], slope[other], lam
            )
            * k[other]
        )
    out = np.clip(out, lower, upper)
    out = np.where(g(lower) <= lam, lower, out)
    finite_upper = np.isfinite(upper)
    if finite_upper.any():
        at_upper = finite_upper & (g(np.where(finite_upper, upper, lower)) >= lam)
        out = np.where(at_upper, upper, out)
    return np.asarray(out, dtype=np.float64)


_EPS = float(np.finfo(float).eps)


def brent_root(
    f: Callable[[float], float],
    low: float,
    high: float,
    *,
    xtol: float = 2e-12,
    rtol: float = 4 * _EPS,
    maxiter: int = 100,
) -> float:
    """A root of ``f`` on ``[low, high]`` by Brent's method (bisection, secant, inverse
    quadratic interpolation), where ``f(low)`` and ``f(high)`` differ in sign.

    The algorithm of scipy's ``brentq`` (Brent 1973, *Algorithms for Minimization
    without Derivatives*, ch. 4), written here so that budgets from a curves file do
    not import ``scipy.optimize`` (most of a second of start-up). Stops when the
    bracket is narrower than ``xtol + rtol * |x|``.

    Examples
    --------
    >>> round(brent_root(lambda x: x * x - 2.0, 0.0, 2.0), 12)
    1.414213562373
    """
    x_pre, x_cur = float(low), float(high)
    f_pre, f_cur = f(x_pre), f(x_cur)
    if f_pre * f_cur > 0:
        raise ValueError("f(low) and f(high) must differ in sign")
    if f_pre == 0:
        return x_pre
    if f_cur == 0:
        return x_cur
    x_blk = f_blk = s_pre = s_cur = 0.0
    for _ in range(maxiter):
        if f_pre != 0 and f_cur != 0 and (math.copysign(1, f_pre) != math.copysign(1, f_cur)):
            x_blk, f_blk = x_pre, f_pre
            s_pre = s_cur = x_cur - x_pre
        if abs(f_blk) < abs(f_cur):  # keep the best guess in x_cur
            x_pre, x_cur, x_blk = x_cur, x_blk, x_cur
            f_pre, f_cur, f_blk = f_cur, f_blk, f_cur
        delta = (xtol + rtol * abs(x_cur)) / 2
        s_bis = (x_blk - x_cur) / 2
        if f_cur == 0 or abs(s_bis) < delta:
            return x_cur
        if abs(s_pre) > delta and abs(f_cur) < abs(f_pre):
            if x_pre == x_blk:  # secant
                s_try = -f_cur * (x_cur - x_pre) / (f_cur - f_pre)
            else:  # inverse quadratic interpolation
                d_pre = (f_pre - f_cur) / (x_pre - x_cur)
                d_blk = (f_blk - f_cur) / (x_blk - x_cur)
                s_try = -f_cur * (f_blk * d_blk - f_pre * d_pre) / (d_blk * d_pre * (f_blk - f_pre))
            if 2 * abs(s_try) < min(abs(s_pre), 3 * abs(s_bis) - delta):
                s_pre, s_cur = s_cur, s_try  # a good short step
            else:
                s_pre = s_cur = s_bis
        else:
            s_pre = s_cur = s_bis
        x_pre, f_pre = x_cur, f_cur
        x_cur += s_cur if abs(s_cur) > delta else math.copysign(delta, s_bis)
        f_cur = f(x_cur)
    return x_cur


def _solve_log_marginal(scale: FloatArray, slope: FloatArray, lam: float) -> FloatArray:
    """Root ``u >= inflection`` of ``scale * u^(n-1) / (1 + u^n)^2 = lam`` (``u = s / k``).

    In ``x = log u`` the log marginal ``log scale + (n - 1) x - 2 log(1 + e^(n x))`` is
    concave, and decreasing beyond the inflection, so Newton's method started to the
    right of the root (from the bound ``u^(-(n+1)) scale >= lam``) descends to it
    monotonically.
    """
    log_scale, log_lam = np.log(scale), math.log(lam)
    x = (log_scale - log_lam) / (slope + 1.0)
    for _ in range(100):
        share = logistic(slope * x)
        f = log_scale + (slope - 1.0) * x - 2.0 * np.logaddexp(0.0, slope * x) - log_lam
        df = (slope - 1.0) - 2.0 * slope * share
        step = np.where(df < 0, f / np.minimum(df, -1e-300), 0.0)
        x = x - step
        if np.all(np.abs(step) <= 1e-14 * np.maximum(1.0, np.abs(x))):
            break
    return np.asarray(np.exp(x), dtype=np.float64)


def _kkt(
    p: _Problem,
    idx: NDArray[np.intp],
    lower: FloatArray,
    upper: FloatArray,
    budget: float,
    equality: bool,
) -> tuple[FloatArray, float] | None:
    """Exact optimum over items ``idx`` whose marginals fall on ``[lower, upper]``.

    Maximises ``sum value r(s) - cost s`` with ``sum s <= budget`` (``== budget`` when
    ``equality``); returns the spends and the common marginal ROI ``lambda``, or None
    when the budget cannot be met within the bounds.
    """
    tol = 1e-12 * max(1.0, budget if math.isfinite(budget) else 1.0)
    if float(lower.sum()) > budget + tol * 1e3:
        return None
    if idx.size == 0:
        return (np.zeros(0), float("nan")) if not equality or budget <= tol * 1e3 else None
    if p.cost > 0:
        at_cost = _inverse_marginal(p, idx, p.cost, lower, upper)
        if float(at_cost.sum()) <= budget + tol:
            return at_cost, p.cost
    if float(upper.sum()) <= budget + tol:
        if equality and float(upper.sum()) < budget - tol * 1e3:
            return None
        spend = np.zeros(len(p.names))
        spend[idx] = upper  # marginals are evaluated on the full vector of items
        return upper.copy(), float(np.min(p.marginal(spend)[idx]))

    def excess(log_lam: float) -> float:
        return float(_inverse_marginal(p, idx, math.exp(log_lam), lower, upper).sum() - budget)

    high = max(math.log(p.cost), 0.0) if p.cost > 0 else 0.0
    while excess(high) > 0 and high < 700:
        high += 2.0
    low = math.log(p.cost) if p.cost > 0 else high - 2.0
    while excess(low) < 0 and low > -700:
        low -= 2.0
    if excess(low) < 0:  # nothing to fill the budget with (marginals all ~0)
        return _inverse_marginal(p, idx, math.exp(low), lower, upper), math.exp(low)
    if excess(high) > 0:
        return _inverse_marginal(p, idx, math.exp(high), lower, upper), math.exp(high)
    log_lam = brent_root(excess, low, high, xtol=1e-15, rtol=1e-15, maxiter=500)
    spend = _inverse_marginal(p, idx, math.exp(log_lam), lower, upper)
    if equality:  # spread the bisection's last rounding over the free items
        free = (spend > lower) & (spend < upper)
        gap = budget - float(spend.sum())
        if free.any() and abs(gap) > 0:
            spend[free] = np.clip(spend[free] + gap / free.sum(), lower[free], upper[free])
    return spend, math.exp(log_lam)


# --------------------------------------------------------------------------- global search


def _project(p: _Problem, x: FloatArray) -> FloatArray:
    """Closest allocation (Euclidean) within the bounds and the total."""
    y = np.clip(x, p.lo, p.hi)
    if not math.isfinite(p.total):
        return y
    if not p.equality and float(y.sum()) <= p.total:
        return y

    def excess(mu: float) -> float:
        return float(np.clip(x - mu, p.lo, p.hi).sum() - p.total)

    mu_high = float(np.max(x - p.lo))
    mu_low = float(np.min(x)) - p.total - 1.0
    if excess(mu_high) >= 0:
        return np.clip(x - mu_high, p.lo, p.hi)
    if excess(mu_low) <= 0:
        return np.clip(x - mu_low, p.lo, p.hi)
    mu = brent_root(excess, mu_low, mu_high, xtol=1e-12, maxiter=500)
    out = np.clip(x - mu, p.lo, p.hi)
    free = (out > p.lo) & (out < p.hi)
    if free.any() and (p.equality or out.sum() > p.total):
        out[free] = np.clip(out[free] + (p.total - out.sum()) / free.sum(), p.lo[free], p.hi[free])
    return np.asarray(out, dtype=np.float64)


def _useful_upper(p: _Problem) -> FloatArray:
    """Beyond this spend an item cannot add to the score (or the budget runs out)."""
    budget = p.total - float(p.lo.sum())
    upper = np.minimum(p.hi, p.lo + budget) if math.isfinite(budget) else p.hi.copy()
    if p.cost > 0:
        idx = np.arange(len(p.names))
        start = np.maximum(p.lo, hill_inflection(p.k, p.slope))
        start = np.minimum(start, upper)
        peak = p.marginal(start)
        cap = _inverse_marginal(p, idx, p.cost, start, upper)
        upper = np.where(peak < p.cost, p.lo, np.minimum(upper, cap))
    return np.maximum(upper, p.lo)


def _dynamic_programme(p: _Problem, upper: FloatArray, points: int) -> FloatArray:
    """Best allocation on a spend grid: exact for the separable problem on that grid."""
    span = float(np.sum(upper - p.lo))
    budget = min(p.total - float(p.lo.sum()), span)
    if budget <= 0:
        return p.lo.copy()
    step = budget / points
    best = np.full(points + 1, -np.inf)
    best[0] = 0.0
    choices = []
    for i in range(len(p.names)):
        steps = min(math.floor((upper[i] - p.lo[i]) / step + 1e-9), points)
        spend = p.lo[i] + step * np.arange(steps + 1)
        gain = p.value[i] * hill(spend, p.beta[i], p.k[i], p.slope[i]) - p.cost * spend
        new = np.full(points + 1, -np.inf)
        arg = np.zeros(points + 1, dtype=np.int64)
        for j in range(steps + 1):
            candidate = best[: points + 1 - j] + gain[j]
            better = candidate > new[j:]
            new[j:][better] = candidate[better]
            arg[j:][better] = j
        best = new
        choices.append(arg)
    used = points if p.equality else int(np.argmax(best))
    if not np.isfinite(best[used]):
        used = int(np.max(np.flatnonzero(np.isfinite(best))))
    out = p.lo.copy()
    for i in reversed(range(len(p.names))):
        j = int(choices[i][used])
        out[i] += j * step
        used -= j
    return out


def _greedy(p: _Problem, upper: FloatArray, points: int) -> FloatArray:
    """Allocate grid steps one block at a time to the item whose next block returns most.

    The block is the run of steps with the best average return, which lets an S-shaped
    item jump its convex start instead of never being chosen for its tiny first step.
    """
    budget = min(p.total - float(p.lo.sum()), float(np.sum(upper - p.lo)))
    if budget <= 0:
        return p.lo.copy()
    step = budget / points
    n = len(p.names)
    gains, limits = [], np.zeros(n, dtype=np.int64)
    for i in range(n):
        limits[i] = min(math.floor((upper[i] - p.lo[i]) / step + 1e-9), points)
        spend = p.lo[i] + step * np.arange(limits[i] + 1)
        gains.append(p.value[i] * hill(spend, p.beta[i], p.k[i], p.slope[i]) - p.cost * spend)
    taken = np.zeros(n, dtype=np.int64)
    left = points
    while left > 0:
        best_rate, best_item, best_block = -np.inf, -1, 0
        for i in range(n):
            room = min(int(limits[i] - taken[i]), left)
            if room <= 0:
                continue
            ahead = gains[i][taken[i] + 1 : taken[i] + room + 1] - gains[i][taken[i]]
            rate = ahead / np.arange(1, room + 1)
            block = int(np.argmax(rate))
            if rate[block] > best_rate:
                best_rate, best_item, best_block = float(rate[block]), i, block + 1
        if best_item < 0 or (not p.equality and best_rate <= 0):
            break
        taken[best_item] += best_block
        left -= best_block
    return p.lo + taken * step


def _slsqp(p: _Problem, start: FloatArray, upper: FloatArray) -> FloatArray | None:
    """Local optimum from ``start`` by SLSQP on spend scaled to the budget."""
    budget = min(p.total - float(p.lo.sum()), float(np.sum(upper - p.lo)))
    if budget <= 0:
        return None
    scale = max(float(np.sum(p.value * p.beta)), 1e-12)
    floor_k = 1e-9 * p.k

    def score(x: FloatArray) -> tuple[float, FloatArray]:
        spend = p.lo + x * budget
        value = -p.score(spend) / scale
        slope = p.marginal(np.maximum(spend, floor_k)) - p.cost
        return value, -slope * budget / scale

    x0 = np.clip((start - p.lo) / budget, 0.0, (upper - p.lo) / budget)
    cap = (p.total - float(p.lo.sum())) / budget
    constraint = {
        "type": "eq" if p.equality else "ineq",
        "fun": (lambda x: cap - x.sum()) if not p.equality else (lambda x: x.sum() - cap),
        "jac": lambda x: (-np.ones_like(x)) if not p.equality else np.ones_like(x),
    }
    from scipy import optimize  # only S-shaped curves need it: keep start-up light

    with warnings.catch_warnings():  # SLSQP's bound clipping is expected here
        warnings.simplefilter("ignore", RuntimeWarning)
        result = optimize.minimize(
            score, x0, jac=True, method="SLSQP",
            bounds=list(zip(np.zeros_like(x0), (upper - p.lo) / budget, strict=True)),
            constraints=[constraint], options={"maxiter": 300, "ftol": 1e-12},
        )  # fmt: skip
    if not np.all(np.isfinite(result.x)):
        return None
    return _project(p, p.lo + np.asarray(result.x) * budget)


def _polish(p: _Problem, spend: FloatArray, upper: FloatArray) -> FloatArray:
    """Exact KKT solution on the items that sit on the concave part of their curve.

    Items below the start of their concave part (the inflection) are held where they
    are, or dropped to their minimum; whichever scores best (with the input) is kept.
    """
    concave_from = np.minimum(np.maximum(p.lo, hill_inflection(p.k, p.slope)), p.hi)
    tol = 1e-9 * max(1.0, float(np.max(upper)) if np.all(np.isfinite(upper)) else 1.0)
    active = spend >= concave_from - tol
    best, best_score = spend, p.score(spend)
    for drop in (False, True):
        fixed = np.where(drop & ~active, p.lo, spend)
        idx = np.flatnonzero(active)
        room = p.total - float(fixed[~active].sum())
        solved = _kkt(p, idx, concave_from[idx], p.hi[idx], room, p.equality)
        if solved is None:
            continue
        candidate = fixed.copy()
        candidate[idx] = solved[0]
        candidate = _project(p, candidate)
        score = p.score(candidate)
        # Ties within rounding go to the KKT point: its marginal ROIs are exactly equal.
        if score >= best_score - 1e-12 * max(1.0, abs(best_score)):
            best, best_score = candidate, max(score, best_score)
    return best


def _solve_global(p: _Problem, rng: np.random.Generator) -> tuple[FloatArray, dict[str, Any]]:
    upper = _useful_upper(p)
    n = len(p.names)
    points = GRID_POINTS if n <= 10 else max(200, GRID_POINTS * 10 // n)
    candidates: dict[str, FloatArray] = {
        "dynamic_programme": _dynamic_programme(p, upper, points),
        "greedy": _greedy(p, upper, min(points, 500)),
    }
    starts: dict[str, FloatArray] = {
        "current": _project(p, p.current),
        "equal": _project(p, p.lo + (upper - p.lo) / 2.0),
        **{f"slsqp_from_{key}": value for key, value in candidates.items()},
    }
    budget = p.total - float(p.lo.sum())
    if n <= 12:
        for i in range(n):
            corner = p.lo.copy()
            corner[i] = min(upper[i], p.lo[i] + budget) if math.isfinite(budget) else upper[i]
            starts[f"corner_{p.names[i]}"] = _project(p, corner)
    for r in range(3):
        share = rng.dirichlet(np.ones(n))
        room = budget if math.isfinite(budget) else float(np.sum(upper - p.lo))
        starts[f"random_{r}"] = _project(p, p.lo + share * room)
    for key, start in starts.items():
        local = _slsqp(p, start, upper)
        if local is not None:
            candidates[key if key.startswith("slsqp") else f"slsqp_from_{key}"] = local
    scores = {key: p.score(value) for key, value in candidates.items()}
    top = sorted(scores, key=lambda key: -scores[key])[:4]
    for key in top:
        polished = _polish(p, candidates[key], upper)
        candidates[f"{key}+kkt"] = polished
        scores[f"{key}+kkt"] = p.score(polished)
    best = max(scores.values())
    # Within rounding of the best, prefer a polished candidate: it meets the KKT
    # conditions exactly (equal marginal ROI), where SLSQP stops at ~1e-8.
    near = [key for key in scores if scores[key] >= best - 1e-12 * max(1.0, abs(best))]
    exact = [key for key in near if key.endswith("+kkt")]
    winner = (exact or near)[0]
    return candidates[winner], {"candidates": scores, "winner": winner, "grid_points": points}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Allocation:
    """An optimised budget allocation and what it is expected to bring.

    Attributes
    ----------
    allocation
        Spend per item.
    current
        The items' current spend.
    expected_response, current_response
        Sum of the items' responses (in the curves' unit) at the allocation and at the
        current spend.
    expected_value, current_value
        Sum of ``value * response`` (money) at the allocation and at the current spend.
    marginal_roi
        Money back for the next unit of spend per item, ``value * response'`` at the
        allocation; items the optimiser moved freely share one value.
    binding_constraints
        The limits the allocation sits on: ``"total"``, ``"min_marginal_roi"`` and
        ``"<item>.<min|max|max_change|pinned>"``.
    objective
        ``"profit"``, ``"revenue"`` or ``"clv"``.
    total
        The budget: exact for ``revenue`` / ``clv``, a cap for ``profit`` or with a
        marginal-ROI floor; None when unlimited.
    method
        ``"kkt"`` (concave curves: exact), ``"global"`` (S-shaped), or ``"current"``
        (the projected current allocation was best).
    diagnostics
        Candidates and their scores, the Lagrange multiplier, the bounds used.
    """

    allocation: dict[str, float]
    current: dict[str, float]
    expected_response: float
    current_response: float
    expected_value: float
    current_value: float
    marginal_roi: dict[str, float]
    binding_constraints: list[str]
    objective: str
    total: float | None
    method: str
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def spend(self) -> float:
        """Total spend of the allocation."""
        return float(sum(self.allocation.values()))

    @property
    def current_spend(self) -> float:
        """Total current spend."""
        return float(sum(self.current.values()))

    @property
    def expected_profit(self) -> float:
        """Expected value minus spend at the allocation."""
        return self.expected_value - self.spend

    @property
    def current_profit(self) -> float:
        """Value minus spend at the current allocation."""
        return self.current_value - self.current_spend

    @property
    def expected_outcome(self) -> float:
        """The objective at the allocation: profit, or value (revenue / CLV)."""
        return self.expected_profit if self.objective == "profit" else self.expected_value

    @property
    def current_outcome(self) -> float:
        """The objective at the current allocation."""
        return self.current_profit if self.objective == "profit" else self.current_value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``segvalue budget --json``); infinities become None.

        Examples
        --------
        >>> items = [ResponseItem(name="a", form="michaelis_menten", beta=100.0, k=10.0)]
        >>> out = optimise_budget(items, total=10.0, objective="revenue").to_dict()
        >>> print(*list(out)[:5])
        allocation expected_response current_response marginal_roi binding_constraints
        >>> out["allocation"], out["expected_response"], out["binding_constraints"]
        ({'a': 10.0}, 50.0, ['total'])
        """

        def clean(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "allocation": dict(self.allocation),
            "expected_response": self.expected_response,
            "current_response": self.current_response,
            "marginal_roi": {k: clean(v) for k, v in self.marginal_roi.items()},
            "binding_constraints": list(self.binding_constraints),
            "objective": self.objective,
            "total": None if self.total is None else clean(self.total),
            "spend": self.spend,
            "current_spend": self.current_spend,
            "current_allocation": dict(self.current),
            "expected_value": self.expected_value,
            "current_value": self.current_value,
            "expected_profit": self.expected_profit,
            "current_profit": self.current_profit,
            "method": self.method,
        }


def _binding(p: _Problem, spend: FloatArray) -> list[str]:
    out = []
    finite = float(np.max(np.where(np.isfinite(p.hi), p.hi, 0.0), initial=0.0))
    atol = _BIND_RTOL * max(1.0, float(spend.sum()), finite)
    total_binds = math.isfinite(p.total) and float(spend.sum()) >= p.total - atol * len(spend)
    if total_binds:
        out.append("total")
    elif p.floor is not None and p.floor > 0:
        interior = (spend > p.lo + atol) & (spend < p.hi - atol)
        if interior.any() and np.any(np.isclose(p.marginal(spend)[interior], p.cost, rtol=1e-6)):
            out.append("min_marginal_roi")
    for i, name in enumerate(p.names):
        if p.pinned[i]:
            out.append(f"{name}.pinned")
        elif math.isfinite(p.hi[i]) and spend[i] >= p.hi[i] - atol:
            out.append(f"{name}.{p.hi_why[i]}")
        elif p.lo[i] > 0 and spend[i] <= p.lo[i] + atol:
            out.append(f"{name}.{p.lo_why[i]}")
    return out


def _allocation(p: _Problem, spend: FloatArray, method: str, diag: dict[str, Any]) -> Allocation:
    response = hill(spend, p.beta, p.k, p.slope)
    now = hill(p.current, p.beta, p.k, p.slope)
    diag = {
        **diag,
        "cost_per_unit": p.cost,
        "bounds": {n: (float(p.lo[i]), float(p.hi[i])) for i, n in enumerate(p.names)},
        "score": p.score(spend),
    }
    return Allocation(
        allocation={n: float(spend[i]) for i, n in enumerate(p.names)},
        current={n: float(p.current[i]) for i, n in enumerate(p.names)},
        expected_response=float(response.sum()),
        current_response=float(now.sum()),
        expected_value=float(np.sum(p.value * response)),
        current_value=float(np.sum(p.value * now)),
        marginal_roi={n: float(v) for n, v in zip(p.names, p.marginal(spend), strict=True)},
        binding_constraints=_binding(p, spend),
        objective=p.objective,
        total=p.total if math.isfinite(p.total) else None,
        method=method,
        diagnostics=diag,
    )


def _solve(p: _Problem, seed: int) -> Allocation:
    current = _project(p, p.current)
    if p.concave:
        idx = np.arange(len(p.names))
        solved = _kkt(p, idx, p.lo, p.hi, p.total, p.equality)
        assert solved is not None  # feasibility was checked
        spend, lam = solved
        method, diag = "kkt", {"lagrange_multiplier": lam}
    else:
        spend, diag = _solve_global(p, np.random.default_rng(seed))
        method = "global"
    if p.score(current) > p.score(spend):
        spend, method = current, "current"
    return _allocation(p, spend, method, diag)


#: The segment name of the whole customer base in a segment CLV mapping (as in the KPIs).
ALL_SEGMENTS = "all customers"


def clv_values(
    items: Sequence[ResponseItem], segment_clv: Mapping[str, float]
) -> tuple[dict[str, float], list[str]]:
    """Item values for the ``clv`` objective: each scaled by its segment's relative CLV.

    A unit of response (revenue, or conversions times ``value``) from a segment whose
    customers are worth twice the base's is worth twice as much:
    ``value_clv = value * clv[segment] / clv[base]``, with ``clv`` the mean CLV per
    customer (the ``clv_mean`` KPI) and the base the ``"all customers"`` entry (without
    one: the mean of the segments given). Items without a segment, or whose segment has
    no CLV, keep their ``value`` and are named in a warning: for them ``clv`` is
    ``revenue``.

    Parameters
    ----------
    items
        The budget items (``segment`` says which segment each reaches).
    segment_clv
        Mean CLV per customer by segment name.

    Returns
    -------
    (dict of str to float, list of str)
        Values by item name (only the items that were matched) and the warnings.

    Examples
    --------
    >>> mm = {"form": "michaelis_menten", "beta": 1.0, "k": 1.0}
    >>> items = [ResponseItem(name="a", segment="loyal", **mm),
    ...          ResponseItem(name="b", value=2, segment="new", **mm),
    ...          ResponseItem(name="c", segment="gone", **mm)]
    >>> values, notes = clv_values(items, {"all customers": 50.0, "loyal": 150.0, "new": 25.0})
    >>> values
    {'a': 3.0, 'b': 1.0}
    >>> notes[0][:60]
    'objective clv: 1 item(s) not matched to a segment with a CLV'
    """
    known = {k: float(v) for k, v in segment_clv.items() if math.isfinite(float(v))}
    base = known.get(ALL_SEGMENTS)
    if base is None:
        segments = [v for k, v in known.items() if k != ALL_SEGMENTS]
        base = sum(segments) / len(segments) if segments else None
    values: dict[str, float] = {}
    unmatched = []
    for item in items:
        clv = known.get(item.segment) if item.segment is not None else None
        if clv is None or base is None or base <= 0 or clv <= 0:
            unmatched.append(
                f"{item.name} (segment {item.segment!r})"
                if item.segment
                else f"{item.name} (no segment)"
            )
            continue
        values[item.name] = item.value * clv / base
    notes = []
    if unmatched:
        choices = sorted(k for k in known if k != ALL_SEGMENTS)
        notes.append(
            f"objective clv: {len(unmatched)} item(s) not matched to a segment with a CLV: "
            f"{', '.join(unmatched)}; they are valued at their own value (as for revenue). "
            f"Segments with a CLV: {', '.join(choices) or 'none'}"
        )
    return values, notes


def optimise_budget(
    items: Sequence[ResponseItem],
    *,
    total: float | None = None,
    objective: Objective = "profit",
    min_marginal_roi: float | None = None,
    max_change: float | None = None,
    values: Mapping[str, float] | None = None,
    target: float | None = None,
    seed: int = 0,
) -> Allocation:
    """Allocate a budget over items with saturating response curves.

    Parameters
    ----------
    items
        The budget items: curve, ``value`` per unit of response, ``current`` spend and
        limits (``min``, ``max``, ``max_change``, ``pinned``).
    total
        The budget. ``revenue`` / ``clv`` spend exactly this; ``profit`` (and any
        objective with ``min_marginal_roi``) spends at most this. None: the items'
        current total (for ``profit`` with no current spend: unlimited); ``math.inf``:
        unlimited (``profit`` or a floor only).
    objective
        ``"profit"``: maximise value minus spend; ``"revenue"``: maximise value;
        ``"clv"``: the same with each item's value the CLV per conversion (see
        ``values``).
    min_marginal_roi
        Hurdle rate: spend only where the next unit returns at least this much.
    max_change
        Default +-share of current spend for items without their own ``max_change``.
    values
        Value per unit of response by item name, overriding the items' ``value`` (e.g.
        CLV per conversion of each segment for ``objective="clv"``).
    target
        Instead of a given total, find the smallest total whose optimum reaches this
        expected value (see :func:`smallest_budget`); ``total`` then caps the search.
    seed
        Seeds the random starts of the S-shaped search (results are reproducible).

    Returns
    -------
    Allocation

    Raises
    ------
    ConfigError
        Conflicting limits, naming the items, their numbers and the fix.

    Notes
    -----
    With a fixed total that is fully spent, revenue and profit maximisation choose the
    same allocation (spend is the same in every allocation). They differ when the
    marginal ROI at the total is below 1: profit then spends less, stopping where the
    marginal ROI is 1 (or at the floor). Never worse than the current allocation: the
    current spend, projected onto the limits and the total, is always a candidate.

    Examples
    --------
    The closed-form case (Michaelis-Menten items, equal marginal ROI):

    >>> items = [
    ...     ResponseItem(name="a", form="michaelis_menten", beta=1000.0, k=200.0),
    ...     ResponseItem(name="b", form="michaelis_menten", beta=600.0, k=100.0),
    ...     ResponseItem(name="c", form="michaelis_menten", beta=300.0, k=50.0),
    ... ]
    >>> best = optimise_budget(items, total=500.0, objective="revenue")
    >>> {n: round(s, 3) for n, s in best.allocation.items()}
    {'a': 266.627, 'b': 155.582, 'c': 77.791}
    >>> round(best.expected_response, 3), {n: round(m, 4) for n, m in best.marginal_roi.items()}
    (1119.255, {'a': 0.9185, 'b': 0.9185, 'c': 0.9185})

    Profit stops where the next unit returns less than it costs:

    >>> profit = optimise_budget(items, total=500.0, objective="profit")
    >>> round(profit.spend, 3), round(profit.marginal_roi["a"], 6)
    (464.637, 1.0)
    """
    if target is not None:
        return smallest_budget(
            items, target, objective="clv" if objective == "clv" else "revenue",
            max_change=max_change, values=values, max_total=total, seed=seed,
        )  # fmt: skip
    p = _problem(
        items,
        total=total,
        objective=objective,
        min_marginal_roi=min_marginal_roi,
        max_change=max_change,
        values=values,
    )
    return _solve(p, seed)


def smallest_budget(
    items: Sequence[ResponseItem],
    target: float,
    *,
    objective: Literal["revenue", "clv"] = "revenue",
    measure: Literal["value", "response"] = "value",
    max_change: float | None = None,
    values: Mapping[str, float] | None = None,
    max_total: float | None = None,
    rtol: float = 1e-9,
    seed: int = 0,
) -> Allocation:
    """The least total budget whose best allocation reaches a target (inverse problem).

    The best achievable value is non-decreasing in the total, so the total is found by
    root finding (Brent) on ``optimum(total) - target`` over ``optimise_budget``.

    Parameters
    ----------
    items
        As in :func:`optimise_budget`.
    target
        The expected outcome to reach: money (``measure="value"``, ``value *
        response`` summed) or the curves' unit (``measure="response"``).
    objective
        ``"revenue"`` or ``"clv"`` (labels the result; value per item as given).
    measure
        What ``target`` is measured in.
    max_change, values
        As in :func:`optimise_budget`.
    max_total
        Do not search beyond this total.
    rtol
        Relative precision of the total.
    seed
        As in :func:`optimise_budget`.

    Returns
    -------
    Allocation
        The optimum at the smallest total (``total``) reaching the target.

    Raises
    ------
    ConfigError
        When the target cannot be reached, naming the most that can be.

    Examples
    --------
    >>> items = [
    ...     ResponseItem(name="a", form="michaelis_menten", beta=1000.0, k=200.0),
    ...     ResponseItem(name="b", form="michaelis_menten", beta=600.0, k=100.0),
    ...     ResponseItem(name="c", form="michaelis_menten", beta=300.0, k=50.0),
    ... ]
    >>> round(smallest_budget(items, 1119.255).total, 2)
    500.0
    >>> smallest_budget(items, 2000.0)
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: budget: the target 2,000 cannot be reached: the curves saturate ...
    """
    base = _problem(
        items, total=math.inf, objective="profit", min_marginal_roi=None,
        max_change=max_change, values=values,
    )  # fmt: skip
    weight = base.value if measure == "value" else np.ones_like(base.value)
    unit = "" if measure == "value" else " (response)"

    def best_at(total: float) -> tuple[Allocation, float]:
        p = _problem(
            items, total=total, objective=objective, min_marginal_roi=None,
            max_change=max_change, values=values,
        )  # fmt: skip
        result = _solve(p, seed)
        spend = np.array([result.allocation[n] for n in p.names])
        return result, float(np.sum(weight * hill(spend, p.beta, p.k, p.slope)))

    low = float(base.lo.sum())
    start, reached = best_at(low)
    if reached >= target:
        return start
    bounded = np.isfinite(base.hi)
    ceiling = float(
        np.sum(weight[~bounded] * base.beta[~bounded])
        + np.sum(
            weight[bounded]
            * hill(base.hi[bounded], base.beta[bounded], base.k[bounded], base.slope[bounded])
        )
    )
    limit = math.inf if max_total is None else float(max_total)
    if bounded.all() or math.isfinite(limit):
        high = min(float(base.hi.sum()), limit)
        result, most = best_at(high)
        if most < target:
            where = (
                f"the most the items reach within a total of {_number(high)} is "
                f"{_number(most)}{unit}"
            )
            raise ConfigError(
                f"budget: the target {_number(target)} cannot be reached: {where}",
                fix="lower the target, or raise the items' maxima / the total limit",
            )
    else:
        if target >= ceiling:
            raise ConfigError(
                f"budget: the target {_number(target)} cannot be reached: the curves "
                f"saturate at {_number(ceiling)}{unit} (the sum of beta * value)",
                fix=f"lower the target below {_number(ceiling)}",
            )
        high = max(2.0 * low, float(np.sum(base.k)), 1.0)
        while best_at(high)[1] < target:
            low, high = high, high * 2.0

    def gap(total: float) -> float:
        return best_at(total)[1] - target

    total = brent_root(gap, low, high, xtol=rtol * high, rtol=max(rtol, 1e-15))
    result, reached = best_at(total)
    step = rtol * high
    while reached < target - 1e-9 * abs(target) and total < high:  # land on the reaching side
        total = min(total + step, high)
        step *= 2.0
        result, reached = best_at(total)
    return result


# --------------------------------------------------------------------------- what-if


@dataclass(frozen=True)
class WhatIf:
    """The expected effect of changing an allocation.

    Attributes
    ----------
    baseline, scenario
        Spend per item before and after.
    change_value
        Change in ``sum value * response`` (money).
    change_response
        Change in the summed response (the curves' unit).
    change_spend
        Change in total spend.
    change_by_item
        Change in ``value * response`` per item.
    interval
        95% interval of ``change_value`` from the curves' parameter uncertainty
        (seeded simulation); None when no uncertainty was given.
    notes
        Limits the scenario breaks, and how the interval was (or was not) computed.
    """

    baseline: dict[str, float]
    scenario: dict[str, float]
    change_value: float
    change_response: float
    change_spend: float
    change_by_item: dict[str, float]
    interval: tuple[float, float] | None
    notes: list[str]

    @property
    def change_profit(self) -> float:
        """Change in value minus spend."""
        return self.change_value - self.change_spend

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "baseline": dict(self.baseline),
            "scenario": dict(self.scenario),
            "change_value": self.change_value,
            "change_response": self.change_response,
            "change_spend": self.change_spend,
            "change_profit": self.change_profit,
            "change_by_item": dict(self.change_by_item),
            "interval": None if self.interval is None else list(self.interval),
            "notes": list(self.notes),
        }


def what_if(
    items: Sequence[ResponseItem],
    *,
    move: tuple[str, str, float] | None = None,
    allocation: Mapping[str, float] | None = None,
    baseline: Mapping[str, float] | None = None,
    uncertainty: Mapping[str, FittedCurve | NDArray[np.float64]] | None = None,
    values: Mapping[str, float] | None = None,
    n_draws: int = 4000,
    seed: int = 0,
) -> WhatIf:
    """Expected change in outcome when spend moves between items or is set anew.

    Parameters
    ----------
    items
        The budget items (curves, values, current spend).
    move
        ``(from_item, to_item, share)``: move ``share`` (0..1) of ``from_item``'s
        baseline spend to ``to_item``.
    allocation
        New spend per item (items not named keep their baseline spend).
    baseline
        The allocation to start from (default: the items' current spend), e.g. an
        :attr:`Allocation.allocation`.
    uncertainty
        Per item name, its :class:`~segvalue.economics.curves.FittedCurve` (parameters
        drawn log-normally around the item's ``beta``, ``k``, ``slope`` with the fit's
        covariance) or an array of parameter draws with columns ``beta``, ``k`` and, for
        Hill items, ``slope``. Items without an entry are taken as exact.
    values
        Value per unit of response by item, overriding the items' ``value``.
    n_draws, seed
        Size and seed of the simulation of the interval.

    Returns
    -------
    WhatIf

    Raises
    ------
    ConfigError
        Unknown item names, a share outside 0..1, or both / neither of ``move`` and
        ``allocation``.

    Examples
    --------
    Move 20% of 'a''s 250 to 'b' (Michaelis-Menten curves, value 1):

    >>> items = [
    ...     ResponseItem(name="a", form="michaelis_menten", beta=1000.0, k=200.0, current=250.0),
    ...     ResponseItem(name="b", form="michaelis_menten", beta=600.0, k=100.0, current=100.0),
    ... ]
    >>> result = what_if(items, move=("a", "b", 0.2))
    >>> result.scenario, round(result.change_value, 3), result.interval
    ({'a': 200.0, 'b': 150.0}, 4.444, None)
    """
    if (move is None) == (allocation is None):
        raise ConfigError(
            "what-if: give either a move (from, to, share) or an allocation",
            fix="e.g. move=('paid_social', 'email', 0.2)",
        )
    names = [i.name for i in items]
    by_name = {i.name: i for i in items}

    def check(name: str, role: str) -> None:
        if name not in by_name:
            raise ConfigError(f"what-if: unknown {role} item {name!r}", fix=f"use one of {names}")

    start = {i.name: float(i.current) for i in items}
    if baseline is not None:
        for name in baseline:
            check(name, "baseline")
        start.update({n: float(v) for n, v in baseline.items()})
    scenario = dict(start)
    if move is not None:
        source, sink, share = move
        check(source, "'from'")
        check(sink, "'to'")
        if not 0.0 <= share <= 1.0:
            raise ConfigError(
                f"what-if: the share to move must be between 0 and 1, got {share!r}",
                fix="e.g. 0.2 for 20%",
            )
        amount = share * start[source]
        scenario[source] -= amount
        scenario[sink] += amount
    else:
        assert allocation is not None
        for name, spend in allocation.items():
            check(name, "allocation")
            if not (math.isfinite(spend) and spend >= 0):
                raise ConfigError(
                    f"what-if: spend for {name!r} must be >= 0, got {spend!r}", fix="correct it"
                )
            scenario[name] = float(spend)
    for name in uncertainty or {}:
        check(name, "uncertainty")
    value = {i.name: float((values or {}).get(i.name, i.value)) for i in items}

    def returns(item: ResponseItem, spend: float) -> float:
        return value[item.name] * float(item_response(item, spend))

    by_item = {i.name: returns(i, scenario[i.name]) - returns(i, start[i.name]) for i in items}
    change_response = sum(
        float(item_response(i, scenario[i.name]) - item_response(i, start[i.name])) for i in items
    )
    notes = _limit_notes(items, scenario)
    changed = [n for n in names if scenario[n] != start[n]]
    interval = None
    if not uncertainty:
        notes.append("no parameter uncertainty given: the change is exact given the curves")
    else:
        missing = [n for n in changed if n not in uncertainty]
        if missing:
            notes.append(f"taken as exact (no uncertainty given): {', '.join(missing)}")
        rng = np.random.default_rng(seed)
        draws = np.zeros(n_draws)
        for name in changed:
            if name not in uncertainty:
                draws += by_item[name]
                continue
            beta, k, slope = _parameter_draws(by_name[name], uncertainty[name], n_draws, rng)
            after = hill(scenario[name], beta, k, slope)
            before = hill(start[name], beta, k, slope)
            draws += value[name] * (after - before)
        low, high = np.quantile(draws, [0.025, 0.975])
        interval = (float(low), float(high))
        notes.append(f"95% interval from {n_draws} seeded draws of the curve parameters")
    return WhatIf(
        baseline=start,
        scenario=scenario,
        change_value=float(sum(by_item.values())),
        change_response=change_response,
        change_spend=float(sum(scenario.values()) - sum(start.values())),
        change_by_item=by_item,
        interval=interval,
        notes=notes,
    )


def _parameter_draws(
    item: ResponseItem,
    source: FittedCurve | NDArray[np.float64],
    n_draws: int,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    if isinstance(source, FittedCurve):
        drawn = source.draw_parameters(n_draws, rng)
        # Relative deviations around the item's own parameters (which may be rounded).
        scale = {name: drawn[name] / source.params[name] for name in ("beta", "k", "slope")}
        slope = _slope(item) * (scale["slope"] if item.form == "hill" else 1.0)
        return item.beta * scale["beta"], item.k * scale["k"], np.broadcast_to(slope, (n_draws,))
    table = np.asarray(source, dtype=np.float64)
    width = 3 if item.form == "hill" else 2
    if table.ndim != 2 or table.shape[1] != width:
        raise ConfigError(
            f"what-if: parameter draws for {item.name!r} must have {width} columns "
            f"(beta, k{', slope' if width == 3 else ''}), got shape {table.shape}",
            fix="pass one row per draw",
        )
    rows = rng.integers(0, table.shape[0], n_draws)
    slope = table[rows, 2] if width == 3 else np.ones(n_draws)
    return table[rows, 0], table[rows, 1], slope


def _limit_notes(items: Sequence[ResponseItem], scenario: Mapping[str, float]) -> list[str]:
    notes = []
    for item in items:
        spend = scenario[item.name]
        low, high, *_ = _item_bounds(item, None)
        if item.pinned and spend != item.current:
            notes.append(f"'{item.name}' is pinned at {_number(item.current)}")
        elif spend < low - 1e-9 or spend > high + 1e-9:
            notes.append(
                f"'{item.name}' at {_number(spend)} is outside its limits "
                f"{_number(low)} .. {_number(high)}"
            )
    return notes
