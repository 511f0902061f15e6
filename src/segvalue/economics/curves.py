"""Response curves: Hill and Michaelis-Menten saturation, geometric adstock, fitting.

A response curve says how much outcome (revenue, conversions) a period's spend on one
budget item (a channel, or a segment x channel) brings:

- Hill: ``response(s) = beta * s^slope / (k^slope + s^slope)``, with ``beta`` the
  saturation level, ``k`` the half-saturation spend (``response(k) = beta / 2``) and
  ``slope`` the shape (``slope <= 1`` concave, ``slope > 1`` S-shaped with an inflection
  at ``k * ((slope - 1) / (slope + 1))^(1 / slope)``);
- Michaelis-Menten: the Hill curve with ``slope = 1``, ``beta * s / (k + s)``.

Geometric adstock carries a share ``theta`` of the effective spend over to the next
period. The curve applies to the adstocked spend, normalised so that a constant spend
``s`` per period has adstock ``s``: a fitted curve's ``k`` is in per-period spend and its
steady-state response to a per-period budget is just ``response(s)``, which is what the
budget optimiser uses.

Pure numpy/scipy: no I/O. :func:`fit_curves_from_channel_spend` accepts an Ibis
expression, a pyarrow table or a mapping of columns, and materialises the (small) channel
spend table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

# scipy.signal and scipy.stats are imported where they are used: together they take longer
# to import than a whole `segvalue budget --curves FILE` may (the optimiser needs neither).
from segvalue.config import ResponseItem
from segvalue.errors import DataValidationError

__all__ = [
    "FittedCurve",
    "fit_curves_from_channel_spend",
    "fit_response_curve",
    "geometric_adstock",
    "hill",
    "hill_inflection",
    "hill_marginal",
    "michaelis_menten",
    "michaelis_menten_marginal",
    "response_items",
]

FloatArray = NDArray[np.float64]
CurveForm = Literal["hill", "michaelis_menten"]
Loss = Literal["linear", "log"]

#: Largest carry-over rate the fit may choose; beyond it a period's spend acts for
#: decades and the curve is no longer about the period's budget.
MAX_ADSTOCK = 0.95
#: Periods over which :attr:`FittedCurve.recent_spend` averages (a quarter of weeks).
RECENT_PERIODS = 13


# --------------------------------------------------------------------------- curve forms


def _as_float(values: ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def logistic(z: ArrayLike) -> FloatArray:
    """``1 / (1 + e^-z)`` to full relative precision in both tails (scipy's ``expit``).

    Written with numpy alone so that budgets from a curves file never import scipy.

    Examples
    --------
    >>> logistic([0.0, -800.0, 40.0]).tolist()
    [0.5, 0.0, 1.0]
    >>> float(logistic(-700.0)) > 0
    True
    """
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(z))  # in (0, 1]: never overflows
    return np.asarray(np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)), dtype=np.float64)


def _hill_share(spend: FloatArray, k: FloatArray, slope: FloatArray) -> FloatArray:
    """``s^n / (k^n + s^n)`` computed as ``logistic(n (log s - log k))`` (no overflow)."""
    with np.errstate(divide="ignore"):
        log_ratio = np.log(spend) - np.log(k)
    return logistic(slope * log_ratio)


def hill(spend: ArrayLike, beta: ArrayLike, k: ArrayLike, slope: ArrayLike = 1.0) -> FloatArray:
    """Hill saturation ``beta * s^slope / (k^slope + s^slope)``, elementwise.

    Parameters
    ----------
    spend
        Spend per period (>= 0); broadcasts against the parameters.
    beta
        Saturation level: the response as spend grows without bound.
    k
        Half-saturation spend: ``hill(k, beta, k, slope) == beta / 2``.
    slope
        Shape: ``<= 1`` concave, ``> 1`` S-shaped.

    Returns
    -------
    numpy.ndarray
        The response.

    Examples
    --------
    >>> hill([0.0, 100.0, 300.0], beta=1000.0, k=100.0, slope=2.0).round(3).tolist()
    [0.0, 500.0, 900.0]
    """
    s, b, kk, n = (_as_float(v) for v in (spend, beta, k, slope))
    return np.asarray(b * _hill_share(s, kk, n), dtype=np.float64)


def hill_marginal(
    spend: ArrayLike, beta: ArrayLike, k: ArrayLike, slope: ArrayLike = 1.0
) -> FloatArray:
    """Derivative of :func:`hill` with respect to spend, elementwise.

    ``beta * slope * k^slope * s^(slope - 1) / (k^slope + s^slope)^2``, computed in logs
    (finite and exact from the tiniest positive spend to the largest). At zero spend it
    is ``beta / k`` for ``slope == 1``, ``0`` for ``slope > 1`` and infinite for
    ``slope < 1``.

    Examples
    --------
    >>> hill_marginal([0.0, 100.0], beta=1000.0, k=100.0, slope=1.0).round(12).tolist()
    [10.0, 2.5]
    >>> float(hill_marginal(0.0, 1000.0, 100.0, 2.0))
    0.0
    """
    s, b, kk, n = np.broadcast_arrays(*(_as_float(v) for v in (spend, beta, k, slope)))
    # In logs: beta n s^(n-1) k^-n / (1 + (s/k)^n)^2 stays exact for tiny spends, where
    # the saturation share s / (k + s) underflows to 0.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_ratio = np.log(s) - np.log(kk)
        log_out = (
            np.log(b * n)
            - np.log(kk)
            + (n - 1.0) * log_ratio
            - 2.0 * np.logaddexp(0.0, n * log_ratio)
        )
        out = np.exp(log_out)
    at_zero = s <= 0.0
    if np.any(at_zero):
        zero_value = np.where(n > 1.0, 0.0, np.where(n < 1.0, np.inf, b / kk))
        out = np.where(at_zero, zero_value, out)
    return np.asarray(out, dtype=np.float64)


def hill_inflection(k: ArrayLike, slope: ArrayLike) -> FloatArray:
    """Spend at which an S-shaped Hill curve turns from convex to concave.

    ``k * ((slope - 1) / (slope + 1))^(1 / slope)`` for ``slope > 1``, else 0 (a concave
    curve). The marginal response peaks there and falls on both sides.

    Examples
    --------
    >>> hill_inflection([100.0, 100.0], [2.0, 1.0]).round(4).tolist()
    [57.735, 0.0]
    """
    kk, n = np.broadcast_arrays(_as_float(k), _as_float(slope))
    with np.errstate(invalid="ignore", divide="ignore"):
        point = kk * np.clip((n - 1.0) / (n + 1.0), 0.0, None) ** (1.0 / n)
    return np.asarray(np.where(n > 1.0, point, 0.0), dtype=np.float64)


def michaelis_menten(spend: ArrayLike, beta: ArrayLike, k: ArrayLike) -> FloatArray:
    """Michaelis-Menten saturation ``beta * s / (k + s)`` (Hill with slope 1).

    Examples
    --------
    >>> michaelis_menten([0.0, 200.0, 600.0], beta=1000.0, k=200.0).tolist()
    [0.0, 500.0, 750.0]
    """
    s, b, kk = (_as_float(v) for v in (spend, beta, k))
    return np.asarray(b * s / (kk + s), dtype=np.float64)


def michaelis_menten_marginal(spend: ArrayLike, beta: ArrayLike, k: ArrayLike) -> FloatArray:
    """Derivative of :func:`michaelis_menten`: ``beta * k / (k + s)^2``.

    Examples
    --------
    >>> michaelis_menten_marginal([0.0, 200.0], beta=1000.0, k=200.0).tolist()
    [5.0, 1.25]
    """
    s, b, kk = (_as_float(v) for v in (spend, beta, k))
    return np.asarray(b * kk / (kk + s) ** 2, dtype=np.float64)


def geometric_adstock(spend: ArrayLike, theta: float) -> FloatArray:
    """Geometric carry-over, normalised: ``a_t = (1 - theta) s_t + theta a_(t-1)``.

    The weights ``(1 - theta) theta^j`` of the spend ``j`` periods ago add up to 1, so a
    constant spend keeps its level and a curve's ``k`` stays in per-period spend. The
    period before the first is taken to have had the first period's adstock (steady state),
    so that the start of the series is not biased towards zero.

    Parameters
    ----------
    spend
        Spend per period, oldest first (consecutive periods, no gaps).
    theta
        Carry-over rate in ``[0, 1)``: the share of the effect that carries into the next
        period (``0``: none).

    Returns
    -------
    numpy.ndarray
        The adstocked spend.

    Examples
    --------
    >>> geometric_adstock([100.0, 0.0, 0.0, 40.0], 0.5).tolist()
    [100.0, 50.0, 25.0, 32.5]
    >>> geometric_adstock([10.0, 20.0], 0.0).tolist()
    [10.0, 20.0]
    """
    s = _as_float(spend).ravel()
    if not 0.0 <= float(theta) < 1.0:
        raise DataValidationError(
            f"adstock rate theta must be in [0, 1), got {theta!r}", fix="pass e.g. 0.3"
        )
    if s.size == 0 or theta == 0.0:
        return s.copy()
    from scipy import signal

    out, _ = signal.lfilter([1.0 - theta], [1.0, -theta], s, zi=[theta * s[0]])
    return np.asarray(out, dtype=np.float64)


def _adstock_derivative(spend: FloatArray, adstock: FloatArray, theta: float) -> FloatArray:
    """``d a_t / d theta``: ``theta d_(t-1) + a_(t-1) - s_t`` with ``a_(-1) = s_0``."""
    from scipy import signal

    previous = np.concatenate([spend[:1], adstock[:-1]])
    out = signal.lfilter([1.0], [1.0, -theta], previous - spend)
    return np.asarray(out, dtype=np.float64)


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class FittedCurve:
    """A response curve fitted to a spend and outcome series, with its uncertainty.

    Attributes
    ----------
    form
        ``"hill"`` or ``"michaelis_menten"``.
    params
        ``beta``, ``k``, ``slope`` (1 for Michaelis-Menten) and ``theta`` (the adstock
        carry-over rate, 0 without adstock).
    standard_errors
        Standard error of each fitted parameter (delta method from the log scale); NaN
        when not identified. Parameters that were not fitted are absent.
    intervals
        95% interval of each fitted parameter: Wald on the log scale for ``beta``, ``k``
        and ``slope`` (so always positive), on the natural scale for ``theta``; NaN
        bounds when not identified.
    names
        The fitted parameters, in the order of the covariance matrices.
    covariance
        Covariance of the fitted parameters (natural scale).
    covariance_transformed
        Covariance on the optimiser's scale (log ``beta``, log ``k``, log ``slope``,
        ``theta``), used to draw parameters.
    r_squared
        Share of the outcome's variance the fitted curve explains.
    durbin_watson
        Durbin-Watson statistic of the residuals (2: none; well below 2: positive
        autocorrelation, so that the intervals are too narrow).
    residual_std
        Standard deviation of the residuals (outcome units, or log units for
        ``loss="log"``).
    n_periods
        Periods fitted.
    spend_range
        Smallest and largest (adstocked) spend observed.
    recent_spend
        Mean spend over the last :data:`RECENT_PERIODS` periods: a default ``current``.
    loss
        ``"linear"`` (least squares on the outcome) or ``"log"`` (on its logarithm).
    converged
        Whether the optimiser reported success.
    warnings
        Plain-language problems with the fit (not identified, at a bound, autocorrelated
        residuals); empty when the fit looks sound.
    channel, segment
        What the curve is for, when fitted by :func:`fit_curves_from_channel_spend`.
    """

    form: CurveForm
    params: dict[str, float]
    standard_errors: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    names: tuple[str, ...]
    covariance: FloatArray
    covariance_transformed: FloatArray
    r_squared: float
    durbin_watson: float
    residual_std: float
    n_periods: int
    spend_range: tuple[float, float]
    recent_spend: float
    loss: Loss
    converged: bool
    warnings: tuple[str, ...] = ()
    channel: str | None = None
    segment: str | None = None

    @property
    def identified(self) -> bool:
        """Whether every fitted parameter has a finite standard error."""
        return all(np.isfinite(v) for v in self.standard_errors.values())

    def response(self, spend: ArrayLike) -> FloatArray:
        """Steady-state response to a constant per-period spend: ``hill(spend)``.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> s = rng.uniform(10, 400, 80)
        >>> fit = fit_response_curve(s, michaelis_menten(s, 500.0, 100.0), form="michaelis_menten")
        >>> fit.response([100.0]).round(3).tolist()
        [250.0]
        """
        p = self.params
        return hill(spend, p["beta"], p["k"], p["slope"])

    def predict(self, spend_series: ArrayLike) -> FloatArray:
        """Expected outcome per period of a spend series (with the fitted adstock)."""
        p = self.params
        x = geometric_adstock(spend_series, p["theta"])
        return hill(x, p["beta"], p["k"], p["slope"])

    def draw_parameters(self, n_draws: int, rng: np.random.Generator) -> dict[str, FloatArray]:
        """Draws of ``beta``, ``k`` and ``slope`` from the fit's sampling distribution.

        Normal on the log scale (the optimiser's scale), so draws stay positive. A
        parameter whose standard error is not finite is held at its estimate.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> s = rng.uniform(10, 400, 80)
        >>> y = michaelis_menten(s, 500.0, 100.0) * rng.lognormal(0, 0.05, 80)
        >>> fit = fit_response_curve(s, y, form="michaelis_menten", loss="log")
        >>> draws = fit.draw_parameters(1000, np.random.default_rng(1))
        >>> sorted(draws), bool(abs(draws["beta"].mean() / fit.params["beta"] - 1) < 0.01)
        (['beta', 'k', 'slope'], True)
        """
        cov = np.asarray(self.covariance_transformed, dtype=np.float64)
        usable = np.isfinite(np.diag(cov))
        z = np.zeros((n_draws, len(self.names)))
        if usable.any():
            sub = cov[np.ix_(usable, usable)]
            sub = np.where(np.isfinite(sub), sub, 0.0)
            z[:, usable] = rng.multivariate_normal(
                np.zeros(int(usable.sum())), sub, size=n_draws, method="eigh"
            )
        out: dict[str, FloatArray] = {}
        for name in ("beta", "k", "slope"):
            value = self.params[name]
            if name in self.names:
                out[name] = value * np.exp(z[:, self.names.index(name)])
            else:
                out[name] = np.full(n_draws, value)
        return out

    def to_response_item(
        self, name: str, *, current: float | None = None, value: float = 1.0, **bounds: Any
    ) -> ResponseItem:
        """This curve as a budget item (``bounds``: ``min``, ``max``, ``max_change``,
        ``pinned``); ``current`` defaults to :attr:`recent_spend`.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> s = rng.uniform(10, 400, 80)
        >>> fit = fit_response_curve(s, michaelis_menten(s, 500.0, 100.0), form="michaelis_menten")
        >>> item = fit.to_response_item("email", current=120.0, max_change=0.3)
        >>> item.form, round(item.beta, 3), round(item.k, 3), item.current, item.max_change
        ('michaelis_menten', 500.0, 100.0, 120.0, 0.3)
        """
        p = self.params
        return ResponseItem(
            name=name,
            form=self.form,
            beta=p["beta"],
            k=p["k"],
            slope=p["slope"] if self.form == "hill" else None,
            value=value,
            current=self.recent_spend if current is None else current,
            **bounds,
        )


def _validate_series(
    spend_series: ArrayLike, outcome_series: ArrayLike, loss: Loss, n_params: int, label: str
) -> tuple[FloatArray, FloatArray]:
    spend = np.asarray(spend_series, dtype=np.float64).ravel()
    outcome = np.asarray(outcome_series, dtype=np.float64).ravel()
    if spend.size != outcome.size:
        raise DataValidationError(
            f"{label}: spend has {spend.size} periods but the outcome has {outcome.size}",
            fix="pass one spend and one outcome value per period",
        )
    if not (np.all(np.isfinite(spend)) and np.all(np.isfinite(outcome))):
        raise DataValidationError(
            f"{label}: spend and outcome must be finite numbers (found NaN or infinity)",
            fix="drop or fill the missing periods",
        )
    if np.any(spend < 0):
        raise DataValidationError(
            f"{label}: spend must be >= 0 (smallest {spend.min():g})",
            fix="correct the negative spend",
        )
    if loss == "log" and np.any(outcome <= 0):
        raise DataValidationError(
            f"{label}: the outcome must be > 0 for loss='log' (smallest {outcome.min():g})",
            fix="use loss='linear', or drop the periods without outcome",
        )
    distinct = np.unique(spend[spend > 0]).size
    if spend.size < n_params + 3 or distinct < n_params:
        raise DataValidationError(
            f"{label}: {spend.size} periods with {distinct} distinct positive spend levels "
            f"are too few to fit {n_params} curve parameters",
            fix=f"supply at least {n_params + 3} periods with varied spend",
        )
    return spend, outcome


class _CurveModel:
    """Residuals and Jacobian of the curve on the optimiser's scale."""

    def __init__(
        self, spend: FloatArray, outcome: FloatArray, form: CurveForm, adstock: bool, loss: Loss
    ) -> None:
        self.spend, self.outcome = spend, outcome
        self.fit_slope = form == "hill"
        self.fit_theta = adstock
        self.loss = loss
        self.names = (
            ("beta", "k") + (("slope",) if self.fit_slope else ()) + (("theta",) if adstock else ())
        )
        self.log_outcome = np.log(outcome) if loss == "log" else outcome

    def unpack(self, z: FloatArray) -> tuple[float, float, float, float]:
        beta, k = float(np.exp(z[0])), float(np.exp(z[1]))
        slope = float(np.exp(z[2])) if self.fit_slope else 1.0
        theta = float(z[-1]) if self.fit_theta else 0.0
        return beta, k, slope, theta

    def natural(self, z: FloatArray) -> FloatArray:
        values = [np.exp(z[0]), np.exp(z[1])]
        if self.fit_slope:
            values.append(np.exp(z[2]))
        if self.fit_theta:
            values.append(z[-1])
        return np.asarray(values, dtype=np.float64)

    def pack(self, beta: float, k: float, slope: float, theta: float) -> FloatArray:
        z = [np.log(beta), np.log(k)]
        if self.fit_slope:
            z.append(np.log(slope))
        if self.fit_theta:
            z.append(theta)
        return np.asarray(z, dtype=np.float64)

    def mean(self, z: FloatArray) -> FloatArray:
        beta, k, slope, theta = self.unpack(z)
        x = geometric_adstock(self.spend, theta) if self.fit_theta else self.spend
        return hill(x, beta, k, slope)

    def residuals(self, z: FloatArray) -> FloatArray:
        mean = self.mean(z)
        if self.loss == "log":
            return np.asarray(np.log(np.maximum(mean, 1e-300)) - self.log_outcome)
        return mean - self.outcome

    def jacobian(self, z: FloatArray) -> FloatArray:
        beta, k, slope, theta = self.unpack(z)
        x = geometric_adstock(self.spend, theta) if self.fit_theta else self.spend
        share = _hill_share(x, np.asarray(k), np.asarray(slope))
        mean = beta * share
        curvature = beta * slope * share * (1.0 - share)  # d mean / d log x
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.log(x) - np.log(k)
            columns = [mean, -curvature]
            if self.fit_slope:
                columns.append(np.where(x > 0, curvature * log_ratio, 0.0))
            if self.fit_theta:
                dx = _adstock_derivative(self.spend, x, theta)
                columns.append(np.where(x > 0, curvature / x * dx, 0.0))
        jac = np.column_stack(columns)
        if self.loss == "log":
            jac = jac / np.maximum(mean, 1e-300)[:, None]
        return np.asarray(jac, dtype=np.float64)


def _starts(model: _CurveModel) -> list[FloatArray]:
    """A grid of shapes, each with the best ``beta`` for it (beta enters linearly)."""
    positive = model.spend[model.spend > 0]
    ks = [*np.quantile(positive, [0.25, 0.5, 0.75]), positive.max(), 3.0 * positive.max()]
    slopes = [0.7, 1.5, 3.0] if model.fit_slope else [1.0]
    thetas = [0.0, 0.3, 0.6] if model.fit_theta else [0.0]
    starts = []
    for k in ks:
        for slope in slopes:
            for theta in thetas:
                x = geometric_adstock(model.spend, theta)
                share = _hill_share(x, np.asarray(k), np.asarray(slope))
                if model.loss == "log":
                    ok = share > 0
                    if not ok.any():
                        continue
                    beta = float(np.exp(np.mean(model.log_outcome[ok] - np.log(share[ok]))))
                else:
                    denominator = float(share @ share)
                    if denominator <= 0:
                        continue
                    beta = max(float(share @ model.outcome) / denominator, 1e-12)
                starts.append(model.pack(beta, float(k), slope, theta))
    return starts


def fit_response_curve(
    spend_series: ArrayLike,
    outcome_series: ArrayLike,
    *,
    form: CurveForm = "hill",
    adstock: bool = False,
    loss: Loss = "linear",
    n_starts: int = 4,
    label: str = "response curve",
) -> FittedCurve:
    """Fit a saturating response curve (optionally with geometric adstock) by least squares.

    Minimises the squared residuals of ``outcome_t`` against
    ``hill(adstock(spend)_t; beta, k, slope)`` (normal likelihood; ``loss="log"``: of
    ``log outcome_t``, i.e. multiplicative log-normal noise) with a trust-region
    reflective least-squares solver on ``(log beta, log k, log slope, theta)``, started
    from the best ``n_starts`` points of a grid of shapes (with the least-squares ``beta``
    for each). Standard errors come from ``sigma^2 (J'J)^-1`` at the optimum (Gauss-Newton
    approximation of the Hessian), mapped to the natural scale by the delta method;
    parameters at a bound of the search box are held fixed there.

    Parameters
    ----------
    spend_series, outcome_series
        Spend and outcome per period, oldest first (consecutive periods).
    form
        ``"hill"`` (fits ``slope``) or ``"michaelis_menten"`` (slope 1).
    adstock
        Also fit the geometric carry-over rate ``theta`` in ``[0, 0.95]``.
    loss
        ``"linear"`` (additive noise) or ``"log"`` (multiplicative noise; needs a
        positive outcome).
    n_starts
        How many of the best grid points to start the solver from.
    label
        Names the series in errors and warnings (e.g. the channel).

    Returns
    -------
    FittedCurve

    Raises
    ------
    DataValidationError
        Mismatched lengths, negative or missing values, too few periods.

    Notes
    -----
    The curve is identified only where spend varied: when the half-saturation ``k`` lies
    beyond the largest observed spend, the data never showed the curve bending and only
    the initial slope ``beta / k`` is well determined; the fit then warns (see
    :attr:`FittedCurve.warnings`), and its response beyond the observed range is an
    extrapolation.

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> s = rng.uniform(50.0, 3000.0, 150)
    >>> y = hill(s, 6000.0, 1500.0, 1.4) * rng.lognormal(0.0, 0.05, 150)
    >>> fit = fit_response_curve(s, y, form="hill", loss="log")
    >>> {name: float(f"{v:.3g}") for name, v in fit.params.items()}
    {'beta': 6020.0, 'k': 1490.0, 'slope': 1.4, 'theta': 0.0}
    >>> low, high = fit.intervals["k"]
    >>> bool(low < 1500.0 < high), fit.warnings
    (True, ())
    """
    model_names = 2 + (form == "hill") + bool(adstock)
    spend, outcome = _validate_series(spend_series, outcome_series, loss, model_names, label)
    model = _CurveModel(spend, outcome, form, adstock, loss)
    positive = spend[spend > 0]
    scale_y = max(float(np.abs(outcome).max()), 1e-12)
    lower = [np.log(scale_y * 1e-6), np.log(positive.min() * 1e-2)]
    upper = [np.log(scale_y * 1e6), np.log(positive.max() * 1e2)]
    if model.fit_slope:
        lower.append(np.log(0.2))
        upper.append(np.log(8.0))
    if model.fit_theta:
        lower.append(0.0)
        upper.append(MAX_ADSTOCK)
    lb, ub = np.asarray(lower), np.asarray(upper)

    starts = _starts(model)
    starts = [np.clip(z, lb + 1e-9 * (ub - lb), ub - 1e-9 * (ub - lb)) for z in starts]
    costs = [float(np.sum(model.residuals(z) ** 2)) for z in starts]
    best = None
    for i in np.argsort(costs)[: max(1, n_starts)]:
        from scipy import optimize  # fitting only: keep `budget --curves` start-up light

        result = optimize.least_squares(
            model.residuals, starts[i], jac=model.jacobian, bounds=(lb, ub), method="trf",
            x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-10, max_nfev=2000,
        )  # fmt: skip
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    return _summarise(model, best, lb, ub, label)


def _summarise(
    model: _CurveModel, result: Any, lb: FloatArray, ub: FloatArray, label: str
) -> FittedCurve:
    from scipy import stats

    z = np.asarray(result.x, dtype=np.float64)
    beta, k, slope, theta = model.unpack(z)
    n, p = model.spend.size, z.size
    residuals = model.residuals(z)
    ssr = float(residuals @ residuals)
    sigma2 = ssr / max(n - p, 1)
    span = ub - lb
    at_bound = (z - lb < 1e-6 * span) | (ub - z < 1e-6 * span)
    # The one-sided Jacobian at a bound still measures the curvature there (theta = 0 gives
    # an upper limit of the carry-over); only when that fails are bound parameters fixed.
    full_jac = model.jacobian(z)
    cov_t = np.full((p, p), np.nan)
    notes: list[str] = []
    for subset in (np.ones(p, dtype=bool), ~at_bound):
        if not subset.any():
            continue
        info = full_jac[:, subset].T @ full_jac[:, subset]
        eig = np.linalg.eigvalsh(info)
        if eig.min() > 0 and eig.min() > eig.max() * 1e-13:
            cov_t[np.ix_(subset, subset)] = sigma2 * np.linalg.inv(info)
            break
    else:
        notes.append(
            f"{label}: the parameters are not separately identified (flat likelihood): "
            "the spend varied too little"
        )
    for j in np.flatnonzero(at_bound):
        name = model.names[j]
        if name == "theta" and z[j] - lb[j] < 1e-6 * span[j]:
            continue  # no carry-over found: a legitimate answer, not a failure
        side = "lower" if z[j] - lb[j] < 1e-6 * span[j] else "upper"
        notes.append(f"{label}: {name} stopped at the {side} end of its search range")
    jac_nat = np.diag([*(model.natural(z)[: p - int(model.fit_theta)]), *([1.0] * model.fit_theta)])
    cov = jac_nat @ cov_t @ jac_nat
    dof = max(n - p, 1)
    crit = float(stats.t.ppf(0.975, dof))
    natural = model.natural(z)
    errors: dict[str, float] = {}
    intervals: dict[str, tuple[float, float]] = {}
    for i, name in enumerate(model.names):
        se_t = float(np.sqrt(cov_t[i, i])) if np.isfinite(cov_t[i, i]) else float("nan")
        errors[name] = float(np.sqrt(cov[i, i])) if np.isfinite(cov[i, i]) else float("nan")
        if name == "theta":
            intervals[name] = (
                float(max(natural[i] - crit * se_t, 0.0)),
                float(min(natural[i] + crit * se_t, 1.0)),
            )
        else:
            intervals[name] = (
                float(np.exp(z[i] - crit * se_t)),
                float(np.exp(z[i] + crit * se_t)),
            )
    x = geometric_adstock(model.spend, theta) if model.fit_theta else model.spend
    mean = hill(x, beta, k, slope)
    total = float(np.sum((model.outcome - model.outcome.mean()) ** 2))
    r_squared = 1.0 - float(np.sum((model.outcome - mean) ** 2)) / total if total > 0 else 0.0
    durbin_watson = float(np.sum(np.diff(residuals) ** 2) / ssr) if ssr > 0 else 2.0
    if k > x.max():
        notes.append(
            f"{label}: spend never reached the saturation region: the half-saturation spend "
            f"k = {k:,.4g} is above the largest observed spend {x.max():,.4g}, so beta and k "
            "are poorly identified and the curve beyond the observed spend is extrapolated"
        )
    if n - p >= 10 and durbin_watson < 1.0:
        hint = "" if model.fit_theta else "; consider adstock=True"
        notes.append(
            f"{label}: residuals are autocorrelated (Durbin-Watson {durbin_watson:.2f}): "
            f"the intervals are too narrow{hint}"
        )
    recent = model.spend[-min(RECENT_PERIODS, n) :]
    return FittedCurve(
        form="hill" if model.fit_slope else "michaelis_menten",
        params={"beta": beta, "k": k, "slope": slope, "theta": theta},
        standard_errors=errors,
        intervals=intervals,
        names=model.names,
        covariance=cov,
        covariance_transformed=cov_t,
        r_squared=r_squared,
        durbin_watson=durbin_watson,
        residual_std=float(np.sqrt(sigma2)),
        n_periods=n,
        spend_range=(float(x.min()), float(x.max())),
        recent_spend=float(recent.mean()),
        loss=model.loss,
        converged=bool(result.success),
        warnings=tuple(notes),
    )


# --------------------------------------------------------------------------- tables


def _columns(table: Any) -> dict[str, list[Any]]:
    """A table (Ibis expression, pyarrow table, DataFrame, mapping) as lists per column."""
    if isinstance(table, Mapping):
        return {str(k): list(v) for k, v in table.items()}
    if hasattr(table, "to_pyarrow"):  # an Ibis expression (or polars): run it
        table = table.to_pyarrow()
    if hasattr(table, "to_pydict"):
        return {str(k): v for k, v in table.to_pydict().items()}
    if hasattr(table, "to_dict"):  # a pandas DataFrame
        return {str(k): list(v) for k, v in table.to_dict(orient="list").items()}
    raise DataValidationError(
        f"channel_spend: cannot read a {type(table).__name__} as a table",
        fix="pass an Ibis table, a pyarrow table or a mapping of columns",
    )


def fit_curves_from_channel_spend(
    table: Any,
    *,
    outcome: Literal["revenue", "conversions"] = "revenue",
    segment: str | None = None,
    form: CurveForm = "hill",
    adstock: bool = True,
    loss: Loss = "linear",
) -> dict[str, FittedCurve]:
    """Fit one response curve per channel (or per segment x channel) of ``channel_spend``.

    Rows are summed per (segment,) channel and period (several campaigns in one period
    add up), ordered by period, and each series is fitted with
    :func:`fit_response_curve`.

    Parameters
    ----------
    table
        The ``channel_spend`` table: ``period``, ``channel``, ``spend`` and the outcome
        column (optionally ``segment``): an Ibis expression, a pyarrow table or a mapping
        of columns. Each series should cover consecutive periods (a missing period is a
        gap for the adstock).
    outcome
        The outcome column: ``"revenue"`` (value 1 per unit) or ``"conversions"``.
    segment
        Name of the segment column, to fit segment x channel curves.
    form, adstock, loss
        As in :func:`fit_response_curve`.

    Returns
    -------
    dict of str to FittedCurve
        Keyed by item name: the channel, or ``"segment / channel"``.

    Raises
    ------
    DataValidationError
        A column is missing, or a series is too short (naming the channel).

    Examples
    --------
    >>> periods = list(range(60)) * 2
    >>> channels = ["email"] * 60 + ["search"] * 60
    >>> rng = np.random.default_rng(0)
    >>> spend = rng.uniform(20.0, 600.0, 120)
    >>> beta, k = np.repeat([800.0, 3000.0], 60), np.repeat([100.0, 900.0], 60)
    >>> revenue = michaelis_menten(spend, beta, k)
    >>> curves = fit_curves_from_channel_spend(
    ...     {"period": periods, "channel": channels, "spend": spend, "revenue": revenue},
    ...     form="michaelis_menten", adstock=False)
    >>> {name: round(c.params["k"], 2) for name, c in curves.items()}
    {'email': 100.0, 'search': 900.0}
    >>> curves["search"].warnings[0][:50]
    'search: spend never reached the saturation region:'
    """
    columns = _columns(table)
    needed = ["period", "channel", "spend", outcome] + ([segment] if segment else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataValidationError(
            f"channel_spend: column(s) {missing} missing (has {sorted(columns)})",
            fix="map them in sources.channel_spend of segvalue.yaml",
        )
    channel = np.asarray([str(v) for v in columns["channel"]], dtype=object)
    seg = (
        np.asarray([str(v) for v in columns[segment]], dtype=object)
        if segment
        else np.full(channel.size, "", dtype=object)
    )
    period = np.asarray(columns["period"])
    spend = np.asarray([np.nan if v is None else v for v in columns["spend"]], dtype=np.float64)
    values = np.asarray([np.nan if v is None else v for v in columns[outcome]], dtype=np.float64)
    curves: dict[str, FittedCurve] = {}
    keys = sorted({(str(s), str(c)) for s, c in zip(seg, channel, strict=True)})
    for seg_name, ch_name in keys:
        rows = (seg == seg_name) & (channel == ch_name)
        name = f"{seg_name} / {ch_name}" if segment else ch_name
        distinct, codes = np.unique(period[rows], return_inverse=True)
        series_spend = np.bincount(codes, weights=spend[rows], minlength=distinct.size)
        series_outcome = np.bincount(codes, weights=values[rows], minlength=distinct.size)
        fit = fit_response_curve(
            series_spend, series_outcome, form=form, adstock=adstock, loss=loss, label=name
        )
        curves[name] = replace(fit, channel=ch_name, segment=seg_name if segment else None)
    return curves


def response_items(
    curves: Mapping[str, FittedCurve],
    *,
    current: Mapping[str, float] | None = None,
    value: float | Mapping[str, float] = 1.0,
    max_change: float | None = None,
) -> list[ResponseItem]:
    """Fitted curves as budget items, ready for the optimiser.

    Parameters
    ----------
    curves
        Fitted curves by item name (as returned by :func:`fit_curves_from_channel_spend`).
    current
        Current spend per item; default each curve's :attr:`FittedCurve.recent_spend`.
    value
        Money per unit of response (1 for revenue curves; revenue or CLV per conversion
        for conversion curves), one number or one per item.
    max_change
        +-share of current each item may move (None: no limit).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = rng.uniform(10, 400, 80)
    >>> fit = fit_response_curve(s, michaelis_menten(s, 500.0, 100.0), form="michaelis_menten")
    >>> [(i.name, i.current) for i in response_items({"email": fit}, current={"email": 90.0})]
    [('email', 90.0)]
    """
    items = []
    for name, fit in curves.items():
        now = None if current is None else current.get(name)
        per_unit = value if isinstance(value, int | float) else value.get(name, 1.0)
        extra: dict[str, Any] = {} if max_change is None else {"max_change": max_change}
        items.append(fit.to_response_item(name, current=now, value=float(per_unit), **extra))
    return items
