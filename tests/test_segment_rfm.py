"""RFM scores and named segments: a hand-computed fixture under both tie policies and cut
points, the default grid, properties over random tables, and PostgreSQL / Spark parity.

The expected scores below were worked out by hand from the definitions in
docs/segments-rfm.md (14 buyers, 5 bins: NTILE bin sizes 3, 3, 3, 3, 2, i.e. positions
1-3 -> 1, 4-6 -> 2, 7-9 -> 3, 10-12 -> 4, 13-14 -> 5), not recomputed by the code under
test.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend_compare import assert_same_rows, sorted_rows
from segvalue.config import RFMConfig, RFMSegmentRule, parse_config
from segvalue.data.demo import generate_demo
from segvalue.errors import ConfigError, DataValidationError
from segvalue.features.customer import customer_features
from segvalue.segments.rfm import (
    DEFAULT_RFM_SEGMENTS,
    assign_rfm,
    default_rfm_segments,
    rfm_scores,
)

# customer, days since last order, orders, revenue (net), average order value.
# Ties on purpose: days 5 (c01, c02), 30 (c04, c05, c06), 200 (c11, c12); six customers
# with one order; revenue 40 four times. c15 and c16 never bought.
FIXTURE = [
    ("c01", 5, 8, 900.0, 112.5),
    ("c02", 5, 1, 40.0, 40.0),
    ("c03", 12, 3, 250.0, 83.0),
    ("c04", 30, 1, 40.0, 40.0),
    ("c05", 30, 2, 120.0, 60.0),
    ("c06", 30, 5, 600.0, 120.0),
    ("c07", 45, 1, 25.0, 25.0),
    ("c08", 60, 4, 410.0, 102.5),
    ("c09", 90, 1, 40.0, 40.0),
    ("c10", 120, 2, 40.0, 20.0),
    ("c11", 200, 6, 700.0, 116.0),
    ("c12", 200, 1, 15.0, 15.0),
    ("c13", 365, 3, 180.0, 60.0),
    ("c14", 400, 1, 10.0, 10.0),
    ("c15", None, 0, 0.0, 0.0),
    ("c16", None, 0, 0.0, 0.0),
]

# ties: split. Order worst first, ties by customer id:
#   R (days descending): c14 c13 c11 | c12 c10 c09 | c08 c07 c04 | c05 c06 c03 | c01 c02
#   F (orders): c02 c04 c07 | c09 c12 c14 | c05 c10 c03 | c13 c08 c06 | c11 c01
#   M (revenue): c14 c12 c07 | c02 c04 c09 | c10 c05 c13 | c03 c08 c06 | c11 c01
# FM = floor((F + M) / 2 + 0.5); segment from the R x FM grid.
SPLIT = {
    "c01": ("555", 5, "Champions"),
    "c02": ("512", 2, "Potential Loyalist"),
    "c03": ("434", 4, "Loyal Customers"),
    "c04": ("312", 2, "Need Attention"),
    "c05": ("433", 3, "Potential Loyalist"),
    "c06": ("444", 4, "Loyal Customers"),
    "c07": ("311", 1, "Promising"),
    "c08": ("344", 4, "Loyal Customers"),
    "c09": ("222", 2, "Need Attention"),
    "c10": ("233", 3, "Need Attention"),
    "c11": ("155", 5, "Can't Lose Them"),
    "c12": ("221", 2, "Need Attention"),
    "c13": ("143", 4, "Can't Lose Them"),
    "c14": ("121", 2, "Hibernating"),
    "c15": (None, None, "Others"),
    "c16": (None, None, "Others"),
}

# ties: shared. Score = NTILE bin of the rank (1 + number strictly worse):
#   R: c14 1, c13 2, c11 c12 3, c10 5, c09 6 -> 1 1 1 1 2 2; c08 7, c07 8, c04 c05 c06 9
#      -> 3; c03 12 -> 4; c01 c02 13 -> 5
#   F: the six one-order customers rank 1 -> 1; c05 c10 rank 7 -> 3; c03 c13 rank 9 -> 3;
#      c08 11 -> 4; c06 12 -> 4; c11 13 -> 5; c01 14 -> 5
#   M: c14 c12 c07 -> 1; revenue 40 (c02 c04 c09 c10) rank 4 -> 2; c05 8, c13 9 -> 3;
#      c03 c08 c06 -> 4; c11 c01 -> 5
SHARED = {
    "c01": ("555", 5, "Champions"),
    "c02": ("512", 2, "Potential Loyalist"),
    "c03": ("434", 4, "Loyal Customers"),
    "c04": ("312", 2, "Need Attention"),
    "c05": ("333", 3, "Potential Loyalist"),
    "c06": ("344", 4, "Loyal Customers"),
    "c07": ("311", 1, "Promising"),
    "c08": ("344", 4, "Loyal Customers"),
    "c09": ("212", 2, "Need Attention"),
    "c10": ("232", 3, "Need Attention"),
    "c11": ("155", 5, "Can't Lose Them"),
    "c12": ("111", 1, "Lost"),
    "c13": ("133", 3, "At Risk"),
    "c14": ("111", 1, "Lost"),
    "c15": (None, None, "Others"),
    "c16": (None, None, "Others"),
}

# method: cuts. Recency [7, 30, 90, 180] days (days <= 7 -> 5, ..., > 180 -> 1; c04-c06 at
# 30 and c09 at 90 sit on a cut and take the more recent bin); frequency [1, 2, 3, 5];
# monetary [50, 100, 250, 500] (c03 at 250 takes the lower bin).
CUTS = {"recency": [7, 30, 90, 180], "frequency": [1, 2, 3, 5], "monetary": [50, 100, 250, 500]}
CUT = {
    "c01": ("555", 5, "Champions"),
    "c02": ("511", 1, "New Customers"),
    "c03": ("433", 3, "Potential Loyalist"),
    "c04": ("411", 1, "Promising"),
    "c05": ("423", 3, "Potential Loyalist"),
    "c06": ("445", 5, "Champions"),
    "c07": ("311", 1, "Promising"),
    "c08": ("344", 4, "Loyal Customers"),
    "c09": ("311", 1, "Promising"),
    "c10": ("221", 2, "Need Attention"),
    "c11": ("155", 5, "Can't Lose Them"),
    "c12": ("111", 1, "Lost"),
    "c13": ("133", 3, "At Risk"),
    "c14": ("111", 1, "Lost"),
    "c15": (None, None, "Others"),
    "c16": (None, None, "Others"),
}

# The published R x FM grid (Ramiro 2021, after the UK DMA's 11 personas), written out
# cell by cell: rows R = 5..1, columns FM = 1..5.
GRID = {
    5: ["New Customers", "Potential Loyalist", "Loyal Customers", "Champions", "Champions"],
    4: ["Promising", "Potential Loyalist", "Potential Loyalist", "Loyal Customers", "Champions"],
    3: ["Promising", "Need Attention", "Potential Loyalist", "Loyal Customers", "Loyal Customers"],
    2: ["About To Sleep", "Need Attention", "Need Attention", "At Risk", "At Risk"],
    1: ["Lost", "Hibernating", "At Risk", "Can't Lose Them", "Can't Lose Them"],
}
NAMED = {
    "Champions",
    "Loyal Customers",
    "Potential Loyalist",
    "New Customers",
    "Promising",
    "Need Attention",
    "About To Sleep",
    "At Risk",
    "Can't Lose Them",
    "Hibernating",
    "Lost",
}


def _arrow(rows: list[tuple[Any, ...]] = FIXTURE) -> pa.Table:
    ids, days, orders, revenue, aov = zip(*rows, strict=True) if rows else ([],) * 5
    return pa.table(
        {
            "customer_id": pa.array(ids, pa.string()),
            "days_since_last_order": pa.array(days, pa.int64()),
            "orders": pa.array(orders, pa.int64()),
            "revenue": pa.array(revenue, pa.float64()),
            "average_order_value": pa.array(aov, pa.float64()),
        }
    )


def _config(**kwargs: Any) -> RFMConfig:
    return RFMConfig(type="rfm", **kwargs)


def _by_id(table: Any) -> dict[str, dict[str, Any]]:
    return {row["customer_id"]: row for row in table.to_pyarrow().to_pylist()}


def _summary(table: Any) -> dict[str, tuple[Any, Any, str]]:
    return {k: (r["rfm_cell"], r["fm_score"], r["segment"]) for k, r in _by_id(table).items()}


@pytest.mark.parametrize(("ties", "expected"), [("split", SPLIT), ("shared", SHARED)])
def test_hand_computed_fixture_under_both_tie_policies(ties: str, expected: dict) -> None:
    features = ibis.memtable(_arrow())
    assert _summary(assign_rfm(features, _config(ties=ties))) == expected


def test_hand_computed_fixture_with_cut_points() -> None:
    features = ibis.memtable(_arrow())
    config = _config(method="cuts", cuts=CUTS, ties="split")  # ties do not apply to cuts
    assert _summary(assign_rfm(features, config)) == CUT
    assert _summary(assign_rfm(features, _config(method="cuts", cuts=CUTS))) == CUT


def test_scores_table_columns_and_measures() -> None:
    scores = rfm_scores(ibis.memtable(_arrow()), _config(ties="split"))
    assert scores.columns == (
        "customer_id",
        "recency_days",
        "orders",
        "monetary",
        "r_score",
        "f_score",
        "m_score",
        "fm_score",
        "rfm_cell",
    )
    rows = _by_id(scores)
    assert rows["c03"] == {
        "customer_id": "c03",
        "recency_days": 12,
        "orders": 3,
        "monetary": 250.0,
        "r_score": 4,
        "f_score": 3,
        "m_score": 4,
        "fm_score": 4,
        "rfm_cell": "434",
    }
    assert rows["c15"]["r_score"] is None and rows["c15"]["fm_score"] is None


def test_average_order_value_as_monetary() -> None:
    # M by average order value, ties split (ids break the 40.0 tie: c02, c04, c09):
    # c14 10, c12 15, c10 20 | c07 25, c02 40, c04 40 | c09 40, c05 60, c13 60 |
    # c03 83, c08 102.5, c01 112.5 | c11 116, c06 120
    scores = _by_id(
        rfm_scores(ibis.memtable(_arrow()), _config(ties="split"), monetary="average_order_value")
    )
    m = {k: r["m_score"] for k, r in scores.items()}
    assert m == {
        "c14": 1,
        "c12": 1,
        "c10": 1,
        "c07": 2,
        "c02": 2,
        "c04": 2,
        "c09": 3,
        "c05": 3,
        "c13": 3,
        "c03": 4,
        "c08": 4,
        "c01": 4,
        "c11": 5,
        "c06": 5,
        "c15": None,
        "c16": None,
    }
    assert scores["c06"]["monetary"] == 120.0


def test_worked_example_of_the_docs() -> None:
    # docs/segments-rfm.md: seven buyers, orders 1 1 1 1 2 3 5, five bins (sizes 2 2 1 1 1).
    rows = [(c, 10, o, 10.0, 10.0) for c, o in zip("abcdefg", [1, 1, 1, 1, 2, 3, 5], strict=True)]
    features = ibis.memtable(_arrow(rows))
    for ties, expected in (("split", [1, 1, 2, 2, 3, 4, 5]), ("shared", [1, 1, 1, 1, 3, 4, 5])):
        got = _by_id(rfm_scores(features, _config(ties=ties)))
        assert [got[c]["f_score"] for c in "abcdefg"] == expected


def test_default_grid_covers_every_cell_exactly() -> None:
    assert {r.segment for r in DEFAULT_RFM_SEGMENTS} == NAMED | {"Others"}
    assert DEFAULT_RFM_SEGMENTS[-1] == RFMSegmentRule(segment="Others")
    for r in range(1, 6):
        for fm in range(1, 6):
            matching = [rule.segment for rule in DEFAULT_RFM_SEGMENTS if _hit(rule, r, fm)]
            # Exactly one named rule per cell, then the catch-all; no cell falls to Others.
            assert matching == [GRID[r][fm - 1], "Others"], (r, fm)


def _hit(rule: RFMSegmentRule, r: int, fm: int, f: int = 0, m: int = 0) -> bool:
    values = {"r": r, "fm": fm, "f": f, "m": m}
    spans = {"r": rule.r, "fm": rule.fm, "f": rule.f, "m": rule.m}
    return all(s is None or s[0] <= values[k] <= s[1] for k, s in spans.items())


def test_default_grid_in_the_engine() -> None:
    # Every one of the 125 (R, F, M) score cells, as 5 bins with one customer per score:
    # assign through the engine with cut points that reproduce each score exactly.
    rows = []
    for r in range(1, 6):
        for f in range(1, 6):
            for m in range(1, 6):
                rows.append((f"{r}{f}{m}", 6 - r, f, float(m), float(m)))
    cuts = {"recency": [1.5, 2.5, 3.5, 4.5], "frequency": [1, 2, 3, 4], "monetary": [1, 2, 3, 4]}
    out = _by_id(assign_rfm(ibis.memtable(_arrow(rows)), _config(method="cuts", cuts=cuts)))
    for cell, row in out.items():
        assert row["rfm_cell"] == cell
        r, f, m = (int(c) for c in cell)
        fm = (f + m + 1) // 2
        assert row["fm_score"] == fm
        assert row["segment"] == GRID[r][fm - 1], cell
    # The rounding of FM: F + M odd rounds half up (e.g. F 1, M 2 -> 2; F 4, M 5 -> 5).
    assert out["512"]["fm_score"] == 2 and out["545"]["fm_score"] == 5


@pytest.mark.parametrize("bins", range(2, 11))
def test_scaled_default_partitions_every_bin_count(bins: int) -> None:
    rules = default_rfm_segments(bins)
    assert rules[-1] == RFMSegmentRule(segment="Others")
    cells = {}
    for r in range(1, bins + 1):
        for fm in range(1, bins + 1):
            named = [rule.segment for rule in rules[:-1] if _hit(rule, r, fm)]
            assert len(named) == 1, (bins, r, fm, named)
            cells[(r, fm)] = named[0]
    # The extremes keep their meaning at every bin count.
    assert cells[(bins, bins)] == "Champions"
    assert cells[(bins, 1)] == "New Customers"
    assert cells[(1, bins)] == "Can't Lose Them"
    assert cells[(1, 1)] == "Lost"
    # The rules are valid configuration for this bin count.
    assert RFMConfig(type="rfm", bins=bins, segments=rules).segments == rules


def test_scaled_default_hand_checked() -> None:
    # 5 bins: unchanged. 3 bins: scores 1, 2, 3 grade to 1, 3, 5. 10 bins: pairs of scores
    # grade to 1..5 (1-2 -> 1, 3-4 -> 2, 5-6 -> 3, 7-8 -> 4, 9-10 -> 5).
    assert default_rfm_segments(5) == list(DEFAULT_RFM_SEGMENTS)
    three = {(r.r, r.fm): r.segment for r in default_rfm_segments(3)[:-1]}
    assert three == {
        ((3, 3), (3, 3)): "Champions",
        ((3, 3), (2, 2)): "Loyal Customers",
        ((2, 2), (3, 3)): "Loyal Customers",
        ((2, 2), (2, 2)): "Potential Loyalist",
        ((3, 3), (1, 1)): "New Customers",
        ((2, 2), (1, 1)): "Promising",
        ((1, 1), (2, 2)): "At Risk",
        ((1, 1), (3, 3)): "Can't Lose Them",
        ((1, 1), (1, 1)): "Lost",
    }
    ten = default_rfm_segments(10)
    assert ten[0] == RFMSegmentRule(segment="Champions", r=(9, 10), fm=(7, 10))
    assert RFMSegmentRule(segment="Promising", r=(5, 8), fm=(1, 2)) in ten


def test_three_bins_in_the_engine() -> None:
    # n = 14 buyers, 3 bins: NTILE sizes 5, 5, 4. Split R order as in SPLIT above:
    # c14 c13 c11 c12 c10 | c09 c08 c07 c04 c05 | c06 c03 c01 c02.
    out = _by_id(assign_rfm(ibis.memtable(_arrow()), _config(bins=3, ties="split")))
    r = {k: v["r_score"] for k, v in out.items() if v["r_score"] is not None}
    assert [k for k, v in sorted(r.items()) if v == 3] == ["c01", "c02", "c03", "c06"]
    assert [k for k, v in sorted(r.items()) if v == 1] == ["c10", "c11", "c12", "c13", "c14"]
    # c01: F 3, M 3 -> FM 3 -> Champions; c14: F 2 (c02 c04 c07 c09 c12 | c14 ...), M 1.
    assert (out["c01"]["rfm_cell"], out["c01"]["segment"]) == ("333", "Champions")
    assert (out["c14"]["rfm_cell"], out["c14"]["segment"]) == ("121", "At Risk")


def test_edited_segments_and_unassigned_name() -> None:
    rules = [
        RFMSegmentRule(segment="Whales", m=(5, 5)),
        RFMSegmentRule(segment="Fresh", r=(4, 5), f=(1, 2)),
        RFMSegmentRule(segment="Whales", r=(5, 5), fm=(4, 4)),  # a second rectangle
    ]
    config = _config(ties="split", segments=rules, unassigned="Unscored")
    got = {k: v["segment"] for k, v in _by_id(assign_rfm(ibis.memtable(_arrow()), config)).items()}
    # From the SPLIT cells: M 5 -> c01 (555), c11 (155); R 4-5 with F 1-2 -> c02 (512);
    # no buyer has R 5 and FM 4; the rest, buyers or not, fall to the unassigned name.
    assert got == {
        "c01": "Whales",
        "c02": "Fresh",
        "c11": "Whales",
        **{c: "Unscored" for c in got if c not in ("c01", "c02", "c11")},
    }
    empty = _config(segments=[], unassigned="All")
    assert {r["segment"] for r in _by_id(assign_rfm(ibis.memtable(_arrow()), empty)).values()} == {
        "All"
    }


def test_docs_yaml_is_valid_and_equals_the_default() -> None:
    text = (Path(__file__).parents[1] / "docs" / "segments-rfm.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None
    config = parse_config(yaml.safe_load(block.group(1)))
    scheme = config.segments.schemes[0]
    assert isinstance(scheme, RFMConfig)
    assert scheme.segments == list(DEFAULT_RFM_SEGMENTS)
    # ... and its table lists the same rectangles.
    table = re.findall(r"^\| (.+?) \| (\d)-(\d) \| (\d)-(\d) \|$", text, re.M)
    listed = [
        RFMSegmentRule(segment=s, r=(int(a), int(b)), fm=(int(c), int(d)))
        for s, a, b, c, d in table
    ]
    assert listed == list(DEFAULT_RFM_SEGMENTS[:-1])


def test_bad_inputs_are_named() -> None:
    features = ibis.memtable(_arrow()).drop("orders")
    with pytest.raises(DataValidationError, match=r"lacks column\(s\) \['orders'\]"):
        rfm_scores(features, _config())
    with pytest.raises(ConfigError, match="unknown RFM monetary measure 'profit'"):
        rfm_scores(ibis.memtable(_arrow()), _config(), monetary="profit")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"RFM bins must be 2\.\.10, got 11"):
        default_rfm_segments(11)


def test_only_returns_and_empty_tables() -> None:
    # A customer with returns only (orders 0) is not scored, even with a last-order date.
    rows = [("a", 3, 0, -20.0, 0.0), ("b", 3, 2, 50.0, 25.0)]
    out = _by_id(assign_rfm(ibis.memtable(_arrow(rows)), _config()))
    assert out["a"]["segment"] == "Others" and out["a"]["r_score"] is None
    # One buyer: every score is 1 (NTILE of a single row), cell 111 -> Lost.
    assert (out["b"]["rfm_cell"], out["b"]["segment"]) == ("111", "Lost")
    assert assign_rfm(ibis.memtable(_arrow([])), _config()).to_pyarrow().num_rows == 0


def test_demo_feature_table_end_to_end() -> None:
    # The real feature table, customers included: 20 customers lose their orders, so they
    # are registered non-buyers (orders 0, no last order) and must land in "Others".
    demo = generate_demo(500, seed=7)
    con = ibis.duckdb.connect()
    customers = con.create_table("customers", demo.tables["customers"])
    orders = con.create_table("orders", demo.tables["orders"])
    ids = sorted(customers.customer_id.to_pyarrow().to_pylist())
    dropped = ids[:20]
    orders = orders.filter(~orders.customer_id.isin(dropped))
    features = customer_features(
        {"customers": customers, "orders": orders}, as_of=dt.date(2025, 12, 31)
    )
    out = assign_rfm(features, _config()).to_pyarrow().to_pylist()
    assert sorted(r["customer_id"] for r in out) == ids
    others = sorted(r["customer_id"] for r in out if r["segment"] == "Others")
    assert others == dropped
    assert {r["segment"] for r in out} - {"Others"} <= NAMED
    # The named segments mean what they say on the measures themselves.
    measured = _by_id(features.select("customer_id", "revenue", "days_since_last_order"))
    by_segment: dict[str, list[dict[str, Any]]] = {}
    for r in out:
        by_segment.setdefault(r["segment"], []).append(measured[r["customer_id"]])

    def mean(segment: str, column: str) -> float:
        return sum(m[column] for m in by_segment[segment]) / len(by_segment[segment])

    assert mean("Champions", "revenue") > 3 * mean("Lost", "revenue")
    assert mean("Champions", "days_since_last_order") < mean("Lost", "days_since_last_order")
    assert mean("Can't Lose Them", "revenue") > mean("Hibernating", "revenue")


# --- properties over random tables --------------------------------------------------------


def _ntile(position: int, n: int, bins: int) -> int:
    """SQL NTILE by its definition: walk the bins, the first n mod bins one row larger."""
    small, extra = divmod(n, bins)
    upper = 0
    for b in range(1, bins + 1):
        upper += small + (1 if b <= extra else 0)
        if position <= upper:
            return b
    raise AssertionError(position)


def _reference(rows: list[tuple[Any, ...]], bins: int, ties: str) -> dict[str, tuple[int, ...]]:
    """Scores by sorting in Python (the definitions of docs/segments-rfm.md)."""
    buyers = [r for r in rows if r[2] > 0 and r[1] is not None]
    n = len(buyers)
    out: dict[str, list[int]] = {r[0]: [] for r in buyers}
    for index, sign in ((1, -1), (2, 1), (3, 1)):  # recency: fewer days is better
        ordered = sorted(buyers, key=lambda r: (sign * r[index], r[0]))
        for row_number, row in enumerate(ordered, start=1):
            rank = 1 + sum(1 for o in buyers if sign * o[index] < sign * row[index])
            out[row[0]].append(_ntile(rank if ties == "shared" else row_number, n, bins))
    return {k: tuple(v) for k, v in out.items()}


row_strategy = st.tuples(
    st.one_of(st.none(), st.integers(0, 6)),
    st.integers(0, 4),
    st.sampled_from([-5.0, 0.0, 10.0, 10.0, 25.5, 40.0, 99.0]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.lists(row_strategy, max_size=40),
    bins=st.integers(2, 10),
    ties=st.sampled_from(["split", "shared"]),
)
def test_every_customer_exactly_one_segment_and_scores_match_definitions(
    raw: list[tuple[Any, ...]], bins: int, ties: str
) -> None:
    rows = []
    for i, (days, orders, revenue) in enumerate(raw):
        days_value = None if orders == 0 and days is None else (days or 0)
        rows.append((f"k{i:03d}", days_value, orders, revenue, revenue))
    out = assign_rfm(ibis.memtable(_arrow(rows)), _config(bins=bins, ties=ties)).to_pyarrow()
    ids = out.column("customer_id").to_pylist()
    assert sorted(ids) == [r[0] for r in rows]  # every customer, exactly once
    segments = out.column("segment").to_pylist()
    assert None not in segments
    assert set(segments) <= {r.segment for r in default_rfm_segments(bins)}
    expected = _reference(rows, bins, ties)
    for row in out.to_pylist():
        got = (row["r_score"], row["f_score"], row["m_score"])
        if row["customer_id"] not in expected:
            assert got == (None, None, None) and row["segment"] == "Others"
            continue
        assert got == expected[row["customer_id"]]
        assert row["rfm_cell"] == ("-" if bins == 10 else "").join(str(v) for v in got)
        fm = (got[1] + got[2] + 1) // 2
        first = next(r for r in default_rfm_segments(bins) if _hit(r, got[0], fm, got[1], got[2]))
        assert row["segment"] == first.segment


@settings(max_examples=15, deadline=None)
@given(values=st.lists(st.integers(0, 3), min_size=1, max_size=30), bins=st.integers(2, 10))
def test_split_is_sql_ntile_and_shared_equals_split_without_ties(
    values: list[int], bins: int
) -> None:
    rows = [(f"k{i:03d}", 1, 1, float(v), float(v)) for i, v in enumerate(values)]
    table = ibis.memtable(_arrow(rows))
    window = ibis.window(order_by=[table.revenue, table.customer_id])
    engine = table.mutate(nt=ibis.ntile(bins).over(window) + 1)
    ntile = {r["customer_id"]: r["nt"] for r in engine.to_pyarrow().to_pylist()}
    split = _by_id(rfm_scores(table, _config(bins=bins, ties="split")))
    assert {k: r["m_score"] for k, r in split.items()} == ntile
    shared = _by_id(rfm_scores(table, _config(bins=bins, ties="shared")))
    for k, r in shared.items():
        tied = [o for o in rows if o[3] == r["monetary"]]
        if len(tied) == 1:
            assert r["m_score"] == split[k]["m_score"]
        assert {shared[o[0]]["m_score"] for o in tied} == {r["m_score"]}


# --- other engines ---------------------------------------------------------------------------


@pytest.fixture()
def pg(postgres_url: str) -> Iterator[Any]:
    con = ibis.connect(postgres_url)
    con.create_table("rfm_features", _arrow(), overwrite=True)
    yield con
    con.drop_table("rfm_features", force=True)
    con.disconnect()


CONFIGS = {
    "split": {"ties": "split"},
    "shared": {"ties": "shared"},
    "cuts": {"method": "cuts", "cuts": CUTS},
}
EXPECTED = {"split": SPLIT, "shared": SHARED, "cuts": CUT}


@pytest.mark.parametrize("policy", list(CONFIGS))
def test_same_on_postgres_as_on_duckdb(pg: Any, policy: str) -> None:
    config = _config(**CONFIGS[policy])
    on_pg = assign_rfm(pg.table("rfm_features"), config)
    assert _summary(on_pg) == EXPECTED[policy]
    duck = ibis.duckdb.connect()
    on_duck = assign_rfm(duck.create_table("rfm_features", _arrow()), config)
    assert_same_rows(sorted_rows(on_pg.to_pyarrow()), sorted_rows(on_duck.to_pyarrow()))
    scores_pg = rfm_scores(pg.table("rfm_features"), config).to_pyarrow()
    scores_duck = rfm_scores(duck.table("rfm_features"), config).to_pyarrow()
    assert_same_rows(sorted_rows(scores_pg), sorted_rows(scores_duck))


@pytest.mark.slow
def test_same_on_spark_as_on_duckdb(spark: Any) -> None:
    from segvalue.data.readers import connect

    # Built with Spark's own createDataFrame: Ibis 12's create_table from an Arrow table
    # turns a nullable int64 column (days_since_last_order here) into all nulls on Spark 4.
    schema = (
        "customer_id string, days_since_last_order long, orders long, revenue double, "
        "average_order_value double"
    )
    spark.createDataFrame(FIXTURE, schema).createOrReplaceTempView("rfm_features")
    con = connect(spark)
    duck = ibis.duckdb.connect()
    duck.create_table("rfm_features", _arrow())

    def all_policies(table: Any) -> list[dict[str, Any]]:
        # One query for the three policies: Spark's per-job overhead dominates here.
        parts = [
            assign_rfm(table, _config(**settings_)).mutate(policy=ibis.literal(policy))
            for policy, settings_ in CONFIGS.items()
        ]
        rows = ibis.union(*parts).to_pyarrow().to_pylist()
        return sorted(rows, key=lambda r: (r["policy"], r["customer_id"]))

    on_spark = all_policies(con.table("rfm_features"))
    for policy, expected in EXPECTED.items():
        summary = {
            r["customer_id"]: (r["rfm_cell"], r["fm_score"], r["segment"])
            for r in on_spark
            if r["policy"] == policy
        }
        assert summary == expected, policy
    assert_same_rows(on_spark, all_policies(duck.table("rfm_features")))
