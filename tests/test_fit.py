"""The optimiser plumbing shared by every model: de-duplication, log-scale derivatives and
the trust-region Newton method."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segvalue.errors import ConvergenceError
from segvalue.models._fit import (
    _Evaluations,
    _newton,
    _trust_region_step,
    compress_rows,
    factorize,
    fit_log_params,
    log_scale_derivatives,
    unique_rows,
)

# Columns of every shape unique_rows takes a different path for: whole numbers in a short
# range (lookup table), values on a regular grid such as days / 7 (verified table), and
# arbitrary or huge floats (argsort).
column = st.one_of(
    st.lists(st.integers(0, 30).map(float), min_size=1, max_size=40),
    st.lists(st.integers(0, 400).map(lambda d: d / 7.0), min_size=1, max_size=40),
    st.lists(st.integers(0, 400).map(lambda d: d / 30.4375), min_size=1, max_size=40),
    st.lists(st.floats(0.0, 1e6, allow_nan=False), min_size=1, max_size=40),
    st.lists(st.sampled_from([0.0, 1e-300, 1e300, 2.0**60, 2.0**60 + 2**8]), min_size=1),
)


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(st.lists(column, min_size=1, max_size=4))
def test_unique_rows_equals_numpy_unique(columns: list[list[float]]) -> None:
    size = min(len(c) for c in columns)
    arrays = [np.array(c[:size]) for c in columns]
    unique, inverse = unique_rows(*arrays)
    want, want_inverse = np.unique(np.column_stack(arrays), axis=0, return_inverse=True)
    np.testing.assert_array_equal(unique, want)
    np.testing.assert_array_equal(inverse, want_inverse.ravel())


@settings(max_examples=200, derandomize=True, deadline=None, database=None)
@given(column)
def test_factorize_equals_numpy_unique(values: list[float]) -> None:
    distinct, codes = factorize(np.array(values))
    want, want_codes = np.unique(np.array(values), return_inverse=True)
    np.testing.assert_array_equal(distinct, want)
    np.testing.assert_array_equal(codes, want_codes)


def test_unique_rows_on_a_million_rows_of_day_resolution_data() -> None:
    rng = np.random.default_rng(3)
    x = rng.poisson(1.0, 1_000_000).astype(float)
    t = np.where(x > 0, rng.integers(1, 700, x.size) / 7.0, 0.0)
    unique, inverse = unique_rows(x, t)
    np.testing.assert_array_equal(unique[inverse], np.column_stack([x, t]))
    assert np.all(np.diff(unique[:, 0]) >= 0)
    assert unique.shape[0] == np.unique(x * 1000 + t * 7).size


def test_compress_rows_sums_weights_and_keeps_integer_columns() -> None:
    x, t, counts = compress_rows(
        np.array([2, 1, 2]), np.array([5.0, 3.0, 5.0]), weights=np.array([1.5, 2.0, 0.5])
    )
    assert x.dtype == np.int64
    assert (x.tolist(), t.tolist(), counts.tolist()) == ([1, 2], [3.0, 5.0], [2.0, 2.0])


def test_log_scale_derivatives_match_differences() -> None:
    """f(theta) = theta0^2 theta1^3 in phi = log theta: f = exp(2 phi0 + 3 phi1)."""
    theta = np.array([1.5, 0.7])

    def derivatives(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = t[0] ** 2 * t[1] ** 3
        grad = np.array([2 * f / t[0], 3 * f / t[1]])
        hess = np.array([[2 * f / t[0] ** 2, 6 * f / (t[0] * t[1])], [0.0, 6 * f / t[1] ** 2]])
        hess[1, 0] = hess[0, 1]
        return grad, hess

    grad_log, hess_log = log_scale_derivatives(theta, *derivatives(theta))
    f = theta[0] ** 2 * theta[1] ** 3
    np.testing.assert_allclose(grad_log, [2 * f, 3 * f])
    np.testing.assert_allclose(hess_log, [[4 * f, 6 * f], [6 * f, 9 * f]])
    assert hess_log[0, 1] == pytest.approx(hess_log[1, 0])


# --- trust-region Newton ---------------------------------------------------------------


def _rosenbrock_in_logs(z: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Rosenbrock's function of x = exp(z) (minimum 0 at x = 1, z = 0), exact derivatives."""
    from scipy import optimize

    x = np.exp(z)
    grad, hess = optimize.rosen_der(x), optimize.rosen_hess(x)
    return float(optimize.rosen(x)), *log_scale_derivatives(x, grad, hess)


def _double_well(z: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """z0^4 / 4 - z0^2 / 2 + z1^2: minima at z = (-1, 0), (1, 0); a saddle at 0."""
    value = z[0] ** 4 / 4 - z[0] ** 2 / 2 + z[1] ** 2
    grad = np.array([z[0] ** 3 - z[0], 2 * z[1]])
    return float(value), grad, np.diag([3 * z[0] ** 2 - 1, 2.0])


def _scipy_trust_exact(function: object, start: np.ndarray) -> np.ndarray:
    from scipy import optimize

    def value_and_grad(z: np.ndarray) -> tuple[float, np.ndarray]:
        return function(z)[:2]  # type: ignore[operator, no-any-return]

    def hess(z: np.ndarray) -> np.ndarray:
        return function(z)[2]  # type: ignore[operator, no-any-return]

    return np.asarray(
        optimize.minimize(
            value_and_grad,
            start,
            jac=True,
            hess=hess,
            method="trust-exact",
            options={"gtol": 1e-9, "maxiter": 200},
        ).x
    )


@pytest.mark.parametrize(
    "start", [[-1.0, 1.0], [1.0, -2.0], [2.0, 0.5], [0.5, 0.5, -0.5, 1.0], [-1.5] * 6]
)
def test_newton_finds_rosenbrock_minimum_like_scipy_trust_exact(start: list[float]) -> None:
    """Indefinite Hessians on the way (a curved valley): the same optimum as scipy."""
    result = _newton(_Evaluations(_rosenbrock_in_logs), np.array(start), tolerance=1e-6)
    assert result.success, result.message
    assert 0 < result.nit < 200
    reference = _scipy_trust_exact(_rosenbrock_in_logs, np.array(start))
    np.testing.assert_allclose(result.x, reference, atol=1e-6)
    np.testing.assert_allclose(result.x, 0.0, atol=1e-6)
    assert np.linalg.norm(_rosenbrock_in_logs(result.x)[1]) < 1e-9


def test_newton_leaves_a_saddle_point_by_the_hard_case() -> None:
    """At (0, 0.5) the gradient has no part along the negative-curvature direction z0.

    A Newton step would go to the saddle (0, 0); the exact subproblem solution walks along
    z0 to the region's edge instead (Nocedal & Wright 2006, section 4.3), reaching a
    minimum, as scipy's trust-exact does (which of the two minima depends on the sign of
    an eigenvector: compare |z0|).
    """
    start = np.array([0.0, 0.5])
    result = _newton(_Evaluations(_double_well), start, tolerance=1e-6)
    assert result.success, result.message
    reference = _scipy_trust_exact(_double_well, start)
    np.testing.assert_allclose(np.abs(result.x), np.abs(reference), atol=1e-6)
    np.testing.assert_allclose(np.abs(result.x), [1.0, 0.0], atol=1e-8)
    assert result.fun == pytest.approx(-0.25)


def _check_optimal_step(
    grad: np.ndarray, hess: np.ndarray, radius: float, step: np.ndarray, on_boundary: bool
) -> float:
    """Nocedal & Wright (2006) Theorem 4.1: p solves the subproblem iff for some lam >= 0,
    (H + lam I) p = -g, lam (radius - ||p||) = 0 and H + lam I is positive semidefinite.
    Returns lam."""
    length = float(np.linalg.norm(step))
    assert length <= radius * (1 + 1e-9)
    scale = 1.0 + float(np.abs(hess).max()) + float(np.linalg.norm(grad)) / radius
    if on_boundary:
        assert length == pytest.approx(radius, rel=1e-9)
        lam = -float(step @ (hess @ step + grad)) / length**2
    else:
        lam = 0.0
    np.testing.assert_allclose((hess + lam * np.eye(grad.size)) @ step, -grad, atol=1e-8 * scale)
    assert lam >= -1e-9 * scale
    assert np.linalg.eigvalsh(hess + lam * np.eye(grad.size))[0] >= -1e-8 * scale
    return lam


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(
    st.integers(1, 6),
    st.integers(0, 2**32 - 1),
    st.floats(1e-3, 1e3),
    st.sampled_from(["random", "definite", "hard", "nearly hard"]),
)
def test_trust_region_step_satisfies_the_optimality_conditions(
    size: int, seed: int, radius: float, kind: str
) -> None:
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(size, size)))[0]
    eigenvalues = np.sort(rng.normal(0.0, 3.0, size))
    if kind == "definite":
        eigenvalues = np.abs(eigenvalues) + 0.1
    coefficients = rng.normal(0.0, 3.0, size)
    if kind in ("hard", "nearly hard"):  # (almost) no gradient along the lowest
        # eigenvector, and a small rest: lam at or just above -e_min
        coefficients[0] = 0.0 if kind == "hard" else 1e-9 * coefficients[0]
        coefficients *= rng.uniform(0.0, 0.1)
    hess = basis @ np.diag(eigenvalues) @ basis.T
    hess = 0.5 * (hess + hess.T)
    grad = basis @ coefficients
    step, on_boundary = _trust_region_step(grad, hess, radius)
    _check_optimal_step(grad, hess, radius, step, on_boundary)


def test_trust_region_step_in_the_hard_case() -> None:
    """H = diag(-2, 1, 3), g = (0, 1, 1): lam = 2 and the step reaches the edge along e0."""
    hess, grad = np.diag([-2.0, 1.0, 3.0]), np.array([0.0, 1.0, 1.0])
    step, on_boundary = _trust_region_step(grad, hess, 5.0)
    assert on_boundary
    assert _check_optimal_step(grad, hess, 5.0, step, on_boundary) == pytest.approx(2.0)
    np.testing.assert_allclose(step[1:], [-1 / 3, -1 / 5])
    assert abs(step[0]) == pytest.approx(np.sqrt(25 - 1 / 9 - 1 / 25))


def test_newton_never_reports_the_overflow_penalty_as_an_optimum() -> None:
    """Overflow everywhere (value and gradient not finite): Newton stops at once on the
    penalty value, and no optimiser's stop there counts as convergence."""

    def evaluate(z: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        return float("inf"), np.full(1, np.nan), np.full((1, 1), np.nan)

    stuck = _newton(_Evaluations(evaluate), np.array([6.0]), tolerance=1e-3)
    assert stuck.fun >= 1e299
    assert stuck.nit == 0
    with pytest.raises(ConvergenceError):
        fit_log_params(lambda z: evaluate(z)[:2], [6.0], model="toy", hessian=evaluate)
