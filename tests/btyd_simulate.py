"""Seeded, vectorised simulators of buy-till-you-die customer histories, for tests.

Each returns the calibration summary (frequency x, recency t_x, age T) of ``n`` customers
acquired at time 0 (their first purchase) and observed until T. One million customers
take about a second: every draw is a single numpy call, and purchase times are never
materialised (given N purchases in (0, L], their times are N uniform order statistics,
so the k-th of them is L * Beta(k, N - k + 1)).

Shared by the tests of every continuous-time BTYD model; import it as
``from btyd_simulate import simulate_bgnbd`` (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["simulate_bgnbd", "simulate_pareto_nbd"]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
History = tuple[FloatArray, FloatArray, FloatArray]


def _ages(n: int, T: Any) -> FloatArray:
    ages = np.broadcast_to(np.asarray(T, dtype=np.float64), (n,)).copy()
    if np.any(ages <= 0) or not np.all(np.isfinite(ages)):
        raise ValueError("T must be positive and finite")
    return ages


def _last_of(count: FloatArray, among: FloatArray, span: FloatArray, rng: Any) -> FloatArray:
    """Time of the ``count``-th of ``among`` uniform purchase times on (0, span]; 0 if none."""
    some = count > 0
    recency = np.zeros(count.shape)
    k = count[some]
    recency[some] = span[some] * rng.beta(k, among[some] - k + 1.0)
    return recency


def simulate_bgnbd(
    n: int,
    r: float,
    alpha: float,
    a: float,
    b: float,
    T: Any,
    seed: int,
    modified: bool = False,
) -> History:
    """Histories from the BG/NBD (Fader, Hardie & Lee 2005) or MBG/NBD model.

    Each customer draws lambda ~ Gamma(r, rate alpha) and p ~ Beta(a, b). Purchases follow
    a Poisson process with rate lambda; after each repeat purchase the customer leaves
    with probability p (BG/NBD, Marketing Science 24(2), section 3). In the MBG/NBD
    (Batislam, Denizel & Filiztekin 2007, IJRM 24(3)) the customer may also leave right
    after the first purchase at time 0.

    The number of repeat purchases made before leaving is geometric, K = the first
    purchase followed by a dropout (K >= 1, or K >= 0 in the MBG/NBD); with N(T) ~
    Poisson(lambda T) purchases by T in the absence of dropout, x = min(N(T), K) and t_x
    is the x-th of the N(T) uniform purchase times.

    Parameters
    ----------
    n
        Number of customers.
    r, alpha, a, b
        Model parameters (alpha is a rate: the mean purchase rate is r / alpha).
    T
        Age of every customer: a scalar, or an array of n ages.
    seed
        Seed of ``numpy.random.default_rng``.
    modified
        True for the MBG/NBD.

    Returns
    -------
    tuple of numpy.ndarray
        (frequency, recency, T), each of length n.
    """
    rng = np.random.default_rng(seed)
    ages = _ages(n, T)
    rate = rng.gamma(r, 1.0 / alpha, size=n)
    p = rng.beta(a, b, size=n)
    purchases = rng.poisson(rate * ages).astype(np.float64)
    # K by inversion, in floating point: p may be so small that K exceeds any integer type.
    uniform = 1.0 - rng.random(n)  # in (0, 1]
    with np.errstate(divide="ignore"):
        dropouts = np.floor(np.log(uniform) / np.log1p(-p))  # failures before the dropout
    before_leaving = dropouts if modified else dropouts + 1.0
    frequency = np.minimum(purchases, before_leaving)
    recency = _last_of(frequency, purchases, ages, rng)
    return frequency, recency, ages


def simulate_pareto_nbd(
    n: int, r: float, alpha: float, s: float, beta: float, T: Any, seed: int
) -> History:
    """Histories from the Pareto/NBD model (Schmittlein, Morrison & Colombo 1987).

    Each customer draws lambda ~ Gamma(r, rate alpha) and a dropout rate
    mu ~ Gamma(s, rate beta); the unobserved lifetime is tau ~ Exponential(mu) and
    purchases follow a Poisson process with rate lambda on (0, min(tau, T)], so x ~
    Poisson(lambda min(tau, T)) and t_x is the last of x uniform times on that span.

    Parameters
    ----------
    n
        Number of customers.
    r, alpha, s, beta
        Model parameters (alpha and beta are rates).
    T
        Age of every customer: a scalar, or an array of n ages.
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    tuple of numpy.ndarray
        (frequency, recency, T), each of length n.
    """
    rng = np.random.default_rng(seed)
    ages = _ages(n, T)
    rate = rng.gamma(r, 1.0 / alpha, size=n)
    dropout_rate = rng.gamma(s, 1.0 / beta, size=n)
    lifetime = rng.exponential(1.0, size=n) / dropout_rate
    active = np.minimum(lifetime, ages)
    frequency = rng.poisson(rate * active).astype(np.float64)
    recency = _last_of(frequency, frequency, active, rng)
    return frequency, recency, ages
