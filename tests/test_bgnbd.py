"""BG/NBD and MBG/NBD: published reference values, independent numerics, properties.

Sources
-------
- [FHL05] Fader, Hardie & Lee (2005), "'Counting Your Customers' the Easy Way",
  Marketing Science 24(2): CDNOW sample (2,357 customers, 39-week calibration),
  (r, alpha, a, b) = (0.2426, 4.4135, 0.7929, 2.4259), LL = -9582.4 (section 4;
  Hardie's Excel note "Implementing the BG/NBD Model for Customer Base Analysis in Excel"
  prints LL = -9582.43 and E[Y(39) | x = 2, t_x = 30.43, T = 38.86] = 1.226).
- MBG/NBD (Batislam, Denizel & Filiztekin 2007, IJRM 24(3)) on the same CDNOW sample:
  (0.525, 6.183, 0.891, 1.614) from Platzer's BTYDplus (``mbgnbd.EstimateParameters`` on
  ``cdnow.sample()``), as quoted by lifetimes' test
  ``test_params_out_is_close_to_BTYDplus``. Batislam et al. themselves fit Turkish
  grocery data, not CDNOW.
- [FHL07] Fader, Hardie & Lee, "Deriving the Conditional PMF of the BG/NBD Model" (note).

Independent checks integrate the model's definition (Poisson purchases at rate lambda,
dropout with probability p after purchases, gamma and beta heterogeneity) numerically
over (lambda, p) with scipy, or evaluate hypergeometric closed forms with mpmath at high
precision, so they share no code with the implementation.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from btyd_simulate import simulate_bgnbd, simulate_pareto_nbd
from segvalue.errors import DataValidationError, NotFittedError
from segvalue.models import _bgnbd_math as bgmath
from segvalue.models.base import model_from_json
from segvalue.models.bgnbd import BetaGeoModel, ModifiedBetaGeoModel

DATA = Path(__file__).parent / "data"
FHL05 = {"r": 0.2426, "alpha": 4.4135, "a": 0.7929, "b": 2.4259}
FHL05_LOGLIK = -9582.43
BTYDPLUS_MBG = {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}
MODELS = [BetaGeoModel, ModifiedBetaGeoModel]

Model = type[BetaGeoModel] | type[ModifiedBetaGeoModel]


# --- data -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow_summary() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hardie's published (x, t_x, T) of the CDNOW sample, in weeks, 2 decimals."""
    table = np.genfromtxt(DATA / "cdnow_customers_summary.csv", delimiter=",", names=True)
    return table["frequency"], table["recency"], table["T"]


@pytest.fixture(scope="module")
def cdnow_exact() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) recomputed from the CDNOW sample's transactions, unrounded.

    Calibration ends on 1997-09-30 inclusive; purchases on the same day are one purchase;
    durations are days / 7 ([FHL05], section 4).
    """
    end = datetime.date(1997, 9, 30)
    days: dict[str, set[datetime.date]] = {}
    for line in (DATA / "CDNOW_sample.txt").read_text().splitlines():
        _, customer, date, _, _ = line.split()
        day = datetime.date(int(date[:4]), int(date[4:6]), int(date[6:]))
        days.setdefault(customer, set()).add(day)
    x, t_x, T = [], [], []
    for dates in days.values():
        first = min(dates)
        calibration = sorted(d for d in dates if d <= end)
        x.append(len(calibration) - 1)
        t_x.append((calibration[-1] - first).days / 7)
        T.append((end - first).days / 7)
    return np.array(x, float), np.array(t_x), np.array(T)


def _fitted(cls: Model, params: dict[str, float]) -> BetaGeoModel | ModifiedBetaGeoModel:
    """A model carrying the given parameters (no fit: a tiny fit is degenerate and its
    optimiser path differs between CPUs)."""
    k = len(cls.param_names)
    return cls.from_dict(
        {
            "params": {n: params[n] for n in cls.param_names},
            "covariance": [[None] * k for _ in range(k)],
            "loglik": 0.0,
            "n_customers": 1,
        }
    )


# --- published reference values ---------------------------------------------------------


def test_cdnow_exact_data_reproduce_fhl05(cdnow_exact: Any) -> None:
    """[FHL05]: the BG/NBD MLE on the CDNOW sample.

    Published to 4 decimals (LL to 2). Excel's Solver stops a little early, so allow 1.5
    units of the last printed digit on the parameters and half a unit (0.005) on the LL.
    """
    x, t_x, T = cdnow_exact
    assert x.size == 2357 and x.sum() == 2457  # [FHL05]: 2,357 customers
    start = time.perf_counter()
    model = BetaGeoModel().fit(x, t_x, T, time_unit="week")
    elapsed = time.perf_counter() - start
    for name, value in FHL05.items():
        assert model.params_[name] == pytest.approx(value, abs=1.5e-4), name
    assert model.loglik_ == pytest.approx(FHL05_LOGLIK, abs=0.005)
    assert model.converged_ and model.n_customers_ == 2357
    assert elapsed < 60  # measured: about 0.01 s (reported, not a benchmark)


def test_cdnow_summary_reproduces_fhl05(cdnow_summary: Any) -> None:
    """[FHL05] again, on Hardie's summary file, whose t_x and T are rounded to 0.01 week.

    That rounding moves the MLE by up to 1.5e-4 (b); allow 3 units of the last digit.
    """
    model = BetaGeoModel().fit(*cdnow_summary)
    for name, value in FHL05.items():
        assert model.params_[name] == pytest.approx(value, abs=3e-4), name
    assert model.loglik_ == pytest.approx(FHL05_LOGLIK, abs=0.005)
    lower, upper = model.confidence_intervals_["r"]
    assert lower < model.params_["r"] < upper


@pytest.mark.parametrize("source", ["cdnow_exact", "cdnow_summary"])
def test_cdnow_mbgnbd_reproduces_btydplus(source: str, request: pytest.FixtureRequest) -> None:
    """MBG/NBD on CDNOW: BTYDplus's (0.525, 6.183, 0.891, 1.614), printed to 3 decimals."""
    model = ModifiedBetaGeoModel().fit(*request.getfixturevalue(source))
    for name, value in BTYDPLUS_MBG.items():
        assert model.params_[name] == pytest.approx(value, abs=5e-4), name


def test_conditional_expectation_published() -> None:
    """[FHL05] / Hardie's Excel note: E[Y(39) | x=2, t_x=30.43, T=38.86] = 1.226."""
    model = _fitted(BetaGeoModel, FHL05)
    value = model.expected_purchases(2, 30.43, 38.86, horizon=39)
    assert float(value) == pytest.approx(1.226, abs=5e-4)


# --- the closed forms against the model's definition -----------------------------------


def _posterior_integral(
    params: dict[str, float],
    x: int,
    t_x: float,
    T: float,
    future: Callable[[float, float], float],
    modified: bool,
) -> tuple[float, float]:
    """(P(alive at T | history), E[future(lambda, p) | alive, history] P(alive)).

    Integrates the likelihood of the history over the prior of (lambda, p) numerically:
    purchases at rate lambda; dropout with probability p after each repeat purchase (and,
    in the MBG/NBD, after the first). Shares no formula with the implementation.
    """
    r, alpha, a, b = (params[n] for n in ("r", "alpha", "a", "b"))
    log_norm = r * np.log(alpha) - special.gammaln(r) - special.betaln(a, b)
    stays = x + 1 if modified else x  # purchases each followed by "no dropout"

    def prior(lam: float, p: float) -> float:
        return float(
            np.exp(
                log_norm
                + (r - 1) * np.log(lam)
                - alpha * lam
                + (a - 1) * np.log(p)
                + (b - 1) * np.log1p(-p)
            )
        )

    def alive(lam: float, p: float) -> float:
        return float((1 - p) ** stays * lam**x * np.exp(-lam * T))

    def dead(lam: float, p: float) -> float:
        if not modified and x == 0:
            return 0.0
        return float(p * (1 - p) ** (stays - 1) * lam**x * np.exp(-lam * t_x))

    def integral(f: Callable[[float, float], float]) -> float:
        value, _ = integrate.dblquad(
            lambda p, lam: f(lam, p) * prior(lam, p), 0, np.inf, 0, 1, epsabs=0, epsrel=1e-11
        )
        return float(value)

    total = integral(alive) + integral(dead)
    alive_mass = integral(alive)
    return alive_mass / total, integral(lambda lam, p: alive(lam, p) * future(lam, p)) / total


def _pmf_given(n: int, t: float) -> Callable[[float, float], float]:
    """P(n purchases in t | lambda, p, alive at the start) ([FHL05] appendix)."""

    def pmf(lam: float, p: float) -> float:
        poisson = (lam * t) ** n * np.exp(-lam * t) / special.factorial(n)
        if n == 0:
            return float(poisson)
        at_least = special.gammainc(n, lam * t)  # P(Poisson(lam t) >= n)
        return float((1 - p) ** n * poisson + p * (1 - p) ** (n - 1) * at_least)

    return pmf


@pytest.mark.parametrize(
    ("cls", "params"), [(BetaGeoModel, FHL05), (ModifiedBetaGeoModel, BTYDPLUS_MBG)]
)
def test_conditional_predictions_match_numerical_integration(
    cls: Model, params: dict[str, float]
) -> None:
    """P(alive) ([FHL05] eq. 13), E[Y(t)] (eq. 10) and P(Y(t) = n) ([FHL07]) by integration.

    The customer of the published example (x = 2, t_x = 30.43, T = 38.86), t = 39.
    """
    modified = cls is ModifiedBetaGeoModel
    model = _fitted(cls, params)
    history = (2, 30.43, 38.86)
    t = 39.0

    def expected(lam: float, p: float) -> float:
        return float(-np.expm1(-lam * p * t) / p)  # E[purchases in t | lambda, p, alive]

    p_alive, mean = _posterior_integral(params, *history, expected, modified)
    assert float(model.probability_alive(*history)) == pytest.approx(p_alive, rel=1e-9)
    assert float(model.expected_purchases(*history, horizon=t)) == pytest.approx(mean, rel=1e-8)
    for n in (0, 1, 3):
        _, alive_part = _posterior_integral(params, *history, _pmf_given(n, t), modified)
        want = alive_part + (1 - p_alive) * (n == 0)
        got = float(model.probability_of_purchases(n, *history, horizon=t))
        assert got == pytest.approx(want, rel=1e-8), n


def test_probability_alive_mpmath_closed_form() -> None:
    """[FHL05] eq. (13) at the published parameters, evaluated with mpmath (40 digits)."""
    with mp.workdps(40):
        r, alpha, a, b = (mp.mpf(str(FHL05[n])) for n in ("r", "alpha", "a", "b"))
        x, t_x, T = 2, mp.mpf("30.43"), mp.mpf("38.86")
        want = 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    model = _fitted(BetaGeoModel, FHL05)
    assert float(model.probability_alive(2, 30.43, 38.86)) == pytest.approx(float(want), rel=1e-13)
    assert float(want) == pytest.approx(0.7266, abs=5e-5)


def _mp_conditional_pmf(
    params: dict[str, float], y: int, x: int, t_x: float, T: float, t: float
) -> float:
    """[FHL07]'s final expression for P(Y(t) = y | x, t_x, T), term by term in mpmath."""
    with mp.workdps(40):
        r, alpha, a, b = (mp.mpf(str(params[n])) for n in ("r", "alpha", "a", "b"))
        t_x, T, t = mp.mpf(str(t_x)), mp.mpf(str(T)), mp.mpf(str(t))
        odds = a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x) if x > 0 else 0
        denominator = 1 + odds
        g = (alpha + T) / (alpha + T + t)
        h = t / (alpha + T + t)
        first = (
            mp.beta(a, b + x + y)
            / mp.beta(a, b + x)
            * mp.gamma(r + x + y)
            / (mp.gamma(r + x) * mp.factorial(y))
            * g ** (r + x)
            * h**y
        )
        second = 0
        if y > 0:
            partial = sum(
                mp.gamma(r + x + j) / (mp.gamma(r + x) * mp.factorial(j)) * h**j for j in range(y)
            )
            second = (
                mp.beta(a + 1, b + x + y - 1) / mp.beta(a, b + x) * (1 - g ** (r + x) * partial)
            )
        value = (1 - 1 / denominator if y == 0 else 0) + (first + second) / denominator
        return float(value)


@pytest.mark.parametrize(
    ("y", "x", "t_x", "T", "t"),
    [
        (0, 0, 0.0, 38.86, 39.0),
        (0, 2, 30.43, 38.86, 39.0),
        (1, 2, 30.43, 38.86, 39.0),
        (4, 7, 35.0, 38.86, 52.0),
        (2, 1, 1.71, 38.86, 10.0),
        (12, 40, 38.0, 38.86, 78.0),
    ],
)
def test_conditional_pmf_matches_fhl07(y: int, x: int, t_x: float, T: float, t: float) -> None:
    """The conditional PMF equals [FHL07]'s expression, evaluated independently."""
    model = _fitted(BetaGeoModel, FHL05)
    got = float(model.probability_of_purchases(y, x, t_x, T, horizon=t))
    assert got == pytest.approx(_mp_conditional_pmf(FHL05, y, x, t_x, T, t), rel=1e-10)


def _mp_expected_new(r: float, alpha: float, a: float, b: float, t: float) -> float:
    """E[X(t)] = E_p[(1 - (1 + p t / alpha)^-r) / p], p ~ Beta(a, b), by mpmath quadrature.

    [FHL05] eq. (7) is its closed form. 30 digits. Over p < 1/2 the variable is l = ln p
    (many breakpoints, so that narrow peaks are seen); over p > 1/2 it is u = (1 - p)^b,
    which absorbs the endpoint singularity (1 - p)^(b - 1) of small b.
    """
    with mp.workdps(30):
        r_, alpha_, a_, b_, t_ = (mp.mpf(v) for v in (r, alpha, a, b, t))
        k = t_ / alpha_
        log_beta = mp.log(mp.beta(a_, b_))

        def g(p: Any) -> Any:
            return -mp.expm1(-r_ * mp.log1p(k * p)) / p

        def left(ell: Any) -> Any:
            p = mp.exp(ell)
            return mp.exp(a_ * ell + (b_ - 1) * mp.log1p(-p) - log_beta) * g(p)

        def right(u: Any) -> Any:
            p = 1 - mp.power(u, 1 / b_)
            return mp.exp((a_ - 1) * mp.log(p) - log_beta) * g(p) / b_

        top = mp.log(mp.mpf(1) / 2)
        low = min(mp.log(a_ / (a_ + b_)), -mp.log(k), top) - 60
        points = [-mp.inf, *mp.linspace(low, top, 241)]
        return float(mp.quad(left, points) + mp.quad(right, [0, mp.power(2, -b_)]))


@pytest.mark.parametrize(
    ("r", "alpha", "a", "b", "t"),
    [
        (0.2426, 4.4135, 0.7929, 2.4259, 39.0),  # CDNOW: scipy hyp2f1
        (0.2426, 4.4135, 1.0, 2.4259, 39.0),  # a = 1: removable singularity of eq. (7)
        (0.2426, 4.4135, 1.00003, 2.4259, 39.0),  # a near 1
        (0.5, 2.0, 0.3, 0.7, 10.0),  # a + b = 1: c = 0 in eq. (7)
        (1.5, 0.5, 0.2, 0.3, 200.0),  # a + b < 1
        (0.3, 50.0, 0.8, 2.0, 1e-3),  # t << alpha: power series
        (0.5, 0.2, 0.8, 800.0, 1000.0),  # b large, z -> 1: hyp2f1 overflows; quadrature
        (0.5, 0.2, 1.00001, 400.0, 5.0),  # b large and a near 1: quadrature
        (3000.24, 43.27, 0.79, 3002.43, 39.0),  # x = 3000 updated parameters
        (2.0, 1.0, 3.0, 0.05, 100.0),  # b small
        (50.0, 3.0, 25.0, 10.0, 2000.0),  # r and a large
    ],
)
def test_expected_purchases_new_against_mpmath(
    r: float, alpha: float, a: float, b: float, t: float
) -> None:
    """[FHL05] eq. (7) in every numerical regime, against 30-digit quadrature."""
    got = float(bgmath.expected_purchases_new((r, alpha, a, b), t))
    assert got == pytest.approx(_mp_expected_new(r, alpha, a, b, t), rel=1e-9)


def test_mbgnbd_new_customer_predictions_by_integration() -> None:
    """MBG/NBD E[X(t)] and P(X(t) = n): integrate the model's definition over (lambda, p)."""
    params = BTYDPLUS_MBG
    r, alpha, a, b = (params[n] for n in ("r", "alpha", "a", "b"))
    t = 52.0
    log_norm = r * np.log(alpha) - special.gammaln(r) - special.betaln(a, b)

    def prior(lam: float, p: float) -> float:
        return float(
            np.exp(
                log_norm
                + (r - 1) * np.log(lam)
                - alpha * lam
                + (a - 1) * np.log(p)
                + (b - 1) * np.log1p(-p)
            )
        )

    def integral(f: Callable[[float, float], float]) -> float:
        return float(
            integrate.dblquad(
                lambda p, lam: f(lam, p) * prior(lam, p), 0, np.inf, 0, 1, epsabs=0, epsrel=1e-11
            )[0]
        )

    # With probability p the customer leaves right after the first purchase.
    mean = integral(lambda lam, p: (1 - p) * -np.expm1(-lam * p * t) / p)
    model = _fitted(ModifiedBetaGeoModel, params)
    assert float(model.expected_purchases_new(t)) == pytest.approx(mean, rel=1e-8)
    for n in (0, 2):
        want = integral(lambda lam, p, n=n: (1 - p) * _pmf_given(n, t)(lam, p) + p * (n == 0))
        assert float(model.probability_of_purchases_new(n, t)) == pytest.approx(want, rel=1e-8)


# --- simulator and parameter recovery ---------------------------------------------------


@pytest.mark.parametrize("cls", MODELS)
def test_simulated_histogram_matches_pmf(cls: Model) -> None:
    """The simulator and [FHL05] eq. (8) agree: frequencies of 200,000 customers at T = 39."""
    modified = cls is ModifiedBetaGeoModel
    n = 200_000
    x, _, _ = simulate_bgnbd(n, **FHL05, T=39.0, seed=7, modified=modified)
    counts = np.bincount(x.astype(int), minlength=8)[:8]
    expected = n * bgmath.probability_of_purchases_new(
        list(FHL05.values()), np.arange(8), 39.0, modified=modified
    )
    # Poisson-ish counts: 5 standard deviations.
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), (counts, expected)


def test_simulated_pareto_nbd_mean() -> None:
    """Pareto/NBD E[X(t)] = r beta / (alpha (s - 1)) (1 - (beta / (beta + t))^(s - 1)).

    Schmittlein, Morrison & Colombo (1987), Management Science 33(1), eq. (17).
    """
    r, alpha, s, beta = 0.55, 10.6, 1.6, 11.7
    T = np.linspace(20.0, 80.0, 200_000)
    x, t_x, ages = simulate_pareto_nbd(200_000, r, alpha, s, beta, T, seed=3)
    mean = r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + T)) ** (s - 1))
    assert x.mean() == pytest.approx(mean.mean(), rel=0.02)
    assert np.all((t_x <= ages) & (t_x >= 0)) and np.all(t_x[x == 0] == 0)
    assert np.array_equal(ages, T)


@pytest.mark.slow
@pytest.mark.parametrize("cls", MODELS)
def test_parameter_recovery_one_million(cls: Model, record_property: Any) -> None:
    """1,000,000 simulated customers, ages 20-80 periods: the truth lies in the 95% intervals.

    Each of the four intervals covers with probability 0.95; the seed is fixed, so this
    is deterministic, and a bias in the likelihood (or the simulator) would push the
    truth outside intervals this narrow (about +-1%).
    """
    truth = dict(FHL05)
    n = 1_000_000
    ages = np.random.default_rng(0).integers(20, 81, size=n).astype(float)
    start = time.perf_counter()
    x, t_x, T = simulate_bgnbd(n, **truth, T=ages, seed=1, modified=cls is ModifiedBetaGeoModel)
    simulated = time.perf_counter()
    model = cls().fit(x, t_x, T)
    fitted = time.perf_counter()
    record_property("simulate_seconds", simulated - start)
    record_property("fit_seconds", fitted - simulated)
    for name, value in truth.items():
        lower, upper = model.confidence_intervals_[name]
        assert lower < value < upper, (name, lower, upper)
        assert upper / lower < 1.1  # the intervals are informative
    assert model.converged_ and model.n_customers_ == n


# --- properties -------------------------------------------------------------------------


def _log_uniform(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(np.log(low), np.log(high)).map(np.exp)


PARAMS = st.tuples(
    _log_uniform(0.01, 20.0),
    _log_uniform(0.01, 100.0),
    _log_uniform(0.01, 20.0),
    _log_uniform(0.01, 50.0),
)


@st.composite
def histories(draw: st.DrawFn, max_x: int = 5000) -> tuple[float, float, float]:
    x = draw(st.integers(0, max_x))
    T = draw(st.floats(0.1, 500.0))
    t_x = draw(st.floats(0.0, 1.0)) * T if x > 0 else 0.0
    return float(x), t_x, T


PROPERTY = settings(max_examples=150, derandomize=True, deadline=None, database=None)


@PROPERTY
@given(PARAMS, histories(), st.booleans())
def test_probability_alive_in_unit_interval(
    params: tuple[float, ...], history: tuple[float, float, float], modified: bool
) -> None:
    value = float(bgmath.probability_alive(params, *history, modified=modified))
    assert 0.0 <= value <= 1.0
    if not modified and history[0] == 0:
        assert value == 1.0  # BG/NBD: no repeat purchase, no chance to have left


@PROPERTY
@given(
    PARAMS,
    histories(max_x=3000),
    st.lists(st.floats(0.0, 1000.0), min_size=2, max_size=6),
    st.booleans(),
)
def test_expected_purchases_non_decreasing_in_horizon(
    params: tuple[float, ...],
    history: tuple[float, float, float],
    horizons: list[float],
    modified: bool,
) -> None:
    t = np.sort(np.array(horizons))
    conditional = bgmath.conditional_expected_purchases(params, *history, t, modified=modified)
    new = bgmath.expected_purchases_new(params, t, modified=modified)
    for values in (conditional, new):
        assert np.all(np.isfinite(values)) and np.all(values >= 0)
        assert np.all(np.diff(values) >= -1e-9 * np.abs(values[1:])), values


@PROPERTY
@given(PARAMS, histories(), st.booleans())
def test_loglik_and_gradient_finite(
    params: tuple[float, ...], history: tuple[float, float, float], modified: bool
) -> None:
    loglik, gradient = bgmath.log_likelihood_and_gradient(params, *history, modified=modified)
    assert np.isfinite(loglik) and np.all(np.isfinite(gradient))


@pytest.mark.parametrize("modified", [False, True])
@pytest.mark.parametrize(
    ("params", "history"),
    [
        ((0.2426, 4.4135, 0.7929, 2.4259), (0, 0.0, 38.86)),  # x = 0
        ((0.5, 2.0, 0.2, 0.3), (1, 5.0, 40.0)),  # a + b < 1, x = 1 (b + x - 1 = b)
        ((0.5, 2.0, 0.2, 0.3), (0, 0.0, 40.0)),
        ((0.2426, 4.4135, 0.7929, 2.4259), (5000, 51.9, 52.0)),  # x in the thousands
        ((3.0, 0.01, 0.01, 0.01), (2500, 0.5, 500.0)),
    ],
)
def test_loglik_finite_at_edge_cases(
    params: tuple[float, ...], history: tuple[float, float, float], modified: bool
) -> None:
    loglik, gradient = bgmath.log_likelihood_and_gradient(params, *history, modified=modified)
    assert np.isfinite(loglik) and np.all(np.isfinite(gradient))
    # The same value as the direct formula at moderate precision (mpmath, 40 digits).
    with mp.workdps(40):
        r, alpha, a, b = (mp.mpf(v) for v in params)
        x, t_x, T = int(history[0]), mp.mpf(history[1]), mp.mpf(history[2])
        shift = 1 if modified else 0
        common = mp.gamma(r + x) * alpha**r / mp.gamma(r) / mp.beta(a, b)
        value = common * mp.beta(a, b + x + shift) / (alpha + T) ** (r + x)
        if modified or x > 0:
            value += common * mp.beta(a + 1, b + x + shift - 1) / (alpha + t_x) ** (r + x)
        want = float(mp.log(value))
    assert float(loglik) == pytest.approx(want, rel=1e-11, abs=1e-11)


@PROPERTY
@given(PARAMS, st.lists(histories(), min_size=1, max_size=5), st.booleans())
def test_gradient_matches_central_differences(
    params: tuple[float, ...], rows: list[tuple[float, float, float]], modified: bool
) -> None:
    x, t_x, T = (np.array(column) for column in zip(*rows, strict=True))
    log_params = np.log(params)

    def total(theta: np.ndarray) -> float:
        return float(bgmath.log_likelihood(np.exp(theta), x, t_x, T, modified=modified).sum())

    _, gradient = bgmath.log_likelihood_and_gradient(params, x, t_x, T, modified=modified)
    step = 1e-5
    for j in range(4):
        up, down = log_params.copy(), log_params.copy()
        up[j] += step
        down[j] -= step
        numeric = (total(up) - total(down)) / (2 * step)
        scale = 1e-5 * (1 + abs(total(log_params)))
        assert gradient[:, j].sum() == pytest.approx(numeric, rel=1e-5, abs=scale), j


@PROPERTY
@given(
    PARAMS,
    st.lists(histories(max_x=300), min_size=1, max_size=6),
    st.lists(st.integers(1, 9), min_size=6, max_size=6),
    st.booleans(),
)
def test_total_derivatives_match_row_sums_and_differences(
    params: tuple[float, ...],
    rows: list[tuple[float, float, float]],
    weights: list[int],
    modified: bool,
) -> None:
    """The fit's weighted total: value and gradient equal the per-customer sums, and the
    exact Hessian equals central differences of the exact gradient."""
    x, t_x, T = (np.array(column) for column in zip(*rows, strict=True))
    w = np.array(weights[: x.size], dtype=float)
    data = bgmath.prepare_fit_data(x, t_x, T, w, modified=modified)
    theta = np.array(params)
    value, grad, hess = bgmath.total_loglik_derivatives(theta, data, modified=modified)
    assert hess is not None
    ll, per_row = bgmath.log_likelihood_and_gradient(theta, x, t_x, T, modified=modified)
    assert value == pytest.approx(float(w @ ll), rel=1e-11, abs=1e-11)
    np.testing.assert_allclose(grad * theta, w @ per_row, rtol=1e-8, atol=1e-8)
    numeric = np.empty((4, 4))
    for j in range(4):
        step = np.zeros(4)
        step[j] = 1e-6 * theta[j]
        up = bgmath.total_loglik_derivatives(theta + step, data, modified=modified)[1]
        down = bgmath.total_loglik_derivatives(theta - step, data, modified=modified)[1]
        numeric[:, j] = (up - down) / (2 * step[j])
    scale = np.abs(hess).max() + 1.0
    np.testing.assert_allclose(hess, numeric, rtol=1e-4, atol=1e-6 * scale)


@pytest.mark.parametrize("modified", [False, True])
@pytest.mark.parametrize("params", [(0.2426, 4.4135, 0.7929, 2.4259), (0.5, 2.0, 0.2, 0.3)])
def test_loglik_of_many_rows_equals_row_by_row(params: tuple[float, ...], modified: bool) -> None:
    """Large inputs take the per-purchase-count shortcut; it must change nothing."""
    x, t_x, T = simulate_bgnbd(500, 0.5, 2.0, 0.6, 1.5, T=40.0, seed=5)
    loglik, gradient = bgmath.log_likelihood_and_gradient(params, x, t_x, T, modified=modified)
    for i in range(0, 500, 50):
        part = slice(i, i + 50)
        ll, grad = bgmath.log_likelihood_and_gradient(
            params, x[part], t_x[part], T[part], modified=modified
        )
        np.testing.assert_allclose(loglik[part], ll, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(gradient[part], grad, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(
    st.tuples(
        _log_uniform(0.1, 5.0),
        _log_uniform(1.0, 50.0),
        _log_uniform(0.1, 10.0),
        _log_uniform(0.1, 10.0),
    ),
    histories(max_x=30).filter(lambda h: h[2] >= 1.0),
    st.floats(0.0, 52.0),
    st.booleans(),
)
def test_pmf_sums_to_one_with_the_right_mean(
    params: tuple[float, ...], history: tuple[float, float, float], t: float, modified: bool
) -> None:
    n = np.arange(20_000)
    conditional = bgmath.conditional_probability_of_purchases(
        params, n, *history, t, modified=modified
    )
    new = bgmath.probability_of_purchases_new(params, n, t, modified=modified)
    for pmf in (conditional, new):
        assert np.all(pmf >= 0)
        assert pmf.sum() == pytest.approx(1.0, abs=1e-9)
    mean = bgmath.conditional_expected_purchases(params, *history, t, modified=modified)
    assert float(n @ conditional) == pytest.approx(float(mean), rel=1e-7, abs=1e-12)
    mean_new = bgmath.expected_purchases_new(params, t, modified=modified)
    assert float(n @ new) == pytest.approx(float(mean_new), rel=1e-7, abs=1e-12)


@settings(max_examples=8, derandomize=True, deadline=None, database=None)
@given(st.integers(0, 10_000), st.sampled_from(MODELS))
def test_fit_on_unique_rows_with_counts_equals_fit_on_exploded_rows(seed: int, cls: Model) -> None:
    """Weights are customer counts: compressed and exploded data give the same fit."""
    x, t_x, T = simulate_bgnbd(3000, 0.5, 4.0, 0.8, 2.5, T=30.0, seed=seed)
    t_x = np.round(t_x)  # whole periods: many duplicate rows
    rows, counts = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    assert rows.shape[0] < 1000
    exploded = cls().fit(x, t_x, T)
    compressed = cls().fit(rows[:, 0], rows[:, 1], rows[:, 2], weights=counts)
    for name in cls.param_names:
        assert compressed.params_[name] == pytest.approx(exploded.params_[name], rel=1e-6)
    assert compressed.loglik_ == pytest.approx(exploded.loglik_, rel=1e-10)
    # The objective itself, without compress_rows: unit weights on every row.
    theta = np.log([0.7, 3.0, 1.2, 2.0])
    every = {"x": x, "t_x": t_x, "T": T, "weights": np.ones_like(x)}
    unique = {"x": rows[:, 0], "t_x": rows[:, 1], "T": rows[:, 2], "weights": counts * 1.0}
    value_all, grad_all, hess_all = exploded._negative_loglik_hessian(
        theta, exploded._prepare(every)
    )
    value_unique, grad_unique, hess_unique = exploded._negative_loglik_hessian(
        theta, exploded._prepare(unique)
    )
    assert value_unique == pytest.approx(value_all, rel=1e-12)
    np.testing.assert_allclose(grad_unique, grad_all, rtol=1e-10)
    np.testing.assert_allclose(hess_unique, hess_all, rtol=1e-10)
    # The per-customer likelihood summed directly agrees with the rearranged total.
    per_row, per_row_grad = bgmath.log_likelihood_and_gradient(
        np.exp(theta), x, t_x, T, modified=cls is ModifiedBetaGeoModel
    )
    assert -value_all == pytest.approx(float(per_row.sum()), rel=1e-12)
    np.testing.assert_allclose(-grad_all, per_row_grad.sum(axis=0), rtol=1e-9, atol=1e-9)


# --- the estimator contract -------------------------------------------------------------


PREDICTIONS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("probability_alive", (1, 5.0, 10.0), {}),
    ("expected_purchases", (1, 5.0, 10.0), {"horizon": 10.0}),
    ("expected_purchases_new", (10.0,), {}),
    ("probability_of_purchases", (0, 1, 5.0, 10.0), {"horizon": 10.0}),
    ("probability_of_purchases_new", (0, 10.0), {}),
    ("discounted_expected_purchases", (1, 5.0, 10.0), {"discount_rate": 0.01, "horizon": 5}),
    ("expected_time_to_next_purchase", (1, 5.0, 10.0), {}),
]


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize(("method", "args", "kwargs"), PREDICTIONS)
def test_predictions_before_fit_raise(
    cls: Model, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(NotFittedError, match=cls.__name__):
        getattr(cls(), method)(*args, **kwargs)


@pytest.mark.parametrize("cls", MODELS)
def test_json_round_trip_gives_equal_predictions(cls: Model, cdnow_summary: Any) -> None:
    model = cls().fit(*cdnow_summary, time_unit="week")
    loaded = model_from_json(model.to_json())
    assert type(loaded) is cls and loaded.params_ == model.params_
    assert loaded.time_unit_ == model.time_unit_
    for method, args, kwargs in PREDICTIONS:
        np.testing.assert_array_equal(
            getattr(loaded, method)(*args, **kwargs), getattr(model, method)(*args, **kwargs)
        )


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "message"),
    [
        ([1, 2], [1.0, 5.0], [3.0, 4.0], "recency 5.0 is greater than T 4.0"),
        ([-1], [0.0], [3.0], "not a whole number"),
        ([1.5], [1.0], [3.0], "not a whole number"),
        ([0], [1.0], [3.0], "with frequency 0"),
        ([0], [0.0], [-1.0], "T -1.0"),
        ([1], [np.nan], [3.0], "missing value"),
        ([1, 2], [1.0], [3.0, 3.0], "different lengths"),
    ],
)
@pytest.mark.parametrize("cls", MODELS)
def test_fit_rejects_bad_input(
    cls: Model, frequency: Any, recency: Any, T: Any, message: str
) -> None:
    with pytest.raises(DataValidationError, match=message):
        cls().fit(frequency, recency, T)


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "message"),
    [
        ("probability_alive", (1, 12.0, 10.0), {}, "greater than T"),
        ("expected_purchases", (1, 5.0, 10.0), {"horizon": -1.0}, "horizon must be"),
        ("expected_purchases", (1, 5.0, 10.0), {"horizon": 5.0, "start": 6.0}, "start is"),
        ("probability_of_purchases", (1.5, 1, 5.0, 10.0), {"horizon": 5.0}, "whole numbers"),
        ("probability_of_purchases_new", (-1, 10.0), {}, "whole numbers"),
        ("expected_purchases_new", (np.inf,), {}, "horizon must be"),
        (
            "discounted_expected_purchases",
            (1, 5.0, 10.0),
            {"discount_rate": 0.1, "horizon": 2.5},
            "whole number of periods",
        ),
        (
            "discounted_expected_purchases",
            (1, 5.0, 10.0),
            {"discount_rate": -1.0, "horizon": 2},
            "discount_rate",
        ),
    ],
)
def test_predictions_reject_bad_input(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    model = _fitted(BetaGeoModel, FHL05)
    with pytest.raises(DataValidationError, match=message):
        getattr(model, method)(*args, **kwargs)


@pytest.mark.parametrize("cls", MODELS)
def test_predictions_broadcast(cls: Model) -> None:
    model = _fitted(cls, FHL05)
    x = np.array([[0], [2], [7]])
    t_x = np.array([[0.0], [30.43], [35.0]])
    horizon = np.array([1.0, 13.0, 26.0, 52.0])
    assert model.expected_purchases(x, t_x, 38.86, horizon=horizon).shape == (3, 4)
    assert model.probability_of_purchases(np.arange(5), 2, 30.43, 38.86, horizon=26).shape == (5,)
    assert model.probability_alive(x, t_x, 38.86).shape == (3, 1)
    assert model.probability_of_purchases_new(np.arange(3)[:, None], horizon).shape == (3, 4)
    for value in (
        model.expected_purchases_new(39.0),
        model.expected_purchases(2, 30.43, 38.86, horizon=39.0),
        model.probability_alive(2, 30.43, 38.86),
        model.probability_of_purchases(1, 2, 30.43, 38.86, horizon=39.0),
        model.probability_of_purchases_new(1, 39.0),
        model.discounted_expected_purchases(2, 30.43, 38.86, discount_rate=0.01, horizon=5),
        model.expected_time_to_next_purchase(2, 30.43, 38.86),
    ):
        assert isinstance(value, np.ndarray) and value.shape == ()


@pytest.mark.parametrize("cls", MODELS)
def test_window_and_discounting_are_consistent(cls: Model) -> None:
    """Purchases in (T + s, T + h] are a difference; discounting at 0 sums the periods."""
    model = _fitted(cls, FHL05)
    history = (np.array([0, 2, 7]), np.array([0.0, 30.43, 35.0]), 38.86)
    whole = model.expected_purchases(*history, horizon=52)
    first = model.expected_purchases(*history, horizon=20)
    rest = model.expected_purchases(*history, horizon=52, start=20)
    np.testing.assert_allclose(first + rest, whole, rtol=1e-12)
    undiscounted = model.discounted_expected_purchases(*history, discount_rate=0.0, horizon=52)
    np.testing.assert_allclose(undiscounted, whole, rtol=1e-12)
    by_hand = sum(
        model.expected_purchases(*history, horizon=k, start=k - 1) / 1.01**k for k in range(1, 53)
    )
    discounted = model.discounted_expected_purchases(*history, discount_rate=0.01, horizon=52)
    np.testing.assert_allclose(discounted, by_hand, rtol=1e-12)
    more = model.discounted_expected_purchases(*history, discount_rate=0.05, horizon=52)
    assert np.all(more < discounted) and np.all(discounted < whole)


@pytest.mark.parametrize("cls", MODELS)
def test_expected_time_to_next_purchase(cls: Model) -> None:
    """E[1/lambda] under the gamma posterior (shape r + x, rate alpha + T); inf if r + x <= 1."""
    model = _fitted(cls, FHL05)
    x = np.array([0.0, 1.0, 2.0, 10.0])
    got = model.expected_time_to_next_purchase(x, np.minimum(x, 30.0), 38.86)
    want = stats.invgamma.mean(FHL05["r"] + x, scale=FHL05["alpha"] + 38.86)
    assert np.isinf(got[0])  # r + x = 0.2426 <= 1
    np.testing.assert_allclose(got[1:], want[1:], rtol=1e-12)


def test_mbgnbd_customers_without_repeat_purchases_may_be_gone() -> None:
    """[BDF07]: P(alive | x = 0) < 1 in the MBG/NBD, = 1 in the BG/NBD."""
    mbg = _fitted(ModifiedBetaGeoModel, BTYDPLUS_MBG)
    bg = _fitted(BetaGeoModel, FHL05)
    assert float(mbg.probability_alive(0, 0.0, 38.86)) < 1.0
    assert float(bg.probability_alive(0, 0.0, 38.86)) == 1.0


def test_one_customer_at_a_time_gives_each_customer_the_batch_value() -> None:
    """Real-time scoring evaluates one customer at a time and keeps the discounted sum of
    each (x, T) pair: every value equals the one the whole batch gives, computed or kept."""
    from segvalue.models import _bgnbd_math as math_module

    rng = np.random.default_rng(11)
    x = rng.integers(0, 6, 40).astype(float)
    big_t = rng.integers(10, 60, 40).astype(float)
    t_x = np.where(x > 0, rng.uniform(0, 1, 40) * big_t, 0.0)
    params = (0.24, 4.4, 0.79, 2.43)
    for modified in (False, True):
        batch = math_module.discounted_expected_purchases(
            params, x, t_x, big_t, discount_rate=0.002, horizon=52, modified=modified
        )
        math_module._PAIR_SUMS.clear()
        for _ in range(2):  # computed, then kept
            alone = [
                float(
                    math_module.discounted_expected_purchases(
                        params,
                        x[i],
                        t_x[i],
                        big_t[i],
                        discount_rate=0.002,
                        horizon=52,
                        modified=modified,
                    )
                )
                for i in range(x.size)
            ]
            assert alone == batch.tolist()
        assert math_module._PAIR_SUMS  # kept
    other = math_module.discounted_expected_purchases(
        (0.3, 4.4, 0.79, 2.43), x[0], t_x[0], big_t[0], discount_rate=0.002, horizon=52
    )
    assert float(other) != batch[0] or x[0] == 0  # other parameters: not the kept value
