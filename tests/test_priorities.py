"""Segment priorities and CLV-tied budget guidance, on constructed KPI tables (hand-computed)."""

from __future__ import annotations

from typing import Any

import ibis
import pyarrow as pa
import pytest

from segvalue.economics.kpis import ALL_CUSTOMERS, segment_kpis
from segvalue.economics.priorities import budget_guidance, segment_priorities
from segvalue.errors import ConfigError, DataValidationError


def _kpis(**extra: list[Any]) -> pa.Table:
    """Three segments: a small valuable one, a mid one, a large cheap one with low CLV."""
    columns: dict[str, list[Any]] = {
        "scheme": ["s"] * 4,
        "segment": [ALL_CUSTOMERS, "vip", "regulars", "occasional"],
        "customers": [1000, 100, 400, 500],
        "share": [1.0, 0.1, 0.4, 0.5],
        "clv_mean": [31.0, 120.0, 40.0, 6.0],
        "clv_mean_lower": [29.0, 110.0, 37.0, 5.0],
        "clv_mean_upper": [33.0, 130.0, 43.0, 7.0],
        "clv_mean_n": [1000, 100, 400, 500],
        "clv_total": [31000.0, 12000.0, 16000.0, 3000.0],
        "cac": [20.0, 30.0, 15.0, 20.0],
        "cac_lower": [18.0, 25.0, 14.0, 2.0],
        "cac_upper": [22.0, 35.0, 16.0, 40.0],
        "churn_risk": [0.3, 0.1, 0.2, 0.6],
    }
    columns.update(extra)
    return pa.table(columns)


def _by_segment(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {r["segment"]: r for r in table.to_pylist()}


def test_priority_scores_by_hand() -> None:
    rows = _by_segment(segment_priorities(_kpis()))
    # value = (total / 16000 + mean / 120) / 2; growth = n x (120 - mean), relative to
    # 500 x 114 = 57000; cost = 15 / cac. Weights 0.4 / 0.2 / 0.2 (no lift given).
    value = {
        "vip": (12 / 16 + 1) / 2,
        "regulars": (1 + 40 / 120) / 2,
        "occasional": (3 / 16 + 6 / 120) / 2,
    }
    growth = {"vip": 0.0, "regulars": 32000 / 57000, "occasional": 1.0}
    cost = {"vip": 0.5, "regulars": 1.0, "occasional": 0.75}
    for name, row in rows.items():
        expected = 100 * (0.4 * value[name] + 0.2 * growth[name] + 0.2 * cost[name]) / 0.8
        assert row["score"] == pytest.approx(expected), name
        assert row["value_score"] == pytest.approx(value[name])
        assert row["growth_potential"] == pytest.approx(
            {"vip": 0, "regulars": 32000, "occasional": 57000}[name]
        )
        assert row["responsiveness_score"] is None
    assert [rows[s]["rank"] for s in ("regulars", "vip", "occasional")] == [1, 2, 3]
    assert rows["vip"]["value_index"] == pytest.approx(100 * 120 / 31)
    assert rows["vip"]["cost_index"] == pytest.approx(150.0)


def test_priority_reasons_in_words() -> None:
    rows = _by_segment(segment_priorities(_kpis()))
    assert rows["vip"]["reasons"] == (
        "high CLV (index 387), holds 39% of total CLV, small base (10% of customers), "
        "high cost per customer (CAC index 150)"
    )
    assert rows["occasional"]["reasons"] == (
        "low CLV (index 19), large base (50% of customers), growth potential 57.0k if its "
        "CLV reached the best segment's (120), high churn risk (60%)"
    )
    assert "low cost per customer (CAC index 75)" in rows["regulars"]["reasons"]


def test_measured_lift_moves_a_responsive_segment_up() -> None:
    lift = {"occasional": (0.08, 0.03, 0.13), "vip": (0.01, -0.02, 0.04)}
    rows = _by_segment(segment_priorities(_kpis(), lift=lift))
    assert rows["occasional"]["rank"] == 2 and rows["vip"]["rank"] == 3
    assert rows["occasional"]["responsiveness_score"] == 1.0
    assert rows["vip"]["responsiveness_score"] == pytest.approx(0.125)
    assert rows["regulars"]["responsiveness_score"] == 0.5  # not measured: neutral
    assert "measured lift +0.01 (interval -0.02 to 0.04, not significant)" in rows["vip"]["reasons"]
    assert "measured lift +0.08 (interval 0.03 to 0.13)" in rows["occasional"]["reasons"]


def test_weights_change_the_order_and_are_checked() -> None:
    only_value = segment_priorities(_kpis(), weights={"growth": 0, "cost": 0})
    assert only_value.column("segment").to_pylist() == ["vip", "regulars", "occasional"]
    with pytest.raises(ConfigError, match="unknown priority weight 'valeu'"):
        segment_priorities(_kpis(), weights={"valeu": 1.0})
    with pytest.raises(ConfigError, match="negative"):
        segment_priorities(_kpis(), weights={"cost": -1.0})
    with pytest.raises(DataValidationError, match="'customers'"):
        segment_priorities(pa.table({"scheme": ["s"], "segment": ["x"]}))


def test_priorities_without_clv_use_revenue() -> None:
    table = pa.table(
        {
            "scheme": ["s"] * 3,
            "segment": [ALL_CUSTOMERS, "a", "b"],
            "customers": [300, 100, 200],
            "share": [1.0, 1 / 3, 2 / 3],
            "revenue": [9000.0, 6000.0, 3000.0],
            "marketing_cost": [600.0, 100.0, 500.0],
        }
    )
    rows = _by_segment(segment_priorities(table))
    assert rows["a"]["value_basis"] == "revenue" and rows["a"]["value_mean"] == 60.0
    assert rows["a"]["rank"] == 1
    assert rows["b"]["growth_potential"] == pytest.approx(200 * (60 - 15))
    assert rows["a"]["cac"] == 1.0 and rows["a"]["cost_score"] == 1.0  # cost per customer
    assert rows["b"]["cost_score"] == pytest.approx(1.0 / 2.5)
    assert "high revenue per customer (index 200)" in rows["a"]["reasons"]


def test_priorities_from_the_engine_table() -> None:
    features = pa.table(
        {
            "customer_id": [f"c{i}" for i in range(6)],
            "orders": [1, 2, 5, 4, 1, 0],
            "revenue": [10.0, 30.0, 200.0, 160.0, 20.0, 0.0],
            "clv": [5.0, 10.0, 90.0, 70.0, 4.0, None],
        }
    )
    members = pa.table({"customer_id": features.column("customer_id"), "segment": list("llhhlp")})
    kpis = segment_kpis(ibis.memtable(members), ibis.memtable(features))
    rows = segment_priorities(kpis).to_pylist()
    assert [r["segment"] for r in rows] == ["h", "l", "p"]
    assert rows[2]["value_total"] is None and rows[2]["reasons"] == (
        "small base (17% of customers)"
    )


# --------------------------------------------------------------------------- budget guidance


def test_max_cac_by_hand() -> None:
    # CLV over 52 weeks, payback 26 weeks, CLV:CAC of 3 kept: max CAC = CLV x 0.5 / 3.
    guidance = budget_guidance(_kpis(), horizon=52, payback=26, min_clv_cac=3)
    rows = _by_segment(guidance.table)
    assert rows["vip"]["max_cac"] == pytest.approx(20.0)
    assert rows["vip"]["max_cac_lower"] == pytest.approx(110 / 6)
    assert rows["vip"]["max_cac_upper"] == pytest.approx(130 / 6)
    assert rows["vip"]["cac_headroom"] == pytest.approx(-10.0)
    assert rows["vip"]["acquisition_status"] == "above"  # CAC 25..35 > 20
    assert rows["regulars"]["max_cac"] == pytest.approx(40 / 6)
    assert rows["regulars"]["acquisition_status"] == "above"
    assert rows[ALL_CUSTOMERS]["payback_share"] == 0.5
    within = _by_segment(budget_guidance(_kpis(), horizon=52).table)
    assert within["vip"]["max_cac"] == 120.0 and within["vip"]["acquisition_status"] == "within"
    # Occasional: max 6, CAC interval 2..40 straddles it.
    assert within["occasional"]["acquisition_status"] == "uncertain"


def test_margin_and_payback_beyond_horizon() -> None:
    rows = _by_segment(budget_guidance(_kpis(), horizon=52, payback=104, margin=0.4).table)
    assert rows["vip"]["max_cac"] == pytest.approx(0.4 * 120)  # no value beyond the horizon
    assumptions = budget_guidance(_kpis(), horizon=52, payback=104, margin=0.4).assumptions
    assert "no value beyond the CLV horizon" in assumptions[1]
    assert "40% is profit" in assumptions[0]


def test_retention_ceiling_by_hand() -> None:
    # Without clv_at_risk: churn risk x mean CLV; save rate 0.2.
    rows = _by_segment(budget_guidance(_kpis(), horizon=52, save_rate=0.2).table)
    assert rows["occasional"]["value_at_risk"] == pytest.approx(0.6 * 6.0)
    assert rows["occasional"]["retention_ceiling"] == pytest.approx(0.2 * 3.6)
    assert rows["occasional"]["retention_budget"] == pytest.approx(0.2 * 3.6 * 500)
    # With the per-customer mean of churn risk x CLV, that is used instead.
    at_risk = _kpis(clv_at_risk=[5.0, 8.0, 6.0, 2.0])
    rows = _by_segment(budget_guidance(at_risk, horizon=52, save_rate={"vip": 0.5}).table)
    assert rows["vip"]["retention_ceiling"] == pytest.approx(4.0)
    assert rows["regulars"]["save_rate"] is None and rows["regulars"]["retention_ceiling"] is None


def test_guidance_errors_and_dict() -> None:
    with pytest.raises(ConfigError, match="horizon must be a positive number"):
        budget_guidance(_kpis(), horizon=0)
    with pytest.raises(ConfigError, match="save_rate must be between 0 and 1"):
        budget_guidance(_kpis(), horizon=52, save_rate=1.5)
    with pytest.raises(DataValidationError, match="clv_mean"):
        budget_guidance(_kpis().drop_columns(["clv_mean"]), horizon=52)
    out = budget_guidance(_kpis(), horizon=52).to_dict()
    assert len(out["segments"]) == 4 and len(out["assumptions"]) == 5
    assert out["segments"][1]["segment"] == "vip"
