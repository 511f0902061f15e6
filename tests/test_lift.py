"""Lift against a control group: published intervals, coverage in simulation, the demo
experiment's planted per-persona effects, p-value adjustments and the CLI.

References: Newcombe (1998), "Interval estimation for the difference between independent
proportions: comparison of eleven methods", Statistics in Medicine 17, 873-890, Table II
(method 10, the hybrid score interval); Welch's interval as scipy.stats.ttest_ind
(equal_var=False) computes it; Holm (1979); Benjamini and Hochberg (1995).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from segvalue.errors import DataValidationError
from segvalue.measurement.lift import (
    adjust_p_values,
    lift_table,
    newcombe_interval,
    welch_interval,
)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((56, 70, 48, 80), (0.0524, 0.3339)),  # Newcombe's example (a)
        ((9, 10, 3, 10), (0.1705, 0.8090)),  # example (b)
        ((5, 56, 0, 29), (-0.0381, 0.1926)),  # example (d): a zero count
    ],
)
def test_newcombe_intervals_are_the_published_ones(
    counts: tuple[int, int, int, int], expected: tuple[float, float]
) -> None:
    _, low, high = newcombe_interval(*counts)
    assert (round(low, 4), round(high, 4)) == expected


@settings(max_examples=40, deadline=None)
@given(
    a=st.lists(st.integers(-1000, 1000), min_size=2, max_size=30, unique=True),
    b=st.lists(st.integers(-1000, 1000), min_size=2, max_size=30, unique=True),
)
def test_welch_is_scipys_welch(a: list[int], b: list[int]) -> None:
    diff, low, high, p = welch_interval(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-9)
    assert diff == pytest.approx(np.mean(a) - np.mean(b), abs=1e-9)


def test_intervals_cover_the_truth_at_the_nominal_rate() -> None:
    """1,000 simulated experiments each: 95 % intervals cover the true lift in 93-97 %."""
    rng = np.random.default_rng(2026)
    runs = 1000
    covered_means = covered_props = 0
    for _ in range(runs):
        treated = rng.normal(12.0, 6.0, 40)  # unequal sizes and spreads: Welch's case
        control = rng.normal(10.0, 2.0, 25)
        _, low, high, _ = welch_interval(treated, control)
        covered_means += low <= 2.0 <= high
        x1, x2 = rng.binomial(300, 0.12), rng.binomial(200, 0.08)
        _, low, high = newcombe_interval(x1, 300, x2, 200)
        covered_props += low <= 0.04 <= high
    assert 0.93 <= covered_means / runs <= 0.97
    assert 0.93 <= covered_props / runs <= 0.97


def test_the_demo_experiments_planted_persona_effects_lie_in_their_intervals() -> None:
    from segvalue.data.demo import generate_demo

    demo = generate_demo(40_000, seed=42)
    experiment = demo.tables["experiments"].to_pylist()
    truth = {r["customer_id"]: r for r in demo.truth["customers"].to_pylist()}
    rows = [r for r in experiment if r["group"] in ("treatment", "control")]
    personas = [truth[r["customer_id"]]["persona"] for r in rows]
    found = lift_table(
        [r["group"] for r in rows],
        {"converted": [float(r["converted"]) for r in rows]},
        control="control",
        segments=personas,
    )
    by_persona = {r["segment"]: r for r in found if r["segment"] is not None}
    assert len(by_persona) == 6
    for persona, result in by_persona.items():
        planted = np.mean(
            [
                truth[r["customer_id"]]["true_uplift"]
                for r in rows
                if truth[r["customer_id"]]["persona"] == persona
            ]
        )
        assert result["ci_low"] <= planted <= result["ci_high"], (persona, planted, result)
    # The planted effects differ: the largest persona effect is found significant.
    strongest = max(by_persona.values(), key=lambda r: r["lift"])
    assert strongest["p_adjusted"] < 0.05 and not strongest["under_powered"]


def test_adjusted_p_values_keep_their_order_and_bounds() -> None:
    raw = [0.001, 0.2, 0.03, 0.04, 0.5]
    holm = adjust_p_values(raw, "holm")
    bh = adjust_p_values(raw, "bh")
    assert holm == pytest.approx([0.005, 0.4, 0.12, 0.12, 0.5])
    assert bh == pytest.approx([0.005, 0.25, 0.0666667, 0.0666667, 0.5], rel=1e-5)
    assert all(b <= h for b, h in zip(bh, holm, strict=True))
    assert adjust_p_values(raw, "none") == raw
    with pytest.raises(DataValidationError, match="unknown p-value adjustment"):
        adjust_p_values(raw, "sidak")


def test_lift_table_rows_and_errors() -> None:
    groups = ["t"] * 6 + ["c"] * 6
    spend = [10.0, 12.0, 9.0, 14.0, 11.0, 13.0, 8.0, 9.0, 10.0, 7.0, 9.0, 8.0]
    rows = lift_table(groups, {"spend": spend}, control="c", segments=["a", "b"] * 6)
    assert [r["segment"] for r in rows] == [None, "a", "b"]
    overall = rows[0]
    assert overall["lift"] == pytest.approx(np.mean(spend[:6]) - np.mean(spend[6:]))
    assert overall["rel_lift"] == pytest.approx(overall["lift"] / np.mean(spend[6:]))
    assert rows[1]["p_adjusted"] >= rows[1]["p_value"]
    with pytest.raises(DataValidationError, match="no row is in the control group 'x'"):
        lift_table(groups, {"spend": spend}, control="x")
    with pytest.raises(DataValidationError, match="one finite number per row"):
        lift_table(groups, {"spend": [*spend[:-1], float("nan")]}, control="c")


# ---------------------------------------------------------------------------- CLI
EXPERIMENT = (
    "group,converted,spend,segment\n"
    + "".join(
        f"offer,{'true' if i % 3 else 'false'},{20 + i % 7},{'ab'[i % 2]}\n" for i in range(60)
    )
    + "".join(
        f"none,{'true' if i % 4 == 0 else 'false'},{15 + i % 5},{'ab'[i % 2]}\n" for i in range(60)
    )
)


def test_lift_prints_each_test_and_json_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segvalue.cli.main import cli

    file = tmp_path / "experiment.csv"
    file.write_text(EXPERIMENT)
    args = ["lift", str(file), "--group-col", "group", "--control", "none"]
    assert cli([*args, "--outcome", "converted", "--outcome", "spend", "--by", "segment"]) == 0
    shown = capsys.readouterr().out
    assert "offer against none, converted, everyone" in shown
    assert "offer against none, spend, segment = a" in shown
    assert "treated 0.6667 (n 60), control 0.25 (n 60)" in shown
    assert cli([*args, "--outcome", "converted", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    keys = "arm outcome segment n_treated n_control treated_mean control_mean lift ci_low ci_high"
    assert set(keys.split()) | {"rel_lift", "p_value", "p_adjusted"} <= set(record)
    assert record["lift"] == pytest.approx(2 / 3 - 1 / 4)
    assert record["ci_low"] < record["lift"] < record["ci_high"]


def test_lift_refuses_a_bad_outcome_naming_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segvalue.cli.main import cli

    file = tmp_path / "experiment.csv"
    file.write_text(EXPERIMENT.replace("offer,true,21", "offer,maybe,21", 1))
    args = ["lift", str(file), "--group-col", "group", "--control", "none"]
    assert cli([*args, "--outcome", "converted"]) == 2
    said = capsys.readouterr().err
    assert "line 3" in said and "'converted' holds 'maybe'" in said and "fix:" in said
    assert cli([*args, "--outcome", "clicks"]) == 2
    assert "no column 'clicks'" in capsys.readouterr().err


def test_incremental_outcome_and_campaign_roi(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Incremental = lift x treated, its interval scaled alike; ROI = (incremental x
    margin - cost) / cost with a cost per treated contact."""
    from segvalue.cli.main import cli
    from segvalue.measurement.lift import campaign_roi

    rows = lift_table(["t"] * 4 + ["c"] * 4, {"spend": [5, 7, 6, 9, 4, 5, 3, 4]}, control="c")
    (row,) = rows
    assert row["incremental"] == pytest.approx(row["lift"] * 4)
    assert row["incremental_ci"] == pytest.approx([row["ci_low"] * 4, row["ci_high"] * 4])
    roi = campaign_roi(row, contact_cost=1.0, margin=0.5)
    assert roi["cost"] == 4.0
    assert roi["roi"] == pytest.approx((row["incremental"] * 0.5 - 4) / 4)
    assert roi["roi_low"] < roi["roi"] < roi["roi_high"]
    file = tmp_path / "experiment.csv"
    file.write_text(EXPERIMENT)
    args = ["lift", str(file), "--group-col", "group", "--control", "none"]
    assert cli([*args, "--outcome", "spend", "--contact-cost", "0.5", "--margin", "0.4"]) == 0
    shown = capsys.readouterr().out
    assert "incremental +" in shown and "over 60 treated" in shown and "ROI " in shown
    assert cli([*args, "--outcome", "spend", "--contact-cost", "0.5", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["roi"]["cost"] == pytest.approx(30.0)
    assert cli([*args, "--outcome", "converted", "--contact-cost", "0.5", "--json"]) == 0
    assert "roi" not in json.loads(capsys.readouterr().out)[0]  # conversions are not money


@settings(max_examples=50, deadline=None)
@given(
    effect=st.floats(0.01, 5.0),
    sd=st.floats(0.1, 20.0),
    share=st.floats(0.1, 0.9),
    power=st.floats(0.5, 0.95),
)
def test_a_planned_test_detects_its_effect_at_its_power(
    effect: float, sd: float, share: float, power: float
) -> None:
    """The size planned for an effect makes that effect the test's minimum detectable
    one (the sizes rounded up: just below it)."""
    from segvalue.measurement.lift import minimum_detectable_effect, sample_size

    n = sample_size(effect, sd=sd, treated_share=share, power=power)
    assert n["n_total"] == n["n_treated"] + n["n_control"]
    found = minimum_detectable_effect(n["n_treated"], n["n_control"], sd=sd, power=power)
    assert found <= effect * (1 + 1e-12)
    if min(n["n_treated"], n["n_control"]) > 2:  # fewer subjects: a larger detectable effect
        smaller = minimum_detectable_effect(
            n["n_treated"] - 2, n["n_control"] - 2, sd=sd, power=power
        )
        assert smaller > found


def test_sample_sizes_for_proportions_as_the_usual_calculators_give() -> None:
    """10 % against 12 %, 80 % power, 5 % two-sided, equal groups: 3,839 per group (the
    normal approximation, e.g. Chow, Shao and Wang, Sample Size Calculations in Clinical
    Research, 2nd ed., 4.2)."""
    from segvalue.measurement.lift import sample_size

    assert sample_size(0.02, baseline=0.10)["n_treated"] == 3839
    uneven = sample_size(0.02, baseline=0.10, treated_share=0.8)
    assert uneven["n_treated"] == pytest.approx(4 * uneven["n_control"], rel=1e-3)
    with pytest.raises(DataValidationError, match="exactly one of"):
        sample_size(0.02)
