"""Per-customer RFM / BTYD summary features as Ibis expressions.

Conventions (Fader, Hardie and Lee 2005; the lifetimes ``summary_data_from_transaction_data``):

* only purchases (amount > 0) count; purchases in the same period are merged into one
  transaction whose value is their sum;
* ``frequency`` is the number of *repeat* transactions (the first is excluded);
* ``recency`` is the time from the first to the last transaction, ``T`` the time from
  the first transaction to the observation end, both in the chosen time unit;
* ``monetary_value`` is the mean value of the repeat transactions (0 without repeats).

With ``granularity="day"`` transactions are merged per calendar day and durations are
continuous (days / days-per-unit), as in Hardie's CDNOW summaries. With
``granularity="unit"`` they are merged per calendar period (ISO week from Monday,
calendar month) and durations are whole periods, as lifetimes does with ``freq``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import ibis
import ibis.expr.types as ir

from segvalue.errors import ConfigError
from segvalue.units import TimeUnit, parse_time_unit

__all__ = ["Granularity", "calibration_holdout", "repeat_purchases_by_period", "rfm_features"]

Granularity = Literal["day", "unit"]


@ibis.udf.agg.builtin(name="arg_min")  # type: ignore[untyped-decorator]
def _duckdb_arg_min(arg: float, val) -> float:  # type: ignore[no-untyped-def,empty-body]
    """DuckDB's ``arg_min(arg, val)``: ``arg`` of the row with the smallest ``val``."""


def _value_at_first(value: Any, key: Any, orders: ir.Table) -> Any:
    """``value`` at the smallest ``key`` of each group (keys are unique within a group).

    Ibis compiles ``argmin`` for DuckDB to ``first(value ORDER BY key)``, an ordered
    aggregate that sorts every group: at 1M customers the summary query takes 0.66 s with
    DuckDB's own ``arg_min`` against 0.78 s. Other engines, and tables bound to no engine
    (in-memory tables, which any engine may execute), keep Ibis's translation.
    """
    backend = ibis.get_backend(orders)
    if backend.name == "duckdb" and backend is not ibis.get_backend():
        return _duckdb_arg_min(value, key)
    return value.argmin(key)


def _period_index(day: Any, unit: TimeUnit, granularity: Granularity) -> Any:
    """An integer per date whose differences, divided by :func:`_scale`, are durations."""
    if granularity == "day" or unit is TimeUnit.DAY:
        return day.epoch_days()
    if unit is TimeUnit.WEEK:
        # Weeks start on Monday; 1970-01-05 was a Monday, so this floors to whole weeks.
        return ((day.epoch_days() - 4) / 7).floor().cast("int64")
    return day.year() * 12 + day.month()


def _scale(unit: TimeUnit, granularity: Granularity) -> float:
    """Index steps per time unit: days per unit for daily indices, else 1."""
    return unit.days if granularity == "day" or unit is TimeUnit.DAY else 1.0


def _check(time_unit: TimeUnit | str, granularity: str) -> TimeUnit:
    unit = parse_time_unit(time_unit)
    if granularity not in ("day", "unit"):
        raise ConfigError(
            f"unknown granularity {granularity!r}", fix="use 'day' (default) or 'unit'"
        )
    return unit


def _per_unit(unit: TimeUnit, granularity: Granularity) -> bool:
    return granularity == "unit" and unit is not TimeUnit.DAY


def _transactions(orders: ir.Table, granularity: Granularity, unit: TimeUnit) -> ir.Table:
    """Purchases merged per customer and day (and, per unit, per period index ``p``)."""
    purchases = orders.filter(orders.amount >= 0)
    day = purchases.order_ts.date()
    merged = purchases.group_by(customer_id=purchases.customer_id, day=day).agg(
        value=purchases.amount.sum()
    )
    if _per_unit(unit, granularity):
        merged = merged.mutate(p=_period_index(merged.day, unit, granularity))
        merged = merged.group_by(["customer_id", "p"]).agg(
            value=merged.value.sum(), day=merged.day.min()
        )
    return merged


def rfm_features(
    orders: ir.Table,
    *,
    as_of: dt.date,
    time_unit: TimeUnit | str = TimeUnit.WEEK,
    granularity: Granularity = "day",
) -> ir.Table:
    """Frequency, recency, T and monetary value per customer, computed in the engine.

    Parameters
    ----------
    orders
        Clean orders with ``customer_id``, ``order_ts`` (timestamp) and ``amount``;
        rows after ``as_of`` must already be removed.
    as_of
        Observation end (inclusive).
    time_unit
        Unit of ``recency`` and ``T``.
    granularity
        ``"day"``: merge same-day purchases, continuous durations; ``"unit"``: merge per
        calendar period of ``time_unit``, whole-period durations.

    Returns
    -------
    ibis.expr.types.Table
        One row per customer with at least one purchase: ``customer_id``, ``frequency``,
        ``recency``, ``T``, ``monetary_value``, ``first_purchase``, ``last_purchase``.

    Examples
    --------
    >>> import ibis, datetime as dt
    >>> o = ibis.memtable({"customer_id": ["a", "a", "a"], "amount": [10.0, 20.0, 5.0],
    ...     "order_ts": [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 15),
    ...                  dt.datetime(2024, 1, 15, 18)]})
    >>> r = rfm_features(o, as_of=dt.date(2024, 1, 29), time_unit="week").to_pyarrow()
    >>> r.select(["frequency", "recency", "T", "monetary_value"]).to_pylist()
    [{'frequency': 1, 'recency': 2.0, 'T': 4.0, 'monetary_value': 25.0}]
    """
    unit = _check(time_unit, granularity)
    tx = _transactions(orders, granularity, unit)
    per_unit = _per_unit(unit, granularity)
    # Aggregate on the merge key and turn dates into indices once per customer, not per
    # transaction: this keeps the query as lean as hand-written SQL.
    key = tx.p if per_unit else tx.day
    aggs: dict[str, Any] = {
        "n": tx.count(),
        "first_key": key.min(),
        "last_key": key.max(),
        "total": tx.value.sum(),
        "first_value": _value_at_first(tx.value, key, orders),
    }
    if per_unit:
        aggs.update(first_purchase=tx.day.min(), last_purchase=tx.day.max())
    agg = tx.group_by("customer_id").agg(**aggs)
    if per_unit:
        first, last = agg.first_key, agg.last_key
        first_purchase, last_purchase = agg.first_purchase, agg.last_purchase
    else:
        first_purchase, last_purchase = agg.first_key, agg.last_key
        first = _period_index(first_purchase, unit, granularity)
        last = _period_index(last_purchase, unit, granularity)
    end = _period_index(ibis.literal(as_of), unit, granularity)
    frequency = (agg.n - 1).cast("int64")
    repeat_total = agg.total - agg.first_value
    scale = _scale(unit, granularity)
    return agg.select(
        customer_id=agg.customer_id,
        frequency=frequency,
        recency=(last - first).cast("float64") / scale,
        T=(end - first).cast("float64") / scale,
        monetary_value=(frequency > 0).ifelse(repeat_total / frequency.cast("float64"), 0.0),
        first_purchase=first_purchase,
        last_purchase=last_purchase,
    )


def calibration_holdout(
    orders: ir.Table,
    *,
    calibration_end: dt.date,
    observation_end: dt.date,
    time_unit: TimeUnit | str = TimeUnit.WEEK,
    granularity: Granularity = "day",
) -> ir.Table:
    """Calibration-period features plus what each customer did in the holdout period.

    Customers are those with a purchase on or before ``calibration_end``; their
    holdout transactions are counted in ``(calibration_end, observation_end]`` with the
    same merging rule.

    Parameters
    ----------
    orders
        Clean orders (``customer_id``, ``order_ts``, ``amount``).
    calibration_end, observation_end
        End of the calibration period and of the holdout period (both inclusive).
    time_unit, granularity
        As in :func:`rfm_features`.

    Returns
    -------
    ibis.expr.types.Table
        The columns of :func:`rfm_features` (for the calibration period) plus
        ``frequency_holdout``, ``monetary_value_holdout`` and ``duration_holdout``.

    Examples
    --------
    >>> import ibis, datetime as dt
    >>> o = ibis.memtable({"customer_id": ["a", "a", "a"], "amount": [10.0, 20.0, 6.0],
    ...     "order_ts": [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 8),
    ...                  dt.datetime(2024, 1, 22)]})
    >>> r = calibration_holdout(o, calibration_end=dt.date(2024, 1, 15),
    ...     observation_end=dt.date(2024, 1, 29), time_unit="week").to_pyarrow()
    >>> r.select(["frequency", "frequency_holdout", "duration_holdout"]).to_pylist()
    [{'frequency': 1, 'frequency_holdout': 1, 'duration_holdout': 2.0}]
    """
    unit = _check(time_unit, granularity)
    if observation_end <= calibration_end:
        raise ConfigError(
            f"observation end {observation_end} is not after calibration end {calibration_end}",
            fix="choose a calibration end before the observation end",
        )
    cal_limit = dt.datetime.combine(calibration_end + dt.timedelta(days=1), dt.time())
    obs_limit = dt.datetime.combine(observation_end + dt.timedelta(days=1), dt.time())
    calibration = rfm_features(
        orders.filter(orders.order_ts < cal_limit),
        as_of=calibration_end,
        time_unit=unit,
        granularity=granularity,
    )
    later = orders.filter((orders.order_ts >= cal_limit) & (orders.order_ts < obs_limit))
    tx = _transactions(later, granularity, unit)
    holdout = tx.group_by("customer_id").agg(frequency_holdout=tx.count(), total=tx.value.sum())
    joined = calibration.left_join(holdout, "customer_id").drop("customer_id_right")
    n_holdout = joined.frequency_holdout.fill_null(0).cast("int64")
    duration = (
        _period_index(ibis.literal(observation_end), unit, granularity)
        - _period_index(ibis.literal(calibration_end), unit, granularity)
    ).cast("float64") / _scale(unit, granularity)
    return joined.mutate(
        frequency_holdout=n_holdout,
        monetary_value_holdout=(n_holdout > 0).ifelse(
            joined.total / n_holdout.cast("float64"), 0.0
        ),
        duration_holdout=duration,
    ).drop("total")


def repeat_purchases_by_period(
    orders: ir.Table,
    *,
    start: dt.date,
    end: dt.date,
    time_unit: TimeUnit | str = TimeUnit.WEEK,
) -> ir.Table:
    """Repeat transactions (every customer's purchases but the first) per period.

    Same-day purchases are merged as in :func:`rfm_features`. Period ``p`` (1, 2, ...)
    covers days ``[start + (p - 1) * unit, start + p * unit)``; transactions after
    ``end`` are left out. Used for the cumulative tracking curve of a holdout report.

    Parameters
    ----------
    orders
        Clean orders.
    start
        First day of period 1 (usually the cohort's first purchase date).
    end
        Last day counted (inclusive).
    time_unit
        Length of a period.

    Returns
    -------
    ibis.expr.types.Table
        ``period`` (int64) and ``repeat_purchases`` (int64), one row per non-empty period.

    Examples
    --------
    >>> import ibis, datetime as dt
    >>> o = ibis.memtable({"customer_id": ["a", "a", "a", "b"], "amount": [1.0, 2.0, 3.0, 4.0],
    ...     "order_ts": [dt.datetime(2024, 1, d) for d in (1, 3, 9, 2)]})
    >>> r = repeat_purchases_by_period(o, start=dt.date(2024, 1, 1), end=dt.date(2024, 1, 14))
    >>> sorted(r.to_pyarrow().to_pylist(), key=lambda row: row["period"])
    [{'period': 1, 'repeat_purchases': 1}, {'period': 2, 'repeat_purchases': 1}]
    """
    unit = parse_time_unit(time_unit)
    tx = _transactions(orders, "day", unit)
    first = tx.group_by("customer_id").agg(first_day=tx.day.min())
    joined = tx.join(first, "customer_id")
    repeat = joined.filter((joined.day > joined.first_day) & (joined.day <= end))
    offset = repeat.day.epoch_days() - ibis.literal(start).epoch_days()
    period = (offset.cast("float64") / unit.days).floor().cast("int64") + 1
    counted = repeat.mutate(period=period)
    return counted.group_by("period").agg(repeat_purchases=counted.count().cast("int64"))
