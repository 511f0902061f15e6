"""Real-time events in runs: a run takes the stored events in, and keeps what re-scoring
one customer later reads.

:func:`merge_stored_events` adds the orders and touchpoints received through
``POST /api/v1/events`` (the store's ``segvalue_events``) to the run's validated tables,
once each: an order whose id the files hold already is the file's. :func:`history_tables`
are the accepted rows of each customer that real-time scoring applies new events to
(``history_orders``, and ``history_order_lines`` / ``history_touchpoints`` when the
run's features use them), stored with the run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segvalue.config import Config

if TYPE_CHECKING:
    import pyarrow as pa

    from segvalue.data.validation import ValidatedData

__all__ = ["EventsMerged", "history_tables", "merge_stored_events"]

#: The tables a run stores for real-time scoring, by the validated table they come from.
HISTORY = {
    "customers": "history_customers",
    "orders": "history_orders",
    "order_lines": "history_order_lines",
    "touchpoints": "history_touchpoints",
}


@dataclass(frozen=True)
class EventsMerged:
    """What a run took from the stored events.

    Attributes
    ----------
    through
        The last event's ``seq`` the run saw (later events are applied in real time on
        top of the run).
    orders, touchpoints
        Events added to the run's tables.
    skipped
        Events left out, with why (the order is in the files already; outside the run's
        window).
    """

    through: int = 0
    orders: int = 0
    touchpoints: int = 0
    skipped: Mapping[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "through": self.through,
            "orders": self.orders,
            "touchpoints": self.touchpoints,
            "skipped": dict(self.skipped or {}),
        }


def _stored_events(config: Config) -> tuple[int, list[Any]]:
    from segvalue.store import StoreMissingError, open_store

    path = config.store_path
    if path is not None and not path.exists():
        return 0, []
    try:
        with open_store(config.store_url) as store:
            through = store.last_event_seq()
            return through, store.events(through=through)
    except StoreMissingError:
        return 0, []


def _rows_like(table: Any, rows: list[dict[str, Any]]) -> pa.Table:
    """``rows`` as an Arrow table of ``table``'s schema (absent columns null)."""
    import pyarrow as pa

    schema = table.schema().to_pyarrow()
    return pa.table(
        {f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in schema},
        schema=schema,
    )


def merge_stored_events(config: Config, data: ValidatedData) -> EventsMerged:
    """Add the stored real-time events to ``data``'s orders and touchpoints.

    Each was checked when received (:func:`segvalue.realtime.check_event`); here an order
    whose id the files' accepted orders hold already is left out (the files win), and
    events outside the run's window (after its as-of date, before its lookback start)
    are left out as the files' rows are. With an as-of date inferred from the data, a
    later event moves it. A store without events, or no store yet, changes nothing.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.pipeline.ingest import load
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> merge_stored_events(cfg, load(cfg)).to_dict()  # no store yet
    {'through': 0, 'orders': 0, 'touchpoints': 0, 'skipped': {}}
    """
    from segvalue.data.readers import engine_table, materialise

    through, events = _stored_events(config)
    if not events:
        return EventsMerged(through)
    report = data.report
    skipped: dict[str, int] = {}
    orders_in = [e.body for e in events if e.type == "order"]
    touches_in = [e.body for e in events if e.type == "touchpoint"]
    if "touchpoints" not in data.tables and touches_in:
        skipped["touchpoints without a touchpoints source"] = len(touches_in)
        touches_in = []
    latest = max(dt.datetime.fromisoformat(e.body.get("order_ts") or e.body["ts"]) for e in events)
    if config.as_of is None and latest.date() > report.as_of:
        report.as_of = latest.date()
        report.notes.append(f"as-of date moved to {report.as_of} by a real-time event")
    start = report.lookback_start

    def in_window(moment: str) -> bool:
        day = dt.datetime.fromisoformat(moment).date()
        return day <= report.as_of and (start is None or day >= start)

    added = {"orders": 0, "touchpoints": 0}
    for name, bodies, time_field in (
        ("orders", orders_in, "order_ts"),
        ("touchpoints", touches_in, "ts"),
    ):
        kept = [b for b in bodies if in_window(b[time_field])]
        if len(kept) < len(bodies):
            skipped[f"{name} outside the run's window"] = len(bodies) - len(kept)
        if not kept:
            continue
        table = data.tables[name]
        rows = [
            {**b, time_field: dt.datetime.fromisoformat(b[time_field]), "_row": None} for b in kept
        ]
        incoming = engine_table(data.con, _rows_like(table, rows))
        if name == "orders":
            known = table.select("order_id").distinct()
            fresh = incoming.filter(~incoming.order_id.isin(known.order_id))
            incoming = materialise(data.con, fresh, "event_orders")
            added_ids = set(incoming.order_id.to_pyarrow().to_pylist())
            n = len(added_ids)
            if n < len(kept):
                skipped["orders whose id the files hold"] = len(kept) - n
            lines = [
                {**line, "order_id": b["order_id"], "_row": None}
                for b in kept
                if b["order_id"] in added_ids
                for line in b.get("lines", ())
            ]
            if lines and "order_lines" in data.tables:
                owned = data.tables["order_lines"]
                extra = engine_table(data.con, _rows_like(owned, lines))
                data.tables["order_lines"] = owned.union(extra.select(*owned.columns))
            elif lines:
                skipped["order lines without an order_lines source"] = len(lines)
        else:
            n = len(kept)
        if n:
            data.tables[name] = table.union(incoming.select(*table.columns))
            added[name] = n
    if added["orders"] or added["touchpoints"]:
        report.notes.append(
            f"real-time events included: {added['orders']:,} orders, "
            f"{added['touchpoints']:,} touchpoints (POST /api/v1/events, through #{through})"
        )
    return EventsMerged(through, added["orders"], added["touchpoints"], skipped)


def history_tables(
    data: ValidatedData, features: Mapping[str, Any], contacts: Sequence[str] = ()
) -> dict[str, pa.Table]:
    """Each customer's accepted rows that real-time scoring needs, sorted by customer.

    ``features`` is the scorer state's ``features`` part: order lines are kept when the
    run's features have category shares, touchpoints when they count channels. The
    customers' attributes (which rule schemes read) are kept without the ``contacts``
    columns (:func:`segvalue.pipeline.ingest.contact_columns_of`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.pipeline.ingest import load
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> tables = history_tables(load(cfg), {"categories": None, "channels": None})
    >>> sorted(tables), tables["history_orders"].column_names
    (['history_orders'], ['customer_id', 'order_id', 'order_ts', 'amount'])
    """
    from segvalue.features.materialise import to_arrow

    tables = data.tables
    out = {}
    if "customers" in tables:
        customers = tables["customers"]
        kept = [c for c in customers.columns if c not in contacts and not c.startswith("_")]
        out[HISTORY["customers"]] = to_arrow(customers.select(*kept).order_by("customer_id"))
    orders = tables["orders"]
    columns = ["customer_id", "order_id", "order_ts", "amount"]
    if "discount" in orders.columns:
        columns.append("discount")
    ordered = orders.order_by(["customer_id", "order_ts", "order_id"]).select(*columns)
    out[HISTORY["orders"]] = to_arrow(ordered)
    if features.get("categories") and "order_lines" in tables:
        lines = tables["order_lines"]
        owners = orders.select("order_id", "customer_id").distinct()
        joined = lines.join(owners, "order_id").select(
            "customer_id", "order_id", "category", "line_amount"
        )
        out[HISTORY["order_lines"]] = to_arrow(joined.order_by(["customer_id", "order_id"]))
    if features.get("channels") is not None and "touchpoints" in tables:
        touches = tables["touchpoints"]
        keep = ["customer_id", "ts", "channel"] + (["event"] if "event" in touches.columns else [])
        ordered = touches.select(*keep).order_by(["customer_id", "ts"])
        out[HISTORY["touchpoints"]] = to_arrow(ordered)
    return out
