"""The optimiser plumbing shared by every model: de-duplication and log-scale derivatives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segvalue.models._fit import compress_rows, factorize, log_scale_derivatives, unique_rows

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
