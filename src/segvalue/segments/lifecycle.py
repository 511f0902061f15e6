"""Lifecycle (customer-journey) stages from the order history, computed in the engine.

Purchases are orders with ``amount >= 0`` merged per customer and calendar day (two orders
on one day are one purchase), as in :mod:`segvalue.features.rfm`. A *gap* is the number of
days between two consecutive purchase days of one customer. With ``d_last`` / ``d_first``
the days from the last / first purchase to ``as_of`` and *n* the number of purchase days,
every customer gets exactly one stage, tested in this order:

============  ===========================================================================
stage         rule
============  ===========================================================================
prospect      no purchase at all (only in the customers table, or only returns)
new           n = 1 and d_first <= new_days
one_time      n = 1 and d_first > new_days
lapsed        n >= 2 and d_last > lapsed_days
at_risk       n >= 2 and active_days < d_last <= lapsed_days
reactivated   n >= 2, d_last <= active_days, and a purchase within the last active_days
              days came after a gap longer than lapsed_days (the customer had lapsed)
returning     as reactivated, but the longest such gap is in (active_days, lapsed_days]
              (the customer came back from being at risk)
active        n >= 2, d_last <= active_days, and every purchase in the last active_days
              days came after a gap of at most active_days (a regular rhythm)
============  ===========================================================================

Default thresholds come from the pooled distribution of gaps (every gap of every repeat
customer counts once; see :func:`lifecycle_thresholds`):

* ``active_days`` = the 75th percentile of the gaps: three repeat purchases in four come
  within this many days of the previous one, so a customer inside it is on their rhythm;
* ``lapsed_days`` = the 95th percentile of the gaps: a customer silent for longer has
  waited more than 19 in 20 observed repeat purchases did (if this is not above
  ``active_days``, twice ``active_days`` is used);
* ``new_days`` = the 75th percentile of the *first* gaps (first to second purchase),
  which are usually longer than later ones: a one-purchase customer inside it may still
  become a repeat customer.

Percentiles interpolate linearly (``numpy.quantile``'s default, ``percentile_cont`` in
SQL). Values set in the config replace the derived ones. Without any repeat purchase the
fixed fallbacks 90 / 90 / 365 days (new / active / lapsed) are used, and said so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import ibis
import ibis.expr.types as ir

from segvalue.config import LifecycleConfig
from segvalue.errors import DataValidationError

__all__ = [
    "ACTIVE_QUANTILE",
    "LAPSED_QUANTILE",
    "LIFECYCLE_STAGES",
    "NEW_QUANTILE",
    "LifecycleResult",
    "LifecycleThresholds",
    "assign_lifecycle",
    "lifecycle_thresholds",
    "purchase_gaps",
]

#: Every stage, in the order the rules are tested (see the module docstring).
LIFECYCLE_STAGES: tuple[str, ...] = (
    "prospect",
    "new",
    "one_time",
    "lapsed",
    "at_risk",
    "reactivated",
    "returning",
    "active",
)
#: Quantile of all gaps that sets ``active_days``.
ACTIVE_QUANTILE = 0.75
#: Quantile of all gaps that sets ``lapsed_days``.
LAPSED_QUANTILE = 0.95
#: Quantile of first-to-second-purchase gaps that sets ``new_days``.
NEW_QUANTILE = 0.75
#: Used when the data hold no repeat purchase to derive thresholds from.
_FALLBACK_DAYS: dict[str, float] = {"new_days": 90.0, "active_days": 90.0, "lapsed_days": 365.0}


@dataclass(frozen=True)
class LifecycleThresholds:
    """The day thresholds a lifecycle assignment used, and where each came from.

    Attributes
    ----------
    new_days, active_days, lapsed_days
        Thresholds in days.
    sources
        For each threshold: ``"config"``, or how it was derived
        (``"75th percentile of 1,204 gaps"``).
    gaps, first_gaps
        How many gaps (all / first-to-second purchase) the data hold.
    """

    new_days: float
    active_days: float
    lapsed_days: float
    sources: dict[str, str] = field(default_factory=dict)
    gaps: int = 0
    first_gaps: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports and JSON.

        Examples
        --------
        >>> LifecycleThresholds(30.0, 40.0, 90.0).to_dict()["active_days"]
        40.0
        """
        return {
            "new_days": self.new_days,
            "active_days": self.active_days,
            "lapsed_days": self.lapsed_days,
            "sources": dict(self.sources),
            "gaps": self.gaps,
            "first_gaps": self.first_gaps,
        }


class LifecycleResult(NamedTuple):
    """Lifecycle memberships (``customer_id``, ``segment``) and the thresholds used."""

    memberships: ir.Table
    thresholds: LifecycleThresholds


def _check_orders(orders: ir.Table) -> None:
    missing = [c for c in ("customer_id", "order_ts", "amount") if c not in orders.columns]
    if missing:
        raise DataValidationError(
            f"orders for lifecycle stages lack column(s) {missing}",
            fix="pass the clean orders table (customer_id, order_ts, amount)",
        )


def purchase_gaps(orders: ir.Table) -> ir.Table:
    """Purchase days per customer with the gap in days since the previous one.

    Parameters
    ----------
    orders
        Clean orders (``customer_id``, ``order_ts``, ``amount``).

    Returns
    -------
    ibis.expr.types.Table
        ``customer_id``, ``day`` (epoch days), ``purchase`` (0 for the first purchase day,
        1 for the second, ...), ``gap`` (days since the previous purchase day; null on
        the first).

    Examples
    --------
    >>> import ibis, datetime as dt
    >>> o = ibis.memtable({"customer_id": ["a", "a", "a"], "amount": [5.0, 7.0, 1.0],
    ...     "order_ts": [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 11),
    ...                  dt.datetime(2024, 1, 11, 20)]})
    >>> purchase_gaps(o).order_by("day").gap.to_list()
    [None, 10]
    """
    _check_orders(orders)
    purchases = orders.filter(orders.amount >= 0)
    ts = purchases.order_ts
    day = (ts if ts.type().is_date() else ts.date()).epoch_days().cast("int64")
    days = purchases.select(customer_id=purchases.customer_id, day=day).distinct()
    window = ibis.window(group_by="customer_id", order_by="day")
    return days.mutate(
        purchase=ibis.row_number().over(window).cast("int64"),
        gap=(days.day - days.day.lag().over(window)).cast("int64"),
    )


def _one_row(expr: ir.Table) -> dict[str, Any]:
    rows: list[dict[str, Any]] = expr.to_pyarrow().to_pylist()
    return rows[0]


def _ordinal(q: float) -> str:
    return f"{round(q * 100)}th percentile"


def lifecycle_thresholds(
    orders: ir.Table, config: LifecycleConfig | None = None, *, gaps: ir.Table | None = None
) -> LifecycleThresholds:
    """Day thresholds for lifecycle stages: the config's, else derived from the gaps.

    Parameters
    ----------
    orders
        Clean orders (``customer_id``, ``order_ts``, ``amount``).
    config
        Explicit ``new_days`` / ``active_days`` / ``lapsed_days`` win over derived ones.
    gaps
        :func:`purchase_gaps` of ``orders`` when already computed (e.g. stored in the
        engine), so that it is not computed again.

    Returns
    -------
    LifecycleThresholds
        ``active_days`` = 75th percentile of all gaps, ``lapsed_days`` = 95th percentile
        (at least twice ``active_days`` if not above it), ``new_days`` = 75th percentile of
        first gaps; the percentiles are computed in the engine (exact, linear
        interpolation).

    Examples
    --------
    >>> import ibis, datetime as dt
    >>> day = lambda d: dt.datetime(2024, 1, 1) + dt.timedelta(days=d)
    >>> o = ibis.memtable({"customer_id": ["a"] * 5, "amount": [1.0] * 5,
    ...     "order_ts": [day(0), day(10), day(20), day(30), day(70)]})
    >>> t = lifecycle_thresholds(o)
    >>> round(t.active_days, 9), round(t.lapsed_days, 9), round(t.new_days, 9)
    (17.5, 35.5, 10.0)
    >>> t.sources["lapsed_days"]
    '95th percentile of 4 gaps'
    """
    gaps = purchase_gaps(orders) if gaps is None else gaps
    gaps = gaps.filter(gaps.gap.notnull())
    first = (gaps.purchase == 1).ifelse(gaps.gap, ibis.null("int64"))
    stats = _one_row(
        gaps.agg(
            n=gaps.count(),
            n_first=first.count(),
            active=gaps.gap.quantile(ACTIVE_QUANTILE),
            lapsed=gaps.gap.quantile(LAPSED_QUANTILE),
            new=first.quantile(NEW_QUANTILE),
        )
    )
    return _resolve(stats, config)


def _resolve(stats: dict[str, Any], config: LifecycleConfig | None) -> LifecycleThresholds:
    n, n_first = int(stats["n"] or 0), int(stats["n_first"] or 0)
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    derived = {
        "active_days": (stats["active"], ACTIVE_QUANTILE, n, "gaps"),
        "new_days": (stats["new"], NEW_QUANTILE, n_first, "first-to-second-purchase gaps"),
        "lapsed_days": (stats["lapsed"], LAPSED_QUANTILE, n, "gaps"),
    }
    for name, (value, q, count, what) in derived.items():
        given = getattr(config, name) if config is not None else None
        if given is not None:
            values[name], sources[name] = float(given), "config"
        elif value is None or count == 0:
            values[name] = _FALLBACK_DAYS[name]
            sources[name] = "fallback: no repeat purchases in the data"
        else:
            values[name] = float(value)
            sources[name] = f"{_ordinal(q)} of {count:,} {what}"
    active, lapsed = values["active_days"], values["lapsed_days"]
    if lapsed <= active:
        # Derived values can tie (all gaps alike); keep at_risk a real band.
        if sources["lapsed_days"] != "config":
            values["lapsed_days"] = 2.0 * active
            sources["lapsed_days"] += f", raised to twice active_days ({2.0 * active:g})"
        else:
            values["active_days"] = lapsed / 2.0
            sources["active_days"] += f", lowered to half of lapsed_days ({lapsed / 2.0:g})"
    return LifecycleThresholds(
        new_days=values["new_days"],
        active_days=values["active_days"],
        lapsed_days=values["lapsed_days"],
        sources=sources,
        gaps=n,
        first_gaps=n_first,
    )


def assign_lifecycle(
    orders: ir.Table,
    *,
    as_of: dt.date,
    config: LifecycleConfig | None = None,
    customers: ir.Table | None = None,
    thresholds: LifecycleThresholds | None = None,
    gaps: ir.Table | None = None,
) -> LifecycleResult:
    """Each customer's lifecycle stage, computed in the engine.

    Parameters
    ----------
    orders
        Clean orders (``customer_id``, ``order_ts``, ``amount``), none after ``as_of``.
    as_of
        Observation end: days since a purchase are counted to this date.
    config
        The scheme's explicit thresholds (any left out are derived).
    customers
        Any table with ``customer_id`` (the customers table or the feature table):
        its customers without a purchase are ``prospect``.
    thresholds
        Use these instead of deriving them (e.g. to keep stages comparable across runs).
    gaps
        :func:`purchase_gaps` of ``orders`` when already computed.

    Returns
    -------
    LifecycleResult
        ``memberships``: ``customer_id``, ``segment`` (one of :data:`LIFECYCLE_STAGES`),
        exactly one row per customer; ``thresholds``: the thresholds used.

    Examples
    --------
    >>> import ibis, datetime as dt
    >>> from segvalue.config import LifecycleConfig
    >>> day = lambda d: dt.datetime(2024, 1, 1) + dt.timedelta(days=d)
    >>> o = ibis.memtable({"customer_id": ["a", "a", "b", "c", "c"],
    ...     "amount": [9.0, 5.0, 3.0, 4.0, 8.0],
    ...     "order_ts": [day(0), day(95), day(90), day(0), day(20)]})
    >>> cfg = LifecycleConfig(type="lifecycle", new_days=30, active_days=30, lapsed_days=60)
    >>> result = assign_lifecycle(o, as_of=dt.date(2024, 4, 10), config=cfg)
    >>> rows = result.memberships.order_by("customer_id").to_pyarrow().to_pylist()
    >>> [(r["customer_id"], r["segment"]) for r in rows]
    [('a', 'reactivated'), ('b', 'new'), ('c', 'lapsed')]
    """
    _check_orders(orders)
    gaps = purchase_gaps(orders) if gaps is None else gaps
    used = thresholds if thresholds is not None else lifecycle_thresholds(orders, config, gaps=gaps)
    end = ibis.literal(as_of).epoch_days().cast("int64")
    days_ago = end - gaps.day
    recent_gap = (days_ago <= used.active_days).ifelse(gaps.gap, ibis.null("int64"))
    stats = gaps.group_by("customer_id").agg(
        n=gaps.count(),
        since_first=(end - gaps.day.min()),
        since_last=(end - gaps.day.max()),
        recent_gap=recent_gap.max(),
    )
    people = orders.select("customer_id")
    if customers is not None:
        people = ibis.union(people, customers.select("customer_id"), distinct=False)
    people = people.filter(people.customer_id.notnull()).distinct()
    joined = people.left_join(stats, "customer_id")
    once = joined.n == 1
    stage = ibis.cases(
        (joined.n.isnull(), "prospect"),
        (once & (joined.since_first <= used.new_days), "new"),
        (once, "one_time"),
        (joined.since_last > used.lapsed_days, "lapsed"),
        (joined.since_last > used.active_days, "at_risk"),
        (joined.recent_gap > used.lapsed_days, "reactivated"),
        (joined.recent_gap > used.active_days, "returning"),
        else_="active",
    )
    memberships = joined.select(customer_id=joined.customer_id, segment=stage.cast("string"))
    return LifecycleResult(memberships, used)
