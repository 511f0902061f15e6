"""BG/BB model: published values, brute-force checks, properties and input errors.

References
----------
FHS 2010: Fader, Hardie & Shang (2010), "Customer-Base Analysis in a Discrete-Time
Noncontractual Setting", Marketing Science 29(6). Donations data (11,104 donors, 6
opportunities 1996-2001): (alpha, beta, gamma, delta) = (1.204, 0.750, 0.657, 2.783),
LL = -33225.6; Table 6, P(alive in 2002): 0.11 for (x, t_x) = (0, 0), 0.59 for (2, 4),
0.93 for (6, 6) (also quoted by the lifetimes test suite).
Hardie's BG/BB spreadsheet accompanying the paper (brucehardie.com/notes/010,
BGBB_2011-01-20.xlsx), as quoted by the lifetimes and pymc-marketing test suites:
E[X(n)] for n = 1..11 ("Tracking Plot" B7:B17), the in-sample counts of donors with 0 and
6 repeat donations (3454.9 and 1253.1) and the total conditional expectation for the next
5 years (12884.2).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segvalue.errors import (
    ConvergenceError,
    ConvergenceWarning,
    DataValidationError,
    NotFittedError,
)
from segvalue.models import _bgbb_math as bgbb
from segvalue.models.base import model_from_json
from segvalue.models.bgbb import BetaGeoBetaBinomModel
from segvalue.valuation import fit_warnings

DONATIONS = Path(__file__).parent / "data" / "donations.csv"
PUBLISHED = {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}
DONATION_PARAMS = tuple(PUBLISHED.values())


@pytest.fixture(scope="module")
def donations() -> dict[str, np.ndarray]:
    table = np.loadtxt(DONATIONS, delimiter=",", skiprows=1)
    return {"x": table[:, 0], "t_x": table[:, 1], "n": table[:, 2], "weights": table[:, 3]}


@pytest.fixture(scope="module")
def model(donations: dict[str, np.ndarray]) -> BetaGeoBetaBinomModel:
    d = donations
    return BetaGeoBetaBinomModel().fit(d["x"], d["t_x"], d["n"], weights=d["weights"])


def simulate(
    params: tuple[float, ...], customers: int, periods: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw (p, theta) per customer and the transaction matrix of periods 1..periods.

    Returns the transactions (customers x periods, bool), the alive matrix and p.
    """
    alpha, beta, gamma, delta = params
    rng = np.random.default_rng(seed)
    p = rng.beta(alpha, beta, customers)
    theta = rng.beta(gamma, delta, customers)
    alive_periods = rng.geometric(theta) - 1  # P(L = l) = theta (1 - theta)^l, l >= 0
    t = np.arange(1, periods + 1)
    alive = t[None, :] <= alive_periods[:, None]
    buys = alive & (rng.random((customers, periods)) < p[:, None])
    return buys, alive, p


def summarise(buys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, t_x) over the first n periods."""
    x = buys[:, :n].sum(axis=1)
    t = np.arange(1, n + 1)
    t_x = np.where(buys[:, :n], t[None, :], 0).max(axis=1)
    return x, t_x


# --- published values -----------------------------------------------------------------
def test_donations_parameters_and_loglik_match_fhs_2010(model: BetaGeoBetaBinomModel) -> None:
    """FHS 2010: estimates printed to 3 decimals, LL to 1 decimal."""
    for name, value in PUBLISHED.items():
        assert model.params_[name] == pytest.approx(value, abs=0.0005), name
    assert model.loglik_ == pytest.approx(-33225.6, abs=0.05)
    assert model.converged_
    assert model.n_customers_ == 11104


def test_probability_alive_matches_fhs_2010_table_6(model: BetaGeoBetaBinomModel) -> None:
    """FHS 2010 Table 6, P(alive in 2002), printed to 2 decimals."""
    p = model.probability_alive([0, 2, 6], [0, 4, 6], 6)
    np.testing.assert_allclose(p, [0.11, 0.59, 0.93], atol=0.005)


def test_tracking_curve_matches_hardie_spreadsheet(model: BetaGeoBetaBinomModel) -> None:
    """E[X(n)], n = 1..11, printed to 4 decimals (Hardie's spreadsheet, 'Tracking Plot')."""
    published = [
        0.4985,
        0.9233,
        1.2969,
        1.6323,
        1.9381,
        2.2202,
        2.4826,
        2.7285,
        2.9603,
        3.1798,
        3.3887,
    ]
    np.testing.assert_allclose(
        model.expected_purchases_new(np.arange(1, 12)), published, atol=0.00005
    )


def test_calibration_histogram_matches_hardie_spreadsheet(model: BetaGeoBetaBinomModel) -> None:
    """Expected donors with 0 and 6 repeat donations of 11,104, printed to 1 decimal."""
    expected = 11104 * model.probability_of_purchases_new([0, 6], 6)
    np.testing.assert_allclose(expected, [3454.9, 1253.1], atol=0.05)


def test_conditional_expectation_total_matches_hardie_spreadsheet(
    model: BetaGeoBetaBinomModel, donations: dict[str, np.ndarray]
) -> None:
    """Sum over donors of E[X(6, 6 + 5) | history], printed to 1 decimal."""
    d = donations
    total = model.expected_purchases(d["x"], d["t_x"], d["n"], horizon=5) @ d["weights"]
    assert total == pytest.approx(12884.2, abs=0.05)


# --- brute force ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulated() -> dict[str, Any]:
    """200,000 donors with the FHS 2010 parameters over 6 + 100 periods, seed 7."""
    n, future = 6, 100
    chunks = [simulate(DONATION_PARAMS, 20_000, n + future, seed) for seed in range(7, 17)]
    buys = np.concatenate([c[0] for c in chunks])
    alive = np.concatenate([c[1] for c in chunks])
    x, t_x = summarise(buys, n)
    discount = 1.1 ** -np.arange(1, future + 1)
    return {
        "n": n,
        "x": x,
        "t_x": t_x,
        "cumulative": np.cumsum(buys, axis=1),
        "next5": buys[:, n : n + 5].sum(axis=1),
        "alive_next": alive[:, n],
        "dert": buys[:, n:] @ discount,
    }


def test_histogram_and_tracking_curve_match_simulation(
    simulated: dict[str, Any],
) -> None:
    """P(X(6) = x) and E[X(t)] against 200,000 simulated donors, within 4 standard errors."""
    count = simulated["x"].size
    share = np.bincount(simulated["x"], minlength=7) / count
    p = bgbb.probability_of_purchases_new(DONATION_PARAMS, np.arange(7), 6)
    assert np.all(np.abs(share - p) <= 4 * np.sqrt(p * (1 - p) / count))
    cumulative = simulated["cumulative"][:, :11]
    mean, se = cumulative.mean(axis=0), cumulative.std(axis=0) / np.sqrt(count)
    expected = bgbb.expected_purchases_new(DONATION_PARAMS, np.arange(1, 12))
    assert np.all(np.abs(mean - expected) <= 4 * se)


@pytest.mark.parametrize("quantity", ["alive_next", "next5", "dert"])
def test_conditional_predictions_match_simulation(simulated: dict[str, Any], quantity: str) -> None:
    """Per (x, t_x) pattern with >= 1,000 simulated donors: the mean of the simulated
    quantity is within 4 standard errors of the prediction (DERT: plus the 7.3e-4
    truncation of the simulation at 100 future periods)."""
    x, t_x, n = simulated["x"], simulated["t_x"], simulated["n"]
    values = simulated[quantity].astype(float)
    patterns, inverse, counts = np.unique(
        np.column_stack([x, t_x]), axis=0, return_inverse=True, return_counts=True
    )
    inverse = inverse.ravel()
    mean = np.bincount(inverse, weights=values) / counts
    var = np.bincount(inverse, weights=values**2) / counts - mean**2
    se = np.sqrt(var / counts)
    px, pt = patterns[:, 0], patterns[:, 1]
    if quantity == "alive_next":
        predicted, slack = bgbb.probability_alive(DONATION_PARAMS, px, pt, n), 0.0
    elif quantity == "next5":
        predicted, slack = bgbb.expected_purchases(DONATION_PARAMS, px, pt, n, 5), 0.0
    else:
        predicted = bgbb.discounted_expected_purchases(DONATION_PARAMS, px, pt, n, 0.1)
        slack = 1.1**-100 / 0.1
    big = counts >= 1000
    assert big.sum() >= 15
    assert np.all(np.abs(mean - predicted)[big] <= 4 * se[big] + slack)


@settings(max_examples=60, deadline=None)
@given(
    b=st.floats(0.01, 5000),
    g=st.floats(0.01, 30),
    d=st.floats(1e-4, 10),
)
def test_hyp2f1_matches_mpmath(b: float, g: float, d: float) -> None:
    """The positive-series 2F1(1, b; b + g; 1/(1+d)) against mpmath at 30 digits."""
    mpmath.mp.dps = 30
    expected = float(mpmath.hyp2f1(1, b, b + g, 1 / (1 + mpmath.mpf(d))))
    assert float(bgbb.hyp2f1_a1(b, b + g, 1 / (1 + d))) == pytest.approx(expected, rel=1e-11)


def test_hyp2f1_at_one_uses_gauss_theorem() -> None:
    """2F1(1, b; c; 1) = (c - 1)/(c - b - 1) when c - b > 1, else it diverges."""
    np.testing.assert_allclose(bgbb.hyp2f1_a1([2.0, 2.0], [5.0, 2.5], 1.0), [2.0, np.inf])


def test_dert_is_the_limit_of_the_finite_horizon_sum(model: BetaGeoBetaBinomModel) -> None:
    """Eq. (14) with 2F1 equals the explicit discounted sum over 2,000 periods."""
    x, t_x = [0, 1, 3, 6], [0, 5, 3, 6]
    for rate in (0.01, 0.1, 0.5):
        closed = model.discounted_expected_purchases(x, t_x, 6, discount_rate=rate)
        summed = model.discounted_expected_purchases(x, t_x, 6, discount_rate=rate, horizon=2000)
        np.testing.assert_allclose(closed, summed, rtol=1e-8)


@pytest.mark.parametrize("gamma", [1.0, 1.0 + 9e-4, 1.0 - 9e-4, 1.0011, 0.9989, 0.3, 4.0])
def test_expected_alive_periods_equals_explicit_sum(gamma: float) -> None:
    """Closed form (away from gamma = 1) and explicit sum (near it) against the direct sum."""
    from scipy.special import betaln

    delta, start, horizon = 2.5, np.array([0, 3, 10]), np.array([1, 7, 40])
    direct = [
        np.exp(betaln(gamma, delta + np.arange(s + 1, s + h + 1)) - betaln(gamma, delta)).sum()
        for s, h in zip(start, horizon, strict=True)
    ]
    got = bgbb.expected_alive_periods(gamma, delta, start, horizon)
    np.testing.assert_allclose(got, direct, rtol=1e-10)


# --- estimation -----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.slow
def test_parameters_recovered_from_simulated_data() -> None:
    """1,000,000 simulated customers, 8 opportunities (seed 2024): every true parameter lies
    in its 95% interval, and the intervals are informative (narrower than the value)."""
    truth = (0.9, 1.6, 0.5, 2.2)
    buys, _, _ = simulate(truth, 1_000_000, 8, seed=2024)
    x, t_x = summarise(buys, 8)
    fitted = BetaGeoBetaBinomModel().fit(x, t_x, 8)
    for name, true in zip(fitted.param_names, truth, strict=True):
        lower, upper = fitted.confidence_intervals_[name]
        assert lower <= true <= upper, (name, lower, true, upper)
        assert upper - lower < true, name


def test_compressed_fit_equals_exploded_fit(donations: dict[str, np.ndarray]) -> None:
    """Fitting 22 weighted rows equals fitting the 11,104 donors one by one."""
    d = donations
    reps = d["weights"].astype(int)
    exploded = BetaGeoBetaBinomModel().fit(np.repeat(d["x"], reps), np.repeat(d["t_x"], reps), 6)
    compressed = BetaGeoBetaBinomModel().fit(d["x"], d["t_x"], d["n"], weights=d["weights"])
    assert exploded.n_customers_ == compressed.n_customers_ == 11104
    assert exploded.loglik_ == pytest.approx(compressed.loglik_, rel=1e-12)
    for name in compressed.param_names:
        assert exploded.params_[name] == pytest.approx(compressed.params_[name], rel=1e-7)


def test_weights_count_customers(donations: dict[str, np.ndarray]) -> None:
    """A weight of 2 is the same as the row twice (and differs from weight 1).

    On the donations data (well conditioned, an interior optimum): a test of the weights
    must not depend on which optimiser path converges on degenerate data.
    """
    d = donations
    x, t_x, n, w = d["x"], d["t_x"], d["n"], d["weights"]
    doubled = BetaGeoBetaBinomModel().fit(
        np.concatenate([x, x]),
        np.concatenate([t_x, t_x]),
        np.concatenate([n, n]),
        weights=np.concatenate([w, w]),
    )
    weighted = BetaGeoBetaBinomModel().fit(x, t_x, n, weights=2 * w)
    plain = BetaGeoBetaBinomModel().fit(x, t_x, n, weights=w)
    assert weighted.loglik_ == pytest.approx(doubled.loglik_, rel=1e-10)
    assert weighted.loglik_ == pytest.approx(2 * plain.loglik_, rel=1e-6)
    assert weighted.n_customers_ == 2 * plain.n_customers_


@st.composite
def histories(draw: st.DrawFn, size: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid (x, t_x, n) rows: 0 <= x <= t_x <= n, t_x = 0 iff x = 0."""
    rows = []
    for _ in range(size):
        n = draw(st.integers(1, 25))
        t_x = draw(st.integers(0, n))
        x = 0 if t_x == 0 else draw(st.integers(1, t_x))
        rows.append((x, t_x, n))
    x, t_x, n = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    return x, t_x, n


positive = st.floats(0.05, 30.0)
params_strategy = st.tuples(positive, positive, positive, positive)


@settings(max_examples=80, deadline=None)
@given(params=params_strategy, data=histories())
def test_gradient_matches_central_differences(
    params: tuple[float, ...], data: tuple[np.ndarray, ...]
) -> None:
    """The exact gradient of the negative log-likelihood in log-parameters vs central
    differences (step 1e-6)."""
    x, t_x, n = data
    arrays = {"x": x, "t_x": t_x, "n": n, "weights": np.arange(1.0, x.size + 1)}
    model = BetaGeoBetaBinomModel()
    log_params = np.log(params)
    _, grad = model._negative_loglik(log_params, arrays)
    step = 1e-6
    numeric = np.empty(4)
    for j in range(4):
        up, down = log_params.copy(), log_params.copy()
        up[j] += step
        down[j] -= step
        numeric[j] = (
            model._negative_loglik(up, arrays)[0] - model._negative_loglik(down, arrays)[0]
        ) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)


@settings(max_examples=80, deadline=None)
@given(params=params_strategy, data=histories())
def test_probability_alive_is_a_probability(
    params: tuple[float, ...], data: tuple[np.ndarray, ...]
) -> None:
    p = bgbb.probability_alive(params, *data)
    assert np.all(np.isfinite(p))
    assert np.all((p >= 0) & (p <= 1))


@settings(max_examples=60, deadline=None)
@given(params=params_strategy, data=histories())
def test_expected_purchases_non_decreasing_in_horizon(
    params: tuple[float, ...], data: tuple[np.ndarray, ...]
) -> None:
    x, t_x, n = data
    horizons = np.arange(0, 30)
    curve = np.array([bgbb.expected_purchases(params, x, t_x, n, h) for h in horizons])
    assert np.all(curve[0] == 0)
    assert np.all(np.diff(curve, axis=0) >= -1e-12)
    assert np.all(curve[-1] <= horizons[-1])  # at most one transaction per period
    new = bgbb.expected_purchases_new(params, horizons)
    assert np.all(np.diff(new) >= -1e-12)


@settings(max_examples=60, deadline=None)
@given(params=params_strategy, n=st.integers(0, 40))
def test_purchase_distribution_sums_to_one(params: tuple[float, ...], n: int) -> None:
    """P(X(n) = x) over x = 0..n sums to 1, with mean E[X(n)]."""
    p = bgbb.probability_of_purchases_new(params, np.arange(n + 2), n)
    assert p[-1] == 0.0  # x > n is impossible
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    mean = float(np.arange(n + 2) @ p)
    assert mean == pytest.approx(float(bgbb.expected_purchases_new(params, n)), abs=1e-8)


@settings(max_examples=60, deadline=None)
@given(
    params=params_strategy, data=histories(), low=st.floats(0.01, 1.0), step=st.floats(0.01, 1.0)
)
def test_dert_non_increasing_in_discount_rate(
    params: tuple[float, ...], data: tuple[np.ndarray, ...], low: float, step: float
) -> None:
    near = bgbb.discounted_expected_purchases(params, *data, low)
    far = bgbb.discounted_expected_purchases(params, *data, low + step)
    assert np.all(np.isfinite(near)) and np.all(far >= 0)
    assert np.all(far <= near * (1 + 1e-12))


# --- contract -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.probability_alive([1], [1], [2]),
        lambda m: m.expected_purchases([1], [1], [2], horizon=1),
        lambda m: m.expected_purchases_new(3),
        lambda m: m.probability_of_purchases_new(1, 3),
        lambda m: m.discounted_expected_purchases([1], [1], [2], discount_rate=0.1),
        lambda m: m.to_json(),
    ],
)
def test_predictions_before_fit_raise_not_fitted(call: Any) -> None:
    with pytest.raises(NotFittedError, match="BetaGeoBetaBinomModel"):
        call(BetaGeoBetaBinomModel())


def test_json_round_trip(model: BetaGeoBetaBinomModel) -> None:
    text = model.to_json()
    assert json.loads(text)["type"] == "BetaGeoBetaBinomModel"
    loaded = model_from_json(text)
    assert isinstance(loaded, BetaGeoBetaBinomModel)
    assert loaded.params_ == model.params_
    assert loaded.loglik_ == model.loglik_
    np.testing.assert_array_equal(loaded.covariance_, model.covariance_)
    assert loaded.data_fingerprint_ == model.data_fingerprint_
    np.testing.assert_array_equal(
        loaded.discounted_expected_purchases([0, 3], [0, 5], 6, discount_rate=0.1),
        model.discounted_expected_purchases([0, 3], [0, 5], 6, discount_rate=0.1),
    )


def test_time_unit_is_recorded(donations: dict[str, np.ndarray]) -> None:
    d = donations  # well-conditioned data: this tests the unit, not the optimiser
    fitted = BetaGeoBetaBinomModel().fit(
        d["x"], d["t_x"], d["n"], weights=d["weights"], time_unit="months"
    )
    assert fitted.time_unit_ is not None and fitted.time_unit_.value == "month"
    assert json.loads(fitted.to_json())["time_unit"] == "month"


def test_degenerate_fit_is_flagged() -> None:
    """Four customers have no interior optimum: whichever optimiser path converges (and
    whether it warns about the path, which differs between CPUs), the fit is flagged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            fitted = BetaGeoBetaBinomModel().fit([0, 1, 2, 3], [0, 1, 4, 5], 6)
        except ConvergenceError:
            return  # no optimum found: said loudly, which is also acceptable
    found = fit_warnings("bgbb", fitted)
    assert found, fitted.params_
    assert any("degenerate" in w or "not available" in w for w in found)


@pytest.mark.parametrize(
    ("x", "t_x", "n", "weights", "message"),
    [
        ([0, 3], [0, 2], 6, None, "row 1: frequency 3 is greater than recency 2"),
        ([0, 1], [0, 7], 6, None, "row 1: recency 7 is greater than n_periods 6"),
        ([0, 0], [0, 2], 6, None, "row 1: recency 2 with frequency 0"),
        ([1.5], [2], 6, None, "row 0: frequency 1.5 is not a whole number"),
        ([-1], [2], 6, None, "row 0: frequency -1 is not a whole number"),
        ([1, 1], [1, 2.5], 6, None, "row 1: recency 2.5 is not a whole number"),
        ([0, 1], [0, 1], [6, 0], None, "row 1: n_periods 0 is not a whole number >= 1"),
        ([0, np.nan], [0, 1], 6, None, "row 1: has a missing value"),
        ([0, 1], [0, 1], 6, [1, -2], "row 1: weight -2 is not a number >= 0"),
        ([0, 1], [0, 1], 6, [1], "weights has 1 values for 2 customers"),
        ([0, 1, 2], [0, 1], 6, None, "different lengths"),
        ([], [], 6, None, "no customers"),
    ],
)
def test_bad_input_names_row_and_fix(
    x: list[float], t_x: list[float], n: Any, weights: Any, message: str
) -> None:
    with pytest.raises(DataValidationError, match=message) as info:
        BetaGeoBetaBinomModel().fit(x, t_x, n, weights=weights)
    assert "Fix: " in str(info.value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.expected_purchases([1], [1], [2], horizon=-1), "horizon -1 is not a whole"),
        (lambda m: m.expected_purchases([1], [1], [2], horizon=1.5), "horizon 1.5 is not a whole"),
        (lambda m: m.expected_purchases_new([1, 2.5]), "horizon 2.5 is not a whole"),
        (
            lambda m: m.expected_purchases([1, 2], [1, 2], 2, horizon=[1, 2, 3]),
            "horizon has 3 values for 2 customers",
        ),
        (lambda m: m.probability_alive([2], [1], [2]), "row 0: frequency 2 is greater"),
        (
            lambda m: m.discounted_expected_purchases([1], [1], [2], discount_rate=-0.1),
            "discount_rate -0.1 is not a number >= 0",
        ),
        (lambda m: m.probability_of_purchases_new(-1, 3), "n -1 is not a whole number"),
    ],
)
def test_bad_prediction_input_raises(model: BetaGeoBetaBinomModel, call: Any, message: str) -> None:
    with pytest.raises(DataValidationError, match=message):
        call(model)
