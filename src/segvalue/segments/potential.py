"""Market potential per segment: who could still buy a category, and what that is worth.

For a product category and an optional need (a condition over customer features and
attributes, e.g. ``household_size >= 3``):

- addressable customers = segment members who have the need and have not bought the
  category;
- revenue potential = addressable x adoption rate x value per customer, where the value
  per customer is ``value_per_customer`` when configured, else the mean category spend of
  the segment's buyers of the category (when the segment has at least ``min_buyers`` of
  them), else the mean over every buyer.

Category spend comes from ``order_lines`` (summed ``line_amount`` of the category per
customer, joined to ``orders`` for the customer) when given, else it is approximated from
the features as ``share_<category> x gross_revenue``. Every assumption is written out in
the ``assumptions`` column. All aggregation runs in the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segvalue.config import MarketPotentialConfig
from segvalue.errors import DataValidationError, did_you_mean
from segvalue.features.customer import column_slug
from segvalue.segments.profiles import as_memberships
from segvalue.segments.rules import customer_attributes

__all__ = ["MIN_BUYERS", "market_potential"]

#: A segment needs this many buyers of the category for its own mean spend to be used.
MIN_BUYERS = 10

NeedPredicate = Callable[[ir.Table], ir.BooleanValue]


def _category_spend(
    features: ir.Table,
    category: str,
    order_lines: ir.Table | None,
    orders: ir.Table | None,
) -> tuple[ir.Table, str]:
    """Features with ``_spend`` (category spend) and ``_bought``; and the source described."""
    if order_lines is not None:
        if orders is None:
            raise DataValidationError(
                "market potential: order_lines were given without orders",
                fix="pass orders too (order lines reach customers through order_id)",
            )
        for name in ("order_id", "category", "line_amount"):
            if name not in order_lines.columns:
                raise DataValidationError(
                    f"market potential: order_lines lack column {name!r}",
                    fix="map the order_lines columns in segvalue.yaml",
                )
        lines = order_lines.filter(order_lines.category == category)
        owned = lines.join(orders.select("order_id", "customer_id"), "order_id")
        spend = owned.group_by("customer_id").aggregate(_spend=owned.line_amount.sum())
        joined = features.left_join(spend, "customer_id").drop("customer_id_right")
        amount = joined._spend.fill_null(0.0).cast("float64")
        out = joined.mutate(_spend=amount, _bought=amount > 0)
        return out, f"summed line amounts of {category!r} in order_lines"
    share = f"share_{column_slug(category)}"
    if share not in features.columns:
        available = sorted(c for c in features.columns if c.startswith("share_"))
        hint = did_you_mean(share, available)
        raise DataValidationError(
            f"market potential: the features have no column {share!r} for category "
            f"{category!r}{hint}",
            fix=f"use a category with a share column ({available}) or pass order_lines",
        )
    revenue = "gross_revenue" if "gross_revenue" in features.columns else "revenue"
    if revenue not in features.columns:
        raise DataValidationError(
            "market potential: the features have neither 'gross_revenue' nor 'revenue'",
            fix="compute features with segvalue.features.customer.customer_features",
        )
    fraction = features[share].fill_null(0.0).cast("float64")
    amount = fraction * features[revenue].fill_null(0.0).cast("float64")
    out = features.mutate(_spend=amount, _bought=fraction > 0)
    return out, f"{share} x {revenue} (share of wallet times spend)"


def _count(flag: ir.BooleanValue) -> ir.IntegerScalar:
    return flag.ifelse(1, 0).sum()


def market_potential(
    memberships: ir.Table | pa.Table,
    features: ir.Table,
    config: MarketPotentialConfig,
    *,
    need: NeedPredicate | None = None,
    order_lines: ir.Table | None = None,
    orders: ir.Table | None = None,
    customers: ir.Table | None = None,
    income: str = "income",
    min_buyers: int = MIN_BUYERS,
    scheme: str | None = None,
) -> pa.Table:
    """Customers, income, addressable customers and revenue potential per segment.

    Parameters
    ----------
    memberships
        ``(customer_id, scheme, segment)`` (or without ``scheme``, see ``scheme``).
    features
        Customer features (one row per customer; the population for shares).
    config
        The market: ``category``, optional ``need``, ``adoption_rate``,
        ``value_per_customer``.
    need
        The need as a function of the feature table returning a boolean column, instead of
        compiling ``config.need`` with :func:`segvalue.segments.rules.compile_condition`.
    order_lines, orders
        Contract tables for exact category spend (else ``share_<category>`` x
        ``gross_revenue`` from the features).
    customers
        Customer attributes (income, household size, ...) to join to the features.
    income
        Column with the income, summarised when present.
    min_buyers
        Fewest buyers for a segment's own mean category spend to be the value per customer.
    scheme
        Scheme name when ``memberships`` has no ``scheme`` column.

    Returns
    -------
    pyarrow.Table
        Per (scheme, segment): ``market``, ``category``, ``customers``, ``share``,
        ``income_mean`` / ``income_q25`` / ``income_median`` / ``income_q75`` (when the
        income column exists; interpolated quartiles), ``with_need``, ``buyers``,
        ``addressable``, ``addressable_share`` (of the segment), ``adoption_rate``,
        ``value_per_customer``, ``value_basis`` (``configured``, ``segment`` or
        ``all buyers``), ``revenue_potential`` and ``assumptions`` (one sentence).

    Raises
    ------
    DataValidationError
        If the category has no share column and no order lines are given.
    ConfigError
        If ``config.need`` names an unknown field.

    Examples
    --------
    >>> import ibis
    >>> from segvalue.config import MarketPotentialConfig
    >>> f = ibis.memtable({"customer_id": ["a", "b", "c", "d"],
    ...     "share_toys": [0.5, 0.0, 0.0, 0.25], "gross_revenue": [100.0, 50.0, 80.0, 40.0]})
    >>> m = ibis.memtable({"customer_id": ["a", "b", "c", "d"], "segment": ["X"] * 4})
    >>> cfg = MarketPotentialConfig(name="toys", category="toys", adoption_rate=0.5)
    >>> r = market_potential(m, f, cfg, min_buyers=1).to_pylist()[0]
    >>> r["buyers"], r["addressable"], r["value_per_customer"], r["revenue_potential"]
    (2, 2, 30.0, 30.0)
    """
    features = customer_attributes(features, customers)
    members = as_memberships(memberships, scheme=scheme)
    table, spend_source = _category_spend(features, config.category, order_lines, orders)
    if need is not None:
        has_need = need(table)
        need_text = "members with the given need"
    elif config.need is not None:
        from segvalue.segments.rules import compile_condition

        has_need = compile_condition(
            config.need, table, where=f"segments.market_potential[{config.name!r}].need"
        )
        need_text = "members meeting the configured need"
    else:
        has_need = ibis.literal(True)
        need_text = "all members (no need configured)"
    table = table.mutate(_need=has_need.fill_null(False))
    with_income = income in table.columns
    # Buyers' mean spend and the population in one pass over the spend join.
    overall = (
        table.aggregate(
            population=table.count(),
            n=_count(table._bought),
            mean=table._spend.mean(where=table._bought),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    population = int(overall["population"])
    j = members.join(table, "customer_id")
    aggs: dict[str, Any] = {
        "customers": j.customer_id.count(),
        "with_need": _count(j._need),
        "buyers": _count(j._bought),
        "addressable": _count(j._need & ~j._bought),
        "buyer_spend": j._bought.ifelse(j._spend, 0.0).sum(),
    }
    if with_income:
        value = j[income].cast("float64")
        aggs |= {
            "income_mean": value.mean(),
            "income_q25": value.quantile(0.25),
            "income_median": value.quantile(0.5),
            "income_q75": value.quantile(0.75),
        }
    grouped = j.group_by(["scheme", "segment"]).aggregate(**aggs).to_pyarrow().to_pylist()
    rows = []
    for r in sorted(grouped, key=lambda r: (r["scheme"], -r["customers"], r["segment"])):
        customers_n, buyers = int(r["customers"]), int(r["buyers"])
        addressable = int(r["addressable"])
        if config.value_per_customer is not None:
            value_pc, basis = float(config.value_per_customer), "configured"
            value_text = f"value per customer {value_pc:,.2f} (configured)"
        elif buyers >= max(min_buyers, 1):
            value_pc, basis = float(r["buyer_spend"]) / buyers, "segment"
            value_text = (
                f"value per customer {value_pc:,.2f} = mean {config.category} spend of the "
                f"{buyers} buyers in this segment"
            )
        elif overall["n"]:
            value_pc, basis = float(overall["mean"]), "all buyers"
            value_text = (
                f"value per customer {value_pc:,.2f} = mean {config.category} spend of all "
                f"{overall['n']} buyers (the segment has {buyers}, fewer than {min_buyers})"
            )
        else:
            value_pc, basis = None, "none"
            value_text = f"no customer has bought {config.category}: set value_per_customer"
        potential = None if value_pc is None else addressable * config.adoption_rate * value_pc
        row: dict[str, Any] = {
            "scheme": r["scheme"],
            "segment": r["segment"],
            "market": config.name,
            "category": config.category,
            "customers": customers_n,
            "share": customers_n / population if population else None,
        }
        if with_income:
            for key in ("income_mean", "income_q25", "income_median", "income_q75"):
                row[key] = r[key]
        row |= {
            "with_need": int(r["with_need"]),
            "buyers": buyers,
            "addressable": addressable,
            "addressable_share": addressable / customers_n if customers_n else None,
            "adoption_rate": config.adoption_rate,
            "value_per_customer": value_pc,
            "value_basis": basis,
            "revenue_potential": potential,
            "assumptions": (
                f"addressable: {need_text} who have not bought {config.category!r} "
                f"(category spend from {spend_source}); adoption rate "
                f"{config.adoption_rate:g}; {value_text}"
            ),
        }
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=_schema(with_income))


def _schema(with_income: bool) -> pa.Schema:
    head = [
        ("scheme", pa.string()),
        ("segment", pa.string()),
        ("market", pa.string()),
        ("category", pa.string()),
        ("customers", pa.int64()),
        ("share", pa.float64()),
    ]
    income = [
        (k, pa.float64()) for k in ("income_mean", "income_q25", "income_median", "income_q75")
    ]
    tail = [
        ("with_need", pa.int64()),
        ("buyers", pa.int64()),
        ("addressable", pa.int64()),
        ("addressable_share", pa.float64()),
        ("adoption_rate", pa.float64()),
        ("value_per_customer", pa.float64()),
        ("value_basis", pa.string()),
        ("revenue_potential", pa.float64()),
        ("assumptions", pa.string()),
    ]
    return pa.schema(head + (income if with_income else []) + tail)
