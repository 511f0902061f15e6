"""Validation as named rules: parse, check, split into clean rows and rejects, report.

Every row of every source ends in exactly one of three places: the clean table, the
rejects table (with the rule, the column, the raw value and a reason), or the rows older
than the lookback window (counted in the report). Nothing is dropped silently.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.datatypes as dtypes
import ibis.expr.types as ir
from ibis.backends import BaseBackend

from segvalue.config import Config
from segvalue.data.contract import CONTRACT, TableSpec
from segvalue.data.parse import parse_column
from segvalue.data.readers import RawSource, materialise
from segvalue.errors import DataValidationError
from segvalue.units import TimeUnit

__all__ = [
    "RULES",
    "TableReport",
    "ValidatedData",
    "ValidationReport",
    "validate_sources",
]

#: The named rules, in the order they are checked; a row is rejected by the first it breaks.
RULES: dict[str, str] = {
    "null_id": "an identifier is empty",
    "missing_value": "a required value is empty",
    "unparseable_value": "a value cannot be parsed as its type",
    "duplicate_key": "the key (order id, customer id) appeared on an earlier row",
    "zero_amount": "an order amount is exactly zero (only with validation.zero_amounts: reject)",
    "after_as_of": "an event is dated after the as-of date",
    "unknown_customer": "the customer id is not in the customers table",
    "unknown_order": "the order id is not among the accepted orders",
    "return_without_purchase": "a return (negative amount) for a customer with no purchase",
}

# Tables checked after the tables they refer to.
_ORDER = ("customers", "orders", "order_lines", "touchpoints", "channel_spend", "experiments")
_LOOKBACK_TABLES = ("orders", "touchpoints", "channel_spend", "contact_log")

REJECT_SCHEMA = ibis.schema(
    {
        "table": "string",
        "source": "string",
        "row": "int64",
        "rule": "string",
        "column": "string",
        "value": "string",
        "reason": "string",
    }
)


@dataclass
class TableReport:
    """What happened to one source table."""

    table: str
    source: str
    rows_read: int
    rows_accepted: int
    rejected: dict[str, int] = field(default_factory=dict)
    dropped_by_lookback: int = 0
    returns: int = 0
    returns_amount: float = 0.0
    zero_amounts: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)
    earliest: str | None = None
    latest: str | None = None

    @property
    def rows_rejected(self) -> int:
        """Rows rejected by any rule."""
        return sum(self.rejected.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "table": self.table,
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_accepted": self.rows_accepted,
            "rows_rejected": self.rows_rejected,
            "rejected_by_rule": dict(self.rejected),
            "dropped_by_lookback": self.dropped_by_lookback,
            "returns": self.returns,
            "returns_amount": round(self.returns_amount, 2),
            "zero_amounts": self.zero_amounts,
            "examples_by_rule": {k: list(v) for k, v in self.examples.items()},
            "earliest_event": self.earliest,
            "latest_event": self.latest,
        }


@dataclass
class ValidationReport:
    """The whole ingestion report: per-table counts, freshness and warnings."""

    as_of: dt.date
    time_unit: TimeUnit
    loaded_at: dt.datetime
    lookback_start: dt.date | None
    tables: dict[str, TableReport] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_rejected(self) -> int:
        """Rejected rows over all tables."""
        return sum(t.rows_rejected for t in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "as_of": self.as_of.isoformat(),
            "time_unit": self.time_unit.value,
            "loaded_at": self.loaded_at.isoformat(timespec="seconds"),
            "lookback_start": self.lookback_start.isoformat() if self.lookback_start else None,
            "rows_rejected": self.rows_rejected,
            "tables": {k: v.to_dict() for k, v in self.tables.items()},
            "warnings": list(self.warnings),
        }


@dataclass
class ValidatedData:
    """Clean, typed tables in the engine plus the rejects and the report."""

    con: BaseBackend
    tables: dict[str, ir.Table]
    rejects: ir.Table
    report: ValidationReport


def _context(raw: RawSource) -> dict[str, Any]:
    return {"decimal": raw.decimal, "date_format": raw.date_format, "timezone": raw.timezone}


def _parsed(raw: RawSource, spec: TableSpec) -> tuple[ir.Table, list[tuple[Any, str, Any, Any]]]:
    """Typed table plus the parse / null rules as (condition, rule, column, reason).

    The raw value of every parsed column is kept as ``_raw_<column>`` so that every rule
    refers to one relation and rejects can show what the source held.
    """
    t = raw.table
    present = [c for c in spec.columns if c.name in t.columns]
    typed = t.mutate(**{f"_raw_{c.name}": t[c.name] for c in present}).mutate(
        **{
            c.name: parse_column(t[c.name], "id" if c.kind == "id" else c.kind, **_context(raw))
            for c in present
        }
    )
    checks: list[tuple[Any, str, Any, Any]] = []
    for col in (c for c in present if c.kind == "id" and c.required):
        reason = ibis.literal(f"{col.name} is empty")
        checks.append((typed[col.name].isnull(), "null_id", col.name, reason))
    for col in (c for c in present if c.kind != "id"):
        value, raw_value = typed[col.name], typed[f"_raw_{col.name}"]
        is_text = raw_value.type().is_string()
        if col.required:
            empty = raw_value.isnull()
            if is_text:
                empty = empty | (raw_value.strip() == "")
            checks.append((empty, "missing_value", col.name, ibis.literal(f"{col.name} is empty")))
        if raw_value.type() != value.type():
            bad = raw_value.notnull() & value.isnull()
            if is_text:
                bad = bad & (raw_value.strip() != "")
            what = {"float": "a number", "int": "a whole number", "bool": "true/false"}.get(
                col.kind, f"a {col.kind}"
            )
            reason = ibis.literal(f"{col.name} '").concat(
                raw_value.cast(dtypes.string), ibis.literal(f"' cannot be parsed as {what}")
            )
            checks.append((bad, "unparseable_value", col.name, reason))
    return typed, checks


def _row_checks(
    t: ir.Table,
    spec: TableSpec,
    raw: RawSource,
    as_of: dt.date,
    clean: dict[str, ir.Table],
    reject_zero: bool,
) -> list[tuple[Any, str, Any, Any]]:
    checks: list[tuple[Any, str, Any, Any]] = []
    if spec.key is not None:
        key = t[spec.key]
        first = t._row.min().over(group_by=key)
        reason = ibis.literal(f"{spec.key} '").concat(
            key, ibis.literal(f"' already appeared on {raw.row_word} "), first.cast("string")
        )
        checks.append((key.notnull() & (t._row != first), "duplicate_key", spec.key, reason))
    if spec.name == "orders" and reject_zero:
        checks.append((t.amount == 0, "zero_amount", "amount", ibis.literal("amount is 0")))
    time_col = spec.time_column
    if time_col is not None and time_col in t.columns and spec.name != "customers":
        value = t[time_col]
        limit: Any = as_of if value.type().is_date() else _end_of_day(as_of)
        reason = ibis.literal(f"{time_col} ").concat(
            value.cast("string"), ibis.literal(f" is after the as-of date {as_of.isoformat()}")
        )
        checks.append((value > limit, "after_as_of", time_col, reason))
    if "customers" in clean and spec.name != "customers" and "customer_id" in t.columns:
        known = clean["customers"].customer_id
        reason = ibis.literal("customer_id '").concat(
            t.customer_id, ibis.literal("' is not in the customers table")
        )
        checks.append((~t.customer_id.isin(known), "unknown_customer", "customer_id", reason))
    if spec.name == "order_lines" and "orders" in clean:
        reason = ibis.literal("order_id '").concat(
            t.order_id, ibis.literal("' is not among the accepted orders")
        )
        known_orders = clean["orders"].order_id
        checks.append((~t.order_id.isin(known_orders), "unknown_order", "order_id", reason))
    return checks


def _end_of_day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time()) + dt.timedelta(days=1) - dt.timedelta(microseconds=1)


def _annotate(
    con: BaseBackend,
    raw: RawSource,
    as_of: dt.date,
    clean: dict[str, ir.Table],
    reject_zero: bool,
) -> ir.Table:
    spec = CONTRACT[raw.name]
    typed, checks = _parsed(raw, spec)
    checks += _row_checks(typed, spec, raw, as_of, clean, reject_zero)
    # A condition on a null value is null, not true: fill with False so that the first
    # rule that is *known* to be broken wins.
    rule = ibis.cases(*((c.fill_null(False), name) for c, name, _, _ in checks), else_=None)
    column = ibis.cases(*((c.fill_null(False), col) for c, _, col, _ in checks), else_=None)
    reason = ibis.cases(*((c.fill_null(False), r) for c, _, _, r in checks), else_=None)
    value = ibis.cases(
        *((c.fill_null(False), typed[f"_raw_{col}"].cast("string")) for c, _, col, _ in checks),
        else_=None,
    )
    annotated = typed.mutate(_rule=rule, _column=column, _reason=reason, _value=value)
    if raw.name == "orders":
        annotated = _returns_without_purchase(annotated)
    annotated = annotated.drop(*(c for c in typed.columns if c.startswith("_raw_")))
    return materialise(con, annotated, f"val_{raw.name}")


def _returns_without_purchase(t: ir.Table) -> ir.Table:
    """Reject returns of customers with no accepted purchase to net them against.

    Checked after every other rule: a purchase that is itself rejected absorbs no return.
    """
    accepted = t._rule.isnull()
    buyer = (accepted & (t.amount >= 0)).any().over(group_by=t.customer_id)
    orphan = (accepted & (t.amount < 0) & ~buyer.fill_null(False)).fill_null(False)
    reason = ibis.literal("return for customer '").concat(
        t.customer_id, ibis.literal("' who has no accepted purchase")
    )
    return t.mutate(
        _rule=orphan.ifelse(ibis.literal("return_without_purchase"), t._rule),
        _column=orphan.ifelse(ibis.literal("amount"), t._column),
        _reason=orphan.ifelse(reason, t._reason),
        _value=orphan.ifelse(t._raw_amount.cast("string"), t._value),
    )


_EMPTY_ORDERS = "the orders table is empty (no data rows)"
_EMPTY_ORDERS_FIX = "point sources.orders at the file or table holding the orders"


def _default_as_of(raws: dict[str, RawSource]) -> dt.date:
    orders = raws["orders"]
    ts = parse_column(orders.table.order_ts, "timestamp", **_context(orders))
    row = orders.table.aggregate(n=orders.table.count(), latest=ts.max()).to_pyarrow()
    if row["n"][0].as_py() == 0:
        raise DataValidationError(f"{orders.label}: {_EMPTY_ORDERS}", fix=_EMPTY_ORDERS_FIX)
    latest = row["latest"][0].as_py()
    if latest is None:
        raise DataValidationError(
            f"{orders.label}: no parseable order_ts, so the as-of date cannot be inferred",
            fix="fix the order_ts values or set as_of in segvalue.yaml",
        )
    return latest.date() if isinstance(latest, dt.datetime) else latest


def _scalar(expr: Any) -> Any:
    return expr.to_pyarrow().as_py()


def validate_sources(
    con: BaseBackend,
    raws: dict[str, RawSource],
    config: Config,
    *,
    now: dt.datetime | None = None,
) -> ValidatedData:
    """Parse and check every source, splitting rows into clean data and rejects.

    Parameters
    ----------
    con
        The engine holding the raw sources.
    raws
        Raw sources by logical table name (``orders`` is required).
    config
        The configuration (as-of date, lookback, strictness, sufficiency thresholds).
    now
        Load time recorded for data freshness (default: the current UTC time).

    Returns
    -------
    ValidatedData

    Raises
    ------
    DataValidationError
        If a required table is empty or nothing valid remains, or, with
        ``validation.strict``, if any row breaks a rule (nothing is written then).

    Examples
    --------
    >>> import ibis
    >>> from segvalue.config import parse_config
    >>> from segvalue.data.readers import RawSource
    >>> con = ibis.duckdb.connect()
    >>> t = con.create_table("o", {"order_id": ["1", "1"], "customer_id": ["a", "b"],
    ...     "order_ts": ["2024-01-02", "2024-01-03"], "amount": ["5", "7"], "_row": [2, 3]})
    >>> cfg = parse_config({"sources": {"orders": {"table": "o"}}})
    >>> v = validate_sources(con, {"orders": RawSource("orders", t, "o.csv", "line")}, cfg)
    >>> v.report.tables["orders"].rejected
    {'duplicate_key': 1}
    """
    if "orders" not in raws:
        raise DataValidationError("no orders source", fix="add sources.orders to segvalue.yaml")
    as_of = config.as_of or _default_as_of(raws)
    unit = config.time_unit
    lookback_start = None
    if config.lookback is not None:
        lookback_start = as_of - dt.timedelta(days=config.lookback * unit.days)
    report = ValidationReport(
        as_of=as_of,
        time_unit=unit,
        loaded_at=now or dt.datetime.now(dt.UTC).replace(tzinfo=None),
        lookback_start=lookback_start,
    )
    clean: dict[str, ir.Table] = {}
    rejects: list[ir.Table] = []
    names = [n for n in _ORDER if n in raws] + [n for n in raws if n not in _ORDER]
    for name in names:
        raw = raws[name]
        rows_read = int(_scalar(raw.table.count()))
        if rows_read == 0:
            if name == "orders":
                raise DataValidationError(f"{raw.label}: {_EMPTY_ORDERS}", fix=_EMPTY_ORDERS_FIX)
            report.warnings.append(f"{raw.label}: the {name} table is empty")
        annotated = _annotate(con, raw, as_of, clean, config.validation.zero_amounts == "reject")
        counts = annotated.filter(annotated._rule.notnull()).group_by("_rule").agg(n=ibis._.count())
        rejected = {r["_rule"]: int(r["n"]) for r in counts.to_pyarrow().to_pylist()}
        table_rejects = annotated.filter(annotated._rule.notnull()).select(
            table=ibis.literal(name),
            source=ibis.literal(raw.label),
            row=annotated._row.cast("int64"),
            rule=annotated._rule,
            column=annotated._column,
            value=annotated._value,
            reason=annotated._reason,
        )
        rejects.append(table_rejects)
        examples = _examples(table_rejects, raw.row_word) if rejected else {}
        good = annotated.filter(annotated._rule.isnull()).drop(
            "_rule", "_column", "_reason", "_value"
        )
        dropped = 0
        spec = CONTRACT[name]
        if lookback_start is not None and name in _LOOKBACK_TABLES and spec.time_column:
            value = good[spec.time_column]
            start: Any = (
                lookback_start
                if value.type().is_date()
                else dt.datetime.combine(lookback_start, dt.time())
            )
            dropped = int(_scalar(good.filter(value < start).count()))
            good = good.filter(value >= start)
        table_report = TableReport(name, raw.label, rows_read, 0, rejected, dropped)
        table_report.examples = examples
        _describe(good, spec, table_report)
        report.tables[name] = table_report
        clean[name] = good
        if name == "orders" and table_report.rows_accepted == 0 and rows_read > 0:
            reasons = ", ".join(f"{k}: {v}" for k, v in rejected.items()) or "lookback window"
            error = DataValidationError(
                f"{raw.label}: no valid orders remain ({reasons})",
                fix="see the rejects (run `segvalue validate`) and fix the input or as_of",
            )
            error.rejects = ibis.union(*rejects) if len(rejects) > 1 else rejects[0]
            raise error
    all_rejects = ibis.union(*rejects) if len(rejects) > 1 else rejects[0]
    if config.validation.strict and report.rows_rejected:
        error = DataValidationError(_strict_message(report, all_rejects), fix=_STRICT_FIX)
        error.rejects = all_rejects
        raise error
    _sufficiency(clean["orders"], report, config)
    return ValidatedData(con, clean, all_rejects, report)


_STRICT_FIX = "fix these rows, or set validation.strict: false to reject them and go on"


def _strict_message(report: ValidationReport, rejects: ir.Table) -> str:
    parts = []
    for t in report.tables.values():
        for rule, n in t.rejected.items():
            parts.append(f"{t.source}: {n} row{'s' if n > 1 else ''} break {rule}")
    examples = rejects.order_by(["table", "row"]).limit(5).to_pyarrow().to_pylist()
    lines = [f"  {e['source']} {e['row']}: {e['reason']}" for e in examples]
    return (
        "strict validation failed, nothing was written: "
        + "; ".join(parts)
        + "\n"
        + "\n".join(lines)
    )


def _examples(table_rejects: ir.Table, row_word: str, per_rule: int = 3) -> dict[str, list[str]]:
    """The first few rejects of each rule, as '<line> N: reason' for the report."""
    first = table_rejects.mutate(k=ibis.row_number().over(group_by="rule", order_by="row"))
    rows = first.filter(first.k < per_rule).order_by(["rule", "row"]).to_pyarrow().to_pylist()
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["rule"], []).append(f"{row_word} {r['row']}: {r['reason']}")
    return out


def _describe(good: ir.Table, spec: TableSpec, table_report: TableReport) -> None:
    aggs: dict[str, Any] = {"n": good.count()}
    if spec.time_column and spec.time_column in good.columns:
        aggs["earliest"] = good[spec.time_column].min()
        aggs["latest"] = good[spec.time_column].max()
    if spec.name == "orders":
        aggs["returns"] = (good.amount < 0).sum()
        aggs["returns_amount"] = good.amount.clip(upper=0).sum()
        aggs["zero_amounts"] = (good.amount == 0).sum()
    row = good.aggregate(**aggs).to_pyarrow().to_pylist()[0]
    table_report.rows_accepted = int(row["n"])
    if row.get("earliest") is not None:
        table_report.earliest = row["earliest"].isoformat()
        table_report.latest = row["latest"].isoformat()
    table_report.returns = int(row.get("returns") or 0)
    table_report.returns_amount = 0.0 - float(row.get("returns_amount") or 0.0)  # no -0.0
    table_report.zero_amounts = int(row.get("zero_amounts") or 0)


def _sufficiency(orders: ir.Table, report: ValidationReport, config: Config) -> None:
    """Warn when the data are too thin for predictive (BTYD) models."""
    purchases = orders.filter(orders.amount >= 0)
    per_customer = purchases.group_by("customer_id").agg(days=purchases.order_ts.date().nunique())
    stats = per_customer.aggregate(
        repeaters=(per_customer.days > 1).sum(), customers=per_customer.count()
    )
    row = stats.to_pyarrow().to_pylist()[0]
    repeaters = int(row["repeaters"] or 0)
    minimum = config.validation.min_repeat_customers
    if repeaters < minimum:
        report.warnings.append(
            f"only {repeaters} repeat customers (fewer than {minimum}): too thin for reliable "
            "purchase-prediction (BTYD) models"
        )
    earliest = report.tables["orders"].earliest
    if earliest is not None:
        first = dt.date.fromisoformat(earliest[:10])
        history = (report.as_of - first).days / report.time_unit.days
        horizon = config.validation.prediction_horizon
        needed = config.validation.min_history_multiple * horizon
        if history < needed:
            unit = report.time_unit.value
            report.warnings.append(
                f"{history:.1f} {unit}s of order history is less than "
                f"{config.validation.min_history_multiple:g}x the prediction horizon "
                f"({horizon:g} {unit}s): predictions beyond the history are extrapolation"
            )
