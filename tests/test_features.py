"""Per-customer features: a pure-Python oracle, and the same numbers on every backend."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import ibis
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend_compare import assert_same_rows, sorted_rows
from segvalue.errors import ConfigError
from segvalue.features.customer import customer_features
from segvalue.features.rfm import calibration_holdout, rfm_features

AS_OF = dt.date(2024, 6, 30)
START = dt.datetime(2023, 1, 1)
CHANNELS = ["email", "paid_social"]
CATEGORIES = ["books", "home & garden"]


def _orders_strategy() -> st.SearchStrategy[list[dict[str, Any]]]:
    order = st.fixed_dictionaries(
        {
            "customer_id": st.sampled_from(["a", "b", "c", "d", "e"]),
            "minutes": st.integers(0, 545 * 24 * 60),
            "amount": st.one_of(
                st.floats(0.5, 500, allow_nan=False).map(lambda v: round(v, 2)),
                st.just(0.0),
                st.floats(-50, -0.5).map(lambda v: round(v, 2)),
            ),
        }
    )
    return st.lists(order, min_size=1, max_size=40)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table(
        {
            "order_id": [str(i) for i in range(len(rows))],
            "customer_id": [r["customer_id"] for r in rows],
            "order_ts": pa.array(
                [START + dt.timedelta(minutes=r["minutes"]) for r in rows], pa.timestamp("us")
            ),
            "amount": [r["amount"] for r in rows],
        }
    )


def _oracle(
    rows: list[dict[str, Any]], unit_days: float
) -> dict[str, tuple[int, float, float, float]]:
    """Straight from the definitions: same-day purchases merged, first one excluded."""
    days: dict[str, dict[dt.date, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        if r["amount"] >= 0:
            day = (START + dt.timedelta(minutes=r["minutes"])).date()
            days[r["customer_id"]][day] += r["amount"]
    out = {}
    for cid, per_day in days.items():
        ordered = sorted(per_day)
        repeat = [per_day[d] for d in ordered[1:]]
        out[cid] = (
            len(repeat),
            (ordered[-1] - ordered[0]).days / unit_days,
            (AS_OF - ordered[0]).days / unit_days,
            sum(repeat) / len(repeat) if repeat else 0.0,
        )
    return out


@settings(max_examples=40, deadline=None)
@given(_orders_strategy(), st.sampled_from([("day", 1.0), ("week", 7.0), ("month", 30.4375)]))
def test_rfm_matches_definition(rows: list[dict[str, Any]], unit: tuple[str, float]) -> None:
    table = rfm_features(ibis.memtable(_table(rows)), as_of=AS_OF, time_unit=unit[0])
    got = {
        r["customer_id"]: (r["frequency"], r["recency"], r["T"], r["monetary_value"])
        for r in table.to_pyarrow().to_pylist()
    }
    expected = _oracle(rows, unit[1])
    assert got.keys() == expected.keys()
    for cid, values in expected.items():
        assert got[cid][0] == values[0]
        assert got[cid][1:] == pytest.approx(values[1:], rel=1e-9, abs=1e-9)


def _lines_and_touches(rows: list[dict[str, Any]]) -> tuple[pa.Table, pa.Table]:
    n = len(rows)
    lines = pa.table(
        {
            "order_id": [str(i) for i in range(n)],
            "product_id": [f"p{i % 3}" for i in range(n)],
            "quantity": [1.0] * n,
            "line_amount": [abs(r["amount"]) for r in rows],
            "category": [CATEGORIES[i % 2] for i in range(n)],
        }
    )
    touches = pa.table(
        {
            "customer_id": [r["customer_id"] for r in rows],
            "ts": pa.array([START] * n, pa.timestamp("us")),
            "channel": [CHANNELS[i % 2] for i in range(n)],
            "event": [["impression", "click", "open"][i % 3] for i in range(n)],
        }
    )
    return lines, touches


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_orders_strategy(), st.sampled_from(["day", "week", "month"]), st.booleans())
def test_features_identical_on_duckdb_and_polars(
    rows: list[dict[str, Any]], unit: str, per_unit: bool
) -> None:
    lines, touches = _lines_and_touches(rows)
    customers = pa.table({"customer_id": ["a", "b", "c", "d", "e", "z"]})
    tables = {
        "orders": ibis.memtable(_table(rows)),
        "order_lines": ibis.memtable(lines),
        "touchpoints": ibis.memtable(touches),
        "customers": ibis.memtable(customers),
    }
    expr = customer_features(
        tables,
        as_of=AS_OF,
        time_unit=unit,
        granularity="unit" if per_unit else "day",
        categories=CATEGORIES,
        channels=CHANNELS,
    )
    duck = sorted_rows(ibis.duckdb.connect().to_pyarrow(expr))
    polars = sorted_rows(ibis.polars.connect().to_pyarrow(expr))
    assert len(duck) == 6  # every customer, buyer or not
    assert_same_rows(polars, duck)


def test_customer_features_behaviour_columns() -> None:
    rows = [
        {"customer_id": "a", "minutes": 0, "amount": 100.0},
        {"customer_id": "a", "minutes": 3 * 24 * 60, "amount": 50.0},
        {"customer_id": "a", "minutes": 4 * 24 * 60, "amount": -30.0},
    ]
    lines, touches = _lines_and_touches(rows)
    tables = {
        "orders": ibis.memtable(_table(rows)),
        "order_lines": ibis.memtable(lines),
        "touchpoints": ibis.memtable(touches),
    }
    row = customer_features(tables, as_of=dt.date(2023, 1, 11)).to_pyarrow().to_pylist()[0]
    assert row["orders"] == 2
    assert row["gross_revenue"] == 150.0
    assert row["revenue"] == 120.0  # the return is netted
    assert row["return_rate"] == pytest.approx(30 / 150)
    assert row["average_order_value"] == 75.0
    assert row["days_since_last_order"] == 6  # last order 2023-01-05 (the return)
    assert row["tenure_days"] == 10
    # lines: 100 books, 50 home & garden, 30 books (the return's line)
    assert row["share_books"] == pytest.approx(130 / 180)
    assert row["share_home_garden"] == pytest.approx(50 / 180)
    assert (row["touches"], row["touches_email"], row["touches_paid_social"]) == (3, 2, 1)
    assert (row["engaged_email"], row["engaged_paid_social"]) == (1, 1)


def test_calibration_holdout_split() -> None:
    rows = [
        {"customer_id": "a", "minutes": 0, "amount": 10.0},
        {"customer_id": "a", "minutes": 7 * 24 * 60, "amount": 20.0},
        {"customer_id": "a", "minutes": 21 * 24 * 60, "amount": 6.0},
        {"customer_id": "a", "minutes": 22 * 24 * 60, "amount": 8.0},
        {"customer_id": "b", "minutes": 20 * 24 * 60, "amount": 5.0},  # new in holdout
        {"customer_id": "c", "minutes": 1 * 24 * 60, "amount": 5.0},
    ]
    result = calibration_holdout(
        ibis.memtable(_table(rows)),
        calibration_end=dt.date(2023, 1, 15),
        observation_end=dt.date(2023, 1, 29),
        time_unit="week",
    ).to_pyarrow()
    got = {r["customer_id"]: r for r in result.to_pylist()}
    assert set(got) == {"a", "c"}
    assert got["a"]["frequency"] == 1
    assert got["a"]["T"] == pytest.approx(2.0)
    assert got["a"]["frequency_holdout"] == 2
    assert got["a"]["monetary_value_holdout"] == pytest.approx(7.0)
    assert got["c"]["frequency_holdout"] == 0
    assert got["c"]["duration_holdout"] == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="not after calibration end"):
        calibration_holdout(
            ibis.memtable(_table(rows)),
            calibration_end=dt.date(2023, 1, 29),
            observation_end=dt.date(2023, 1, 15),
        )
