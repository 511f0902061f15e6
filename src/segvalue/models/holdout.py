"""Calibration / holdout validation of a fitted transaction model, analytically.

Nothing here is simulated: the expected number of customers with each calibration
frequency is the sum over customers of P(X(T_i) = n) for a customer observed for T_i
periods, and the expected holdout purchases are the models' conditional expectations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segvalue.errors import DataValidationError
from segvalue.models.base import Histories

__all__ = ["HoldoutReport", "choose_model", "holdout_report"]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class HoldoutReport:
    """How well a model fitted on the calibration period predicts the holdout period.

    Attributes
    ----------
    frequency_histogram
        Rows ``{"frequency": k, "actual": customers, "expected": customers}`` for
        k = 0 .. max_frequency - 1 and a last row ``"<k>+"`` for the rest.
    actual_repeat, predicted_repeat
        Total holdout repeat purchases, observed and expected.
    mae, rmse, correlation
        Per-customer error of the expected holdout purchases.
    cumulative
        Rows ``{"period": p, "actual": ..., "expected": ...}`` of cumulative repeat
        purchases since the cohort's start, when period data were given.
    """

    frequency_histogram: list[dict[str, Any]]
    actual_repeat: float
    predicted_repeat: float
    mae: float
    rmse: float
    correlation: float
    cumulative: list[dict[str, float]] = field(default_factory=list)

    @property
    def aggregate_error(self) -> float:
        """Relative error of the total holdout repeat purchases."""
        return (self.predicted_repeat - self.actual_repeat) / max(self.actual_repeat, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "actual_repeat": self.actual_repeat,
            "predicted_repeat": self.predicted_repeat,
            "aggregate_error": self.aggregate_error,
            "mae": self.mae,
            "rmse": self.rmse,
            "correlation": self.correlation,
            "frequency_histogram": self.frequency_histogram,
            "cumulative": self.cumulative,
        }


def _histogram(
    model: Any, x: FloatArray, ages: FloatArray, per_age: FloatArray, max_frequency: int
) -> list[dict[str, Any]]:
    expected = np.zeros(max_frequency + 1)
    for n in range(max_frequency):
        probabilities = np.asarray(model.probability_of_purchases_new(n, ages), dtype=float)
        expected[n] = float(np.sum(per_age * probabilities))
    expected[max_frequency] = x.size - expected[:max_frequency].sum()
    actual = np.bincount(np.minimum(x, max_frequency).astype(np.int64), minlength=max_frequency + 1)
    rows: list[dict[str, Any]] = [
        {"frequency": str(n), "actual": int(actual[n]), "expected": float(expected[n])}
        for n in range(max_frequency)
    ]
    rows.append(
        {
            "frequency": f"{max_frequency}+",
            "actual": int(actual[max_frequency]),
            "expected": float(expected[max_frequency]),
        }
    )
    return rows


def _cumulative(
    model: Any,
    starts: FloatArray,
    per_start: FloatArray,
    periods: FloatArray,
    actual: FloatArray,
) -> list[dict[str, float]]:
    rows = []
    for period, observed in zip(periods, actual, strict=True):
        ages = np.clip(period - starts, 0.0, None)
        alive = ages > 0
        expected = np.zeros_like(ages)
        if alive.any():
            expected[alive] = np.asarray(model.expected_purchases_new(ages[alive]), float)
        rows.append(
            {
                "period": float(period),
                "actual": float(observed),
                "expected": float(np.sum(per_start * expected)),
            }
        )
    return rows


def holdout_report(
    model: Any,
    frequency: Any,
    recency: Any,
    T: Any,
    frequency_holdout: Any,
    duration_holdout: float,
    *,
    max_frequency: int = 7,
    periods: Any = None,
    cumulative_actual: Any = None,
    histories: Histories | None = None,
) -> HoldoutReport:
    """Compare a calibration-period fit with what customers did in the holdout period.

    Parameters
    ----------
    model
        A fitted transaction model (BG/NBD, MBG/NBD, Pareto/NBD).
    frequency, recency, T
        Calibration-period features per customer.
    frequency_holdout
        Repeat purchases per customer in the holdout period.
    duration_holdout
        Length of the holdout period in the model's time unit.
    max_frequency
        Histogram buckets 0 .. max_frequency - 1 and ``max_frequency+``.
    periods, cumulative_actual
        Optional tracking: time points (periods since the calibration start) and the
        observed cumulative repeat purchases of the cohort at each; the expected values
        use each customer's first purchase time (calibration end minus T).
    histories
        ``Histories.of(frequency, recency, T)`` when the caller has it already (computed
        otherwise): the model predicts once per distinct history.

    Returns
    -------
    HoldoutReport
    """
    x = np.asarray(frequency, dtype=np.float64).ravel()
    t_x = np.asarray(recency, dtype=np.float64).ravel()
    big_t = np.asarray(T, dtype=np.float64).ravel()
    actual = np.asarray(frequency_holdout, dtype=np.float64).ravel()
    if actual.size != x.size:
        raise DataValidationError(
            f"frequency_holdout has {actual.size} values for {x.size} customers",
            fix="pass one holdout count per calibration customer",
        )
    if duration_holdout <= 0:
        raise DataValidationError(
            f"holdout duration {duration_holdout} is not positive",
            fix="the observation end must be after the calibration end",
        )
    if histories is None:
        histories = Histories.of(x, t_x, big_t)
    predicted = histories.per_customer(
        model.expected_purchases(*histories.columns, horizon=duration_holdout)
    )
    error = predicted - actual
    correlation = (
        float(np.corrcoef(predicted, actual)[0, 1])
        if predicted.std() > 0 and actual.std() > 0
        else float("nan")
    )
    # Customers per distinct age T (the histogram and the tracking curve depend on no more).
    ages, index = np.unique(histories.T, return_inverse=True)
    per_age = np.asarray(
        np.bincount(index.ravel(), weights=histories.counts, minlength=ages.size), dtype=np.float64
    )
    cumulative: list[dict[str, float]] = []
    if periods is not None and cumulative_actual is not None:
        # Each customer's first purchase, in periods since the calibration start.
        cumulative = _cumulative(
            model,
            float(np.max(ages)) - ages,
            per_age,
            np.asarray(periods, dtype=np.float64),
            np.asarray(cumulative_actual, dtype=np.float64),
        )
    return HoldoutReport(
        frequency_histogram=_histogram(model, x, ages, per_age, max_frequency),
        actual_repeat=float(actual.sum()),
        predicted_repeat=float(predicted.sum()),
        mae=float(np.mean(np.abs(error))),
        rmse=float(np.sqrt(np.mean(error**2))),
        correlation=correlation,
        cumulative=cumulative,
    )


def choose_model(reports: dict[str, HoldoutReport]) -> str:
    """The model with the smallest per-customer holdout MAE (ties: smaller aggregate error).

    Examples
    --------
    >>> a = HoldoutReport([], 10.0, 11.0, 0.5, 0.9, 0.6)
    >>> b = HoldoutReport([], 10.0, 10.2, 0.4, 0.8, 0.7)
    >>> choose_model({"bgnbd": a, "pnbd": b})
    'pnbd'
    """
    if not reports:
        raise DataValidationError("no models to choose from", fix="fit at least one model")
    return min(reports, key=lambda k: (reports[k].mae, abs(reports[k].aggregate_error)))
