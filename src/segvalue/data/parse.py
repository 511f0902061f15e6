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
# A date or a date and time in the form every engine's own cast reads (see _parse_timestamp).
_PLAIN_ISO = r"^\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$"
# ... with an offset in use on Earth: -14:00 to +14:00, minutes 00-59.
_ISO_WITH_REAL_OFFSET = (
    r"^\d{4}-\d{1,2}-\d{1,2}[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
    r"\s*(?:[Zz]|UTC|GMT|[+-](?:0\d|1[0-4])(?::?[0-5]\d)?)$"
)

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
    if date_format is not None:
        return _parse_with_format(text.strip(), date_format, timezone)
    # Most values are plain ISO dates or times without an offset, which the general path
    # below would hand, unchanged, to the engine's own cast: they take that cast at once,
    # and the trimming and the tests for offsets and other forms run on the rest only.
    plain = text.re_search(_PLAIN_ISO)
    return plain.ifelse(
        text.try_cast(dt.timestamp), _parse_any_timestamp(text.strip(), timezone, months)
    )


def _parse_any_timestamp(text: ir.StringValue, timezone: str, months: bool) -> Any:
    """ISO with or without an offset, or one of the automatic formats (``text`` trimmed)."""
    # The engine's own cast only where it has a chance: PostgreSQL's "try" cast raises.
    iso_like = text.re_search(r"^\d{4}-\d{1,2}-\d{1,2}")
    candidates = [iso_like.ifelse(text, ibis.null(dt.string)).try_cast(dt.timestamp)]
    formats = AUTO_DATE_FORMATS + (AUTO_MONTH_FORMATS if months else ())
    candidates += [_parse_with_format(text, f, timezone) for f in formats]
    naive = ibis.coalesce(*candidates)
    # An engine's own cast drops an offset (DuckDB, PostgreSQL) or applies its session
    # zone (Spark): text with an offset is converted here, the same way on every engine.
    # Every engine segvalue runs on (DuckDB, PostgreSQL, Spark) is connected by Ibis with
    # its session zone set to UTC: a cast to a zoned timestamp and back gives UTC. Forms the
    # engine's cast does not read (+02 after a blank, a lower-case z) take the string path.
    length, minutes = _trailing_offset(text)
    local = text.left(text.length() - length).strip().try_cast(dt.timestamp)
    utc = ibis.coalesce(
        text.try_cast(dt.Timestamp(timezone="UTC")).cast(dt.timestamp),
        local - minutes.as_interval("m"),
    )
    real = text.re_search(_ISO_WITH_REAL_OFFSET)
    with_offset = real.ifelse(_from_utc(utc, timezone), ibis.null(dt.timestamp))
    return text.re_search(_ISO_WITH_OFFSET).ifelse(with_offset, naive)


def _in_zone(local: ir.TimestampValue, offset: ir.StringValue, timezone: str) -> Any:
    """``local`` written at UTC ``offset`` (text), as the naive time in ``timezone``.

    An offset outside -14:00..+14:00 or with minutes over 59 makes the time null.
    """
    _, minutes = _trailing_offset(offset)
    return _from_utc(local - minutes.as_interval("m"), timezone)


def _trailing_offset(text: Any) -> tuple[Any, Any]:
    """Length and minutes east of UTC of the offset that ends ``text``.

    Forms: ``Z``, ``UTC``, ``GMT``, ``+02:00``, ``-0530``, ``+02``. String functions only,
    no regex: each is evaluated where it is used, and there are several uses.
    Minutes are null when the offset is not a real one (over 14 hours, over 59 minutes).
    """
    last6, last5, last3 = text.right(6), text.right(5), text.right(3)
    colon = last6.left(1).isin(("+", "-")) & (last6.substr(3, 1) == ":")
    plain = last5.left(1).isin(("+", "-"))
    short = last3.left(1).isin(("+", "-"))
    zulu = text.right(1).upper() == "Z"
    named = last3.upper().isin(("UTC", "GMT"))
    length = ibis.cases((zulu, 1), (named, 3), (colon, 6), (plain, 5), (short, 3), else_=0)
    sign = ibis.cases(
        (colon, last6.left(1)), (plain, last5.left(1)), (short, last3.left(1)), else_="+"
    )
    hours = ibis.cases(
        (colon, last6.substr(1, 2)),
        (plain, last5.substr(1, 2)),
        (short, last3.substr(1, 2)),
        else_="00",
    ).try_cast(dt.int64)
    mins = ibis.cases((colon, last6.substr(4, 2)), (plain, last5.substr(3, 2)), else_="00")
    mins = mins.try_cast(dt.int64)
    east = (sign == "-").ifelse(-1, 1) * (hours * 60 + mins)
    return length, ((hours <= 14) & (mins < 60)).ifelse(east, ibis.null(dt.int64))


def _from_utc(utc: ir.TimestampValue, timezone: str) -> Any:
    """A UTC time as the naive time in ``timezone``, as a portable engine expression.

    The zone's offset is picked by a balanced tree of comparisons with its transitions
    (1900-2100, from the IANA database), about log2(transitions) comparisons a row. The
    tree compares integers (a sortable number made of the time's fields, bound once as a
    lambda's parameter): engines evaluate timestamp literals inside lambdas once a row.
    """
    starts, offsets = _transitions(timezone)
    if not starts:
        return utc + ibis.literal(offsets[0], type=dt.int64).as_interval("s")
    keys = [_sortable(s.year, s.month, s.day, s.hour, s.minute, s.second) for s in starts]

    def offset_at(key: Any) -> Any:
        def between(lo: int, hi: int) -> Any:
            if lo == hi:
                return ibis.literal(offsets[lo], type=dt.int64)
            mid = (lo + hi + 1) // 2
            return (key < keys[mid - 1]).ifelse(between(lo, mid - 1), between(mid, hi))

        return between(0, len(offsets) - 1)

    def sortable(instant: Any) -> Any:
        # 64-bit: Spark's fields are 32-bit and the key overflows them
        units = ("year", "month", "day", "hour", "minute", "second")
        return _sortable(*(getattr(instant, unit)().cast(dt.int64) for unit in units))

    key = ibis.array([utc]).map(sortable)[0]
    return utc + ibis.array([key]).map(offset_at)[0].as_interval("s")


def _sortable(year: Any, month: Any, day: Any, hour: Any, minute: Any, second: Any) -> Any:
    """One integer that orders times like the times (not a count of seconds)."""
    return ((((year * 13 + month) * 32 + day) * 24 + hour) * 60 + minute) * 60 + second


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
    # Not trimmed: the casts of DuckDB, PostgreSQL and Spark skip the blanks that TRIM
    # removes (space, tab, CR, LF, VT, FF; Spark every control character) at both ends,
    # and trimming first costs as much as the cast itself (DuckDB, 2.77M values: 0.3 s).
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
        # inf, NaN and 1e300 are no int64: rounding or casting them fails the whole query,
        # so values out of range are replaced by 0 before either, and then rejected.
        in_range = (number.abs() < 9.2e18).fill_null(False)
        bounded = in_range.ifelse(number, 0.0)
        whole = in_range & (bounded == bounded.round(0))
        return whole.ifelse(bounded.cast(dt.int64), ibis.null(dt.int64))
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
