"""Each scheme's assigner as plain data, and the pure function that applies it to one customer.

A run assigns segments in the engine, over every customer at once. To place *one*
customer later without a re-run, each scheme saves what its batch assignment learned
(:func:`scheme_state`, JSON-ready) and :func:`assign` applies it to one customer's row
of features and attributes, with the batch's own rules:

* **rules** (demographic, geographic, psychographic, behavioural, benefit): the
  scheme's condition tree and mode, evaluated with :mod:`segvalue.segments.rules`'
  missing-value rule (a comparison on a missing value is false; NaN is missing).
* **lifecycle**: the thresholds the run used (given or derived) and its as-of date; the
  row carries the customer's purchase days under :data:`PURCHASE_DAYS`.
* **RFM**: per measure the ``bins - 1`` boundary customers of the run's ``NTILE`` bins,
  as ``[value, customer_id]`` (``ties: split``) or ``[value]`` (``ties: shared``), so
  a customer of the run gets the score the run gave it (see :func:`rfm_boundaries`);
  ``cuts`` as configured; then the named segments.
* **clusters**: the fitted :class:`~segvalue.segments.clusters.ClusterModel` as its
  ``to_dict`` (medians, transforms, centre and scale, centroids, radii), applied with
  the engine's arithmetic (``ln(x + 1)``, squared distances summed feature by feature,
  the first nearest centroid on ties).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from segvalue.config import (
    AllOf,
    AnyOf,
    ClusterConfig,
    Condition,
    ConditionExpr,
    LifecycleConfig,
    NotOf,
    RFMConfig,
    RuleSchemeConfig,
    SchemeConfig,
)
from segvalue.errors import ConfigError, DataValidationError
from segvalue.segments.rfm import (
    FREQUENCY_COLUMN,
    MONETARY_MEASURE,
    RECENCY_COLUMN,
    default_rfm_segments,
)

__all__ = ["AS_OF", "PURCHASE_DAYS", "assign", "rfm_boundaries", "scheme_state"]

#: Row key of the customer's distinct purchase days (``datetime.date``, any order): what
#: a lifecycle stage is computed from. Columns starting with ``_`` are never attributes.
PURCHASE_DAYS = "_purchase_days"

#: Row key of the day a customer is assigned as of (``datetime.date``), when it is not the
#: run's as-of date: a customer re-scored in real time after a later event.
AS_OF = "_as_of"

#: Two monetary values this close (relative) are the same value: a sum of the same
#: amounts added in another order may differ from the run's in the last bits.
_SAME_VALUE = 1e-12

_MEASURES = {"r": RECENCY_COLUMN, "f": FREQUENCY_COLUMN, "m": MONETARY_MEASURE}
_CUT_NAMES = {"r": "recency", "f": "frequency", "m": "monetary"}


# --------------------------------------------------------------------------- state


def ntile_ends(n: int, bins: int) -> list[int]:
    """Last 1-based position of each of the first ``bins - 1`` bins of SQL ``NTILE(bins)``.

    The first ``n mod bins`` bins hold ``n div bins + 1`` rows, the others ``n div bins``
    (as :func:`segvalue.segments.rfm.rfm_scores`); with ``n < bins`` the bins past ``n``
    are empty and end at ``n``.

    Examples
    --------
    >>> ntile_ends(7, 3), ntile_ends(2, 5)
    ([3, 5], [1, 2, 2, 2])
    """
    small, extra = divmod(n, bins)
    return [
        b * (small + 1) if b <= extra else extra * (small + 1) + (b - extra) * small
        for b in range(1, bins)
    ]


def rfm_boundaries(features: pa.Table, config: RFMConfig) -> dict[str, Any]:
    """The boundary customers of a quantile RFM scheme's bins, from the run's features.

    Mirrors :func:`segvalue.segments.rfm.rfm_scores`: buyers (``orders > 0`` with a
    recency and a monetary value) are ordered worst first (recency: most days first), ties
    by ``customer_id`` (``ties: split``) or not at all (``shared``), and cut as
    ``NTILE(bins)``. For bin ``b < bins`` the row at its last position is kept:
    ``[value, customer_id]`` (split) or ``[value]`` (shared). A customer's score is then
    ``1 +`` the number of boundaries strictly worse than it (see :func:`assign`).

    Parameters
    ----------
    features
        The run's customer feature table (``customer_id``, ``days_since_last_order``,
        ``orders``, ``revenue``).
    config
        The RFM scheme.

    Returns
    -------
    dict
        ``{"buyers": n, "r": [...], "f": [...], "m": [...]}``.

    Examples
    --------
    >>> t = pa.table({"customer_id": ["a", "b", "c"], "days_since_last_order": [3, 40, 40],
    ...               "orders": [4, 1, 2], "revenue": [90.0, 10.0, 30.0]})
    >>> rfm_boundaries(t, RFMConfig(type="rfm", bins=2, ties="split"))["r"]  # b, c: R = 1
    [[40, 'c']]
    """
    ids = features.column("customer_id")
    recency = features.column(RECENCY_COLUMN).cast(pa.int64())
    orders = features.column(FREQUENCY_COLUMN).cast(pa.int64())
    monetary = features.column(MONETARY_MEASURE).cast(pa.float64())
    scored = pc.and_(
        pc.and_(pc.greater(orders, 0), recency.is_valid()), monetary.is_valid()
    ).fill_null(False)
    table = pa.table({"customer_id": ids, "r": recency, "f": orders, "m": monetary}).filter(scored)
    n = table.num_rows
    ends = ntile_ends(n, config.bins)
    out: dict[str, Any] = {"buyers": n}
    for short in _MEASURES:
        order = "descending" if short == "r" else "ascending"
        keys = [(short, order)]
        if config.ties == "split":
            keys.append(("customer_id", "ascending"))
        ranked = table.take(pc.sort_indices(table, sort_keys=keys))
        values = ranked.column(short).to_pylist()
        names = ranked.column("customer_id").to_pylist()
        out[short] = [
            [values[end - 1], names[end - 1]] if config.ties == "split" else [values[end - 1]]
            for end in ends
            if end >= 1
        ]
    return out


def scheme_state(
    scheme: SchemeConfig,
    details: Mapping[str, Any],
    *,
    features: pa.Table | None = None,
    as_of: dt.date | None = None,
) -> dict[str, Any]:
    """What a run learned for one scheme, as JSON-ready data for :func:`assign`.

    Parameters
    ----------
    scheme
        The scheme's configuration.
    details
        The run's details of the scheme (``Segmentation.details[name]``): the lifecycle
        thresholds used, the cluster model.
    features
        The run's customer feature table (RFM with ``method: quantile`` needs it).
    as_of
        The run's as-of date (lifecycle needs it).

    Returns
    -------
    dict
        ``type`` (``rules``, ``lifecycle``, ``rfm`` or ``clusters``), ``name`` and what
        :func:`assign` needs.

    Raises
    ------
    DataValidationError
        When what the scheme needs was not given (features, as-of date, the details).

    Examples
    --------
    >>> s = LifecycleConfig(type="lifecycle")
    >>> d = {"thresholds": {"new_days": 60.0, "active_days": 30.0, "lapsed_days": 90.0}}
    >>> scheme_state(s, d, as_of=dt.date(2024, 6, 30))["active_days"]
    30.0
    """
    if isinstance(scheme, RuleSchemeConfig):
        return {
            "type": "rules",
            "name": scheme.name,
            "scheme": scheme.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
    if isinstance(scheme, LifecycleConfig):
        thresholds = details.get("thresholds")
        if thresholds is None or as_of is None:
            raise DataValidationError(
                f"lifecycle scheme {scheme.name!r}: the run's thresholds and as-of date are "
                "needed to score a customer",
                fix="pass the scheme's details and the run's as_of",
            )
        return {
            "type": "lifecycle",
            "name": scheme.name,
            "as_of": as_of.isoformat(),
            **{k: float(thresholds[k]) for k in ("new_days", "active_days", "lapsed_days")},
        }
    if isinstance(scheme, RFMConfig):
        rules = (
            scheme.segments if scheme.segments is not None else default_rfm_segments(scheme.bins)
        )
        state: dict[str, Any] = {
            "type": "rfm",
            "name": scheme.name,
            "bins": scheme.bins,
            "method": scheme.method,
            "ties": scheme.ties,
            "cuts": None if scheme.cuts is None else {k: list(v) for k, v in scheme.cuts.items()},
            "segments": [r.model_dump(mode="json", exclude_none=True) for r in rules],
            "unassigned": scheme.unassigned,
        }
        if scheme.method == "quantile":
            if features is None:
                raise DataValidationError(
                    f"RFM scheme {scheme.name!r}: the run's feature table is needed for the "
                    "quantile boundaries",
                    fix="pass features=",
                )
            state["boundaries"] = rfm_boundaries(features, scheme)
        return state
    if isinstance(scheme, ClusterConfig):
        model = details.get("model")
        if model is None:
            raise DataValidationError(
                f"cluster scheme {scheme.name!r}: the run's fitted model is needed",
                fix="pass the scheme's details (Segmentation.details[name])",
            )
        return {"type": "clusters", "name": scheme.name, "model": dict(model)}
    raise ConfigError(f"unknown scheme type {scheme.type!r}")  # pragma: no cover


# --------------------------------------------------------------------------- assign


def assign(state: Mapping[str, Any], row: Mapping[str, Any]) -> str | list[str]:
    """The segment (a tag scheme: the list of tags) of one customer, as the run assigns it.

    Parameters
    ----------
    state
        From :func:`scheme_state`.
    row
        The customer's features and attributes by column name (missing keys are missing
        values); lifecycle reads :data:`PURCHASE_DAYS`, RFM with ``ties: split`` the
        ``customer_id``.

    Returns
    -------
    str or list of str
        The segment; for ``mode: tags`` every tag in rule order, or ``[unassigned]``.

    Examples
    --------
    >>> rules = RuleSchemeConfig.model_validate({"name": "usage", "type": "behavioural",
    ...     "rules": [{"segment": "heavy", "when": {"field": "orders", "op": ">=", "value": 10}}]})
    >>> state = scheme_state(rules, {})
    >>> assign(state, {"orders": 12}), assign(state, {"orders": None})
    ('heavy', 'unassigned')
    """
    kind = state["type"]
    if kind == "rules":
        return _assign_rules(state, row)
    if kind == "lifecycle":
        return _assign_lifecycle(state, row)
    if kind == "rfm":
        return _assign_rfm(state, row)
    if kind == "clusters":
        return _assign_cluster(state["model"], row)
    raise DataValidationError(
        f"unknown scheme state type {kind!r}", fix="build the state with scheme_state"
    )


# rules ------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _like(literal: Any, value: Any) -> Any:
    """A config literal as the row value's type (dates in the config are ISO text)."""
    if isinstance(value, dt.datetime):
        if isinstance(literal, str):
            return dt.datetime.fromisoformat(literal)
        if isinstance(literal, dt.date) and not isinstance(literal, dt.datetime):
            return dt.datetime.combine(literal, dt.time())
    elif isinstance(value, dt.date):
        if isinstance(literal, str):
            return dt.date.fromisoformat(literal)
        if isinstance(literal, dt.datetime):
            return literal.date()
    return literal


def _leaf(cond: Condition, row: Mapping[str, Any]) -> bool:
    value = row.get(cond.field)
    present = not _missing(value)
    if cond.op == "is_null":
        return not present
    if cond.op == "not_null":
        return present
    if not present:
        return False
    if cond.op == "regex":
        return re.search(str(cond.value), str(value)) is not None
    if cond.op in ("in", "not_in"):
        found = any(value == _like(v, value) for v in cond.value)
        return found if cond.op == "in" else not found
    if cond.op == "between":
        low, high = (_like(v, value) for v in cond.value)
        return bool(low <= value <= high)
    literal = _like(cond.value, value)
    compare = {
        "==": value == literal,
        "!=": value != literal,
    }
    if cond.op in compare:
        return bool(compare[cond.op])
    ordered = {"<": value < literal, "<=": value <= literal, ">": value > literal}
    return bool(ordered[cond.op]) if cond.op in ordered else bool(value >= literal)


def _holds(expr: ConditionExpr, row: Mapping[str, Any]) -> bool:
    if isinstance(expr, Condition):
        return _leaf(expr, row)
    if isinstance(expr, AllOf):
        return all(_holds(e, row) for e in expr.all_of)
    if isinstance(expr, AnyOf):
        return any(_holds(e, row) for e in expr.any_of)
    if isinstance(expr, NotOf):
        return not _holds(expr.not_of, row)
    raise TypeError(f"not a condition: {expr!r}")  # pragma: no cover


def _rule_scheme(document: Mapping[str, Any]) -> RuleSchemeConfig:
    """The scheme's rules parsed once per document (a scorer's state keeps its own)."""
    kept = _PARSED_RULES.get(id(document))
    if kept is not None and kept[0] is document:
        return kept[1]
    scheme = RuleSchemeConfig.model_validate(document)
    if len(_PARSED_RULES) >= 256:
        _PARSED_RULES.clear()
    # The document is kept with its parse, so its id is not reused meanwhile.
    _PARSED_RULES[id(document)] = (document, scheme)
    return scheme


_PARSED_RULES: dict[int, tuple[Mapping[str, Any], RuleSchemeConfig]] = {}


def _assign_rules(state: Mapping[str, Any], row: Mapping[str, Any]) -> str | list[str]:
    scheme = _rule_scheme(state["scheme"])
    matched = [rule.segment for rule in scheme.rules if _holds(rule.when, row)]
    if scheme.mode == "first_match":
        return matched[0] if matched else scheme.unassigned
    return matched or [scheme.unassigned]


# lifecycle ----------------------------------------------------------------------------


def _epoch_days(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


def _assign_lifecycle(state: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    days = sorted({_epoch_days(d) for d in row.get(PURCHASE_DAYS) or ()})
    if not days:
        return "prospect"
    as_of = row.get(AS_OF)
    end = _epoch_days(as_of if as_of is not None else dt.date.fromisoformat(state["as_of"]))
    new, active, lapsed = state["new_days"], state["active_days"], state["lapsed_days"]
    since_first, since_last = end - days[0], end - days[-1]
    if len(days) == 1:
        return "new" if since_first <= new else "one_time"
    if since_last > lapsed:
        return "lapsed"
    if since_last > active:
        return "at_risk"
    recent = [b - a for a, b in itertools.pairwise(days) if end - b <= active]
    recent_gap = max(recent) if recent else None
    if recent_gap is not None and recent_gap > lapsed:
        return "reactivated"
    if recent_gap is not None and recent_gap > active:
        return "returning"
    return "active"


# RFM -------------------------------------------------------------------------------------


def _compare_values(a: Any, b: Any) -> int:
    """-1, 0, 1; floats within :data:`_SAME_VALUE` (relative) of each other are equal."""
    close = abs(a - b) <= _SAME_VALUE * max(abs(a), abs(b))
    if (isinstance(a, float) or isinstance(b, float)) and close:
        return 0
    return -1 if a < b else (1 if a > b else 0)


def _worse(boundary: Sequence[Any], value: Any, customer_id: Any, higher_is_better: bool) -> bool:
    """Whether a boundary row comes strictly before the customer in worst-first order."""
    order = _compare_values(boundary[0], value)
    if not higher_is_better:
        order = -order
    if order != 0 or len(boundary) == 1:
        return order < 0
    if customer_id is None:  # a customer without an id is the last of its tie group
        return True
    return bool(boundary[1] < customer_id)


def _rfm_score(state: Mapping[str, Any], short: str, value: Any, customer_id: Any) -> int:
    bins = int(state["bins"])
    higher_is_better = short != "r"
    if state["method"] == "cuts":
        cuts = state["cuts"][_CUT_NAMES[short]]
        scores = list(range(1, bins + 1)) if higher_is_better else list(range(bins, 0, -1))
        for cut, score in zip(cuts, scores, strict=False):
            if value <= cut:
                return score
        return scores[-1]
    boundaries = state["boundaries"][short]
    return 1 + sum(_worse(b, value, customer_id, higher_is_better) for b in boundaries)


def _assign_rfm(state: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    measured: list[Any] = [row.get(c) for c in _MEASURES.values()]
    recency, orders, monetary = measured
    if _missing(recency) or _missing(orders) or _missing(monetary) or not int(orders) > 0:
        return str(state["unassigned"])
    values = {"r": int(recency), "f": int(orders), "m": float(monetary)}
    customer_id = row.get("customer_id")
    scores = {s: _rfm_score(state, s, v, customer_id) for s, v in values.items()}
    scores["fm"] = (scores["f"] + scores["m"] + 1) // 2
    for rule in state["segments"]:
        spans = [rule.get(name) for name in ("r", "f", "m", "fm")]
        if all(
            span is None or span[0] <= scores[name] <= span[1]
            for name, span in zip(("r", "f", "m", "fm"), spans, strict=True)
        ):
            return str(rule["segment"])
    return str(state["unassigned"])


# clusters --------------------------------------------------------------------------------


def _assign_cluster(model: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    z = []
    for j, name in enumerate(model["features"]):
        value: Any = row.get(name)
        if isinstance(value, bool):
            x = 1.0 if value else 0.0
        elif _missing(value):
            x = float(model["medians"][name])
        else:
            x = float(value)
        if model["transforms"][name] == "log1p":
            x = math.log(x + 1.0)  # the engine's ln(x + 1), not log1p
        z.append((x - model["center"][j]) / model["scale"][j])
    distances = []
    for centroid in model["centroids"]:
        total = 0.0
        for j, value in enumerate(z):
            diff = value - float(centroid[j])
            total = diff * diff if j == 0 else total + diff * diff
        distances.append(total)
    nearest = min(distances)
    index = distances.index(nearest)
    radii = model.get("radii")
    if radii is not None and not distances[index] <= float(radii[index]) ** 2:
        return str(model["unassigned"])
    return str(model["segments"][index])
