"""sBG retention model: published values, brute-force checks, properties, input errors.

References
----------
FH 2007: Fader & Hardie (2007), "How to Project Customer Retention", Journal of
Interactive Marketing 21(1), Table 1: customers active at the start of years 0-7 of a
1,000-customer cohort, "Regular" 1000, 631, 468, 382, 326, 289, 262, 241 and "High End"
1000, 869, 743, 653, 593, 551, 517, 491. Fitted on those first seven years (eq. 7):
Regular (alpha, beta) = (0.704, 1.182), High End (0.668, 3.806), printed to 3 decimals.
FH 2010: Fader & Hardie (2010), "Customer-Base Valuation in a Contractual Setting: The
Perils of Ignoring Heterogeneity", Marketing Science 29(1), eq. 6 (DERL), checked here
against an explicit sum, numerical integration and simulation.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from segvalue.errors import DataValidationError, NotFittedError
from segvalue.models import _sbg_math as sbg
from segvalue.models.base import model_from_json
from segvalue.models.sbg import ShiftedBetaGeometricModel

REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]


@pytest.fixture(scope="module")
def regular() -> ShiftedBetaGeometricModel:
    return ShiftedBetaGeometricModel().fit(REGULAR)


# --- published values -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("counts", "alpha", "beta"), [(REGULAR, 0.704, 1.182), (HIGH_END, 0.668, 3.806)]
)
def test_parameters_match_fh_2007(counts: list[int], alpha: float, beta: float) -> None:
    model = ShiftedBetaGeometricModel().fit(counts)
    assert model.params_["alpha"] == pytest.approx(alpha, abs=0.0005)
    assert model.params_["beta"] == pytest.approx(beta, abs=0.0005)
    assert model.converged_
    assert model.n_customers_ == 1000


# --- brute force ----------------------------------------------------------------------
@pytest.mark.parametrize("renewals", [0, 1, 5, 30])
@pytest.mark.parametrize("rate", [0.01, 0.1, 1.0])
def test_derl_equals_sum_and_integral(renewals: int, rate: float) -> None:
    """FH 2010 eq. (6) against (a) the discounted sum of S(r+1+k)/S(r) over 6,000 periods
    and (b) the posterior integral of (1-theta)(1+d)/(d+theta), theta ~ Beta(alpha, beta+r)."""
    params = (0.668, 3.806)
    derl = float(sbg.discounted_expected_residual_lifetime(params, renewals, rate))
    k = np.arange(6000)
    ratio = sbg.survival(params, renewals + 1 + k) / sbg.survival(params, renewals)
    tail = (1 + rate) ** -6000 / (1 - 1 / (1 + rate))  # terms left out, each < v^k
    assert derl == pytest.approx(float(ratio @ (1 + rate) ** -k), rel=1e-9, abs=tail)
    posterior = stats.beta(params[0], params[1] + renewals)
    integral, _ = integrate.quad(
        lambda th: (1 - th) * (1 + rate) / (rate + th) * posterior.pdf(th), 0, 1, limit=200
    )
    assert derl == pytest.approx(integral, rel=1e-7)


def test_derl_matches_simulated_customers() -> None:
    """400,000 simulated customers (seed 3): among those who made r renewals, the mean
    discounted number of further payments is within 4 standard errors of DERL."""
    alpha, beta, rate = 0.704, 1.182, 0.1
    rng = np.random.default_rng(3)
    theta = rng.beta(alpha, beta, 400_000)
    churn = rng.geometric(theta)  # T: the period in which the customer churns
    v = 1 / (1 + rate)
    for renewals in (0, 2, 6):
        alive = churn > renewals
        paid = np.maximum(churn[alive] - renewals - 1, 0)  # further payments
        value = (1 - v**paid) / (1 - v)  # payment k (k = 0, 1, ...) discounted by v^k
        se = value.std() / np.sqrt(value.size)
        expected = float(sbg.discounted_expected_residual_lifetime((alpha, beta), renewals, rate))
        assert abs(value.mean() - expected) <= 4 * se, renewals


def test_derl_without_heterogeneity_is_the_geometric_value() -> None:
    """With theta almost fixed (alpha, beta large) DERL = (1-theta)(1+d)/(d+theta)."""
    theta, rate = 0.2, 0.1
    params = (theta * 1e7, (1 - theta) * 1e7)
    derl = sbg.discounted_expected_residual_lifetime(params, [0, 10], rate)
    np.testing.assert_allclose(derl, (1 - theta) * (1 + rate) / (rate + theta), rtol=1e-5)


def test_expected_lifetime_is_the_sum_of_survival() -> None:
    params = (3.5, 2.0)
    total = sbg.survival(params, np.arange(200_000)).sum()
    assert sbg.expected_lifetime(params) == pytest.approx(total, rel=1e-6)
    assert sbg.expected_lifetime((0.704, 1.182)) == np.inf


@pytest.mark.slow
def test_parameters_recovered_from_simulated_cohort() -> None:
    """A simulated cohort of 1,000,000 followed for 8 periods (seed 21): both true
    parameters lie in their 95% intervals, and the intervals are informative."""
    truth = (0.9, 2.5)
    rng = np.random.default_rng(21)
    churn = rng.geometric(rng.beta(*truth, 1_000_000))
    counts = [(churn > k).sum() for k in range(9)]
    model = ShiftedBetaGeometricModel().fit(counts)
    for name, true in zip(model.param_names, truth, strict=True):
        lower, upper = model.confidence_intervals_[name]
        assert lower <= true <= upper, (name, lower, true, upper)
        assert upper - lower < true, name


# --- properties -----------------------------------------------------------------------
positive = st.floats(0.05, 50.0)


@st.composite
def survival_curves(draw: st.DrawFn) -> list[int]:
    """A non-increasing curve of 2-12 counts starting from 1-5,000 customers."""
    counts = [draw(st.integers(1, 5000))]
    for _ in range(draw(st.integers(1, 11))):
        counts.append(draw(st.integers(0, counts[-1])))
    return counts


@settings(max_examples=80, deadline=None)
@given(params=st.tuples(positive, positive), curve=survival_curves())
def test_gradient_matches_central_differences(
    params: tuple[float, float], curve: list[int]
) -> None:
    counts = np.array(curve, dtype=float)
    k = np.arange(1, counts.size)
    data = {
        "t": np.concatenate([k, [counts.size - 1]]).astype(float),
        "censored": np.concatenate([np.zeros(k.size), [1.0]]),
        "weights": np.concatenate([counts[:-1] - counts[1:], counts[-1:]]),
    }
    model = ShiftedBetaGeometricModel()
    log_params = np.log(params)
    _, grad = model._negative_loglik(log_params, data)
    step = 1e-6
    numeric = np.empty(2)
    for j in range(2):
        up, down = log_params.copy(), log_params.copy()
        up[j] += step
        down[j] -= step
        numeric[j] = (
            model._negative_loglik(up, data)[0] - model._negative_loglik(down, data)[0]
        ) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-4)


@settings(max_examples=80, deadline=None)
@given(params=st.tuples(positive, positive), horizon=st.integers(1, 200))
def test_survival_decreases_and_retention_rises(params: tuple[float, float], horizon: int) -> None:
    t = np.arange(horizon + 1)
    s = sbg.survival(params, t)
    assert s[0] == pytest.approx(1.0)
    assert np.all(np.diff(s) < 0) and np.all(s > 0)
    r = sbg.retention_rate(params, t[1:])
    assert np.all((r > 0) & (r < 1)) and np.all(np.diff(r) > 0)
    np.testing.assert_allclose(s[1:] / s[:-1], r, rtol=1e-9)
    churn = sbg.churn_probability(params, t[1:])
    assert churn.sum() + s[-1] == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    params=st.tuples(positive, positive),
    renewals=st.integers(0, 100),
    rate=st.floats(0.001, 2.0),
    step=st.floats(0.001, 2.0),
)
def test_derl_falls_with_discount_rate_and_rises_with_renewals(
    params: tuple[float, float], renewals: int, rate: float, step: float
) -> None:
    derl = sbg.discounted_expected_residual_lifetime
    base = float(derl(params, renewals, rate))
    assert np.isfinite(base) and base > 0
    assert float(derl(params, renewals, rate + step)) <= base * (1 + 1e-12)
    assert float(derl(params, renewals + 1, rate)) >= base * (1 - 1e-12)


# --- estimation contract --------------------------------------------------------------
def test_cohorts_add_up() -> None:
    """Two cohorts fit like their sum (the likelihood is additive), and a weight of 2 like
    the cohort twice."""
    first = [600, 380, 280, 230, 195]
    second = [400, 251, 188, 152, 131]
    total = [a + b for a, b in zip(first, second, strict=True)]
    split = ShiftedBetaGeometricModel().fit([first, second])
    summed = ShiftedBetaGeometricModel().fit(total)
    assert split.loglik_ == pytest.approx(summed.loglik_, rel=1e-12)
    assert split.params_ == pytest.approx(summed.params_, rel=1e-7)
    twice = ShiftedBetaGeometricModel().fit([first, first])
    weighted = ShiftedBetaGeometricModel().fit([first], weights=[2])
    assert weighted.loglik_ == pytest.approx(twice.loglik_, rel=1e-12)
    assert weighted.n_customers_ == 1200


def test_cohorts_of_different_lengths() -> None:
    """An older cohort and a younger one (shorter curve) both inform the fit."""
    model = ShiftedBetaGeometricModel().fit([REGULAR, REGULAR[:4]])
    assert model.n_customers_ == 2000
    assert model.params_["alpha"] == pytest.approx(0.7, abs=0.05)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.survival([1, 2]),
        lambda m: m.retention_rate(1),
        lambda m: m.churn_probability(1),
        lambda m: m.expected_lifetime(),
        lambda m: m.discounted_expected_residual_lifetime(0, 0.1),
        lambda m: m.to_json(),
    ],
)
def test_predictions_before_fit_raise_not_fitted(call: Any) -> None:
    with pytest.raises(NotFittedError, match="ShiftedBetaGeometricModel"):
        call(ShiftedBetaGeometricModel())


def test_json_round_trip(regular: ShiftedBetaGeometricModel) -> None:
    text = regular.to_json()
    assert json.loads(text)["type"] == "ShiftedBetaGeometricModel"
    loaded = model_from_json(text)
    assert isinstance(loaded, ShiftedBetaGeometricModel)
    assert loaded.params_ == regular.params_
    np.testing.assert_array_equal(
        loaded.discounted_expected_residual_lifetime([0, 3], 0.1),
        regular.discounted_expected_residual_lifetime([0, 3], 0.1),
    )


@pytest.mark.parametrize(
    ("active", "weights", "message"),
    [
        ([1000, 631, 700], None, "period 2: 700 active is more than the 631 active at period 1"),
        ([1000, -5, 0], None, "period 1: active count -5 is missing or negative"),
        ([1000, 631, np.nan], None, "period 2: active count nan is missing or negative"),
        ([0, 0, 0], None, "period 0: no customers active"),
        ([[1000, 631, 468], [500, 600]], None, "cohort 1, period 1: 600 active is more"),
        ([[1000, 631, 468], [500]], None, "cohort 1 has 1 count"),
        ([1000, 631], None, "only one period of churn"),
        ([1000, 1000, 1000], None, "no customer churned"),
        ([1000, 0, 0], None, "every customer churned in period 1"),
        ([1000, 631, 468], [1, 1], "weights has 2 values for 1 cohorts"),
        ([[1000, 631, 468], [500, 300]], [1, -1], "cohort 1: weight -1 is not a number >= 0"),
        ("1000, 631", None, "neither a list of counts nor a list of such lists"),
        ([[1000, 631], 5], None, "neither a list of counts nor a list of such lists"),
    ],
)
def test_bad_input_names_period_and_fix(active: Any, weights: Any, message: str) -> None:
    with pytest.raises(DataValidationError, match=message) as info:
        ShiftedBetaGeometricModel().fit(active, weights=weights)
    assert "Fix: " in str(info.value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.survival([-1]), "periods -1 is not a whole number >= 0"),
        (lambda m: m.retention_rate([1, 0]), "periods 0 is not a whole number >= 1"),
        (lambda m: m.churn_probability(1.5), "periods 1.5 is not a whole number >= 1"),
        (
            lambda m: m.discounted_expected_residual_lifetime(0.5, 0.1),
            "renewals_so_far 0.5 is not a whole number",
        ),
        (
            lambda m: m.discounted_expected_residual_lifetime(1, -0.2),
            "discount_rate -0.2 is not a number >= 0",
        ),
    ],
)
def test_bad_prediction_input_raises(
    regular: ShiftedBetaGeometricModel, call: Any, message: str
) -> None:
    with pytest.raises(DataValidationError, match=message):
        call(regular)
