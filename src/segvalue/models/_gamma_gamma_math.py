"""Gamma-Gamma spend model math: pure functions of (params, arrays), numerically stable.

Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base
Analysis", *Journal of Marketing Research* 42(4), 415-430, and Hardie's note "The
Gamma-Gamma Model of Monetary Value" (2013; equation numbers refer to the note).

Notation. A customer's transaction values are i.i.d. ``Gamma(p, nu)`` (shape p, rate nu)
around her unobserved mean ``p / nu``; across customers ``nu ~ Gamma(q, gamma)``. Her
history is ``x`` repeat transactions with mean value ``m`` (``m_x`` in the note).
``params`` is always ``(p, q, gamma)``; inputs are assumed valid (the estimator in
:mod:`segvalue.models.gamma_gamma` validates them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import digamma, gammaln, polygamma

__all__ = [
    "expected_spend",
    "expected_spend_log_gradient",
    "expected_spend_new",
    "log_likelihood",
    "log_likelihood_gradient",
    "prepare_fit_data",
    "spend_frequency_correlation",
    "total_loglik_derivatives",
    "total_loglik_gradient",
]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Params = Sequence[float] | FloatArray


def _f(values: ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def log_likelihood(params: Params, x: ArrayLike, m: ArrayLike) -> FloatArray:
    """Log density of each repeat customer's mean spend m given x, Hardie (2013) eqs. (3)-(4).

    ``f(m | p, q, gamma; x) = G(px+q)/(G(px) G(q)) * gamma^q m^(px-1) x^(px)
    / (gamma + m x)^(px+q)`` (G the gamma function), for x >= 1 and m > 0.

    Parameters
    ----------
    params
        ``(p, q, gamma)``.
    x, m
        Repeat transactions (>= 1) and their mean value (> 0).

    Returns
    -------
    numpy.ndarray
        One log-likelihood per customer.

    Examples
    --------
    >>> round(float(log_likelihood((6.25, 3.74, 15.44), [2], [22.345])[0]), 4)
    -3.5512
    """
    p, q, gamma = np.asarray(params, dtype=np.float64)
    x, m = _f(x), _f(m)
    px, mx = p * x, m * x
    # q log(gamma/(gamma+mx)) + px log(mx/(gamma+mx)) - log m: the same terms, grouped
    # so that no large logarithms cancel.
    return _f(
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        - q * np.log1p(mx / gamma)
        - px * np.log1p(gamma / mx)
        - np.log(m)
    )


def log_likelihood_gradient(
    params: Params, x: ArrayLike, m: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Log-likelihood (Hardie 2013 eqs. 3-4) and its exact gradient in (p, q, gamma).

    ``d/dp = x [psi(px+q) - psi(px) + log(m x / (gamma + m x))]``,
    ``d/dq = psi(px+q) - psi(q) + log(gamma / (gamma + m x))``,
    ``d/dgamma = q/gamma - (px+q)/(gamma + m x)``.

    Parameters
    ----------
    params
        ``(p, q, gamma)``.
    x, m
        Repeat transactions (>= 1) and their mean value (> 0).

    Returns
    -------
    loglik : numpy.ndarray
        Shape ``(customers,)``.
    gradient : numpy.ndarray
        Shape ``(customers, 3)``.

    Examples
    --------
    >>> ll, grad = log_likelihood_gradient((6.25, 3.74, 15.44), [2, 1], [22.345, 11.77])
    >>> grad.shape
    (2, 3)
    """
    p, q, gamma = np.asarray(params, dtype=np.float64)
    x, m = _f(x), _f(m)
    px, mx = p * x, m * x
    psi_sum = digamma(px + q)
    d_p = x * (psi_sum - digamma(px) - np.log1p(gamma / mx))
    d_q = psi_sum - digamma(q) - np.log1p(mx / gamma)
    d_gamma = q / gamma - (px + q) / (gamma + mx)
    return log_likelihood(params, x, m), _f(np.column_stack([d_p, d_q, d_gamma]))


@dataclass(frozen=True)
class FitData:
    """(x, m, weight) rows arranged for :func:`total_loglik_gradient` (built once per fit).

    The gamma and digamma terms depend on x alone and are summed per distinct x (a few
    dozen values); only log(1 + m x / gamma) and its kin are evaluated per row.
    """

    counts: FloatArray  # the distinct x
    weight_per_count: FloatArray
    mx: FloatArray  # per row: m x, the weight and the weight times x
    weight: FloatArray
    weight_x: FloatArray
    weighted_log_m: float  # sum of weight * log m: a constant of the likelihood


def prepare_fit_data(x: ArrayLike, m: ArrayLike, weights: ArrayLike) -> FitData:
    """Arrange repeat customers' (x, m, weight) rows for :func:`total_loglik_gradient`.

    Examples
    --------
    >>> data = prepare_fit_data([2, 1, 2], [22.345, 11.77, 30.0], [1.0, 2.0, 1.0])
    >>> data.counts.tolist(), data.weight_per_count.tolist()
    ([1.0, 2.0], [2.0, 2.0])
    """
    x, m, w = (_f(v).ravel() for v in (x, m, weights))
    counts, index = np.unique(x, return_inverse=True)
    return FitData(
        counts=counts,
        weight_per_count=np.asarray(
            np.bincount(index.ravel(), weights=w, minlength=counts.size), dtype=np.float64
        ),
        mx=m * x,
        weight=w,
        weight_x=w * x,
        weighted_log_m=float(w @ np.log(m)),
    )


def total_loglik_gradient(params: Params, data: FitData) -> tuple[float, FloatArray]:
    """Weighted total of :func:`log_likelihood` and its gradient in (p, q, gamma).

    :func:`total_loglik_derivatives` without the Hessian.

    Parameters
    ----------
    params
        ``(p, q, gamma)``.
    data
        From :func:`prepare_fit_data`.

    Returns
    -------
    value : float
    gradient : numpy.ndarray, shape (3,)

    Examples
    --------
    >>> params, x, m = (6.25, 3.74, 15.44), [2, 1], [22.345, 11.77]
    >>> value, grad = total_loglik_gradient(params, prepare_fit_data(x, m, [1.0, 1.0]))
    >>> bool(np.isclose(value, log_likelihood(params, x, m).sum()))
    True
    """
    value, grad, _ = total_loglik_derivatives(params, data, hessian=False)
    return value, grad


def total_loglik_derivatives(
    params: Params, data: FitData, *, hessian: bool = True
) -> tuple[float, FloatArray, FloatArray | None]:
    """Weighted total of :func:`log_likelihood`, its gradient and exact Hessian in (p, q, gamma).

    The same sums as :func:`log_likelihood_gradient` over the rows, grouped as

        LL = sum_x W_x [lnG(px + q) - lnG(px) - lnG(q)] - q sum_i w_i log1p(m_i x_i / gamma)
             - p sum_i w_i x_i log1p(gamma / (m_i x_i)) - sum_i w_i log m_i

    (W_x: the weight of the customers with x repeat transactions), so that the gamma,
    digamma and trigamma functions are evaluated once per distinct x, not once per
    customer. With S_k = sum_i w_i / (gamma + m_i x_i)^k and S'_k the same sum weighted by
    w_i x_i, the second derivatives are

        d2/dp2 = sum_x W_x x^2 [psi'(px + q) - psi'(px)]
        d2/dp dq = sum_x W_x x psi'(px + q)
        d2/dq2 = sum_x W_x psi'(px + q) - W psi'(q)
        d2/dp dgamma = -S'_1
        d2/dq dgamma = W / gamma - S_1
        d2/dgamma2 = -q W / gamma^2 + p S'_2 + q S_2

    Parameters
    ----------
    params
        ``(p, q, gamma)``.
    data
        From :func:`prepare_fit_data`.
    hessian
        False to skip the Hessian (returned as None).

    Returns
    -------
    value : float
    gradient : numpy.ndarray, shape (3,)
    hessian : numpy.ndarray, shape (3, 3), or None

    Examples
    --------
    >>> data = prepare_fit_data([2, 1], [22.345, 11.77], [1.0, 1.0])
    >>> value, grad, hess = total_loglik_derivatives((6.25, 3.74, 15.44), data)
    >>> grad.shape, hess.shape, bool(np.allclose(hess, hess.T))
    ((3,), (3, 3), True)
    """
    p, q, gamma = (float(v) for v in np.asarray(params, dtype=np.float64))
    xs, w_x = data.counts, data.weight_per_count
    total_weight = float(w_x.sum())
    px = p * xs
    value = float(w_x @ (gammaln(px + q) - gammaln(px))) - total_weight * float(gammaln(q))
    psi_sum = digamma(px + q)
    grad = np.array(
        [
            float((w_x * xs) @ (psi_sum - digamma(px))),
            float(w_x @ psi_sum) - total_weight * float(digamma(q)),
            q / gamma * total_weight,
        ]
    )
    mx, w, wx = data.mx, data.weight, data.weight_x
    log_gamma_share = np.log1p(mx / gamma)  # log((gamma + m x) / gamma)
    log_spend_share = np.log1p(gamma / mx)  # log((gamma + m x) / (m x))
    inverse_total = 1.0 / (gamma + mx)
    sum_gamma_share = float(w @ log_gamma_share)
    sum_spend_share = float(wx @ log_spend_share)
    inverse_sum, inverse_sum_x = float(w @ inverse_total), float(wx @ inverse_total)
    value -= q * sum_gamma_share + p * sum_spend_share + data.weighted_log_m
    grad[0] -= sum_spend_share
    grad[1] -= sum_gamma_share
    grad[2] -= p * inverse_sum_x + q * inverse_sum
    if not hessian:
        return value, grad, None
    trigamma_sum = polygamma(1, px + q)
    squared = inverse_total * inverse_total
    d_pp = float((w_x * xs * xs) @ (trigamma_sum - polygamma(1, px)))
    d_pq = float((w_x * xs) @ trigamma_sum)
    d_qq = float(w_x @ trigamma_sum) - total_weight * float(polygamma(1, q))
    d_pg = -inverse_sum_x
    d_qg = total_weight / gamma - inverse_sum
    d_gg = -q * total_weight / gamma**2 + p * float(wx @ squared) + q * float(w @ squared)
    hess = np.array([[d_pp, d_pq, d_pg], [d_pq, d_qq, d_qg], [d_pg, d_qg, d_gg]])
    return value, grad, hess


def expected_spend_new(params: Params) -> float:
    """Population mean transaction value ``p gamma / (q - 1)`` (infinite when q <= 1).

    The mean of ``p / nu`` with ``nu ~ Gamma(q, gamma)``; Hardie (2013) eq. (5) with x = 0.

    Parameters
    ----------
    params
        ``(p, q, gamma)``.

    Returns
    -------
    float

    Examples
    --------
    >>> round(expected_spend_new((6.25, 3.74, 15.44)), 2)
    35.22
    """
    p, q, gamma = np.asarray(params, dtype=np.float64)
    return float(p * gamma / (q - 1.0)) if q > 1.0 else float("inf")


def expected_spend(params: Params, x: ArrayLike, m: ArrayLike) -> FloatArray:
    """Conditional expected transaction value given (x, m), Hardie (2013) eq. (5).

    ``E[M | p, q, gamma; m, x] = (gamma + m x) p / (p x + q - 1)``, a weighted mean of the
    population mean ``p gamma / (q - 1)`` (weight ``(q-1)/(px+q-1)``) and the observed
    mean m; the population mean for x = 0 (m is then ignored).

    Parameters
    ----------
    params
        ``(p, q, gamma)``.
    x, m
        Repeat transactions (>= 0) and their mean value (> 0 when x > 0).

    Returns
    -------
    numpy.ndarray
        Broadcast shape of x and m; infinite where ``px + q <= 1``.

    Examples
    --------
    >>> expected_spend((6.25, 3.74, 15.44), [2, 1, 0], [22.345, 11.77, 0.0]).round(2)
    array([24.66, 18.92, 35.22])
    """
    p, _, gamma, xb, mb, denominator, finite = _spend_terms(params, x, m)
    safe = np.where(finite, denominator, 1.0)
    return _f(np.where(finite, (gamma + mb * xb) * p / safe, np.inf))


def _spend_terms(
    params: Params, x: ArrayLike, m: ArrayLike
) -> tuple[float, float, float, FloatArray, FloatArray, FloatArray, np.ndarray[Any, Any]]:
    """p, q, gamma, x and m broadcast (m zero where x = 0), p x + q - 1 and where it is > 0."""
    p, q, gamma = (float(v) for v in np.asarray(params, dtype=np.float64))
    xb, mb = np.broadcast_arrays(_f(x), _f(m))
    mb = np.where(xb > 0, mb, 0.0)
    denominator = p * xb + q - 1.0
    return p, q, gamma, xb, mb, denominator, denominator > 0


def expected_spend_log_gradient(params: Params, x: ArrayLike, m: ArrayLike) -> FloatArray:
    """Gradient of log :func:`expected_spend` in the log-parameters (log p, log q, log gamma).

    From log E = log p + log(gamma + m x) - log(p x + q - 1) (Hardie 2013, eq. 5):

        d log E / d log p = (q - 1) / (p x + q - 1)
        d log E / d log q = -q / (p x + q - 1)
        d log E / d log gamma = gamma / (gamma + m x)

    (m is ignored where x = 0, as in :func:`expected_spend`). NaN where the expected
    spend is infinite (``p x + q <= 1``).

    Parameters
    ----------
    params
        ``(p, q, gamma)``.
    x, m
        Repeat transactions (>= 0) and their mean value (> 0 when x > 0).

    Returns
    -------
    numpy.ndarray
        Shape ``(3, n)``: one row per parameter, one column per customer.

    Examples
    --------
    >>> expected_spend_log_gradient((6.25, 3.74, 15.44), [0, 2], [0.0, 22.345]).round(4)
    array([[ 1.    ,  0.1798],
           [-1.365 , -0.2454],
           [ 1.    ,  0.2568]])
    """
    _, q, gamma, xb, mb, denominator, finite = _spend_terms(params, x, m)
    xb, mb, denominator = (v.ravel() for v in (xb, mb, denominator))
    finite = finite.ravel()
    inverse = 1.0 / np.where(finite, denominator, 1.0)
    gradient = np.empty((3, xb.size))
    np.multiply(q - 1.0, inverse, out=gradient[0])
    np.multiply(-q, inverse, out=gradient[1])
    np.divide(gamma, gamma + mb * xb, out=gradient[2])
    gradient[:, ~finite] = np.nan
    return gradient


def spend_frequency_correlation(
    x: ArrayLike, m: ArrayLike, weights: ArrayLike | None = None
) -> float:
    """Pearson correlation between x and m over the repeat customers (x > 0).

    The Gamma-Gamma model assumes spend is independent of the transaction process;
    Fader, Hardie & Lee (2005) and Hardie (2013) check it with this correlation (0.11
    for the CDNOW sample). NaN when there are fewer than two repeat customers or a column
    is constant.

    Parameters
    ----------
    x, m
        Repeat transactions and their mean value.
    weights
        Customers per row (default 1 each).

    Returns
    -------
    float

    Examples
    --------
    >>> round(spend_frequency_correlation([1, 2, 3, 0], [10.0, 12.0, 15.0, 0.0]), 4)
    0.9934
    """
    xs, ms = _f(x).ravel(), _f(m).ravel()
    w = np.ones(xs.size) if weights is None else _f(weights).ravel()
    keep = (xs > 0) & (w > 0)
    xs, ms, w = xs[keep], ms[keep], w[keep]
    if xs.size < 2:
        return float("nan")
    dx = xs - np.average(xs, weights=w)
    dm = ms - np.average(ms, weights=w)
    sxx, smm = float(w @ dx**2), float(w @ dm**2)
    if sxx <= 0 or smm <= 0:
        return float("nan")
    return float(w @ (dx * dm)) / float(np.sqrt(sxx * smm))
