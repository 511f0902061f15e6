"""Lift of a campaign against its control group, per arm, outcome and segment, with
intervals, p-values adjusted across segments, and a power check.

* A 0/1 outcome (conversion, visit): the difference of proportions with Newcombe's
  hybrid score interval (Newcombe 1998, "Interval estimation for the difference between
  independent proportions: comparison of eleven methods", Statistics in Medicine 17,
  873-890, method 10: from the two Wilson intervals) and the two-sided p-value of the
  pooled two-proportion z-test.
* Any other outcome (spend): the difference of means with Welch's interval and p-value
  (the Welch-Satterthwaite degrees of freedom).
* Across the segments of one arm and outcome, the p-values are adjusted by Holm's step-
  down method (family-wise error) or Benjamini-Hochberg (false discovery rate).
* The **incremental** outcome among the treated (conversions, revenue) is the lift times
  their number, its interval scaled alike; a revenue outcome's **campaign ROI** given a
  cost per contact and a margin (:func:`campaign_roi`).
* A result is **under-powered** when its interval holds 0 and the smallest effect the
  test could detect (at 80 % power, the same two-sided level) exceeds the observed
  lift's size: that null result says little.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special, stats

from segvalue.errors import DataValidationError
from segvalue.measurement.attribution import one_of

__all__ = [
    "ADJUSTMENTS",
    "adjust_p_values",
    "campaign_roi",
    "lift_table",
    "minimum_detectable_effect",
    "newcombe_interval",
    "sample_size",
    "welch_interval",
]

ADJUSTMENTS = ("holm", "bh", "none")


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise DataValidationError(
            f"level {level!r} is not in (0, 1)", fix="e.g. 0.95", parameter="level"
        )
    return float(special.ndtri(0.5 + level / 2))


def _wilson(successes: float, n: float, z: float) -> tuple[float, float]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def newcombe_interval(
    x1: float, n1: float, x2: float, n2: float, *, level: float = 0.95
) -> tuple[float, float, float]:
    """p1 - p2 and its hybrid score interval (Newcombe 1998, method 10).

    Examples
    --------
    Newcombe's example (a), 56/70 - 48/80: 0.2 (0.0524, 0.3339) (his Table II, method 10).

    >>> [round(v, 4) for v in newcombe_interval(56, 70, 48, 80)]
    [0.2, 0.0524, 0.3339]
    """
    if n1 <= 0 or n2 <= 0 or not (0 <= x1 <= n1 and 0 <= x2 <= n2):
        raise DataValidationError(
            f"proportions {x1}/{n1} and {x2}/{n2} are not counts within their totals",
            fix="give successes between 0 and the group's size, sizes > 0",
        )
    z = _z(level)
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = _wilson(x1, n1, z)
    l2, u2 = _wilson(x2, n2, z)
    diff = p1 - p2
    low = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return diff, low, high


def welch_interval(a: Any, b: Any, *, level: float = 0.95) -> tuple[float, float, float, float]:
    """mean(a) - mean(b), Welch's interval and two-sided p-value.

    Examples
    --------
    >>> d, lo, hi, p = welch_interval([5.0, 7.0, 6.0, 9.0], [4.0, 5.0, 3.0])
    >>> round(d, 4), round(lo, 3), round(hi, 3), round(p, 4)
    (2.75, 0.075, 5.425, 0.0459)
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        raise DataValidationError(
            "Welch's interval needs at least 2 observations in each group",
            fix="collect more observations before measuring the lift",
        )
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff = float(x.mean() - y.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff, (1.0 if diff == 0 else 0.0)
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    t = float(stats.t.ppf(0.5 + level / 2, df))
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return diff, diff - t * se, diff + t * se, p


def _two_proportion_p(x1: float, n1: float, x2: float, n2: float) -> float:
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    return float(2 * stats.norm.sf(abs(x1 / n1 - x2 / n2) / se))


def adjust_p_values(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Holm's step-down or Benjamini-Hochberg adjusted p-values (``none``: as given).

    Examples
    --------
    >>> adjust_p_values([0.01, 0.04, 0.03], "holm")
    [0.03, 0.06, 0.06]
    >>> [round(p, 4) for p in adjust_p_values([0.01, 0.04, 0.03], "bh")]
    [0.03, 0.04, 0.04]
    """
    one_of(method, ADJUSTMENTS, "p-value adjustment", "adjust")
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if method == "none" or m == 0:
        return [float(v) for v in p]
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate(np.minimum(ranked * (m - np.arange(m)), 1.0))
    else:
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
        adjusted = np.minimum(adjusted, 1.0)
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]


def minimum_detectable_effect(
    n_treated: float,
    n_control: float,
    *,
    sd: float,
    level: float = 0.95,
    power: float = 0.8,
) -> float:
    """The smallest true difference of means a two-sided test at ``level`` finds with
    probability ``power``: (z_(1-alpha/2) + z_power) sd sqrt(1/n_t + 1/n_c) (normal
    approximation; for a proportion p, sd = sqrt(p (1 - p))).

    Examples
    --------
    >>> round(minimum_detectable_effect(1000, 1000, sd=0.5), 4)
    0.0626
    """
    if n_treated <= 0 or n_control <= 0 or sd < 0 or not 0 < power < 1:
        raise DataValidationError(
            "group sizes must be > 0, sd >= 0 and power in (0, 1)",
            fix="e.g. minimum_detectable_effect(5000, 5000, sd=0.3, power=0.8)",
        )
    return float((_z(level) + special.ndtri(power)) * sd * math.sqrt(1 / n_treated + 1 / n_control))


def sample_size(
    effect: float,
    *,
    baseline: float | None = None,
    sd: float | None = None,
    level: float = 0.95,
    power: float = 0.8,
    treated_share: float = 0.5,
) -> dict[str, int]:
    """Subjects a test needs to find a lift of ``effect`` with probability ``power`` (two
    sided, at ``level``), before running it: for a proportion from its ``baseline``
    (p0 = baseline, p1 = baseline + effect), or for a mean with standard deviation
    ``sd``; ``treated_share`` of them treated. The normal approximation: N = (z_(1-a/2) +
    z_power)^2 (v1 / s + v0 / (1 - s)) / effect^2, v the outcome's variance per group.

    Examples
    --------
    10 % against 12 %, equal groups: 3,839 per group (as the usual calculators give).

    >>> sample_size(0.02, baseline=0.10)
    {'n_total': 7678, 'n_treated': 3839, 'n_control': 3839}
    """
    _check_test_plan(effect, baseline, sd, level=level, power=power, treated_share=treated_share)
    z = _z(level) + float(special.ndtri(power))
    if baseline is not None:
        p1 = baseline + effect
        v1, v0 = p1 * (1 - p1), baseline * (1 - baseline)
    else:
        assert sd is not None
        v1 = v0 = sd * sd
    try:
        per = z * z / (effect * effect)
        n_treated = math.ceil(per * (v1 + v0 * treated_share / (1 - treated_share)))
    except (ZeroDivisionError, OverflowError):  # effect^2 underflows, or the size overflows
        raise DataValidationError(
            f"`effect` {effect:g} is too small to detect with any number of customers",
            fix="give a larger lift (or, for a mean, check `sd`)",
            parameter="effect",
        ) from None
    n_control = math.ceil(n_treated * (1 - treated_share) / treated_share)
    return {"n_total": n_treated + n_control, "n_treated": n_treated, "n_control": n_control}


def _check_test_plan(
    effect: float, baseline: float | None, sd: float | None, **shares: float
) -> None:
    """Each input of :func:`sample_size` in range, else an error naming it."""
    if not math.isfinite(effect) or effect == 0:
        raise DataValidationError(
            f"`effect` {effect:g} is not a finite, non-zero number",
            fix="give the lift to detect, e.g. `effect=0.02` (2 points) from `baseline=0.1`",
            parameter="effect",
        )
    if (baseline is None) == (sd is None):
        raise DataValidationError(
            "give exactly one of `baseline` (a rate) or `sd` (a mean)",
            fix="e.g. `effect=0.02` with `baseline=0.1` (10%), or `effect=5` with `sd=40`",
            parameter="baseline",
        )
    if baseline is not None:
        if not 0 < baseline < 1:
            raise DataValidationError(
                f"`baseline` {baseline:g} is not a rate in (0, 1)",
                fix="give the control group's expected rate, e.g. `baseline=0.1` for 10%",
                parameter="baseline",
            )
        if not 0 < baseline + effect < 1:
            raise DataValidationError(
                f"`baseline` {baseline:g} + `effect` {effect:g} = {baseline + effect:g} is "
                "not a rate in (0, 1)",
                fix="give a lift that keeps the treated rate between 0 and 1",
                parameter="effect",
            )
    if sd is not None and not (math.isfinite(sd) and sd > 0):
        raise DataValidationError(
            f"`sd` {sd:g} is not a standard deviation > 0",
            fix="give the outcome's standard deviation per customer, e.g. `sd=40`",
            parameter="sd",
        )
    examples = {"level": 0.95, "power": 0.8, "treated_share": 0.5}
    for name, value in shares.items():
        if not 0 < value < 1:
            raise DataValidationError(
                f"`{name}` {value:g} is not in (0, 1)",
                fix=f"e.g. `{name}={examples[name]}`",
                parameter=name,
            )


def campaign_roi(
    row: dict[str, Any], *, contact_cost: float, margin: float = 1.0
) -> dict[str, float]:
    """The return on a campaign of one lift row whose outcome is revenue: (incremental
    revenue x ``margin`` - cost) / cost, the cost being ``contact_cost`` per treated
    subject, with the interval of the incremental revenue carried through.

    Examples
    --------
    >>> row = {"n_treated": 100, "incremental": 500.0, "incremental_ci": [100.0, 900.0]}
    >>> campaign_roi(row, contact_cost=2.0, margin=0.5)
    {'cost': 200.0, 'roi': 0.25, 'roi_low': -0.75, 'roi_high': 1.25}
    """
    if contact_cost <= 0 or not 0 < margin <= 1:
        raise DataValidationError(
            "the contact cost must be > 0 and the margin in (0, 1]",
            fix="e.g. `contact_cost=0.5`, `margin=0.4`",
            parameter="contact_cost",
        )
    cost = contact_cost * row["n_treated"]
    low, high = row["incremental_ci"]
    return {
        "cost": cost,
        "roi": (row["incremental"] * margin - cost) / cost,
        "roi_low": (low * margin - cost) / cost,
        "roi_high": (high * margin - cost) / cost,
    }


def lift_table(
    groups: Sequence[Any],
    outcomes: dict[str, Any],
    *,
    control: str,
    treatments: Sequence[str] | None = None,
    segments: Sequence[Any] | None = None,
    level: float = 0.95,
    adjust: str = "holm",
) -> list[dict[str, Any]]:
    """Per arm, outcome and segment (``None``: everyone): the treated and control means,
    the lift with its interval, the relative lift, the p-value and the adjusted one
    (across the segments of that arm and outcome), and whether it is under-powered.

    ``groups``: each row's group label; ``outcomes``: name -> values per row (a 0/1
    outcome gets Newcombe's interval, others Welch's); ``treatments``: the arms (default
    every label but ``control``).

    Examples
    --------
    >>> rows = lift_table(["t", "t", "c", "c", "t", "c"], {"converted": [1, 1, 0, 1, 0, 0]},
    ...                   control="c")
    >>> r = rows[0]
    >>> r["arm"], r["n_treated"], r["n_control"], round(r["lift"], 4)
    ('t', 3, 3, 0.3333)
    """
    labels = np.asarray([None if g is None else str(g) for g in groups], dtype=object)
    n = labels.size
    if control not in set(labels.tolist()):
        raise DataValidationError(
            f"no row is in the control group {control!r} (groups: "
            f"{', '.join(sorted({str(v) for v in labels.tolist()}))})",
            fix="name the control group's label",
            parameter="control",
        )
    arms = list(treatments) if treatments else sorted({str(v) for v in labels} - {control})
    seg = (
        np.full(n, None, dtype=object)
        if segments is None
        else np.asarray([None if s is None else str(s) for s in segments], dtype=object)
    )
    segment_values: list[Any] = [None] if segments is None else [None, *sorted(set(seg) - {None})]
    rows: list[dict[str, Any]] = []
    for name, raw in outcomes.items():
        values = np.asarray(raw, dtype=np.float64)
        if values.size != n or not np.all(np.isfinite(values)):
            raise DataValidationError(
                f"outcome {name!r} must have one finite number per row",
                fix="fill in or drop the rows without an outcome first",
                parameter=name,
            )
        binary = bool(np.all((values == 0) | (values == 1)))
        for arm in arms:
            family: list[dict[str, Any]] = []
            for segment in segment_values:
                inside = np.ones(n, dtype=bool) if segment is None else seg == segment
                t = values[inside & (labels == arm)]
                c = values[inside & (labels == control)]
                if t.size == 0 or c.size == 0:
                    continue
                family.append(_lift_row(arm, name, segment, t, c, binary, level))
            # Adjusted across the segments; the row of everyone is its own family.
            per_segment = [r for r in family if r["segment"] is not None]
            adjusted = adjust_p_values([r["p_value"] for r in per_segment], adjust)
            for r in family:
                r["p_adjusted"] = r["p_value"]
            for r, p in zip(per_segment, adjusted, strict=True):
                r["p_adjusted"] = p
            rows += family
    return rows


def _lift_row(
    arm: str, outcome: str, segment: Any, t: Any, c: Any, binary: bool, level: float
) -> dict[str, Any]:
    mean_t, mean_c = float(t.mean()), float(c.mean())
    if binary:
        diff, low, high = newcombe_interval(
            float(t.sum()), t.size, float(c.sum()), c.size, level=level
        )
        p = _two_proportion_p(t.sum(), t.size, c.sum(), c.size)
        pooled = (t.sum() + c.sum()) / (t.size + c.size)
        sd = math.sqrt(pooled * (1 - pooled))
    elif t.size >= 2 and c.size >= 2:
        diff, low, high, p = welch_interval(t, c, level=level)
        sd = math.sqrt((t.var(ddof=1) + c.var(ddof=1)) / 2)
    else:
        diff, low, high, p, sd = mean_t - mean_c, math.nan, math.nan, math.nan, math.nan
    mde = (
        minimum_detectable_effect(t.size, c.size, sd=sd, level=level)
        if math.isfinite(sd)
        else math.nan
    )
    return {
        "arm": arm,
        "outcome": outcome,
        "segment": segment,
        "n_treated": int(t.size),
        "n_control": int(c.size),
        "treated_mean": mean_t,
        "control_mean": mean_c,
        "lift": float(diff),
        "ci_low": float(low),
        "ci_high": float(high),
        "rel_lift": float(diff / mean_c) if mean_c != 0 else None,
        "p_value": float(p),
        "minimum_detectable_effect": mde,
        # Not found, and the test could not have found an effect of the size seen.
        "under_powered": bool(math.isfinite(mde) and low <= 0 <= high and abs(diff) < mde),
        # What the campaign added among the treated (conversions, or revenue): the lift
        # per treated subject times their number, with the interval scaled alike.
        "binary": binary,
        "incremental": float(diff * t.size),
        "incremental_ci": [float(low * t.size), float(high * t.size)],
    }
