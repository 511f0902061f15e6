"""Channel effectiveness per segment, and the channel roles it recommends.

From the journeys of :func:`segvalue.measurement.attribution.journeys_from_touches` and
the touchpoint rows, per customer and channel (:func:`customer_channels`):

- *reached*: the customer has a touch on the channel (a conversion row is not a touch);
- *converted*: one of the customer's converting journeys holds a touch on the channel;
- *cost*: the summed ``cost`` of the customer's rows on the channel;
- *conversions* and *value*: the customer's conversions and conversion value credited to
  the channel, journey by journey, by a model that credits one journey at a time
  (:data:`~segvalue.measurement.attribution.CREDIT_MODELS`; linear by default).

Per segment and channel (:func:`channel_effectiveness`), over the customers the channel
reached (``n``):

=====================  ============================================  =====================
measure                definition                                    interval
=====================  ============================================  =====================
conversion_rate        converted / reached                           Wilson
cost_per_conversion    summed cost / credited conversions            delta (ratio), over
                                                                     customers
roas                   credited value / summed cost                  delta (ratio), over
                                                                     customers
value_per_reached      credited value / reached                      t
=====================  ============================================  =====================

The customer is the unit of the intervals (a customer's touches and conversions move
together). These are observational: a channel that reaches customers who buy anyway
looks effective. Causal effects come from experiments (:mod:`segvalue.measurement.lift`).

**Roles** (:func:`channel_roles`), per segment: a channel that reached fewer than
``min_reach`` customers is ``test`` (too little data); one whose ROAS interval lies wholly
below 1 is ``reduce`` (it returns less than it costs even at its upper bound). The others
are ranked by the lower bound of their ROAS when every one of them has a cost and the
segment's conversions have value, else of their conversion rate: the first is
``primary``, the second ``secondary``, and so is any other whose interval reaches the
primary's lower bound (not distinguishable from it); the rest are ``support``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segvalue.economics.intervals import ratio_interval, t_interval, wilson_interval
from segvalue.errors import DataValidationError
from segvalue.measurement.attribution import Journeys

__all__ = [
    "ROLES",
    "CustomerChannels",
    "channel_effectiveness",
    "channel_roles",
    "customer_channels",
]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

#: The roles :func:`channel_roles` gives, best first.
ROLES = ("primary", "secondary", "support", "test", "reduce")


@dataclass(frozen=True)
class CustomerChannels:
    """Per customer (rows, ``customers``) and channel (columns, ``channels``): reached
    (0/1), converted (0/1), cost (None when the touchpoints carry none), credited
    conversions and credited value."""

    customers: tuple[Any, ...]
    channels: tuple[str, ...]
    reached: FloatArray
    converted: FloatArray
    cost: FloatArray | None
    conversions: FloatArray
    value: FloatArray


def customer_channels(
    journeys: Journeys,
    credit: FloatArray,
    customers: Sequence[Any],
    channels: Sequence[Any],
    touches: Sequence[bool] | np.ndarray[Any, np.dtype[np.bool_]],
    costs: Sequence[float] | None = None,
) -> CustomerChannels:
    """Per customer and channel: reached, converted, cost, credited conversions and value.

    Parameters
    ----------
    journeys
        The journeys of the rows (with their ``customers``).
    credit
        Each journey's credit per channel of ``journeys.channels``
        (:func:`~segvalue.measurement.attribution.journey_credit`).
    customers, channels, touches, costs
        The touchpoint rows: customer, channel, whether the row is a touch (not a
        conversion row), cost (None: no cost known).

    Examples
    --------
    >>> from segvalue.measurement.attribution import Journeys
    >>> j = Journeys(("email", "search"), ((0, 1),), ((2.0, 1.0),), np.array([1.0]),
    ...              np.array([50.0]), customers=("a",))
    >>> cc = customer_channels(j, np.array([[0.5, 0.5]]), ["a", "a", "b", "a"],
    ...                        ["email", "search", "email", "x"], [True, True, True, False],
    ...                        [1.0, 2.0, 1.0, 0.0])
    >>> cc.customers, cc.channels
    (('a', 'b'), ('email', 'search'))
    >>> cc.reached.tolist(), cc.value.tolist(), cc.cost.tolist()
    ([[1.0, 1.0], [1.0, 0.0]], [[25.0, 25.0], [0.0, 0.0]], [[1.0, 2.0], [1.0, 0.0]])
    """
    n = len(customers)
    if not (len(channels) == len(touches) == n and (costs is None or len(costs) == n)):
        raise DataValidationError(
            "customers, channels, touches and costs differ in length",
            fix="give one of each per touchpoint row",
        )
    if credit.shape != (len(journeys.touches), len(journeys.channels)):
        raise DataValidationError(
            f"the credit is {credit.shape}, not journeys x channels "
            f"({len(journeys.touches)}, {len(journeys.channels)})",
            fix="compute it with journey_credit(journeys)",
        )
    import pyarrow as pa
    import pyarrow.compute as pc

    from segvalue.measurement.attribution import _floats, _texts

    is_touch = np.asarray(touches, dtype=bool)
    named = _texts(channels)
    # The journeys' channels first, then any other channel touched, as met.
    extra = pc.unique(named.filter(pa.array(is_touch))).to_pylist()
    names = list(journeys.channels) + sorted(
        {str(c) for c in extra if c is not None} - set(journeys.channels),
        key=extra.index,
    )
    column = np.asarray(
        pc.fill_null(pc.index_in(named, value_set=pa.array(names, pa.string())), -1).to_numpy(
            zero_copy_only=False
        ),
        dtype=np.int64,
    )
    who = pa.concat_arrays([_texts(customers), _texts(list(journeys.customers))])
    encoded = pc.dictionary_encode(who)
    person = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    row, journey_person = person[:n], person[n:]
    shape = (len(encoded.dictionary), len(names))
    reached = np.zeros(shape)
    on = is_touch & (column >= 0)
    reached[row[on], column[on]] = 1.0
    cost = None
    if costs is not None:
        amounts = _floats(costs)
        bad = np.flatnonzero(~np.isfinite(amounts))
        if bad.size:
            raise DataValidationError(
                f"the cost of touchpoint row {int(bad[0]) + 1} is {float(amounts[bad[0]])!r}",
                fix="give costs as finite numbers",
            )
        cost = np.zeros(shape)
        priced = column >= 0
        np.add.at(cost, (row[priced], column[priced]), amounts[priced])
    converted = np.zeros(shape)
    conversions = np.zeros(shape)
    value = np.zeros(shape)
    width = len(journeys.channels)
    won = np.flatnonzero(journeys.converted > 0)
    if won.size:
        lengths = np.array([len(journeys.touches[j]) for j in won])
        flat = np.fromiter(
            (c for j in won for c in journeys.touches[j]), dtype=np.int64, count=lengths.sum()
        )
        converted[np.repeat(journey_person[won], lengths), flat] = 1.0
        shares = credit[won]
        owner = journey_person[won]
        np.add.at(conversions[:, :width], owner, journeys.converted[won, None] * shares)
        np.add.at(value[:, :width], owner, journeys.value[won, None] * shares)
    return CustomerChannels(
        tuple(encoded.dictionary.to_pylist()),
        tuple(names),
        reached,
        converted,
        cost,
        conversions,
        value,
    )


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def channel_effectiveness(
    data: CustomerChannels,
    segments: Sequence[Any],
    *,
    level: float = 0.95,
    min_reach: int = 30,
    everyone: str | None = "all customers",
) -> list[dict[str, Any]]:
    """Per segment and channel: reach, conversion rate, cost per conversion, ROAS and
    value per reached customer, each rate with its ``level`` interval, and the channel's
    role in the segment (:func:`channel_roles`).

    Parameters
    ----------
    data
        From :func:`customer_channels`.
    segments
        Each of ``data.customers``' segment (None: in no segment).
    everyone
        The label of the rows over every customer (None: no such rows).

    Returns
    -------
    list of dict
        One record per segment and channel reached in it, best role first: ``segment,
        channel, reached, converted, conversion_rate, conversion_rate_lower,
        conversion_rate_upper, conversions, value, cost, cost_per_conversion (+ _lower,
        _upper), roas (+ _lower, _upper), value_per_reached (+ _lower, _upper), role,
        rank, reason``; None where a measure is undefined (no cost, no conversion).

    Examples
    --------
    >>> from segvalue.measurement.attribution import Journeys
    >>> rng = np.random.default_rng(0)
    >>> n = 400
    >>> reached = np.ones((n, 2))
    >>> converted = np.c_[rng.random(n) < 0.3, rng.random(n) < 0.1].astype(float)
    >>> value = converted * 40.0
    >>> cc = CustomerChannels(tuple(range(n)), ("email", "search"), reached, converted,
    ...                       np.full((n, 2), 2.0), converted, value)
    >>> rows = channel_effectiveness(cc, ["s"] * n, everyone=None)
    >>> [(r["channel"], r["role"], round(r["conversion_rate"], 3)) for r in rows]
    [('email', 'primary', 0.263), ('search', 'secondary', 0.07)]
    >>> rows[0]["reason"]
    'highest ROAS at its lower bound: 5.25 (4.38 to 6.12)'
    """
    if len(segments) != len(data.customers):
        raise DataValidationError(
            f"{len(segments)} segments for {len(data.customers)} customers",
            fix="give one segment (or None) per customer",
        )
    labels = np.array(["" if s is None else str(s) for s in segments], dtype=object)
    known = np.array([s is not None for s in segments])
    groups: list[tuple[str, Any]] = []
    if everyone is not None:
        groups.append((everyone, np.ones(len(segments), dtype=bool)))
    groups.extend((name, known & (labels == name)) for name in sorted(set(labels[known])))
    out: list[dict[str, Any]] = []
    for name, mask in groups:
        out.extend(channel_roles(_segment_rows(data, name, mask, level), min_reach=min_reach))
    return out


def _segment_rows(
    data: CustomerChannels, segment: str, mask: Any, level: float
) -> list[dict[str, Any]]:
    reached = data.reached[mask]
    n = reached.sum(axis=0)
    converted = data.converted[mask].sum(axis=0)
    conv = data.conversions[mask]
    value = data.value[mask]
    rate = wilson_interval(np.minimum(converted, n), n, level=level)
    per_reached = t_interval(value.sum(axis=0), (value * value).sum(axis=0), n, level=level)
    has_cost = data.cost is not None
    cost = data.cost[mask] if data.cost is not None else np.zeros_like(conv)
    with np.errstate(divide="ignore", invalid="ignore"):
        cpc = ratio_interval(
            cost.sum(axis=0),
            conv.sum(axis=0),
            (cost * cost).sum(axis=0),
            (conv * conv).sum(axis=0),
            (cost * conv).sum(axis=0),
            n,
            level=level,
        )
        roas = ratio_interval(
            value.sum(axis=0),
            cost.sum(axis=0),
            (value * value).sum(axis=0),
            (cost * cost).sum(axis=0),
            (value * cost).sum(axis=0),
            n,
            level=level,
        )
    rows: list[dict[str, Any]] = []
    for c, channel in enumerate(data.channels):
        if n[c] == 0:
            continue
        spent = float(cost[:, c].sum())
        priced = has_cost and spent > 0
        row: dict[str, Any] = {
            "segment": segment,
            "channel": channel,
            "reached": int(n[c]),
            "converted": int(converted[c]),
            "conversion_rate": _num(rate.estimate[c]),
            "conversion_rate_lower": _num(rate.lower[c]),
            "conversion_rate_upper": _num(rate.upper[c]),
            "conversions": float(conv[:, c].sum()),
            "value": float(value[:, c].sum()),
            "cost": spent if has_cost else None,
        }
        for key, interval, defined in (
            ("cost_per_conversion", cpc, priced and conv[:, c].sum() > 0),
            ("roas", roas, priced),
            ("value_per_reached", per_reached, True),
        ):
            for suffix, values in (("", interval.estimate), ("_lower", interval.lower)):
                row[key + suffix] = _num(values[c]) if defined else None
            row[key + "_upper"] = _num(interval.upper[c]) if defined else None
        if row["roas_lower"] is not None:
            row["roas_lower"] = max(row["roas_lower"], 0.0)
        if row["cost_per_conversion_lower"] is not None:
            row["cost_per_conversion_lower"] = max(row["cost_per_conversion_lower"], 0.0)
        rows.append(row)
    return rows


def _range(row: dict[str, Any], key: str, percent: bool) -> str:
    def fmt(v: float) -> str:
        return f"{v:.1%}" if percent else f"{v:.2f}"

    return (
        f"{fmt(row[key])} ({fmt(row[key + '_lower'])} to {fmt(row[key + '_upper'])})"
        if row[key + "_lower"] is not None and row[key + "_upper"] is not None
        else fmt(row[key])
    )


def channel_roles(rows: list[dict[str, Any]], *, min_reach: int = 30) -> list[dict[str, Any]]:
    """Give the channels of one segment (rows of :func:`channel_effectiveness`) their
    roles (see the module's definitions): ``role``, ``rank`` (1 = best, among the ranked
    ones; None for test and reduce) and ``reason``, in words. Returns the rows, best
    role first.

    Examples
    --------
    >>> rows = [{"channel": "a", "reached": 500, "roas": 3.0, "roas_lower": 2.5,
    ...          "roas_upper": 3.5, "conversion_rate": 0.1, "conversion_rate_lower": 0.08,
    ...          "conversion_rate_upper": 0.12, "value": 10.0},
    ...         {"channel": "b", "reached": 500, "roas": 0.5, "roas_lower": 0.3,
    ...          "roas_upper": 0.7, "conversion_rate": 0.2, "conversion_rate_lower": 0.17,
    ...          "conversion_rate_upper": 0.23, "value": 10.0},
    ...         {"channel": "c", "reached": 10, "roas": 9.0, "roas_lower": 1.0,
    ...          "roas_upper": 20.0, "conversion_rate": 0.3, "conversion_rate_lower": 0.1,
    ...          "conversion_rate_upper": 0.6, "value": 10.0}]
    >>> [(r["channel"], r["role"]) for r in channel_roles(rows)]
    [('a', 'primary'), ('c', 'test'), ('b', 'reduce')]
    """
    if min_reach < 1:
        raise DataValidationError(
            f"min_reach {min_reach} is not >= 1", fix="e.g. 30", parameter="min_reach"
        )
    for row in rows:
        row["role"], row["rank"], row["reason"] = "support", None, ""
    judged = [r for r in rows if r["reached"] >= min_reach]
    for row in rows:
        if row["reached"] < min_reach:
            row["role"] = "test"
            row["reason"] = (
                f"reached {row['reached']:,} customers (fewer than {min_reach}): too few to judge"
            )
    for row in judged:
        if row.get("roas_upper") is not None and row["roas_upper"] < 1:
            row["role"] = "reduce"
            row["reason"] = (
                f"returns {_range(row, 'roas', False)} per unit of cost: below 1 even at its "
                "upper bound"
            )
    ranked = [r for r in judged if r["role"] != "reduce"]
    by_roas = bool(ranked) and all(
        r.get("roas_lower") is not None and r.get("value", 0) > 0 for r in ranked
    )
    key, percent, words = (
        ("roas", False, "ROAS") if by_roas else ("conversion_rate", True, "conversion rate")
    )

    def lower(row: dict[str, Any]) -> float:
        value = row.get(key + "_lower")
        return -math.inf if value is None else float(value)

    ranked.sort(key=lambda r: (-lower(r), str(r["channel"])))
    for rank, row in enumerate(ranked, start=1):
        row["rank"] = rank
        if rank == 1:
            row["role"] = "primary"
            row["reason"] = f"highest {words} at its lower bound: {_range(row, key, percent)}"
            continue
        top = lower(ranked[0])
        upper = row.get(key + "_upper")
        overlaps = upper is not None and upper >= top
        if rank == 2 or overlaps:
            row["role"] = "secondary"
            row["reason"] = f"{words} {_range(row, key, percent)}" + (
                ": not distinguishable from the primary channel's" if overlaps else ": second best"
            )
        else:
            row["reason"] = (
                f"{words} {_range(row, key, percent)}: below the primary channel's lower bound"
            )
    order = {role: i for i, role in enumerate(ROLES)}
    rows.sort(key=lambda r: (order[r["role"]], r["rank"] or 0, str(r["channel"])))
    return rows
