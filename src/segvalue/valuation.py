"""Fit the CLV models on per-customer feature arrays and score every customer.

Between ``features`` (which produce the arrays in the engine) and the faces: model
choice by holdout error, the spend model, and the per-customer scores (probability alive,
churn risk, expected purchases, expected spend, CLV with intervals). Arrays in, arrays
out; no Ibis, no I/O.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segvalue.errors import ConfigError, DataValidationError
from segvalue.models.clv import customer_lifetime_value
from segvalue.models.holdout import HoldoutReport, choose_model, holdout_report
from segvalue.units import TimeUnit

__all__ = ["SPEND_MODELS", "TRANSACTION_MODELS", "Valuation", "fit_valuation", "score_customers"]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

#: Command-line names of the transaction models and where they live.
TRANSACTION_MODELS: dict[str, tuple[str, str]] = {
    "bgnbd": ("segvalue.models.bgnbd", "BetaGeoModel"),
    "mbgnbd": ("segvalue.models.bgnbd", "ModifiedBetaGeoModel"),
    "pnbd": ("segvalue.models.pareto_nbd", "ParetoNBDModel"),
}
SPEND_MODELS = ("gamma-gamma", "none")


def _model_class(name: str) -> Any:
    if name not in TRANSACTION_MODELS:
        choices = ", ".join([*TRANSACTION_MODELS, "auto"])
        raise ConfigError(f"unknown model {name!r}", fix=f"use one of: {choices}")
    module, cls = TRANSACTION_MODELS[name]
    return getattr(importlib.import_module(module), cls)


@dataclass
class Valuation:
    """The fitted models and how they were chosen."""

    model: str
    transactions: Any
    spend: Any
    time_unit: TimeUnit | None
    candidates: dict[str, Any] = field(default_factory=dict)
    holdout: dict[str, HoldoutReport] = field(default_factory=dict)
    propensity: dict[str, Any] | None = None
    spend_excluded: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary of ``segvalue clv --json``."""
        t = self.transactions
        spend = None
        if self.spend is not None:
            spend = {
                "params": dict(self.spend.params_),
                "stderr": dict(self.spend.stderr_),
                "loglik": self.spend.loglik_,
                "n_customers": self.spend.n_customers_,
                "n_excluded_zero_spend": self.spend_excluded,
            }
        chosen = self.holdout.get(self.model)
        return {
            "model": self.model,
            "time_unit": self.time_unit.value if self.time_unit else None,
            "params": dict(t.params_),
            "stderr": dict(t.stderr_),
            "confidence_intervals": {k: list(v) for k, v in t.confidence_intervals_.items()},
            "loglik": t.loglik_,
            "n_customers": t.n_customers_,
            "spend_model": spend,
            "holdout": None
            if chosen is None
            else {
                "actual_repeat": chosen.actual_repeat,
                "predicted_repeat": chosen.predicted_repeat,
                "mae": chosen.mae,
                "rmse": chosen.rmse,
                "correlation": chosen.correlation,
                "frequency_histogram": chosen.frequency_histogram,
                "cumulative": chosen.cumulative,
            },
            "propensity": self.propensity,
            "candidates": {
                name: {
                    "loglik": m.loglik_,
                    "holdout_mae": self.holdout[name].mae if name in self.holdout else None,
                }
                for name, m in self.candidates.items()
            },
        }


def fit_valuation(
    calibration: dict[str, FloatArray],
    *,
    model: str = "bgnbd",
    spend_model: str = "gamma-gamma",
    time_unit: TimeUnit | None = None,
    holdout: tuple[FloatArray, float] | None = None,
    cumulative: tuple[FloatArray, FloatArray] | None = None,
) -> Valuation:
    """Fit the transaction model(s) and the spend model on calibration features.

    Parameters
    ----------
    calibration
        Arrays ``frequency``, ``recency``, ``T``, ``monetary_value`` (one per customer).
    model
        ``bgnbd``, ``mbgnbd``, ``pnbd`` or ``auto`` (all three; the smallest holdout MAE
        wins, or the largest log-likelihood without a holdout).
    spend_model
        ``gamma-gamma`` or ``none``.
    time_unit
        Recorded with the models.
    holdout
        ``(frequency_holdout, duration_holdout)`` to validate each model.
    cumulative
        ``(periods, cumulative_actual)`` repeat purchases since the calibration start,
        for the tracking curve.

    Returns
    -------
    Valuation
    """
    if spend_model not in SPEND_MODELS:
        raise ConfigError(
            f"unknown spend model {spend_model!r}", fix=f"use one of: {', '.join(SPEND_MODELS)}"
        )
    names = list(TRANSACTION_MODELS) if model == "auto" else [model]
    x, t_x, big_t = calibration["frequency"], calibration["recency"], calibration["T"]
    candidates = {
        name: _model_class(name)().fit(x, t_x, big_t, time_unit=time_unit) for name in names
    }
    reports: dict[str, HoldoutReport] = {}
    if holdout is not None:
        periods, actual = cumulative if cumulative is not None else (None, None)
        for name, fitted in candidates.items():
            reports[name] = holdout_report(
                fitted,
                x,
                t_x,
                big_t,
                holdout[0],
                holdout[1],
                periods=periods,
                cumulative_actual=actual,
            )
    if len(candidates) == 1:
        chosen = names[0]
    elif reports:
        chosen = choose_model(reports)
    else:
        chosen = max(candidates, key=lambda n: candidates[n].loglik_)
    spend, spend_excluded = None, 0
    if spend_model == "gamma-gamma":
        from segvalue.models.gamma_gamma import GammaGammaModel

        m = calibration["monetary_value"]
        # Repeat customers whose repeat purchases were all free (amount 0) carry no
        # information on spend and are outside the Gamma-Gamma support (m > 0).
        usable = (x > 0) & (m > 0)
        if int(usable.sum()) < 2:
            raise DataValidationError(
                "the spend model needs repeat customers with a positive mean spend, "
                f"and there are {int(usable.sum())}",
                fix="use --spend-model none, or more history",
            )
        spend = GammaGammaModel().fit(x[usable], m[usable])
        spend_excluded = int(np.sum((x > 0) & ~usable))
    return Valuation(
        chosen, candidates[chosen], spend, time_unit, candidates, reports, None, spend_excluded
    )


def score_customers(
    valuation: Valuation,
    features: dict[str, FloatArray],
    *,
    horizon: int,
    discount_rate: float,
    margin: float = 1.0,
    intervals: bool = True,
) -> dict[str, FloatArray]:
    """Per-customer scores from the fitted models.

    Parameters
    ----------
    valuation
        From :func:`fit_valuation`.
    features
        Arrays ``frequency``, ``recency``, ``T``, ``monetary_value`` at the observation end.
    horizon
        Whole periods for expected purchases and CLV.
    discount_rate
        Per period.
    margin
        Profit share of spend.
    intervals
        Add ``clv_lower`` / ``clv_upper`` from parameter uncertainty.

    Returns
    -------
    dict of str to numpy.ndarray
        ``probability_alive``, ``churn_risk``, ``expected_purchases``,
        ``expected_spend``, ``clv``, ``clv_lower``, ``clv_upper``.
    """
    t = valuation.transactions
    x, t_x, big_t = features["frequency"], features["recency"], features["T"]
    alive = np.asarray(t.probability_alive(x, t_x, big_t), dtype=np.float64)
    value = customer_lifetime_value(
        t,
        x,
        t_x,
        big_t,
        horizon=horizon,
        discount_rate=discount_rate,
        margin=margin,
        spend=valuation.spend,
        monetary_value=features["monetary_value"],
        intervals=intervals,
    )
    return {
        "probability_alive": alive,
        "churn_risk": 1.0 - alive,
        "expected_purchases": np.asarray(
            t.expected_purchases(x, t_x, big_t, horizon=float(horizon)), dtype=np.float64
        ),
        "expected_spend": value.expected_spend,
        "clv": value.clv,
        "clv_lower": value.lower,
        "clv_upper": value.upper,
    }
