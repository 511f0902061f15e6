"""BG/BB model math: pure functions of (params, arrays), numerically stable.

The beta-geometric/beta-Bernoulli model of Fader, Hardie & Shang (2010), "Customer-Base
Analysis in a Discrete-Time Noncontractual Setting", *Marketing Science* 29(6), 1086-1108
("FHS 2010" below; equation numbers refer to that paper).

Notation. After the first transaction (period 0) a customer has ``n`` transaction
opportunities, periods 1..n. While alive she transacts in a period with probability
``p ~ Beta(alpha, beta)``; she survives each period with probability ``1 - theta``,
``theta ~ Beta(gamma, delta)``, so she is alive in period t with probability
``(1 - theta)^t``. Her history is ``x`` repeat transactions, the last in period ``t_x``
(``t_x = 0`` when ``x = 0``). ``params`` is always ``(alpha, beta, gamma, delta)``.

Everything is computed in log space (``betaln``, ``gammaln``, ``logsumexp``); inputs are
assumed valid (the estimator in :mod:`segvalue.models.bgbb` validates them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betaln, digamma, gammaln, logsumexp

__all__ = [
    "discounted_expected_purchases",
    "expected_alive_periods",
    "expected_purchases",
    "expected_purchases_new",
    "hyp2f1_a1",
    "log_likelihood",
    "log_likelihood_gradient",
    "probability_alive",
    "probability_of_purchases_new",
]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Params = Sequence[float] | FloatArray

# Below this distance of gamma from 1 the closed form of expected_alive_periods cancels
# badly (it divides by gamma - 1); the explicit sum over periods is used instead.
_GAMMA_ONE_BAND = 1e-3


def _f(values: ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _log_terms(
    params: Params, x: FloatArray, t_x: FloatArray, n: FloatArray, *, gradient: bool
) -> tuple[FloatArray, FloatArray | None]:
    """The log of each term of FHS 2010 eq. (5) and, optionally, its parameter gradient.

    Column 0 is the "alive through period n" term; column 1 + i is the "last alive in
    period t_x + i" term, i = 0 .. n - t_x - 1 (-inf where i is out of range).
    """
    alpha, beta, gamma, delta = np.asarray(params, dtype=np.float64)
    x, t_x, n = (c[:, None] for c in (x, t_x, n))
    width = int(np.max(n - t_x)) if n.size else 0
    i = np.arange(width, dtype=np.float64)[None, :]
    valid = np.concatenate([np.ones_like(n, dtype=bool), i < n - t_x], axis=1)
    # Per column: periods alive m (n, then t_x + i) and the drop-out shift s of the theta
    # factor B(gamma + s, delta + m) (0 for the alive term, 1 for the drop-out terms).
    m = np.concatenate([n, t_x + i], axis=1)
    s = np.concatenate([np.zeros_like(n), np.ones((n.shape[0], width))], axis=1)
    base = betaln(alpha, beta) + betaln(gamma, delta)
    log_terms = betaln(alpha + x, beta + m - x) + betaln(gamma + s, delta + m) - base
    terms = np.where(valid, log_terms, -np.inf)
    if not gradient:
        return terms, None
    # d betaln(a, b) / da = psi(a) - psi(a + b), for each beta function of the term.
    psi_ab, psi_gd = digamma(alpha + beta), digamma(gamma + delta)
    d_alpha = digamma(alpha + x) - digamma(alpha + beta + m) - digamma(alpha) + psi_ab
    d_beta = digamma(beta + m - x) - digamma(alpha + beta + m) - digamma(beta) + psi_ab
    d_gamma = digamma(gamma + s) - digamma(gamma + delta + m + s) - digamma(gamma) + psi_gd
    d_delta = digamma(delta + m) - digamma(gamma + delta + m + s) - digamma(delta) + psi_gd
    return terms, np.stack([d_alpha, d_beta, d_gamma, d_delta])


def log_likelihood(params: Params, x: ArrayLike, t_x: ArrayLike, n: ArrayLike) -> FloatArray:
    """Log-likelihood of each customer's (x, t_x, n), FHS 2010 eq. (5).

    ``L = B(alpha+x, beta+n-x)/B(alpha, beta) * B(gamma, delta+n)/B(gamma, delta)
    + sum_{i=0}^{n-t_x-1} B(alpha+x, beta+t_x-x+i)/B(alpha, beta)
    * B(gamma+1, delta+t_x+i)/B(gamma, delta)``, evaluated with log-sum-exp over the
    terms.

    Parameters
    ----------
    params
        ``(alpha, beta, gamma, delta)``.
    x, t_x, n
        Repeat transactions, period of the last one, number of opportunities (1-d arrays).

    Returns
    -------
    numpy.ndarray
        One log-likelihood per customer.

    Examples
    --------
    >>> round(float(log_likelihood((1.204, 0.750, 0.657, 2.783), [6], [6], [6])[0]), 4)
    -2.1822
    """
    columns = (_f(x).ravel(), _f(t_x).ravel(), _f(n).ravel())
    terms, _ = _log_terms(params, *columns, gradient=False)
    return _f(logsumexp(terms, axis=1))


def log_likelihood_gradient(
    params: Params, x: ArrayLike, t_x: ArrayLike, n: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Log-likelihood (FHS 2010 eq. 5) and its exact gradient in the natural parameters.

    The gradient of ``log sum_j exp(l_j)`` is ``sum_j softmax(l)_j dl_j``, each ``dl_j``
    a sum of digamma differences (``d betaln(a, b) / da = psi(a) - psi(a + b)``).

    Parameters
    ----------
    params
        ``(alpha, beta, gamma, delta)``.
    x, t_x, n
        Repeat transactions, period of the last one, number of opportunities.

    Returns
    -------
    loglik : numpy.ndarray
        Shape ``(customers,)``.
    gradient : numpy.ndarray
        Shape ``(customers, 4)``: d loglik / d (alpha, beta, gamma, delta).

    Examples
    --------
    >>> ll, grad = log_likelihood_gradient((1.2, 0.75, 0.66, 2.8), [2], [4], [6])
    >>> grad.shape
    (1, 4)
    """
    columns = (_f(x).ravel(), _f(t_x).ravel(), _f(n).ravel())
    terms, dterms = _log_terms(params, *columns, gradient=True)
    assert dterms is not None
    ll = _f(logsumexp(terms, axis=1))
    share = np.exp(terms - ll[:, None])
    grad = np.einsum("rj,krj->rk", share, np.where(np.isfinite(terms), dterms, 0.0))
    return ll, _f(grad)


def probability_alive(params: Params, x: ArrayLike, t_x: ArrayLike, n: ArrayLike) -> FloatArray:
    """P(alive in period n + 1 | x, t_x, n), FHS 2010 eq. (11).

    ``B(alpha+x, beta+n-x)/B(alpha, beta) * B(gamma, delta+n+1)/B(gamma, delta) / L``
    with L the likelihood of eq. (5).

    Parameters
    ----------
    params
        ``(alpha, beta, gamma, delta)``.
    x, t_x, n
        Repeat transactions, period of the last one, number of opportunities.

    Returns
    -------
    numpy.ndarray
        One probability per customer.

    Examples
    --------
    >>> probability_alive((1.204, 0.750, 0.657, 2.783), [0, 2, 6], [0, 4, 6], 6).round(2)
    array([0.11, 0.59, 0.93])
    """
    alpha, beta, gamma, delta = np.asarray(params, dtype=np.float64)
    x, t_x, n = (c.ravel() for c in np.broadcast_arrays(_f(x), _f(t_x), _f(n)))
    log_num = (
        betaln(alpha + x, beta + n - x)
        - betaln(alpha, beta)
        + betaln(gamma, delta + n + 1)
        - betaln(gamma, delta)
    )
    return _f(np.exp(log_num - log_likelihood(params, x, t_x, n)))


def expected_alive_periods(
    gamma: float, delta: float, start: ArrayLike, horizon: ArrayLike
) -> FloatArray:
    """Expected number of periods alive in (start, start + horizon] for a new customer.

    ``sum_{t=s+1}^{s+h} B(gamma, delta+t)/B(gamma, delta)`` (P(alive in period t) summed),
    the sum behind FHS 2010 eqs. (7) and (13). For ``gamma != 1`` it telescopes to the
    closed form used there, ``delta/(gamma-1) * G(gamma+delta)/G(1+delta)
    * [G(1+delta+s)/G(gamma+delta+s) - G(1+delta+s+h)/G(gamma+delta+s+h)]`` (G the gamma
    function); within 1e-3 of ``gamma = 1``, where that form cancels, the periods are
    summed explicitly.

    Parameters
    ----------
    gamma, delta
        Drop-out parameters.
    start, horizon
        Whole numbers of periods (broadcast together).

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> expected_alive_periods(2.0, 3.0, 0, [1, 2]).round(6)
    array([0.6, 1. ])
    """
    s, h = np.broadcast_arrays(_f(start), _f(horizon))
    if abs(gamma - 1.0) > _GAMMA_ONE_BAND:
        u = gammaln(delta + s + 1) - gammaln(gamma + delta + s)
        v = gammaln(delta + s + h + 1) - gammaln(gamma + delta + s + h)
        scale = gammaln(gamma + delta) - gammaln(delta)
        value = np.exp(u + scale) * -np.expm1(v - u) / (gamma - 1.0)
        return _f(value + 0.0)  # + 0.0 turns the -0.0 of a zero horizon into 0.0
    last = int(np.max(s + h)) if s.size else 0
    t = np.arange(1, last + 1, dtype=np.float64)
    alive = np.exp(betaln(gamma, delta + t) - betaln(gamma, delta))
    cumulative = np.concatenate([[0.0], np.cumsum(alive)])
    return _f(cumulative[(s + h).astype(np.int64)] - cumulative[s.astype(np.int64)])


def expected_purchases_new(params: Params, horizon: ArrayLike) -> FloatArray:
    """E[X(n)]: expected repeat transactions in periods 1..n of a new customer, FHS 2010 eq. (7).

    ``alpha/(alpha+beta) * delta/(gamma-1)
    * [1 - G(gamma+delta)/G(gamma+delta+n) * G(1+delta+n)/G(1+delta)]`` (G the gamma
    function), via :func:`expected_alive_periods`.

    Parameters
    ----------
    params
        ``(alpha, beta, gamma, delta)``.
    horizon
        Number of periods n (whole numbers >= 0).

    Returns
    -------
    numpy.ndarray
        Same shape as ``horizon``.

    Examples
    --------
    >>> expected_purchases_new((1.204, 0.750, 0.657, 2.783), [1, 6]).round(3)
    array([0.498, 2.22 ])
    """
    alpha, beta, gamma, delta = np.asarray(params, dtype=np.float64)
    return _f(alpha / (alpha + beta) * expected_alive_periods(gamma, delta, 0.0, horizon))


def expected_purchases(
    params: Params, x: ArrayLike, t_x: ArrayLike, n: ArrayLike, horizon: ArrayLike
) -> FloatArray:
    """E[X(n, n + n*) | x, t_x, n]: expected transactions in the next n* periods, FHS 2010 eq. (13).

    ``1/L * B(alpha+x+1, beta+n-x)/B(alpha, beta) * delta/(gamma-1)
    * G(gamma+delta)/G(1+delta) * [G(1+delta+n)/G(gamma+delta+n)
    - G(1+delta+n+n*)/G(gamma+delta+n+n*)]`` (G the gamma function, L eq. 5), via
    :func:`expected_alive_periods`.

    Parameters
    ----------
    params
        ``(alpha, beta, gamma, delta)``.
    x, t_x, n
        Repeat transactions, period of the last one, number of opportunities.
    horizon
        n*, the number of future periods (whole numbers >= 0).

    Returns
    -------
    numpy.ndarray
        One expectation per customer.

    Examples
    --------
    >>> expected_purchases((1.204, 0.750, 0.657, 2.783), [0, 6], [0, 6], 6, 5).round(3)
    array([0.073, 3.752])
    """
    alpha, beta, gamma, delta = np.asarray(params, dtype=np.float64)
    x, t_x, n, h = (c.ravel() for c in np.broadcast_arrays(_f(x), _f(t_x), _f(n), _f(horizon)))
    log_front = (
        betaln(alpha + x + 1, beta + n - x)
        - betaln(alpha, beta)
        - log_likelihood(params, x, t_x, n)
    )
    return _f(np.exp(log_front) * expected_alive_periods(gamma, delta, n, h))


def probability_of_purchases_new(params: Params, x: ArrayLike, n: ArrayLike) -> FloatArray:
    """P(X(n) = x): probability that a new customer makes x repeat transactions in n periods.

    FHS 2010 eq. (6): ``C(n, x) B(alpha+x, beta+n-x)/B(alpha, beta)
    * B(gamma, delta+n)/B(gamma, delta) + sum_{i=x}^{n-1} C(i, x)
    B(alpha+x, beta+i-x)/B(alpha, beta) * B(gamma+1, delta+i)/B(gamma, delta)``.

    Parameters
    ----------
    params
        ``(alpha, beta, gamma, delta)``.
    x
        Number of repeat transactions (whole numbers >= 0).
    n
        Number of opportunities (whole numbers >= 0).

    Returns
    -------
    numpy.ndarray
        Broadcast shape of ``x`` and ``n``; 0 where x > n.

    Examples
    --------
    >>> p = probability_of_purchases_new((1.204, 0.750, 0.657, 2.783), range(7), 6)
    >>> round(float(p.sum()), 12), round(float(p[0] * 11104), 1)
    (1.0, 3455.8)
    """
    alpha, beta, gamma, delta = np.asarray(params, dtype=np.float64)
    xb, nb = np.broadcast_arrays(_f(x), _f(n))
    shape = xb.shape
    xs, ns = xb.ravel()[:, None], nb.ravel()[:, None]
    possible = xs <= ns
    xs = np.where(possible, xs, 0.0)
    width = int(np.max(ns)) if ns.size else 0
    i = np.arange(width, dtype=np.float64)[None, :]
    valid = (i >= xs) & (i < ns)
    i = np.where(valid, i, xs)  # keep the masked terms' arguments in range
    base = betaln(alpha, beta) + betaln(gamma, delta)
    log_alive = (
        _log_binom(ns, xs) + betaln(alpha + xs, beta + ns - xs) + betaln(gamma, delta + ns) - base
    )
    log_drop = (
        _log_binom(i, xs) + betaln(alpha + xs, beta + i - xs) + betaln(gamma + 1, delta + i) - base
    )
    terms = np.concatenate([log_alive, np.where(valid, log_drop, -np.inf)], axis=1)
    prob = np.exp(logsumexp(terms, axis=1))
    return _f(np.where(possible[:, 0], prob, 0.0).reshape(shape))


def _log_binom(n: FloatArray, k: FloatArray) -> FloatArray:
    return _f(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1))


def hyp2f1_a1(b: ArrayLike, c: ArrayLike, z: ArrayLike, *, rtol: float = 1e-15) -> FloatArray:
    """Gauss hypergeometric function 2F1(1, b; c; z) for 0 < b < c and 0 <= z <= 1.

    The power series ``sum_k (b)_k / (c)_k z^k`` has positive terms whose ratio
    ``z (b+k)/(c+k)`` rises to ``z``, so summing until the geometric tail bound
    ``t_k / (1 - z)`` is below ``rtol`` times the sum is exact to rounding (SciPy's general
    ``hyp2f1`` returns NaN or inaccurate values for large b, c with z near 1). At
    ``z = 1`` Gauss's theorem gives ``(c-1)/(c-b-1)`` when ``c - b > 1``, else infinity.
    Used by the BG/BB DERT (FHS 2010 eq. 14) and the sBG DERL (Fader & Hardie 2010 eq. 6).

    Parameters
    ----------
    b, c, z
        Broadcast together.
    rtol
        Relative accuracy of the truncated series.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> hyp2f1_a1([1.0, 1000.5], [2.0, 1001.2], [0.5, 1 / 1.001]).round(6)
    array([  1.386294, 686.549763])
    """
    bb, cc, zz = np.broadcast_arrays(_f(b), _f(c), _f(z))
    shape = bb.shape
    bb, cc, zz = bb.ravel(), cc.ravel(), zz.ravel()
    out = np.full(bb.shape, np.inf)
    at_one = zz >= 1.0
    gauss = at_one & (cc - bb > 1.0)
    out[gauss] = (cc[gauss] - 1.0) / (cc[gauss] - bb[gauss] - 1.0)
    todo = np.flatnonzero(~at_one)
    total = np.zeros(todo.size)
    log_term = np.zeros(todo.size)  # log of the first term not yet added
    start, chunk = 0, 512
    while todo.size:
        k = np.arange(start, start + chunk, dtype=np.float64)[None, :]
        b_, c_, z_ = bb[todo, None], cc[todo, None], zz[todo, None]
        with np.errstate(divide="ignore"):  # z = 0: log(0) = -inf, terms after the first are 0
            log_ratio = np.log(z_) + np.log(b_ + k) - np.log(c_ + k)
        cum = np.cumsum(log_ratio, axis=1)
        previous = np.concatenate([np.zeros((todo.size, 1)), cum[:, :-1]], axis=1)
        total += np.exp(log_term[:, None] + previous).sum(axis=1)
        log_term = log_term + cum[:, -1]
        tail = np.exp(log_term) / (1.0 - zz[todo])
        done = tail <= rtol * total
        out[todo[done]] = total[done]
        todo, total, log_term = todo[~done], total[~done], log_term[~done]
        start += chunk
        chunk = min(chunk * 2, 1 << 16)
    return _f(out.reshape(shape))


def discounted_expected_purchases(
    params: Params,
    x: ArrayLike,
    t_x: ArrayLike,
    n: ArrayLike,
    discount_rate: float,
    horizon: int | None = None,
) -> FloatArray:
    """DERT: discounted expected residual transactions, FHS 2010 eq. (14).

    ``DERT(d) = B(alpha+x+1, beta+n-x)/B(alpha, beta)
    * B(gamma, delta+n+1)/(B(gamma, delta) (1+d))
    * 2F1(1, delta+n+1; gamma+delta+n+1; 1/(1+d)) / L`` (L eq. 5, d the discount rate):
    the sum over periods k = n+1, n+2, ... of the expected transactions in period k
    discounted by ``(1 + d)^-(k - n)``. With a finite ``horizon`` the sum stops at period
    n + horizon and is computed term by term.

    Parameters
    ----------
    params
        ``(alpha, beta, gamma, delta)``.
    x, t_x, n
        Repeat transactions, period of the last one, number of opportunities.
    discount_rate
        Per-period discount rate d >= 0.
    horizon
        Number of future periods, or None for all of them.

    Returns
    -------
    numpy.ndarray
        One DERT per customer.

    Examples
    --------
    >>> params = (1.204, 0.750, 0.657, 2.783)
    >>> discounted_expected_purchases(params, [0, 6], [0, 6], 6, 0.1).round(3)
    array([0.115, 5.909])
    """
    alpha, beta, gamma, delta = np.asarray(params, dtype=np.float64)
    x, t_x, n = (c.ravel() for c in np.broadcast_arrays(_f(x), _f(t_x), _f(n)))
    log_front = (
        betaln(alpha + x + 1, beta + n - x)
        - betaln(alpha, beta)
        - log_likelihood(params, x, t_x, n)
    )
    if horizon is None:
        log_theta = betaln(gamma, delta + n + 1) - betaln(gamma, delta) - np.log1p(discount_rate)
        series = hyp2f1_a1(delta + n + 1, gamma + delta + n + 1, 1.0 / (1.0 + discount_rate))
        return _f(np.exp(log_front + log_theta) * series)
    unique_n, inverse = np.unique(n, return_inverse=True)
    k = np.arange(1, int(horizon) + 1, dtype=np.float64)[None, :]
    log_alive = betaln(gamma, delta + unique_n[:, None] + k) - betaln(gamma, delta)
    discounted = np.exp(log_alive - k * np.log1p(discount_rate)).sum(axis=1)
    return _f(np.exp(log_front) * discounted[inverse.ravel()])
