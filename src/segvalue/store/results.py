"""The results store on Ibis: runs, their tables and documents, atomically, in a database.

Layout (schema version :data:`SCHEMA_VERSION`, the same on DuckDB and PostgreSQL):

``segvalue_meta``
    ``key``, ``value``: the schema version, when and by which segvalue it was created.
``segvalue_runs``
    One row per run: ``run_id``, ``status`` (``running``, ``complete``, ``failed``),
    ``started_at``, ``finished_at``, ``as_of``, ``config_hash``, ``data_fingerprint`` and
    JSON columns ``schemes``, ``row_counts``, ``rejects`` (per rule), ``freshness`` (per
    table), ``timings`` (per stage), ``versions``; ``error`` for a failed run.
``segvalue_tables``
    Which tables a run holds: ``run_id``, ``name`` (``customer_scores``, ``memberships``,
    ``segment_kpis``, ...), the physical table, the Arrow schema, the row count.
``segvalue_documents``
    JSON documents per run: the run report, personas, the CLV models, budget guidance.
``segvalue_api_keys``
    API keys (schema version 2): ``key_id``, ``name``, ``scope`` (``read`` or
    ``write``), ``key_hash`` (SHA-256 of the key: the key itself is never stored),
    ``created_at``, ``revoked_at`` (null while the key is valid).
``segvalue_events``
    Orders and touchpoints received one at a time (``POST /api/v1/events``, schema
    version 3): ``seq`` (1, 2, ... in arrival order), ``event_id`` (unique: an event sent
    twice is kept once), ``type``, ``customer_id``, ``occurred_at``, ``body`` (the
    validated event, JSON), ``received_at``. Inputs, not results: retention keeps them.
``segvalue_segment_events``
    Segment entries and exits found in real time: ``seq`` (the event that caused it),
    ``customer_id``, ``scheme``, ``from_segment``, ``to_segment`` (null: none), ``moved_at``,
    ``run_id``.
``sv_<name>_<hash>``
    The rows of every run's tables of one name and Arrow schema: ``run_id``, ``_row``
    (the row's position) and columns ``c0``, ``c1``, ... (names and exact types live in
    ``segvalue_tables``, so any column name and type round-trips on both databases).

A run is written in two steps: :meth:`ResultsStore.begin_run` records it as
``running``; :meth:`ResultsStore.commit_run` inserts all of its rows and documents and
sets it ``complete`` in one transaction. Readers see complete runs only, so a run is
visible whole or not at all; a killed run leaves a ``running`` row, which the next
writer marks ``failed`` (:meth:`ResultsStore.remove_debris`). One writer at a time:
:func:`store_lock`.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import pyarrow as pa

from segvalue.data.safety import target_lock, wait_for_lock, writing
from segvalue.data.writers import json_safe
from segvalue.errors import ConfigError, DataValidationError, redact_secrets
from segvalue.store.journal import JOURNAL_EVENTS, EventJournal, Journaled, as_rows, journal_path

__all__ = [
    "SCHEMA_VERSION",
    "ApiKeyRecord",
    "EventRecord",
    "ResultsStore",
    "RunRecord",
    "SegmentEvent",
    "StoreMissingError",
    "open_store",
    "store_lock",
]

#: Version of the store's layout; older stores are migrated when opened for writing.
SCHEMA_VERSION = 3

META, RUNS, TABLES, DOCUMENTS, API_KEYS = (
    "segvalue_meta",
    "segvalue_runs",
    "segvalue_tables",
    "segvalue_documents",
    "segvalue_api_keys",
)
EVENTS, SEGMENT_EVENTS = "segvalue_events", "segvalue_segment_events"
_LOG = logging.getLogger("segvalue.store")
STATUSES = ("running", "complete", "failed")
_JSON_FIELDS = ("schemes", "row_counts", "rejects", "freshness", "timings", "versions")
_RUN_COLUMNS = (
    "run_id",
    "status",
    "started_at",
    "finished_at",
    "as_of",
    "config_hash",
    "data_fingerprint",
    *_JSON_FIELDS,
    "error",
)
_API_KEYS_DDL = (
    f"CREATE TABLE {API_KEYS} (key_id TEXT PRIMARY KEY, name TEXT, scope TEXT NOT NULL, "
    "key_hash TEXT NOT NULL, created_at TIMESTAMP NOT NULL, revoked_at TIMESTAMP)"
)
_API_KEY_COLUMNS = ("key_id", "name", "scope", "key_hash", "created_at", "revoked_at")
_EVENT_COLUMNS = ("seq", "event_id", "type", "customer_id", "occurred_at", "body", "received_at")
_SEGMENT_EVENT_COLUMNS = (
    "seq",
    "customer_id",
    "scheme",
    "from_segment",
    "to_segment",
    "moved_at",
    "run_id",
)
_EVENTS_DDL = [
    f"CREATE TABLE {EVENTS} (seq BIGINT PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, "
    "type TEXT NOT NULL, customer_id TEXT NOT NULL, occurred_at TIMESTAMP NOT NULL, "
    "body TEXT NOT NULL, received_at TIMESTAMP NOT NULL)",
    f"CREATE TABLE {SEGMENT_EVENTS} (seq BIGINT NOT NULL, customer_id TEXT NOT NULL, "
    "scheme TEXT NOT NULL, from_segment TEXT, to_segment TEXT, moved_at TIMESTAMP NOT NULL, "
    "run_id TEXT NOT NULL)",
]
#: One customer's events by index on PostgreSQL. DuckDB has none: a server reads them
#: from memory, a scan by zone maps serves the rest, and an ART index made each event's
#: insert cost 1.3 ms more (older DuckDB stores lose theirs when next opened to write).
_EVENT_INDEXES = {
    "segvalue_events_customer": f"{EVENTS} (customer_id)",
    "segvalue_segment_events_customer": f"{SEGMENT_EVENTS} (customer_id)",
}
#: Statements that bring a store of version ``v - 1`` to version ``v``, by ``v``.
MIGRATIONS: dict[int, list[str]] = {2: [_API_KEYS_DDL], 3: _EVENTS_DDL}
#: Indexes a migration adds on a database server only (not on a DuckDB file), by ``v``.
SERVER_INDEXES: dict[int, dict[str, str]] = {3: _EVENT_INDEXES}
#: A reader waits this long for a DuckDB store a writer holds open (seconds).
READ_WAIT = 30.0
#: Tables added to a complete run later (:meth:`ResultsStore.attach`), which another
#: process may replace: never held in memory or located once.
ATTACHED_PREFIX = "activation_"
_ADVISORY_KEY = 7_300_451_227  # PostgreSQL advisory lock of the store's writer


class StoreMissingError(ConfigError):
    """There is no results store at the URL yet (no run has been recorded)."""


@dataclass(frozen=True)
class ApiKeyRecord:
    """One API key as the store records it: its hash, never the key.

    Examples
    --------
    >>> k = ApiKeyRecord("k1", None, "read", "ab" * 32, dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    >>> k.revoked_at is None
    True
    """

    key_id: str
    name: str | None
    scope: str
    key_hash: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None


@dataclass(frozen=True)
class EventRecord:
    """One real-time event as the store records it.

    Examples
    --------
    >>> e = EventRecord(1, "order:A-1", "order", "C1", dt.datetime(2024, 1, 2), {"amount": 5.0})
    >>> e.body["amount"], e.received_at is None
    (5.0, True)
    """

    seq: int
    event_id: str
    type: str
    customer_id: str
    occurred_at: dt.datetime
    body: dict[str, Any]
    received_at: dt.datetime | None = None


@dataclass(frozen=True)
class SegmentEvent:
    """A customer entering or leaving a segment (``from_segment`` / ``to_segment`` None:
    none)."""

    seq: int
    customer_id: str
    scheme: str
    from_segment: str | None
    to_segment: str | None
    at: dt.datetime
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``scheme``, ``from``, ``to``, ``at`` (ISO, UTC), ``customer_id``,
        ``run_id``, ``seq``."""
        return {
            "scheme": self.scheme,
            "from": self.from_segment,
            "to": self.to_segment,
            "at": self.at.replace(tzinfo=dt.UTC).isoformat(),
            "customer_id": self.customer_id,
            "run_id": self.run_id,
            "seq": self.seq,
        }


def _event_record(row: Sequence[Any]) -> EventRecord:
    values = dict(zip(_EVENT_COLUMNS, row, strict=True))
    values["body"] = json.loads(values["body"])
    return EventRecord(**values)


def _event_row(event: EventRecord, received: dt.datetime | None) -> tuple[Any, ...]:
    """``event`` as its ``segvalue_events`` row (received at ``received``)."""
    return (
        event.seq,
        event.event_id,
        event.type,
        event.customer_id,
        _naive_utc(event.occurred_at),
        json.dumps(json_safe(event.body), default=str, allow_nan=False),
        received,
    )


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _key_record(row: Sequence[Any]) -> ApiKeyRecord:
    values = dict(zip(_API_KEY_COLUMNS, row, strict=True))
    values["created_at"] = _utc(values["created_at"])
    values["revoked_at"] = _utc(values["revoked_at"])
    return ApiKeyRecord(**values)


@dataclass(frozen=True)
class RunRecord:
    """One run as the store records it.

    Examples
    --------
    >>> r = RunRecord("20240101T000000Z-abc", "complete", dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    >>> r.to_dict()["started_at"], r.to_dict()["schemes"]
    ('2024-01-01T00:00:00+00:00', [])
    """

    run_id: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    as_of: dt.date | None = None
    config_hash: str = ""
    data_fingerprint: str = ""
    schemes: list[str] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    rejects: dict[str, int] = field(default_factory=dict)
    freshness: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (times and dates as ISO strings)."""
        out: dict[str, Any] = {}
        for name in _RUN_COLUMNS:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, dt.date) else value
        return out


def _utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, dt.datetime)  # the databases give datetimes
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _record(row: Sequence[Any]) -> RunRecord:
    values = dict(zip(_RUN_COLUMNS, row, strict=True))
    for name in _JSON_FIELDS:
        values[name] = (
            json.loads(values[name]) if values[name] else ([] if name == "schemes" else {})
        )
    values["started_at"] = _utc(values["started_at"])
    values["finished_at"] = _utc(values["finished_at"])
    as_of = values["as_of"]
    if isinstance(as_of, dt.datetime):
        values["as_of"] = as_of.date()
    elif isinstance(as_of, str):
        values["as_of"] = dt.date.fromisoformat(as_of)
    return RunRecord(**values)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _stored_type(kind: pa.DataType) -> tuple[pa.DataType | None, str]:
    """The Arrow type a column is stored as (None: as JSON text) and its SQL type name."""
    if pa.types.is_dictionary(kind):
        return _stored_type(kind.value_type)
    if pa.types.is_boolean(kind):
        return pa.bool_(), "BOOLEAN"
    if pa.types.is_integer(kind) and not (pa.types.is_uint64(kind)):
        return pa.int64(), "BIGINT"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return pa.float64(), "DOUBLE PRECISION"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pa.string(), "TEXT"
    if pa.types.is_date(kind):
        return pa.date32(), "DATE"
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            return pa.timestamp("us"), "TIMESTAMP"
        return pa.timestamp("us", tz="UTC"), "TIMESTAMPTZ"
    return None, "TEXT"  # lists, structs, maps, ...: JSON text, decoded on read


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, f.type, f.nullable) for f in schema])


def _schema_text(schema: pa.Schema) -> str:
    return base64.b64encode(_plain_schema(schema).serialize().to_pybytes()).decode()


def _schema_of(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _physical_name(name: str, schema: pa.Schema) -> str:
    digest = hashlib.sha256(f"{name}\0{_schema_text(schema)}".encode()).hexdigest()[:12]
    base = re.sub(r"[^a-z0-9_]", "_", name.lower())[:32]
    return f"sv_{base}_{digest}"


def _stored_columns(table: pa.Table) -> list[pa.Array | pa.ChunkedArray]:
    """The table's columns as stored: dictionaries decoded, the rest as JSON text."""
    out: list[pa.Array | pa.ChunkedArray] = []
    for column in table.columns:
        stored, _ = _stored_type(column.type)
        if stored is None:
            texts = [
                None if v is None else json.dumps(json_safe(v), default=str, allow_nan=False)
                for v in column.to_pylist()
            ]
            out.append(pa.array(texts, pa.string()))
        else:
            out.append(column.cast(stored))
    return out


def _restored(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Columns read back (c0, c1, ...) with their names and exact types."""
    arrays = []
    for i, target in enumerate(schema):
        column = table.column(f"c{i}")
        stored, _ = _stored_type(target.type)
        if stored is None:
            values = [None if v is None else json.loads(v) for v in column.to_pylist()]
            arrays.append(pa.array(values, target.type))
        else:
            arrays.append(column.cast(stored).cast(target.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class _Dialect:
    """What differs between the databases: parameters, transactions, bulk inserts."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.raw = backend.con
        self.name = backend.name
        self.mark = "?" if self.name == "duckdb" else "%s"
        # One connection, one thread at a time: the events journal's events are moved
        # into the tables on a thread of their own (ResultsStore._move_journaled) while
        # requests go on; a transaction holds it throughout.
        self.lock = threading.RLock()

    def sql(self, text: str) -> str:
        return text.replace("?", self.mark)

    def execute(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            if self.name == "duckdb":
                cursor = self.raw.execute(text, list(params))
                return list(cursor.fetchall()) if cursor.description else []
            with self.raw.cursor() as cursor:
                cursor.execute(self.sql(text), list(params))
                return list(cursor.fetchall()) if cursor.description else []

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            if self.name == "duckdb":
                self.raw.begin()
                try:
                    yield
                except BaseException:
                    self.raw.rollback()
                    raise
                self.raw.commit()
            else:
                with self.raw.transaction():
                    yield

    def insert(self, physical: str, columns: list[str], table: pa.Table) -> None:
        with self.lock:
            if self.name == "duckdb":
                view = "_segvalue_insert"
                self.raw.register(view, table)
                try:
                    self.raw.execute(f"INSERT INTO {physical} SELECT * FROM {view}")
                finally:
                    self.raw.unregister(view)
                return
            names = ", ".join(_quote(c) for c in columns)
            with (
                self.raw.cursor() as cursor,
                cursor.copy(f"COPY {physical} ({names}) FROM STDIN") as copy,
            ):
                for row in zip(*(c.to_pylist() for c in table.columns), strict=True):
                    copy.write_row(row)

    def select(self, text: str, params: Sequence[Any], types: Sequence[pa.DataType]) -> pa.Table:
        """Rows of a query as an Arrow table of the given column types."""
        if self.name == "duckdb":
            with self.lock:
                read = self.raw.execute(text, list(params)).to_arrow_table()
            return pa.Table.from_arrays(
                [c.cast(t) for c, t in zip(read.columns, types, strict=True)],
                names=[f"c{i}" for i in range(len(types))],
            )
        rows = self.execute(text, params)
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in types]
        return pa.Table.from_arrays(
            [pa.array(list(c), t) for c, t in zip(columns, types, strict=True)],
            names=[f"c{i}" for i in range(len(types))],
        )

    def tables(self) -> set[str]:
        if self.name == "duckdb":
            rows = self.execute("SELECT table_name FROM duckdb_tables()")
        else:
            rows = self.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        return {r[0] for r in rows}


class _Reader:
    """A read-only connection without Ibis: what read commands need, and they start fast.

    Reads are a few parameterised SELECTs on the store's own tables; Ibis and pandas
    (imported by Ibis's backends) would be 0.4-0.7 s of every read command's start-up,
    most of ``segvalue kpis``' time. Writers connect through Ibis.
    """

    def __init__(self, con: Any, name: str) -> None:
        self.con, self.name = con, name

    def disconnect(self) -> None:
        self.con.close()


def _duckdb_file(path: str, read_only: bool) -> Any:
    """The DuckDB file, waiting while another process holds it (a writer, briefly)."""
    deadline = time.monotonic() + READ_WAIT
    while True:
        try:
            if read_only:
                import duckdb

                return _Reader(duckdb.connect(path, read_only=True), "duckdb")
            from segvalue.data.ibis_imports import defer_sql_compilers

            defer_sql_compilers()
            import ibis

            return ibis.duckdb.connect(path, read_only=False)
        except Exception as exc:  # duckdb.IOException: another process holds the file
            # ... or, in this process, a connection of the other mode (a server's read
            # connection while a writer opens it): both are released, so wait for it.
            held = "lock" in str(exc).lower() or "different configuration" in str(exc)
            if not held or time.monotonic() >= deadline:
                raise ConfigError(
                    f"cannot open the results store {path}: {str(exc).splitlines()[0]}",
                    fix="point store.url at a segvalue results store or a new file "
                    "(if it is one, another program may hold it open)",
                    parameter="store.url",
                ) from None
            time.sleep(0.05)


def _connect(url: str, *, read_only: bool) -> Any:
    if url.startswith("duckdb://"):
        return _duckdb_file(url.removeprefix("duckdb://"), read_only)
    if read_only and url.startswith(("postgres://", "postgresql://")):
        import psycopg

        try:
            return _Reader(psycopg.connect(url, autocommit=True), "postgres")
        except psycopg.Error as exc:
            raise ConfigError(
                f"cannot connect to the results store {redact_secrets(url)}: "
                f"{redact_secrets(str(exc).strip().splitlines()[0] if str(exc).strip() else '')}",
                fix="check store.url, the credentials and that the server is running",
                parameter="store.url",
            ) from None
    from segvalue.data.readers import connect

    return connect(url)


def _is_duckdb(url: str) -> bool:
    return url.startswith("duckdb://")


#: Lookups by one column of one complete run's table (``ResultsStore.rows``) in one
#: process after which the table is held in memory, its rows grouped by that column: a
#: long-lived reader (``segvalue serve``) then answers from memory, a one-off command
#: never pays for reading the whole table.
HOLD_AFTER = 3
#: The most memory the held tables of one process take (bytes, roughly) unless a store
#: is opened with ``hold_bytes`` (``serve.memory_mib``); a table that would not fit alone,
#: or that was dropped to make room, is not held (again): its lookups stay a WHERE on the
#: database.
HOLD_BYTES = 512 * 2**20


class _HeldRows:
    """One complete run's table in memory, the positions of its rows grouped by one column.

    Rows of one value come out in committed order (a stable sort of the positions).
    """

    def __init__(self, table: pa.Table, column: str) -> None:
        import numpy as np
        import pyarrow.compute as pc

        values = table.column(column).combine_chunks()
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        encoded = pc.dictionary_encode(values)
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
        distinct = encoded.dictionary.to_pylist()
        self.table = table
        self.order = np.argsort(codes, kind="stable")  # null values (-1) first
        self.counts = np.bincount(codes[codes >= 0], minlength=len(distinct))
        self.starts = int((codes < 0).sum()) + np.cumsum(self.counts) - self.counts
        self.position = {value: i for i, value in enumerate(distinct)}
        # The table, the index arrays and the dictionary (about 100 bytes an entry).
        arrays = self.order.nbytes + self.counts.nbytes + self.starts.nbytes
        self.nbytes = int(table.nbytes + arrays) + 100 * len(distinct)

    def rows(self, value: str) -> pa.Table:
        i = self.position.get(value)
        if i is None:
            return self.table.slice(0, 0)
        start, count = int(self.starts[i]), int(self.counts[i])
        if count == 1:  # a slice is a view: cheaper than a take of every column
            return self.table.slice(int(self.order[start]), 1)
        return self.table.take(self.order[start : start + count])


class _Holder:
    """The tables held in this process (least recently used dropped first), by store URL,
    run, table and column, and how often each was looked up before being held.

    A complete run's tables never change (retention removes a run whole, and ``rows``
    checks that the run is still complete before using what is held), so what is held
    stays true for the life of the process.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: OrderedDict[tuple[str, ...], _HeldRows] = OrderedDict()
        self.lookups: dict[tuple[str, ...], int] = {}
        self.too_big: set[tuple[str, ...]] = set()
        self.limit: int | None = None  # bytes; None: HOLD_BYTES
        self.hashes: OrderedDict[tuple[str, ...], Any] = OrderedDict()

    def _limit(self) -> int:
        return HOLD_BYTES if self.limit is None else self.limit

    def get(self, key: tuple[str, ...]) -> _HeldRows | None:
        """The held table of ``key``, or None (counting the lookup)."""
        with self.lock:
            held = self.held.get(key)
            if held is not None:
                self.held.move_to_end(key)
                return held
            if len(self.lookups) > 10_000:  # bounded: counts of old lookups are dropped
                self.lookups.clear()
            self.lookups[key] = self.lookups.get(key, 0) + 1
            return None

    def wants(self, key: tuple[str, ...]) -> bool:
        """Whether ``key`` was looked up often enough to be held (and may fit)."""
        with self.lock:
            return key not in self.too_big and self.lookups.get(key, 0) >= HOLD_AFTER

    def hold(self, key: tuple[str, ...], rows: _HeldRows) -> None:
        with self.lock:
            self.lookups.pop(key, None)
            if rows.nbytes > self._limit():
                self.too_big.add(key)
                return
            self.held[key] = rows
            while sum(h.nbytes for h in self.held.values()) > self._limit():
                # Not held again: tables taking turns would each be read whole, again
                # and again.
                self.too_big.add(self.held.popitem(last=False)[0])

    def clear(self) -> None:
        with self.lock:
            self.held.clear()
            self.lookups.clear()
            self.too_big.clear()
            self.hashes.clear()
            self.limit = None

    #: Hash sets kept (:meth:`ResultsStore.contains`), least recently used dropped first.
    HASH_SETS = 16

    def hash_set(self, key: tuple[str, ...], build: Callable[[], Any]) -> Any:
        """The sorted hashes of one column of a complete run's table (built once)."""
        with self.lock:
            found = self.hashes.get(key)
            if found is not None:
                self.hashes.move_to_end(key)
                return found
        built = build()
        with self.lock:
            self.hashes[key] = built
            while len(self.hashes) > self.HASH_SETS:
                self.hashes.popitem(last=False)
        return built


_HOLDER = _Holder()


_F = TypeVar("_F", bound=Callable[..., Any])


def _writes_runs_or_keys(method: _F) -> _F:
    """A writer method that changes runs or keys: what the connection kept is not used
    while it runs (it reads what it writes) and is forgotten after it."""

    @functools.wraps(method)
    def wrapped(self: ResultsStore, *args: Any, **kwargs: Any) -> Any:
        kept, self._memo = self._memo, None  # nothing kept is used or kept meanwhile
        try:
            return method(self, *args, **kwargs)
        finally:
            if kept is not None:
                kept.clear()
            self._memo = kept

    return cast(_F, wrapped)


class ResultsStore:
    """An open results store (see the module's docstring for its layout).

    Open it with :func:`open_store`; use it as a context manager to close it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> url = f"duckdb://{pathlib.Path(tempfile.mkdtemp()) / 's.duckdb'}"
    >>> t0 = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    >>> with open_store(url, create=True) as store:
    ...     store.begin_run(RunRecord("r1", "running", t0, as_of=dt.date(2024, 1, 1)))
    ...     members = pa.table({"customer_id": ["a"]})
    ...     _ = store.commit_run("r1", {"memberships": members}, {"run": {}})
    ...     [r.status for r in store.runs()], store.table("r1", "memberships").num_rows
    (['complete'], 1)
    """

    def __init__(self, backend: Any, url: str, *, read_only: bool) -> None:
        self._backend = backend
        self._db = _Dialect(backend)
        self.url = url
        self.read_only = read_only
        self._located: dict[tuple[str, str], tuple[str, pa.Schema]] = {}
        # A DuckDB file cannot change but through this connection while it is open: DuckDB
        # lets a writer (another process, or this one) open it only when no reader holds
        # it, and a writer holds it alone. What this connection reads of runs and keys is
        # kept until it writes them itself (_writes_runs_or_keys).
        self._memo: dict[tuple[Any, ...], Any] | None = {} if self._db.name == "duckdb" else None
        # A DuckDB file's real-time events go through its journal (segvalue.store.journal);
        # the events it holds that the tables do not yet, in order.
        self._journal = (
            EventJournal(journal_path(Path(url.removeprefix("duckdb://"))))
            if url.startswith("duckdb:///")
            else None
        )
        self._journaled: list[Journaled] = []
        # The journal's events being moved into the tables (_move_journaled) on the
        # thread ``_mover``; reads take them with the tables' under the connection's lock.
        self._moving: list[Journaled] = []
        self._mover: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle
    def _memoized(self, key: tuple[Any, ...], read: Callable[[], Any]) -> Any:
        """``read()``, kept for the connection's life when the store cannot change."""
        if self._memo is None:
            return read()
        if key not in self._memo:
            self._memo[key] = read()
        return self._memo[key]

    def close(self) -> None:
        """Close the connection (idempotent); a writer first moves the events of its
        journal into the tables (kept in the journal if that fails, for the next writer)."""
        if self._backend is not None:
            try:
                if self._journal is not None and not self.read_only:
                    self._flush_journal()
                    self._journal.remove()
            finally:
                try:
                    if self._journal is not None:
                        self._journal.close()
                finally:
                    self._backend.disconnect()
                    self._backend = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def shown(self) -> str:
        """The store's URL with secrets hidden, for messages."""
        return redact_secrets(self.url)

    def _schema_version(self) -> int | None:
        if META not in self._db.tables():
            return None
        rows = self._db.execute(f"SELECT value FROM {META} WHERE key = ?", ["schema_version"])
        return int(rows[0][0]) if rows else None

    def _create(self) -> None:
        from segvalue import __version__

        with self._db.transaction():
            self._db.execute(f"CREATE TABLE {META} (key TEXT PRIMARY KEY, value TEXT)")
            self._db.execute(
                f"CREATE TABLE {RUNS} (run_id TEXT PRIMARY KEY, status TEXT NOT NULL, "
                "started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP, as_of DATE, "
                "config_hash TEXT, data_fingerprint TEXT, schemes TEXT, row_counts TEXT, "
                "rejects TEXT, freshness TEXT, timings TEXT, versions TEXT, error TEXT)"
            )
            self._db.execute(
                f"CREATE TABLE {TABLES} (run_id TEXT NOT NULL, name TEXT NOT NULL, "
                "physical TEXT NOT NULL, arrow_schema TEXT NOT NULL, n_rows BIGINT NOT NULL, "
                "PRIMARY KEY (run_id, name))"
            )
            self._db.execute(
                f"CREATE TABLE {DOCUMENTS} (run_id TEXT NOT NULL, name TEXT NOT NULL, "
                "body TEXT NOT NULL, PRIMARY KEY (run_id, name))"
            )
            # The version-1 layout above, then every migration: a new store is the same
            # as an old one migrated.
            for step in range(2, SCHEMA_VERSION + 1):
                self._migrate(step)
            now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            for key, value in (
                ("schema_version", str(SCHEMA_VERSION)),
                ("created_at", now),
                ("created_by", f"segvalue {__version__}"),
            ):
                self._db.execute(f"INSERT INTO {META} VALUES (?, ?)", [key, value])

    def _prepare(self, *, create: bool) -> None:
        """Check the schema version; create (a server's schema) or migrate it (writers)."""
        version = self._schema_version()
        if version is None:
            ours = {t for t in self._db.tables() if t.startswith(("segvalue_", "sv_"))}
            if not create or self.read_only:
                raise StoreMissingError(
                    f"no results store at {self.shown} yet: no run has been recorded",
                    fix="run the main job first (it creates the store)",
                    parameter="store.url",
                )
            if ours or _is_duckdb(self.url):  # a file segvalue did not create: not ours
                raise ConfigError(
                    f"{self.shown} is not a segvalue results store (it has no schema version)"
                    ", and segvalue does not write into databases it did not create",
                    fix="point store.url at a new file (or, on a server, an empty schema)",
                    parameter="store.url",
                )
            self._create()
            return
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"the results store {self.shown} has schema version {version}; this segvalue "
                f"reads up to {SCHEMA_VERSION}",
                fix="upgrade segvalue, or point store.url at another store",
                parameter="store.url",
            )
        if version < SCHEMA_VERSION and not self.read_only:
            with self._db.transaction():
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    self._migrate(step)
                self._db.execute(
                    f"UPDATE {META} SET value = ? WHERE key = ?",
                    [str(SCHEMA_VERSION), "schema_version"],
                )
        elif version < SCHEMA_VERSION:
            raise ConfigError(
                f"the results store {self.shown} has schema version {version} and needs a "
                f"migration to {SCHEMA_VERSION}",
                fix="run the main job once with this segvalue (it migrates the store)",
                parameter="store.url",
            )
        if self._db.name == "duckdb" and not self.read_only:
            self._drop_event_indexes()
        self._open_journal()

    def _migrate(self, step: int) -> None:
        """The statements bringing the store to version ``step`` (in a transaction)."""
        for statement in MIGRATIONS.get(step, []):
            self._db.execute(statement)
        if self._db.name != "duckdb":
            for name, on in SERVER_INDEXES.get(step, {}).items():
                self._db.execute(f"CREATE INDEX {name} ON {on}")

    def _open_journal(self) -> None:
        """Read the events journal: a writer moves what the tables lack into them (a
        server was killed); a reader keeps it to read with the tables."""
        if self._journal is None:
            return
        kept = self._journal.read()
        if not kept:
            return
        stored = int(self._db.execute(f"SELECT max(seq) FROM {EVENTS}")[0][0] or 0)
        missing = [j for j in kept if j.event.seq > stored]
        if self.read_only:
            self._journaled = missing
            return
        self._journaled = missing
        self._flush_journal()
        if self._journal.path.exists():
            self._journal.clear()  # (events the tables held already: a move was cut short)

    def _flush_journal(self) -> None:
        """Move every event of the journal into the tables now (one transaction), the
        ones a move in progress holds too; then clear it."""
        if self._journal is None:
            return
        self._wait_for_mover()
        with self._db.lock:
            entries = self._moving + self._journaled
            if entries:
                self._insert_journaled(entries)
            if self._journal.moving.exists():
                self._journal.moved()
            if self._journaled:
                self._journal.clear()
            self._moving, self._journaled = [], []

    def _start_moving(self) -> None:
        """Move the journal's events into the tables on a thread of their own: the
        journal is renamed (new events start a new one) and the tables take its events
        in one transaction, while events go on being journaled."""
        if self._journal is None or self._moving or (self._mover and self._mover.is_alive()):
            return  # (a move that failed is tried again when the store is closed)
        with self._db.lock:
            self._journal.rotate()
            self._moving, self._journaled = self._journaled, []
        self._mover = threading.Thread(
            target=self._move_journaled, name="segvalue-journal", daemon=True
        )
        self._mover.start()

    def _move_journaled(self) -> None:
        try:
            with self._db.lock:  # (readers see the events in the tables or moving, once)
                self._insert_journaled(self._moving)
                self._moving = []
            assert self._journal is not None
            self._journal.moved()
        except Exception:  # kept in memory and in the moved file: the next writer retries
            _LOG.exception("moving the events journal into the store's tables failed")

    def _wait_for_mover(self) -> None:
        if self._mover is not None:
            self._mover.join()
            self._mover = None

    def _insert_journaled(self, entries: Sequence[Journaled]) -> None:
        """The events and their segment changes into the tables, in one transaction, as
        Arrow tables: a bulk insert (1,024 events in about 10 ms, not a statement each)."""
        events, moves = as_rows(entries)
        types = {
            "seq": pa.int64(),
            "occurred_at": pa.timestamp("us"),
            "received_at": pa.timestamp("us"),
            "moved_at": pa.timestamp("us"),
        }
        tables = [
            (
                table,
                columns,
                pa.table(
                    {
                        name: pa.array([row[i] for row in rows], types.get(name, pa.string()))
                        for i, name in enumerate(columns)
                    }
                ),
            )
            for table, columns, rows in (
                (EVENTS, _EVENT_COLUMNS, events),
                (SEGMENT_EVENTS, _SEGMENT_EVENT_COLUMNS, moves),
            )
            if rows
        ]
        with self._db.transaction():
            for table, columns, arrow in tables:
                self._db.insert(table, list(columns), arrow)

    def _drop_event_indexes(self) -> None:
        """Drop the events' indexes of a DuckDB store made while it had them."""
        names = list(_EVENT_INDEXES)
        found = self._db.execute(
            "SELECT index_name FROM duckdb_indexes() WHERE index_name IN (?, ?)", names
        )
        if found:
            with self._db.transaction():
                for (name,) in found:
                    self._db.execute(f"DROP INDEX {name}")

    # ------------------------------------------------------------------ writers
    def _require_writer(self) -> None:
        if self.read_only:
            raise ConfigError(f"the results store {self.shown} is open read-only", fix="")

    @_writes_runs_or_keys
    def begin_run(self, record: RunRecord) -> None:
        """Record a run as ``running`` (committed at once; readers do not list its data)."""
        self._require_writer()
        self._write_record(record, insert=True)

    def _write_record(self, record: RunRecord, *, insert: bool) -> None:
        values = record.to_dict()
        for name in _JSON_FIELDS:
            values[name] = json.dumps(json_safe(values[name]), sort_keys=True, allow_nan=False)
        values["started_at"] = record.started_at.astimezone(dt.UTC).replace(tzinfo=None)
        values["finished_at"] = (
            None
            if record.finished_at is None
            else record.finished_at.astimezone(dt.UTC).replace(tzinfo=None)
        )
        values["as_of"] = record.as_of
        if insert:
            marks = ", ".join("?" for _ in _RUN_COLUMNS)
            sql = f"INSERT INTO {RUNS} ({', '.join(_RUN_COLUMNS)}) VALUES ({marks})"
            self._db.execute(sql, [values[c] for c in _RUN_COLUMNS])
        else:
            sets = ", ".join(f"{c} = ?" for c in _RUN_COLUMNS[1:])
            sql = f"UPDATE {RUNS} SET {sets} WHERE run_id = ?"
            self._db.execute(sql, [values[c] for c in _RUN_COLUMNS[1:]] + [record.run_id])

    @_writes_runs_or_keys
    def commit_run(
        self,
        run_id: str,
        tables: Mapping[str, pa.Table],
        documents: Mapping[str, Any],
        *,
        update: Callable[[RunRecord], RunRecord] | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> RunRecord:
        """Insert a run's tables and documents and mark it ``complete``, in one transaction.

        Parameters
        ----------
        run_id
            A run recorded by :meth:`begin_run`, still ``running``.
        tables
            Arrow tables by name.
        documents
            JSON-ready documents by name.
        update
            Gives the final record from the running one (finish time, counts, timings);
            default: the running record with ``finished_at`` now.
        before_commit
            Called inside the transaction after every insert, before the commit (a
            failure there rolls everything back).

        Returns
        -------
        RunRecord
            The complete run.
        """
        self._require_writer()
        running = self.run(run_id, status="running")
        record = (update or (lambda r: r))(running)
        record = RunRecord(
            **{
                **{c: getattr(record, c) for c in _RUN_COLUMNS},
                "status": "complete",
                "finished_at": record.finished_at or dt.datetime.now(dt.UTC),
            }
        )
        existing = self._db.tables()
        with self._db.transaction():
            for name, table in tables.items():
                self._insert_table(run_id, name, table, existing)
            for name, doc in documents.items():
                body = json.dumps(json_safe(doc), default=str, allow_nan=False, sort_keys=True)
                self._db.execute(f"INSERT INTO {DOCUMENTS} VALUES (?, ?, ?)", [run_id, name, body])
            self._write_record(record, insert=False)
            if before_commit is not None:
                before_commit()
        return record

    def _insert_table(self, run_id: str, name: str, table: pa.Table, existing: set[str]) -> None:
        schema = _plain_schema(table.schema)
        physical = _physical_name(name, schema)
        if physical not in existing:
            columns = ", ".join(f"c{i} {_stored_type(f.type)[1]}" for i, f in enumerate(schema))
            sep = ", " if columns else ""
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {physical} "
                f"(run_id TEXT NOT NULL, _row BIGINT NOT NULL{sep}{columns})"
            )
            if self._db.name != "duckdb" and "customer_id" in schema.names:
                # One customer's rows (``rows``) by index; DuckDB's zone maps serve it
                # without one, and an ART index would slow its bulk inserts.
                self._db.execute(
                    f"CREATE INDEX IF NOT EXISTS {physical}_customer ON {physical} "
                    f"(run_id, c{schema.get_field_index('customer_id')})"
                )
            existing.add(physical)
        rows = table.num_rows
        if rows:
            stored = pa.Table.from_arrays(
                [
                    pa.array([run_id] * rows, pa.string()),
                    pa.array(range(rows), pa.int64()),
                    *_stored_columns(table),
                ],
                names=["run_id", "_row", *(f"c{i}" for i in range(len(schema)))],
            )
            self._db.insert(physical, stored.column_names, stored)
        self._db.execute(
            f"INSERT INTO {TABLES} VALUES (?, ?, ?, ?, ?)",
            [run_id, name, physical, _schema_text(schema), rows],
        )

    @_writes_runs_or_keys
    def attach(
        self,
        run_id: str,
        tables: Mapping[str, pa.Table],
        documents: Mapping[str, Any],
        *,
        replace: Sequence[str] = (),
    ) -> None:
        """Add tables and documents to a complete run, in one transaction (what is computed
        on a run later, such as its activation plan). The run's tables and documents
        named in ``replace`` (those segvalue attached before) are removed first; any
        other name the run already holds is refused.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> url = f"duckdb:///{pathlib.Path(tempfile.mkdtemp()) / 's.duckdb'}"
        >>> from segvalue.store import open_store
        >>> with open_store(url, create=True) as store:
        ...     store.begin_run(RunRecord("r1", "running", dt.datetime.now(dt.UTC)))
        ...     _ = store.commit_run("r1", {}, {})
        ...     store.attach("r1", {"plan": pa.table({"a": [1, 2]})}, {"plan_notes": {"n": 2}})
        ...     store.attach("r1", {"plan": pa.table({"a": [3]})}, {}, replace=["plan"])
        ...     store.table("r1", "plan").column("a").to_pylist()
        [3]
        """
        self._require_writer()
        self.run(run_id, status="complete")
        held = set(self.table_names(run_id)) | set(self.document_names(run_id))
        clash = sorted((set(tables) | set(documents)) & held - set(replace))
        if clash:
            raise DataValidationError(
                f"run {run_id} already holds {clash[0]!r}",
                fix="attach results under names the run does not hold",
            )
        existing = self._db.tables()
        with self._db.transaction():
            for name in replace:
                for (physical,) in self._db.execute(
                    f"SELECT physical FROM {TABLES} WHERE run_id = ? AND name = ?", [run_id, name]
                ):
                    rows = self._db.execute(
                        f"SELECT count(*) FROM {TABLES} WHERE run_id = ? AND physical = ?",
                        [run_id, physical],
                    )
                    if rows[0][0] == 1:  # the physical table holds no other name of the run
                        self._db.execute(f"DELETE FROM {physical} WHERE run_id = ?", [run_id])
                self._db.execute(
                    f"DELETE FROM {TABLES} WHERE run_id = ? AND name = ?", [run_id, name]
                )
                self._db.execute(
                    f"DELETE FROM {DOCUMENTS} WHERE run_id = ? AND name = ?", [run_id, name]
                )
            for name, table in tables.items():
                self._insert_table(run_id, name, table, existing)
            for name, doc in documents.items():
                body = json.dumps(json_safe(doc), default=str, allow_nan=False, sort_keys=True)
                self._db.execute(f"INSERT INTO {DOCUMENTS} VALUES (?, ?, ?)", [run_id, name, body])
        _HOLDER.clear()

    @_writes_runs_or_keys
    def fail_run(self, run_id: str, error: str) -> None:
        """Mark a running run ``failed`` with its error (its data was never committed)."""
        self._require_writer()
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        self._db.execute(
            f"UPDATE {RUNS} SET status = 'failed', finished_at = ?, error = ? "
            "WHERE run_id = ? AND status = 'running'",
            [now, error[:2000], run_id],
        )

    @_writes_runs_or_keys
    def remove_debris(self) -> list[str]:
        """Mark runs left ``running`` by a killed writer ``failed``; return their ids.

        Call it holding :func:`store_lock`: then no other run is writing.
        """
        self._require_writer()
        stale = [r.run_id for r in self.runs(status="running")]
        for run_id in stale:
            with self._db.transaction():
                self._delete_rows(run_id)
                self.fail_run(run_id, "stopped before it completed (killed or interrupted)")
        return stale

    def _delete_rows(self, run_id: str) -> None:
        physical = {
            r[0]
            for r in self._db.execute(f"SELECT physical FROM {TABLES} WHERE run_id = ?", [run_id])
        }
        for name in sorted(physical):
            self._db.execute(f"DELETE FROM {name} WHERE run_id = ?", [run_id])
        self._db.execute(f"DELETE FROM {TABLES} WHERE run_id = ?", [run_id])
        self._db.execute(f"DELETE FROM {DOCUMENTS} WHERE run_id = ?", [run_id])

    @_writes_runs_or_keys
    def apply_retention(self, keep: int | None) -> list[str]:
        """Remove all but the ``keep`` latest complete runs (and failed runs before them).

        Returns the removed run ids; ``None`` keeps everything.
        """
        self._require_writer()
        if keep is None:
            return []
        complete = self.runs(status="complete")
        if len(complete) <= keep:
            return []
        oldest_kept = complete[keep - 1].started_at
        removed = [
            r.run_id for r in self.runs() if r.status != "running" and r.started_at < oldest_kept
        ]
        for run_id in removed:
            with self._db.transaction():
                self._delete_rows(run_id)
                self._db.execute(f"DELETE FROM {RUNS} WHERE run_id = ?", [run_id])
        return removed

    # ------------------------------------------------------------------ readers
    def runs(self, status: str | None = None) -> list[RunRecord]:
        """Recorded runs, newest first (optionally of one status)."""
        if status is not None and status not in STATUSES:
            raise DataValidationError(
                f"unknown run status {status!r}",
                fix=f"use one of {', '.join(STATUSES)}",
                parameter="status",
            )
        where, params = ("WHERE status = ?", [status]) if status else ("", [])

        def read() -> list[RunRecord]:
            rows = self._db.execute(
                f"SELECT {', '.join(_RUN_COLUMNS)} FROM {RUNS} {where} "
                "ORDER BY started_at DESC, run_id DESC",
                params,
            )
            return [_record(row) for row in rows]

        return list(self._memoized(("runs", status), read))

    def run(self, run_id: str, *, status: str | None = None) -> RunRecord:
        """One run (of the given status, when given).

        Raises
        ------
        DataValidationError
            When the store has no such run, listing the latest ones.
        """

        def read() -> RunRecord | None:
            rows = self._db.execute(
                f"SELECT {', '.join(_RUN_COLUMNS)} FROM {RUNS} WHERE run_id = ?", [run_id]
            )
            return _record(rows[0]) if rows else None

        record: RunRecord | None = self._memoized(("run", run_id), read)
        if record is None or (status is not None and record.status != status):
            recent = [r.run_id for r in self.runs(status="complete")[:5]]
            if record is None:
                what = f"no run {run_id!r}"
            else:
                what = f"run {run_id!r} is {record.status}, not a {status} run,"
            raise DataValidationError(
                f"{what} in the results store {self.shown}",
                fix=f"pick a complete run (latest: {', '.join(recent) or 'none yet'})",
                parameter="run_id",
            )
        return record

    def latest(self, before_as_of: dt.date | None = None) -> RunRecord | None:
        """The latest complete run: greatest as-of date, then latest finish.

        With ``before_as_of``, only runs whose as-of date is earlier count.
        """
        complete = [
            r
            for r in self.runs(status="complete")
            if before_as_of is None or (r.as_of is not None and r.as_of < before_as_of)
        ]
        if not complete:
            return None
        epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
        return max(complete, key=lambda r: (r.as_of or dt.date.min, r.finished_at or epoch))

    def _complete(self, run_id: str) -> None:
        self.run(run_id, status="complete")

    def table_names(self, run_id: str) -> list[str]:
        """Names of a complete run's tables."""
        self._complete(run_id)
        rows = self._memoized(
            ("tables", run_id),
            lambda: self._db.execute(
                f"SELECT name FROM {TABLES} WHERE run_id = ? ORDER BY name", [run_id]
            ),
        )
        return [r[0] for r in rows]

    def table(self, run_id: str, name: str, columns: Sequence[str] | None = None) -> pa.Table:
        """A table of a complete run, exactly as it was committed (order, names, types).

        Parameters
        ----------
        run_id, name
            The run and the table (see :meth:`table_names`).
        columns
            Only these columns (default: all).
        """
        self._complete(run_id)
        rows = self._db.execute(
            f"SELECT physical, arrow_schema FROM {TABLES} WHERE run_id = ? AND name = ?",
            [run_id, name],
        )
        if not rows:
            held = ", ".join(self.table_names(run_id)) or "no tables"
            raise DataValidationError(
                f"run {run_id!r} has no table {name!r} (it holds {held})",
                fix="pick one of the tables the run holds",
                parameter="name",
            )
        physical, text = rows[0]
        schema = _schema_of(text)
        wanted = list(range(len(schema)))
        if columns is not None:
            missing = [c for c in columns if c not in schema.names]
            if missing:
                raise DataValidationError(
                    f"table {name!r} of run {run_id!r} has no columns {missing}",
                    fix=f"pick from {', '.join(schema.names)}",
                    parameter="columns",
                )
            wanted = [schema.get_field_index(c) for c in columns]
        picked = pa.schema([schema.field(i) for i in wanted])
        if not wanted:
            return picked.empty_table()
        read = self._db.select(
            f"SELECT {', '.join(f'c{i}' for i in wanted)} FROM {physical} "
            "WHERE run_id = ? ORDER BY _row",
            [run_id],
            [_stored_type(f.type)[0] or pa.string() for f in picked],
        )
        return _restored(read, picked)

    def document_names(self, run_id: str) -> list[str]:
        """Names of a complete run's documents."""
        self._complete(run_id)
        rows = self._memoized(
            ("documents", run_id),
            lambda: self._db.execute(
                f"SELECT name FROM {DOCUMENTS} WHERE run_id = ? ORDER BY name", [run_id]
            ),
        )
        return [r[0] for r in rows]

    def document(self, run_id: str, name: str) -> Any:
        """A JSON document of a complete run."""
        self._complete(run_id)
        rows = self._db.execute(
            f"SELECT body FROM {DOCUMENTS} WHERE run_id = ? AND name = ?", [run_id, name]
        )
        if not rows:
            held = ", ".join(self.document_names(run_id)) or "no documents"
            raise DataValidationError(
                f"run {run_id!r} has no document {name!r} (it holds {held})",
                fix="pick one of the documents the run holds",
                parameter="name",
            )
        return json.loads(rows[0][0])

    def rows(self, run_id: str, name: str, column: str, value: Any) -> pa.Table:
        """The rows of a run's table whose ``column`` equals ``value``, in committed order.

        A WHERE on the stored column, not a read of the whole table: reading one
        customer's rows of a large run stays fast (on PostgreSQL an index on the run and
        the ``customer_id`` column serves it). A process that looks up text values of the
        same table and column :data:`HOLD_AFTER` times holds the table in memory, its
        rows grouped by the column (up to :data:`HOLD_BYTES` in all): a server then
        answers from memory, without a scan of the database's table per lookup.

        Parameters
        ----------
        run_id, name
            The run and the table (see :meth:`table_names`).
        column
            A column of the table stored as a scalar (not a list or struct).
        value
            The value to match (``None`` matches nothing).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> url = f"duckdb://{pathlib.Path(tempfile.mkdtemp()) / 's.duckdb'}"
        >>> t0 = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
        >>> with open_store(url, create=True) as store:
        ...     store.begin_run(RunRecord("r1", "running", t0))
        ...     scores = pa.table({"customer_id": ["a", "b", "a"], "clv": [1.0, 2.0, 3.0]})
        ...     _ = store.commit_run("r1", {"scores": scores}, {})
        ...     store.rows("r1", "scores", "customer_id", "a").column("clv").to_pylist()
        [1.0, 3.0]
        """
        self._complete(run_id)
        # A complete run's tables never change (those attached later excepted: another
        # process may replace them): where they live is looked up once.
        attached = name.startswith(ATTACHED_PREFIX)
        located = None if attached else self._located.get((run_id, name))
        if located is None:
            found = self._db.execute(
                f"SELECT physical, arrow_schema FROM {TABLES} WHERE run_id = ? AND name = ?",
                [run_id, name],
            )
            if not found:
                held = ", ".join(self.table_names(run_id)) or "no tables"
                raise DataValidationError(
                    f"run {run_id!r} has no table {name!r} (it holds {held})",
                    fix="pick one of the tables the run holds",
                    parameter="name",
                )
            located = (found[0][0], _schema_of(found[0][1]))
            if not attached:
                self._located[(run_id, name)] = located
        physical, schema = located
        if column not in schema.names:
            raise DataValidationError(
                f"table {name!r} of run {run_id!r} has no column {column!r}",
                fix=f"pick from {', '.join(schema.names)}",
                parameter="column",
            )
        index = schema.get_field_index(column)
        if _stored_type(schema.field(index).type)[0] is None:
            raise DataValidationError(
                f"column {column!r} of table {name!r} holds lists or records, which "
                "cannot be matched to one value",
                fix="filter on a column of plain values",
                parameter="column",
            )
        if (
            not attached
            and isinstance(value, str)
            and _stored_type(schema.field(index).type)[0] == pa.string()
        ):
            # Text equality in Python is text equality in SQL: a held table answers alike.
            key = (self.url, run_id, name, column)
            kept = _HOLDER.get(key)
            if kept is None and _HOLDER.wants(key):
                kept = _HeldRows(self.table(run_id, name), column)
                _HOLDER.hold(key, kept)
            if kept is not None:
                return kept.rows(value)
        # A plain comparison on the stored column (no function around it): an index on
        # (run_id, column) serves it.
        read = self._db.select(
            f"SELECT {', '.join(f'c{i}' for i in range(len(schema)))} FROM {physical} "
            f"WHERE run_id = ? AND c{index} = ? ORDER BY _row",
            [run_id, value],
            [_stored_type(f.type)[0] or pa.string() for f in schema],
        )
        return _restored(read, schema)

    def contains(self, run_id: str, name: str, column: str, value: str) -> bool:
        """Whether a run's table has a row whose text ``column`` equals ``value``.

        The process keeps the sorted (Python) hashes of the column's values, 8 bytes a
        row: a value whose hash is not among them is not there; one whose hash is, is
        looked up (:meth:`rows`), so the answer is exact. For "is this order id known?"
        per real-time event without holding the whole table.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> url = f"duckdb://{pathlib.Path(tempfile.mkdtemp()) / 's.duckdb'}"
        >>> t0 = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
        >>> with open_store(url, create=True) as store:
        ...     store.begin_run(RunRecord("r1", "running", t0))
        ...     _ = store.commit_run("r1", {"orders": pa.table({"order_id": ["a", "b"]})}, {})
        ...     store.contains("r1", "orders", "order_id", "b"), store.contains(
        ...         "r1", "orders", "order_id", "c")
        (True, False)
        """
        import numpy as np

        self._complete(run_id)

        def build() -> Any:
            values = self.table(run_id, name, [column]).column(0).to_pylist()
            return np.sort(np.fromiter((hash(v) for v in values if v is not None), np.int64))

        hashes = _HOLDER.hash_set((self.url, run_id, name, column), build)
        wanted = hash(value)
        at = int(np.searchsorted(hashes, wanted))
        if at >= hashes.size or int(hashes[at]) != wanted:
            return False
        return bool(self.rows(run_id, name, column, value).num_rows > 0)

    # ------------------------------------------------------------------ API keys
    @_writes_runs_or_keys
    def add_api_key(self, record: ApiKeyRecord) -> None:
        """Record a new API key (its hash; the key itself is never stored)."""
        self._require_writer()
        values = [
            record.key_id,
            record.name,
            record.scope,
            record.key_hash,
            record.created_at.astimezone(dt.UTC).replace(tzinfo=None),
            None,
        ]
        self._db.execute(
            f"INSERT INTO {API_KEYS} ({', '.join(_API_KEY_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
            values,
        )

    def api_keys(self) -> list[ApiKeyRecord]:
        """Every API key, revoked ones too, oldest first."""
        rows = self._db.execute(
            f"SELECT {', '.join(_API_KEY_COLUMNS)} FROM {API_KEYS} ORDER BY created_at, key_id"
        )
        return [_key_record(row) for row in rows]

    def api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The API key ``key_id`` (revoked or not), or None.

        A known key's record is kept while the connection cannot see a change (a DuckDB
        file open read-only: a revocation is written only after it is closed); an
        unknown id is looked up every time (nothing to keep for guessed ids).
        """
        memo = ("api_key", key_id)
        if self._memo is not None and memo in self._memo:
            record: ApiKeyRecord = self._memo[memo]
            return record
        rows = self._db.execute(
            f"SELECT {', '.join(_API_KEY_COLUMNS)} FROM {API_KEYS} WHERE key_id = ?", [key_id]
        )
        if not rows:
            return None
        record = _key_record(rows[0])
        if self._memo is not None:
            self._memo[memo] = record
        return record

    @_writes_runs_or_keys
    def revoke_api_key(self, key_id: str, at: dt.datetime) -> ApiKeyRecord:
        """Revoke the key ``key_id`` at ``at`` (a key revoked already keeps its time).

        Raises
        ------
        DataValidationError
            When there is no such key, listing the known ids.
        """
        self._require_writer()
        if self.api_key(key_id) is None:
            known = ", ".join(k.key_id for k in self.api_keys()) or "none"
            raise DataValidationError(
                f"no API key {key_id!r} in the results store {self.shown}",
                fix=f"pick one of the keys' ids (known: {known})",
                parameter="key_id",
            )
        self._db.execute(
            f"UPDATE {API_KEYS} SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            [at.astimezone(dt.UTC).replace(tzinfo=None), key_id],
        )
        record = self.api_key(key_id)
        assert record is not None
        return record

    # ------------------------------------------------------------------ events
    def event(self, event_id: str) -> EventRecord | None:
        """The stored event ``event_id``, or None."""
        with self._db.lock:
            for journaled in (*self._moving, *self._journaled):
                if journaled.event.event_id == event_id:
                    return journaled.event
            rows = self._db.execute(
                f"SELECT {', '.join(_EVENT_COLUMNS)} FROM {EVENTS} WHERE event_id = ?", [event_id]
            )
        return _event_record(rows[0]) if rows else None

    def last_event_seq(self) -> int:
        """The ``seq`` of the latest stored event (0 when there is none)."""
        return int(
            self._memoized(
                ("last_event_seq",),
                self._last_seq,
            )
        )

    def _last_seq(self) -> int:
        with self._db.lock:
            pending = self._moving + self._journaled
            if pending:
                return pending[-1].event.seq
            return int(self._db.execute(f"SELECT max(seq) FROM {EVENTS}")[0][0] or 0)

    def events(
        self, *, customer_id: str | None = None, after: int = 0, through: int | None = None
    ) -> list[EventRecord]:
        """Stored events in arrival order: of one customer or all, with
        ``after < seq <= through``.

        On DuckDB one customer's events since a run are answered from the events since
        that run, read once and kept by the connection (which alone writes the file while
        open: :meth:`apply_event` adds to them)."""
        if customer_id is not None and through is None and self._memo is not None:
            since = self._memoized(("events_since", after), lambda: self._events_by_customer(after))
            return [_event_record(row) for row in since.get(customer_id, ())]
        return self._read_events(customer_id=customer_id, after=after, through=through)

    def _events_by_customer(self, after: int) -> dict[str, tuple[tuple[Any, ...], ...]]:
        """The events since ``after`` by customer, as their rows: tuples of plain values,
        which the garbage collector stops tracking (a server keeps every event since the
        last run: as objects, each full collection would walk them all, a pause of
        tens of milliseconds per 100,000 events)."""
        grouped: dict[str, list[tuple[Any, ...]]] = {}
        for row in self._read_event_rows(customer_id=None, after=after, through=None):
            grouped.setdefault(row[3], []).append(row)
        return {customer: tuple(rows) for customer, rows in grouped.items()}

    def _read_events(
        self, *, customer_id: str | None, after: int, through: int | None
    ) -> list[EventRecord]:
        rows = self._read_event_rows(customer_id=customer_id, after=after, through=through)
        return [_event_record(r) for r in rows]

    def _read_event_rows(
        self, *, customer_id: str | None, after: int, through: int | None
    ) -> list[tuple[Any, ...]]:
        """The events' rows (``segvalue_events`` columns), the journal's after the tables'."""
        where, params = ["seq > ?"], list[Any]([after])
        if through is not None:
            where.append("seq <= ?")
            params.append(through)
        if customer_id is not None:
            where.append("customer_id = ?")
            params.append(customer_id)
        with self._db.lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_EVENT_COLUMNS)} FROM {EVENTS} "
                f"WHERE {' AND '.join(where)} ORDER BY seq",
                params,
            )
            pending = self._moving + self._journaled
        # The journal's events come after the tables' (their numbers are higher).
        return [tuple(r) for r in rows] + [
            j.row()
            for j in pending
            if j.event.seq > after
            and (through is None or j.event.seq <= through)
            and (customer_id is None or j.event.customer_id == customer_id)
        ]

    def segment_events(
        self, *, customer_id: str | None = None, limit: int = 1000
    ) -> list[SegmentEvent]:
        """Segment entries and exits found in real time, newest first."""
        where, params = "", []
        if customer_id is not None:
            where, params = "WHERE customer_id = ? ", [customer_id]
        with self._db.lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_SEGMENT_EVENT_COLUMNS)} "
                f"FROM {SEGMENT_EVENTS} {where}ORDER BY seq DESC, scheme LIMIT {int(limit)}",
                params,
            )
            pending = self._moving + self._journaled
        journaled = [
            SegmentEvent(*row)
            for row in as_rows(pending)[1]
            if customer_id is None or row[1] == customer_id
        ]
        journaled.sort(key=lambda m: (-m.seq, m.scheme))
        return (journaled + [SegmentEvent(*r) for r in rows])[: int(limit)]

    def apply_event(
        self,
        event: EventRecord,
        *,
        run_id: str,
        transitions: Sequence[tuple[str, str | None, str | None]],
    ) -> None:
        """Store a new event and the segment changes it caused (the customer re-scored
        under ``run_id``), in one transaction (all or nothing).

        Raises
        ------
        DataValidationError
            When ``event.seq`` is not the next one (another writer stored an event
            meanwhile) or its id is stored already.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> url = f"duckdb://{pathlib.Path(tempfile.mkdtemp()) / 's.duckdb'}"
        >>> at = dt.datetime(2024, 1, 2, 10)
        >>> with open_store(url, create=True) as store:
        ...     e = EventRecord(store.last_event_seq() + 1, "order:A", "order", "C1", at, {})
        ...     store.apply_event(e, run_id="r1", transitions=[("rfm", "New", "Promising")])
        ...     moves = [m.to_dict()["to"] for m in store.segment_events(customer_id="C1")]
        ...     store.last_event_seq(), moves
        (1, ['Promising'])
        """
        self.apply_events([(event, transitions)], run_id=run_id)

    def apply_events(
        self,
        events: Sequence[tuple[EventRecord, Sequence[tuple[str, str | None, str | None]]]],
        *,
        run_id: str,
    ) -> None:
        """:meth:`apply_event` of several events (consecutive ``seq`` numbers, in order)
        and their segment changes, in one transaction: all are stored or none.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> url = f"duckdb://{pathlib.Path(tempfile.mkdtemp()) / 's.duckdb'}"
        >>> at = dt.datetime(2024, 1, 2, 10)
        >>> with open_store(url, create=True) as store:
        ...     a = EventRecord(1, "order:A", "order", "C1", at, {})
        ...     b = EventRecord(2, "order:B", "order", "C2", at, {})
        ...     store.apply_events([(a, []), (b, [("rfm", None, "New")])], run_id="r1")
        ...     store.last_event_seq(), len(store.events(customer_id="C2"))
        (2, 1)
        """
        self._require_writer()
        if not events:
            return
        received = _naive_utc(events[0][0].received_at or dt.datetime.now(dt.UTC))
        if self._journal is not None:
            self._journal_events(events, received, run_id)
            return
        rows: list[Any] = []
        moved: list[Any] = []
        for event, transitions in events:
            rows += _event_row(event, received)
            for scheme, before, after in transitions:
                moved += [event.seq, event.customer_id, scheme, before, after, received, run_id]
        width = len(_EVENT_COLUMNS)
        try:
            with self._db.transaction():
                # The keys refuse a second event of that id or seq: no read first.
                self._db.execute(
                    f"INSERT INTO {EVENTS} ({', '.join(_EVENT_COLUMNS)}) VALUES "
                    + ", ".join([_marks(width)] * len(events)),
                    rows,
                )
                if moved:
                    self._db.execute(
                        f"INSERT INTO {SEGMENT_EVENTS} VALUES "
                        + ", ".join([_marks(7)] * (len(moved) // 7)),
                        moved,
                    )
        except Exception as exc:
            if self._memo is not None:
                self._memo.pop(("last_event_seq",), None)
            text = str(exc).lower()
            if "constraint" in text or "duplicate" in text or "unique" in text:
                raise DataValidationError(
                    f"event {events[0][0].event_id!r} was not stored: another event was "
                    "stored meanwhile, or this one already",
                    fix="send it again (an event already stored is applied once)",
                    parameter="event_id",
                ) from None
            raise
        self._remember_events([e for e, _ in events], received)

    def _remember_events(self, events: Sequence[EventRecord], received: dt.datetime) -> None:
        """Add events just stored to what the connection keeps of the events."""
        if self._memo is not None:
            self._memo[("last_event_seq",)] = events[-1].seq
            first = events[0].seq
            for key, grouped in self._memo.items():
                if key[0] == "events_since" and key[1] < first:
                    for event in events:
                        row = _event_row(event, received)
                        grouped[event.customer_id] = (*grouped.get(event.customer_id, ()), row)
            ids = self._memo.get(("event_ids",))
            if ids is not None:
                ids.update(e.event_id for e in events)

    def _journal_events(
        self,
        events: Sequence[tuple[EventRecord, Sequence[tuple[str, str | None, str | None]]]],
        received: dt.datetime,
        run_id: str,
    ) -> None:
        """:meth:`apply_events` on a DuckDB file: checked as the keys would, then written
        to the journal (on disk before this returns), moved into the tables in bulk."""
        known = self._memoized(("event_ids",), self._event_ids)
        seq = self.last_event_seq()
        ids = [event.event_id for event, _ in events]
        numbers = [event.seq for event, _ in events]
        if (
            numbers != list(range(seq + 1, seq + 1 + len(events)))
            or len(set(ids)) < len(ids)
            or any(i in known for i in ids)
        ):
            raise DataValidationError(
                f"event {events[0][0].event_id!r} was not stored: another event was "
                "stored meanwhile, or this one already",
                fix="send it again (an event already stored is applied once)",
                parameter="event_id",
            )
        assert self._journal is not None
        entries = [
            Journaled(
                replace(event, occurred_at=_naive_utc(event.occurred_at), received_at=received),
                tuple(moves),
                run_id,
            )
            for event, moves in events
        ]
        self._journal.append(entries)
        self._journaled.extend(entries)
        self._remember_events([e for e, _ in events], received)
        if len(self._journaled) >= JOURNAL_EVENTS:
            self._start_moving()

    def _event_ids(self) -> set[str]:
        """Every stored event's id (the tables' and the journal's)."""
        with self._db.lock:
            rows = self._db.execute(f"SELECT event_id FROM {EVENTS}")
            pending = self._moving + self._journaled
        return {r[0] for r in rows} | {j.event.event_id for j in pending}


def _marks(width: int) -> str:
    """``(?, ?, ...)``: one row of ``width`` query parameters."""
    return "(" + ", ".join(["?"] * width) + ")"


def open_store(
    url: str,
    *,
    create: bool = False,
    read_only: bool | None = None,
    hold_bytes: int | None = None,
) -> ResultsStore:
    """Open the results store at ``url`` (``duckdb:///path`` or ``postgresql://...``).

    Parameters
    ----------
    url
        The store's URL (:attr:`segvalue.config.Config.store_url`).
    create
        Create the store (file and schema) when it does not exist, and open it for
        writing; otherwise open it read-only (a DuckDB file that a writer holds open is
        waited for, up to :data:`READ_WAIT` seconds).
    read_only
        Override the mode (default: read-only unless ``create``).
    hold_bytes
        The most memory this process may use to hold run tables for lookups by a
        column (:meth:`ResultsStore.rows`; default :data:`HOLD_BYTES`), process-wide.

    Raises
    ------
    ConfigError
        When there is no store yet (and ``create`` is false), when the file is not a
        segvalue store, or when its schema is newer than this segvalue reads.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> url = f"duckdb://{pathlib.Path(tempfile.mkdtemp()) / 's.duckdb'}"
    >>> open_store(url)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segvalue.store.results.StoreMissingError: no results store at ... yet: ...recorded...
    >>> with open_store(url, create=True) as store:
    ...     store.runs()
    []
    """
    ro = (not create) if read_only is None else read_only
    if hold_bytes is not None:
        _HOLDER.limit = hold_bytes
    if _is_duckdb(url):
        path = Path(url.removeprefix("duckdb://"))
        if path.is_dir():
            raise ConfigError(
                f"the results store {path} is a folder",
                fix="point store.url at a DuckDB file (e.g. duckdb://segvalue-store.duckdb)",
                parameter="store.url",
            )
        if not path.exists():
            if not create:
                raise StoreMissingError(
                    f"no results store at {path} yet: no run has been recorded",
                    fix="run the main job first (it creates the store)",
                    parameter="store.url",
                )
            _create_file(path)
    backend = _connect(url, read_only=ro)
    store = ResultsStore(backend, url, read_only=ro)
    try:
        store._prepare(create=create)
    except BaseException:
        store.close()
        raise
    return store


def _create_file(path: Path) -> None:
    """Create a new store file whole: built under a temporary name, then renamed.

    A file at ``path`` is then always a complete segvalue store. The temporary name is
    new each time (nothing of that name is ever removed or replaced: it could be
    someone else's file), and the rename is a hard link that fails rather than replace a
    file that appeared at ``path`` meanwhile. A killed creation leaves its temporary file.
    """
    temp = path.with_name(f".{path.name}.new-{os.getpid()}-{time.monotonic_ns()}")
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            store = ResultsStore(
                _connect(f"duckdb://{temp}", read_only=False), url="", read_only=False
            )
            try:
                store._create()
            finally:
                store.close()
            try:
                os.link(temp, path)
            except FileExistsError:
                raise ConfigError(
                    f"{path} appeared while segvalue was creating the results store there",
                    fix="point store.url at a new file",
                    parameter="store.url",
                ) from None
        finally:
            for made in (temp, temp.with_name(temp.name + ".wal")):
                if made.exists():  # ours: created under a name of this call
                    made.unlink()


@contextmanager
def store_lock(url: str, *, wait: float = 0, run_id: str | None = None) -> Iterator[None]:
    """Hold the store's writer lock for a whole run: a second writer refuses or waits.

    DuckDB: a lock file beside the store file (released by the system when the holder
    ends, also when it is killed). PostgreSQL: a session advisory lock on a connection
    held open for the run (released when that connection ends).

    Raises
    ------
    ConfigError
        When another run holds the lock (still, after ``wait`` seconds), naming it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> url = f"duckdb://{pathlib.Path(tempfile.mkdtemp()) / 's.duckdb'}"
    >>> with store_lock(url, run_id="r1"):
    ...     with store_lock(url, run_id="r2"):  # doctest: +ELLIPSIS
    ...         pass
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: run store ... is in use by another segvalue run (pid ...
    """
    if _is_duckdb(url):
        with target_lock(Path(url.removeprefix("duckdb://")), "store", wait=wait, run_id=run_id):
            yield
        return
    backend = _connect(url, read_only=False)
    db = _Dialect(backend)

    def holder() -> str:
        running = "another segvalue run"
        if RUNS in db.tables():
            rows = db.execute(
                f"SELECT run_id, started_at FROM {RUNS} WHERE status = 'running' "
                "ORDER BY started_at DESC LIMIT 1"
            )
            if rows:
                running = f"run {rows[0][0]} (started {rows[0][1]:%Y-%m-%d %H:%M:%S} UTC)"
        return f"results store {redact_secrets(url)} is in use by {running}"

    try:
        wait_for_lock(
            lambda: bool(db.execute("SELECT pg_try_advisory_lock(?)", [_ADVISORY_KEY])[0][0]),
            wait,
            holder,
        )
        yield
    finally:
        backend.disconnect()  # ends the session: the advisory lock goes with it
