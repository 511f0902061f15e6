"""Segment KPI table: interval maths against references, coverage by simulation, the engine path.

References: Wilson bounds from Newcombe (1998), Statistics in Medicine 17, 857-872,
Table II (method 3, printed to 4 decimals); t intervals against scipy; coverage of the
95 % intervals by simulation on planted truth (issue 5 acceptance: 93 % to 97 % of 1,000
datasets); the KPI table on a hand-computed fixture and against a numpy re-implementation
of every definition; DuckDB and PostgreSQL give the same table.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from segvalue.config import KPIConfig, KPITarget, SegmentsConfig, parse_config
from segvalue.economics.intervals import (
    delta_interval,
    ratio_interval,
    t_interval,
    total_covariance,
    wilson_interval,
)
from segvalue.economics.kpis import (
    ALL_CUSTOMERS,
    kpi_status,
    resolve_kpi_scheme,
    segment_kpis,
    target_status,
)
from segvalue.errors import ConfigError, DataValidationError

T975 = {2: stats.t.ppf(0.975, 2)}

# --------------------------------------------------------------------------- interval maths


@pytest.mark.parametrize(
    ("x", "n", "lower", "upper"),
    [(81, 263, 0.2553, 0.3662), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_newcombe_1998(x: int, n: int, lower: float, upper: float) -> None:
    iv = wilson_interval(x, n)
    assert float(iv.estimate) == pytest.approx(x / n)
    assert float(iv.lower) == pytest.approx(lower, abs=5e-5)
    assert float(iv.upper) == pytest.approx(upper, abs=5e-5)
    assert float(iv.n) == n


def test_wilson_vectorised_equals_scipy() -> None:
    x = np.array([0, 1, 7, 50, 99, 100, 3])
    n = np.array([10, 10, 40, 100, 100, 100, 5])
    iv = wilson_interval(x, n, level=0.9)
    for i in range(x.size):
        ref = stats.binomtest(int(x[i]), int(n[i])).proportion_ci(0.9, method="wilson")
        assert iv.lower[i] == pytest.approx(ref.low, abs=1e-12)
        assert iv.upper[i] == pytest.approx(ref.high, abs=1e-12)
    assert iv.lower[0] == 0.0 and iv.upper[5] == 1.0


def test_wilson_of_nothing_is_undefined() -> None:
    iv = wilson_interval([0], [0])
    assert np.isnan(iv.estimate[0]) and np.isnan(iv.lower[0]) and np.isnan(iv.upper[0])
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson_interval([5], [4])


@given(
    st.integers(min_value=1, max_value=5000).flatmap(
        lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
    )
)
@settings(max_examples=200, deadline=None)
def test_wilson_bounds_are_ordered_inside_unit_interval(case: tuple[int, int]) -> None:
    x, n = case
    iv = wilson_interval(x, n)
    assert 0.0 <= iv.lower <= iv.estimate <= iv.upper <= 1.0


def test_t_interval_equals_scipy() -> None:
    rng = np.random.default_rng(1)
    samples = [rng.gamma(0.7, 50.0, size) for size in (2, 3, 17, 400)]
    iv = t_interval(
        [s.sum() for s in samples], [(s**2).sum() for s in samples], [s.size for s in samples]
    )
    for i, s in enumerate(samples):
        low, high = stats.t.interval(0.95, s.size - 1, loc=s.mean(), scale=stats.sem(s))
        assert iv.estimate[i] == pytest.approx(s.mean(), rel=1e-12)
        assert iv.lower[i] == pytest.approx(low, rel=1e-9)
        assert iv.upper[i] == pytest.approx(high, rel=1e-9)


def test_t_interval_needs_two_values() -> None:
    iv = t_interval([5.0, 0.0], [25.0, 0.0], [1, 0])
    assert iv.estimate[0] == 5.0 and np.isnan(iv.lower[0]) and np.isnan(iv.upper[0])
    assert np.isnan(iv.estimate[1])


def test_ratio_interval_by_hand() -> None:
    # Revenue (10, 50, 30) over orders (1, 3, 2): R = 15, residuals x - R y = (-5, 5, 0),
    # Var(sum of residuals) = n / (n - 1) x 50 = 75, sd(R) = sqrt(75) / 6.
    iv = ratio_interval(90.0, 6.0, 3500.0, 14.0, 220.0, 3)
    half = T975[2] * math.sqrt(75.0) / 6.0
    assert float(iv.estimate) == 15.0
    assert float(iv.lower) == pytest.approx(15.0 - half, rel=1e-12)
    assert float(iv.upper) == pytest.approx(15.0 + half, rel=1e-12)
    # The same through the general delta method.
    cov = total_covariance([3], [[90.0, 6.0]], [[[3500.0, 220.0], [220.0, 14.0]]])
    general = delta_interval([15.0], [[1 / 6.0, -15.0 / 6.0]], cov, [3])
    assert general.lower[0] == pytest.approx(float(iv.lower), rel=1e-12)


def test_ratio_with_zero_denominator_is_undefined() -> None:
    iv = ratio_interval([1.0], [0.0], [1.0], [0.0], [0.0], [4])
    assert np.isnan(iv.estimate[0]) and np.isnan(iv.lower[0])


# --------------------------------------------------------------------------- coverage


def _coverage(lower: np.ndarray, upper: np.ndarray, truth: float) -> float:
    return float(np.mean((lower <= truth) & (truth <= upper)))


@pytest.fixture(scope="module")
def simulated() -> dict[str, Any]:
    return simulate_datasets()


def simulate_datasets() -> dict[str, Any]:
    """1,000 datasets of 200 to 2,000 customers each, drawn from known distributions.

    Only the per-dataset sufficient statistics enter the interval functions, exactly as
    the engine's per-segment aggregates do (the engine path is checked separately).
    """
    # One independent stream per KPI: changing one simulation leaves the others' draws alone.
    sizes, proportion, mean, ratio, four = (
        np.random.default_rng(s) for s in np.random.SeedSequence(20251231).spawn(5)
    )
    datasets, n_max = 1000, 2000
    n = sizes.integers(200, n_max + 1, datasets)
    inside = np.arange(n_max)[None, :] < n[:, None]
    shape = (datasets, n_max)

    def total(values: np.ndarray) -> np.ndarray:
        return np.where(inside, values, 0.0).sum(axis=1)

    repeat = (proportion.random(shape) < 0.12).astype(float)  # true rate 0.12
    clv = mean.gamma(0.8, 60.0, shape)  # skewed; true mean 48
    orders = 1.0 + ratio.poisson(ratio.gamma(2.0, 1.0, shape))
    scale = ratio.gamma(4.0, 15.0, shape)
    revenue = ratio.gamma(orders * 1.2, scale)  # true revenue per order 1.2 x 60 = 72
    scored = (four.random(shape) < 0.9).astype(float)
    value = scored * four.gamma(0.8, 60.0, shape)
    buyer = (four.random(shape) < 0.7).astype(float)
    acquisition = np.where(buyer > 0, four.gamma(1.0, 10.0, shape), four.gamma(1.0, 4.0, shape))
    return {
        "n": n,
        "repeat": total(repeat),
        "clv": (total(clv), total(clv**2)),
        "aov": tuple(total(v) for v in (revenue, orders, revenue**2, orders**2, revenue * orders)),
        "clv_cac": [v * inside for v in (value, buyer, scored, acquisition)],
    }


def test_coverage_of_a_proportion(simulated: dict[str, Any]) -> None:
    iv = wilson_interval(simulated["repeat"], simulated["n"])
    assert 0.93 <= _coverage(iv.lower, iv.upper, 0.12) <= 0.97


def test_coverage_of_a_mean(simulated: dict[str, Any]) -> None:
    iv = t_interval(*simulated["clv"], simulated["n"])
    assert 0.93 <= _coverage(iv.lower, iv.upper, 48.0) <= 0.97


def test_coverage_of_a_ratio(simulated: dict[str, Any]) -> None:
    iv = ratio_interval(*simulated["aov"], simulated["n"])
    assert 0.93 <= _coverage(iv.lower, iv.upper, 72.0) <= 0.97


def test_coverage_fails_without_the_covariance_term(simulated: dict[str, Any]) -> None:
    # The test can fail: treating revenue and orders as independent (a common mistake)
    # gives far too wide intervals.
    x, y, xx, yy, _, n = (*simulated["aov"], simulated["n"])
    ratio = x / y
    var_x, var_y = (xx - x**2 / n) / (n - 1), (yy - y**2 / n) / (n - 1)
    half = 1.96 * np.sqrt(n * var_x + ratio**2 * n * var_y) / y
    assert _coverage(ratio - half, ratio + half, 72.0) > 0.99


def test_coverage_of_clv_to_cac(simulated: dict[str, Any]) -> None:
    # clv_cac = (sum v / sum scored) / (sum acquisition / sum buyers): four totals.
    values = simulated["clv_cac"]
    sums = np.stack([v.sum(axis=1) for v in values], axis=-1)
    cross = np.einsum("dci,dcj->dij", np.stack(values, -1), np.stack(values, -1))
    v, b, h, a = sums.T
    estimate = v * b / (h * a)
    gradient = np.stack([b / (h * a), v / (h * a), -estimate / h, -estimate / a], axis=-1)
    n = simulated["n"]
    iv = delta_interval(estimate, gradient, total_covariance(n, sums, cross), n)
    truth = 48.0 / ((0.7 * 10.0 + 0.3 * 4.0) / 0.7)
    assert 0.93 <= _coverage(iv.lower, iv.upper, truth) <= 0.97


# --------------------------------------------------------------------------- the engine path

AS_OF = dt.date(2024, 12, 31)


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


FEATURES = pa.table(
    {
        "customer_id": ["a", "b", "c", "d", "e"],
        "orders": [1, 3, 2, 0, 4],
        "revenue": [10.0, 50.0, 30.0, 0.0, 80.0],
        "first_purchase": pa.array(
            [
                dt.date(2024, 11, 10),
                dt.date(2024, 6, 1),
                dt.date(2024, 9, 1),
                None,
                dt.date(2024, 3, 1),
            ]
        ),
        "churn_risk": [0.5, 0.2, 0.4, None, 0.1],
        "clv": [20.0, 100.0, 40.0, None, 150.0],
        "clv_lower": [15.0, 80.0, 30.0, None, 120.0],
        "clv_upper": [25.0, 120.0, 50.0, None, 180.0],
    }
)
MEMBERS = pa.table(
    {
        "customer_id": ["a", "b", "c", "d", "e", "a", "b", "c", "d", "e"],
        "scheme": ["s"] * 5 + ["other"] * 5,
        "segment": ["x", "x", "x", "y", "y", "p", "q", "q", "q", "q"],
    }
)
# Retention windows (30 days): previous 2024-11-02..12-01, latest 2024-12-02..12-31.
ORDERS = pa.table(
    {
        "order_id": [str(i) for i in range(11)],
        "customer_id": ["a", "b", "b", "b", "c", "c", "e", "e", "e", "e", "e"],
        "order_ts": pa.array(
            [
                _ts(t)
                for t in (
                    "2024-11-10",
                    "2024-06-01",
                    "2024-11-20",
                    "2024-12-10",
                    "2024-09-01",
                    "2024-12-15",
                    "2024-03-01",
                    "2024-11-05",
                    "2024-12-20",
                    "2024-12-28",
                    "2024-12-29",
                )
            ],
            pa.timestamp("us"),
        ),
        "amount": [10.0, 20.0, 15.0, 15.0, 10.0, 20.0, 20.0, 20.0, 30.0, 20.0, -10.0],
        "margin": [3.0, 5.0, 4.0, 4.0, 2.0, 6.0, 5.0, 5.0, 9.0, 6.0, -3.0],
    }
)
TOUCHPOINTS = pa.table(
    {
        "customer_id": ["a", "a", "a", "b", "d", "e"],
        "ts": pa.array(
            [
                _ts(t)
                for t in (
                    "2024-11-01",
                    "2024-11-10 18:00",
                    "2024-12-01",
                    "2024-05-01",
                    "2024-12-01",
                    "2024-12-05",
                )
            ],
            pa.timestamp("us"),
        ),
        "channel": ["email", "email", "social", "social", "email", "social"],
        "event": ["impression", "conversion", "click", "impression", "click", "conversion"],
        "cost": [1.0, 0.5, 2.0, 3.0, 4.0, 1.0],
    }
)
SPEND = pa.table(
    {
        "period": [dt.date(2024, 12, 2)] * 4,
        "channel": ["email", "social", "email", "email"],
        "spend": [10.0, 20.0, 100.0, 7.0],
        "segment": ["x", "y", None, "z"],  # no segment / unknown segment: not attributed
    }
)


def _kpis(con: Any, create: Any = None, **kwargs: Any) -> pa.Table:
    create = create or (lambda name, data: con.create_table(name, data, overwrite=True))
    tables = {
        name: create(name, data)
        for name, data in (
            ("kpi_features", FEATURES),
            ("kpi_members", MEMBERS),
            ("kpi_orders", ORDERS),
            ("kpi_touchpoints", TOUCHPOINTS),
            ("kpi_spend", SPEND),
        )
    }
    return segment_kpis(
        tables["kpi_members"],
        tables["kpi_features"],
        orders=tables["kpi_orders"],
        touchpoints=tables["kpi_touchpoints"],
        channel_spend=tables["kpi_spend"],
        config=KPIConfig(retention_days=30),
        scheme="s",
        as_of=AS_OF,
        **kwargs,
    )


@pytest.fixture(scope="module")
def fixture_kpis() -> pa.Table:
    return _kpis(ibis.duckdb.connect())


def _row(table: pa.Table, segment: str) -> dict[str, Any]:
    rows = [r for r in table.to_pylist() if r["segment"] == segment]
    assert len(rows) == 1
    return rows[0]


def test_kpi_table_rows_and_order(fixture_kpis: pa.Table) -> None:
    assert fixture_kpis.column("segment").to_pylist() == [ALL_CUSTOMERS, "x", "y"]
    assert set(fixture_kpis.column("scheme").to_pylist()) == {"s"}
    meta = json.loads(fixture_kpis.schema.metadata[b"segvalue.kpis"])
    assert meta["retention_windows"] == {
        "previous": "2024-11-02 to 2024-12-01",
        "latest": "2024-12-02 to 2024-12-31",
    }
    assert meta["sources"]["margin"] == "orders.margin"
    assert meta["channels"] == ["email", "social"]


def test_kpi_counts_and_totals_by_hand(fixture_kpis: pa.Table) -> None:
    x, y, everyone = (_row(fixture_kpis, s) for s in ("x", "y", ALL_CUSTOMERS))
    assert (x["customers"], y["customers"], everyone["customers"]) == (3, 2, 5)
    assert (x["revenue"], y["revenue"], everyone["revenue"]) == (90.0, 80.0, 170.0)
    assert (x["orders"], y["orders"], everyone["orders"]) == (6, 4, 10)
    assert (x["buyers"], y["buyers"], everyone["buyers"]) == (3, 1, 4)
    # Order margins: a 3, b 13, c 8, e 22 (the return's -3 included).
    assert (x["margin"], y["margin"], everyone["margin"]) == (24.0, 22.0, 46.0)
    # Touch cost a 3.5, b 3, d 4, e 1; segment spend x 10, y 20 (null / unknown: left out).
    assert x["marketing_cost"] == pytest.approx(16.5)
    assert y["marketing_cost"] == pytest.approx(25.0)
    assert everyone["marketing_cost"] == pytest.approx(41.5)
    low = wilson_interval(3, 5)
    assert (x["share"], x["share_lower"], x["share_upper"], x["share_n"]) == (
        0.6,
        pytest.approx(float(low.lower)),
        pytest.approx(float(low.upper)),
        5,
    )
    assert (everyone["share"], everyone["share_lower"], everyone["share_upper"]) == (1, 1, 1)


def test_kpi_rates_by_hand(fixture_kpis: pa.Table) -> None:
    x, y, everyone = (_row(fixture_kpis, s) for s in ("x", "y", ALL_CUSTOMERS))
    # AOV x: (10 + 50 + 30) / (1 + 3 + 2) with the ratio interval of the docstring.
    half = T975[2] * math.sqrt(75.0) / 6.0
    assert x["average_order_value"] == 15.0
    assert x["average_order_value_lower"] == pytest.approx(15.0 - half)
    assert x["average_order_value_n"] == 3
    assert (y["average_order_value"], everyone["average_order_value"]) == (20.0, 17.0)
    # Purchase frequency x: orders (1, 3, 2), mean 2, s = 1.
    assert x["purchase_frequency"] == 2.0
    assert x["purchase_frequency_upper"] == pytest.approx(2.0 + T975[2] / math.sqrt(3))
    assert y["purchase_frequency"] == 4.0 and y["purchase_frequency_lower"] is None
    # Repeat rate: buyers with 2+ orders: x {b, c} of 3, all {b, c, e} of 4.
    assert (x["repeat_rate"], x["repeat_rate_n"]) == (pytest.approx(2 / 3), 3)
    assert (everyone["repeat_rate"], everyone["repeat_rate_n"]) == (0.75, 4)
    # Retention: previous-window buyers a, b (x) and e (y); of those b and e bought again.
    assert (x["retention_rate"], x["retention_rate_n"]) == (0.5, 2)
    assert (y["retention_rate"], y["retention_rate_n"]) == (1.0, 1)
    assert (everyone["retention_rate"], everyone["retention_rate_n"]) == (
        pytest.approx(2 / 3),
        3,
    )
    # Conversion: touched x {a, b}, converted {a}; email x 1 of 1, social x 0 of 2.
    assert (x["conversion_rate"], x["conversion_rate_n"]) == (0.5, 2)
    assert (x["conversion_rate_email"], x["conversion_rate_social"]) == (1.0, 0.0)
    assert (everyone["conversion_rate_email_n"], everyone["conversion_rate_social_n"]) == (2, 3)
    assert everyone["conversion_rate_social"] == pytest.approx(1 / 3)


def test_kpi_clv_and_cost_ratios_by_hand(fixture_kpis: pa.Table) -> None:
    x, y, everyone = (_row(fixture_kpis, s) for s in ("x", "y", ALL_CUSTOMERS))
    assert x["churn_risk"] == pytest.approx(1.1 / 3) and x["churn_risk_n"] == 3
    assert everyone["churn_risk"] == pytest.approx(0.3) and everyone["churn_risk_n"] == 4
    assert x["clv_mean"] == pytest.approx(160 / 3)
    assert (x["clv_total"], x["clv_total_lower"], x["clv_total_upper"]) == (160.0, 125.0, 195.0)
    assert everyone["clv_total"] == 310.0 and everyone["clv_mean"] == 77.5
    assert x["clv_at_risk"] == pytest.approx((10 + 20 + 16) / 3)
    # Acquisition cost (touches up to the first purchase day): a 1.5, b 3, d 4 (never bought).
    assert x["cac"] == pytest.approx(4.5 / 3) and x["cac_n"] == 3
    assert y["cac"] == pytest.approx(4.0) and everyone["cac"] == pytest.approx(8.5 / 4)
    # CAC x: residuals a - 1.5 b = (0, 1.5, -1.5): Var = 3 / 2 x 4.5, sd = sqrt(6.75) / 3.
    half = T975[2] * math.sqrt(6.75) / 3.0
    assert x["cac_lower"] == pytest.approx(1.5 - half)
    assert x["clv_cac"] == pytest.approx((160 / 3) / 1.5)
    assert y["clv_cac"] == pytest.approx(150 / 4)
    assert x["roi"] == pytest.approx((24 - 16.5) / 16.5)
    assert y["roi"] == pytest.approx((22 - 25) / 25)
    assert everyone["roi"] == pytest.approx((46 - 41.5) / 41.5)
    assert x["roi_lower"] < x["roi"] < x["roi_upper"]


def test_margin_rate_when_orders_have_no_margin() -> None:
    con = ibis.duckdb.connect()
    orders = ORDERS.drop_columns(["margin"])
    table = segment_kpis(
        ibis.memtable(MEMBERS),
        con.create_table("f", FEATURES),
        orders=con.create_table("o", orders),
        scheme="s",
        as_of=AS_OF,
        margin_rate=0.3,
    )
    assert _row(table, "x")["margin"] == pytest.approx(27.0)
    assert _row(table, "x")["roi"] is None  # no marketing cost
    assert json.loads(table.schema.metadata[b"segvalue.kpis"])["sources"]["margin"] == (
        "0.3 x revenue"
    )


def test_minimal_inputs_give_null_kpis_not_errors() -> None:
    features = FEATURES.select(["customer_id", "orders", "revenue"])
    table = segment_kpis(ibis.memtable(MEMBERS), ibis.memtable(features), scheme="other")
    assert table.column("segment").to_pylist() == [ALL_CUSTOMERS, "q", "p"]
    row = _row(table, "q")
    assert row["customers"] == 4 and row["revenue"] == 160.0
    for kpi in ("retention_rate", "churn_risk", "clv_mean", "cac", "roi", "conversion_rate"):
        assert row[kpi] is None, kpi
    assert "conversion_rate_email" not in table.column_names


def test_several_schemes_at_once() -> None:
    both = segment_kpis(ibis.memtable(MEMBERS), ibis.memtable(FEATURES), scheme=["s", "other"])
    assert both.column("segment").to_pylist() == [ALL_CUSTOMERS, "x", "y", ALL_CUSTOMERS, "q", "p"]


def test_scheme_errors() -> None:
    with pytest.raises(ConfigError, match="2 schemes and none is named"):
        segment_kpis(ibis.memtable(MEMBERS), ibis.memtable(FEATURES))
    with pytest.raises(ConfigError, match=r"'sx' is not a scheme .*did you mean 's'"):
        segment_kpis(ibis.memtable(MEMBERS), ibis.memtable(FEATURES), scheme="sx")
    with pytest.raises(DataValidationError, match="'revenue' is not in the customer features"):
        segment_kpis(ibis.memtable(MEMBERS), ibis.memtable(FEATURES.drop_columns(["revenue"])))
    clash = MEMBERS.set_column(2, "segment", pa.array([ALL_CUSTOMERS] * 10))
    with pytest.raises(DataValidationError, match="named 'all customers'"):
        segment_kpis(ibis.memtable(clash), ibis.memtable(FEATURES), scheme="s")


def test_resolve_kpi_scheme() -> None:
    segments = parse_config(
        {
            "sources": {"orders": {"path": "o.csv"}},
            "segments": {
                "schemes": [
                    {
                        "name": "tags",
                        "type": "psychographic",
                        "mode": "tags",
                        "rules": [{"segment": "g", "when": {"field": "x", "value": 1}}],
                    },
                    {"type": "rfm"},
                ]
            },
        }
    ).segments
    assert resolve_kpi_scheme(KPIConfig(), segments) == "rfm"
    assert resolve_kpi_scheme(KPIConfig(scheme="tags"), segments) == "tags"
    with pytest.raises(ConfigError, match=r"kpis.scheme.*did you mean 'rfm'"):
        resolve_kpi_scheme(KPIConfig(scheme="rfn"), segments)
    with pytest.raises(ConfigError, match="no exclusive"):
        resolve_kpi_scheme(KPIConfig(), SegmentsConfig(schemes=segments.schemes[:1]))


def _numpy_kpis(
    features: dict[str, np.ndarray],
    segment: np.ndarray,
    orders: dict[str, np.ndarray],
    touches: dict[str, np.ndarray],
    as_of: dt.date,
    days: int,
) -> dict[str, dict[str, float]]:
    """Every KPI definition again, customer by customer in numpy, then the pure intervals."""
    ids = features["customer_id"]
    index = {c: i for i, c in enumerate(ids)}
    n = ids.size
    end = np.datetime64(as_of + dt.timedelta(days=1))
    latest, previous = end - np.timedelta64(days, "D"), end - np.timedelta64(2 * days, "D")
    who = np.array([index[c] for c in orders["customer_id"]])
    ts, amount = orders["order_ts"], orders["amount"]
    margin, prev, last = np.zeros(n), np.zeros(n), np.zeros(n)
    np.add.at(margin, who, orders["margin"])
    buy = amount >= 0
    np.maximum.at(prev, who, (buy & (ts >= previous) & (ts < latest)).astype(float))
    np.maximum.at(last, who, (buy & (ts >= latest) & (ts < end)).astype(float))
    tw = np.array([index[c] for c in touches["customer_id"]])
    first = features["first_purchase"]
    day = touches["ts"].astype("datetime64[D]")
    acq_touch = np.isnat(first[tw]) | (day <= first[tw])
    cost, acq, touched, converted = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    np.add.at(cost, tw, touches["cost"])
    np.add.at(acq, tw, np.where(acq_touch, touches["cost"], 0.0))
    np.maximum.at(touched, tw, 1.0)
    np.maximum.at(converted, tw, (touches["event"] == "conversion").astype(float))
    o, r = features["orders"].astype(float), features["revenue"]
    clv, churn = features["clv"], features["churn_risk"]
    out: dict[str, dict[str, float]] = {}
    for name in [*np.unique(segment), ALL_CUSTOMERS]:
        m = np.ones(n, bool) if name == ALL_CUSTOMERS else segment == name
        b = m & (o >= 1)
        s = m & ~np.isnan(clv)
        aov = ratio_interval(
            r[m].sum(), o[m].sum(), (r[m] ** 2).sum(), (o[m] ** 2).sum(), (r[m] * o[m]).sum(),
            b.sum(),
        )  # fmt: skip
        pf = t_interval(o[b].sum(), (o[b] ** 2).sum(), b.sum())
        v = np.where(s, clv, 0.0)
        k = [v[m], b[m].astype(float), s[m].astype(float), acq[m]]
        sums = np.array([[x.sum() for x in k]])
        cross = np.array([[[(x * y).sum() for y in k] for x in k]])
        V, B, H, A = sums[0]
        est = V * B / (H * A)
        grad = np.array([[B / (H * A), V / (H * A), -est / H, -est / A]])
        clv_cac = delta_interval([est], grad, total_covariance([m.sum()], sums, cross), [B],
                                 df_n=[m.sum()])  # fmt: skip
        kept = wilson_interval((prev * last)[m].sum(), prev[m].sum())
        out[str(name)] = {
            "customers": m.sum(),
            "revenue": r[m].sum(),
            "margin": margin[m].sum(),
            "marketing_cost": cost[m].sum(),
            "average_order_value": aov.estimate,
            "average_order_value_lower": aov.lower,
            "purchase_frequency_upper": pf.upper,
            "repeat_rate_lower": wilson_interval((m & (o >= 2)).sum(), b.sum()).lower,
            "retention_rate": kept.estimate,
            "retention_rate_upper": kept.upper,
            "churn_risk_lower": t_interval(churn[s].sum(), (churn[s] ** 2).sum(), s.sum()).lower,
            "clv_mean_upper": t_interval(clv[s].sum(), (clv[s] ** 2).sum(), s.sum()).upper,
            "cac": acq[m].sum() / b.sum(),
            "clv_cac_lower": clv_cac.lower[0],
            "conversion_rate_upper": wilson_interval(converted[m].sum(), touched[m].sum()).upper,
        }
    return out


def test_engine_path_equals_pure_path() -> None:
    rng = np.random.default_rng(7)
    n = 600
    ids = np.array([f"c{i:04d}" for i in range(n)])
    orders_per = rng.poisson(2.0, n)
    orders_per[:40] = 0  # prospects
    start = np.datetime64("2023-01-01")
    who = np.repeat(np.arange(n), orders_per)
    order_ts = (start + rng.integers(0, 730 * 24, who.size).astype("timedelta64[h]")).astype(
        "datetime64[s]"
    )
    amount = np.round(rng.gamma(2.0, 30.0, who.size), 2)
    amount[rng.random(who.size) < 0.05] *= -1  # returns (not purchases)
    margin = np.round(amount * rng.uniform(0.1, 0.5, who.size), 2)
    purchases = np.zeros(n)
    np.add.at(purchases, who, (amount >= 0).astype(float))
    revenue = np.zeros(n)
    np.add.at(revenue, who, amount)
    first = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    for i in np.unique(who[amount >= 0]):
        first[i] = order_ts[(who == i) & (amount >= 0)].min().astype("datetime64[D]")
    scored = purchases > 0
    clv = np.where(scored, rng.gamma(0.8, 60.0, n), np.nan)
    churn = np.where(scored, rng.uniform(0, 1, n), np.nan)
    segment = np.array(["north", "south", "east"])[rng.integers(0, 3, n)]
    t_who = rng.integers(0, n, 1500)
    touches = {
        "customer_id": ids[t_who],
        "ts": (start + rng.integers(0, 730 * 24, t_who.size).astype("timedelta64[h]")).astype(
            "datetime64[s]"
        ),
        "channel": np.array(["email", "social"])[rng.integers(0, 2, t_who.size)],
        "event": np.array(["impression", "click", "conversion"])[rng.integers(0, 3, t_who.size)],
        "cost": np.round(rng.gamma(1.0, 0.5, t_who.size), 3),
    }
    features = {
        "customer_id": ids,
        "orders": purchases.astype(np.int64),
        "revenue": revenue,
        "first_purchase": first,
        "clv": clv,
        "churn_risk": churn,
    }
    orders = {
        "order_id": np.arange(who.size).astype(str),
        "customer_id": ids[who],
        "order_ts": order_ts,
        "amount": amount,
        "margin": margin,
    }

    def table(columns: dict[str, np.ndarray]) -> pa.Table:
        arrays = {}
        for k, v in columns.items():
            mask = np.isnat(v) if v.dtype.kind == "M" else None
            if v.dtype.kind == "f":
                mask = np.isnan(v)
            arrays[k] = pa.array(v, mask=mask)
        return pa.table(arrays)

    con = ibis.duckdb.connect()
    kpis = segment_kpis(
        pa.table({"customer_id": ids, "segment": segment}),
        con.create_table("f", table(features)),
        orders=con.create_table("o", table(orders)),
        touchpoints=con.create_table("t", table(touches)),
        config=KPIConfig(retention_days=60),
        as_of=dt.date(2024, 12, 31),
    )
    expected = _numpy_kpis(features, segment, orders, touches, dt.date(2024, 12, 31), 60)
    assert pc.sum(kpis.column("customers")).as_py() == 2 * n
    for row in kpis.to_pylist():
        for key, value in expected[row["segment"]].items():
            assert row[key] == pytest.approx(float(value), rel=1e-9), (row["segment"], key)


def test_engine_on_demo_data_against_planted_shares() -> None:
    from segvalue.data.demo import generate_demo
    from segvalue.features.customer import customer_features

    demo = generate_demo(3000, seed=5)
    con = ibis.duckdb.connect()
    tables = {k: con.create_table(k, demo.tables[k]) for k in ("orders", "touchpoints")}
    tables["customers"] = con.create_table("customers", demo.tables["customers"])
    features = customer_features(tables, as_of=demo.as_of)
    truth = demo.truth["customers"].select(["customer_id", "persona"])
    kpis = segment_kpis(
        truth.rename_columns(["customer_id", "segment"]),
        features,
        orders=tables["orders"],
        touchpoints=tables["touchpoints"],
        scheme="segments",
        as_of=demo.as_of,
    )
    planted = dict(
        zip(
            demo.truth["personas"].column("persona").to_pylist(),
            demo.truth["personas"].column("share").to_pylist(),
            strict=True,
        )
    )
    rows = [r for r in kpis.to_pylist() if r["segment"] != ALL_CUSTOMERS]
    everyone = kpis.to_pylist()[0]
    assert everyone["customers"] == 3000
    covered = [r["share_lower"] <= planted[r["segment"]] <= r["share_upper"] for r in rows]
    assert len(rows) == 6 and sum(covered) >= 5
    # Segments add up to the whole base (an exclusive scheme).
    for name in ("customers", "orders", "buyers"):
        assert sum(r[name] for r in rows) == everyone[name]
    for name in ("revenue", "margin", "marketing_cost"):
        assert sum(r[name] for r in rows) == pytest.approx(everyone[name], rel=1e-12)
    assert everyone["marketing_cost"] == pytest.approx(
        pc.sum(demo.tables["touchpoints"].column("cost")).as_py(), rel=1e-9
    )
    # Planted BG/NBD: affluent loyalists buy fastest (r / alpha = 0.17 a week) and drop out
    # least (E[p] = 0.07); occasional gifters buy slowest (0.03 a week).
    frequency = {r["segment"]: r["purchase_frequency"] for r in rows}
    ranked = sorted(frequency, key=frequency.__getitem__)
    assert (ranked[0], ranked[-1]) == ("Occasional gifters", "Affluent loyalists")


def test_same_kpis_on_postgres(postgres_url: str, fixture_kpis: pa.Table) -> None:
    con = ibis.connect(postgres_url)
    try:
        on_postgres = _kpis(con)
    finally:
        for name in ("kpi_features", "kpi_members", "kpi_orders", "kpi_touchpoints", "kpi_spend"):
            con.drop_table(name, force=True)
        con.disconnect()
    assert on_postgres.column_names == fixture_kpis.column_names
    for left, right in zip(on_postgres.to_pylist(), fixture_kpis.to_pylist(), strict=True):
        for key, value in right.items():
            if isinstance(value, float):
                assert left[key] == pytest.approx(value, rel=1e-12), key
            else:
                assert left[key] == value, key


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize(
    ("estimate", "lower", "upper", "target", "direction", "expected"),
    [
        (0.32, 0.30, 0.34, 0.30, "at_least", "on_track"),  # lower bound exactly on target
        (0.31, 0.2999, 0.34, 0.30, "at_least", "at_risk"),
        (0.28, 0.27, 0.285, 0.30, "at_least", "at_risk"),  # misses by exactly the band
        (0.28, 0.27, 0.2849, 0.30, "at_least", "off_track"),
        (40.0, 38.0, 40.0, 40.0, "at_most", "on_track"),  # upper bound exactly on target
        (42.0, 42.0, 44.0, 40.0, "at_most", "at_risk"),  # above by exactly the band
        (43.0, 42.01, 44.0, 40.0, "at_most", "off_track"),
        (-0.1, -0.12, -0.08, -0.05, "at_least", "off_track"),  # band on |target|
        (0.3, None, None, 0.2, "at_least", "at_risk"),  # no interval: cannot be sure
        (None, None, None, 0.2, "at_least", "no_data"),
    ],
)
def test_target_status_edges(
    estimate: float | None,
    lower: float | None,
    upper: float | None,
    target: float,
    direction: Any,
    expected: str,
) -> None:
    assert target_status(estimate, lower, upper, target, direction, 0.05) == expected


def test_kpi_status_scopes_and_totals(fixture_kpis: pa.Table) -> None:
    targets = [
        KPITarget(kpi="repeat_rate", target=0.6),
        KPITarget(kpi="revenue", target=85.0, segment="x"),
        KPITarget(kpi="cac", target=1.0, direction="at_most", scheme="s", segment="y"),
        KPITarget(kpi="roi", target=0.0, scheme="elsewhere"),  # another scheme: skipped
    ]
    rows = kpi_status(fixture_kpis, targets).to_pylist()
    got = [(r["segment"], r["kpi"], r["status"]) for r in rows]
    # repeat rate: all 0.75 of 4, x 2/3 of 3, y 1/1 -- Wilson intervals all reach below 0.6.
    assert got == [
        (ALL_CUSTOMERS, "repeat_rate", "at_risk"),
        ("x", "repeat_rate", "at_risk"),
        ("y", "repeat_rate", "at_risk"),
        ("x", "revenue", "on_track"),  # an observed total of 90: exact
        ("y", "cac", "at_risk"),  # 4 but n = 2 customers: no interval
    ]
    revenue = rows[3]
    assert (revenue["estimate"], revenue["lower"], revenue["upper"], revenue["n"]) == (
        90.0,
        90.0,
        90.0,
        3,
    )
    assert rows[0]["n"] == 4 and rows[0]["target"] == 0.6


def test_kpi_status_missing_kpi_and_unknown_segment(fixture_kpis: pa.Table) -> None:
    small = fixture_kpis.select(["scheme", "segment", "customers"])
    rows = kpi_status(small, [KPITarget(kpi="roi", target=0.1, segment="x")]).to_pylist()
    assert [(r["segment"], r["status"]) for r in rows] == [("x", "no_data")]
    with pytest.raises(ConfigError, match=r"targets\[0\].segment.*did you mean 'x'"):
        kpi_status(fixture_kpis, [KPITarget(kpi="roi", target=0.1, segment="xx")])


@pytest.mark.slow
def test_same_kpis_on_spark(spark: Any, fixture_kpis: pa.Table) -> None:
    from segvalue.data.readers import connect

    con = connect(spark)

    def create(name: str, data: pa.Table) -> Any:
        # From Python rows: through pandas, Spark would turn a null double into NaN.
        spark.createDataFrame(data.to_pylist()).createOrReplaceTempView(name)
        return con.table(name)

    on_spark = _kpis(con, create)
    assert on_spark.column_names == fixture_kpis.column_names
    for left, right in zip(on_spark.to_pylist(), fixture_kpis.to_pylist(), strict=True):
        for key, value in right.items():
            if isinstance(value, float):
                assert left[key] == pytest.approx(value, rel=1e-12), key
            else:
                assert left[key] == value, key


def test_intervals_of_non_negative_kpis_stay_in_their_support() -> None:
    """A two-customer segment with CLVs 0 and 10: the t interval reaches below 0."""
    from segvalue.economics.kpis import NON_NEGATIVE, _put

    raw = t_interval(np.array([10.0]), np.array([100.0]), np.array([2.0]))
    assert raw.lower[0] < 0 < raw.upper[0]  # the case the clipping is for
    columns: dict[str, Any] = {}
    _put(columns, "clv_mean", raw, 1, support=NON_NEGATIVE)
    _put(columns, "churn_risk", t_interval([1.9], [1.81], [2.0]), 1, support=(0.0, 1.0))
    assert columns["clv_mean_lower"][0] == 0.0
    assert columns["clv_mean_upper"][0] == raw.upper[0]
    assert 0.0 <= columns["churn_risk_lower"][0] <= columns["churn_risk_upper"][0] == 1.0
