"""The BG/BB model for discrete-time noncontractual settings (Fader, Hardie & Shang 2010).

Each customer has ``n_periods`` transaction opportunities after the first transaction
(e.g. yearly donation drives), made ``frequency`` repeat transactions and the last one in
period ``recency`` (0 when there was none). The math lives in
:mod:`segvalue.models._bgbb_math`; this module validates and fits.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike

from segvalue.errors import DataValidationError
from segvalue.models import _bgbb_math as bgbb
from segvalue.models._fit import compress_rows
from segvalue.models.base import FloatArray, MLEModel
from segvalue.units import TimeUnit, parse_time_unit

__all__ = ["BetaGeoBetaBinomModel", "check_discrete_rfm"]

_FIX = (
    "frequency counts the repeat transactions in periods 1..n_periods, recency is the "
    "period of the last one (0 if none), so 0 <= frequency <= recency <= n_periods"
)


def check_discrete_rfm(
    frequency: ArrayLike,
    recency: ArrayLike,
    n_periods: ArrayLike,
    weights: ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray | None]:
    """Validate discrete-time (frequency, recency, n_periods), naming the first bad row.

    Scalars broadcast against arrays (e.g. one ``n_periods`` for a whole cohort).

    Parameters
    ----------
    frequency, recency, n_periods
        Repeat transactions, period of the last one, number of opportunities.
    weights
        Optional customers per row (one per row, >= 0).

    Returns
    -------
    tuple
        The three columns as flat float arrays, and the weights (or None).

    Raises
    ------
    DataValidationError
        On the first invalid row, with the row number and how to fix it.

    Examples
    --------
    >>> check_discrete_rfm([2, 0], [4, 0], 6)[2].tolist()
    [6.0, 6.0]
    >>> check_discrete_rfm([3], [2], [6])
    Traceback (most recent call last):
    ...
    segvalue.errors.DataValidationError: row 0: frequency 3 is greater than recency 2. Fix: ...
    """
    try:
        x, t_x, n = (
            np.asarray(c, dtype=np.float64).ravel()
            for c in np.broadcast_arrays(
                np.asarray(frequency, dtype=np.float64),
                np.asarray(recency, dtype=np.float64),
                np.asarray(n_periods, dtype=np.float64),
            )
        )
    except ValueError:
        sizes = tuple(np.size(c) for c in (frequency, recency, n_periods))
        raise DataValidationError(
            f"frequency, recency and n_periods have different lengths {sizes}",
            fix="pass one value per customer in each (or a single n_periods for all)",
        ) from None
    if x.size == 0:
        raise DataValidationError("no customers", fix="pass at least one customer")
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.size != x.size:
            raise DataValidationError(
                f"weights has {w.size} values for {x.size} customers",
                fix="pass one weight (number of customers) per row",
            )
    with np.errstate(invalid="ignore"):
        checks: list[tuple[Any, str]] = [
            (~np.isfinite(x) | ~np.isfinite(t_x) | ~np.isfinite(n), "has a missing value"),
            ((x < 0) | (x != np.round(x)), "frequency {x:g} is not a whole number >= 0"),
            ((t_x < 0) | (t_x != np.round(t_x)), "recency {t:g} is not a whole number >= 0"),
            ((n < 1) | (n != np.round(n)), "n_periods {n:g} is not a whole number >= 1"),
            (t_x > n, "recency {t:g} is greater than n_periods {n:g}"),
            (x > t_x, "frequency {x:g} is greater than recency {t:g}"),
            ((x == 0) & (t_x != 0), "recency {t:g} with frequency 0 (must be 0)"),
        ]
        if w is not None:
            checks.append((~np.isfinite(w) | (w < 0), "weight {w:g} is not a number >= 0"))
    for condition, template in checks:
        if condition.any():
            i = int(np.argmax(condition))
            text = template.format(x=x[i], t=t_x[i], n=n[i], w=w[i] if w is not None else 0)
            raise DataValidationError(f"row {i}: {text}", fix=_FIX)
    return x, t_x, n, w


def _whole(value: ArrayLike, name: str, minimum: int) -> FloatArray:
    """A whole-number argument such as ``horizon``, with a clear error."""
    arr = np.asarray(value, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) | (arr < minimum) | (arr != np.round(arr))
    if bad.any():
        first = arr.ravel()[int(np.argmax(bad.ravel()))]
        raise DataValidationError(
            f"{name} {first:g} is not a whole number >= {minimum}",
            fix=f"pass {name} as a whole number of periods",
        )
    return arr


def _discount(value: float) -> float:
    rate = float(value)
    if not np.isfinite(rate) or rate < 0:
        raise DataValidationError(
            f"discount_rate {value} is not a number >= 0",
            fix="pass the discount rate per period, e.g. 0.1 for 10% a period",
        )
    return rate


class BetaGeoBetaBinomModel(MLEModel):
    """BG/BB: beta-geometric drop-out and beta-Bernoulli transactions in discrete time.

    Fader, Hardie & Shang (2010), "Customer-Base Analysis in a Discrete-Time
    Noncontractual Setting", *Marketing Science* 29(6). While alive a customer transacts
    in each period with probability p ~ Beta(alpha, beta) and survives each period with
    probability 1 - theta, theta ~ Beta(gamma, delta).

    Parameters
    ----------
    penalizer
        L2 penalty on the parameters (0 for plain maximum likelihood).

    Examples
    --------
    The donations data of FHS 2010 (frequency, recency, customers; 6 opportunities):

    >>> x = [0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 5, 5, 6]
    >>> t = [0, 1, 2, 3, 4, 5, 6, 2, 3, 4, 5, 6, 3, 4, 5, 6, 4, 5, 6, 5, 6, 6]
    >>> w = [3464, 1091, 277, 129, 78, 119, 129, 613, 255, 155, 173, 234, 322, 181,
    ...      225, 357, 240, 284, 512, 335, 728, 1203]
    >>> model = BetaGeoBetaBinomModel().fit(x, t, 6, weights=w)
    >>> {k: round(v, 3) for k, v in model.params_.items()}
    {'alpha': 1.204, 'beta': 0.75, 'gamma': 0.657, 'delta': 2.783}
    >>> round(model.loglik_, 1)
    -33225.6
    """

    param_names = ("alpha", "beta", "gamma", "delta")
    model_name = "BG/BB"

    # --- fitting -------------------------------------------------------------------
    def _negative_loglik(
        self, log_params: FloatArray, data: dict[str, FloatArray]
    ) -> tuple[float, FloatArray]:
        params = np.exp(log_params)
        ll, grad = bgbb.log_likelihood_gradient(params, data["x"], data["t_x"], data["n"])
        weights = data["weights"]
        return -float(weights @ ll), -(weights @ grad) * params

    def _initial(self, data: dict[str, FloatArray]) -> FloatArray:
        return np.zeros(len(self.param_names))

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        n_periods: ArrayLike,
        *,
        weights: ArrayLike | None = None,
        time_unit: TimeUnit | str | None = None,
    ) -> Self:
        """Fit by maximum likelihood (FHS 2010 eq. 5) on the unique rows.

        Parameters
        ----------
        frequency
            Repeat transactions x in periods 1..n_periods.
        recency
            Period t_x of the last transaction (0 when x = 0).
        n_periods
            Transaction opportunities n after the first transaction (one value for all,
            or one per customer).
        weights
            Customers per row when the rows are already unique (x, t_x, n).
        time_unit
            The length of one period, recorded with the model.

        Returns
        -------
        self

        Raises
        ------
        DataValidationError
            When a row is invalid (naming the row and the fix).

        Examples
        --------
        >>> model = BetaGeoBetaBinomModel().fit(
        ...     [0, 1, 1, 3, 5, 6], [0, 1, 5, 6, 6, 6], 6, weights=[40, 15, 10, 12, 10, 13]
        ... )
        >>> model.n_customers_, model.converged_
        (100, True)
        """
        x, t_x, n, w = check_discrete_rfm(frequency, recency, n_periods, weights)
        ux, ut, un, counts = compress_rows(x, t_x, n, weights=w)
        data = {"x": ux, "t_x": ut, "n": un, "weights": counts}
        unit = parse_time_unit(time_unit) if time_unit is not None else None
        return self._fit_data(data, unit)

    # --- predictions ---------------------------------------------------------------
    def _history(
        self, frequency: ArrayLike, recency: ArrayLike, n_periods: ArrayLike
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        self._check_fitted()
        x, t_x, n, _ = check_discrete_rfm(frequency, recency, n_periods)
        return self._param_array(), x, t_x, n

    def probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, n_periods: ArrayLike
    ) -> FloatArray:
        """P(alive in period n_periods + 1 | history), FHS 2010 eq. (11).

        Parameters
        ----------
        frequency, recency, n_periods
            Each customer's history (see :meth:`fit`).

        Returns
        -------
        numpy.ndarray
            One probability per customer.

        Examples
        --------
        >>> model = BetaGeoBetaBinomModel().fit(
        ...     [0, 1, 1, 3, 5, 6], [0, 1, 5, 6, 6, 6], 6, weights=[40, 15, 10, 12, 10, 13]
        ... )
        >>> p = model.probability_alive([0, 5], [0, 6], 6)
        >>> bool(p[0] < p[1])
        True
        """
        params, x, t_x, n = self._history(frequency, recency, n_periods)
        return bgbb.probability_alive(params, x, t_x, n)

    def expected_purchases(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        n_periods: ArrayLike,
        *,
        horizon: ArrayLike,
    ) -> FloatArray:
        """Expected transactions in the next ``horizon`` periods given the history.

        E[X(n, n + horizon) | x, t_x, n], FHS 2010 eq. (13).

        Parameters
        ----------
        frequency, recency, n_periods
            Each customer's history (see :meth:`fit`).
        horizon
            Number of future periods (whole number >= 0).

        Returns
        -------
        numpy.ndarray
            One expectation per customer.

        Examples
        --------
        >>> model = BetaGeoBetaBinomModel().fit(
        ...     [0, 1, 1, 3, 5, 6], [0, 1, 5, 6, 6, 6], 6, weights=[40, 15, 10, 12, 10, 13]
        ... )
        >>> e = model.expected_purchases([5, 5], [6, 6], 6, horizon=[1, 5])
        >>> bool(0 < e[0] < e[1] < 5)
        True
        """
        params, x, t_x, n = self._history(frequency, recency, n_periods)
        h = _whole(horizon, "horizon", 0)
        if h.size not in (1, x.size):
            raise DataValidationError(
                f"horizon has {h.size} values for {x.size} customers",
                fix="pass one horizon for all customers or one per customer",
            )
        return bgbb.expected_purchases(params, x, t_x, n, np.broadcast_to(h.ravel(), x.shape))

    def expected_purchases_new(self, horizon: ArrayLike) -> FloatArray:
        """Expected repeat transactions of a new customer in periods 1..horizon, FHS 2010 eq. (7).

        Parameters
        ----------
        horizon
            Number of periods (whole numbers >= 0).

        Returns
        -------
        numpy.ndarray
            Same shape as ``horizon``.

        Examples
        --------
        >>> model = BetaGeoBetaBinomModel().fit(
        ...     [0, 1, 1, 3, 5, 6], [0, 1, 5, 6, 6, 6], 6, weights=[40, 15, 10, 12, 10, 13]
        ... )
        >>> model.expected_purchases_new([0, 1, 6]).round(2)
        array([0.  , 0.39, 1.99])
        """
        self._check_fitted()
        h = _whole(horizon, "horizon", 0)
        return bgbb.expected_purchases_new(self._param_array(), h)

    def probability_of_purchases_new(self, n: ArrayLike, n_periods: ArrayLike) -> FloatArray:
        """P(X(n_periods) = n): a new customer makes n repeat transactions, FHS 2010 eq. (6).

        Parameters
        ----------
        n
            Number of repeat transactions (whole numbers >= 0).
        n_periods
            Number of opportunities (whole numbers >= 0).

        Returns
        -------
        numpy.ndarray
            Broadcast shape of ``n`` and ``n_periods`` (0 where n > n_periods).

        Examples
        --------
        >>> model = BetaGeoBetaBinomModel().fit(
        ...     [0, 1, 1, 3, 5, 6], [0, 1, 5, 6, 6, 6], 6, weights=[40, 15, 10, 12, 10, 13]
        ... )
        >>> round(float(model.probability_of_purchases_new(range(7), 6).sum()), 10)
        1.0
        """
        self._check_fitted()
        counts = _whole(n, "n", 0)
        periods = _whole(n_periods, "n_periods", 0)
        return bgbb.probability_of_purchases_new(self._param_array(), counts, periods)

    def discounted_expected_purchases(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        n_periods: ArrayLike,
        *,
        discount_rate: float,
        horizon: int | None = None,
    ) -> FloatArray:
        """DERT: discounted expected residual transactions, FHS 2010 eq. (14).

        The expected transactions in each future period k = 1, 2, ... (after
        ``n_periods``), discounted by ``(1 + discount_rate)^-k`` and summed; multiply by
        a value per transaction for the residual lifetime value.

        Parameters
        ----------
        frequency, recency, n_periods
            Each customer's history (see :meth:`fit`).
        discount_rate
            Discount rate per period (>= 0; with 0 and no horizon the sum is finite only
            when gamma > 1).
        horizon
            Number of future periods to sum, or None (the default) for all of them.

        Returns
        -------
        numpy.ndarray
            One DERT per customer.

        Examples
        --------
        >>> model = BetaGeoBetaBinomModel().fit(
        ...     [0, 1, 1, 3, 5, 6], [0, 1, 5, 6, 6, 6], 6, weights=[40, 15, 10, 12, 10, 13]
        ... )
        >>> all_periods = model.discounted_expected_purchases(5, 6, 6, discount_rate=0.1)
        >>> first_five = model.discounted_expected_purchases(5, 6, 6, discount_rate=0.1,
        ...                                                  horizon=5)
        >>> bool(first_five[0] < all_periods[0])
        True
        """
        params, x, t_x, n = self._history(frequency, recency, n_periods)
        rate = _discount(discount_rate)
        if horizon is not None:
            horizon = int(_whole(horizon, "horizon", 0))
        return bgbb.discounted_expected_purchases(params, x, t_x, n, rate, horizon)
