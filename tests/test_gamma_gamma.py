"""Gamma-Gamma spend model: published values, brute-force checks, properties, errors.

References
----------
Hardie (2013), "The Gamma-Gamma Model of Monetary Value" (brucehardie.com/notes/025):
on the 946 repeat buyers of the CDNOW sample (39-week calibration period ending
1997-09-30), (p, q, gamma) = (6.25, 3.74, 15.44), LL = -4055.92; the accompanying
spreadsheet's conditional expected spend of customers 1-10 (printed to 2 decimals,
quoted by the lifetimes test suite).
Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base
Analysis", JMR 42(4): the correlation between the number of repeat transactions and
their mean value is 0.11 on the same data.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segvalue.errors import DataValidationError, NotFittedError
from segvalue.models import _gamma_gamma_math as gg
from segvalue.models.base import model_from_json
from segvalue.models.gamma_gamma import GammaGammaModel

SAMPLE = Path(__file__).parent / "data" / "CDNOW_sample.txt"


def cdnow_spend() -> tuple[list[int], list[int], list[float]]:
    """Customer id, x and m_x for every CDNOW sample customer, in pure Python.

    Calibration ends 1997-09-30 (inclusive); purchases on the same day are one
    transaction (amounts summed); x counts the transactions after the first and m_x is
    their mean amount (0 when x = 0).
    """
    days: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    with SAMPLE.open() as lines:
        for line in lines:
            _, customer, date, _, amount = line.split()
            if date <= "19970930":
                days[int(customer)][date] += float(amount)
    ids, xs, ms = [], [], []
    for customer in sorted(days):
        repeat = [days[customer][d] for d in sorted(days[customer])[1:]]
        ids.append(customer)
        xs.append(len(repeat))
        ms.append(sum(repeat) / len(repeat) if repeat else 0.0)
    return ids, xs, ms


@pytest.fixture(scope="module")
def cdnow() -> dict[str, np.ndarray]:
    ids, x, m = cdnow_spend()
    return {"id": np.array(ids), "x": np.array(x, dtype=float), "m": np.array(m)}


@pytest.fixture(scope="module")
def model(cdnow: dict[str, np.ndarray]) -> GammaGammaModel:
    return GammaGammaModel().fit(cdnow["x"], cdnow["m"])


# --- published values -----------------------------------------------------------------
def test_cdnow_has_946_repeat_buyers(cdnow: dict[str, np.ndarray]) -> None:
    assert cdnow["x"].size == 2357
    assert int((cdnow["x"] > 0).sum()) == 946


def test_cdnow_parameters_and_loglik_match_hardie_note(model: GammaGammaModel) -> None:
    """(p, q, gamma) printed to 2 decimals, LL to 2 decimals."""
    for name, value in {"p": 6.25, "q": 3.74, "gamma": 15.44}.items():
        assert model.params_[name] == pytest.approx(value, abs=0.005), name
    assert model.loglik_ == pytest.approx(-4055.92, abs=0.005)
    assert model.n_customers_ == 946
    assert model.n_ignored_ == 2357 - 946


def test_expected_spend_matches_hardie_spreadsheet(
    model: GammaGammaModel, cdnow: dict[str, np.ndarray]
) -> None:
    """Customers 1-10, printed to 2 decimals (the x = 0 ones get the population mean)."""
    first = cdnow["id"] <= 10
    expected = model.expected_spend(cdnow["x"][first], cdnow["m"][first])
    published = [24.65, 18.91, 35.17, 35.17, 35.17, 71.46, 18.91, 35.17, 27.28, 35.17]
    np.testing.assert_allclose(expected, published, atol=0.005)
    assert model.expected_spend_new() == pytest.approx(35.17, abs=0.005)


def test_spend_frequency_correlation_matches_fhl_2005(cdnow: dict[str, np.ndarray]) -> None:
    """0.11, printed to 2 decimals; computed over the 946 repeat buyers only."""
    r = GammaGammaModel.spend_frequency_correlation(cdnow["x"], cdnow["m"])
    assert r == pytest.approx(0.11, abs=0.005)
    repeat = cdnow["x"] > 0
    assert r == pytest.approx(np.corrcoef(cdnow["x"][repeat], cdnow["m"][repeat])[0, 1])


# --- simulation -----------------------------------------------------------------------
def simulate(
    params: tuple[float, float, float], customers: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x ~ 1 + Poisson(3), nu ~ Gamma(q, rate gamma), m ~ mean of x Gamma(p, rate nu)
    draws = Gamma(px, rate nu x); also one future transaction Gamma(p, rate nu)."""
    p, q, gamma = params
    rng = np.random.default_rng(seed)
    x = 1 + rng.poisson(3.0, customers)
    nu = rng.gamma(q, 1 / gamma, customers)
    m = rng.gamma(p * x, 1 / (nu * x))
    future = rng.gamma(p, 1 / nu)
    return x.astype(float), m, future


@pytest.mark.slow
@pytest.mark.slow
def test_parameters_recovered_from_simulated_data() -> None:
    """1,000,000 simulated repeat buyers (seed 11): every true parameter lies in its 95%
    interval, and the intervals are informative."""
    truth = (6.0, 4.0, 15.0)
    x, m, _ = simulate(truth, 1_000_000, seed=11)
    fitted = GammaGammaModel().fit(x, m)
    for name, true in zip(fitted.param_names, truth, strict=True):
        lower, upper = fitted.confidence_intervals_[name]
        assert lower <= true <= upper, (name, lower, true, upper)
        assert upper - lower < true, name


def test_expected_spend_matches_simulated_future_transactions() -> None:
    """E[next transaction value | x, m] (eq. 5) against 400,000 simulated customers:
    within each x in 1..4 and each decile of m, the mean simulated next transaction is
    within 4 standard errors of the mean prediction."""
    params = (6.0, 4.0, 15.0)
    x, m, future = simulate(params, 400_000, seed=5)
    predicted = gg.expected_spend(params, x, m)
    for k in (1.0, 2.0, 3.0, 4.0):
        group = x == k
        edges = np.quantile(m[group], np.linspace(0, 1, 11))
        bins = np.clip(np.searchsorted(edges, m[group], side="right") - 1, 0, 9)
        for b in range(10):
            sel = bins == b
            values = future[group][sel]
            se = values.std() / np.sqrt(values.size)
            assert abs(values.mean() - predicted[group][sel].mean()) <= 4 * se, (k, b)


# --- properties -----------------------------------------------------------------------
positive = st.floats(0.1, 50.0)
spend_rows = st.lists(
    st.tuples(st.integers(1, 40), st.floats(0.01, 5000.0)), min_size=1, max_size=8
)


def _objective_at(
    params: tuple[float, float, float], rows: list[tuple[int, float]]
) -> tuple[GammaGammaModel, Any, np.ndarray]:
    """A model, its prepared fit data for weighted (x, m) rows, and log(params)."""
    x, m = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    model = GammaGammaModel()
    data = model._prepare({"x": x, "m": m, "weights": np.arange(1.0, x.size + 1)})
    return model, data, np.log(params)


@settings(max_examples=80, deadline=None)
@given(params=st.tuples(positive, positive, positive), rows=spend_rows)
def test_gradient_matches_central_differences(
    params: tuple[float, float, float], rows: list[tuple[int, float]]
) -> None:
    model, data, log_params = _objective_at(params, rows)
    _, grad = model._negative_loglik(log_params, data)
    step = 1e-6
    numeric = np.empty(3)
    for j in range(3):
        up, down = log_params.copy(), log_params.copy()
        up[j] += step
        down[j] -= step
        numeric[j] = (
            model._negative_loglik(up, data)[0] - model._negative_loglik(down, data)[0]
        ) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)


@settings(max_examples=80, deadline=None)
@given(params=st.tuples(positive, positive, positive), rows=spend_rows)
def test_hessian_matches_central_differences_of_the_gradient(
    params: tuple[float, float, float], rows: list[tuple[int, float]]
) -> None:
    """The exact Hessian the fit's Newton method uses (log-parameters, as fitted)."""
    model, data, log_params = _objective_at(params, rows)
    value, grad, hess = model._negative_loglik_hessian(log_params, data)
    plain_value, plain_grad = model._negative_loglik(log_params, data)
    assert value == pytest.approx(plain_value, rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(grad, plain_grad, rtol=1e-12, atol=1e-9)
    step = 1e-6
    numeric = np.empty((3, 3))
    for j in range(3):
        up, down = log_params.copy(), log_params.copy()
        up[j] += step
        down[j] -= step
        numeric[:, j] = (
            model._negative_loglik(up, data)[1] - model._negative_loglik(down, data)[1]
        ) / (2 * step)
    np.testing.assert_allclose(hess, hess.T, rtol=1e-12)
    scale = 1e-5 * (1.0 + np.abs(numeric).max())
    np.testing.assert_allclose(hess, numeric, rtol=1e-5, atol=scale)


def test_cdnow_fit_takes_the_newton_path(model: GammaGammaModel) -> None:
    """With the exact Hessian the fit needs no fallback optimiser."""
    assert model.fit_result_.method == "Newton"
    assert model.converged_


@settings(max_examples=80, deadline=None)
@given(params=st.tuples(positive, positive, positive), rows=spend_rows)
def test_total_grouped_by_frequency_equals_sum_over_customers(
    params: tuple[float, float, float], rows: list[tuple[int, float]]
) -> None:
    """The fit's objective (gamma functions once per distinct x) is the per-customer sum."""
    x, m = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    weights = np.arange(1.0, x.size + 1)
    value, grad = gg.total_loglik_gradient(params, gg.prepare_fit_data(x, m, weights))
    ll, per_customer = gg.log_likelihood_gradient(params, x, m)
    assert value == pytest.approx(float(weights @ ll), rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(grad, weights @ per_customer, rtol=1e-10, atol=1e-9)


@settings(max_examples=80, deadline=None)
@given(
    p=positive,
    q=st.floats(1.05, 50.0),
    gamma=positive,
    x=st.integers(0, 200),
    m=st.floats(0.01, 1e4),
)
def test_expected_spend_shrinks_toward_population_mean(
    p: float, q: float, gamma: float, x: int, m: float
) -> None:
    """Eq. (5) is a weighted mean of the population mean and m, moving to m as x grows."""
    params = (p, q, gamma)
    population = gg.expected_spend_new(params)
    spend = float(gg.expected_spend(params, x, m))
    low, high = min(population, m), max(population, m)
    assert low * (1 - 1e-12) <= spend <= high * (1 + 1e-12)
    if x == 0:
        assert spend == pytest.approx(population)
    more = float(gg.expected_spend(params, x + 10, m))
    assert abs(more - m) <= abs(spend - m) * (1 + 1e-12)


@settings(max_examples=80, deadline=None)
@given(
    params=st.tuples(positive, st.floats(1.05, 50.0), positive),
    x=st.integers(0, 200),
    m=st.floats(0.01, 1e4),
)
def test_expected_spend_log_gradient_matches_central_differences(
    params: tuple[float, float, float], x: int, m: float
) -> None:
    """The closed-form gradient the CLV intervals use, against differences of eq. (5)."""
    analytic = gg.expected_spend_log_gradient(params, [x], [m])[:, 0]
    log_params = np.log(params)
    step = 1e-6
    numeric = np.empty(3)
    for j in range(3):
        up, down = log_params.copy(), log_params.copy()
        up[j] += step
        down[j] -= step
        numeric[j] = (
            np.log(gg.expected_spend(np.exp(up), x, m))
            - np.log(gg.expected_spend(np.exp(down), x, m))
        ) / (2 * step)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_expected_spend_log_gradient_is_nan_where_the_spend_is_infinite() -> None:
    gradient = gg.expected_spend_log_gradient((1.0, 0.5, 10.0), [0, 2], [0.0, 20.0])
    assert np.isinf(gg.expected_spend((1.0, 0.5, 10.0), 0, 0.0))
    assert np.all(np.isnan(gradient[:, 0]))
    assert np.all(np.isfinite(gradient[:, 1]))


def test_density_integrates_to_one() -> None:
    """The mean-spend density of eqs. (3)-(4) integrates to 1 over m > 0 for each x."""
    from scipy import integrate

    params = (6.25, 3.74, 15.44)
    for x in (1, 2, 7):
        total, _ = integrate.quad(
            lambda v, k=x: float(np.exp(gg.log_likelihood(params, [k], [v])[0])), 0, np.inf
        )
        assert total == pytest.approx(1.0, abs=1e-7)


# --- estimation contract --------------------------------------------------------------
def test_compressed_fit_equals_exploded_fit(cdnow: dict[str, np.ndarray]) -> None:
    """Weighted unique (x, m) rows fit exactly like the rows they stand for."""
    x, m = cdnow["x"], cdnow["m"]
    rows, counts = np.unique(np.column_stack([x, m]), axis=0, return_counts=True)
    assert counts.max() > 1  # the file has duplicated (x, m) pairs
    compressed = GammaGammaModel().fit(rows[:, 0], rows[:, 1], weights=counts)
    exploded = GammaGammaModel().fit(x, m)
    assert compressed.loglik_ == pytest.approx(exploded.loglik_, rel=1e-12)
    assert compressed.n_customers_ == exploded.n_customers_
    assert compressed.n_ignored_ == exploded.n_ignored_
    for name in exploded.param_names:
        assert compressed.params_[name] == pytest.approx(exploded.params_[name], rel=1e-7)


def test_zero_frequency_rows_are_ignored_and_counted() -> None:
    x = [2, 1, 7, 1, 2, 5, 10, 1, 3, 2]
    m = [22.34, 11.77, 73.74, 11.77, 25.55, 29.44, 24.24, 9.99, 25.08, 32.30]
    plain = GammaGammaModel().fit(x, m)
    padded = GammaGammaModel().fit(
        [0, *x, 0], [float("nan"), *m, 0.0], weights=[3] + [1] * 10 + [2]
    )
    assert padded.n_ignored_ == 5 and plain.n_ignored_ == 0
    assert padded.n_customers_ == plain.n_customers_ == 10
    assert padded.params_ == pytest.approx(plain.params_)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.expected_spend([1], [10.0]),
        lambda m: m.expected_spend_new(),
        lambda m: m.to_json(),
    ],
)
def test_predictions_before_fit_raise_not_fitted(call: Any) -> None:
    with pytest.raises(NotFittedError, match="GammaGammaModel"):
        call(GammaGammaModel())


def test_correlation_needs_no_fit_and_is_nan_when_undefined() -> None:
    assert np.isnan(GammaGammaModel.spend_frequency_correlation([1, 0], [10.0, 0.0]))
    assert np.isnan(GammaGammaModel.spend_frequency_correlation([2, 2, 2], [1.0, 5.0, 9.0]))
    weighted = GammaGammaModel.spend_frequency_correlation(
        [1, 2, 3], [5.0, 9.0, 8.0], weights=[2, 1, 3]
    )
    repeated = np.corrcoef([1, 1, 2, 3, 3, 3], [5.0, 5.0, 9.0, 8.0, 8.0, 8.0])[0, 1]
    assert weighted == pytest.approx(repeated)


def test_json_round_trip(model: GammaGammaModel) -> None:
    text = model.to_json()
    assert json.loads(text)["n_ignored"] == 2357 - 946
    loaded = model_from_json(text)
    assert isinstance(loaded, GammaGammaModel)
    assert loaded.params_ == model.params_
    assert loaded.n_ignored_ == model.n_ignored_
    assert loaded.n_customers_ == model.n_customers_
    np.testing.assert_array_equal(
        loaded.expected_spend([0, 3], [0.0, 40.0]), model.expected_spend([0, 3], [0.0, 40.0])
    )


@pytest.mark.parametrize(
    ("x", "m", "weights", "message"),
    [
        ([1, 2], [10.0, 0.0], None, r"row 1: monetary_value 0 is not > 0 for a repeat customer"),
        ([1, 2], [10.0, -5.0], None, r"row 1: monetary_value -5 is not > 0"),
        ([1, 3], [10.0, np.nan], None, r"row 1: monetary_value is missing .*\(frequency 3\)"),
        ([1, 2.5], [10.0, 3.0], None, "row 1: frequency 2.5 is not a whole number"),
        ([1, -1], [10.0, 3.0], None, "row 1: frequency -1 is not a whole number"),
        ([1, np.nan], [10.0, 3.0], None, "row 1: frequency is missing"),
        ([1, 2], [10.0, 3.0], [1, -1], "row 1: weight -1 is not a number >= 0"),
        ([1, 2], [10.0], None, "different lengths"),
        ([0, 0], [0.0, 0.0], None, "no repeat customers"),
        ([], [], None, "no customers"),
    ],
)
def test_bad_input_names_row_and_fix(x: Any, m: Any, weights: Any, message: str) -> None:
    with pytest.raises(DataValidationError, match=message) as info:
        GammaGammaModel().fit(x, m, weights=weights)
    assert "Fix: " in str(info.value)


def test_bad_prediction_input_raises(model: GammaGammaModel) -> None:
    with pytest.raises(DataValidationError, match="row 1: monetary_value -3 is not > 0"):
        model.expected_spend([0, 2], [0.0, -3.0])
