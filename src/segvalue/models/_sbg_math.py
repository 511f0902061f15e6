"""Shifted-beta-geometric (sBG) model math: pure functions of (params, arrays).

Fader & Hardie (2007), "How to Project Customer Retention", *Journal of Interactive
Marketing* 21(1), 76-90 ("FH 2007"), and Fader & Hardie (2010), "Customer-Base Valuation
in a Contractual Setting: The Perils of Ignoring Heterogeneity", *Marketing Science*
29(1), 85-93 ("FH 2010").

Notation. A customer acquired at period 0 renews at the end of each period with
probability ``1 - theta``, ``theta ~ Beta(alpha, beta)`` across customers; ``T`` is the
period in which she churns (T = 1, 2, ...). ``params`` is always ``(alpha, beta)``;
inputs are assumed valid (the estimator in :mod:`segvalue.models.sbg` validates them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betaln, digamma

from segvalue.models._bgbb_math import hyp2f1_a1

__all__ = [
    "churn_probability",
    "discounted_expected_residual_lifetime",
    "expected_lifetime",
    "log_likelihood",
    "log_likelihood_gradient",
    "retention_rate",
    "survival",
]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Params = Sequence[float] | FloatArray


def _f(values: ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def churn_probability(params: Params, t: ArrayLike) -> FloatArray:
    """P(T = t): probability that a new customer churns in period t >= 1.

    ``B(alpha+1, beta+t-1) / B(alpha, beta)`` (FH 2007; the churn terms of eq. 7).

    Parameters
    ----------
    params
        ``(alpha, beta)``.
    t
        Periods (whole numbers >= 1).

    Returns
    -------
    numpy.ndarray
        Same shape as ``t``.

    Examples
    --------
    >>> churn_probability((1.0, 1.0), [1, 2, 3]).round(4)
    array([0.5   , 0.1667, 0.0833])
    """
    alpha, beta = np.asarray(params, dtype=np.float64)
    tt = _f(t)
    return _f(np.exp(betaln(alpha + 1, beta + tt - 1) - betaln(alpha, beta)))


def survival(params: Params, t: ArrayLike) -> FloatArray:
    """S(t) = P(T > t): share of a cohort still active after period t >= 0.

    ``B(alpha, beta+t) / B(alpha, beta)`` (FH 2007; the survivor term of eq. 7).

    Parameters
    ----------
    params
        ``(alpha, beta)``.
    t
        Periods (whole numbers >= 0).

    Returns
    -------
    numpy.ndarray
        Same shape as ``t``.

    Examples
    --------
    >>> survival((1.0, 1.0), [0, 1, 2]).round(4)
    array([1.    , 0.5   , 0.3333])
    """
    alpha, beta = np.asarray(params, dtype=np.float64)
    tt = _f(t)
    return _f(np.exp(betaln(alpha, beta + tt) - betaln(alpha, beta)))


def retention_rate(params: Params, t: ArrayLike) -> FloatArray:
    """Retention rate r_t = S(t) / S(t-1) = (beta+t-1) / (alpha+beta+t-1), FH 2007 eq. (8).

    Parameters
    ----------
    params
        ``(alpha, beta)``.
    t
        Periods (whole numbers >= 1).

    Returns
    -------
    numpy.ndarray
        Same shape as ``t``; increasing in t (heterogeneity sorts out the churners).

    Examples
    --------
    >>> retention_rate((0.704, 1.182), [1, 2, 7]).round(3)
    array([0.627, 0.756, 0.911])
    """
    alpha, beta = np.asarray(params, dtype=np.float64)
    tt = _f(t)
    return _f((beta + tt - 1) / (alpha + beta + tt - 1))


def log_likelihood(params: Params, t: ArrayLike, censored: ArrayLike) -> FloatArray:
    """Log-likelihood of each (t, censored) row, FH 2007 eq. (7).

    ``log P(T = t)`` for a customer who churned in period t; ``log S(t)`` for one still
    active after period t (censored).

    Parameters
    ----------
    params
        ``(alpha, beta)``.
    t
        Churn period, or last observed period when censored (whole numbers >= 1).
    censored
        1 when the customer was still active, 0 when she churned in period t.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> log_likelihood((1.0, 1.0), [1, 1], [0, 1]).round(4)
    array([-0.6931, -0.6931])
    """
    alpha, beta = np.asarray(params, dtype=np.float64)
    tt, c = _f(t), _f(censored) > 0
    log_churn = betaln(alpha + 1, beta + tt - 1)
    log_survive = betaln(alpha, beta + tt)
    return _f(np.where(c, log_survive, log_churn) - betaln(alpha, beta))


def log_likelihood_gradient(
    params: Params, t: ArrayLike, censored: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Log-likelihood (FH 2007 eq. 7) and its exact gradient in (alpha, beta).

    With ``psi`` the digamma function and ``s = alpha + beta``:
    churned, ``d/dalpha = psi(alpha+1) - psi(alpha) + psi(s) - psi(s+t)`` and
    ``d/dbeta = psi(beta+t-1) - psi(beta) + psi(s) - psi(s+t)``; censored,
    ``d/dalpha = psi(s) - psi(s+t)`` and ``d/dbeta = psi(beta+t) - psi(beta) + psi(s) - psi(s+t)``.

    Parameters
    ----------
    params
        ``(alpha, beta)``.
    t, censored
        As in :func:`log_likelihood`.

    Returns
    -------
    loglik : numpy.ndarray
        Shape ``(rows,)``.
    gradient : numpy.ndarray
        Shape ``(rows, 2)``.

    Examples
    --------
    >>> ll, grad = log_likelihood_gradient((1.0, 1.0), [1, 3], [0, 1])
    >>> grad.shape
    (2, 2)
    """
    alpha, beta = np.asarray(params, dtype=np.float64)
    tt, c = _f(t).ravel(), _f(censored).ravel() > 0
    common = digamma(alpha + beta) - digamma(alpha + beta + tt)
    d_alpha = np.where(c, common, digamma(alpha + 1) - digamma(alpha) + common)
    d_beta = np.where(c, digamma(beta + tt), digamma(beta + tt - 1)) - digamma(beta) + common
    return log_likelihood(params, tt, c), _f(np.column_stack([d_alpha, d_beta]))


def expected_lifetime(params: Params) -> float:
    """Expected number of periods a new customer stays, E[T] = (alpha+beta-1)/(alpha-1).

    ``E[T] = sum_{t>=0} S(t) = E[1/theta] = B(alpha-1, beta)/B(alpha, beta)`` (the mean
    of the sBG distribution of FH 2007), infinite when alpha <= 1.

    Parameters
    ----------
    params
        ``(alpha, beta)``.

    Returns
    -------
    float

    Examples
    --------
    >>> expected_lifetime((3.0, 4.0))
    3.0
    >>> expected_lifetime((0.704, 1.182))
    inf
    """
    alpha, beta = np.asarray(params, dtype=np.float64)
    if alpha <= 1.0:
        return float("inf")
    return float((alpha + beta - 1.0) / (alpha - 1.0))


def discounted_expected_residual_lifetime(
    params: Params, renewals: ArrayLike, discount_rate: float
) -> FloatArray:
    """DERL of a customer who has made ``renewals`` renewals, FH 2010 eq. (6).

    ``DERL(d | alpha, beta, n-1 renewals) = B(alpha, beta+n)/B(alpha, beta+n-1)
    * 2F1(1, beta+n; alpha+beta+n; 1/(1+d))``: standing just before her n-th renewal
    decision, the expected number of further periods she pays for, the k-th one
    discounted by ``(1+d)^-(k-1)`` (the first undiscounted). Given theta it is
    ``(1-theta)(1+d)/(d+theta)``.

    Parameters
    ----------
    params
        ``(alpha, beta)``.
    renewals
        Renewals made so far, n - 1 (whole numbers >= 0).
    discount_rate
        Per-period discount rate d >= 0.

    Returns
    -------
    numpy.ndarray
        Same shape as ``renewals``; infinite for d = 0 unless alpha > 1.

    Examples
    --------
    >>> discounted_expected_residual_lifetime((0.668, 3.806), [0, 4], 0.1).round(3)
    array([5.415, 6.897])
    """
    alpha, beta = np.asarray(params, dtype=np.float64)
    r = _f(renewals)
    front = (beta + r) / (alpha + beta + r)  # B(alpha, beta+n)/B(alpha, beta+n-1), n = r+1
    series = hyp2f1_a1(beta + r + 1, alpha + beta + r + 1, 1.0 / (1.0 + discount_rate))
    return _f(front * series)
