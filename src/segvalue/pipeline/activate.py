"""Activation of a stored run: the campaign plans of segvalue.yaml turned into audiences
(:func:`segvalue.activation.plans.plan_campaigns`) from the run's segments, scores and
measured channel roles, and the sources' consent, time zones, purchases and contact log.

The sources are read and validated again (the data layer), so consent and the contact
log are as current as the files; the segments, scores, personas and channel roles are
the run's. Every campaign's segments must be segments of ``activation.scheme`` (default:
the measured scheme, i.e. the KPI scheme) in the run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from segvalue.config import Config
from segvalue.errors import ConfigError

if TYPE_CHECKING:
    from segvalue.activation.plans import ActivationPlan
    from segvalue.data.validation import ValidatedData

__all__ = ["ACTIVATION_TABLES", "activation_scheme", "plan_activation"]

#: The tables and the document an activation attaches to its run.
ACTIVATION_TABLES = (
    "activation_audiences",
    "activation_left_out",
    "activation_controls",
    "activation_holdouts",
    "activation_steps",
    "activation",
)


def activation_scheme(config: Config, schemes: Sequence[str], measured: str | None) -> str:
    """The scheme campaigns name segments of: ``activation.scheme``, else the scheme the
    run measured, else the KPI scheme's rule (the first scheme of the run).

    Examples
    --------
    >>> from segvalue.config import parse_config
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}})
    >>> activation_scheme(cfg, ["lifecycle", "rfm"], None)
    'lifecycle'
    """
    from segvalue.pipeline.measurement import pick_scheme

    if not schemes:
        raise ConfigError(
            "the run has no segments to activate", fix="enable segments and run again"
        )
    return pick_scheme(config, schemes, config.activation.scheme or measured, "activation.scheme")


def _column(table: pa.Table, name: str, ids: list[str]) -> list[Any]:
    """``name`` of ``table`` aligned to ``ids`` (None where a customer has no row)."""
    found = dict(
        zip(
            (str(c) for c in table.column("customer_id").to_pylist()),
            table.column(name).to_pylist(),
            strict=True,
        )
    )
    return [found.get(c) for c in ids]


def plan_activation(
    config: Config,
    *,
    scores: pa.Table,
    memberships: pa.Table,
    scheme: str,
    roles: Mapping[str, Mapping[str, str]],
    personas: Sequence[Mapping[str, Any]],
    data: ValidatedData | None = None,
    next_best: Mapping[str, tuple[str, str]] | None = None,
) -> ActivationPlan:
    """Plan the configured campaigns on a run's customers (see the module).

    Parameters
    ----------
    scores
        The run's customer scores (one row per customer, with ``clv`` when valued).
    memberships
        The run's memberships (``customer_id, scheme, segment``).
    scheme
        The scheme campaigns name segments of.
    roles, personas
        The run's channel roles per segment and its personas.
    data
        The validated sources (read from ``config`` when not given).
    next_best
        Per customer, the next-best category and its reason (campaigns with ``recommend``).
    """
    from segvalue.activation.plans import Customers, plan_campaigns
    from segvalue.features.materialise import to_arrow
    from segvalue.pipeline.ingest import load

    if data is None:
        data = load(config)
    settings = config.activation
    ids = sorted(str(c) for c in scores.column("customer_id").to_pylist())
    ordered = pa.table({"customer_id": pa.array(ids, pa.string())})
    members = memberships.filter(pa.compute.equal(memberships.column("scheme"), scheme))
    segment = _column(members, "segment", ids)
    clv = np.array(
        [np.nan if v is None else float(v) for v in _column(scores, "clv", ids)]
        if "clv" in scores.column_names
        else [np.nan] * len(ids),
        dtype=np.float64,
    )
    notes: dict[str, Any] = {"scheme": scheme}
    people = Customers(ids, [None if s is None else str(s) for s in segment], clv)
    customers = data.tables.get("customers")
    source = to_arrow(customers) if customers is not None else ordered
    columns = set(source.column_names)
    for channel, column in settings.consent.items():
        if column in columns:
            given = _column(source, column, ids)
            people.consent[channel] = np.array([v is True for v in given], dtype=bool)
        else:  # no consent on record: nobody is contacted on that channel
            people.consent[channel] = np.zeros(len(ids), dtype=bool)
            notes.setdefault("no_consent_column", {})[channel] = column
    if settings.unsubscribed_column in columns:
        flags = _column(source, settings.unsubscribed_column, ids)
        people.unsubscribed = np.array([v is True for v in flags], dtype=bool)
    if settings.timezone_column in columns:
        zones = _column(source, settings.timezone_column, ids)
        people.zone = {c: z for c, z in zip(ids, zones, strict=True) if z}
    _offers(config, data, scores, ids, people)
    _purchases(config, data, people)
    history = None
    if "contact_log" in data.tables:
        log = to_arrow(data.tables["contact_log"].select("customer_id", "ts", "channel"))
        from segvalue.activation.caps import as_naive_utc

        history = (
            [str(c) for c in log.column("customer_id").to_pylist()],
            [str(c) for c in log.column("channel").to_pylist()],
            as_naive_utc(log.column("ts")),
        )
        notes["contact_log_rows"] = log.num_rows
    if next_best is None and any(c.recommend for c in config.campaigns):
        level = settings.recommend_level
        next_best = _next_best(data, ids, people.segment, data.report.as_of, level)
        notes["next_best"] = f"{level}: co-purchase affinity, segment and base popularity"
    if next_best:
        people.next_best = dict(next_best)
    as_of = data.report.as_of
    data_end = dt.datetime.combine(as_of, dt.time.max) if as_of is not None else None
    plan = plan_campaigns(
        people,
        config.campaigns,
        settings,
        default_zone=settings.default_timezone or config.timezone,
        roles=roles,
        personas={str(p.get("segment")): p for p in personas if p.get("scheme") == scheme},
        history=history,
        data_end=data_end,
    )
    plan.notes.update(notes)
    return plan


def _offers(
    config: Config, data: ValidatedData, scores: pa.Table, ids: list[str], people: Any
) -> None:
    """Who qualifies for each campaign's offer: its ``when`` on the customer's features
    and attributes."""
    import ibis

    from segvalue.features.materialise import to_arrow
    from segvalue.segments.rules import compile_condition, customer_attributes

    wanted = [c for c in config.campaigns if c.offer.when is not None]
    if not wanted:
        return
    features = ibis.memtable(scores)
    table = customer_attributes(features, data.tables.get("customers"))
    for i, campaign in enumerate(config.campaigns):
        if campaign.offer.when is None:
            continue
        where = f"campaigns[{i}].offer.when"
        ok = compile_condition(campaign.offer.when, table, where=where).fill_null(False)
        found = to_arrow(table.select("customer_id", ok=ok))
        people.offer_ok[campaign.name] = np.array(
            [v is True for v in _column(found, "ok", ids)], dtype=bool
        )


def _purchases(config: Config, data: ValidatedData, people: Any) -> None:
    """The purchases the campaigns' suppression and conditions look at."""
    from segvalue.activation.caps import as_naive_utc
    from segvalue.features.materialise import to_arrow

    categories = sorted({c for k in config.campaigns for c in k.suppress_bought})
    conditions = any(s.condition != "none" for k in config.campaigns for s in k.steps)
    orders = data.tables["orders"]
    if conditions:
        o = to_arrow(orders.filter(orders.amount > 0).select("customer_id", "order_ts"))
        times = as_naive_utc(o.column("order_ts"))
        for customer, at in zip(o.column("customer_id").to_pylist(), times, strict=True):
            if at is not None:
                people.purchases.setdefault(str(customer), []).append(at)
        for bought in people.purchases.values():
            bought.sort()
    if not categories:
        return
    lines = data.tables.get("order_lines")
    if lines is None or "category" not in lines.columns:
        raise ConfigError(
            "campaigns suppress recent buyers of categories, but there are no order lines "
            "with a category",
            fix="add an order_lines source with a category column, or drop suppress_bought",
            parameter="campaigns[].suppress_bought",
        )
    joined = lines.filter(lines.category.isin(categories)).join(orders, "order_id")
    last = to_arrow(
        joined.group_by(["customer_id", "category"]).aggregate(last=joined.order_ts.max())
    )
    for customer, category, at in zip(
        last.column("customer_id").to_pylist(),
        last.column("category").to_pylist(),
        as_naive_utc(last.column("last")),
        strict=True,
    ):
        if at is not None:
            people.last_bought.setdefault(str(category), {})[str(customer)] = at


def _next_best(
    data: ValidatedData,
    ids: list[str],
    segments: list[str | None],
    as_of: dt.date | None,
    level: Literal["category", "product"],
) -> dict[str, tuple[str, str]]:
    """Each customer's next-best category or product (docs/activation-recommendations.md)."""
    from segvalue.activation.recommend import next_best, purchase_lines, recommend
    from segvalue.features.materialise import to_arrow

    lines = data.tables.get("order_lines")
    if lines is None or "category" not in lines.columns:
        raise ConfigError(
            "campaigns with recommend need order lines with a category",
            fix="add an order_lines source with a category column, or set recommend: false",
            parameter="campaigns[].recommend",
        )
    orders = data.tables["orders"]
    purchases = purchase_lines(
        to_arrow(orders.select("order_id", "customer_id", "order_ts", "amount")),
        to_arrow(lines),
    )
    when = as_of + dt.timedelta(days=1) if as_of is not None else dt.date.today()
    found = recommend(purchases, ids, segments, as_of=when, level=level, k=1)
    return next_best(found)
