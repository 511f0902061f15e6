"""Customer lifetime value from a transaction model and a spend model, with intervals.

CLV over a horizon of whole periods is

    CLV_i = margin * E[spend | i] * sum_{k=1..H} E[purchases in period k | i] / (1 + d)^k

with d the discount rate per period (see :func:`segvalue.units.per_period_rate`). Intervals
come from parameter uncertainty by the delta method on log(CLV): the gradient with respect
to the log-parameters of both models and the models' covariance matrices, assumed
independent between the two models. The spend model's gradient is in closed form where
the model has one (Gamma-Gamma); the transaction model's by forward differences, one
model evaluation per parameter, run concurrently on the available cores.

The transaction model is evaluated once per distinct (x, t_x, T) history (and evaluates its
expensive terms once per distinct (x, T) pair), so the cost grows with the number of
distinct histories, not with the number of customers.
"""

from __future__ import annotations

import contextvars
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from segvalue.errors import DataValidationError
from segvalue.models.base import Histories

__all__ = ["CLVResult", "customer_lifetime_value"]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

_STEP = 1e-4  # relative step in log-parameters for the delta method
#: An interval whose upper / lower ratio exceeds this says nothing: reported as NaN.
MAX_INTERVAL_RATIO = 1e6


@dataclass(frozen=True)
class CLVResult:
    """Per-customer lifetime value and its parts.

    Attributes
    ----------
    clv
        Margin-adjusted, discounted value over the horizon.
    lower, upper
        Interval bounds from parameter uncertainty, never negative (log scale); NaN
        when unavailable: no covariance, or wider than ``MAX_INTERVAL_RATIO``.
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


def _spend_inputs(x: FloatArray, m: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(x, m) as the spend model sees them.

    Repeat customers whose repeat purchases were all free are outside the spend model's
    support (m > 0): they get the population mean, like new customers (x = 0).
    """
    free = (x > 0) & ~(m > 0)
    return np.where(free, 0.0, x), np.where(free, 0.0, m)


def _spend_values(
    spend: Any, x: FloatArray, m: FloatArray | None, fallback: float | None
) -> FloatArray:
    if spend is not None:
        if m is None:
            raise DataValidationError(
                "a spend model needs monetary_value", fix="pass the mean repeat spend"
            )
        return np.asarray(spend.expected_spend(*_spend_inputs(x, m)), dtype=np.float64)
    if m is None:
        raise DataValidationError(
            "no spend model and no monetary_value", fix="pass a spend model or monetary_value"
        )
    mean_spend = fallback if fallback is not None else float(np.mean(m[x > 0]))
    # Spend is non-negative: a customer whose returns outweigh the purchases brings 0.
    return np.maximum(np.where(x > 0, m, mean_spend), 0.0)


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
    histories: Histories | None = None,
    mean_spend: float | None = None,
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
    histories
        ``Histories.of(frequency, recency, T)`` when the caller has it already (it is
        computed otherwise).
    mean_spend
        Without a spend model: the spend per purchase of customers without repeats
        (default: the mean ``monetary_value`` of the repeat customers given). A scorer of
        one customer passes the value of the run it was saved from.

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
    um = None if monetary_value is None else np.asarray(monetary_value, float).ravel()
    fallback = None
    if um is not None and spend is None:
        fallback = mean_spend if mean_spend is not None else _mean_repeat(ux, um)
    # The transaction model's factor depends on the customer only through her history:
    # evaluate it (and its gradient) once per distinct history. The spend factor is cheap
    # per customer and depends on her own mean spend: evaluate it per customer.
    if histories is None:
        histories = Histories.of(ux, recency, T)

    def purchases_of(t_model: Any, rows: tuple[FloatArray, ...]) -> FloatArray:
        x, t_x, big_t = rows
        return np.asarray(
            t_model.discounted_expected_purchases(
                x, t_x, big_t, discount_rate=discount_rate, horizon=int(horizon)
            ),
            dtype=np.float64,
        )

    def purchases_at(thetas: FloatArray, rows: tuple[FloatArray, ...]) -> FloatArray:
        x, t_x, big_t = rows
        return np.asarray(
            transactions.discounted_expected_purchases_at(
                thetas, x, t_x, big_t, discount_rate=discount_rate, horizon=int(horizon)
            ),
            dtype=np.float64,
        )

    def spend_of(s_model: Any, rows: tuple[FloatArray, ...]) -> FloatArray:
        x, m = rows
        return _spend_values(s_model, x, m, fallback)

    # With intervals, the perturbed transaction models are evaluated on other threads
    # meanwhile (the most expensive part of the intervals).
    per_history, moved = _evaluations(
        transactions,
        purchases_of,
        histories.columns,
        moved=intervals,
        at=purchases_at if hasattr(transactions, "discounted_expected_purchases_at") else None,
    )
    purchases = histories.per_customer(per_history)
    per_purchase = _spend_values(spend, ux, um, fallback)
    value = margin * per_purchase * purchases
    lower = np.full_like(value, np.nan)
    upper = np.full_like(value, np.nan)
    total = float(np.sum(value))
    total_lower = total_upper = float("nan")
    if intervals:
        # log CLV = log(margin) + log(spend) + log(purchases): the two models' terms add,
        # each a function of that model's parameters: per history, and per customer.
        parts = [_relative_gradients(transactions, moved, per_history, histories.inverse)]
        if spend is not None and um is not None:
            parts.append(_spend_gradients(spend, spend_of, (ux, um), per_purchase))
        if all(p is not None for p in parts):
            z = special.ndtri(0.5 + level / 2)  # normal quantile (scipy.stats is slow to import)
            var_log = np.zeros_like(value)
            var_total = 0.0
            for part in parts:
                assert part is not None
                grads, inverse, cov_log = part  # grads: (parameters, rows)
                var_rows = np.sum((cov_log @ grads) * grads, axis=0)
                # d total / d log theta = sum_i value_i d log(factor_i) / d log theta
                if inverse is None:
                    var_log += var_rows
                    g_total = grads @ value
                else:
                    var_log += var_rows[inverse]
                    g_total = grads @ np.bincount(inverse, weights=value, minlength=grads.shape[1])
                var_total += float(g_total @ cov_log @ g_total)
            se_log = np.sqrt(np.maximum(var_log, 0.0))
            # exp(2 z se) is the upper / lower ratio: beyond the limit (or not finite) the
            # interval says nothing and is reported as unavailable, never as 1e250.
            limit = np.log(MAX_INTERVAL_RATIO) / (2 * z)
            usable = np.isfinite(se_log) & (se_log <= limit)
            with np.errstate(over="ignore", invalid="ignore"):
                lower = np.where(
                    usable, np.where(value > 0, value * np.exp(-z * se_log), 0.0), np.nan
                )
                upper = np.where(
                    usable, np.where(value > 0, value * np.exp(z * se_log), 0.0), np.nan
                )
            se_total = float(np.sqrt(max(var_total, 0.0))) / total if total > 0 else 0.0
            if np.isfinite(se_total) and se_total <= limit:
                total_lower = total * np.exp(-z * se_total)
                total_upper = total * np.exp(z * se_total)
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
    return max(float(repeat.mean()), 0.0) if repeat.size else 0.0


def _parameters(model: Any) -> FloatArray:
    return np.array([model.params_[n] for n in model.param_names], dtype=np.float64)


def _log_covariance(model: Any) -> FloatArray | None:
    """Covariance of the log-parameters (delta method), or None when not available."""
    theta = _parameters(model)
    cov = np.asarray(model.covariance_, dtype=np.float64)
    if not np.all(np.isfinite(cov)):
        return None
    return np.diag(1 / theta) @ cov @ np.diag(1 / theta)


def _spend_gradients(
    spend: Any, spend_of: Any, columns: tuple[FloatArray, FloatArray], factor: FloatArray
) -> tuple[FloatArray, np.ndarray[Any, Any] | None, FloatArray] | None:
    """d log(spend) / d log(theta) per customer: in closed form when the model has it."""
    log_gradient = getattr(spend, "expected_spend_log_gradient", None)
    if log_gradient is None:
        # (The fitted model's spend is evaluated again, on this thread while the moved
        # ones run: cheap, and only for spend models without a closed form.)
        moved = _evaluations(spend, spend_of, columns, moved=True)[1]
        return _relative_gradients(spend, moved, factor, None)
    cov_log = _log_covariance(spend)
    if cov_log is None:
        return None
    return np.asarray(log_gradient(*_spend_inputs(*columns)), dtype=np.float64), None, cov_log


def _available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


#: Below this many rows the moved models are evaluated on the calling thread.
_THREADED_ROWS = 10_000
#: Up to this many rows (customers scored in real time) the fitted and the moved models
#: are evaluated together, in one call (``at``): each call's fixed cost (about 0.25 ms)
#: outweighs its work there. Above, each model on its own (its distinct histories only).
_STACKED_ROWS = 64


def _evaluations(
    model: Any,
    factor_of: Any,
    columns: tuple[FloatArray, ...],
    *,
    moved: bool,
    at: Any = None,
) -> tuple[FloatArray, list[FloatArray] | None]:
    """``factor_of(model, columns)`` and, when ``moved``, the same at each log-parameter
    moved by ``_STEP`` (None when the model's covariance is not available).

    The moved models are evaluated on worker threads (one per core) while this thread
    evaluates the fitted one: the evaluations spend their time in numpy / scipy ufunc
    loops, which release the GIL. Each result is computed by the same code as on one
    thread, so nothing depends on the number of threads or their timing. ``at(thetas,
    columns)``, when given, evaluates the factor at several parameter rows at once: up to
    :data:`_STACKED_ROWS` rows (real time) take one evaluation, not one per parameter.
    """
    thetas = None
    if moved and _log_covariance(model) is not None:
        theta = _parameters(model)
        thetas = [theta]
        for j in range(theta.size):
            up = theta.copy()
            up[j] *= np.exp(_STEP)
            thetas.append(up)
    if not thetas:
        return factor_of(model, columns), None
    workers = min(len(thetas) - 1, _available_cores())
    # Few rows (one customer scored in real time): starting threads costs more (about
    # 4 ms) than the evaluations themselves.
    if at is not None and columns[0].size <= _STACKED_ROWS:
        values = at(np.vstack(thetas), columns)
        return values[0], list(values[1:])
    models = [model.with_params(up) for up in thetas[1:]]
    if workers <= 1 or columns[0].size < _THREADED_ROWS:
        return factor_of(model, columns), [factor_of(m, columns) for m in models]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Each in a copy of this thread's context: numpy's error state (np.errstate) is a
        # context variable, and a worker should see the caller's, as on one thread.
        futures = [
            pool.submit(contextvars.copy_context().run, factor_of, m, columns) for m in models
        ]
        base = factor_of(model, columns)
        return base, [future.result() for future in futures]


def _relative_gradients(
    model: Any,
    moved: list[FloatArray] | None,
    factor: FloatArray,
    inverse: np.ndarray[Any, Any] | None,
) -> tuple[FloatArray, np.ndarray[Any, Any] | None, FloatArray] | None:
    """d log(factor) / d log(theta) (parameters x rows), ``inverse``, cov(log theta).

    ``factor`` (spend per purchase or discounted purchases, one per row) depends on one
    model's parameters; ``moved`` holds it at each log-parameter moved by ``_STEP``
    (:func:`_evaluations`): forward differences. ``inverse`` (each customer's row, or
    None when the rows are the customers) is passed through. None when the model's
    covariance is not available.
    """
    cov_log = _log_covariance(model)
    if cov_log is None or moved is None:
        return None
    grads = np.empty((len(moved), factor.size))  # (parameters, rows): long rows for numpy
    for j, values in enumerate(moved):
        ratio = np.divide(values, factor, out=np.ones_like(values), where=factor != 0)
        grads[j] = (ratio - 1.0) / _STEP
    return grads, inverse, cov_log
