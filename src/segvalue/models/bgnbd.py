"""The BG/NBD and MBG/NBD transaction models (thin estimators over :mod:`._bgnbd_math`).

:class:`BetaGeoModel` is Fader, Hardie & Lee's (2005) BG/NBD: customers buy at a
gamma-distributed Poisson rate and may leave right after any repeat purchase with a
beta-distributed probability. :class:`ModifiedBetaGeoModel` is Batislam, Denizel &
Filiztekin's (2007) MBG/NBD, where they may also leave right after the first purchase,
so that customers without repeat purchases are not all certain to be alive.

Both are fitted by maximum likelihood on the unique (frequency, recency, T) rows with the
exact gradient, and share the prediction methods of ``docs/models.md``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from segvalue.errors import DataValidationError
from segvalue.models import _bgnbd_math as math
from segvalue.models._fit import log_scale_derivatives
from segvalue.models.base import BTYDModel, check_rfm

__all__ = ["BetaGeoModel", "ModifiedBetaGeoModel"]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def _history(frequency: Any, recency: Any, T: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Broadcast and validate customer histories (same rules as for fitting)."""
    x, t_x, big_t = np.broadcast_arrays(
        np.asarray(frequency, dtype=np.float64),
        np.asarray(recency, dtype=np.float64),
        np.asarray(T, dtype=np.float64),
    )
    if x.size:
        check_rfm(x, t_x, big_t)
    return x, t_x, big_t


def _discounting(horizon: Any, discount_rate: Any) -> tuple[int, float]:
    """(horizon, rate) checked: whole periods >= 0, and a finite rate > -1 per period."""
    periods = int(horizon)
    if periods != horizon or periods < 0:
        raise DataValidationError(
            f"horizon must be a whole number of periods >= 0 (got {horizon!r})",
            fix="pass e.g. horizon=52 (weeks) or horizon=12 (months)",
        )
    rate = float(discount_rate)
    if not np.isfinite(rate) or rate <= -1.0:
        raise DataValidationError(
            f"discount_rate must be > -1 (got {discount_rate!r})",
            fix="pass the per-period rate, e.g. 0.01",
        )
    return periods, rate


def _durations(name: str, value: Any) -> FloatArray:
    """A non-negative, finite duration (or array of them)."""
    out = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        raise DataValidationError(
            f"{name} must be finite and >= 0 (got {value!r})",
            fix=f"pass {name} in the model's time unit, e.g. {name}=52",
        )
    return out


def _counts(value: Any) -> FloatArray:
    """Whole numbers of purchases n >= 0."""
    out = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(out)) or np.any(out < 0) or np.any(out != np.round(out)):
        raise DataValidationError(
            f"n must be whole numbers >= 0 (got {value!r})", fix="pass n = 0, 1, 2, ..."
        )
    return out


class _BetaGeoFamily(BTYDModel):
    """What the BG/NBD and the MBG/NBD share: every method, parameterised by ``_modified``."""

    _modified: ClassVar[bool] = False

    # --- fitting hooks ----------------------------------------------------------------
    _exact_hessian = True

    def _prepare(self, data: dict[str, FloatArray]) -> math.FitData:
        return math.prepare_fit_data(
            data["x"], data["t_x"], data["T"], data["weights"], modified=self._modified
        )

    def _negative_loglik(
        self, log_params: FloatArray, data: math.FitData
    ) -> tuple[float, FloatArray]:
        theta = np.exp(log_params)
        value, grad, _ = math.total_loglik_derivatives(
            theta, data, modified=self._modified, hessian=False
        )
        return -value, -theta * grad

    def _negative_loglik_hessian(
        self, log_params: FloatArray, data: math.FitData
    ) -> tuple[float, FloatArray, FloatArray]:
        theta = np.exp(log_params)
        value, grad, hess = math.total_loglik_derivatives(theta, data, modified=self._modified)
        assert hess is not None
        grad_log, hess_log = log_scale_derivatives(theta, grad, hess)
        return -value, -grad_log, -hess_log

    def _initial(self, data: dict[str, FloatArray]) -> FloatArray:
        """A start on the scale of the data, so the fit does not depend on the time unit.

        r = 1 and alpha = mean age / mean repeat purchases (the observed purchase rate
        r / alpha of a customer who never left); a = 1, b = 3 (a mean dropout
        probability of 1/4 per purchase).
        """
        w = data["weights"]
        mean_x = float(w @ data["x"]) / float(w.sum())
        mean_t = float(w @ data["T"]) / float(w.sum())
        alpha = max(mean_t, 1e-2) / max(mean_x, 1e-2)
        return np.log(np.array([1.0, alpha, 1.0, 3.0], dtype=np.float64))

    def _theta(self) -> FloatArray:
        return self._param_array()

    # --- predictions ------------------------------------------------------------------
    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """P(alive at T) given the history (x, t_x, T).

        Parameters
        ----------
        frequency, recency, T
            Repeat purchases, time of the last purchase and age (broadcast together).

        Returns
        -------
        numpy.ndarray
            Probabilities in [0, 1], of the broadcast shape.

        Examples
        --------
        >>> model = BetaGeoModel().fit(
        ...     [0, 0, 1, 2, 2, 3, 5, 0, 1, 7, 0, 4, 0, 12, 1],
        ...     [0, 0, 4, 30, 10, 25, 36, 0, 2, 38, 0, 20, 0, 39, 1],
        ...     [40, 38, 40, 39, 40, 37, 38, 36, 40, 39, 35, 40, 40, 40, 40],
        ... )
        >>> model.probability_alive([0, 2, 2], [0, 30, 10], 40).round(2).tolist()
        [1.0, 0.84, 0.38]
        """
        self._check_fitted()
        x, t_x, big_t = _history(frequency, recency, T)
        return math.probability_alive(self._theta(), x, t_x, big_t, modified=self._modified)

    def expected_purchases(
        self, frequency: Any, recency: Any, T: Any, *, horizon: Any, start: Any = 0.0
    ) -> FloatArray:
        """Expected purchases in (T + start, T + horizon] given the history.

        Parameters
        ----------
        frequency, recency, T
            Repeat purchases, time of the last purchase and age.
        horizon
            End of the window, measured from T, in the model's time unit.
        start
            Start of the window, measured from T (0 <= start <= horizon).

        Returns
        -------
        numpy.ndarray
            Expected purchases, of the broadcast shape.

        Examples
        --------
        >>> model = BetaGeoModel().fit(
        ...     [0, 0, 1, 2, 2, 3, 5, 0, 1, 7, 0, 4, 0, 12, 1],
        ...     [0, 0, 4, 30, 10, 25, 36, 0, 2, 38, 0, 20, 0, 39, 1],
        ...     [40, 38, 40, 39, 40, 37, 38, 36, 40, 39, 35, 40, 40, 40, 40],
        ... )
        >>> model.expected_purchases([0, 5], [0, 36], 40, horizon=52).round(2).tolist()
        [0.63, 5.61]
        """
        self._check_fitted()
        x, t_x, big_t = _history(frequency, recency, T)
        end = _durations("horizon", horizon)
        begin = _durations("start", start)
        if np.any(begin > end):
            raise DataValidationError("start is after horizon", fix="pass 0 <= start <= horizon")
        return math.expected_purchases_between(
            self._theta(), x, t_x, big_t, start=begin, horizon=end, modified=self._modified
        )

    def expected_purchases_new(self, horizon: Any) -> FloatArray:
        """E[X(horizon)]: repeat purchases in (0, horizon] of a customer just acquired.

        Parameters
        ----------
        horizon
            Time since the first purchase, in the model's time unit.

        Returns
        -------
        numpy.ndarray

        Examples
        --------
        >>> model = BetaGeoModel().fit(
        ...     [0, 0, 1, 2, 2, 3, 5, 0, 1, 7, 0, 4, 0, 12, 1],
        ...     [0, 0, 4, 30, 10, 25, 36, 0, 2, 38, 0, 20, 0, 39, 1],
        ...     [40, 38, 40, 39, 40, 37, 38, 36, 40, 39, 35, 40, 40, 40, 40],
        ... )
        >>> model.expected_purchases_new([13, 26, 52]).round(2).tolist()
        [1.08, 1.96, 3.53]
        """
        self._check_fitted()
        t = _durations("horizon", horizon)
        return math.expected_purchases_new(self._theta(), t, modified=self._modified)

    def probability_of_purchases(
        self, n: Any, frequency: Any, recency: Any, T: Any, *, horizon: Any
    ) -> FloatArray:
        """P(exactly n purchases in (T, T + horizon]) given the history.

        Parameters
        ----------
        n
            Numbers of purchases (whole numbers >= 0); broadcast with the history.
        frequency, recency, T
            Repeat purchases, time of the last purchase and age.
        horizon
            Length of the window after T.

        Returns
        -------
        numpy.ndarray

        Examples
        --------
        >>> model = BetaGeoModel().fit(
        ...     [0, 0, 1, 2, 2, 3, 5, 0, 1, 7, 0, 4, 0, 12, 1],
        ...     [0, 0, 4, 30, 10, 25, 36, 0, 2, 38, 0, 20, 0, 39, 1],
        ...     [40, 38, 40, 39, 40, 37, 38, 36, 40, 39, 35, 40, 40, 40, 40],
        ... )
        >>> p = model.probability_of_purchases([0, 1, 2], 2, 30, 40, horizon=26)
        >>> p.round(3).tolist()
        [0.42, 0.263, 0.158]
        """
        self._check_fitted()
        count = _counts(n)
        x, t_x, big_t = _history(frequency, recency, T)
        t = _durations("horizon", horizon)
        return math.conditional_probability_of_purchases(
            self._theta(), count, x, t_x, big_t, t, modified=self._modified
        )

    def probability_of_purchases_new(self, n: Any, horizon: Any) -> FloatArray:
        """P(X(horizon) = n): n repeat purchases in (0, horizon] for a new customer.

        Summed over customers with their own ages this is the expected calibration
        histogram of repeat purchases.

        Parameters
        ----------
        n
            Numbers of purchases (whole numbers >= 0).
        horizon
            Time since the first purchase; broadcast with ``n``.

        Returns
        -------
        numpy.ndarray

        Examples
        --------
        >>> model = BetaGeoModel().fit(
        ...     [0, 0, 1, 2, 2, 3, 5, 0, 1, 7, 0, 4, 0, 12, 1],
        ...     [0, 0, 4, 30, 10, 25, 36, 0, 2, 38, 0, 20, 0, 39, 1],
        ...     [40, 38, 40, 39, 40, 37, 38, 36, 40, 39, 35, 40, 40, 40, 40],
        ... )
        >>> model.probability_of_purchases_new([0, 1, 2], 39).round(3).tolist()
        [0.274, 0.302, 0.114]
        """
        self._check_fitted()
        count = _counts(n)
        t = _durations("horizon", horizon)
        return math.probability_of_purchases_new(self._theta(), count, t, modified=self._modified)

    def discounted_expected_purchases(
        self, frequency: Any, recency: Any, T: Any, *, discount_rate: float, horizon: int
    ) -> FloatArray:
        """Expected purchases in each of ``horizon`` periods after T, discounted.

        sum_{k=1..horizon} E[purchases in (T + k - 1, T + k]] / (1 + discount_rate)^k.

        Parameters
        ----------
        frequency, recency, T
            Repeat purchases, time of the last purchase and age.
        discount_rate
            Discount rate per period (> -1; see :func:`segvalue.units.per_period_rate`).
        horizon
            Number of whole periods.

        Returns
        -------
        numpy.ndarray

        Examples
        --------
        >>> model = BetaGeoModel().fit(
        ...     [0, 0, 1, 2, 2, 3, 5, 0, 1, 7, 0, 4, 0, 12, 1],
        ...     [0, 0, 4, 30, 10, 25, 36, 0, 2, 38, 0, 20, 0, 39, 1],
        ...     [40, 38, 40, 39, 40, 37, 38, 36, 40, 39, 35, 40, 40, 40, 40],
        ... )
        >>> model.discounted_expected_purchases(
        ...     [0, 5], [0, 36], 40, discount_rate=0.01, horizon=52
        ... ).round(2).tolist()
        [0.5, 4.38]
        """
        self._check_fitted()
        x, t_x, big_t = _history(frequency, recency, T)
        periods, rate = _discounting(horizon, discount_rate)
        return math.discounted_expected_purchases(
            self._theta(),
            x,
            t_x,
            big_t,
            discount_rate=rate,
            horizon=periods,
            modified=self._modified,
        )

    def discounted_expected_purchases_at(
        self,
        thetas: Any,
        frequency: Any,
        recency: Any,
        T: Any,
        *,
        discount_rate: float,
        horizon: int,
    ) -> FloatArray:
        """:meth:`discounted_expected_purchases` of this model at each parameter row of
        ``thetas`` (K, 4; in :attr:`param_names` order): an array (K, n), in one
        evaluation (the delta-method interval of a few customers' CLV).

        Examples
        --------
        >>> model = BetaGeoModel().fit(
        ...     [0, 0, 1, 2, 2, 3, 5, 0, 1, 7, 0, 4, 0, 12, 1],
        ...     [0, 0, 4, 30, 10, 25, 36, 0, 2, 38, 0, 20, 0, 39, 1],
        ...     [40, 38, 40, 39, 40, 37, 38, 36, 40, 39, 35, 40, 40, 40, 40],
        ... )
        >>> theta = [model.params_[name] for name in model.param_names]
        >>> at = model.discounted_expected_purchases_at(
        ...     [theta, [theta[0] * 1.1, *theta[1:]]], [0, 5], [0, 36], 40,
        ...     discount_rate=0.01, horizon=52)
        >>> at.shape, at[0].round(2).tolist()
        ((2, 2), [0.5, 4.38])
        """
        self._check_fitted()
        x, t_x, big_t = _history(frequency, recency, T)
        periods, rate = _discounting(horizon, discount_rate)
        return math.discounted_expected_purchases_at(
            np.asarray(thetas, dtype=np.float64).reshape(-1, len(self.param_names)),
            x,
            t_x,
            big_t,
            discount_rate=rate,
            horizon=periods,
            modified=self._modified,
        )

    def expected_time_to_next_purchase(self, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """Expected waiting time from T to the next purchase, given the customer is alive.

        (alpha + T) / (r + x - 1), the mean of 1 / lambda under its gamma posterior; inf
        when r + x <= 1 (the posterior mean of 1 / lambda diverges). The recency does not
        enter: purchases are memoryless.

        Parameters
        ----------
        frequency, recency, T
            Repeat purchases, time of the last purchase and age.

        Returns
        -------
        numpy.ndarray

        Examples
        --------
        >>> model = BetaGeoModel().fit(
        ...     [0, 0, 1, 2, 2, 3, 5, 0, 1, 7, 0, 4, 0, 12, 1],
        ...     [0, 0, 4, 30, 10, 25, 36, 0, 2, 38, 0, 20, 0, 39, 1],
        ...     [40, 38, 40, 39, 40, 37, 38, 36, 40, 39, 35, 40, 40, 40, 40],
        ... )
        >>> model.expected_time_to_next_purchase([2, 5], [30, 36], 40).round(1).tolist()
        [28.0, 9.9]
        """
        self._check_fitted()
        x, _, big_t = _history(frequency, recency, T)
        return math.expected_time_to_next_purchase(self._theta(), x, big_t)


class BetaGeoModel(_BetaGeoFamily):
    """The BG/NBD model (Fader, Hardie & Lee 2005, Marketing Science 24(2)).

    Parameters
    ----------
    penalizer
        L2 penalty on the parameters (0 for plain maximum likelihood).

    Examples
    --------
    >>> model = BetaGeoModel().fit(
    ...     [0, 0, 1, 2, 2, 3, 5, 0, 1, 7, 0, 4, 0, 12, 1],
    ...     [0, 0, 4, 30, 10, 25, 36, 0, 2, 38, 0, 20, 0, 39, 1],
    ...     [40, 38, 40, 39, 40, 37, 38, 36, 40, 39, 35, 40, 40, 40, 40],
    ...     time_unit="week",
    ... )
    >>> sorted(model.params_), model.n_customers_, model.converged_
    (['a', 'alpha', 'b', 'r'], 15, True)
    """

    param_names: ClassVar[tuple[str, ...]] = ("r", "alpha", "a", "b")
    model_name: ClassVar[str] = "BG/NBD"
    _modified: ClassVar[bool] = False


class ModifiedBetaGeoModel(_BetaGeoFamily):
    """The MBG/NBD model (Batislam, Denizel & Filiztekin 2007, IJRM 24(3)).

    As the BG/NBD, but a customer may also leave right after the first purchase, so
    P(alive) < 1 even without repeat purchases.

    Parameters
    ----------
    penalizer
        L2 penalty on the parameters (0 for plain maximum likelihood).

    Examples
    --------
    >>> model = ModifiedBetaGeoModel().fit(
    ...     [0, 0, 1, 2, 2, 3, 5, 0, 1, 7, 0, 4, 0, 12, 1],
    ...     [0, 0, 4, 30, 10, 25, 36, 0, 2, 38, 0, 20, 0, 39, 1],
    ...     [40, 38, 40, 39, 40, 37, 38, 36, 40, 39, 35, 40, 40, 40, 40],
    ... )
    >>> bool(model.probability_alive(0, 0, 40) < 1)
    True
    """

    param_names: ClassVar[tuple[str, ...]] = ("r", "alpha", "a", "b")
    model_name: ClassVar[str] = "MBG/NBD"
    _modified: ClassVar[bool] = True
