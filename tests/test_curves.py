"""Response curves: forms, adstock, fitting (segvalue.economics.curves).

Ground truth: hand-computed curve values, finite differences, parameters planted in
synthetic series and in the demo's ``channel_response`` truth table.
"""

from __future__ import annotations

import ibis
import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segvalue.data.demo import generate_demo
from segvalue.economics.curves import (
    FittedCurve,
    _CurveModel,
    fit_curves_from_channel_spend,
    fit_response_curve,
    geometric_adstock,
    hill,
    hill_inflection,
    hill_marginal,
    michaelis_menten,
    michaelis_menten_marginal,
    response_items,
)
from segvalue.errors import DataValidationError

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)


# --------------------------------------------------------------------------- forms


def test_curve_values_by_hand() -> None:
    # 1000 * 300^2 / (100^2 + 300^2) = 900; at k the response is beta / 2
    assert hill([0.0, 100.0, 300.0], 1000.0, 100.0, 2.0).tolist() == pytest.approx(
        [0.0, 500.0, 900.0], abs=1e-12
    )
    assert michaelis_menten(600.0, 1000.0, 200.0) == pytest.approx(750.0, abs=1e-12)
    assert hill(600.0, 1000.0, 200.0, 1.0) == pytest.approx(750.0, abs=1e-12)
    # derivative of MM: beta k / (k + s)^2 = 1000 * 200 / 800^2
    assert michaelis_menten_marginal(600.0, 1000.0, 200.0) == pytest.approx(0.3125, abs=1e-15)
    assert hill_marginal(600.0, 1000.0, 200.0, 1.0) == pytest.approx(0.3125, abs=1e-15)
    # at zero: beta/k for slope 1, 0 for slope > 1, infinite for slope < 1
    assert hill_marginal([0.0, 0.0, 0.0], 1000.0, 200.0, [1.0, 2.0, 0.5]).tolist() == [
        5.0,
        0.0,
        np.inf,
    ]
    # huge spend does not overflow: the response saturates at beta, the marginal vanishes
    assert hill(1e300, 10.0, 1.0, 5.0) == 10.0
    assert hill_marginal(1e300, 10.0, 1.0, 5.0) == 0.0


@PROPERTY
@given(
    st.floats(1e-2, 1e4),
    st.floats(1.0, 1e4),
    st.floats(1.0, 1e3),
    st.floats(0.3, 5.0),
)
def test_marginal_is_the_derivative(spend: float, beta: float, k: float, slope: float) -> None:
    # reference: the derivative in 40-digit arithmetic (mpmath), not rounded differences
    with mpmath.workdps(40):
        b, kk, n = mpmath.mpf(beta), mpmath.mpf(k), mpmath.mpf(slope)
        exact = mpmath.diff(lambda s: b * s**n / (kk**n + s**n), mpmath.mpf(spend))
    assert hill_marginal(spend, beta, k, slope) == pytest.approx(float(exact), rel=1e-9)


@pytest.mark.parametrize("slope", [1.5, 2.0, 3.5])
def test_inflection_is_where_the_marginal_peaks(slope: float) -> None:
    grid = np.linspace(0.0, 500.0, 500_001)
    peak = grid[np.argmax(hill_marginal(grid, 1.0, 100.0, slope))]
    assert hill_inflection(100.0, slope) == pytest.approx(peak, abs=2e-3)


def test_geometric_adstock() -> None:
    # a_t = 0.4 s_t + 0.6 a_(t-1), a_(-1) = s_0 = 100
    assert geometric_adstock([100.0, 0.0, 50.0], 0.6).tolist() == pytest.approx(
        [100.0, 60.0, 56.0], abs=1e-12
    )
    # constant spend keeps its level; an impulse spreads weights (1 - theta) theta^j summing to 1
    assert geometric_adstock(np.full(5, 7.0), 0.8) == pytest.approx(np.full(5, 7.0))
    impulse = geometric_adstock(np.r_[0.0, 1.0, np.zeros(400)], 0.7)
    assert impulse[1:4] == pytest.approx([0.3, 0.21, 0.147])
    assert impulse.sum() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(DataValidationError, match=r"theta must be in \[0, 1\)"):
        geometric_adstock([1.0], 1.0)


@pytest.mark.parametrize("loss", ["linear", "log"])
def test_analytic_jacobian_matches_finite_differences(loss: str) -> None:
    rng = np.random.default_rng(0)
    spend = rng.uniform(0.0, 500.0, 40)
    outcome = hill(geometric_adstock(spend, 0.3), 900.0, 150.0, 1.7) + 5.0
    model = _CurveModel(spend, outcome, "hill", True, loss)  # type: ignore[arg-type]
    z = model.pack(800.0, 120.0, 1.5, 0.4)
    numeric = np.empty((spend.size, z.size))
    for j in range(z.size):
        step = np.zeros_like(z)
        step[j] = 1e-6
        numeric[:, j] = (model.residuals(z + step) - model.residuals(z - step)) / 2e-6
    assert model.jacobian(z) == pytest.approx(numeric, rel=1e-5, abs=1e-6)


# --------------------------------------------------------------------------- fitting


def _covers(fit: FittedCurve, truth: dict[str, float]) -> dict[str, bool]:
    return {n: fit.intervals[n][0] <= v <= fit.intervals[n][1] for n, v in truth.items()}


def test_fit_recovers_planted_hill_with_adstock() -> None:
    rng = np.random.default_rng(5)
    spend = rng.uniform(0.0, 1000.0, 200) * (rng.random(200) < 0.7)  # bursts and pauses
    truth = {"beta": 2000.0, "k": 400.0, "slope": 2.0, "theta": 0.5}
    mean = hill(geometric_adstock(spend, 0.5), 2000.0, 400.0, 2.0)
    fit = fit_response_curve(spend, mean + rng.normal(0.0, 30.0, 200), adstock=True)
    assert all(_covers(fit, truth).values()), fit.intervals
    for name, value in truth.items():
        assert fit.params[name] == pytest.approx(value, rel=0.05)
    assert fit.r_squared > 0.99
    assert 1.5 < fit.durbin_watson < 2.5
    assert fit.warnings == ()
    assert fit.converged and fit.identified
    assert fit.predict(spend) == pytest.approx(mean, rel=0.05, abs=20.0)


def test_fit_michaelis_menten_exact_data() -> None:
    rng = np.random.default_rng(0)
    spend = rng.uniform(10.0, 800.0, 50)
    fit = fit_response_curve(spend, michaelis_menten(spend, 1000.0, 200.0), form="michaelis_menten")
    assert fit.params["beta"] == pytest.approx(1000.0, rel=1e-8)
    assert fit.params["k"] == pytest.approx(200.0, rel=1e-8)
    assert fit.params["slope"] == 1.0 and fit.names == ("beta", "k")
    assert fit.r_squared == pytest.approx(1.0, abs=1e-12)


def test_interval_coverage_by_simulation() -> None:
    """95% intervals of beta, k and slope cover the planted values in ~95% of 200 fits."""
    truth = np.array([6000.0, 1500.0, 1.4])
    covered = np.zeros(3)
    reps = 200
    for rep in range(reps):
        rng = np.random.default_rng(1000 + rep)
        spend = rng.uniform(50.0, 4000.0, 120)
        outcome = hill(spend, *truth) + rng.normal(0.0, 250.0, 120)
        fit = fit_response_curve(spend, np.maximum(outcome, 0.0))
        for i, name in enumerate(("beta", "k", "slope")):
            low, high = fit.intervals[name]
            covered[i] += low <= truth[i] <= high
    assert np.all((covered / reps >= 0.91) & (covered / reps <= 0.99)), covered / reps


def test_demo_channel_response_recovered() -> None:
    """The demo plants a Hill curve per channel (truth table ``channel_response``)."""
    demo = generate_demo(1_000, seed=7)
    curves = fit_curves_from_channel_spend(
        demo.tables["channel_spend"], form="hill", adstock=True, loss="log"
    )
    truth = demo.truth["channel_response"].to_pylist()
    assert sorted(curves) == sorted(row["channel"] for row in truth)
    for row in truth:
        fit = curves[row["channel"]]
        planted = {"beta": row["beta"], "k": row["k"], "slope": row["slope"]}
        assert all(_covers(fit, planted).values()), (row, fit.intervals)
        assert fit.params["beta"] == pytest.approx(row["beta"], rel=0.1)
        assert fit.params["k"] == pytest.approx(row["k"], rel=0.15)
        assert fit.params["slope"] == pytest.approx(row["slope"], abs=0.1)
        assert fit.params["theta"] < 0.05  # no carry-over planted
        assert fit.channel == row["channel"] and fit.segment is None
        assert fit.r_squared > 0.9
        assert fit.warnings == ()


def test_unidentified_saturation_warns() -> None:
    rng = np.random.default_rng(2)
    spend = rng.uniform(10.0, 100.0, 80)  # far below k = 1000: the curve looks linear
    outcome = hill(spend, 5000.0, 1000.0, 1.0) * rng.lognormal(0.0, 0.05, 80)
    fit = fit_response_curve(spend, outcome, form="michaelis_menten", label="tv")
    assert fit.warnings
    assert fit.warnings[0].startswith("tv: spend never reached the saturation region")
    assert "above the largest observed spend" in fit.warnings[0]
    # the initial slope beta / k is still determined
    assert fit.params["beta"] / fit.params["k"] == pytest.approx(5.0, rel=0.1)


def test_autocorrelated_residuals_warn() -> None:
    rng = np.random.default_rng(3)
    spend = rng.uniform(0.0, 1000.0, 150) * (rng.random(150) < 0.5)
    outcome = hill(geometric_adstock(spend, 0.8), 2000.0, 300.0, 1.0) + rng.normal(0, 10, 150)
    fit = fit_response_curve(spend, np.maximum(outcome, 0), form="michaelis_menten")
    assert fit.durbin_watson < 1.0
    assert any("consider adstock=True" in w for w in fit.warnings)
    with_adstock = fit_response_curve(
        spend, np.maximum(outcome, 0), form="michaelis_menten", adstock=True
    )
    assert with_adstock.params["theta"] == pytest.approx(0.8, abs=0.03)
    assert not any("autocorrelated" in w for w in with_adstock.warnings)


def test_fit_input_errors() -> None:
    with pytest.raises(DataValidationError, match="spend has 3 periods but the outcome has 2"):
        fit_response_curve([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(DataValidationError, match="spend must be >= 0"):
        fit_response_curve([-1.0] + [1.0] * 9, [1.0] * 10)
    with pytest.raises(DataValidationError, match="too few"):
        fit_response_curve([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(DataValidationError, match="> 0 for loss='log'"):
        fit_response_curve(np.arange(1.0, 11.0), np.r_[0.0, np.ones(9)], loss="log")
    with pytest.raises(DataValidationError, match=r"column\(s\) \['revenue'\] missing"):
        fit_curves_from_channel_spend({"period": [1], "channel": ["a"], "spend": [1.0]})


def test_segment_channel_curves_from_ibis_table() -> None:
    rng = np.random.default_rng(4)
    rows = []
    planted = {("young", "email"): (800.0, 100.0), ("young", "search"): (3000.0, 700.0),
               ("loyal", "email"): (1500.0, 150.0)}  # fmt: skip
    for (segment, channel), (beta, k) in planted.items():
        for week in range(52):
            spend = float(rng.uniform(0.1, 4.0) * k)
            for half in (0.4, 0.6):  # two campaign rows per week add up
                conversions = half * float(michaelis_menten(spend, beta, k))
                rows.append({"period": week, "segment": segment, "channel": channel,
                             "spend": half * spend, "conversions": conversions})  # fmt: skip
    table = ibis.memtable(rows)
    curves = fit_curves_from_channel_spend(
        table, outcome="conversions", segment="segment", form="michaelis_menten", adstock=False
    )
    assert sorted(curves) == ["loyal / email", "young / email", "young / search"]
    for (segment, channel), (beta, k) in planted.items():
        fit = curves[f"{segment} / {channel}"]
        assert (fit.segment, fit.channel) == (segment, channel)
        assert fit.params["beta"] == pytest.approx(beta, rel=1e-6)
        assert fit.params["k"] == pytest.approx(k, rel=1e-6)
    items = response_items(curves, value={"young / email": 40.0}, max_change=0.3)
    by_name = {i.name: i for i in items}
    assert by_name["young / email"].value == 40.0
    assert by_name["loyal / email"].value == 1.0
    assert by_name["young / search"].max_change == 0.3
    assert by_name["young / search"].current == pytest.approx(curves["young / search"].recent_spend)


def test_marginal_is_exact_at_the_tiniest_positive_spend() -> None:
    """The saturation share underflows at s = 5e-324; the marginal must not (it is beta / k)."""
    from segvalue.economics.curves import hill_marginal

    tiny = 5e-324
    assert float(hill_marginal(tiny, 12.0, 5.0, 1.0)) == pytest.approx(12.0 / 5.0, rel=1e-12)
    assert float(hill_marginal(tiny, 12.0, 5.0, 2.0)) >= 0.0
    assert float(hill_marginal(1e300, 12.0, 5.0, 1.0)) == pytest.approx(0.0, abs=1e-290)
