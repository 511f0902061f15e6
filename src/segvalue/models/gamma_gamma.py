"""The Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005; Hardie 2013).

Fitted on repeat customers only: ``frequency`` (repeat transactions x) and
``monetary_value`` (the mean value of those repeat transactions). Customers with
frequency 0 carry no spend information and are ignored (counted in ``n_ignored_``). The
math lives in :mod:`segvalue.models._gamma_gamma_math`.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike

from segvalue.errors import DataValidationError
from segvalue.models import _gamma_gamma_math as gg
from segvalue.models._fit import compress_rows, log_scale_derivatives
from segvalue.models.base import FloatArray, MLEModel
from segvalue.units import TimeUnit, parse_time_unit

__all__ = ["GammaGammaModel", "check_spend"]

_FIX = (
    "frequency is the number of repeat transactions (whole number >= 0) and "
    "monetary_value the mean value of those repeat transactions (> 0 when frequency > 0; "
    "ignored when frequency is 0)"
)


def check_spend(
    frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None = None
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """Validate (frequency, monetary_value) pairs, naming the first bad row.

    Rows with frequency 0 may have any monetary value (including missing): it is ignored.

    Parameters
    ----------
    frequency, monetary_value
        Repeat transactions and their mean value, one per customer.
    weights
        Optional customers per row (>= 0).

    Returns
    -------
    tuple
        frequency, monetary_value (0 where frequency is 0) and weights (or None).

    Raises
    ------
    DataValidationError
        On the first invalid row, with the row number and how to fix it.

    Examples
    --------
    >>> check_spend([2, 0], [20.5, float("nan")])[1].tolist()
    [20.5, 0.0]
    >>> check_spend([2, 1], [20.5, 0.0])
    Traceback (most recent call last):
    ...
    segvalue.errors.DataValidationError: row 1: monetary_value 0 is not > 0 for a repeat customer (frequency 1). Fix: ...
    """  # noqa: E501
    x = np.asarray(frequency, dtype=np.float64).ravel()
    m = np.asarray(monetary_value, dtype=np.float64).ravel()
    if x.size != m.size:
        raise DataValidationError(
            f"frequency and monetary_value have different lengths ({x.size}, {m.size})",
            fix="pass one value per customer in each",
        )
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
        repeat = x > 0
        checks: list[tuple[Any, str]] = [
            (~np.isfinite(x), "frequency is missing"),
            ((x < 0) | (x != np.round(x)), "frequency {x:g} is not a whole number >= 0"),
            (repeat & ~np.isfinite(m), "monetary_value is missing for a repeat customer"),
            (repeat & ~(m > 0), "monetary_value {m:g} is not > 0 for a repeat customer"),
        ]
        if w is not None:
            checks.append((~np.isfinite(w) | (w < 0), "weight {w:g} is not a number >= 0"))
    for condition, template in checks:
        if condition.any():
            i = int(np.argmax(condition))
            text = template.format(x=x[i], m=m[i], w=w[i] if w is not None else 0)
            if "repeat customer" in template:
                text += f" (frequency {x[i]:g})"
            raise DataValidationError(f"row {i}: {text}", fix=_FIX)
    return x, np.where(repeat, m, 0.0), w


class GammaGammaModel(MLEModel):
    """Gamma-Gamma: mean spend per transaction, heterogeneous across customers.

    Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base
    Analysis", *JMR* 42(4); Hardie, "The Gamma-Gamma Model of Monetary Value" (2013).
    Transaction values are Gamma(p, nu) within a customer, nu ~ Gamma(q, gamma) across
    customers. The model assumes spend is independent of the purchase process: check
    :meth:`spend_frequency_correlation`.

    Parameters
    ----------
    penalizer
        L2 penalty on the parameters (0 for plain maximum likelihood).

    Attributes
    ----------
    n_ignored_ : int
        Customers with frequency 0, left out of the fit.

    Examples
    --------
    The first ten repeat buyers of the CDNOW sample and one customer without repeats:

    >>> frequency = [2, 1, 7, 1, 2, 5, 10, 1, 3, 2, 0]
    >>> spend = [22.34, 11.77, 73.74, 11.77, 25.55, 29.44, 24.24, 9.99, 25.08, 32.30, 0.0]
    >>> model = GammaGammaModel().fit(frequency, spend)
    >>> model.n_customers_, model.n_ignored_
    (10, 1)
    """

    param_names = ("p", "q", "gamma")
    model_name = "Gamma-Gamma"

    # --- fitting -------------------------------------------------------------------
    def _prepare(self, data: dict[str, FloatArray]) -> gg.FitData:
        return gg.prepare_fit_data(data["x"], data["m"], data["weights"])

    def _negative_loglik(
        self, log_params: FloatArray, data: gg.FitData
    ) -> tuple[float, FloatArray]:
        params = np.exp(log_params)
        value, grad = gg.total_loglik_gradient(params, data)
        return -value, -grad * params

    # Trust-region Newton on the exact Hessian: a handful of iterations where L-BFGS-B
    # needs a dozen or more, and no scipy.optimize to import.
    _exact_hessian = True

    def _negative_loglik_hessian(
        self, log_params: FloatArray, data: gg.FitData
    ) -> tuple[float, FloatArray, FloatArray]:
        params = np.exp(log_params)
        value, grad, hess = gg.total_loglik_derivatives(params, data)
        assert hess is not None
        grad_log, hess_log = log_scale_derivatives(params, grad, hess)
        return -value, -grad_log, -hess_log

    def _initial(self, data: dict[str, FloatArray]) -> FloatArray:
        # p = 1, q = 2 and gamma at the mean spend: the population mean p gamma / (q - 1)
        # then starts at the observed mean.
        mean = float(np.average(data["m"], weights=data["weights"]))
        return np.log(np.array([1.0, 2.0, mean], dtype=np.float64))

    def fit(
        self,
        frequency: ArrayLike,
        monetary_value: ArrayLike,
        *,
        weights: ArrayLike | None = None,
        time_unit: TimeUnit | str | None = None,
    ) -> Self:
        """Fit by maximum likelihood (Hardie 2013 eqs. 3-4) on the repeat customers.

        Parameters
        ----------
        frequency
            Repeat transactions x per customer.
        monetary_value
            Mean value of each customer's repeat transactions (> 0 when x > 0).
        weights
            Customers per row when the rows are already unique (x, m) pairs.
        time_unit
            The time unit of the companion purchase model, recorded with the model.

        Returns
        -------
        self

        Raises
        ------
        DataValidationError
            When a row is invalid or no customer has frequency > 0.

        Examples
        --------
        >>> model = GammaGammaModel().fit(
        ...     [2, 1, 7, 1, 2, 5, 10, 1, 3, 2],
        ...     [22.34, 11.77, 73.74, 11.77, 25.55, 29.44, 24.24, 9.99, 25.08, 32.30],
        ... )
        >>> model.converged_
        True
        """
        x, m, w = check_spend(frequency, monetary_value, weights)
        base = np.ones(x.size) if w is None else w
        repeat = x > 0
        if not np.any(repeat & (base > 0)):
            raise DataValidationError(
                "no repeat customers (frequency > 0) to fit the spend model on",
                fix="fit on customers with at least one repeat transaction",
            )
        ux, um, counts = compress_rows(x[repeat], m[repeat], weights=base[repeat])
        data = {"x": ux, "m": um, "weights": counts}
        unit = parse_time_unit(time_unit) if time_unit is not None else None
        self._fit_data(data, unit)
        self.n_ignored_ = round(float(base[~repeat].sum()))
        return self

    # --- persistence ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fitted model as plain data, including ``n_ignored``."""
        data = super().to_dict()
        data["n_ignored"] = self.n_ignored_
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a fitted model from :meth:`to_dict` output."""
        model = super().from_dict(data)
        model.n_ignored_ = int(data.get("n_ignored", 0))
        return model

    # --- predictions ---------------------------------------------------------------
    def expected_spend(self, frequency: ArrayLike, monetary_value: ArrayLike) -> FloatArray:
        """Expected value of a customer's future transactions given x and m, Hardie (2013) eq. (5).

        A weighted mean of the population mean and the customer's observed mean, the
        latter weighing more the more repeat transactions she made; the population mean
        for customers with frequency 0.

        Parameters
        ----------
        frequency, monetary_value
            Repeat transactions and their mean value, one per customer.

        Returns
        -------
        numpy.ndarray
            One expected transaction value per customer.

        Examples
        --------
        >>> model = GammaGammaModel().fit(
        ...     [2, 1, 7, 1, 2, 5, 10, 1, 3, 2],
        ...     [22.34, 11.77, 73.74, 11.77, 25.55, 29.44, 24.24, 9.99, 25.08, 32.30],
        ... )
        >>> e = model.expected_spend([0, 1, 10], [0.0, 100.0, 100.0])
        >>> bool(e[0] < e[1] < e[2] < 100.0)
        True
        """
        self._check_fitted()
        x, m, _ = check_spend(frequency, monetary_value)
        return gg.expected_spend(self._param_array(), x, m)

    def expected_spend_log_gradient(
        self, frequency: ArrayLike, monetary_value: ArrayLike
    ) -> FloatArray:
        """Gradient of log :meth:`expected_spend` in the log-parameters, in closed form.

        What the delta-method intervals of CLV need (see
        :func:`segvalue.models._gamma_gamma_math.expected_spend_log_gradient`).

        Parameters
        ----------
        frequency, monetary_value
            Repeat transactions and their mean value, one per customer.

        Returns
        -------
        numpy.ndarray
            Shape ``(3, customers)``, rows in the order of ``param_names``.

        Examples
        --------
        >>> model = GammaGammaModel().fit(
        ...     [2, 1, 7, 1, 2, 5, 10, 1, 3, 2],
        ...     [22.34, 11.77, 73.74, 11.77, 25.55, 29.44, 24.24, 9.99, 25.08, 32.30],
        ... )
        >>> model.expected_spend_log_gradient([0, 3], [0.0, 40.0]).shape
        (3, 2)
        """
        self._check_fitted()
        x, m, _ = check_spend(frequency, monetary_value)
        return gg.expected_spend_log_gradient(self._param_array(), x, m)

    def expected_spend_new(self) -> float:
        """Population mean transaction value ``p gamma / (q - 1)`` (infinite when q <= 1).

        Returns
        -------
        float

        Examples
        --------
        >>> model = GammaGammaModel().fit(
        ...     [2, 1, 7, 1, 2, 5, 10, 1, 3, 2],
        ...     [22.34, 11.77, 73.74, 11.77, 25.55, 29.44, 24.24, 9.99, 25.08, 32.30],
        ... )
        >>> model.expected_spend_new() == float(model.expected_spend([0], [0.0])[0])
        True
        """
        self._check_fitted()
        return gg.expected_spend_new(self._param_array())

    @staticmethod
    def spend_frequency_correlation(
        frequency: ArrayLike, monetary_value: ArrayLike, *, weights: ArrayLike | None = None
    ) -> float:
        """Pearson correlation of frequency and monetary value over repeat customers.

        A diagnostic of the model's independence assumption (no fit needed): Fader,
        Hardie & Lee (2005) report 0.11 for the CDNOW sample. NaN with fewer than two
        repeat customers or a constant column.

        Parameters
        ----------
        frequency, monetary_value
            Repeat transactions and their mean value, one per customer.
        weights
            Customers per row.

        Returns
        -------
        float

        Examples
        --------
        >>> r = GammaGammaModel.spend_frequency_correlation([1, 2, 3, 0], [10.0, 12.0, 15.0, 0])
        >>> round(r, 2)
        0.99
        """
        x, m, w = check_spend(frequency, monetary_value, weights)
        return gg.spend_frequency_correlation(x, m, w)
