"""Validation as named rules: parse, check, split into clean rows and rejects, report.

Every row of every source ends in exactly one of three places: the clean table, the
rejects table (with the rule, the column, the raw value and a reason), or the rows older
than the lookback window (counted in the report). Nothing is dropped silently.

One pass per table: the engine parses every column and computes, in one ``CASE``, the
small code of the first rule a row breaks; the result is materialised once (a file is read
and parsed in that same pass). Rules that compare rows with each other (duplicate keys,
returns without a purchase) then run on the stored rows. Rule names, columns, raw values
and reason texts are built only in the rejects projection, for rejected rows.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.datatypes as dtypes
import ibis.expr.types as ir
from ibis.backends import BaseBackend

from segvalue.config import TOUCHPOINT_EVENTS, Config
from segvalue.data.contract import CONTRACT, TableSpec
from segvalue.data.parse import parse_column
from segvalue.data.readers import (
    RawSource,
    fetch_arrow,
    materialise,
    number_rows,
    reading,
    row_id,
)
from segvalue.errors import DataValidationError
from segvalue.units import TimeUnit

__all__ = [
    "BLANKS",
    "RULES",
    "NoValidRowsError",
    "TableReport",
    "ValidatedData",
    "ValidationReport",
    "guess_date_format",
    "validate_sources",
]

#: The named rules, in the order they are checked; a row is rejected by the first it breaks.
RULES: dict[str, str] = {
    "null_id": "an identifier is empty",
    "missing_value": "a required value is empty",
    "unparseable_value": "a value cannot be parsed as its type",
    "non_finite": "a number is NaN or infinite (nan, inf, -Infinity, or out of range: 1e400)",
    "implausible_value": "a money value is beyond +/- validation.max_amount (default 1e9)",
    "unknown_event": "a touchpoint event is not one of " + ", ".join(TOUCHPOINT_EVENTS),
    "duplicate_key": "the key (order id, customer id) appeared on an earlier row",
    "zero_amount": "an order amount is exactly zero (only with validation.zero_amounts: reject)",
    "future_timestamp": "an event is dated after the load time (checked before as-of inference)",
    "after_as_of": "an event is dated after the as-of date",
    "unknown_customer": "the customer id is not in the customers table",
    "unknown_order": "the order id is not among the accepted orders",
    "return_without_purchase": "a return (negative amount) of a customer with no accepted purchase",
}

# Tables checked after the tables they refer to.
_ORDER = ("customers", "orders", "order_lines", "touchpoints", "channel_spend", "experiments")
_LOOKBACK_TABLES = ("orders", "touchpoints", "channel_spend", "contact_log")
# A table refers to another through these rules; rejections there cascade here.
_REFERS = {
    "unknown_customer": ("customers", "customer_id"),
    "unknown_order": ("orders", "order_id"),
}

# Timestamps up to a day after the load time are accepted: data written in a time zone east
# of UTC are legitimately "ahead" of the UTC clock.
_FUTURE_MARGIN = dt.timedelta(days=1)

# Blanks that the engines' TRIM leaves at the ends of a value (no-break and typographic
# spaces, zero-width space, byte-order mark); identifiers are trimmed of them too.
_UNICODE_BLANKS = "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
_UNICODE_BLANKS += "\u200a\u200b\u2028\u2029\u202f\u205f\u3000\ufeff"
BLANKS = _UNICODE_BLANKS

_LOOKBACK_CODE = 127  # not a rule: rows older than the lookback window

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
    ids_trimmed: int = 0

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
            "ids_trimmed": self.ids_trimmed,
            "examples_by_rule": {k: list(v) for k, v in self.examples.items()},
            "earliest_event": self.earliest,
            "latest_event": self.latest,
        }


@dataclass
class ValidationReport:
    """The whole ingestion report: per-table counts, freshness, notes and warnings."""

    as_of: dt.date
    time_unit: TimeUnit
    loaded_at: dt.datetime
    lookback_start: dt.date | None
    tables: dict[str, TableReport] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    as_of_inferred: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def rows_rejected(self) -> int:
        """Rejected rows over all tables."""
        return sum(t.rows_rejected for t in self.tables.values())

    @property
    def ids_trimmed(self) -> int:
        """Identifiers trimmed of surrounding blanks, over all tables."""
        return sum(t.ids_trimmed for t in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "as_of": self.as_of.isoformat(),
            "as_of_inferred": self.as_of_inferred,
            "time_unit": self.time_unit.value,
            "loaded_at": self.loaded_at.isoformat(timespec="seconds"),
            "lookback_start": self.lookback_start.isoformat() if self.lookback_start else None,
            "rows_rejected": self.rows_rejected,
            "ids_trimmed": self.ids_trimmed,
            "tables": {k: v.to_dict() for k, v in self.tables.items()},
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }


class NoValidRowsError(DataValidationError):
    """Nothing valid remains of a required table; carries the rejects found so far.

    ``rejects`` (an Arrow table with the columns of the rejects table, or None) lets the
    caller still write the rejects file the user asked for.
    """

    def __init__(self, message: str, *, fix: str | None = None, rejects: Any = None) -> None:
        super().__init__(message, fix=fix)
        self.rejects = rejects


@dataclass
class ValidatedData:
    """Clean, typed tables in the engine plus the rejects and the report."""

    con: BaseBackend
    tables: dict[str, ir.Table]
    rejects: ir.Table
    report: ValidationReport


# --- the rules of one table ----------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    """One rule on one column; its position in the table's list is the row's code."""

    rule: str
    column: str
    broken: Any  # a boolean expression on the typed table; None: applied after the pass
    reason: Callable[[ir.Table], Any]  # the reason text, built on rejected rows only


@dataclass
class _Table:
    """One validated table: its checks, the coded rows in the engine, and the report."""

    name: str
    raw: RawSource
    checks: list[_Check]
    coded: ir.Table  # every row with _code (null: accepted)
    report: TableReport
    rejects: ir.Table


def _text(value: str) -> Any:
    return ibis.literal(value)


def _quoted(column: str, middle: str) -> Callable[[ir.Table], Any]:
    """A reason "<column> '<raw value>'<middle>"."""
    return lambda r: _text(f"{column} '").concat(r._value.fill_null(""), _text(f"'{middle}"))


def _fixed(reason: str) -> Callable[[ir.Table], Any]:
    return lambda r: _text(reason)


def _trimmed_text(value: Any) -> Any:
    """Text trimmed of blanks at both ends (tabs, newlines, NBSP, ...); empty becomes null.

    ``parse_column`` returns text columns unchanged, so the trimming happens here. An
    anchored regex test picks the few values with a blank at an end and only those are
    rewritten: cheaper than TRIM with a character set on every value (0.34 s against
    1.1 s for 2.77M ids in DuckDB).
    """
    blank = f"[\\s\\x0b{_UNICODE_BLANKS}]"
    edge = value.re_search(f"^{blank}|{blank}$")
    trimmed = edge.ifelse(value.re_replace(f"^{blank}+|{blank}+$", ""), value)
    return trimmed.nullif("")


def _typed(
    t: ir.Table,
    raw: RawSource,
    spec: TableSpec,
    event_map: dict[str, str],
    line_numbers: set[str],
) -> ir.Table:
    """``t`` (rows of ``raw``) with every contract column parsed, its raw value as _raw_<c>.

    ``line_numbers`` names the columns mapped to ``_row``: digits, nothing to trim.
    """
    present = [c for c in spec.columns if c.name in t.columns]
    renamed = t.rename({f"_raw_{c.name}": c.name for c in present})
    parsed: dict[str, Any] = {}
    for c in present:
        source = renamed[f"_raw_{c.name}"]
        if c.name in line_numbers:
            value = source
        elif c.kind in ("id", "string") and source.type().is_string():
            value = _trimmed_text(source)
        else:
            value = parse_column(
                source,
                c.kind,
                decimal=raw.decimal,
                date_format=raw.date_format,
                timezone=raw.timezone,
            )
        if spec.name == "touchpoints" and c.name == "event":
            mapped = [(value == k, _text(v)) for k, v in event_map.items()]
            value = ibis.cases(*mapped, else_=value.lower()) if mapped else value.lower()
        parsed[c.name] = value
    return renamed.mutate(**parsed)


def _what(kind: str) -> str:
    return {"float": "a number", "int": "a whole number", "bool": "true/false"}.get(
        kind, f"a {kind}"
    )


def _intrinsic_checks(
    typed: ir.Table,
    raw: RawSource,
    spec: TableSpec,
    config: Config,
    now: dt.datetime,
    line_numbers: set[str],
) -> list[_Check]:
    """Rules that look at one row only (and duplicate_key, applied after the pass).

    ``line_numbers`` names the columns mapped to ``_row``: never empty, never repeated.
    """
    present = [c for c in spec.columns if c.name in typed.columns]
    checks: list[_Check] = []
    for c in present:
        value, raw_value = typed[c.name], typed[f"_raw_{c.name}"]
        is_text = raw_value.type().is_string()
        if c.kind == "id":
            if c.required and c.name not in line_numbers:
                checks.append(
                    _Check("null_id", c.name, value.isnull(), _fixed(f"{c.name} is empty"))
                )
            continue
        # The parsed value is tested first: the engine then trims only the rows it failed.
        if c.required:
            empty = raw_value.isnull()
            if is_text:
                empty = value.isnull() & (empty | (raw_value.strip() == ""))
            checks.append(_Check("missing_value", c.name, empty, _fixed(f"{c.name} is empty")))
        if raw_value.type() != value.type():
            bad = value.isnull() & raw_value.notnull()
            if is_text:
                bad = bad & (raw_value.strip() != "")
            reason = _quoted(c.name, f" cannot be parsed as {_what(c.kind)}")
            checks.append(_Check("unparseable_value", c.name, bad, reason))
        if value.type().is_floating():
            finite = _quoted(c.name, " is not a finite number")
            checks.append(_Check("non_finite", c.name, value.isnan() | value.isinf(), finite))
        if c.name in spec.money and value.type().is_numeric():
            most = config.validation.max_amount
            reason = _quoted(c.name, f" is beyond +/-{most:g} (validation.max_amount)")
            checks.append(_Check("implausible_value", c.name, value.abs() > most, reason))
        if spec.name == "touchpoints" and c.name == "event":
            accepted = ", ".join(TOUCHPOINT_EVENTS)
            reason = _quoted(
                "event", f" is not one of {accepted} (see sources.touchpoints.event_map)"
            )
            unknown = value.notnull() & ~value.isin(TOUCHPOINT_EVENTS)
            checks.append(_Check("unknown_event", "event", unknown, reason))
    if spec.key is not None and spec.key in typed.columns and spec.key not in line_numbers:
        key = spec.key
        where = f"' already appeared on {raw.row_word} "
        checks.append(
            _Check(
                "duplicate_key",
                key,
                None,  # compares rows: applied to the stored rows by _with_duplicates
                lambda r: _text(f"{key} '").concat(
                    r[key], _text(where), r._first.cast(dtypes.string)
                ),
            )
        )
    if spec.name == "orders" and config.validation.zero_amounts == "reject":
        checks.append(_Check("zero_amount", "amount", typed.amount == 0, _fixed("amount is 0")))
    time_col = spec.time_column
    if time_col is not None and time_col in typed.columns:
        value = typed[time_col]
        limit: Any = now + _FUTURE_MARGIN
        if value.type().is_date():
            limit = limit.date()
        stamp = now.strftime("%Y-%m-%d %H:%M")
        reason = _quoted(time_col, f" is after the load time {stamp} UTC")
        checks.append(_Check("future_timestamp", time_col, value > limit, reason))
    return checks


def _relational_checks(
    typed: ir.Table, spec: TableSpec, as_of: dt.date | None, done: dict[str, _Table]
) -> list[_Check]:
    """Rules that compare with the as-of date or with other tables."""
    checks: list[_Check] = []
    time_col = spec.time_column or ""
    if as_of is not None and time_col in typed.columns and spec.name != "customers":
        value = typed[time_col]
        limit: Any = as_of if value.type().is_date() else _end_of_day(as_of)
        after = f" is after the as-of date {as_of.isoformat()}"
        checks.append(
            _Check(
                "after_as_of",
                time_col,
                value > limit,
                lambda r: _text(f"{time_col} ").concat(r[time_col].cast("string"), _text(after)),
            )
        )
    if "customers" in done and spec.name != "customers" and "customer_id" in typed.columns:
        known = _clean(done["customers"]).customer_id
        checks.append(
            _Check(
                "unknown_customer",
                "customer_id",
                ~typed.customer_id.isin(known),
                lambda r: _text("customer_id '").concat(
                    r.customer_id, _text("' is not in the customers table")
                ),
            )
        )
    if spec.name == "order_lines" and "orders" in done:
        known_orders = _clean(done["orders"]).order_id
        checks.append(
            _Check(
                "unknown_order",
                "order_id",
                ~typed.order_id.isin(known_orders),
                lambda r: _text("order_id '").concat(
                    r.order_id, _text("' is not among the accepted orders")
                ),
            )
        )
    return checks


_RETURN_CHECK = _Check(
    "return_without_purchase",
    "amount",
    None,
    lambda r: _text("return for customer '").concat(
        r.customer_id, _text("' who has no accepted purchase")
    ),
)


def _end_of_day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time()) + dt.timedelta(days=1) - dt.timedelta(microseconds=1)


def _with_duplicates(
    con: BaseBackend, coded: ir.Table, key: str, index: int, prefix: str
) -> ir.Table:
    """Code ``index`` (duplicate_key) on rows whose key appeared on an earlier row.

    Runs on the stored rows, after the pass: an aggregate over the keys, not a window (a
    window sorts the table) nor a join in the pass (that would read a file twice). A row
    that already breaks an earlier rule keeps that rule, as in the pass's ``CASE``; other
    codes of the pass are for later rules, which duplicate_key precedes. Adds ``_first``,
    the first row of a key that appears more than once (else null), for the reason.
    """
    keys = coded.filter(coded[key].notnull())
    repeated = (
        keys.group_by(key)
        .aggregate(_first=keys._row.min(), _n=keys.count())
        .filter(ibis._._n > 1)
        .drop("_n")
    )
    if int(_scalar(repeated.count())) == 0:
        return coded.mutate(_first=ibis.null(dtypes.int64))
    joined = coded.left_join(repeated, key)
    joined = joined.drop(f"{key}_right") if f"{key}_right" in joined.columns else joined
    repeat = joined._first.notnull() & (joined._row != joined._first)
    earlier = joined._code.notnull() & (joined._code < index)
    code = (repeat & ~earlier).ifelse(ibis.literal(index, dtypes.int8), joined._code)
    # Stored again: every later query would otherwise repeat the join.
    return materialise(con, joined.mutate(_code=code), prefix)


def _coded(
    con: BaseBackend,
    raw: RawSource,
    spec: TableSpec,
    config: Config,
    now: dt.datetime,
    as_of: dt.date | None,
    done: dict[str, _Table],
) -> tuple[list[_Check], ir.Table]:
    """Parse, check and materialise one table in one pass: the rows with their rule code."""
    source = config.sources.get(raw.name)
    mapping = source.columns if source is not None else {}
    line_numbers = {logical for logical, column in mapping.items() if column == "_row"}
    # A file not read yet is typed without _row: its rows are numbered once stored.
    rows = raw.table if raw.file is None else raw.file.table
    event_map = source.event_map if source is not None else {}
    typed = _typed(rows, raw, spec, event_map, line_numbers)
    checks = _intrinsic_checks(typed, raw, spec, config, now, line_numbers)
    checks += _relational_checks(typed, spec, as_of, done)
    order = list(RULES)
    checks.sort(key=lambda c: order.index(c.rule))
    if spec.name == "orders":
        checks.append(_RETURN_CHECK)
    # A CASE moves past a condition that is null (a rule on a null value), so the first
    # rule that is *known* to be broken wins. The raw values are not carried: the rejects
    # projection reads them back for the few rejected rows.
    active = [(i, c) for i, c in enumerate(checks) if c.broken is not None]
    code = ibis.cases(*((c.broken, i) for i, c in active), else_=ibis.null(dtypes.int8))
    ids = [
        c.name
        for c in spec.columns
        if c.kind == "id"
        and c.name in typed.columns
        and c.name not in line_numbers
        and typed[f"_raw_{c.name}"].type().is_string()
    ]
    extra: dict[str, Any] = {"_code": code}
    if ids:
        # ifelse, not a cast: PostgreSQL cannot cast a boolean to a small integer.
        one, zero = ibis.literal(1, dtypes.int8), ibis.literal(0, dtypes.int8)
        trimmed = [
            (typed[f"_raw_{c}"].notnull() & (typed[f"_raw_{c}"] != typed[c])).ifelse(one, zero)
            for c in ids
        ]
        total = trimmed[0]
        for t in trimmed[1:]:
            total = total + t
        extra["_trimmed"] = total.cast(dtypes.int8)
    columns = list(raw.table.columns)
    prefix = f"val_{raw.name}"
    if raw.file is None or source is None:
        coded = materialise(con, typed.select(*columns, **extra), prefix)
    else:
        # A file read in this pass: _row and the columns mapped to it come from the stored
        # order, so the engine reads and parses the file on every core (computing _row in
        # the pass is a window, which runs on one thread).
        with reading(raw.label, source):
            stored = materialise(con, typed.select(*rows.columns, **extra), prefix)
        stored = number_rows(stored, raw.file.row_offset)
        stored = stored.mutate(**{c: row_id(stored._row) for c in line_numbers})
        coded = stored.select(*columns, *extra)
    duplicate = next((i for i, c in enumerate(checks) if c.rule == "duplicate_key"), None)
    if duplicate is not None:
        coded = _with_duplicates(con, coded, checks[duplicate].column, duplicate, prefix)
    return checks, coded


def _clean(table: _Table) -> ir.Table:
    coded = table.coded
    drop = [c for c in ("_code", "_first", "_trimmed") if c in coded.columns]
    return coded.filter(coded._code.isnull()).drop(*drop)


def _with_lookback(coded: ir.Table, time_col: str | None, start: dt.date | None) -> ir.Table:
    if start is None or time_col is None or time_col not in coded.columns:
        return coded
    value = coded[time_col]
    begin: Any = start if value.type().is_date() else dt.datetime.combine(start, dt.time())
    old = coded._code.isnull() & (value < begin).fill_null(False)
    return coded.mutate(_code=old.ifelse(ibis.literal(_LOOKBACK_CODE, dtypes.int8), coded._code))


def _with_returns(con: BaseBackend, coded: ir.Table, index: int) -> ir.Table:
    """Reject returns of customers with no accepted purchase to net them against.

    Checked after every other rule (a purchase that is itself rejected absorbs no return),
    on the customers with a return only; rows before the lookback window still count.
    """
    kept = coded.filter(coded._code.isnull() | (coded._code == _LOOKBACK_CODE))
    returners = kept.filter(kept.amount < 0).select("customer_id").distinct()
    buyers = kept.filter((kept.amount >= 0) & kept.customer_id.isin(returners.customer_id))
    orphans = returners.filter(~returners.customer_id.isin(buyers.customer_id))
    orphans = materialise(con, orphans, "orphans")
    if int(_scalar(orphans.count())) == 0:
        return coded
    orphan = (
        (coded._code.isnull() | (coded._code == _LOOKBACK_CODE))
        & (coded.amount < 0)
        & coded.customer_id.isin(orphans.customer_id)
    ).fill_null(False)
    return coded.mutate(_code=orphan.ifelse(ibis.literal(index, dtypes.int8), coded._code))


def _stats(coded: ir.Table, spec: TableSpec) -> list[dict[str, Any]]:
    """Counts and freshness per rule code, in one aggregate."""
    aggs: dict[str, Any] = {"n": coded.count()}
    if "_trimmed" in coded.columns:
        aggs["trimmed"] = coded._trimmed.sum()
    time_col = spec.time_column
    if time_col and time_col in coded.columns:
        aggs["earliest"] = coded[time_col].min()
        aggs["latest"] = coded[time_col].max()
    if spec.name == "orders":
        aggs["returns"] = (coded.amount < 0).sum()
        aggs["returns_amount"] = coded.amount.clip(upper=0).sum()
        aggs["zero_amounts"] = (coded.amount == 0).sum()
    rows: list[dict[str, Any]] = fetch_arrow(coded.group_by("_code").aggregate(**aggs)).to_pylist()
    return rows


def _report_of(
    name: str, raw: RawSource, checks: list[_Check], stats: list[dict[str, Any]]
) -> TableReport:
    report = TableReport(name, raw.label, sum(int(s["n"]) for s in stats), 0)
    report.ids_trimmed = sum(int(s.get("trimmed") or 0) for s in stats)
    rejected: dict[str, int] = {}
    for s in sorted(stats, key=lambda s: -1 if s["_code"] is None else s["_code"]):
        code = s["_code"]
        if code is None:
            report.rows_accepted = int(s["n"])
            if s.get("earliest") is not None:
                report.earliest = s["earliest"].isoformat()
                report.latest = s["latest"].isoformat()
            report.returns = int(s.get("returns") or 0)
            report.returns_amount = 0.0 - float(s.get("returns_amount") or 0.0)  # no -0.0
            report.zero_amounts = int(s.get("zero_amounts") or 0)
        elif code == _LOOKBACK_CODE:
            report.dropped_by_lookback = int(s["n"])
        else:
            rule = checks[code].rule
            rejected[rule] = rejected.get(rule, 0) + int(s["n"])
    order = list(RULES)
    report.rejected = dict(sorted(rejected.items(), key=lambda kv: order.index(kv[0])))
    return report


def _rejects_of(
    con: BaseBackend, coded: ir.Table, checks: list[_Check], raw: RawSource, report: TableReport
) -> ir.Table:
    """The rejected rows with rule, column, raw value and reason (built for them only).

    The raw values come from the source: those of the rejected rows are read once (the
    source may be a file that only the pass has read so far). Without rejected rows the
    table is empty: nothing is read, and the query stays small.
    """
    if not report.rows_rejected:
        none = coded.filter(ibis.literal(False))
        text = ibis.null(dtypes.string)
        return none.select(
            table=ibis.literal(report.table),
            source=ibis.literal(raw.label),
            row=none._row.cast("int64"),
            rule=text,
            column=text,
            value=text,
            reason=text,
        )
    rejected = coded.filter(coded._code.notnull() & (coded._code != _LOOKBACK_CODE))
    source = raw.table
    columns = sorted({c.column for c in checks if c.column in source.columns})
    originals = source.select("_row", **{f"_raw_{c}": source[c].cast("string") for c in columns})
    originals = materialise(con, originals.filter(originals._row.isin(rejected._row)), "raw")
    rejected = rejected.join(originals, "_row")
    code = rejected._code
    value = ibis.cases(
        *((code == i, rejected[f"_raw_{c.column}"]) for i, c in enumerate(checks)),
        else_=ibis.null(dtypes.string),
    )
    rejected = rejected.mutate(_value=value)
    code = rejected._code
    return rejected.select(
        table=ibis.literal(report.table),
        source=ibis.literal(raw.label),
        row=rejected._row.cast("int64"),
        rule=ibis.cases(*((code == i, c.rule) for i, c in enumerate(checks))),
        column=ibis.cases(*((code == i, c.column) for i, c in enumerate(checks))),
        value=rejected._value,
        reason=ibis.cases(*((code == i, c.reason(rejected)) for i, c in enumerate(checks))),
    )


_EMPTY_ORDERS = "the orders table is empty (no data rows)"
_EMPTY_ORDERS_FIX = "point sources.orders at the file or table holding the orders"


def _infer_as_of(orders: ir.Table, now: dt.datetime, label: str) -> dt.date | None:
    """The latest order date not after the load time (future_timestamp rows are ignored).

    None when no order has a usable order_ts (the caller names the cause).
    """
    ts = orders.order_ts
    limit: Any = now + _FUTURE_MARGIN
    if ts.type().is_date():
        limit = limit.date()
    row = fetch_arrow(orders.aggregate(n=orders.count(), latest=ts.max(where=ts <= limit)))
    if row["n"][0].as_py() == 0:
        raise DataValidationError(f"{label}: {_EMPTY_ORDERS}", fix=_EMPTY_ORDERS_FIX)
    latest = row["latest"][0].as_py()
    if latest is None:
        return None
    return latest.date() if isinstance(latest, dt.datetime) else latest


def _no_as_of(orders: _Table, done: dict[str, _Table]) -> DataValidationError:
    """No order_ts to infer the as-of date from: name the first bad value and the fix."""
    label = orders.raw.label
    message = f"{label}: no usable order_ts, so the as-of date cannot be inferred"
    fix = "correct the order_ts values, or set as_of in segvalue.yaml"
    rejects = orders.rejects.filter(orders.rejects.column == "order_ts")
    rows = fetch_arrow(rejects.order_by("row").limit(20)).to_pylist()
    if not rows:
        return DataValidationError(message, fix=fix)
    first = rows[0]
    cause = _Cause(orders, first["rule"], orders.report.rejected.get(first["rule"], 0), first, "")
    return DataValidationError(
        f"{message}; e.g. {cause.describe()}", fix=_fix_for(orders, first["rule"], rows, done)
    )


def _scalar(expr: Any) -> Any:
    return fetch_arrow(expr.as_table()).column(0)[0].as_py()


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
        Load time (naive UTC; default: the current time): recorded for data freshness,
        and timestamps more than a day after it are rejected as ``future_timestamp``
        before the as-of date is inferred.

    Returns
    -------
    ValidatedData

    Raises
    ------
    DataValidationError
        If a required table is empty or nothing valid remains (naming the first cause,
        also when it lies in a table this one refers to), or, with ``validation.strict``,
        if any row breaks a rule (nothing is written then).

    Examples
    --------
    >>> import ibis
    >>> from segvalue.config import parse_config
    >>> from segvalue.data.readers import RawSource
    >>> con = ibis.duckdb.connect()
    >>> t = con.create_table("o", {"order_id": ["1", "1", "2"], "customer_id": ["a", "b", "c"],
    ...     "order_ts": ["2024-01-02", "2024-01-03", "2100-01-01"], "amount": ["5", "7", "nan"],
    ...     "_row": [2, 3, 4]})
    >>> cfg = parse_config({"sources": {"orders": {"table": "o"}}})
    >>> v = validate_sources(con, {"orders": RawSource("orders", t, "o.csv", "line")}, cfg)
    >>> v.report.tables["orders"].rejected
    {'non_finite': 1, 'duplicate_key': 1}
    >>> v.report.as_of, v.report.as_of_inferred
    (datetime.date(2024, 1, 3), True)
    """
    if "orders" not in raws:
        raise DataValidationError("no orders source", fix="add sources.orders to segvalue.yaml")
    loaded_at = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    unit = config.time_unit
    as_of = config.as_of
    report = ValidationReport(
        as_of=as_of or loaded_at.date(),
        time_unit=unit,
        loaded_at=loaded_at,
        lookback_start=None,
        as_of_inferred=as_of is None,
    )
    done: dict[str, _Table] = {}
    names = [n for n in _ORDER if n in raws] + [n for n in raws if n not in _ORDER]
    for name in names:
        raw, spec = raws[name], CONTRACT[name]
        checks, coded = _coded(con, raw, spec, config, loaded_at, as_of, done)
        if name == "orders" and as_of is None:
            as_of = _infer_as_of(coded, loaded_at, raw.label)
            if as_of is None:
                partial = _report_of(name, raw, checks, _stats(coded, spec))
                rejects = _rejects_of(con, coded, checks, raw, partial)
                done[name] = _Table(name, raw, checks, coded, partial, rejects)
                raise _with_rejects(_no_as_of(done[name], done), done)
            report.as_of = as_of
            report.notes.append(
                f"as-of date {as_of.isoformat()} inferred: the latest order_ts not after the "
                "load time (set as_of to choose it)"
            )
        if as_of is not None and config.lookback is not None and report.lookback_start is None:
            report.lookback_start = as_of - dt.timedelta(days=config.lookback * unit.days)
        if name in _LOOKBACK_TABLES:
            coded = _with_lookback(coded, spec.time_column, report.lookback_start)
        stats = _stats(coded, spec)
        if name == "orders" and any(
            (s["_code"] is None or s["_code"] == _LOOKBACK_CODE) and s.get("returns") for s in stats
        ):
            returned = _with_returns(con, coded, len(checks) - 1)
            if returned is not coded:
                coded = returned
                stats = _stats(coded, spec)
        table_report = _report_of(name, raw, checks, stats)
        if table_report.rows_read == 0:
            if name == "orders":
                raise DataValidationError(f"{raw.label}: {_EMPTY_ORDERS}", fix=_EMPTY_ORDERS_FIX)
            report.warnings.append(f"{raw.label}: the {name} table is empty")
        rejects = _rejects_of(con, coded, checks, raw, table_report)
        if table_report.rejected:
            table_report.examples = _examples(rejects, raw.row_word)
        if table_report.ids_trimmed:
            report.notes.append(
                f"{raw.label}: {table_report.ids_trimmed:,} identifiers trimmed of "
                "surrounding blanks"
            )
        report.tables[name] = table_report
        done[name] = _Table(name, raw, checks, coded, table_report, rejects)
        if name == "orders" and table_report.rows_accepted == 0:
            raise _with_rejects(_nothing_left(done["orders"], done, config), done)
        _warn_if_mostly_rejected(done[name], done, config, report)
    rejects = [t.rejects for t in done.values()]
    all_rejects = ibis.union(*rejects) if len(rejects) > 1 else rejects[0]
    if config.validation.strict and report.rows_rejected:
        error = DataValidationError(_strict_message(report, all_rejects), fix=_STRICT_FIX)
        error.rejects = fetch_arrow(all_rejects.order_by(["table", "row"]))  # as Arrow
        raise error
    clean = {name: _clean(t) for name, t in done.items()}
    _sufficiency(clean["orders"], report, config)
    return ValidatedData(con, clean, all_rejects, report)


# --- root causes -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cause:
    """The first cause of a table's rejections: where, which rule, an example, the fix."""

    table: _Table
    rule: str
    rows: int
    example: dict[str, Any]
    fix: str

    def describe(self) -> str:
        e, raw = self.example, self.table.raw
        return (
            f"{raw.label} {raw.row_word} {e['row']}: {e['reason']} "
            f"({self.rule}, {self.rows:,} row{'s' if self.rows != 1 else ''})"
        )


def _dominant(report: TableReport) -> str:
    order = list(RULES)
    return max(report.rejected, key=lambda r: (report.rejected[r], -order.index(r)))


def _first_cause(table: _Table, done: dict[str, _Table], config: Config) -> _Cause | None:
    """Follow unknown_customer / unknown_order back to the table whose rejections caused them."""
    report = table.report
    if not report.rejected:
        return None
    rule = _dominant(report)
    if rule in _REFERS:
        parent_name, key = _REFERS[rule]
        parent = done.get(parent_name)
        if parent is not None and parent.report.rejected and parent is not table:
            codes = [i for i, c in enumerate(table.checks) if c.rule == rule]
            ids = table.coded.filter(table.coded._code.isin(codes))[key]
            theirs = parent.coded.filter(
                parent.coded._code.notnull() & (parent.coded._code != _LOOKBACK_CODE)
            )[key]
            if bool(_scalar(ids.isin(theirs).any())):
                return _first_cause(parent, done, config)
    examples = fetch_arrow(
        table.rejects.filter(table.rejects.rule == rule).order_by("row").limit(20)
    )
    rows = examples.to_pylist()
    return _Cause(table, rule, report.rejected[rule], rows[0], _fix_for(table, rule, rows, done))


def _with_rejects(error: DataValidationError, done: dict[str, _Table]) -> NoValidRowsError:
    """The error, carrying the rejects of the tables validated so far (as Arrow)."""
    parts = [t.rejects for t in done.values()]
    rejects = ibis.union(*parts) if len(parts) > 1 else parts[0]
    arrow = fetch_arrow(rejects.order_by(["table", "row"]))
    return NoValidRowsError(error.message, fix=error.fix, rejects=arrow)


def _nothing_left(orders: _Table, done: dict[str, _Table], config: Config) -> DataValidationError:
    report, raw = orders.report, orders.raw
    counts = ", ".join(f"{k}: {v:,}" for k, v in report.rejected.items()) or "lookback window"
    message = f"{raw.label}: no valid orders remain ({counts})"
    cause = _first_cause(orders, done, config)
    if cause is None:
        return DataValidationError(
            message + "; every order is before the lookback window",
            fix="raise lookback, or set as_of to the end of the data",
        )
    if cause.table is not orders:
        message += f"; first cause: {cause.describe()}"
    else:
        message += f"; e.g. {cause.describe()}"
    return DataValidationError(message, fix=cause.fix)


def _warn_if_mostly_rejected(
    table: _Table, done: dict[str, _Table], config: Config, report: ValidationReport
) -> None:
    """A table losing most rows to rejections in a table it refers to gets a warning
    naming that first cause and its fix (its own rejections are in the report already)."""
    t = table.report
    if t.rows_read == 0 or t.rows_rejected * 2 <= t.rows_read:
        return
    cause = _first_cause(table, done, config)
    if cause is None or cause.table is table:
        return
    report.warnings.append(
        f"{table.raw.label}: {t.rows_rejected:,} of {t.rows_read:,} rows rejected; "
        f"first cause: {cause.describe()}. Fix: {cause.fix}"
    )


#: Formats tried by :func:`guess_date_format`, most common first.
_GUESSED_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%m-%d-%Y",
    "%Y%m%d",
    "%Y/%m/%d",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m",
)


def guess_date_format(values: list[str]) -> list[str]:
    """The ``date_format`` values that parse every one of ``values``, most common first.

    Day-first and month-first formats both match dates such as 01/02/2024; then both are
    returned (a date such as 13/02/2024 among the values decides).

    Examples
    --------
    >>> guess_date_format(["15/03/2024", "01/04/2024"])
    ['%d/%m/%Y']
    >>> guess_date_format(["01/02/2024"])
    ['%d/%m/%Y', '%m/%d/%Y']
    >>> guess_date_format(["2024-01"])
    ['%Y-%m']
    >>> guess_date_format(["soon"])
    []
    """
    texts = [v.strip() for v in values if v and v.strip()]
    if not texts:
        return []
    found = []
    for fmt in _GUESSED_FORMATS:
        try:
            for text in texts:
                dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        found.append(fmt)
    return found


_DECIMAL_COMMA = re.compile(r"^[-+]?\d{1,3}(\.\d{3})*,\d+$|^[-+]?\d+,\d+$")


def _fix_for(table: _Table, rule: str, rows: list[dict[str, Any]], done: dict[str, _Table]) -> str:
    """What the user should change, for the first cause of a table's rejections."""
    name, column = table.name, rows[0]["column"]
    example = rows[0]["value"]
    spec = CONTRACT[name].column(column)
    kind = spec.kind if spec is not None else "string"
    mapping = f"sources.{name}.columns.{column}"
    if rule == "unparseable_value" and kind in ("date", "timestamp"):
        formats = guess_date_format([r["value"] for r in rows if r["column"] == column])
        key = f"key 'sources.{name}.date_format'"
        if not formats:
            return (
                f"correct the {column} values (dates such as 2024-03-01), "
                f"or set {key} to their strftime format"
            )
        fix = f"set {key} to '{formats[0]}' (it parses '{example}')"
        if len(formats) > 1:
            fix += f", or to '{formats[1]}' if that is how the dates are written"
        return fix
    if rule == "unparseable_value" and kind in ("float", "int"):
        if example and _DECIMAL_COMMA.match(example.strip()) and table.raw.decimal == ".":
            return f"set key 'sources.{name}.csv.decimal' to ',' (the values use a decimal comma)"
        example_number = "whole numbers such as 3" if kind == "int" else "numbers such as 12.50"
        return f"correct the {column} values ({example_number}), or check {mapping}"
    if rule in ("null_id", "missing_value"):
        return f"fill {column}, or map {mapping} to the column that holds it"
    if rule == "non_finite":
        return f"correct the {column} values: NaN and infinite numbers are not amounts"
    if rule == "implausible_value":
        return f"correct the {column} values, or raise validation.max_amount if they are real"
    if rule == "unknown_event":
        events = ", ".join(TOUCHPOINT_EVENTS)
        return f"map each value under sources.touchpoints.event_map to one of {events}"
    if rule == "duplicate_key":
        return f"remove the repeated {column}s, or map {mapping} to a unique column"
    if rule == "zero_amount":
        return "correct the zero amounts, or set validation.zero_amounts: keep"
    if rule == "future_timestamp":
        return f"correct the {column} values dated after the load time (check the date format)"
    if rule == "after_as_of":
        return "set as_of to the end of the data, or correct the dates"
    if rule in _REFERS:
        parent_name, key = _REFERS[rule]
        parent = done.get(parent_name)
        where = parent.raw.label if parent is not None else parent_name
        return f"add the missing {key}s to {where}, or check {mapping}"
    return "include the purchases these returns refer to"


_STRICT_FIX = "fix these rows, or set validation.strict: false to reject them and go on"


def _strict_message(report: ValidationReport, rejects: ir.Table) -> str:
    parts = []
    for t in report.tables.values():
        for rule, n in t.rejected.items():
            parts.append(f"{t.source}: {n} row{'s' if n > 1 else ''} break {rule}")
    examples = fetch_arrow(rejects.order_by(["table", "row"]).limit(5)).to_pylist()
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
    rows = fetch_arrow(first.filter(first.k < per_rule).order_by(["rule", "row"])).to_pylist()
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["rule"], []).append(f"{row_word} {r['row']}: {r['reason']}")
    return out


#: Orders looked at first when counting repeat customers (see :func:`_sufficiency`).
_SUFFICIENCY_SAMPLE = 200_000


def _repeat_customers(orders: ir.Table) -> int:
    """Customers with purchases on two days or more."""
    purchases = orders.filter(orders.amount >= 0)
    day = purchases.order_ts.date()
    # A repeat customer bought on two days or more: first day < last day (no distinct count).
    per_customer = purchases.group_by("customer_id").agg(first=day.min(), last=day.max())
    return int(_scalar((per_customer.first < per_customer.last).sum()) or 0)


def _sufficiency(orders: ir.Table, report: ValidationReport, config: Config) -> None:
    """Warn when the data are too thin for predictive (BTYD) models."""
    minimum = config.validation.min_repeat_customers
    # Repeat customers among some of the orders are repeat customers among all of them:
    # when the first rows already hold enough, no pass over every order is needed.
    sampled = report.tables["orders"].rows_accepted > _SUFFICIENCY_SAMPLE
    if minimum > 0 and not (
        sampled and _repeat_customers(orders.limit(_SUFFICIENCY_SAMPLE)) >= minimum
    ):
        repeaters = _repeat_customers(orders)
        if repeaters < minimum:
            report.warnings.append(
                f"only {repeaters} repeat customers (fewer than {minimum}): too thin for "
                "reliable purchase-prediction (BTYD) models"
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
