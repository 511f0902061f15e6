"""The per-customer feature table: RFM / BTYD summary plus behaviour, in the engine."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

import ibis
import ibis.expr.types as ir

from segvalue.features.materialise import distinct_values
from segvalue.features.rfm import Granularity, rfm_features
from segvalue.units import TimeUnit, parse_time_unit

__all__ = ["BROWSE_EVENTS", "ENGAGED_EVENTS", "column_slug", "customer_features"]

#: Touchpoint events that count as engagement (as opposed to a mere impression).
ENGAGED_EVENTS: tuple[str, ...] = ("click", "open", "visit", "conversion")

#: Engaged events that are not themselves a purchase: what "browsing" means.
BROWSE_EVENTS: tuple[str, ...] = ("click", "open", "visit")


def column_slug(value: str) -> str:
    """A column-name-safe version of a category or channel name.

    Examples
    --------
    >>> column_slug("Home & Garden")
    'home_garden'
    """
    slug = re.sub(r"[^0-9a-z]+", "_", str(value).lower()).strip("_")
    return slug or "blank"


def _order_stats(orders: ir.Table, as_of: dt.date) -> ir.Table:
    purchase = orders.amount >= 0
    gross = purchase.ifelse(orders.amount, 0.0)
    returned = (~purchase).ifelse(-orders.amount, 0.0)
    # Purchase occasions: Saturday / Sunday (ISO weekday index 5, 6) and December.
    weekend = purchase & (orders.order_ts.day_of_week.index() >= 5)
    december = purchase & (orders.order_ts.month() == 12)
    # share column -> the count of purchases it divides by the number of purchases
    counts: dict[str, ir.Value] = {
        "weekend_share": weekend.sum().cast("int64"),
        "december_share": december.sum().cast("int64"),
    }
    if "discount" in orders.columns:
        # A null discount counts as no discount.
        discounted = purchase & (orders.discount > 0).fill_null(False)
        counts = {"discount_share": discounted.sum().cast("int64"), **counts}
    tallies = {f"_n_{name}": value for name, value in counts.items()}
    stats = orders.group_by("customer_id").agg(
        orders=purchase.sum().cast("int64"),
        gross_revenue=gross.sum(),
        returns_amount=returned.sum(),
        revenue=orders.amount.sum(),
        last_order=orders.order_ts.max(),
        **tallies,
    )
    days_since = ibis.literal(as_of).epoch_days() - stats.last_order.date().epoch_days()
    shares = {
        name: (stats.orders > 0).ifelse(stats[f"_n_{name}"].cast("float64") / stats.orders, 0.0)
        for name in counts
    }
    return stats.mutate(
        average_order_value=(stats.orders > 0).ifelse(
            stats.gross_revenue / stats.orders.cast("float64"), 0.0
        ),
        return_rate=(stats.gross_revenue > 0).ifelse(
            stats.returns_amount / stats.gross_revenue, 0.0
        ),
        days_since_last_order=days_since.cast("int64"),
        **shares,
    ).drop("last_order", *tallies)


def _category_shares(
    orders: ir.Table, lines: ir.Table, categories: Sequence[str] | None
) -> ir.Table | None:
    if "category" not in lines.columns:
        return None
    owned = lines.join(orders.select("order_id", "customer_id"), "order_id")
    cats = list(categories) if categories is not None else distinct_values(owned.category)
    if not cats:
        return None
    total = owned.line_amount.sum()
    shares = {
        f"share_{column_slug(c)}": ibis.cases(
            (total > 0, (owned.category == c).ifelse(owned.line_amount, 0.0).sum() / total),
            else_=0.0,
        )
        for c in cats
    }
    return owned.group_by("customer_id").agg(**shares)


def _engagement(touchpoints: ir.Table, channels: Sequence[str] | None) -> ir.Table:
    chans = list(channels) if channels is not None else distinct_values(touchpoints.channel)
    engaged = (
        touchpoints.event.isin(ENGAGED_EVENTS)
        if "event" in touchpoints.columns
        else ibis.literal(True)
    )
    aggs: dict[str, ir.Value] = {"touches": touchpoints.count()}
    for c in chans:
        on_channel = touchpoints.channel == c
        aggs[f"touches_{column_slug(c)}"] = on_channel.sum().cast("int64")
        aggs[f"engaged_{column_slug(c)}"] = (on_channel & engaged).sum().cast("int64")
    return touchpoints.group_by("customer_id").agg(**aggs)


def _browsing(orders: ir.Table, touchpoints: ir.Table) -> ir.Table:
    """Browse touches (click, open, visit) after the customer's last purchase."""
    purchases = orders.filter(orders.amount >= 0)
    last = purchases.group_by("customer_id").agg(_last_purchase=purchases.order_ts.max())
    # Keep browse events before the join: impressions, the bulk of touches, never count.
    if "event" in touchpoints.columns:
        touchpoints = touchpoints.filter(touchpoints.event.isin(BROWSE_EVENTS))
    touches = touchpoints.select("customer_id", "ts").left_join(last, "customer_id")
    after = touches._last_purchase.isnull() | (touches.ts > touches._last_purchase)
    return touches.group_by(customer_id=touches.customer_id).agg(
        browse_since_last_order=after.fill_null(False).sum().cast("int64")
    )


def customer_features(
    tables: Mapping[str, ir.Table],
    *,
    as_of: dt.date,
    time_unit: TimeUnit | str = TimeUnit.WEEK,
    granularity: Granularity = "day",
    categories: Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
) -> ir.Table:
    """One row per customer with RFM / BTYD features and behaviour, as an Ibis expression.

    Parameters
    ----------
    tables
        Clean tables by logical name; ``orders`` is required, ``customers``,
        ``order_lines`` and ``touchpoints`` add columns when present. With ``customers``,
        every customer appears, buyers or not (``orders`` = 0, BTYD columns null).
    as_of
        Observation end (inclusive).
    time_unit, granularity
        As in :func:`segvalue.features.rfm.rfm_features`.
    categories, channels
        Fix the category-share and channel columns (default: the values in the data).

    Returns
    -------
    ibis.expr.types.Table
        ``customer_id``, ``frequency``, ``recency``, ``T``, ``monetary_value``,
        ``first_purchase``, ``last_purchase``, ``orders``, ``gross_revenue``,
        ``returns_amount``, ``revenue`` (net of returns), ``average_order_value``,
        ``return_rate``, ``days_since_last_order``, ``weekend_share``,
        ``december_share`` (and ``discount_share`` when orders have a ``discount``
        column), ``tenure_days``, then ``share_<category>`` and ``touches``,
        ``touches_<channel>``, ``engaged_<channel>``, ``browse_since_last_order``.

    Notes
    -----
    Behavioural columns, for rule segments (price sensitivity, purchase occasion,
    browse-without-buying); shares are over purchases (orders with ``amount >= 0``) and
    are 0 for a customer without purchases:

    * ``discount_share``: share of purchases with ``discount > 0`` (a null discount is no
      discount);
    * ``weekend_share``: share of purchases placed on a Saturday or Sunday (by the date
      of ``order_ts`` as stored);
    * ``december_share``: share of purchases placed in December (the gift season);
    * ``browse_since_last_order``: touchpoints with event click, open or visit (every
      touch when there is no ``event`` column) strictly after the last purchase, all of
      them for a customer who never bought: engagement that has not turned into a
      purchase (yet). A rule such as ``browse_since_last_order >= 3`` finds browsers.

    Examples
    --------
    >>> import ibis, datetime as dt
    >>> o = ibis.memtable({"order_id": ["1", "2", "3"], "customer_id": ["a", "a", "a"],
    ...     "amount": [10.0, 30.0, -10.0], "order_ts": [dt.datetime(2024, 1, 1),
    ...     dt.datetime(2024, 1, 8), dt.datetime(2024, 1, 9)]})
    >>> f = customer_features({"orders": o}, as_of=dt.date(2024, 1, 15)).to_pyarrow()
    >>> f.select(["orders", "revenue", "return_rate", "tenure_days"]).to_pylist()
    [{'orders': 2, 'revenue': 30.0, 'return_rate': 0.25, 'tenure_days': 14}]
    """
    unit = parse_time_unit(time_unit)
    orders = tables["orders"]
    rfm = rfm_features(orders, as_of=as_of, time_unit=unit, granularity=granularity)
    features = rfm.join(_order_stats(orders, as_of), "customer_id")
    customers = tables.get("customers")
    if customers is not None:
        signup = customers.signup_date if "signup_date" in customers.columns else ibis.null("date")
        base = customers.select("customer_id", signup_date=signup)
        features = base.left_join(features, "customer_id").drop("customer_id_right")
        start = ibis.coalesce(features.signup_date, features.first_purchase)
        features = features.mutate(
            tenure_days=(ibis.literal(as_of).epoch_days() - start.epoch_days()).cast("int64"),
            orders=features.orders.fill_null(0),
            gross_revenue=features.gross_revenue.fill_null(0.0),
            returns_amount=features.returns_amount.fill_null(0.0),
            revenue=features.revenue.fill_null(0.0),
            average_order_value=features.average_order_value.fill_null(0.0),
            return_rate=features.return_rate.fill_null(0.0),
            **{
                c: features[c].fill_null(0.0)
                for c in ("discount_share", "weekend_share", "december_share")
                if c in features.columns
            },
        ).drop("signup_date")
    else:
        tenure = ibis.literal(as_of).epoch_days() - features.first_purchase.epoch_days()
        features = features.mutate(tenure_days=tenure.cast("int64"))
    lines = tables.get("order_lines")
    if lines is not None:
        shares = _category_shares(orders, lines, categories)
        if shares is not None:
            features = _attach(features, shares, 0.0)
    touchpoints = tables.get("touchpoints")
    if touchpoints is not None:
        features = _attach(features, _engagement(touchpoints, channels), 0)
        features = _attach(features, _browsing(orders, touchpoints), 0)
    return features


def _attach(features: ir.Table, extra: ir.Table, fill: float) -> ir.Table:
    joined = features.left_join(extra, "customer_id").drop("customer_id_right")
    added = [c for c in extra.columns if c != "customer_id"]
    return joined.mutate(**{c: joined[c].fill_null(fill) for c in added})
