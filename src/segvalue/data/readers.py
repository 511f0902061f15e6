"""Connections and readers: the only code that opens files or databases.

Every source becomes an Ibis table *in the engine* with logical column names and a
``_row`` column (the line number in a text file, else the 1-based row in scan order) so
that every rejected value can be traced back to where it came from.
"""

from __future__ import annotations

import csv
import gzip
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
from ibis.backends import BaseBackend
from ibis.common.exceptions import TableNotFound

from segvalue.config import Config, CsvOptions, SourceConfig
from segvalue.data.contract import CONTRACT
from segvalue.data.documents import read_document  # kept here for callers of readers
from segvalue.data.ibis_imports import defer_sql_compilers
from segvalue.data.parse import check_date_format
from segvalue.errors import (
    ConfigError,
    DataValidationError,
    MissingDependencyError,
    did_you_mean,
    redact_secrets,
)

# Before any backend is loaded: only the compilers of the engines in use are imported.
defer_sql_compilers()

__all__ = [
    "FileRows",
    "RawSource",
    "connect",
    "engine_table",
    "fetch_arrow",
    "materialise",
    "number_rows",
    "read_document",
    "read_file",
    "read_source",
    "reading",
    "row_id",
    "temp_name",
]

_EXTRAS = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "pyspark": "spark",
    "polars": "polars",
}


def connect(target: str | Any = "duckdb://") -> BaseBackend:
    """Open the engine: an Ibis connection URL, an Ibis backend, or a Spark session.

    Parameters
    ----------
    target
        ``"duckdb://"`` (in memory), ``"duckdb:///path.duckdb"``, ``"postgres://..."``,
        an existing Ibis backend, or a ``pyspark.sql.SparkSession``.

    Returns
    -------
    ibis.backends.BaseBackend

    Raises
    ------
    MissingDependencyError
        When the backend's extra is not installed, naming the pip command.
    ConfigError
        When the URL cannot be understood or the server cannot be reached.

    Examples
    --------
    >>> connect("duckdb://").name
    'duckdb'
    """
    if isinstance(target, BaseBackend):
        return target
    if type(target).__name__ == "SparkSession":
        try:
            return ibis.pyspark.connect(target)
        except ImportError as exc:
            raise _missing("pyspark", exc) from None
    url = str(target)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if not scheme:
        raise ConfigError(
            f"engine URL {_redact(url)!r} has no scheme",
            fix="use e.g. duckdb:// or postgres://host/db",
        )
    try:
        return ibis.connect(url)
    except ImportError as exc:
        raise _missing(scheme, exc) from None
    except Exception as exc:  # driver errors differ by backend: report them as config errors
        raise ConfigError(
            f"cannot connect to {_redact(url)}: {_redact(_first_line(exc))}",
            fix="check the URL, credentials and that the server is running",
        ) from None


def _missing(scheme: str, exc: ImportError) -> MissingDependencyError:
    # Backends segvalue supports have an extra; any other Ibis backend installs through Ibis.
    extra = _EXTRAS.get(scheme)
    package = f"segvalue[{extra}]" if extra else f"ibis-framework[{scheme}]"
    return MissingDependencyError(
        f"the {scheme} backend is not installed ({exc.name or _first_line(exc)})",
        fix=f"pip install '{package}'",
    )


def _redact(url: str) -> str:
    """Hide secrets in a connection URL (user info, query, DSN) before a message or a log."""
    return redact_secrets(url)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def temp_name(prefix: str) -> str:
    """A unique name for a temporary table in the engine.

    Examples
    --------
    >>> temp_name("raw").startswith("_sv_raw_")
    True
    """
    return f"_sv_{prefix}_{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class FileRows:
    """A file that a source still reads (nothing of it is materialised yet).

    Attributes
    ----------
    table
        The source's columns, mapped to logical names, without ``_row`` and without
        the columns mapped to it: computing ``_row`` here would be a window over the
        file, which the engine runs on one thread.
    row_offset
        ``_row`` is the row's position in the file plus this. A copy materialised in
        file order numbers its rows from their stored position (:func:`number_rows`).
        The reader's errors (a ragged line, a bad encoding) surface when the file is
        first read: wrap that in :func:`reading`.
    """

    table: ir.Table
    row_offset: int


@dataclass(frozen=True)
class RawSource:
    """A source table in the engine, with logical column names and ``_row``.

    Attributes
    ----------
    name
        Logical table name (``orders``, ...).
    table
        The Ibis table; values may still be text.
    label
        Human name of the input for messages (a file path or ``url#table``).
    row_word
        ``"line"`` for text files (``_row`` is the line number), else ``"row"``.
    decimal, date_format, timezone
        Parsing options carried to validation (``timezone``: the configured IANA zone).
    file
        Set when ``table`` still reads a file: the same rows without ``_row``, to
        materialise before numbering them (``table`` numbers them with a window).
    """

    name: str
    table: ir.Table
    label: str
    row_word: str
    decimal: str = "."
    date_format: str | None = None
    timezone: str = "UTC"
    file: FileRows | None = None


def read_file(
    con: BaseBackend, path: Path, source: SourceConfig, *, label: str | None = None
) -> tuple[ir.Table, str, int | None]:
    """Read a CSV / text, Parquet or DuckDB file into the engine, with ``_row`` or its offset.

    Parameters
    ----------
    con
        A DuckDB Ibis connection (files are read by DuckDB).
    path
        The file.
    source
        Its source configuration (format, CSV options, table).
    label
        Name used in error messages (default: the path).

    Returns
    -------
    (table, row_word, row_offset)
        The table, ``"line"`` or ``"row"``, and the offset of ``_row``. A delimited text
        or Parquet file is not read yet (the first query that materialises the table
        parses it): the table has no ``_row``, which is the row's position in the file
        plus ``row_offset`` (see :class:`FileRows`). Other tables are materialised in
        ``con`` with ``_row``, and ``row_offset`` is None.

    Examples
    --------
    >>> import tempfile, pathlib, ibis
    >>> from segvalue.config import SourceConfig
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "o.csv"
    >>> _ = p.write_text("id;amount\\n1;2,5\\n")
    >>> src = SourceConfig(path=str(p), csv={"delimiter": ";", "decimal": ","})
    >>> t, word, offset = read_file(ibis.duckdb.connect(), p, src)
    >>> t.to_pyarrow().to_pylist(), word, offset
    ([{'id': '1', 'amount': '2,5'}], 'line', 2)
    """
    label = label or str(path)
    if not path.exists():
        raise DataValidationError(
            f"{label}: file not found", fix="check the path in segvalue.yaml (relative to it)"
        )
    fmt = source.resolved_format
    with reading(label, source):
        if fmt == "parquet":
            table, word, offset = con.read_parquet(str(path)), "row", 1
        elif fmt == "duckdb":
            return materialise(con, _duckdb_file_table(con, path, source), "raw"), "row", None
        elif source.csv.delimiter == "whitespace":
            # Blank lines are dropped there: _row is not the position plus an offset.
            return materialise(con, _read_whitespace(con, path, source), "raw"), "line", None
        else:
            table, word, offset = _read_text(con, path, source, label), "line", 1
            offset += int(source.csv.header)
        if "_row" in table.columns:  # a column of the file by that name: _row is the position
            table = table.drop("_row")
        if not _keeps_order(con):
            # Positions survive a copy only where the engine stores rows in the order read.
            numbered = table.mutate(_row=ibis.row_number() + offset)
            return materialise(con, numbered, "raw"), word, None
        return table, word, offset


def _keeps_order(con: BaseBackend) -> bool:
    """Whether DuckDB stores the rows of a created table in the order it reads them."""
    setting = con.raw_sql("SELECT current_setting('preserve_insertion_order')").fetchone()
    return bool(setting and setting[0])


@contextmanager
def reading(label: str, source: SourceConfig) -> Iterator[None]:
    """Report an error of the engine's file reader as a :class:`DataValidationError`.

    The message names the input and, for a CSV file, the line and the reason; the fix
    says what to check (encoding, delimiter, a ragged line).

    Examples
    --------
    >>> from segvalue.config import SourceConfig
    >>> try:
    ...     with reading("o.csv", SourceConfig(path="o.csv")):
    ...         raise ValueError("CSV Error on Line: 7\\nExpected Number of Columns: 3")
    ... except DataValidationError as exc:
    ...     print(exc.message)
    o.csv: cannot be read as csv: line 7: Expected Number of Columns: 3
    """
    try:
        yield
    except (DataValidationError, ConfigError):
        raise
    except Exception as exc:  # DuckDB reader errors carry the line; keep them
        raise DataValidationError(
            f"{label}: cannot be read as {source.resolved_format or 'csv'}: {_read_problem(exc)}",
            fix=_read_fix(source, exc),
        ) from None


_CSV_ERROR_LINE = re.compile(r"CSV Error on Line: (\d+)")


def _read_problem(exc: BaseException) -> str:
    """The line number and the reason of a CSV reader error, else its first line."""
    text = str(exc)
    match = _CSV_ERROR_LINE.search(text)
    if match is None:
        return _first_line(exc)
    # DuckDB lists the offending line, then the reason, then possible fixes.
    details = [line.strip() for line in text[match.end() :].splitlines() if line.strip()]
    reason = next((d for d in details if not d.startswith(("Original Line", "Possible"))), "")
    return f"line {match.group(1)}: {reason}".rstrip(": ")


def _read_fix(source: SourceConfig, exc: BaseException) -> str:
    problem = _read_problem(exc).lower()
    if "unicode" in problem or "encod" in problem:
        return "set csv.encoding (utf-8, utf-16 or latin-1) to the file's encoding"
    if "number of columns" in problem and source.resolved_format == "csv":
        return (
            "fix the ragged line (every line needs as many fields as the header), "
            "or check csv.delimiter and csv.quote"
        )
    return "check the file format and the source's options in segvalue.yaml"


def _first_record(path: Path, opts: CsvOptions) -> list[str] | None:
    """The first record of a delimited file (None if the file is empty).

    Undecodable bytes are replaced here: the engine's reader reports them with their line.
    """
    opener: Any = gzip.open if path.suffix.lower() == ".gz" else open
    encoding = "utf-8-sig" if opts.encoding == "utf-8" else opts.encoding
    with opener(path, "rt", encoding=encoding, errors="replace", newline="") as handle:
        if opts.quote:
            reader = csv.reader(handle, delimiter=opts.delimiter, quotechar=opts.quote)
        else:
            reader = csv.reader(handle, delimiter=opts.delimiter, quoting=csv.QUOTE_NONE)
        return next(reader, None)


def _column_names(record: list[str], header: bool) -> list[str]:
    """Unique column names from the header record (``column<i>`` without a header)."""
    names: list[str] = []
    for i, value in enumerate(record):
        name = value.strip() if header and value.strip() else f"column{i}"
        base, n = name, 0
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def _read_text(con: BaseBackend, path: Path, source: SourceConfig, label: str) -> ir.Table:
    opts = source.csv
    record = _first_record(path, opts)
    if record is None:
        raise DataValidationError(
            f"{label}: the file is empty", fix="point the source at a file with a header and rows"
        )
    if not any(value.strip() for value in record):
        raise DataValidationError(
            f"{label}: line 1 is blank",
            fix="remove the blank line(s) at the top: line 1 must be the header (or data)",
        )
    # The columns come from line 1, not from DuckDB's sniffer: sniffing may skip leading
    # lines or fail on a ragged line without naming it; explicit columns make the reader
    # report the exact line whose field count differs.
    columns = {name: "VARCHAR" for name in _column_names(record, opts.header)}
    return con.read_csv(
        str(path),
        table_name=temp_name("csv"),
        columns=columns,
        delim=opts.delimiter,
        header=opts.header,
        quote=opts.quote,
        encoding=opts.encoding,
        auto_detect=False,
        skip=0,
        null_padding=False,
        strict_mode=True,
    )


def _read_whitespace(con: BaseBackend, path: Path, source: SourceConfig) -> ir.Table:
    """Fields separated by runs of blanks (fixed-width exports such as CDNOW's)."""
    lines = con.read_csv(
        str(path),
        table_name=temp_name("txt"),
        columns={"line": "VARCHAR"},
        delim="\x1f",
        quote="",
        escape="",
        header=False,
        auto_detect=False,
        encoding=source.csv.encoding,
    )
    # Trim with a regex: it also removes carriage returns of files written on Windows.
    lines = lines.mutate(_row=ibis.row_number() + 1, line=lines.line.re_replace(r"^\s+|\s+$", ""))
    lines = lines.filter(lines.line != "")
    parts = lines.line.re_split(r"\s+")
    width = int(fetch_arrow(lines.aggregate(n=parts.length().max()))["n"][0].as_py() or 0)
    if source.csv.header:
        first = fetch_arrow(lines.order_by("_row").limit(1))["line"][0].as_py() or ""
        names = first.split()
        body = lines.filter(lines._row > 1)
    else:
        names = [f"column{i}" for i in range(width)]
        body = lines
    fields = body.line.re_split(r"\s+")
    return body.select(*(fields[i].name(n) for i, n in enumerate(names)), _row=body._row)


def engine_table(con: BaseBackend, data: pa.Table) -> ir.Table:
    """An Arrow table as a table the engine can join with its own.

    ``ibis.memtable`` everywhere but on Spark, where Ibis 12 goes through pandas and a
    nullable integer column comes back with every value null (seen with Spark 4.0.5):
    there Spark's own Arrow path (``createDataFrame`` of the Arrow table) registers a
    temporary view instead.

    Examples
    --------
    >>> con = ibis.duckdb.connect()
    >>> t = engine_table(con, pa.table({"a": pa.array([1, None], pa.int64())}))
    >>> con.to_pyarrow(t).column("a").to_pylist()
    [1, None]
    """
    session = getattr(con, "_session", None)
    if getattr(con, "name", "") == "pyspark" and session is not None:
        name = temp_name("arrow")
        session.createDataFrame(data).createOrReplaceTempView(name)
        return con.table(name)
    return ibis.memtable(data)


def fetch_arrow(expr: ir.Table) -> pa.Table:
    """Execute a table expression in its engine and return an Arrow table.

    The inverse of :func:`engine_table`. On DuckDB the result is DuckDB's own Arrow
    export, as in Ibis's ``to_pyarrow`` but without its result converter: that module
    imports pandas whenever pandas is installed (0.3 s of every command's start-up) for
    nothing but null-typed columns, which still go through Ibis here. Other engines use
    Ibis's ``to_pyarrow``.

    Examples
    --------
    >>> fetch_arrow(ibis.memtable({"a": [1, 2]}).mutate(b=ibis._.a * 2)).to_pylist()
    [{'a': 1, 'b': 2}, {'a': 2, 'b': 4}]
    """
    backend = ibis.get_backend(expr)
    if backend.name == "duckdb" and not any(t.is_null() for t in expr.schema().types):
        # What DuckDB's Backend.to_pyarrow does, minus the converter import; the Arrow
        # types are still checked against (and cast to) the expression's schema.
        table = backend._to_duckdb_relation(expr).to_arrow_table()
        return expr.__pyarrow_result__(table)
    return expr.to_pyarrow()


def _duckdb_file_table(con: BaseBackend, path: Path, source: SourceConfig) -> ir.Table:
    other = ibis.duckdb.connect(str(path), read_only=True)
    try:
        data = fetch_arrow(_source_table(other, source.table or "", str(path)))
    finally:
        other.disconnect()
    return engine_table(con, data).mutate(_row=ibis.row_number() + 1)


def _source_table(backend: BaseBackend, name: str, label: str) -> ir.Table:
    """A table of a DuckDB file or a database; if it is missing, suggest the closest."""
    try:
        return backend.table(name)
    except TableNotFound:
        # Listing only on failure: the happy path needs no catalogue query.
        tables = backend.list_tables()
    raise DataValidationError(
        f"{label}: no table {name!r}{_suggest(name, tables)}; "
        f"tables: {', '.join(tables) or '(none)'}",
        fix="set the source's 'table' to one of those",
    )


def materialise(con: BaseBackend, expr: ir.Table, prefix: str) -> ir.Table:
    """Compute ``expr`` once into a temporary table of the engine and return that table.

    Engines without temporary tables (Spark) cache the expression instead, which serves
    the same purpose for the life of the session.

    Examples
    --------
    >>> import ibis
    >>> con = ibis.duckdb.connect()
    >>> materialise(con, con.create_table("t", {"a": [1, 2]}).mutate(b=1), "x").count().execute()
    2
    """
    try:
        return con.create_table(temp_name(prefix), expr, temp=True)
    except NotImplementedError:
        return expr.cache()


def number_rows(table: ir.Table, offset: int) -> ir.Table:
    """``table`` with ``_row``: each row's stored position plus ``offset``.

    For a DuckDB table that :func:`materialise` filled from rows in file order (see
    :class:`FileRows`): DuckDB keeps the insertion order of a table it creates (its
    ``preserve_insertion_order`` setting, on by default and checked by :func:`read_file`)
    and exposes the position as ``rowid``, so no window runs over the rows.

    Examples
    --------
    >>> import ibis
    >>> t = materialise(ibis.duckdb.connect(), ibis.memtable({"a": ["x", "y"]}), "x")
    >>> number_rows(t, 2).to_pyarrow().to_pylist()
    [{'a': 'x', '_row': 2}, {'a': 'y', '_row': 3}]
    """
    return table.mutate(_row=table.rowid() + offset)


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    return did_you_mean(word, choices, cutoff=0.5)


def _read_database(con: BaseBackend, source: SourceConfig, engine_url: str, label: str) -> ir.Table:
    same_engine = source.url is None or source.url == engine_url
    other = con if same_engine else connect(source.url)
    table = _source_table(other, source.table or "", label.rsplit("#", 1)[0])
    if not same_engine:
        # A database other than the engine: bring the rows over as Arrow.
        table = engine_table(con, fetch_arrow(table))
        other.disconnect()
    return materialise(con, table.mutate(_row=ibis.row_number() + 1), "db")


def read_source(con: BaseBackend, name: str, config: Config) -> RawSource:
    """Read one configured source into the engine and map its columns to logical names.

    Parameters
    ----------
    con
        The engine (DuckDB for file sources).
    name
        Logical table name, a key of ``config.sources``.
    config
        The validated configuration.

    Returns
    -------
    RawSource

    Raises
    ------
    DataValidationError
        When the input is missing, unreadable, or lacks a required column (the message
        names the column, suggests the closest existing one, and says how to map it).
    ConfigError
        When a column mapping names a logical column the contract does not know.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("id,client,ts,total\\n1,a,2024-01-02,5\\n")
    >>> cols = {"order_id": "id", "customer_id": "client", "order_ts": "ts", "amount": "total"}
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv", "columns": cols}}}, base_dir=d)
    >>> raw = read_source(connect(), "orders", cfg)
    >>> raw.table.columns, raw.row_word
    (('order_id', 'customer_id', 'order_ts', 'amount', '_row'), 'line')
    """
    source = config.sources[name]
    if source.date_format is not None:
        try:
            check_date_format(source.date_format)
        except ConfigError as exc:
            raise ConfigError(f"sources.{name}.{exc.message}", fix=exc.fix) from None
    if source.path is not None:
        if con.name != "duckdb":
            raise ConfigError(
                f"sources.{name}.path: files are read by DuckDB, but the engine is {con.name}",
                fix="load the file into that database and give sources.{name}.table, "
                "or use engine.url: duckdb://".replace("{name}", name),
            )
        path = config.source_path(name)
        label = source.path
        table, word, offset = read_file(con, path, source, label=label)
    else:
        where = _redact(source.url) if source.url is not None else f"engine {con.name}"
        label = f"{where}#{source.table}"
        table, word, offset = _read_database(con, source, config.engine.url, label), "row", None
    file = None
    if offset is not None:
        file = FileRows(map_columns(table, name, source, label), offset)
        table = table.mutate(_row=ibis.row_number() + offset)
    mapped = map_columns(table, name, source, label)
    return RawSource(
        name,
        mapped,
        label,
        word,
        source.csv.decimal,
        source.date_format,
        config.timezone,
        file,
    )


def row_id(row: ir.IntegerValue) -> ir.StringValue:
    """The identifier a column mapped to ``_row`` holds: the line or row number as text.

    Examples
    --------
    >>> import ibis
    >>> ibis.duckdb.connect().to_pyarrow(row_id(ibis.literal(7)))
    <pyarrow.StringScalar: '7'>
    """
    return row.cast("string")


def _required_fix(name: str, column: str, present: list[str]) -> str:
    if len(present) == 1 and any(mark in present[0] for mark in ",;\t|"):
        # The whole header came out as one column: the file uses another delimiter.
        return f"set sources.{name}.csv.delimiter to the file's delimiter"
    fix = f"map it in segvalue.yaml: sources.{name}.columns.{column}: <your column>"
    return fix + (" (or _row to use the line number)" if column == "order_id" else "")


def map_columns(table: ir.Table, name: str, source: SourceConfig, label: str) -> ir.Table:
    """Rename source columns to logical names and check that required ones exist.

    A column mapped to ``_row`` (the line number) is added only when ``table`` has
    ``_row``; a file not numbered yet gets it when it is (see :class:`FileRows`).

    Examples
    --------
    >>> import ibis
    >>> from segvalue.config import SourceConfig
    >>> t = ibis.memtable({"cid": ["a"], "_row": [2]})
    >>> src = SourceConfig(path="c.csv", columns={"customer_id": "cid"})
    >>> map_columns(t, "customers", src, "c.csv").columns
    ('customer_id', '_row')
    """
    spec = CONTRACT[name]
    present = [c for c in table.columns if c != "_row"]
    for logical in source.columns:
        if spec.column(logical) is None and name != "customers":
            known = [c.name for c in spec.columns]
            raise ConfigError(
                f"sources.{name}.columns.{logical}: {name} has no logical column {logical!r}"
                f"{_suggest(logical, known)}",
                fix=f"map one of: {', '.join(known)}",
            )
    renames: dict[str, str] = {}
    # No id in the source (e.g. a transaction log): the line number serves.
    numbered = [logical for logical, column in source.columns.items() if column == "_row"]
    for logical, column in source.columns.items():
        if column == "_row":
            continue
        if column not in present:
            raise DataValidationError(
                f"{label}: column {column!r} (mapped to {name}.{logical}) not found"
                f"{_suggest(column, present)}; columns present: {', '.join(present)}",
                fix=f"correct sources.{name}.columns.{logical} in segvalue.yaml",
            )
        renames[logical] = column
    for column in spec.required:
        if column in renames or column in numbered:
            continue
        if column in renames.values():
            # The source has the column, but the mapping renames it to another name.
            other = next(
                logical for logical, source_column in renames.items() if source_column == column
            )
            raise DataValidationError(
                f"{label}: column {column!r} is mapped to {name}.{other}"
                f"{_suggest(other, [column])}, so required column {column!r} is missing",
                fix=f"correct sources.{name}.columns.{other} in segvalue.yaml",
            )
        if column not in present:
            raise DataValidationError(
                f"{label}: required column {column!r} of table {name} not found"
                f"{_suggest(column, present)}; columns present: {', '.join(present)}",
                fix=_required_fix(name, column, present),
            )
    # A source column that already bears a mapped logical name is shadowed by the mapping.
    shadowed = [c for c in [*renames, *numbered] if c in present and c not in renames.values()]
    if shadowed:
        table = table.drop(*shadowed)
    if renames:
        table = table.rename(renames)
    if numbered and "_row" in table.columns:
        table = table.mutate(**{logical: row_id(table._row) for logical in numbered})
    return table
