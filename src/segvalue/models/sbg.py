"""The shifted-beta-geometric (sBG) retention model for contractual settings.

Fader & Hardie (2007), "How to Project Customer Retention"; valuation (DERL) from Fader &
Hardie (2010), "Customer-Base Valuation in a Contractual Setting: The Perils of Ignoring
Heterogeneity". Fitted on survival curves: the number of a cohort's customers still active
at the start of period 0, 1, 2, ... The math lives in :mod:`segvalue.models._sbg_math`.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike

from segvalue.errors import DataValidationError
from segvalue.models import _sbg_math as sbg
from segvalue.models._fit import compress_rows
from segvalue.models.base import FloatArray, MLEModel
from segvalue.models.bgbb import _discount, _whole
from segvalue.units import TimeUnit, parse_time_unit

__all__ = ["ShiftedBetaGeometricModel", "survival_rows"]

_FIX = (
    "pass the number of the cohort's customers still active at the start of each period "
    "0, 1, 2, ...: a non-increasing sequence that starts with the cohort size"
)


def _as_cohorts(active_per_period: Any) -> list[FloatArray]:
    """One survival curve (1-d) or several (2-d array or list of lists) as float arrays."""
    try:
        if isinstance(active_per_period, np.ndarray) and active_per_period.ndim == 2:
            return [np.asarray(row, dtype=np.float64) for row in active_per_period]
        items = list(active_per_period)
        if all(np.ndim(item) == 0 for item in items):
            return [np.asarray(items, dtype=np.float64)]
        if all(np.ndim(item) == 1 for item in items):
            return [np.asarray(item, dtype=np.float64) for item in items]
    except (TypeError, ValueError):
        pass
    raise DataValidationError(
        "active_per_period is neither a list of counts nor a list of such lists",
        fix="pass e.g. [1000, 631, 468, 382] (one cohort) or [[1000, 631], [800, 520, 410]]",
    )


def survival_rows(
    active_per_period: Any, weights: ArrayLike | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Validate survival curves and turn them into (period, censored, customers) rows.

    A cohort with ``a_0, a_1, ..., a_K`` active at the start of periods 0..K contributes
    ``a_{k-1} - a_k`` customers who churned in period k (censored 0) and ``a_K`` still
    active after period K (censored 1): the data of Fader & Hardie (2007) eq. (7).

    Parameters
    ----------
    active_per_period
        One cohort's counts, or a list of cohorts' counts (lengths may differ).
    weights
        Optional weight per cohort (>= 0), multiplying its counts.

    Returns
    -------
    tuple
        Periods, censoring flags and numbers of customers (rows with 0 customers dropped).

    Raises
    ------
    DataValidationError
        Naming the cohort and period of the first invalid count, and the fix.

    Examples
    --------
    >>> t, censored, customers = survival_rows([1000, 631, 468])
    >>> t.tolist(), censored.tolist(), customers.tolist()
    ([1.0, 2.0, 2.0], [0.0, 0.0, 1.0], [369.0, 163.0, 468.0])
    >>> survival_rows([1000, 631, 700])
    Traceback (most recent call last):
    ...
    segvalue.errors.DataValidationError: period 2: 700 active is more than the 631 active at period 1. Fix: ...
    """  # noqa: E501
    cohorts = _as_cohorts(active_per_period)
    if not cohorts:
        raise DataValidationError("no cohorts", fix=_FIX)
    if weights is None:
        w = np.ones(len(cohorts))
    else:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.size != len(cohorts):
            raise DataValidationError(
                f"weights has {w.size} values for {len(cohorts)} cohorts",
                fix="pass one weight per cohort",
            )
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataValidationError(
                f"cohort {i}: weight {w[i]:g} is not a number >= 0", fix="pass weights >= 0"
            )
    rows: list[tuple[float, float, float]] = []
    for c, counts in enumerate(cohorts):
        where = "" if len(cohorts) == 1 else f"cohort {c}, "
        _check_curve(counts, where)
        churned = counts[:-1] - counts[1:]
        rows += [(k + 1.0, 0.0, float(n) * w[c]) for k, n in enumerate(churned)]
        rows.append((len(counts) - 1.0, 1.0, float(counts[-1]) * w[c]))
    if max(len(counts) for counts in cohorts) < 3:
        raise DataValidationError(
            "the counts cover only one period of churn, which cannot separate alpha from beta",
            fix="pass counts for at least periods 0, 1 and 2",
        )
    t, censored, customers = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    keep = customers > 0
    if not np.any(keep & (censored == 0)):
        raise DataValidationError(
            "no customer churned: the churn rate cannot be estimated",
            fix="observe the cohort until some customers have churned",
        )
    if not np.any(keep & ((censored == 1) | (t > 1))):
        raise DataValidationError(
            "every customer churned in period 1: the retention model has nothing to estimate",
            fix="pass cohorts in which some customers renewed",
        )
    return t[keep], censored[keep], customers[keep]


def _check_curve(counts: FloatArray, where: str) -> None:
    if counts.size < 2:
        raise DataValidationError(
            f"{where.removesuffix(', ') or 'the cohort'} has {counts.size} count(s)", fix=_FIX
        )
    with np.errstate(invalid="ignore"):
        missing = ~np.isfinite(counts) | (counts < 0)
        rising = np.concatenate([[False], counts[1:] > counts[:-1]])
    if missing.any():
        k = int(np.argmax(missing))
        raise DataValidationError(
            f"{where}period {k}: active count {counts[k]:g} is missing or negative", fix=_FIX
        )
    if counts[0] <= 0:
        raise DataValidationError(f"{where}period 0: no customers active", fix=_FIX)
    if rising.any():
        k = int(np.argmax(rising))
        raise DataValidationError(
            f"{where}period {k}: {counts[k]:g} active is more than the {counts[k - 1]:g} "
            f"active at period {k - 1}",
            fix=_FIX,
        )


class ShiftedBetaGeometricModel(MLEModel):
    """sBG: geometric churn with beta-distributed churn probabilities across customers.

    Fader & Hardie (2007), "How to Project Customer Retention", *Journal of Interactive
    Marketing* 21(1). Each customer renews at the end of every period with probability
    1 - theta, theta ~ Beta(alpha, beta); heterogeneity makes cohort retention rates rise
    over time.

    Parameters
    ----------
    penalizer
        L2 penalty on the parameters (0 for plain maximum likelihood).

    Examples
    --------
    The "Regular" customers of FH 2007 (Table 1), years 0 to 7:

    >>> model = ShiftedBetaGeometricModel().fit([1000, 631, 468, 382, 326, 289, 262, 241])
    >>> {k: round(v, 3) for k, v in model.params_.items()}
    {'alpha': 0.704, 'beta': 1.182}
    """

    param_names = ("alpha", "beta")
    model_name = "sBG"

    # --- fitting -------------------------------------------------------------------
    def _negative_loglik(
        self, log_params: FloatArray, data: dict[str, FloatArray]
    ) -> tuple[float, FloatArray]:
        params = np.exp(log_params)
        ll, grad = sbg.log_likelihood_gradient(params, data["t"], data["censored"])
        weights = data["weights"]
        return -float(weights @ ll), -(weights @ grad) * params

    def _initial(self, data: dict[str, FloatArray]) -> FloatArray:
        return np.zeros(len(self.param_names))

    def fit(
        self,
        active_per_period: Any,
        *,
        weights: ArrayLike | None = None,
        time_unit: TimeUnit | str | None = None,
    ) -> Self:
        """Fit by maximum likelihood (FH 2007 eq. 7) on one or more survival curves.

        Parameters
        ----------
        active_per_period
            Customers of a cohort still active at the start of period 0, 1, 2, ...
            (period 0: the cohort size), or a list of such curves for several cohorts
            (of any lengths).
        weights
            Optional weight per cohort (multiplies its counts).
        time_unit
            The length of one period, recorded with the model.

        Returns
        -------
        self

        Raises
        ------
        DataValidationError
            When a count is invalid (naming the cohort and period, and the fix).

        Examples
        --------
        Two cohorts acquired a year apart:

        >>> model = ShiftedBetaGeometricModel().fit([[1000, 631, 468, 382], [800, 510, 380]])
        >>> model.n_customers_
        1800
        """
        t, censored, customers = survival_rows(active_per_period, weights)
        ut, uc, counts = compress_rows(t, censored, weights=customers)
        data = {"t": ut, "censored": uc, "weights": counts}
        unit = parse_time_unit(time_unit) if time_unit is not None else None
        return self._fit_data(data, unit)

    # --- predictions ---------------------------------------------------------------
    def survival(self, periods: ArrayLike) -> FloatArray:
        """Share of a new cohort still active after each period, S(t) (FH 2007).

        Parameters
        ----------
        periods
            Periods t (whole numbers >= 0); S(0) = 1.

        Returns
        -------
        numpy.ndarray
            Same shape as ``periods``.

        Examples
        --------
        >>> model = ShiftedBetaGeometricModel().fit([1000, 631, 468, 382, 326, 289, 262, 241])
        >>> (1000 * model.survival([1, 7, 12])).round()
        array([627., 239., 170.])
        """
        self._check_fitted()
        return sbg.survival(self._param_array(), _whole(periods, "periods", 0))

    def retention_rate(self, periods: ArrayLike) -> FloatArray:
        """Retention rate in period t, S(t) / S(t-1) = (beta+t-1)/(alpha+beta+t-1), FH 2007 eq. (8).

        Parameters
        ----------
        periods
            Periods t (whole numbers >= 1).

        Returns
        -------
        numpy.ndarray
            Same shape as ``periods``.

        Examples
        --------
        >>> model = ShiftedBetaGeometricModel().fit([1000, 631, 468, 382, 326, 289, 262, 241])
        >>> model.retention_rate([1, 2, 12]).round(3)
        array([0.627, 0.756, 0.945])
        """
        self._check_fitted()
        return sbg.retention_rate(self._param_array(), _whole(periods, "periods", 1))

    def churn_probability(self, periods: ArrayLike) -> FloatArray:
        """P(T = t): probability that a new customer churns in period t (FH 2007).

        Unconditional: the share of the original cohort lost in period t. The churn rate
        among those active at the start of period t is ``1 - retention_rate(t)``.

        Parameters
        ----------
        periods
            Periods t (whole numbers >= 1).

        Returns
        -------
        numpy.ndarray
            Same shape as ``periods``.

        Examples
        --------
        >>> model = ShiftedBetaGeometricModel().fit([1000, 631, 468, 382, 326, 289, 262, 241])
        >>> (1000 * model.churn_probability([1, 2])).round()
        array([373., 153.])
        """
        self._check_fitted()
        return sbg.churn_probability(self._param_array(), _whole(periods, "periods", 1))

    def expected_lifetime(self) -> float:
        """Expected number of periods a new customer stays, (alpha+beta-1)/(alpha-1).

        Infinite when alpha <= 1 (a heavy tail of very loyal customers).

        Returns
        -------
        float

        Examples
        --------
        >>> model = ShiftedBetaGeometricModel().fit([1000, 631, 468, 382, 326, 289, 262, 241])
        >>> model.expected_lifetime()
        inf
        """
        self._check_fitted()
        return sbg.expected_lifetime(self._param_array())

    def discounted_expected_residual_lifetime(
        self, renewals_so_far: ArrayLike, discount_rate: float
    ) -> FloatArray:
        """DERL: discounted expected residual lifetime, Fader & Hardie (2010) eq. (6).

        For a customer who has renewed ``renewals_so_far`` times and is about to make
        her next renewal decision: the expected number of further payments, the k-th
        discounted by ``(1 + discount_rate)^-(k-1)``. Multiply by the payment per period
        for her residual lifetime value.

        Parameters
        ----------
        renewals_so_far
            Renewals made so far (whole numbers >= 0).
        discount_rate
            Discount rate per period (>= 0; with 0 the result is infinite unless
            alpha > 1).

        Returns
        -------
        numpy.ndarray
            Same shape as ``renewals_so_far``.

        Examples
        --------
        >>> model = ShiftedBetaGeometricModel().fit([1000, 869, 743, 653, 593, 551, 517, 491])
        >>> model.discounted_expected_residual_lifetime([0, 4], 0.1).round(2)
        array([5.41, 6.9 ])
        """
        self._check_fitted()
        renewals = _whole(renewals_so_far, "renewals_so_far", 0)
        rate = _discount(discount_rate)
        return sbg.discounted_expected_residual_lifetime(self._param_array(), renewals, rate)
