"""Customer lifetime value from a transaction model and a spend model, with intervals.

CLV over a horizon of whole periods is

    CLV_i = margin * E[spend | i] * sum_{k=1..H} E[purchases in period k | i] / (1 + d)^k

with d the discount rate per period (see :func:`segvalue.units.per_period_rate`). Intervals
come from parameter uncertainty by the delta method on log(CLV): the gradient with respect
to the log-parameters of both models (central differences, a few model evaluations) and
the models' covariance matrices, assumed independent between the two models.

The transaction models evaluate their expensive terms once per distinct (x, T) pair, so
the cost grows with the number of distinct histories, not with the number of customers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from segvalue.errors import DataValidationError

__all__ = ["CLVResult", "customer_lifetime_value"]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

_STEP = 1e-4  # relative step in log-parameters for the delta method


@dataclass(frozen=True)
class CLVResult:
    """Per-customer lifetime value and its parts.

    Attributes
    ----------
    clv
        Margin-adjusted, discounted value over the horizon.
    lower, upper
        Interval bounds from parameter uncertainty (NaN when unavailable).
    discounted_purchases
        Discounted expected purchases over the horizon.
    expected_spend
        Expected spend per purchase.
    total, total_lower, total_upper
        Sum over customers and its interval (the sum's own delta-method interval).
    """

    clv: FloatArray
    lower: FloatArray
    upper: FloatArray
    discounted_purchases: FloatArray
    expected_spend: FloatArray
    total: float
    total_lower: float
    total_upper: float


def _spend_values(
    spend: Any, x: FloatArray, m: FloatArray | None, fallback: float | None
) -> FloatArray:
    if spend is not None:
        if m is None:
            raise DataValidationError(
                "a spend model needs monetary_value", fix="pass the mean repeat spend"
            )
        # Repeat customers whose repeat purchases were all free are outside the spend
        # model's support (m > 0): they get the population mean, like new customers.
        free = (x > 0) & ~(m > 0)
        return np.asarray(
            spend.expected_spend(np.where(free, 0.0, x), np.where(free, 0.0, m)),
            dtype=np.float64,
        )
    if m is None:
        raise DataValidationError(
            "no spend model and no monetary_value", fix="pass a spend model or monetary_value"
        )
    mean_spend = fallback if fallback is not None else float(np.mean(m[x > 0]))
    return np.where(x > 0, m, mean_spend)


def customer_lifetime_value(
    transactions: Any,
    frequency: Any,
    recency: Any,
    T: Any,
    *,
    horizon: int,
    discount_rate: float,
    margin: float = 1.0,
    spend: Any = None,
    monetary_value: Any = None,
    level: float = 0.95,
    intervals: bool = True,
) -> CLVResult:
    """Discounted, margin-adjusted CLV per customer with parameter-uncertainty intervals.

    Parameters
    ----------
    transactions
        A fitted BTYD model with ``discounted_expected_purchases``.
    frequency, recency, T
        Per-customer history in the model's time unit.
    horizon
        Whole periods of the time unit (e.g. 52 weeks).
    discount_rate
        Discount rate per period (convert an annual rate with
        :func:`segvalue.units.per_period_rate`).
    margin
        Share of spend that is profit, in (0, 1].
    spend
        A fitted spend model with ``expected_spend(frequency, monetary_value)``; without
        one, the observed mean repeat spend is used (the base's mean for customers
        without repeats).
    monetary_value
        Mean repeat spend per customer (needed by the spend model).
    level
        Interval coverage.
    intervals
        Compute the delta-method intervals (a few extra model evaluations).

    Returns
    -------
    CLVResult

    Examples
    --------
    >>> class Flat:  # one purchase per period for everyone, no uncertainty
    ...     params_ = {"rate": 1.0}
    ...     param_names = ("rate",)
    ...     covariance_ = np.zeros((1, 1))
    ...     def discounted_expected_purchases(self, x, t, T, *, discount_rate, horizon):
    ...         k = np.arange(1, horizon + 1)
    ...         return np.full(np.shape(x), np.sum((1 + discount_rate) ** -k))
    >>> r = customer_lifetime_value(Flat(), [1], [1.0], [2.0], horizon=2, discount_rate=0.0,
    ...                             margin=0.5, monetary_value=[10.0], intervals=False)
    >>> r.clv.tolist()
    [10.0]
    """
    if horizon < 1 or int(horizon) != horizon:
        raise DataValidationError(
            f"horizon {horizon} is not a whole number of periods >= 1",
            fix="give the horizon in whole time units, e.g. 52 weeks",
        )
    if not 0 < margin <= 1:
        raise DataValidationError(f"margin {margin} is not in (0, 1]", fix="e.g. 0.3 for 30 %")
    ux = np.asarray(frequency, dtype=np.float64).ravel()
    ut = np.asarray(recency, dtype=np.float64).ravel()
    uT = np.asarray(T, dtype=np.float64).ravel()
    um = None if monetary_value is None else np.asarray(monetary_value, float).ravel()
    fallback = None if um is None or spend is not None else _mean_repeat(ux, um)
    # No de-duplication here: the transaction models evaluate their costly terms once per
    # distinct (x, T) pair themselves, and everything else is cheap per customer.
    counts = np.ones(ux.size)

    def purchases_of(t_model: Any) -> FloatArray:
        return np.asarray(
            t_model.discounted_expected_purchases(
                ux, ut, uT, discount_rate=discount_rate, horizon=int(horizon)
            ),
            dtype=np.float64,
        )

    def spend_of(s_model: Any) -> FloatArray:
        return _spend_values(s_model, ux, um, fallback)

    purchases, per_purchase = purchases_of(transactions), spend_of(spend)
    value = margin * per_purchase * purchases
    lower = np.full_like(value, np.nan)
    upper = np.full_like(value, np.nan)
    total = float(np.sum(value * counts))
    total_lower = total_upper = float("nan")
    if intervals:
        grads, covs = _log_gradients(
            value, (transactions, purchases, purchases_of), (spend, per_purchase, spend_of)
        )
        if grads is not None and covs is not None:
            z = stats.norm.ppf(0.5 + level / 2)
            var = np.einsum("ni,ij,nj->n", grads, covs, grads)
            with np.errstate(divide="ignore", invalid="ignore"):
                se_log = np.sqrt(np.maximum(var, 0)) / value
            lower = np.where(value > 0, value * np.exp(-z * se_log), 0.0)
            upper = np.where(value > 0, value * np.exp(z * se_log), 0.0)
            g_total = counts @ grads
            se_total = float(np.sqrt(max(float(g_total @ covs @ g_total), 0.0))) / total
            total_lower, total_upper = total * np.exp(-z * se_total), total * np.exp(z * se_total)
    return CLVResult(
        clv=value,
        lower=lower,
        upper=upper,
        discounted_purchases=purchases,
        expected_spend=per_purchase,
        total=total,
        total_lower=float(total_lower),
        total_upper=float(total_upper),
    )


def _mean_repeat(x: FloatArray, m: FloatArray) -> float:
    repeat = m[x > 0]
    return float(repeat.mean()) if repeat.size else 0.0


def _log_gradients(
    value: FloatArray, *factors: tuple[Any, FloatArray, Any]
) -> tuple[FloatArray | None, FloatArray | None]:
    """d value / d log(theta) for every parameter of both models, and their log-covariance.

    ``value`` is a product of factors (spend per purchase, discounted purchases), each
    depending on one model's parameters only: ``factors`` holds (model, factor at the
    estimate, function of a model giving the factor). A forward difference in each
    log-parameter re-evaluates only its own factor.
    """
    columns: list[FloatArray] = []
    blocks: list[FloatArray] = []
    for model, base, factor_of in factors:
        if model is None:
            continue
        theta = np.array([model.params_[n] for n in model.param_names], dtype=np.float64)
        cov = np.asarray(model.covariance_, dtype=np.float64)
        if not np.all(np.isfinite(cov)):
            return None, None
        blocks.append(np.diag(1 / theta) @ cov @ np.diag(1 / theta))
        for j in range(theta.size):
            up = theta.copy()
            up[j] *= np.exp(_STEP)
            moved = factor_of(model.with_params(up))
            ratio = np.divide(moved, base, out=np.ones_like(moved), where=base != 0)
            columns.append(value * (ratio - 1.0) / _STEP)
    if not columns:
        return None, None
    size = sum(b.shape[0] for b in blocks)
    cov_log = np.zeros((size, size))
    offset = 0
    for b in blocks:
        k = b.shape[0]
        cov_log[offset : offset + k, offset : offset + k] = b
        offset += k
    return np.column_stack(columns), cov_log
