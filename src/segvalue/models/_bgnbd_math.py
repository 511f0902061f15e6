"""BG/NBD and MBG/NBD mathematics: log-likelihoods with exact gradients, and predictions.

Pure functions of ``params = (r, alpha, a, b)`` and numpy arrays that broadcast against
each other. Everything is computed in log space where it matters, so the values stay
finite for customers without repeat purchases (x = 0), for a + b < 1 and for x in the
thousands.

Both models share one story (Fader, Hardie & Lee 2005): while alive, a customer buys as
a Poisson process with rate lambda ~ Gamma(r, alpha); right after a purchase the customer
drops out with probability p ~ Beta(a, b). In the BG/NBD the first purchase (time 0)
cannot be followed by a dropout; in the MBG/NBD (Batislam, Denizel & Filiztekin 2007) it
can, so a customer without repeat purchases may already be gone.

Given a history (x, t_x, T), a customer alive at T looks like a newly acquired BG/NBD
customer with updated parameters (r + x, alpha + T, a, b + x) (BG/NBD) or
(r + x, alpha + T, a, b + x + 1) (MBG/NBD); a dead one buys nothing more. Every
conditional prediction here is that two-point mixture, weighted by P(alive).

References
----------
.. [FHL05] P. S. Fader, B. G. S. Hardie and K. L. Lee (2005), "'Counting Your Customers'
   the Easy Way: An Alternative to the Pareto/NBD Model", Marketing Science 24(2),
   275-284.
.. [H05] B. G. S. Hardie, P. S. Fader and K. L. Lee (2005), "Implementing the BG/NBD
   Model for Customer Base Analysis in Excel" (the log-sum-exp form of the likelihood).
.. [FHL07] P. S. Fader, B. G. S. Hardie and K. L. Lee (2007), "Deriving the Conditional
   PMF of the BG/NBD Model" (note).
.. [BDF07] E. P. Batislam, M. Denizel and A. Filiztekin (2007), "Empirical validation and
   comparison of models for customer base analysis", International Journal of Research
   in Marketing 24(3), 201-209.
.. [AS64] M. Abramowitz and I. A. Stegun (1964), Handbook of Mathematical Functions,
   15.3.3 (Euler's transformation of the hypergeometric function).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from segvalue.models._fit import factorize, unique_rows

__all__ = [
    "conditional_expected_purchases",
    "conditional_probability_of_purchases",
    "discounted_expected_purchases",
    "expected_purchases_between",
    "expected_purchases_new",
    "expected_time_to_next_purchase",
    "log_likelihood",
    "log_likelihood_and_gradient",
    "prepare_fit_data",
    "probability_alive",
    "probability_of_purchases_new",
    "total_loglik_derivatives",
]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Params = Sequence[float] | FloatArray

# |a - 1| below this: eq. (7) is 0/0 at a = 1; interpolate across it (or integrate).
_A_NEAR_ONE = 1e-4
# |a + b - 1| below this: eq. (7) is 0 * inf at a + b = 1; interpolate in b likewise.
_C_NEAR_ZERO = 1e-9
# From this b on, scipy's hyp2f1 loses accuracy (then overflows) as z -> 1 and the
# quadrature of eq. (7)'s integral representation is accurate: use it there.
_B_LARGE = 50.0
_ONE_MINUS_Z_SMALL = 1e-2
# Terms of the power series of eq. (7) for small t/alpha (ratio <= 1/2: 2^-60 ~ 1e-18).
_SERIES_TERMS = 60
# Memory bound (elements) for the quadrature grids.
_CHUNK_ELEMENTS = 2_000_000
# Elements per block of the discounting grid: each temporary stays in the cache (and a
# process's first blocks fault in little fresh memory), ~2x faster than one big block.
_GRID_BLOCK = 65_536


def _unpack(params: Params) -> tuple[Any, Any, Any, Any]:
    """(r, alpha, a, b): floats, or arrays per element when ``params`` is (4, n)."""
    values = np.asarray(params, dtype=np.float64)
    if values.ndim == 2 and values.shape[0] == 4:
        r, alpha, a, b = values
        return r, alpha, a, b
    r, alpha, a, b = (float(v) for v in values.ravel())
    return r, alpha, a, b


def _arrays(*values: Any) -> list[FloatArray]:
    return [np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(*values)]


# --- likelihood -----------------------------------------------------------------------


def _count_grid(x: FloatArray) -> tuple[FloatArray, Any]:
    """(0, 1, ..., max x) and each element's position in it, when x holds whole counts.

    Falls back to (x, None) for few elements, non-integer values or a sparse range.
    """
    if x.size < 64:
        return x, None
    whole = x.astype(np.intp)
    top = int(whole.max()) if whole.size else 0
    if whole.min() < 0 or top > 4 * x.size + 1000 or not np.array_equal(whole, x):
        return x, None
    return np.arange(top + 1, dtype=np.float64), whole


def log_likelihood_and_gradient(
    params: Params, x: Any, t_x: Any, T: Any, *, modified: bool = False
) -> tuple[FloatArray, FloatArray]:
    """Per-customer log-likelihood and its exact gradient in log(r, alpha, a, b).

    BG/NBD: [FHL05]_ eq. (6), written as in [H05]_,

        LL = A1 + A2 + log(exp(A3) + [x > 0] exp(A4))
        A1 = lnG(r + x) - lnG(r) + r ln(alpha)
        A2 = lnB(a, b + x) - lnB(a, b)
        A3 = -(r + x) ln(alpha + T)
        A4 = ln(a) - ln(b + x - 1) - (r + x) ln(alpha + t_x)

    MBG/NBD ([BDF07]_): a dropout is also possible right after the first purchase, so the
    second term is present for every customer and the "alive" term carries one more
    factor (1 - p): A2 = lnB(a, b + x + 1) - lnB(a, b) and
    A4 = ln(a) - ln(b + x) - (r + x) ln(alpha + t_x).

    The gradient differentiates these expressions (digamma functions for the gamma and
    beta terms; the log-sum-exp weights for the mixture) and multiplies by the parameter
    (chain rule for log-parameters).

    Parameters
    ----------
    params
        (r, alpha, a, b), all positive.
    x, t_x, T
        Repeat purchases, time of the last purchase and age; broadcast together.
    modified
        False for the BG/NBD, True for the MBG/NBD.

    Returns
    -------
    loglik : numpy.ndarray
        Log-likelihood per customer (broadcast shape).
    gradient : numpy.ndarray
        Its derivatives with respect to (ln r, ln alpha, ln a, ln b), shape (..., 4).

    Examples
    --------
    >>> ll, grad = log_likelihood_and_gradient((0.2426, 4.4135, 0.7929, 2.4259), 2, 30.43, 38.86)
    >>> round(float(ll), 4), grad.shape
    (-9.4597, (4,))
    """
    r, alpha, a, b = _unpack(params)
    x, t_x, T = _arrays(x, t_x, T)
    shift = 1.0 if modified else 0.0
    has_dead = np.ones(x.shape, dtype=bool) if modified else x > 0

    # The special functions depend on x only: evaluate them once per purchase count.
    grid, index = _count_grid(x)
    b_alive = b + grid + shift  # second argument of the beta function of the "alive" term
    # b + x - 1 (BG) or b + x (MBG): positive wherever a dropout term exists (not BG, x = 0).
    b_dead = b_alive - 1.0
    b_dead = np.where(b_dead > 0, b_dead, 1.0)
    per_count = [
        special.gammaln(r + grid)
        - special.gammaln(r)
        + r * np.log(alpha)
        + special.betaln(a, b_alive)
        - special.betaln(a, b),
        np.log(a) - np.log(b_dead),
        special.digamma(r + grid) - special.digamma(r) + np.log(alpha),
        special.digamma(a + b) - special.digamma(a + b_alive),
        special.digamma(b_alive) - special.digamma(b),
        1.0 / b_dead,
    ]
    if index is not None:
        per_count = [column[index] for column in per_count]
    a12, log_odds_dead, d_r_gamma, d_a_beta, d_b_beta, inv_b_dead = per_count

    log_alpha_T = np.log(alpha + T)
    log_alpha_tx = np.log(alpha + t_x)
    a3 = -(r + x) * log_alpha_T
    a4 = np.where(has_dead, log_odds_dead - (r + x) * log_alpha_tx, -np.inf)
    mix = np.logaddexp(a3, a4)
    loglik = a12 + mix

    w_alive = np.exp(a3 - mix)
    w_dead = np.exp(a4 - mix)
    d_r = d_r_gamma - w_alive * log_alpha_T - w_dead * log_alpha_tx
    d_alpha = r / alpha - (r + x) * (w_alive / (alpha + T) + w_dead / (alpha + t_x))
    d_a = d_a_beta + w_dead / a
    d_b = d_b_beta + d_a_beta - w_dead * inv_b_dead
    gradient = np.stack([r * d_r, alpha * d_alpha, a * d_a, b * d_b], axis=-1)
    return np.asarray(loglik, dtype=np.float64), np.asarray(gradient, dtype=np.float64)


@dataclass(frozen=True)
class FitData:
    """Compressed data arranged for :func:`total_loglik_derivatives` (built once per fit).

    Terms that depend on x alone are summed per purchase count, terms that depend on T
    alone per distinct age; only the "dropped out after the last purchase" mixture term
    is evaluated per distinct (x, t_x, T) row, from per-value logs looked up by index.
    """

    counts: FloatArray  # purchase counts 0..max (or the distinct counts)
    weight_per_count: FloatArray
    ages: FloatArray  # distinct T
    weight_per_age: FloatArray
    purchases_per_age: FloatArray  # sum of weight * x per distinct T
    recencies: FloatArray  # distinct t_x among the mixture rows
    x: FloatArray  # the mixture rows: x, weight and indices into the arrays above
    weight: FloatArray
    count_index: np.ndarray[Any, Any]
    age_index: np.ndarray[Any, Any]
    recency_index: np.ndarray[Any, Any]


def prepare_fit_data(x: Any, t_x: Any, T: Any, weights: Any, *, modified: bool = False) -> FitData:
    """Arrange (x, t_x, T, weights) rows for :func:`total_loglik_derivatives`.

    Examples
    --------
    >>> data = prepare_fit_data([0, 2], [0.0, 3.0], [5.0, 5.0], [4.0, 1.0])
    >>> data.weight_per_count.tolist(), data.x.tolist()
    ([4.0, 1.0], [2.0])
    """
    x, t_x, T, w = (np.asarray(v, dtype=np.float64).ravel() for v in (x, t_x, T, weights))
    counts, count_index = _count_grid(x)
    if count_index is None:
        counts, count_index = factorize(x)
    ages, age_index = factorize(T)
    mixture = np.ones(x.size, dtype=bool) if modified else x > 0
    recencies, recency_index = factorize(t_x[mixture])
    return FitData(
        counts=counts,
        weight_per_count=_sum_by(count_index, w, counts.size),
        ages=ages,
        weight_per_age=_sum_by(age_index, w, ages.size),
        purchases_per_age=_sum_by(age_index, w * x, ages.size),
        recencies=recencies,
        x=x[mixture],
        weight=w[mixture],
        count_index=count_index[mixture],
        age_index=age_index[mixture],
        recency_index=recency_index,
    )


def _sum_by(index: Any, values: FloatArray, size: int) -> FloatArray:
    return np.asarray(np.bincount(index, weights=values, minlength=size), dtype=np.float64)


def total_loglik_derivatives(
    params: Params, data: FitData, *, modified: bool = False, hessian: bool = True
) -> tuple[float, FloatArray, FloatArray | None]:
    """Weighted total log-likelihood, its gradient and exact Hessian in (r, alpha, a, b).

    The same likelihood as :func:`log_likelihood_and_gradient`, rearranged as

        LL = sum_x W_x A12(x) - sum_T ln(alpha + T) (r W_T + X_T) + sum_rows w softplus(z)
        z = ln a - ln(b_dead) + (r + x) [ln(alpha + T) - ln(alpha + t_x)]

    (W_x, W_T: customers per count and per age; X_T: their purchases; b_dead = b + x - 1
    for the BG/NBD, b + x for the MBG/NBD). With sigma = softplus' the mixture term
    contributes ``sigma dz`` to the gradient and ``sigma (1 - sigma) dz dz' + sigma d2z``
    to the Hessian; the count terms contribute digamma and trigamma functions.

    Parameters
    ----------
    params
        (r, alpha, a, b).
    data
        From :func:`prepare_fit_data`.
    modified
        True for the MBG/NBD (must match ``prepare_fit_data``).
    hessian
        False to skip the Hessian (returned as None).

    Returns
    -------
    value : float
    gradient : numpy.ndarray, shape (4,)
    hessian : numpy.ndarray, shape (4, 4), or None

    Examples
    --------
    >>> data = prepare_fit_data([0, 2], [0.0, 30.43], [38.86, 38.86], [1.0, 1.0])
    >>> value, grad, hess = total_loglik_derivatives((0.2426, 4.4135, 0.7929, 2.4259), data)
    >>> round(value, 4), hess.shape
    (-10.0135, (4, 4))
    """
    r, alpha, a, b = _unpack(params)
    shift = 1.0 if modified else 0.0
    xs, w_x = data.counts, data.weight_per_count
    b_alive = b + xs + shift
    b_dead = b_alive - 1.0
    b_dead = np.where(b_dead > 0, b_dead, 1.0)  # BG/NBD, x = 0: no mixture term
    ab_alive = a + b_alive

    # Terms in x alone: lnG(r + x) - lnG(r) + r ln(alpha) + lnB(a, b_alive) - lnB(a, b).
    value = float(
        w_x
        @ (
            special.gammaln(r + xs)
            + special.betaln(a, b_alive)
            - special.gammaln(r)
            + r * np.log(alpha)
            - special.betaln(a, b)
        )
    )
    n = float(w_x.sum())
    psi_a_b = special.digamma(a + b)
    grad = np.array(
        [
            float(w_x @ special.digamma(r + xs)) - n * (special.digamma(r) - np.log(alpha)),
            n * r / alpha,
            float(w_x @ (psi_a_b - special.digamma(ab_alive))),
            float(w_x @ (special.digamma(b_alive) - special.digamma(ab_alive)))
            + n * (psi_a_b - special.digamma(b)),
        ]
    )

    # Terms in T alone: -(r + x) ln(alpha + T).
    ages, w_t, x_t = data.ages, data.weight_per_age, data.purchases_per_age
    log_age = np.log(alpha + ages)
    inv_age = 1.0 / (alpha + ages)
    rate_t = r * w_t + x_t
    value -= float(rate_t @ log_age)
    grad[0] -= float(w_t @ log_age)
    grad[1] -= float(rate_t @ inv_age)

    # The mixture term, per row.
    rx = r + data.x
    inv_t = inv_age[data.age_index]
    inv_tx = 1.0 / (alpha + data.recencies)
    inv_tx_rows = inv_tx[data.recency_index]
    log_ratio = log_age[data.age_index] - np.log(alpha + data.recencies)[data.recency_index]
    inv_bd = (1.0 / b_dead)[data.count_index]
    z = (np.log(a) - np.log(b_dead))[data.count_index] + rx * log_ratio
    small = np.exp(-np.abs(z))
    value += float(data.weight @ (np.maximum(z, 0.0) + np.log1p(small)))
    sigma = np.where(z >= 0, 1.0, small) / (1.0 + small)
    p = data.weight * sigma
    d_inv = inv_t - inv_tx_rows
    dz = np.empty((4, z.size))  # (parameters, rows): numpy's loops along the rows
    dz[0] = log_ratio
    dz[1] = rx * d_inv
    dz[2] = 1.0 / a
    dz[3] = -inv_bd
    grad += dz @ p
    if not hessian:
        return value, grad, None

    trigamma_ab = special.polygamma(1, a + b)
    trigamma_alive = special.polygamma(1, ab_alive)
    h_ab = float(w_x @ (trigamma_ab - trigamma_alive))
    hess = np.zeros((4, 4))
    hess[0, 0] = float(w_x @ special.polygamma(1, r + xs)) - n * float(special.polygamma(1, r))
    hess[0, 1] = n / alpha - float(w_t @ inv_age)
    hess[1, 1] = -n * r / alpha**2 + float(rate_t @ inv_age**2)
    hess[2, 2] = h_ab
    hess[2, 3] = h_ab
    hess[3, 3] = float(w_x @ (special.polygamma(1, b_alive) - trigamma_alive)) + n * float(
        trigamma_ab - special.polygamma(1, b)
    )
    hess += (dz * (p * (1.0 - sigma))) @ dz.T
    hess[0, 1] += float(p @ d_inv)
    hess[1, 1] += float(p @ (rx * (inv_tx_rows**2 - inv_t**2)))
    hess[2, 2] -= float(p.sum()) / a**2
    hess[3, 3] += float(p @ inv_bd**2)
    upper = np.triu(hess)
    hess = upper + np.triu(hess, 1).T
    return value, grad, hess


def log_likelihood(
    params: Params, x: Any, t_x: Any, T: Any, *, modified: bool = False
) -> FloatArray:
    """Per-customer log-likelihood: [FHL05]_ eq. (6) (BG/NBD) or [BDF07]_ (MBG/NBD).

    See :func:`log_likelihood_and_gradient` for the formula.

    Examples
    --------
    >>> round(float(log_likelihood((0.2426, 4.4135, 0.7929, 2.4259), 0, 0.0, 38.86)), 4)
    -0.5538
    """
    return log_likelihood_and_gradient(params, x, t_x, T, modified=modified)[0]


# --- P(alive) ---------------------------------------------------------------------------


def _log_odds_dead(
    params: Params, x: FloatArray, t_x: FloatArray, T: FloatArray, modified: bool
) -> FloatArray:
    """ln P(dead at T | history) / P(alive at T | history); -inf when it cannot be dead."""
    r, alpha, a, b = _unpack(params)
    has_dead = np.ones(x.shape, dtype=bool) if modified else x > 0
    b_dead = np.where(has_dead, b + x - 1.0 + (1.0 if modified else 0.0), 1.0)
    ratio = (r + x) * np.log1p((T - t_x) / (alpha + t_x))  # (r + x) ln((alpha+T)/(alpha+t_x))
    return np.where(has_dead, np.log(a) - np.log(b_dead) + ratio, -np.inf)


def probability_alive(
    params: Params, x: Any, t_x: Any, T: Any, *, modified: bool = False
) -> FloatArray:
    """P(alive at T | x, t_x, T).

    BG/NBD: [FHL05]_ eq. (13),
    P = 1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x)).
    MBG/NBD: [BDF07]_, P = 1 / (1 + a / (b + x) ((alpha + T) / (alpha + t_x))^(r + x)),
    below 1 even for x = 0. Evaluated as a logistic function of the log odds.

    Examples
    --------
    >>> round(float(probability_alive((0.2426, 4.4135, 0.7929, 2.4259), 2, 30.43, 38.86)), 4)
    0.7266
    """
    x, t_x, T = _arrays(x, t_x, T)
    return np.asarray(special.expit(-_log_odds_dead(params, x, t_x, T, modified)), np.float64)


# --- expected purchases -----------------------------------------------------------------


def _expected_repeat_hyp2f1(
    r: FloatArray, alpha: FloatArray, a: FloatArray, b: FloatArray, t: FloatArray
) -> FloatArray:
    """[FHL05]_ eq. (7) after Euler's transformation ([AS64]_ 15.3.3).

    E[X(t)] = c / (a - 1) (1 - (1 - z)^r 2F1(r, b; c; z)), c = a + b - 1, z = t/(alpha+t),
    and (1 - z)^r 2F1(r, b; c; z) = (1 - z)^(a - 1) 2F1(c - r, a - 1; c; z), whose
    hypergeometric factor stays moderate where the original one overflows. NaN/inf
    where scipy fails.
    """
    c = a + b - 1.0
    log_1mz = -np.log1p(t / alpha)
    z = t / (alpha + t)
    with np.errstate(all="ignore"):
        hyp = special.hyp2f1(c - r, a - 1.0, c, z)
        positive = hyp > 0
        if positive.all():  # the usual case: no fallback to compute and discard
            one_minus = -np.expm1((a - 1.0) * log_1mz + np.log(hyp))
        else:
            exponent = (a - 1.0) * log_1mz + np.log(np.where(positive, hyp, 1.0))
            one_minus = np.where(
                positive, -np.expm1(exponent), 1.0 - np.exp((a - 1.0) * log_1mz) * hyp
            )
        value = c / (a - 1.0) * one_minus
    return np.asarray(value, dtype=np.float64)


#: Above this a + b, Beta(a, b) is treated as a point mass (relative sd < 1e-3).
_POINT_MASS = 1e6


def _expected_repeat_quadrature(
    r: FloatArray, alpha: FloatArray, a: FloatArray, b: FloatArray, t: FloatArray
) -> FloatArray:
    """E[X(t)] of eq. (7) as E_p[(1 - (1 + p t/alpha)^(-r)) / p], p ~ Beta(a, b).

    This is the mixture over lambda ~ Gamma(r, alpha) of E[X(t) | lambda, p] =
    (1 - exp(-lambda p t)) / p ([FHL05]_, appendix). The integral over l = ln p is done by
    the trapezoid rule, which converges exponentially for smooth integrands that vanish at
    both ends; the slowly decaying left tail (~ exp(a l), p -> 0) is removed first by
    subtracting k r / B(a, b) exp(a l - beta e^l) (k = t / alpha), whose integral is a
    regularised incomplete gamma function. Accurate (about 1e-12) for large b, where
    the hypergeometric form fails; the b >= 50 regime is the one it is used in.
    """
    out = np.empty(r.shape)
    k = t / alpha
    beta = np.maximum(b, 2.0 * a + 60.0)
    sigma = np.sqrt(np.maximum(special.polygamma(1, a) - special.polygamma(1, a + b), 1e-12))
    step = np.minimum(0.2, sigma / 5.0)
    lower = np.maximum(
        -np.log(b + k * (r + 1.0)) - 40.0, np.log(a / beta) - 40.0 / a - 10.0 * sigma
    )
    lower = np.minimum(lower, -1.0)
    nodes = np.minimum(np.ceil(-lower / step), 200_000).astype(np.int64)
    log_beta_fn = special.betaln(a, b)
    log_kr = np.log(k * r)
    # In logs: for a degenerate fit (huge a, b) the prefactor overflows while the
    # incomplete gamma function underflows to 0 (inf * 0 would be NaN and a warning).
    with np.errstate(divide="ignore", over="ignore"):
        tail = np.exp(
            log_kr
            + special.gammaln(a)
            - a * np.log(beta)
            - log_beta_fn
            + np.log(special.gammainc(a, beta))
        )
    flat = [v.ravel() for v in (r, k, a, b, beta, step, lower, log_beta_fn, log_kr)]
    count = nodes.ravel()
    width = int(count.max()) if count.size else 0
    result = np.empty(count.size)
    rows = max(1, _CHUNK_ELEMENTS // max(width, 1))
    j = np.arange(width)[None, :]
    for begin in range(0, count.size, rows):
        part = slice(begin, begin + rows)
        rr, kk, aa, bb, be, hh, lo, lb, lkr = (v[part, None] for v in flat)
        last = count[part, None]
        ell = lo + hh * np.minimum(j, last - 1)  # padding repeats the last node, masked below
        p = np.exp(ell)
        with np.errstate(under="ignore"):
            g = -np.expm1(-rr * np.log1p(kk * p)) / p
            f = np.exp(aa * ell + (bb - 1.0) * np.log1p(-p) - lb) * g
            m = np.exp(lkr + aa * ell - be * p - lb)
        inside = j < last
        result[part] = hh[:, 0] * np.where(inside, f - m, 0.0).sum(axis=1)
    out[...] = result.reshape(out.shape) + tail
    return out


def _expected_repeat_series(
    r: FloatArray, alpha: FloatArray, a: FloatArray, b: FloatArray, t: FloatArray
) -> FloatArray:
    """Power series of [FHL05]_ eq. (7) in w = -t/alpha, for small t/alpha.

    Expanding the Pfaff-transformed 2F1(r, a - 1; a + b - 1; w) and cancelling the factor
    (a - 1) / (a + b - 1) term by term gives

        E[X(t)] = (r t/alpha) sum_{m>=0} (r + 1)_m (a)_m / ((a + b)_m (m + 1)!) w^m,

    free of the removable singularities at a = 1 and a + b = 1 and of the cancellation
    of eq. (7) when E[X(t)] is small. Used where t/alpha <= 1/2 and (r + 1) t/alpha <= 1/2:
    the terms then alternate and shrink at least geometrically (ratio <= 1/2).
    """
    w = -t / alpha
    term = np.ones_like(w)
    total = np.ones_like(w)
    for m in range(_SERIES_TERMS):
        term = term * (r + 1.0 + m) * (a + m) / ((a + b + m) * (m + 2.0)) * w
        total = total + term
        # Once every term is below a quarter of the last bit of its sum, adding it (and
        # the smaller ones after it) leaves the sum as it is: stop there.
        if m % 8 == 7 and np.all(np.abs(term) < 2.0**-54 * np.abs(total)):
            break
    return np.asarray(r * (t / alpha) * total, dtype=np.float64)


def _cubic_in_a(
    r: FloatArray, alpha: FloatArray, a: FloatArray, b: FloatArray, t: FloatArray
) -> FloatArray:
    """Eq. (7) near its removable singularity a = 1, where it is 0/0.

    Lagrange interpolation through a = 1 -/+ d and 1 -/+ 2d (d = 1e-4), far enough from
    1 that the cancellation of eq. (7) costs about 1e-12, close enough that the
    interpolation error (order d^4) is negligible.
    """
    nodes = 1.0 + _A_NEAR_ONE * np.array([-2.0, -1.0, 1.0, 2.0])
    values = [_expected_repeat_hyp2f1(r, alpha, np.full_like(a, v), b, t) for v in nodes]
    out = np.zeros_like(a)
    for i, node in enumerate(nodes):
        weight = np.ones_like(a)
        for j, other in enumerate(nodes):
            if j != i:
                weight = weight * (a - other) / (node - other)
        out = out + weight * values[i]
    return out


def _expected_repeat_purchases(r: Any, alpha: Any, a: Any, b: Any, t: Any) -> FloatArray:
    """E[X(t)] for a newly acquired BG/NBD customer: [FHL05]_ eq. (7).

    E[X(t)] = (a + b - 1)/(a - 1) [1 - (alpha/(alpha + t))^r 2F1(r, b; a + b - 1; t/(alpha + t))]

    scipy's hyp2f1 covers most of the parameter space (:func:`_expected_repeat_hyp2f1`).
    Elsewhere:

    * t small against alpha: the power series (:func:`_expected_repeat_series`);
    * b large (>= 50), where hyp2f1 loses accuracy as z = t/(alpha + t) -> 1 and then
      overflows, and where eq. (7) cancels (a near 1, or E[X(t)] small against
      (a + b - 1)/(a - 1)): quadrature of the integral representation
      (:func:`_expected_repeat_quadrature`);
    * a near 1 with b < 50: interpolation across the removable singularity
      (:func:`_cubic_in_a`); a + b near 1: linear interpolation in b.

    Arguments broadcast; every parameter may vary by element (conditional expectations
    use updated parameters per customer).
    """
    r, alpha, a, b, t = _arrays(r, alpha, a, b, t)
    out = np.zeros(t.shape)
    todo = t > 0
    if not todo.any():
        return out
    if todo.all():  # (a copy of each broadcast argument, cheaper than selecting)
        r, alpha, a, b, t = (v.ravel() for v in (r, alpha, a, b, t))
    else:
        r, alpha, a, b, t = (v[todo] for v in (r, alpha, a, b, t))
    value = np.full(t.shape, np.nan)
    k = t / alpha
    large_b = b >= _B_LARGE
    near_one = np.abs(a - 1.0) < _A_NEAR_ONE

    series = (k <= 0.5) & ((r + 1.0) * k <= 0.5)
    hyp = ~series & ~(near_one & large_b)
    if np.count_nonzero(hyp) > 0.75 * hyp.size:
        # Nearly everywhere: evaluate on every element (elementwise, the same values
        # where it is used) rather than select the elements first.
        value = _expected_repeat_hyp2f1(r, alpha, a, b, t)
        value[~hyp] = np.nan
    elif hyp.any():
        i = hyp
        value[i] = _expected_repeat_hyp2f1(r[i], alpha[i], a[i], b[i], t[i])
    if series.any():
        i = series
        value[i] = _expected_repeat_series(r[i], alpha[i], a[i], b[i], t[i])
    small_b_near_one = ~series & near_one & ~large_b
    if small_b_near_one.any():
        i = small_b_near_one
        value[i] = _cubic_in_a(r[i], alpha[i], a[i], b[i], t[i])
    near_zero = ~series & (np.abs(a + b - 1.0) < _C_NEAR_ZERO)
    if near_zero.any():
        i = near_zero
        b_lo = 1.0 - a[i] - 10 * _C_NEAR_ZERO
        b_hi = 1.0 - a[i] + 10 * _C_NEAR_ZERO
        lo = _expected_repeat_hyp2f1(r[i], alpha[i], a[i], b_lo, t[i])
        hi = _expected_repeat_hyp2f1(r[i], alpha[i], a[i], b_hi, t[i])
        value[i] = lo + (b[i] - b_lo) / (b_hi - b_lo) * (hi - lo)

    quadrature = ~series & ~np.isfinite(value)
    if large_b.any():  # (only there: the terms below are evaluated for those elements)
        i = large_b
        with np.errstate(all="ignore"):
            # Relative error of eq. (7) from its cancellation: eps (a + b - 1) / ((a - 1) E).
            cancellation = 1e-16 * np.abs((a[i] + b[i] - 1.0) / ((a[i] - 1.0) * value[i]))
        quadrature[i] |= ~series[i] & (
            (1.0 / (1.0 + k[i]) < _ONE_MINUS_Z_SMALL) | near_one[i] | ~(cancellation < 1e-12)
        )
    # A Beta(a, b) this concentrated (a degenerate fit, a and b running off together) is
    # a point mass at p = a / (a + b) to within its sd ~ 1 / sqrt(a + b): E[X(t)] is then
    # the Gamma mixture of (1 - exp(-lambda p t)) / p, in closed form.
    point_mass = quadrature & (a + b > _POINT_MASS)
    if point_mass.any():
        i = point_mass
        p = a[i] / (a[i] + b[i])
        value[i] = -np.expm1(-r[i] * np.log1p(p * t[i] / alpha[i])) / p
    quadrature &= ~point_mass
    if quadrature.any():
        i = quadrature
        value[i] = _expected_repeat_quadrature(r[i], alpha[i], a[i], b[i], t[i])
    if value.size == out.size:
        return value.reshape(out.shape)
    out[todo] = value
    return out


def _alive_posterior(
    params: Params, x: FloatArray, T: FloatArray, modified: bool
) -> tuple[FloatArray, FloatArray, float, FloatArray]:
    """(r, alpha, a, b) of a customer alive at T, as a new BG/NBD customer from T on."""
    r, alpha, a, b = _unpack(params)
    return r + x, alpha + T, a, b + x + (1.0 if modified else 0.0)


def expected_purchases_new(params: Params, t: Any, *, modified: bool = False) -> FloatArray:
    """E[X(t)]: repeat purchases in (0, t] of a customer acquired at time 0.

    BG/NBD: [FHL05]_ eq. (7). MBG/NBD ([BDF07]_): the customer drops out at time 0 with
    probability p, so E[X(t)] = E[(1 - p) X_BG(t)] = b/(a + b) E_BG[X(t); r, alpha, a, b + 1]
    = b/(a - 1) [1 - (alpha/(alpha + t))^r 2F1(r, b + 1; a + b; t/(alpha + t))].

    Examples
    --------
    >>> round(float(expected_purchases_new((0.2426, 4.4135, 0.7929, 2.4259), 39.0)), 4)
    1.1951
    """
    r, alpha, a, b = _unpack(params)
    (t,) = _arrays(t)
    if modified:
        value = b / (a + b) * _expected_repeat_purchases(r, alpha, a, b + 1.0, t)
        return np.asarray(value, dtype=np.float64)
    return _expected_repeat_purchases(r, alpha, a, b, t)


def conditional_expected_purchases(
    params: Params, x: Any, t_x: Any, T: Any, t: Any, *, modified: bool = False
) -> FloatArray:
    """E[Y(t) | x, t_x, T]: expected purchases in (T, T + t] given the history.

    BG/NBD: [FHL05]_ eq. (10),

        E[Y(t) | x, t_x, T] = (a + b + x - 1)/(a - 1)
            [1 - ((alpha + T)/(alpha + T + t))^(r + x) 2F1(r + x, b + x; a + b + x - 1; z)]
            / (1 + [x > 0] a/(b + x - 1) ((alpha + T)/(alpha + t_x))^(r + x)),

    z = t/(alpha + T + t): P(alive) times eq. (7) at the updated parameters
    (r + x, alpha + T, a, b + x). MBG/NBD ([BDF07]_): the same with b + x + 1 and the
    MBG/NBD P(alive).

    Examples
    --------
    >>> params = (0.2426, 4.4135, 0.7929, 2.4259)
    >>> round(float(conditional_expected_purchases(params, 2, 30.43, 38.86, 39.0)), 3)
    1.226
    """
    x, t_x, T, t = _arrays(x, t_x, T, t)
    alive = probability_alive(params, x, t_x, T, modified=modified)
    r_post, alpha_post, a, b_post = _alive_posterior(params, x, T, modified)
    expected = _expected_repeat_purchases(r_post, alpha_post, a, b_post, t)
    return np.asarray(alive * expected, dtype=np.float64)


def expected_purchases_between(
    params: Params,
    x: Any,
    t_x: Any,
    T: Any,
    *,
    start: Any,
    horizon: Any,
    modified: bool = False,
) -> FloatArray:
    """Expected purchases in (T + start, T + horizon] given the history.

    The difference of two conditional expectations ([FHL05]_ eq. (10)):
    E[Y(horizon) | x, t_x, T] - E[Y(start) | x, t_x, T].

    Examples
    --------
    >>> params = (0.2426, 4.4135, 0.7929, 2.4259)
    >>> round(float(expected_purchases_between(params, 2, 30.43, 38.86, start=0, horizon=39)), 3)
    1.226
    """
    if np.ndim(start) or np.ndim(horizon):
        x, t_x, T, start, horizon = _arrays(x, t_x, T, start, horizon)
        alive = probability_alive(params, x, t_x, T, modified=modified)
        r_post, alpha_post, a, b_post = _alive_posterior(params, x, T, modified)
        late = _expected_repeat_purchases(r_post, alpha_post, a, b_post, horizon)
        early = _expected_repeat_purchases(r_post, alpha_post, a, b_post, start)
        return np.asarray(alive * (late - early), dtype=np.float64)
    # One window for all: given alive, the expectation depends on (x, T) only, so
    # evaluate it once per distinct pair (far fewer than customers), as in
    # :func:`discounted_expected_purchases`.
    x, t_x, T = _arrays(x, t_x, T)
    alive = probability_alive(params, x, t_x, T, modified=modified)
    pairs, inverse = unique_rows(x, T)
    r_post, alpha_post, a, b_post = _alive_posterior(params, pairs[:, 0], pairs[:, 1], modified)
    late = _expected_repeat_purchases(r_post, alpha_post, a, b_post, horizon)
    early = _expected_repeat_purchases(r_post, alpha_post, a, b_post, start)
    per_pair = np.asarray(late - early, dtype=np.float64)
    return np.asarray(alive * per_pair[inverse].reshape(x.shape), dtype=np.float64)


# --- probabilities of n purchases -------------------------------------------------------


def _pmf_new(r: Any, alpha: Any, a: Any, b: Any, n: Any, t: Any) -> FloatArray:
    """P(X(t) = n) for a new BG/NBD customer: [FHL05]_ eq. (8).

    P(X(t) = n) = B(a, b + n)/B(a, b) G(r + n)/(G(r) n!) (alpha/(alpha+t))^r (t/(alpha+t))^n
        + [n > 0] B(a + 1, b + n - 1)/B(a, b)
          [1 - (alpha/(alpha+t))^r sum_{j<n} G(r + j)/(G(r) j!) (t/(alpha+t))^j].

    The bracket is the negative binomial survival function P(N(t) >= n), computed as the
    regularised incomplete beta function I_{t/(alpha+t)}(n, r).
    """
    r, alpha, a, b, n, t = _arrays(r, alpha, a, b, n, t)
    log_beta_ab = special.betaln(a, b)
    log_1mz = -np.log1p(t / alpha)
    z = t / (alpha + t)
    first = np.exp(
        special.betaln(a, b + n)
        - log_beta_ab
        + special.gammaln(r + n)
        - special.gammaln(r)
        - special.gammaln(n + 1.0)
        + r * log_1mz
        + special.xlogy(n, z)
    )
    n_pos = np.maximum(n, 1.0)
    second = np.exp(special.betaln(a + 1.0, b + n_pos - 1.0) - log_beta_ab) * special.betainc(
        n_pos, r, z
    )
    return np.asarray(first + np.where(n > 0, second, 0.0), dtype=np.float64)


def probability_of_purchases_new(
    params: Params, n: Any, t: Any, *, modified: bool = False
) -> FloatArray:
    """P(X(t) = n): exactly n repeat purchases in (0, t] for a customer acquired at 0.

    BG/NBD: [FHL05]_ eq. (8). MBG/NBD ([BDF07]_): with probability p the customer leaves
    at time 0 (n = 0), otherwise behaves as a BG/NBD customer given that event, so
    P(X(t) = n) = a/(a + b) [n = 0] + b/(a + b) P_BG(X(t) = n; r, alpha, a, b + 1).

    Examples
    --------
    >>> p = probability_of_purchases_new((0.2426, 4.4135, 0.7929, 2.4259), [0, 1, 2], 38.86)
    >>> [round(float(v), 4) for v in p]
    [0.5747, 0.1991, 0.0853]
    """
    r, alpha, a, b = _unpack(params)
    n, t = _arrays(n, t)
    if modified:
        bg = _pmf_new(r, alpha, a, b + 1.0, n, t)
        return np.asarray(a / (a + b) * (n == 0) + b / (a + b) * bg, dtype=np.float64)
    return _pmf_new(r, alpha, a, b, n, t)


def conditional_probability_of_purchases(
    params: Params, n: Any, x: Any, t_x: Any, T: Any, t: Any, *, modified: bool = False
) -> FloatArray:
    """P(Y(t) = n | x, t_x, T): exactly n purchases in (T, T + t] given the history.

    [FHL07]_: a customer dead at T buys nothing more; one alive at T has posterior
    lambda ~ Gamma(r + x, alpha + T), p ~ Beta(a, b + x), independent, and from T on
    behaves as a new customer, so

        P(Y(t) = n | x, t_x, T) = (1 - P(alive)) [n = 0]
                                  + P(alive) P(X(t) = n; r + x, alpha + T, a, b + x)

    with P(X(t) = n; ...) the new-customer PMF ([FHL05]_ eq. (8)). This equals the final
    expression of [FHL07]_. MBG/NBD: b + x + 1 and the MBG/NBD P(alive). Its mean is
    :func:`conditional_expected_purchases`.

    Examples
    --------
    >>> params = (0.2426, 4.4135, 0.7929, 2.4259)
    >>> p = conditional_probability_of_purchases(params, range(200), 2, 30.43, 38.86, 39.0)
    >>> round(float(p.sum()), 10), round(float((p * range(200)).sum()), 3)
    (1.0, 1.226)
    """
    n, x, t_x, T, t = _arrays(n, x, t_x, T, t)
    alive = probability_alive(params, x, t_x, T, modified=modified)
    r_post, alpha_post, a, b_post = _alive_posterior(params, x, T, modified)
    pmf = _pmf_new(r_post, alpha_post, a, b_post, n, t)
    return np.asarray((1.0 - alive) * (n == 0) + alive * pmf, dtype=np.float64)


# --- other predictions ------------------------------------------------------------------


def expected_time_to_next_purchase(params: Params, x: Any, T: Any) -> FloatArray:
    """E[time to the next purchase | alive at T, x, t_x, T].

    Given alive, the waiting time is exponential with rate lambda, and lambda has the
    gamma posterior of [FHL05]_ (shape r + x, rate alpha + T; the same in both models),
    so E[1/lambda] = (alpha + T)/(r + x - 1) when r + x > 1. When r + x <= 1 the
    posterior puts so much weight near lambda = 0 that the expectation is infinite:
    inf is returned. The recency does not enter (memoryless purchases).

    Examples
    --------
    >>> expected_time_to_next_purchase((0.2426, 4.4135, 0.7929, 2.4259), [0, 2], 38.86).round(2)
    array([  inf, 34.82])
    """
    r, alpha, _, _ = _unpack(params)
    x, T = _arrays(x, T)
    shape = r + x
    with np.errstate(divide="ignore"):
        return np.asarray(
            np.where(shape > 1.0, (alpha + T) / np.where(shape > 1.0, shape - 1.0, 1.0), np.inf),
            dtype=np.float64,
        )


def discounted_expected_purchases_at(
    thetas: Any,
    x: Any,
    t_x: Any,
    T: Any,
    *,
    discount_rate: float,
    horizon: int,
    modified: bool = False,
) -> FloatArray:
    """:func:`discounted_expected_purchases` at each parameter row of ``thetas`` (K, 4):
    an array (K, n) from one evaluation of every (row, customer) pair at once.

    For few customers at several parameters (the fitted ones and the moved ones of the
    delta-method interval, in real time): K evaluations of a few elements each cost their
    fixed overhead K times. Each element goes through the same elementwise steps as in
    :func:`discounted_expected_purchases` (every step broadcasts over the parameters).

    Examples
    --------
    >>> params = (0.2426, 4.4135, 0.7929, 2.4259)
    >>> moved = (0.2426, 4.4135, 0.7929, 2.5)
    >>> at = discounted_expected_purchases_at(
    ...     [params, moved], [2, 0], [30.43, 0.0], [38.86, 38.86], discount_rate=0.0, horizon=39)
    >>> history = ([2, 0], [30.43, 0.0], [38.86, 38.86])
    >>> one = [discounted_expected_purchases(p, *history, discount_rate=0.0, horizon=39)
    ...        for p in (params, moved)]
    >>> bool(np.allclose(at, one, rtol=1e-12, atol=0))
    True
    """
    thetas = np.asarray(thetas, dtype=np.float64)
    x, t_x, T = (v.ravel() for v in _arrays(x, t_x, T))
    k, n = thetas.shape[0], x.size
    # Parameters per element (K blocks of the n customers), as columns of one "params".
    per_element = np.repeat(thetas, n, axis=0).T
    xs, t_xs, ts = (np.tile(v, k) for v in (x, t_x, T))
    alive = special.expit(-_log_odds_dead(per_element, xs, t_xs, ts, modified))
    r_post, alpha_post, a, b_post = _alive_posterior(per_element, xs, ts, modified)
    periods = np.arange(1, horizon + 1, dtype=np.float64)
    factors = (1.0 + discount_rate) ** -periods
    cumulative = _expected_repeat_purchases(
        r_post[:, None],
        alpha_post[:, None],
        np.asarray(a)[:, None],
        b_post[:, None],
        periods[None, :],
    )
    increments = np.diff(cumulative, axis=1, prepend=0.0)
    total = np.einsum("ij,j->i", increments, factors)
    return np.asarray((alive * total).reshape(k, n), dtype=np.float64)


#: Discounted sums of (x, T) pairs already computed, by parameters, discount rate,
#: horizon and pair: kept for inputs of at most _PAIR_CACHE_ROWS pairs (one customer).
_PAIR_SUMS: dict[tuple[float, ...], float] = {}
_PAIR_SUMS_KEPT = 100_000
_PAIR_CACHE_ROWS = 8


def discounted_expected_purchases(
    params: Params,
    x: Any,
    t_x: Any,
    T: Any,
    *,
    discount_rate: float,
    horizon: int,
    modified: bool = False,
) -> FloatArray:
    """Discounted expected purchases over ``horizon`` whole periods after T.

    sum_{k=1..horizon} (E[Y(k)] - E[Y(k - 1)]) / (1 + d)^k, with E[Y(k)] the conditional
    expectation of [FHL05]_ eq. (10) (purchases in period k are those in (T + k - 1, T + k])
    and d the discount rate per period.

    Examples
    --------
    >>> params = (0.2426, 4.4135, 0.7929, 2.4259)
    >>> v = discounted_expected_purchases(params, 2, 30.43, 38.86, discount_rate=0.0, horizon=39)
    >>> round(float(v), 3)
    1.226
    """
    x, t_x, T = _arrays(x, t_x, T)
    alive = probability_alive(params, x, t_x, T, modified=modified)
    # Given alive, the future depends on (x, T) only, not on t_x: evaluate the discounted
    # sum once per distinct (x, T) pair (far fewer than customers) and scale by P(alive).
    pairs, inverse = unique_rows(x, T)
    # One customer at a time (real-time scoring): the sum of a pair already computed with
    # these parameters is the same number (each pair's sum is computed on its own row).
    keys: list[tuple[float, ...]] = []
    if pairs.shape[0] <= _PAIR_CACHE_ROWS:
        base = (*map(float, _unpack(params)), float(discount_rate), float(horizon), float(modified))
        keys = [(*base, float(p[0]), float(p[1])) for p in pairs]
        known = [_PAIR_SUMS.get(k) for k in keys]
        if all(v is not None for v in known):
            total = np.array(known, dtype=np.float64)
            return np.asarray(alive * total[inverse.ravel()].reshape(x.shape), dtype=np.float64)
    r_post, alpha_post, a, b_post = _alive_posterior(params, pairs[:, 0], pairs[:, 1], modified)
    periods = np.arange(1, horizon + 1, dtype=np.float64)
    factors = (1.0 + discount_rate) ** -periods
    flat = [np.asarray(v, dtype=np.float64).ravel() for v in (r_post, alpha_post, b_post)]
    total = np.zeros(flat[0].size)
    rows = max(1, _GRID_BLOCK // max(horizon, 1))
    for begin in range(0, total.size, rows):
        part = slice(begin, begin + rows)
        r_k, alpha_k, b_k = (v[part, None] for v in flat)
        cumulative = _expected_repeat_purchases(r_k, alpha_k, a, b_k, periods[None, :])
        # E[Y(0)] = 0: the first period's purchases are E[Y(1)]. numpy's own sum (not
        # BLAS, whose sums depend on the block's size) keeps each row's value the same
        # whatever the blocks.
        increments = np.diff(cumulative, axis=1, prepend=0.0)
        total[part] = np.einsum("ij,j->i", increments, factors)
    if keys:
        if len(_PAIR_SUMS) > _PAIR_SUMS_KEPT:  # bounded: start over
            _PAIR_SUMS.clear()
        _PAIR_SUMS.update(zip(keys, total.tolist(), strict=True))
    return np.asarray(alive * total[inverse.ravel()].reshape(x.shape), dtype=np.float64)
