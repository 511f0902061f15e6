"""The Pareto/NBD model for continuous-time noncontractual settings (SMC 1987).

Schmittlein, Morrison & Colombo (1987), "Counting Your Customers: Who Are They and What
Will They Do Next?", *Management Science* 33(1). While alive a customer buys at Poisson
rate ``lambda ~ Gamma(r, alpha)`` and stays alive for an exponential time with rate
``mu ~ Gamma(s, beta)``. The math lives in :mod:`segvalue.models._pareto_nbd_math`; this
module validates and fits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from segvalue.errors import DataValidationError
from segvalue.models import _pareto_nbd_math as pnbd
from segvalue.models._fit import log_scale_derivatives
from segvalue.models.base import BTYDModel, FloatArray, check_rfm

__all__ = ["ParetoNBDModel"]


def _nonnegative(value: ArrayLike, name: str) -> FloatArray:
    """A duration such as ``horizon``: finite and >= 0, with a clear error."""
    arr = np.asarray(value, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        first = arr.ravel()[int(np.argmax(bad.ravel()))]
        raise DataValidationError(
            f"{name} {first:g} is not a number >= 0",
            fix=f"pass {name} in the model's time unit, e.g. 52 for a year in weeks",
        )
    return arr


def _whole(value: ArrayLike, name: str) -> FloatArray:
    """A count such as ``n``: a whole number >= 0, with a clear error."""
    arr = np.asarray(value, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) | (arr < 0) | (arr != np.round(arr))
    if bad.any():
        first = arr.ravel()[int(np.argmax(bad.ravel()))]
        raise DataValidationError(
            f"{name} {first:g} is not a whole number >= 0", fix=f"pass {name} as 0, 1, 2, ..."
        )
    return arr


def _per_customer(value: FloatArray, size: int, name: str) -> FloatArray:
    """Broadcast a scalar or per-customer argument to one value per customer."""
    try:
        return np.asarray(np.broadcast_to(value.reshape(-1) if value.ndim else value, (size,)))
    except ValueError:
        raise DataValidationError(
            f"{name} has {value.size} values for {size} customers",
            fix=f"pass one {name} for all customers or one per customer",
        ) from None


def _rate(value: float, name: str, *, positive: bool) -> float:
    rate = float(value)
    if not np.isfinite(rate) or rate < 0 or (positive and rate == 0):
        bound = "> 0" if positive else ">= 0"
        raise DataValidationError(
            f"{name} {value} is not a number {bound}",
            fix="pass the rate per time unit of the model, e.g. log(1.15) / 52 for 15% a "
            "year with weekly data"
            if positive
            else "pass the discount rate per period, e.g. 0.01 for 1% a period",
        )
    return rate


class ParetoNBDModel(BTYDModel):
    """Pareto/NBD: Poisson purchases while alive, exponential lifetimes, gamma heterogeneity.

    Fitted by maximum likelihood on the unique (frequency, recency, T) rows with the exact
    gradient (Fader & Hardie 2005, "A Note on Deriving the Pareto/NBD Model and Related
    Expressions"; the 2F1 terms are integrated by quadrature, see
    :mod:`segvalue.models._pareto_nbd_math`).

    Parameters
    ----------
    penalizer
        L2 penalty on the parameters (0 for plain maximum likelihood).

    Examples
    --------
    >>> x = [0, 0, 1, 1, 2, 3, 5, 8, 0, 1, 4, 12]
    >>> t = [0.0, 0.0, 5.0, 30.0, 12.0, 35.0, 20.0, 38.0, 0.0, 10.0, 25.0, 36.0]
    >>> T = [39.0, 39.0, 39.0, 39.0, 39.0, 39.0, 39.0, 39.0, 30.0, 30.0, 30.0, 39.0]
    >>> w = [900, 300, 120, 110, 80, 70, 40, 30, 500, 90, 60, 20]
    >>> model = ParetoNBDModel().fit(x, t, T, weights=w, time_unit="week")
    >>> model.n_customers_, model.converged_
    (2320, True)
    >>> sorted(model.params_)
    ['alpha', 'beta', 'r', 's']
    """

    param_names = ("r", "alpha", "s", "beta")
    model_name = "Pareto/NBD"

    # --- fitting -------------------------------------------------------------------
    def _negative_loglik(
        self, log_params: FloatArray, data: dict[str, FloatArray]
    ) -> tuple[float, FloatArray]:
        params = np.exp(log_params)
        ll, grad = pnbd.log_likelihood_gradient(params, data["x"], data["t_x"], data["T"])
        weights = data["weights"]
        return -float(weights @ ll), -(weights @ grad) * params

    _exact_hessian = True

    def _prepare(self, data: dict[str, FloatArray]) -> dict[str, Any]:
        # Where the histories' times fall among the distinct (x, time) points depends on
        # the data alone: found once, used by every evaluation of the likelihood.
        return {**data, "points": pnbd.history_points(data["x"], data["t_x"], data["T"])}

    def _negative_loglik_hessian(
        self, log_params: FloatArray, data: dict[str, Any]
    ) -> tuple[float, FloatArray, FloatArray]:
        theta = np.exp(log_params)
        value, grad, hess = pnbd.total_loglik_derivatives(
            theta, data["x"], data["t_x"], data["T"], data["weights"], points=data["points"]
        )
        grad_log, hess_log = log_scale_derivatives(theta, grad, hess)
        return -value, -grad_log, -hess_log

    def _initial(self, data: dict[str, FloatArray]) -> FloatArray:
        # r = s = 1 and scales that match the mean purchase rate and the mean age: a
        # start from which L-BFGS-B reaches the optimum on real and simulated data.
        weights = data["weights"]
        total = float(weights.sum())
        mean_x = float(weights @ data["x"]) / total
        mean_T = max(float(weights @ data["T"]) / total, 1e-6)  # T = 0 is allowed
        rate = max(mean_x, 0.01) / mean_T
        return np.asarray(np.log([1.0, 1.0 / rate, 1.0, mean_T]), dtype=np.float64)

    # --- predictions ---------------------------------------------------------------
    def _history(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        self._check_fitted()
        x, t_x, big_t, _ = check_rfm(frequency, recency, T)
        return self._param_array(), x, t_x, big_t

    def probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(alive at T | history): SMC 1987; Fader & Hardie 2005 section 5.

        Parameters
        ----------
        frequency, recency, T
            Each customer's repeat purchases, time of the last one and age.

        Returns
        -------
        numpy.ndarray
            One probability per customer (``churn_risk = 1 - probability_alive``).

        Examples
        --------
        >>> model = _example_model()
        >>> model.probability_alive([0, 2, 2], [0.0, 30.43, 5.0], [38.86] * 3).round(3).tolist()
        [0.295, 0.869, 0.13]
        """
        params, x, t_x, big_t = self._history(frequency, recency, T)
        return pnbd.probability_alive(params, x, t_x, big_t)

    def expected_purchases(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        *,
        horizon: ArrayLike,
        start: ArrayLike = 0.0,
    ) -> FloatArray:
        """E[purchases in (T + start, T + horizon] | history]: FH 2005 section 6.

        Parameters
        ----------
        frequency, recency, T
            Each customer's history.
        horizon
            End of the window after T (>= start), one for all or one per customer.
        start
            Start of the window after T (>= 0).

        Returns
        -------
        numpy.ndarray
            One expectation per customer.

        Examples
        --------
        >>> model = _example_model()
        >>> round(float(model.expected_purchases([2], [30.43], [38.86], horizon=39.0)[0]), 3)
        1.455
        """
        params, x, t_x, big_t = self._history(frequency, recency, T)
        end = _per_customer(_nonnegative(horizon, "horizon"), x.size, "horizon")
        begin = _per_customer(_nonnegative(start, "start"), x.size, "start")
        if np.any(begin > end):
            raise DataValidationError(
                "start is after horizon", fix="pass 0 <= start <= horizon (time after T)"
            )
        return pnbd.expected_purchases(params, x, t_x, big_t, end, begin)

    def expected_purchases_new(self, horizon: ArrayLike) -> FloatArray:
        """E[X(horizon)]: repeat purchases of a just-acquired customer, FH 2005 section 4.

        Parameters
        ----------
        horizon
            Length(s) of time after the first purchase (>= 0).

        Returns
        -------
        numpy.ndarray
            Same shape as ``horizon``.

        Examples
        --------
        >>> model = _example_model()
        >>> model.expected_purchases_new([0.0, 39.0]).round(3).tolist()
        [0.0, 1.213]
        """
        self._check_fitted()
        return pnbd.expected_purchases_new(self._param_array(), _nonnegative(horizon, "horizon"))

    def probability_of_purchases(
        self,
        n: ArrayLike,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        *,
        horizon: ArrayLike,
    ) -> FloatArray:
        """P(exactly n purchases in (T, T + horizon] | history).

        Fader & Hardie's conditional PMF (brucehardie.com/notes/028), computed as
        P(alive) times the new-customer PMF under the posterior parameters plus, for
        n = 0, P(dead).

        Parameters
        ----------
        n
            Purchase counts (whole numbers), one for all or one per customer.
        frequency, recency, T
            Each customer's history.
        horizon
            Length of the window after T (>= 0).

        Returns
        -------
        numpy.ndarray
            One probability per customer.

        Examples
        --------
        >>> model = _example_model()
        >>> p = model.probability_of_purchases(range(60), [2] * 60, [30.43] * 60, [38.86] * 60,
        ...                                    horizon=39.0)
        >>> round(float(p.sum()), 8), round(float(p[0]), 3)
        (1.0, 0.408)
        """
        params, x, t_x, big_t = self._history(frequency, recency, T)
        counts = _per_customer(_whole(n, "n"), x.size, "n")
        window = _per_customer(_nonnegative(horizon, "horizon"), x.size, "horizon")
        return pnbd.conditional_probability_of_purchases(params, counts, x, t_x, big_t, window)

    def probability_of_purchases_new(self, n: ArrayLike, horizon: ArrayLike) -> FloatArray:
        """P(X(horizon) = n) for a new customer: Fader & Hardie (2006), brucehardie.com/notes/012.

        The model's calibration-period histogram of repeat purchases.

        Parameters
        ----------
        n
            Purchase counts (whole numbers >= 0).
        horizon
            Length(s) of time after the first purchase (>= 0), broadcast with ``n``.

        Returns
        -------
        numpy.ndarray
            Broadcast shape of ``n`` and ``horizon``.

        Examples
        --------
        >>> model = _example_model()
        >>> p = model.probability_of_purchases_new(range(300), 39.0)
        >>> round(float(p.sum()), 8), round(float(p[0]), 3)
        (1.0, 0.594)
        """
        self._check_fitted()
        return pnbd.probability_of_purchases_new(
            self._param_array(), _whole(n, "n"), _nonnegative(horizon, "horizon")
        )

    def discounted_expected_purchases(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        *,
        discount_rate: float,
        horizon: int,
    ) -> FloatArray:
        """Sum over periods k = 1..horizon of E[purchases in period k] / (1 + discount_rate)^k.

        Period k is (T + k - 1, T + k] in the model's time unit.

        Parameters
        ----------
        frequency, recency, T
            Each customer's history.
        discount_rate
            Discount rate per period (>= 0).
        horizon
            Number of whole periods.

        Returns
        -------
        numpy.ndarray
            One discounted expectation per customer.

        Examples
        --------
        >>> model = _example_model()
        >>> flat = model.discounted_expected_purchases([2], [30.43], [38.86], discount_rate=0.0,
        ...                                            horizon=52)
        >>> disc = model.discounted_expected_purchases([2], [30.43], [38.86], discount_rate=0.01,
        ...                                            horizon=52)
        >>> bool(disc[0] < flat[0])
        True
        """
        params, x, t_x, big_t = self._history(frequency, recency, T)
        rate = _rate(discount_rate, "discount_rate", positive=False)
        periods = _whole(horizon, "horizon")
        if periods.ndim:
            raise DataValidationError(
                "horizon must be one number of periods", fix="pass an int such as 52"
            )
        return pnbd.discounted_expected_purchases(params, x, t_x, big_t, rate, int(periods))

    def discounted_residual_transactions(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        *,
        continuous_discount_rate: float,
    ) -> FloatArray:
        """DERT: Fader, Hardie & Lee (2005), "RFM and CLV", *JMR* 42(4), eq. (2).

        The expected purchases over the whole remaining lifetime, discounted continuously
        at rate delta (``e^(-delta t)``); multiply by the value of a purchase for the
        residual lifetime value.

        Parameters
        ----------
        frequency, recency, T
            Each customer's history.
        continuous_discount_rate
            delta > 0 per time unit; an annual rate d becomes ``log(1 + d) / 52`` a week.

        Returns
        -------
        numpy.ndarray
            One DERT per customer.

        Examples
        --------
        >>> model = _example_model()
        >>> dert = model.discounted_residual_transactions(
        ...     [0, 2], [0.0, 30.43], [38.86, 38.86], continuous_discount_rate=np.log(1.15) / 52
        ... )
        >>> dert.round(3).tolist()
        [0.478, 6.502]
        """
        params, x, t_x, big_t = self._history(frequency, recency, T)
        delta = _rate(continuous_discount_rate, "continuous_discount_rate", positive=True)
        return pnbd.discounted_residual_transactions(params, x, t_x, big_t, delta)

    def expected_time_to_next_purchase(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """Expected waiting time from T to the next purchase, given alive.

        ``(alpha + T) / (r + x - 1)`` when ``r + x > 1`` (the posterior mean of
        ``1 / lambda``), ``inf`` otherwise; it ignores the chance of dying first.

        Parameters
        ----------
        frequency, recency, T
            Each customer's history.

        Returns
        -------
        numpy.ndarray
            One waiting time per customer, in the model's time unit.

        Examples
        --------
        >>> model = _example_model()
        >>> waits = model.expected_time_to_next_purchase([0, 3], [0.0, 20.0], [40.0, 40.0])
        >>> waits.round(2).tolist()
        [inf, 19.81]
        """
        params, x, t_x, big_t = self._history(frequency, recency, T)
        return pnbd.expected_time_to_next_purchase(params, x, t_x, big_t)


def _example_model() -> ParetoNBDModel:
    """A model with Fader, Hardie & Lee's (2005) CDNOW estimates, for the examples."""
    data: dict[str, Any] = {
        "params": {"r": 0.553, "alpha": 10.58, "s": 0.606, "beta": 11.67},
        "covariance": np.zeros((4, 4)).tolist(),
        "loglik": -9595.0,
        "n_customers": 2357,
        "time_unit": "week",
    }
    return ParetoNBDModel.from_dict(data)
