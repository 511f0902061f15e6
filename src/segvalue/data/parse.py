"""Ibis expressions that parse text into typed values, null on failure.

Parsing never raises: a value that cannot be parsed becomes null, and validation turns
"raw not null but parsed null" into a rejected row with the raw value in its reason. Only
portable Ibis operations are used (regex extraction, ``try_cast``), so parsing runs in the
engine on every SQL backend.
"""

from __future__ import annotations

import datetime as dt_
import functools
import re
import zoneinfo
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from segvalue.data.contract import Kind
from segvalue.errors import ConfigError

__all__ = [
    "AUTO_DATE_FORMATS",
    "AUTO_MONTH_FORMATS",
    "check_date_format",
    "parse_column",
    "target_dtype",
]

# Formats tried, in order, when the user gives no date_format. Day-first vs month-first
# (01/02/2024) is ambiguous, so neither is guessed: it must be configured.
AUTO_DATE_FORMATS: tuple[str, ...] = ("%Y%m%d", "%Y/%m/%d", "%Y.%m.%d")
# Dates without a day (2024-01) mean the first of the month. Tried for date columns only:
# an order time that precise to a month only is taken when its date_format says so.
AUTO_MONTH_FORMATS: tuple[str, ...] = ("%Y-%m", "%Y/%m")

# An ISO date-time followed by a UTC offset: Z, UTC, +02:00, +0200, -05.
_ISO_WITH_OFFSET = (
    r"^(\d{4}-\d{1,2}-\d{1,2}[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)"
    r"\s*([Zz]|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$"
)
_OFFSET = r"([Zz]|UTC|GMT|[+-]\d{2}(?::?\d{2})?)"

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")

_DIRECTIVES: dict[str, tuple[str, str]] = {
    # directive: (regex group, ISO field it fills)
    "Y": (r"(\d{4})", "year"),
    "m": (r"(\d{1,2})", "month"),
    "d": (r"(\d{1,2})", "day"),
    "H": (r"(\d{1,2})", "hour"),
    "M": (r"(\d{2})", "minute"),
    "S": (r"(\d{2}(?:\.\d+)?)", "second"),
    "z": (r"\s*" + _OFFSET, "offset"),
}

_TARGETS: dict[Kind, dt.DataType] = {
    "id": dt.string,
    "string": dt.string,
    "timestamp": dt.timestamp,
    "date": dt.date,
    "float": dt.float64,
    "int": dt.int64,
    "bool": dt.boolean,
}


def target_dtype(kind: Kind) -> dt.DataType:
    """The Ibis type a logical column kind parses to.

    Examples
    --------
    >>> str(target_dtype("float"))
    'float64'
    """
    return _TARGETS[kind]


def check_date_format(fmt: str) -> None:
    """Check that a ``date_format`` can be parsed, before any data are read.

    Raises
    ------
    ConfigError
        Naming the unsupported directive, or the missing %Y, %m or %d.

    Examples
    --------
    >>> check_date_format("%d/%m/%Y")
    >>> try:
    ...     check_date_format("%d %b %Y")
    ... except ConfigError as exc:
    ...     print(exc.message)
    date_format '%d %b %Y': directive %b is not supported
    """
    _format_regex(fmt)


def _format_regex(fmt: str) -> tuple[str, list[str]]:
    """Translate a strftime format into an anchored regex and the fields its groups fill."""
    pattern, fields, i = "^", [], 0
    while i < len(fmt):
        char = fmt[i]
        if char == "%" and i + 1 < len(fmt):
            directive = fmt[i + 1]
            if directive not in _DIRECTIVES:
                supported = " ".join(f"%{d}" for d in _DIRECTIVES)
                raise ConfigError(
                    f"date_format {fmt!r}: directive %{directive} is not supported",
                    fix=f"use only {supported} and literal characters",
                )
            group, field = _DIRECTIVES[directive]
            # Directives with no separator between them (%Y%m%d) need fixed widths.
            adjacent = fmt[i + 2 : i + 3] == "%" or (i > 0 and fmt[i - 2 : i - 1] == "%")
            if adjacent and directive in "mdH":
                group = r"(\d{2})"
            pattern += group
            fields.append(field)
            i += 2
        else:
            pattern += re.escape(char)
            i += 1
    if not {"year", "month"} <= set(fields):
        raise ConfigError(
            f"date_format {fmt!r} must contain %Y and %m (and %d unless the data give months only)",
            fix="for example '%d/%m/%Y' or '%Y-%m'",
        )
    if "day" not in fields and {"hour", "minute", "second"} & set(fields):
        raise ConfigError(f"date_format {fmt!r} has a time of day but no day (%d)", fix="add %d")
    return pattern + "$", fields


def _parse_with_format(text: ir.StringValue, fmt: str, timezone: str) -> ir.TimestampValue:
    pattern, fields = _format_regex(fmt)
    parts = {f: text.re_extract(pattern, i + 1) for i, f in enumerate(fields)}
    zero = ibis.literal("0")
    one = ibis.literal("1")  # a date without a day is the first of its month
    iso = (
        parts["year"]
        .concat("-", parts["month"].lpad(2, "0"), "-", parts.get("day", one).lpad(2, "0"))
        .concat(
            " ",
            parts.get("hour", zero).lpad(2, "0"),
            ":",
            parts.get("minute", zero).lpad(2, "0"),
            ":",
            parts.get("second", zero).lpad(2, "0"),
        )
    )
    matched = text.re_search(pattern)
    local = matched.ifelse(iso, ibis.null(dt.string)).try_cast(dt.timestamp)
    if "offset" not in parts:
        return local
    return _in_zone(local, parts["offset"], timezone)


def _parse_timestamp(
    text: ir.StringValue, date_format: str | None, timezone: str = "UTC", *, months: bool = False
) -> ir.TimestampValue:
    text = text.strip()
    if date_format is not None:
        return _parse_with_format(text, date_format, timezone)
    # The engine's own cast only where it has a chance: PostgreSQL's "try" cast raises.
    iso_like = text.re_search(r"^\d{4}-\d{1,2}-\d{1,2}")
    candidates = [iso_like.ifelse(text, ibis.null(dt.string)).try_cast(dt.timestamp)]
    formats = AUTO_DATE_FORMATS + (AUTO_MONTH_FORMATS if months else ())
    candidates += [_parse_with_format(text, f, timezone) for f in formats]
    naive = ibis.coalesce(*candidates)
    # An engine's own cast drops an offset (DuckDB, PostgreSQL) or applies its session
    # zone (Spark): text with an offset is converted here, the same way on every engine.
    local = text.re_extract(_ISO_WITH_OFFSET, 1).try_cast(dt.timestamp)
    with_offset = _in_zone(local, text.re_extract(_ISO_WITH_OFFSET, 2), timezone)
    return text.re_search(_ISO_WITH_OFFSET).ifelse(with_offset, naive)


def _in_zone(local: ir.TimestampValue, offset: ir.StringValue, timezone: str) -> Any:
    """``local`` written at UTC ``offset`` (text), as the naive time in ``timezone``.

    Rows without an offset (null or empty) are taken as already in ``timezone``.
    """
    sign = (offset.left(1) == "-").ifelse(-1, 1)
    numeric = offset.re_search(r"^[+-]\d")
    hours = numeric.ifelse(offset.substr(1, 2), "0").cast(dt.int64)
    minutes = offset.re_extract(r"^[+-]\d{2}:?(\d{2})$", 1)
    # no match is '' on some engines and null on others
    minutes = minutes.nullif("").fill_null("0").cast(dt.int64)
    utc = local - (sign * (hours * 60 + minutes)).as_interval("m")
    converted = _from_utc(utc, timezone)
    given = offset.notnull() & (offset != "")
    # Offsets in use run from -12:00 to +14:00: anything else is a typo, not a time.
    valid = (hours <= 14) & (minutes < 60)
    return given.ifelse(valid.ifelse(converted, ibis.null(dt.timestamp)), local)


def _from_utc(utc: ir.TimestampValue, timezone: str) -> Any:
    """A UTC time as the naive time in ``timezone``, as a portable engine expression.

    The zone's offset is picked by a balanced tree of comparisons with its transitions
    (1900-2100, from the IANA database): about log2(transitions) comparisons a row. The
    tree compares a lambda's parameter, not ``utc`` itself, so that the SQL holds the
    expression of ``utc`` once rather than once per transition.
    """
    starts, offsets = _transitions(timezone)
    if not starts:
        return utc + ibis.literal(offsets[0], type=dt.int64).as_interval("s")

    def shifted(instant: Any) -> Any:
        def between(lo: int, hi: int) -> Any:
            if lo == hi:
                return ibis.literal(offsets[lo], type=dt.int64)
            mid = (lo + hi + 1) // 2
            early = instant < ibis.literal(starts[mid - 1], type=dt.timestamp)
            return early.ifelse(between(lo, mid - 1), between(mid, hi))

        return instant + between(0, len(offsets) - 1).as_interval("s")

    return ibis.array([utc]).map(shifted)[0]


@functools.lru_cache(maxsize=8)
def _transitions(timezone: str) -> tuple[tuple[dt_.datetime, ...], tuple[int, ...]]:
    """UTC instants where ``timezone``'s offset changes, and the offsets (seconds) between.

    ``offsets[k]`` holds from ``starts[k - 1]`` (or the beginning) to ``starts[k]``.
    Scans week by week and bisects each change to the second.

    Examples
    --------
    >>> _transitions("UTC")
    ((), (0,))
    >>> starts, offsets = _transitions("Europe/Berlin")
    >>> [(str(s), o) for s, o in zip(starts, offsets[1:]) if s.year == 2024]
    [('2024-03-31 01:00:00', 7200), ('2024-10-27 01:00:00', 3600)]
    """
    zone = zoneinfo.ZoneInfo(timezone)

    def offset_at(instant: dt_.datetime) -> int:
        delta = instant.replace(tzinfo=dt_.UTC).astimezone(zone).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    cursor, end, week = dt_.datetime(1900, 1, 1), dt_.datetime(2100, 1, 1), dt_.timedelta(days=7)
    current = offset_at(cursor)
    starts: list[dt_.datetime] = []
    offsets = [current]
    while cursor < end:
        ahead = cursor + week
        if offset_at(ahead) == current:
            cursor = ahead
            continue
        low, high = cursor, ahead
        while high - low > dt_.timedelta(seconds=1):
            middle = low + (high - low) // 2
            middle -= dt_.timedelta(microseconds=middle.microsecond)
            low, high = (middle, high) if offset_at(middle) == current else (low, middle)
        current = offset_at(high)
        starts.append(high)
        offsets.append(current)
        cursor = high
    return tuple(starts), tuple(offsets)


def _parse_float(text: ir.StringValue, decimal: str) -> ir.FloatingValue:
    text = text.strip()
    if decimal == ",":
        # "1.234,56": the dot groups thousands, the comma is the decimal mark.
        text = text.replace(".", "").replace(",", ".")
    return text.try_cast(dt.float64)


def _parse_bool(text: ir.StringValue) -> ir.BooleanValue:
    low = text.strip().lower()
    return ibis.cases(
        (low.isin(_TRUE), True),
        (low.isin(_FALSE), False),
        else_=ibis.null(dt.boolean),
    )


def parse_column(
    value: ir.Value,
    kind: Kind,
    *,
    decimal: str = ".",
    date_format: str | None = None,
    timezone: str = "UTC",
) -> ir.Value:
    """Parse one column into the type of its logical kind; unparseable values become null.

    Parameters
    ----------
    value
        The source column (text or already typed).
    kind
        The logical kind from the data contract.
    decimal
        Decimal mark of text numbers: ``"."`` or ``","``.
    date_format
        strftime-style format of text timestamps; default: ISO, YYYYMMDD, YYYY/MM/DD, and
        for dates also YYYY-MM and YYYY/MM (the first of the month). ``%z`` reads an offset.
    timezone
        IANA zone that times are stored in: text with a UTC offset (``Z``, ``-05:00``,
        ``+0200``) is converted to it; text without one is taken as already in it.

    Returns
    -------
    ibis.expr.types.Value
        Typed column.

    Examples
    --------
    >>> import ibis
    >>> t = ibis.memtable({"d": ["19970101", "1997-01-18", "nope"]})
    >>> ibis.duckdb.connect().to_pyarrow(parse_column(t.d, "date")).to_pylist()
    [datetime.date(1997, 1, 1), datetime.date(1997, 1, 18), None]
    >>> t = ibis.memtable({"ts": ["2024-01-05T23:30:00-05:00", "2024-01-05 23:30"]})
    >>> ibis.duckdb.connect().to_pyarrow(parse_column(t.ts, "timestamp")).to_pylist()
    [datetime.datetime(2024, 1, 6, 4, 30), datetime.datetime(2024, 1, 5, 23, 30)]
    """
    target = target_dtype(kind)
    source_type = value.type()
    if source_type == target:
        return value
    if not source_type.is_string():
        return _cast_typed(value, kind, target)
    text: Any = value
    if kind in ("id", "string"):
        stripped = text.strip()
        return (stripped == "").ifelse(ibis.null(dt.string), stripped)
    if kind in ("timestamp", "date"):
        parsed = _parse_timestamp(text, date_format, timezone, months=kind == "date")
        return parsed.date() if kind == "date" else parsed
    if kind == "float":
        return _parse_float(text, decimal)
    if kind == "int":
        number = _parse_float(text, decimal)
        return (number == number.round(0)).ifelse(number.cast(dt.int64), ibis.null(dt.int64))
    return _parse_bool(text)


def _cast_typed(value: ir.Value, kind: Kind, target: dt.DataType) -> ir.Value:
    source_type = value.type()
    if kind in ("id", "string"):
        return value.cast(dt.string)
    if kind == "date" and source_type.is_timestamp():
        return value.cast(dt.timestamp).date()
    if kind == "timestamp" and source_type.is_timestamp():
        return value.cast(dt.timestamp)
    if kind == "timestamp" and source_type.is_date():
        return value.cast(dt.timestamp)
    if kind == "timestamp" and source_type.is_integer():
        # integers such as 19970101 are YYYYMMDD dates
        return _parse_timestamp(value.cast(dt.string), "%Y%m%d")
    if kind == "date" and source_type.is_integer():
        return _parse_timestamp(value.cast(dt.string), "%Y%m%d").date()
    return value.try_cast(target)
