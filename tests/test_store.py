"""The results store: exact round trips, atomic runs, debris, retention, locks, schema versions.

Every behaviour is checked on DuckDB (a file) and on a real PostgreSQL server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from segvalue.errors import ConfigError, DataValidationError
from segvalue.store import RunRecord, open_store, store_lock
from segvalue.store import results as store_results

T0 = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["duckdb", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "duckdb":
        yield f"duckdb://{tmp_path / 'store.duckdb'}"
        return
    # Each test gets its own schema: the store's tables live in the connection's schema.
    yield request.getfixturevalue("pg_schema_url")


def _record(run_id: str, *, as_of: dt.date = dt.date(2024, 5, 31), minutes: int = 0) -> RunRecord:
    return RunRecord(
        run_id,
        "running",
        T0 + dt.timedelta(minutes=minutes),
        as_of=as_of,
        config_hash="c0ffee",
        data_fingerprint="f00d",
        schemes=["rfm", "lifecycle"],
        row_counts={"orders": 10},
        rejects={"orders.negative_amount": 2},
        freshness={"orders": "2024-05-31T10:00:00"},
        timings={"features": 0.25},
        versions={"segvalue": "0.1.0"},
    )


def _awkward() -> pa.Table:
    long_name = "a_column_name_much_longer_than_sixty_three_characters_which_postgres_truncates"
    return pa.table(
        {
            "customer_id": ["C1", "C2", "Ωmega", None],
            "orders": pa.array([1, 2, None, 4], pa.int64()),
            "small": pa.array([1, -2, 3, 4], pa.int32()),
            "clv": [0.1, 1e-300, 123456.789012345678, None],
            "flag": [True, False, None, True],
            "first": pa.array([dt.date(2024, 1, 1), None, dt.date(1999, 12, 31), dt.date.today()]),
            "seen": pa.array(
                [T0, None, T0 - dt.timedelta(microseconds=1), T0], pa.timestamp("us", tz="UTC")
            ),
            "naive": pa.array([dt.datetime(2024, 1, 1, 1, 2, 3)] * 4, pa.timestamp("us")),
            "reasons": pa.array([["a", "b"], [], None, ["c"]], pa.list_(pa.string())),
            "segment": pa.array(["x", "y", "x", None]).dictionary_encode(),
            "Mixed Case & spaces": ["1", "2", "3", "4"],
            long_name: [1.0, 2.0, 3.0, 4.0],
        }
    )


def test_tables_and_documents_round_trip_exactly(url: str) -> None:
    table = _awkward()
    documents = {"run": {"a": [1, 2.5, None], "nested": {"x": "é"}}, "personas": [{"name": "p"}]}
    with open_store(url, create=True) as store:
        store.begin_run(_record("r1"))
        tables = {"customer_scores": table, "empty": table.slice(0, 0)}
        done = store.commit_run("r1", tables, documents)
    assert done.status == "complete" and done.finished_at is not None
    with open_store(url) as store:
        assert store.read_only
        got = store.table("r1", "customer_scores")
        assert got.schema == table.schema
        assert got.to_pylist() == table.to_pylist()
        assert store.table("r1", "empty").schema == table.schema
        assert store.table("r1", "empty").num_rows == 0
        picked = store.table("r1", "customer_scores", columns=["clv", "customer_id"])
        assert picked.column_names == ["clv", "customer_id"]
        assert picked.column("clv").to_pylist() == table.column("clv").to_pylist()
        assert store.document("r1", "run") == documents["run"]
        assert store.document_names("r1") == ["personas", "run"]
        assert store.table_names("r1") == ["customer_scores", "empty"]
        record = store.run("r1")
        assert record.to_dict() | {"finished_at": None} == {
            **_record("r1").to_dict(),
            "status": "complete",
            "finished_at": None,
        }


def test_run_is_invisible_until_committed_and_rolled_back_on_failure(url: str) -> None:
    with open_store(url, create=True) as store:
        store.begin_run(_record("r1"))
        assert store.runs(status="complete") == [] and store.latest() is None

        def boom() -> None:
            raise RuntimeError("killed between the inserts and the commit")

        with pytest.raises(RuntimeError):
            store.commit_run("r1", {"memberships": _awkward()}, {"run": {}}, before_commit=boom)
        assert [r.status for r in store.runs()] == ["running"]
        with pytest.raises(DataValidationError, match="is running, not a complete run"):
            store.table("r1", "memberships")
        # The next writer (holding the lock) turns the leftover into a failed run.
        assert store.remove_debris() == ["r1"]
        failed = store.run("r1")
        assert failed.status == "failed" and "stopped before it completed" in (failed.error or "")
        store.begin_run(_record("r2", minutes=1))
        store.commit_run("r2", {"memberships": _awkward()}, {"run": {}})
        assert store.table("r2", "memberships").num_rows == 4
        assert [r.run_id for r in store.runs()] == ["r2", "r1"]
        assert [r.run_id for r in store.runs(status="failed")] == ["r1"]


def test_latest_goes_by_as_of_date_not_by_clock(url: str) -> None:
    with open_store(url, create=True) as store:
        for run_id, as_of, minutes in (
            ("june", dt.date(2024, 6, 30), 0),
            ("march", dt.date(2024, 3, 31), 1),  # recorded later, as of an earlier date
            ("may", dt.date(2024, 5, 31), 2),
        ):
            store.begin_run(_record(run_id, as_of=as_of, minutes=minutes))
            store.commit_run(run_id, {}, {})
        assert store.latest().run_id == "june"
        assert store.latest(before_as_of=dt.date(2024, 6, 30)).run_id == "may"
        assert store.latest(before_as_of=dt.date(2024, 5, 31)).run_id == "march"
        assert store.latest(before_as_of=dt.date(2024, 3, 31)) is None


def test_retention_keeps_the_latest_complete_runs(url: str) -> None:
    with open_store(url, create=True) as store:
        for i in range(5):
            store.begin_run(_record(f"r{i}", minutes=i))
            if i == 1:
                store.fail_run("r1", "bad data")
                continue
            store.commit_run(f"r{i}", {"memberships": _awkward()}, {"run": {"i": i}})
        assert store.apply_retention(None) == []
        assert sorted(store.apply_retention(2)) == ["r0", "r1", "r2"]
        assert [r.run_id for r in store.runs()] == ["r4", "r3"]
        assert store.table("r3", "memberships").num_rows == 4
        with pytest.raises(DataValidationError, match="no run"):
            store.table("r0", "memberships")


def test_unknown_names_are_clear_errors(url: str) -> None:
    with open_store(url, create=True) as store:
        store.begin_run(_record("r1"))
        store.commit_run("r1", {"memberships": _awkward()}, {"run": {}})
        with pytest.raises(DataValidationError, match=r"no run 'nope'.*latest: r1"):
            store.run("nope")
        with pytest.raises(DataValidationError, match=r"no table 'kpis' \(it holds memberships"):
            store.table("r1", "kpis")
        with pytest.raises(DataValidationError, match=r"no columns \['x'\]"):
            store.table("r1", "memberships", columns=["x"])
        with pytest.raises(DataValidationError, match="no document 'models'"):
            store.document("r1", "models")
        with pytest.raises(DataValidationError, match="unknown run status"):
            store.runs(status="done")


def test_one_writer_at_a_time_naming_the_holder(url: str) -> None:
    with open_store(url, create=True) as store:
        store.begin_run(_record("r-first"))
    with store_lock(url, run_id="r-first"):
        with (
            pytest.raises(ConfigError, match="in use by") as refused,
            store_lock(url, run_id="r-second"),
        ):
            pass
        assert "r-first" in str(refused.value)
        assert refused.value.parameter == "wait" or "wait" in (refused.value.fix or "")
    with store_lock(url, run_id="r-third"):  # released when the holder ended
        pass


def test_no_store_yet_and_newer_schema_are_refused(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if url.startswith("duckdb://"):
        with pytest.raises(ConfigError, match=r"no results store at .* yet") as missing:
            open_store(url)
        assert missing.value.parameter == "store.url"
    with open_store(url, create=True) as store:
        store.begin_run(_record("r1"))
        store.commit_run("r1", {}, {})
    ours = store_results.SCHEMA_VERSION
    monkeypatch.setattr(store_results, "SCHEMA_VERSION", ours - 1)
    with pytest.raises(
        ConfigError, match=f"schema version {ours}; this segvalue reads up to {ours - 1}"
    ):
        open_store(url)


def test_older_schemas_are_migrated_when_opened_for_writing(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(url, create=True) as store:
        store.begin_run(_record("r1"))
        store.commit_run("r1", {}, {"run": {"ok": True}})
    nxt = store_results.SCHEMA_VERSION + 1
    monkeypatch.setattr(store_results, "SCHEMA_VERSION", nxt)
    monkeypatch.setattr(
        store_results,
        "MIGRATIONS",
        {**store_results.MIGRATIONS, nxt: ["ALTER TABLE segvalue_runs ADD COLUMN note TEXT"]},
    )
    with pytest.raises(ConfigError, match=f"needs a migration to {nxt}"):
        open_store(url)
    with open_store(url, create=True) as store:
        assert store._schema_version() == nxt
        assert store.document("r1", "run") == {"ok": True}
        assert store._db.execute("SELECT note FROM segvalue_runs") == [(None,)]


def test_a_version_1_store_gains_the_api_keys_and_events_tables(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old:  # a store as segvalue wrote it before API keys
        old.setattr(store_results, "SCHEMA_VERSION", 1)
        with open_store(url, create=True) as store:
            store.begin_run(_record("r1"))
            store.commit_run("r1", {}, {"run": {"ok": True}})
            assert store._schema_version() == 1
            assert "segvalue_api_keys" not in store._db.tables()
    with pytest.raises(ConfigError, match="version 1 and needs a migration to 3"):
        open_store(url)  # a reader does not migrate
    with open_store(url, create=True) as store:  # a writer does, in one transaction
        assert store._schema_version() == 3
        assert store.api_keys() == []
        assert store.last_event_seq() == 0 and store.events() == []
        assert store.document("r1", "run") == {"ok": True}
        key = store_results.ApiKeyRecord("k1", "ci", "read", "0" * 64, T0)
        store.add_api_key(key)
    with open_store(url) as store:
        assert store.api_keys() == [key]


def test_new_stores_are_created_at_the_current_version_with_api_keys(url: str) -> None:
    with open_store(url, create=True) as store:
        assert store._schema_version() == store_results.SCHEMA_VERSION == 3
        first = store_results.ApiKeyRecord("k1", None, "write", "a" * 64, T0)
        second = store_results.ApiKeyRecord(
            "k2", "dash", "read", "b" * 64, T0 + dt.timedelta(minutes=1)
        )
        store.add_api_key(first)
        store.add_api_key(second)
        revoked = store.revoke_api_key("k1", T0 + dt.timedelta(hours=1))
        assert revoked.revoked_at == T0 + dt.timedelta(hours=1)
        # Revoking twice keeps the first time.
        again = store.revoke_api_key("k1", T0 + dt.timedelta(hours=2))
        assert again.revoked_at == T0 + dt.timedelta(hours=1)
        with pytest.raises(DataValidationError, match=r"no API key 'nope'.*k1, k2") as unknown:
            store.revoke_api_key("nope", T0)
        assert unknown.value.parameter == "key_id"
    with open_store(url) as store:
        assert [k.key_id for k in store.api_keys()] == ["k1", "k2"]
        assert store.api_key("k2") == second and store.api_key("k3") is None
        with pytest.raises(ConfigError, match="read-only"):
            store.add_api_key(store_results.ApiKeyRecord("k3", None, "read", "c" * 64, T0))


def test_rows_filters_on_a_stored_column(url: str) -> None:
    table = _awkward()
    with open_store(url, create=True) as store:
        store.begin_run(_record("r1"))
        store.commit_run("r1", {"customer_scores": table}, {})
    with open_store(url) as store:
        got = store.rows("r1", "customer_scores", "customer_id", "C2")
        assert got.schema == table.schema
        assert got.to_pylist() == table.slice(1, 1).to_pylist()
        assert store.rows("r1", "customer_scores", "customer_id", "Ωmega").num_rows == 1
        assert store.rows("r1", "customer_scores", "customer_id", "none").num_rows == 0
        assert store.rows("r1", "customer_scores", "orders", 4).column(0).to_pylist() == [None]
        with pytest.raises(DataValidationError, match="no column 'nope'") as bad:
            store.rows("r1", "customer_scores", "nope", 1)
        assert bad.value.parameter == "column"
        with pytest.raises(DataValidationError, match="lists or records"):
            store.rows("r1", "customer_scores", "reasons", "a")
        with pytest.raises(DataValidationError, match="has no table 'nope'"):
            store.rows("r1", "nope", "customer_id", "C1")


@pytest.fixture
def holder() -> Iterator[store_results._Holder]:
    """The process's held tables, empty before and after the test."""
    store_results._HOLDER.clear()
    yield store_results._HOLDER
    store_results._HOLDER.clear()


def _members() -> pa.Table:
    """Several rows per customer, not grouped, a null id, a dictionary-encoded id."""
    ids = ["C2", "C1", "Ωmega", "C2", None, "C1", "C2"]
    return pa.table(
        {
            "customer_id": pa.array(ids).dictionary_encode(),
            "scheme": ["a", "a", "a", "b", "b", "b", "c"],
            "segment": pa.array(["x", "y", None, "z", "x", "y", "x"]),
        }
    )


def test_rows_looked_up_often_are_held_and_answer_as_the_database(
    url: str, holder: store_results._Holder, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = _members()
    with open_store(url, create=True) as store:
        store.begin_run(_record("r1"))
        store.commit_run("r1", {"memberships": table}, {})
    values = ["C2", "C1", "Ωmega", "nobody", "", "c2"]
    with open_store(url) as store:
        for value in values[: store_results.HOLD_AFTER - 1]:
            store.rows("r1", "memberships", "customer_id", value)
        assert not holder.held  # a lookup or two never reads the whole table
        hold_after = store_results.HOLD_AFTER
        monkeypatch.setattr(store_results, "HOLD_AFTER", 10**9)
        from_database = [store.rows("r1", "memberships", "customer_id", v) for v in values]
        monkeypatch.setattr(store_results, "HOLD_AFTER", hold_after)
    assert not holder.held
    assert [t.column("scheme").to_pylist() for t in from_database[:2]] == [
        ["a", "b", "c"],  # committed order
        ["a", "b"],
    ]
    key = (url, "r1", "memberships", "customer_id")
    with open_store(url) as store:  # held for the process, across connections
        held = [store.rows("r1", "memberships", "customer_id", v) for v in values]
        assert key in holder.held
        assert [t.schema for t in held] == [table.schema] * len(values)
        assert [t.to_pylist() for t in held] == [t.to_pylist() for t in from_database]
        # Only text values are answered from memory: anything else is the database's.
        assert store.rows("r1", "memberships", "customer_id", None).num_rows == 0
        assert store.rows("r1", "memberships", "scheme", "b").num_rows == 3


def test_held_rows_are_bounded_and_never_outlive_their_run(
    url: str, holder: store_results._Holder, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(url, create=True) as store:
        for i in range(3):
            store.begin_run(_record(f"r{i}", minutes=i))
            store.commit_run(f"r{i}", {"memberships": _members()}, {})

    def look(run_id: str) -> list[str]:
        with open_store(url) as store:
            found = store.rows(run_id, "memberships", "customer_id", "C2")
        return found.column("segment").to_pylist()

    one = store_results._HeldRows(_members(), "customer_id").nbytes
    monkeypatch.setattr(store_results, "HOLD_BYTES", int(one * 1.5))
    for run_id in ("r0", "r1"):
        for _ in range(store_results.HOLD_AFTER + 1):
            assert look(run_id) == ["x", "z", "x"]
    # Room for one table: the least recently used one went, for good.
    assert [k[1] for k in holder.held] == ["r1"]
    for _ in range(store_results.HOLD_AFTER + 1):
        assert look("r0") == ["x", "z", "x"]
    assert [k[1] for k in holder.held] == ["r1"]
    monkeypatch.setattr(store_results, "HOLD_BYTES", one - 1)
    for _ in range(store_results.HOLD_AFTER + 1):
        assert look("r2") == ["x", "z", "x"]
    assert [k[1] for k in holder.held] == ["r1"]  # too big alone: read from the database
    # A run removed by retention is gone, though its rows are held.
    with open_store(url, create=True) as store:
        assert "r1" in store.apply_retention(1)
    with pytest.raises(DataValidationError, match="no run 'r1'"):
        look("r1")


def test_a_reader_sees_a_revocation_once_it_can_happen(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an open reader keeps of keys and runs is never stale: a DuckDB file open
    read-only cannot be written until it is closed; a server store is read each time."""
    key = store_results.ApiKeyRecord("k1", None, "read", "a" * 64, T0)
    with open_store(url, create=True) as store:
        store.add_api_key(key)
    reader = open_store(url)
    try:
        assert reader.api_key("k1") == key
        assert reader.runs() == [] and reader.latest() is None
        if url.startswith("duckdb://"):
            monkeypatch.setattr(store_results, "READ_WAIT", 0.2)
            with pytest.raises(ConfigError, match="cannot open the results store"):
                open_store(url, create=True)
            reader.close()
            reader = open_store(url)
            assert reader.api_key("k1") == key
            reader.close()
        with open_store(url, create=True) as store:
            store.revoke_api_key("k1", T0 + dt.timedelta(hours=1))
            store.begin_run(_record("r1"))
            store.commit_run("r1", {}, {})
        if url.startswith("duckdb://"):
            reader = open_store(url)
        revoked = reader.api_key("k1")
        assert revoked is not None and revoked.revoked_at == T0 + dt.timedelta(hours=1)
        latest = reader.latest()
        assert latest is not None and latest.run_id == "r1"
    finally:
        reader.close()


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "folder.duckdb"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        open_store(f"duckdb://{folder}", create=True)
    import duckdb

    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE sv_mine (x INT)")
    before = other.read_bytes()
    with pytest.raises(ConfigError, match="is not a segvalue results store"):
        open_store(f"duckdb://{other}", create=True)
    assert other.read_bytes() == before
    text = tmp_path / "notes.txt"
    text.write_text("mine\n")
    with pytest.raises(ConfigError, match="cannot open the results store"):
        open_store(f"duckdb://{text}", create=True)
    assert text.read_text() == "mine\n"
    # A file named like a creation's temporary file is someone's: left as it was.
    (tmp_path / ".new.duckdb.new").write_text("half-written")
    with open_store(f"duckdb://{tmp_path / 'new.duckdb'}", create=True) as store:
        assert store.runs() == []
    assert sorted(p.name for p in tmp_path.iterdir() if "new" in p.name) == [
        ".new.duckdb.new",
        "new.duckdb",
    ]
    assert (tmp_path / ".new.duckdb.new").read_text() == "half-written"


def test_a_version_2_store_gains_the_events_tables(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store written before real-time events (schema 2) is migrated by a writer."""
    with monkeypatch.context() as old:
        old.setattr(store_results, "SCHEMA_VERSION", 2)
        with open_store(url, create=True) as store:
            assert store._schema_version() == 2
            assert "segvalue_events" not in store._db.tables()
    with open_store(url, create=True) as store:
        assert store._schema_version() == 3
        tables = store._db.tables()
        assert {"segvalue_events", "segvalue_segment_events"} <= tables
        event = store_results.EventRecord(1, "order:A", "order", "c", T0.replace(tzinfo=None), {})
        store.apply_event(event, run_id="r1", transitions=[("s", None, "a")])
        with pytest.raises(DataValidationError, match="not stored"):  # the same event again
            store.apply_event(event, run_id="r1", transitions=[])
        assert store.last_event_seq() == 1
        assert [m.to_dict()["to"] for m in store.segment_events(customer_id="c")] == ["a"]
        assert [e.event_id for e in store.events(customer_id="c")] == ["order:A"]


def _event_indexes(store: store_results.ResultsStore) -> set[str]:
    names = sorted(store_results._EVENT_INDEXES)
    if store._db.name == "duckdb":
        query = "SELECT index_name FROM duckdb_indexes() WHERE index_name IN (?, ?)"
    else:
        query = (
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "AND indexname IN (%s, %s)"
        )
    return {name for (name,) in store._db.execute(query, names)}


def test_events_are_indexed_by_customer_on_a_server_only(url: str) -> None:
    """PostgreSQL finds one customer's events by index; a DuckDB file has none (each
    event's insert paid 1.3 ms for it, and a server reads them from memory), and a DuckDB
    store made with them loses them when next opened to write, not when read."""
    with open_store(url, create=True) as store:
        on_server = store._db.name != "duckdb"
        assert _event_indexes(store) == (set(store_results._EVENT_INDEXES) if on_server else set())
        if on_server:
            return
        for name, on in store_results._EVENT_INDEXES.items():  # as segvalue made them
            store._db.execute(f"CREATE INDEX {name} ON {on}")
        at = T0.replace(tzinfo=None)
        event = store_results.EventRecord(1, "order:A", "order", "c", at, {})
        store.apply_event(event, run_id="r", transitions=[])
    with open_store(url) as store:
        assert _event_indexes(store) == set(store_results._EVENT_INDEXES)
    with open_store(url, create=True) as store:
        assert _event_indexes(store) == set()
        assert [e.event_id for e in store.events(customer_id="c")] == ["order:A"]


def test_a_connection_keeps_the_events_since_a_run_as_the_database_has_them(url: str) -> None:
    """One customer's events since a run come from what the connection read and added
    itself: the same as the database's, for the writer and for a reader opened after."""
    at = T0.replace(tzinfo=None)
    with open_store(url, create=True) as store:
        for seq, customer in enumerate(["a", "b", "a"], start=1):
            store.apply_event(
                store_results.EventRecord(seq, f"e{seq}", "order", customer, at, {"n": seq}),
                run_id="r1",
                transitions=[],
            )
        kept = store.events(customer_id="a", after=1)  # read once, kept
        event = store_results.EventRecord(4, "e4", "order", "a", at, {"n": 4})
        store.apply_event(event, run_id="r1", transitions=[])
        mine = store.events(customer_id="a", after=1)
        direct = store._read_events(customer_id="a", after=1, through=None)
        assert [e.seq for e in kept] == [3] and [e.seq for e in mine] == [3, 4]
        assert [(e.event_id, e.body) for e in mine] == [(e.event_id, e.body) for e in direct]
    with open_store(url) as reader:
        assert [e.seq for e in reader.events(customer_id="a", after=1)] == [3, 4]
        assert reader.events(customer_id="nobody") == []


def test_events_stored_together_are_all_stored_or_none(url: str) -> None:
    """apply_events: one transaction; a group holding an event stored already stores
    nothing of the group (the connection's kept events too), a good group all of it."""
    at = T0.replace(tzinfo=None)

    def record(seq: int, event_id: str, customer: str) -> store_results.EventRecord:
        return store_results.EventRecord(seq, event_id, "order", customer, at, {"n": seq})

    with open_store(url, create=True) as store:
        store.apply_event(record(1, "e1", "a"), run_id="r1", transitions=[])
        assert [e.seq for e in store.events(customer_id="b", after=0)] == []
        with pytest.raises(DataValidationError, match="not stored"):
            store.apply_events(
                [(record(2, "e2", "b"), [("s", None, "x")]), (record(3, "e1", "a"), [])],
                run_id="r1",
            )
        assert store.last_event_seq() == 1
        assert store.events(customer_id="b", after=0) == []
        assert store.segment_events(customer_id="b") == []
        store.apply_events(
            [(record(2, "e2", "b"), [("s", None, "x")]), (record(3, "e3", "a"), [])],
            run_id="r1",
        )
        assert store.last_event_seq() == 3
        assert [e.seq for e in store.events(customer_id="a", after=0)] == [1, 3]
        assert [m.to_dict()["to"] for m in store.segment_events(customer_id="b")] == ["x"]
    with open_store(url) as reader:
        assert [e.event_id for e in reader.events(customer_id="b")] == ["e2"]


# ---------------------------------------------------------------------------- journal
def _order(seq: int, customer: str = "c") -> store_results.EventRecord:
    at = dt.datetime(2024, 6, 1, 10, seq % 60)
    body = {"order_id": f"O-{seq}", "amount": 10.0 + seq}
    return store_results.EventRecord(seq, f"order:O-{seq}", "order", customer, at, body)


def _duckdb_store(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "s.duckdb"
    return f"duckdb://{path}", path.with_name(path.name + ".journal")


def _stored_seqs(where: str | store_results.ResultsStore) -> list[int]:
    """What the tables hold (the journal left aside): asked of the open store's
    connection, or of the file with DuckDB itself."""
    query = "SELECT seq FROM segvalue_events ORDER BY seq"
    if isinstance(where, store_results.ResultsStore):
        return [r[0] for r in where._db.execute(query)]
    import duckdb

    with duckdb.connect(where.removeprefix("duckdb://"), read_only=True) as con:
        return [r[0] for r in con.execute(query).fetchall()]


def test_events_reach_the_tables_through_the_journal(tmp_path: Path) -> None:
    """A DuckDB store writes each group of events to its journal (on disk before
    apply_events returns) and answers every read from tables and journal alike; closed,
    the tables hold them all and the journal is gone."""
    url, journal = _duckdb_store(tmp_path)
    with open_store(url, create=True) as store:
        store.apply_events([(_order(1), [("rfm", None, "New")]), (_order(2, "d"), [])], run_id="r")
        store.apply_events([(_order(3), [("rfm", "New", "Loyal")])], run_id="r")
        lines = journal.read_text().splitlines()
        assert len(lines) == 4 and '"segvalue_events_journal"' in lines[0]
        assert _stored_seqs(store) == []  # the tables: not yet
        assert store.last_event_seq() == 3
        assert [e.seq for e in store.events(customer_id="c")] == [1, 3]
        assert [e.seq for e in store.events(after=1)] == [2, 3]
        got = store.event("order:O-2")
        assert got is not None and got.body == {"order_id": "O-2", "amount": 12.0}
        assert [(m.seq, m.to_segment) for m in store.segment_events()] == [(3, "Loyal"), (1, "New")]
        with pytest.raises(DataValidationError, match="not stored"):  # an id stored already
            store.apply_events([(replace_seq(_order(2), 4), [])], run_id="r")
        with pytest.raises(DataValidationError, match="not stored"):  # not the next number
            store.apply_events([(_order(5), [])], run_id="r")
    assert not journal.exists()
    assert _stored_seqs(url) == [1, 2, 3]
    with open_store(url) as store:
        assert [(m.seq, m.to_segment) for m in store.segment_events()] == [(3, "Loyal"), (1, "New")]
        assert store.event("order:O-2") == got


def replace_seq(event: store_results.EventRecord, seq: int) -> store_results.EventRecord:
    import dataclasses

    return dataclasses.replace(event, seq=seq)


def test_a_killed_servers_journal_is_read_then_moved_by_the_next_writer(tmp_path: Path) -> None:
    """A process killed after storing events (no close) leaves them in the journal: a
    reader sees them, the next writer moves them into the tables; a last line cut short
    (never acknowledged) is left out."""
    import subprocess
    import sys
    import textwrap

    url, journal = _duckdb_store(tmp_path)
    with open_store(url, create=True):
        pass
    script = textwrap.dedent(
        f"""
        import datetime as dt, os
        from segvalue.store import open_store, EventRecord
        at = dt.datetime(2024, 6, 1, 10)
        store = open_store({url!r}, create=True)
        for seq in (1, 2):
            event = EventRecord(seq, f"order:K-{{seq}}", "order", "k", at, {{"amount": 1.0}})
            store.apply_events([(event, [("rfm", None, "New")])], run_id="r")
        os._exit(0)  # killed: no close
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert _stored_seqs(url) == [] and journal.exists()
    with journal.open("a") as cut:
        cut.write('{"seq": 3, "event_id": "order:K-3", "ty')
    with open_store(url) as reader:
        assert [e.event_id for e in reader.events()] == ["order:K-1", "order:K-2"]
        assert reader.last_event_seq() == 2
    assert journal.exists()  # a reader changes nothing
    with open_store(url, create=True) as writer:
        assert _stored_seqs(writer) == [1, 2]  # moved when opened
        assert [m.seq for m in writer.segment_events()] == [2, 1]
        writer.apply_events([(_order(3), [])], run_id="r")
    assert _stored_seqs(url) == [1, 2, 3] and not journal.exists()


def test_a_damaged_or_foreign_journal_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    url, journal = _duckdb_store(tmp_path)
    with open_store(url, create=True):
        pass
    journal.write_text('{"segvalue_events_journal": 1}\nnot json\n{"seq": 1}\n')
    with pytest.raises(ConfigError, match=r"damaged at line 2") as damaged:
        open_store(url, create=True)
    assert damaged.value.parameter == "store.url"
    foreign = "someone else's notes\n"
    journal.write_text(foreign)
    for create in (True, False):  # a writer and a reader refuse it when opening
        with pytest.raises(ConfigError, match="not a segvalue events journal"):
            open_store(url, create=create)
    assert journal.read_text() == foreign  # never written, truncated or removed


def test_journaled_events_move_into_the_tables_while_more_arrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every JOURNAL_EVENTS events the journal is renamed and its events moved into the
    tables on a thread of their own; events keep arriving meanwhile and every read sees
    each event once."""
    monkeypatch.setattr(store_results, "JOURNAL_EVENTS", 4)
    url, journal = _duckdb_store(tmp_path)
    with open_store(url, create=True) as store:
        for seq in range(1, 12):
            store.apply_events([(_order(seq, f"c{seq % 3}"), [("s", None, str(seq))])], run_id="r")
            assert [e.seq for e in store.events()] == list(range(1, seq + 1))
            assert len(store.segment_events()) == seq
        store._wait_for_mover()
        assert _stored_seqs(store) == list(range(1, 9))  # two moves of four
        assert not journal.with_name(journal.name + ".moving").exists()
        assert len(journal.read_text().splitlines()) == 1 + 3
        assert [e.seq for e in store.events(customer_id="c1")] == [1, 4, 7, 10]
    assert _stored_seqs(url) == list(range(1, 12)) and not journal.exists()
