"""Ibis expressions that parse text into typed values, null on failure.

Parsing never raises: a value that cannot be parsed becomes null, and validation turns
"raw not null but parsed null" into a rejected row with the raw value in its reason. Only
portable Ibis operations are used (regex extraction, ``try_cast``), so parsing runs in the
engine on every SQL backend.
"""

from __future__ import annotations

import re
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from segvalue.data.contract import Kind
from segvalue.errors import ConfigError

__all__ = ["AUTO_DATE_FORMATS", "check_date_format", "parse_column", "target_dtype"]

# Formats tried, in order, when the user gives no date_format. Day-first vs month-first
# (01/02/2024) is ambiguous, so neither is guessed: it must be configured.
AUTO_DATE_FORMATS: tuple[str, ...] = ("%Y%m%d", "%Y/%m/%d", "%Y.%m.%d")

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
    if not {"year", "month", "day"} <= set(fields):
        raise ConfigError(
            f"date_format {fmt!r} must contain %Y, %m and %d", fix="for example '%d/%m/%Y'"
        )
    return pattern + "$", fields


def _parse_with_format(text: ir.StringValue, fmt: str) -> ir.TimestampValue:
    pattern, fields = _format_regex(fmt)
    parts = {f: text.re_extract(pattern, i + 1) for i, f in enumerate(fields)}
    zero = ibis.literal("0")
    iso = (
        parts["year"]
        .concat("-", parts["month"].lpad(2, "0"), "-", parts["day"].lpad(2, "0"))
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
    return matched.ifelse(iso, ibis.null(dt.string)).try_cast(dt.timestamp)


def _parse_timestamp(text: ir.StringValue, date_format: str | None) -> ir.TimestampValue:
    text = text.strip()
    if date_format is not None:
        return _parse_with_format(text, date_format)
    candidates = [text.try_cast(dt.timestamp)]
    candidates += [_parse_with_format(text, f) for f in AUTO_DATE_FORMATS]
    return ibis.coalesce(*candidates)


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
    value: ir.Value, kind: Kind, *, decimal: str = ".", date_format: str | None = None
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
        strftime-style format of text timestamps; default: ISO, YYYYMMDD, YYYY/MM/DD.

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
        parsed = _parse_timestamp(text, date_format)
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
