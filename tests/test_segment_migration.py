"""Migration between membership snapshots: transition matrix, drift alerts, events."""

from __future__ import annotations

from typing import Any

import ibis
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segvalue.errors import ConfigError, DataValidationError
from segvalue.segments.migration import (
    GONE,
    NEW,
    drift_alerts,
    membership_events,
    transition_matrix,
    transition_pivot,
)


def snapshot(rows: list[tuple[str, str, str]]) -> pa.Table:
    """(customer_id, scheme, segment) rows as an Arrow snapshot."""
    return pa.table(
        {
            "customer_id": [r[0] for r in rows],
            "scheme": [r[1] for r in rows],
            "segment": [r[2] for r in rows],
        },
        schema=pa.schema(
            [("customer_id", pa.string()), ("scheme", pa.string()), ("segment", pa.string())]
        ),
    )


# a, b in X; c, d in Y; e in Z. Later: b moved to Y, d and e left, f and g arrived.
# A second scheme "life" in which only a changes (new -> active).
BEFORE = snapshot(
    [
        ("a", "rfm", "X"),
        ("b", "rfm", "X"),
        ("c", "rfm", "Y"),
        ("d", "rfm", "Y"),
        ("e", "rfm", "Z"),
        ("a", "life", "new"),
        ("b", "life", "active"),
    ]
)
AFTER = snapshot(
    [
        ("a", "rfm", "X"),
        ("b", "rfm", "Y"),
        ("c", "rfm", "Y"),
        ("f", "rfm", "Z"),
        ("g", "rfm", "X"),
        ("a", "life", "active"),
        ("b", "life", "active"),
    ]
)


def cells(matrix: pa.Table, scheme: str) -> dict[tuple[str, str], tuple[int, float]]:
    return {
        (r["from_segment"], r["to_segment"]): (r["customers"], r["share"])
        for r in matrix.to_pylist()
        if r["scheme"] == scheme
    }


def test_transition_matrix_counts_and_row_shares() -> None:
    con = ibis.duckdb.connect()
    before = con.create_table("before", BEFORE)  # an engine table next to an Arrow one
    matrix = transition_matrix(before, AFTER)
    assert cells(matrix, "rfm") == {
        ("X", "X"): (1, 0.5),
        ("X", "Y"): (1, 0.5),
        ("Y", "Y"): (1, 0.5),
        ("Y", GONE): (1, 0.5),
        ("Z", GONE): (1, 1.0),
        (NEW, "X"): (1, 0.5),
        (NEW, "Z"): (1, 0.5),
    }
    assert cells(matrix, "life") == {("new", "active"): (1, 1.0), ("active", "active"): (1, 1.0)}
    assert matrix.column_names == ["scheme", "from_segment", "to_segment", "customers", "share"]
    con.disconnect()


def test_transition_pivot_is_square_with_new_and_gone_last() -> None:
    matrix = transition_matrix(BEFORE, AFTER)
    counts = transition_pivot(matrix, scheme="rfm")
    assert counts.column_names == ["from_segment", "X", "Y", "Z", GONE]
    assert counts.to_pylist() == [
        {"from_segment": "X", "X": 1, "Y": 1, "Z": 0, GONE: 0},
        {"from_segment": "Y", "X": 0, "Y": 1, "Z": 0, GONE: 1},
        {"from_segment": "Z", "X": 0, "Y": 0, "Z": 0, GONE: 1},
        {"from_segment": NEW, "X": 1, "Y": 0, "Z": 1, GONE: 0},
    ]
    shares = transition_pivot(matrix, scheme="rfm", value="share")
    for row in shares.to_pylist():
        assert sum(v for k, v in row.items() if k != "from_segment") == pytest.approx(1.0)


def test_membership_events_of_exclusive_schemes() -> None:
    events = membership_events(BEFORE, AFTER).order_by(["scheme", "customer_id"])
    rows = [tuple(r.values()) for r in events.to_pyarrow().to_pylist()]
    assert rows == [
        ("a", "life", "new", "active"),
        ("b", "rfm", "X", "Y"),
        ("d", "rfm", "Y", GONE),
        ("e", "rfm", "Z", GONE),
        ("f", "rfm", NEW, "Z"),
        ("g", "rfm", NEW, "X"),
    ]


def test_membership_events_of_a_tag_scheme() -> None:
    before = snapshot([("a", "tags", "deal"), ("a", "tags", "app"), ("b", "tags", "app")])
    after = snapshot([("a", "tags", "app"), ("a", "tags", "eco"), ("c", "tags", "deal")])
    events = membership_events(before, after, tag_schemes={"tags"})
    rows = sorted(
        (r["customer_id"], r["from_segment"] or "", r["to_segment"] or "")
        for r in events.to_pyarrow().to_pylist()
    )
    # a: lost deal, gained eco, kept app; b: lost app; c: gained deal
    assert rows == [("a", "", "eco"), ("a", "deal", ""), ("b", "app", ""), ("c", "", "deal")]
    # a tag scheme has no well-defined transition matrix
    with pytest.raises(DataValidationError, match=r"before snapshot, scheme 'tags': 1 customers"):
        transition_matrix(before, after)


def test_snapshots_without_a_scheme_column() -> None:
    before = pa.table({"customer_id": ["a", "b"], "segment": ["X", "X"]})
    after = pa.table({"customer_id": ["a", "b"], "segment": ["X", "Y"]})
    matrix = transition_matrix(before, after, scheme="clusters")
    assert cells(matrix, "clusters") == {("X", "X"): (1, 0.5), ("X", "Y"): (1, 0.5)}


def _sized(sizes: dict[str, int], scheme: str = "s") -> pa.Table:
    rows, i = [], 0
    for segment, n in sizes.items():
        for _ in range(n):
            rows.append((f"c{i}", scheme, segment))
            i += 1
    return snapshot(rows)


def test_drift_alerts_threshold_edges() -> None:
    before = _sized({"A": 10, "B": 10, "C": 10, "D": 5})
    after = _sized({"A": 12, "B": 8, "C": 13, "E": 1})
    # A +20 %, B -20 %, C +30 %, D gone (-100 %), E new
    at_20 = drift_alerts(before, after, 0.2)
    assert [(a.segment, a.before, a.after) for a in at_20] == [
        ("C", 10, 13),
        ("D", 5, 0),
        ("E", 0, 1),
    ]
    c, d, e = at_20
    assert c.change == pytest.approx(0.3)
    assert d.change == pytest.approx(-1.0)
    assert e.change is None and "a new segment" in e.message
    assert c.message == (
        "scheme 's', segment 'C': 10 -> 13 customers (+30 %), beyond the drift threshold of 20 %"
    )
    assert c.before_share == pytest.approx(10 / 35) and c.after_share == pytest.approx(13 / 34)
    just_below = drift_alerts(before, after, 0.1999)
    assert [a.segment for a in just_below] == ["A", "B", "C", "D", "E"]
    assert [a.segment for a in drift_alerts(before, after, 0.3)] == ["D", "E"]
    assert [a.segment for a in drift_alerts(before, after, 1.5)] == ["E"]


def test_drift_alerts_on_shares() -> None:
    # the base doubles; every segment doubles too: no change in shares
    before = _sized({"A": 10, "B": 30})
    after = _sized({"A": 20, "B": 60})
    assert [a.segment for a in drift_alerts(before, after, 0.5)] == ["A", "B"]
    assert drift_alerts(before, after, 0.5, measure="share") == []
    moved = _sized({"A": 20, "B": 20})  # A: 25 % -> 50 % of the base
    (alert,) = drift_alerts(before, moved, 0.5, measure="share")
    assert alert.segment == "A" and alert.change == pytest.approx(1.0)
    assert "25.0 % -> 50.0 % of customers" in alert.message


def test_drift_alert_errors() -> None:
    with pytest.raises(ConfigError, match=r"segments\.drift_threshold"):
        drift_alerts(BEFORE, AFTER, 0.0)
    with pytest.raises(ConfigError, match="unknown drift measure 'size'"):
        drift_alerts(BEFORE, AFTER, 0.2, measure="size")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties

_labels = st.sampled_from(["A", "B", "C"])
_snapshot = st.dictionaries(st.sampled_from([f"c{i}" for i in range(12)]), _labels, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=_snapshot, after=_snapshot)
def test_transition_counts_cover_the_union_and_rows_sum_to_one(
    before: dict[str, str], after: dict[str, str]
) -> None:
    b = snapshot([(c, "s", s) for c, s in before.items()])
    a = snapshot([(c, "s", s) for c, s in after.items()])
    matrix = transition_matrix(b, a)
    rows: list[dict[str, Any]] = matrix.to_pylist()
    assert sum(r["customers"] for r in rows) == len(set(before) | set(after))
    totals: dict[str, float] = {}
    for r in rows:
        totals[r["from_segment"]] = totals.get(r["from_segment"], 0.0) + r["share"]
    assert all(t == pytest.approx(1.0) for t in totals.values())
    # each row holds exactly the customers of its segment in the earlier snapshot
    for segment in set(before.values()):
        count = sum(r["customers"] for r in rows if r["from_segment"] == segment)
        assert count == sum(1 for s in before.values() if s == segment)
    assert sum(r["customers"] for r in rows if r["from_segment"] == NEW) == len(
        set(after) - set(before)
    )
    # events: exactly the customers whose label changed
    events = membership_events(b, a).to_pyarrow()
    changed = {c for c in set(before) | set(after) if before.get(c) != after.get(c)}
    assert sorted(events.column("customer_id").to_pylist()) == sorted(changed)


def test_same_migration_on_postgres(postgres_url: str) -> None:
    pg = ibis.connect(postgres_url)
    try:
        before = pg.create_table("seg_before", BEFORE, overwrite=True)
        after = pg.create_table("seg_after", AFTER, overwrite=True)
        matrix = transition_matrix(before, after)
        alerts = drift_alerts(before, after, 0.2)
        events = membership_events(before, after, tag_schemes={"life"}).to_pyarrow()
    finally:
        pg.drop_table("seg_before", force=True)
        pg.drop_table("seg_after", force=True)
        pg.disconnect()
    assert matrix.equals(transition_matrix(BEFORE, AFTER))
    assert alerts == drift_alerts(BEFORE, AFTER, 0.2)
    expected = membership_events(BEFORE, AFTER, tag_schemes={"life"}).to_pyarrow()
    key = ["customer_id", "scheme", "from_segment", "to_segment"]
    assert sorted(events.to_pylist(), key=lambda r: [r[k] or "" for k in key]) == sorted(
        expected.to_pylist(), key=lambda r: [r[k] or "" for k in key]
    )
