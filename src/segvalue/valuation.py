"""Fit the CLV models on per-customer feature arrays and score every customer.

Between ``features`` (which produce the arrays in the engine) and the faces: model
choice by holdout error, the spend model, and the per-customer scores (probability alive,
churn risk, expected purchases, expected spend, CLV with intervals). Arrays in, arrays
out; no Ibis, no I/O.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import numpy as np

from segvalue.errors import ConfigError, DataValidationError
from segvalue.models.base import Histories
from segvalue.models.clv import MAX_INTERVAL_RATIO, customer_lifetime_value
from segvalue.models.holdout import HoldoutReport, choose_model, holdout_report
from segvalue.units import TimeUnit

__all__ = [
    "AUTO_CANDIDATES",
    "DEFAULT_MODEL",
    "SPEND_MODELS",
    "TRANSACTION_MODELS",
    "Valuation",
    "fit_valuation",
    "fit_warnings",
    "score_customers",
]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Command-line names of the transaction models and where they live.
TRANSACTION_MODELS: dict[str, tuple[str, str]] = {
    "bgnbd": ("segvalue.models.bgnbd", "BetaGeoModel"),
    "mbgnbd": ("segvalue.models.bgnbd", "ModifiedBetaGeoModel"),
    "pnbd": ("segvalue.models.pareto_nbd", "ParetoNBDModel"),
}
SPEND_MODELS = ("gamma-gamma", "none")
#: What ``auto`` chooses from: the models in which a customer who bought once can have
#: dropped out. BG/NBD cannot: its dropout happens only right after a repeat purchase, so
#: P(alive | x = 0) = 1 whatever the idle time (Fader, Hardie & Lee 2005, eq. 18).
AUTO_CANDIDATES = ("mbgnbd", "pnbd")
DEFAULT_MODEL = "auto"

#: A shape or scale parameter below this (natural scale) means the fit ran to a boundary.
TINY_PARAMETER = 1e-4
#: ... and above this, that it ran off to infinity.
HUGE_PARAMETER = 1e6
#: Holdout correlation of predicted and actual purchases below which the fit is doubtful.
MIN_HOLDOUT_CORRELATION = 0.2


def _one_blas_thread(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``function`` with BLAS on one thread.

    The models make many short matrix products (sums over a million customers of a few
    columns): a BLAS thread hand-off costs more than the product itself, fifty times so
    for a dot product when the other core is busy. One thread also makes the fits
    independent of the core count (the order of floating-point sums is fixed).
    """

    @functools.wraps(function)
    def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return wrapped


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
    warnings: list[str] = field(default_factory=list)
    selection: str = ""
    propensity_model: Any = None

    @property
    def one_time_churn_identified(self) -> bool:
        """Whether the chosen model can say that a customer who bought once has left."""
        return self.model != "bgnbd"

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary of ``segvalue clv --json`` (and of ``clv`` in run.json)."""
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
            "confidence_intervals": {
                k: (None if reason else list(t.confidence_intervals_[k]))
                for k, reason in _interval_problems(t).items()
            },
            "confidence_intervals_unavailable": {
                k: reason for k, reason in _interval_problems(t).items() if reason
            },
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
            "selection": self.selection,
            "one_time_buyer_churn_identified": self.one_time_churn_identified,
            "warnings": list(self.warnings),
            "candidates": {
                name: {
                    "loglik": m.loglik_,
                    "holdout_mae": self.holdout[name].mae if name in self.holdout else None,
                }
                for name, m in self.candidates.items()
            },
        }


def _collecting(fit: Callable[[], Any], notes: list[str]) -> Any:
    """Run a fit; the fallbacks it needed become notes for the user (not Python warnings).

    Which optimiser path converges may differ between machines; the user sees it among
    the valuation's warnings either way, and a caller's warning filters are not tripped.
    The notes go through a context variable (:data:`segvalue.models._fit.convergence_notes`),
    so fits on two threads at once each note their own.
    """
    from segvalue.models._fit import convergence_notes

    token = convergence_notes.set(notes)
    try:
        return fit()
    finally:
        convergence_notes.reset(token)


def _interval_problems(model: Any) -> dict[str, str]:
    """Per parameter: why its 95% interval is unavailable ("" when it is usable)."""
    out = {}
    for name in model.param_names:
        lo, hi = model.confidence_intervals_[name]
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0:
            out[name] = "not available: the Hessian is not positive definite at the optimum"
        elif hi / lo > MAX_INTERVAL_RATIO:
            out[name] = f"not available: spans more than {MAX_INTERVAL_RATIO:.0e} (upper / lower)"
        else:
            out[name] = ""
    return out


def fit_warnings(name: str, model: Any, report: HoldoutReport | None = None) -> list[str]:
    """Why a fitted transaction model should not be trusted as it stands (empty if none).

    A parameter at a boundary (below ``TINY_PARAMETER`` or above ``HUGE_PARAMETER``),
    intervals that are unavailable or absurdly wide, a holdout correlation below
    ``MIN_HOLDOUT_CORRELATION``, and BG/NBD's unidentified churn of one-time buyers.

    Parameters
    ----------
    name
        The model's command-line name (``bgnbd``, ``mbgnbd``, ``pnbd``).
    model
        The fitted model.
    report
        Its holdout report, when there is one.

    Returns
    -------
    list of str

    Examples
    --------
    >>> class Fitted:  # what a degenerate fit leaves: a at the boundary, no interval
    ...     param_names = ("r", "a")
    ...     params_ = {"r": 0.5, "a": 1.3e-5}
    ...     confidence_intervals_ = {"r": (0.4, 0.6), "a": (1e-300, 1e250)}
    >>> for text in fit_warnings("mbgnbd", Fitted()):
    ...     print(text[:70])
    mbgnbd: parameter a = 1.3e-05 is at its lower limit (< 0.0001): the fi
    mbgnbd: 95% intervals of a are not available: spans more than 1e+06 (u
    """
    found = []
    for param, value in model.params_.items():
        if not np.isfinite(value) or value < TINY_PARAMETER:
            found.append(
                f"{name}: parameter {param} = {value:.3g} is at its lower limit "
                f"(< {TINY_PARAMETER:g}): the fit is degenerate, predictions rest on a "
                "boundary; try another model (clv.model) or more history"
            )
        elif value > HUGE_PARAMETER:
            found.append(
                f"{name}: parameter {param} = {value:.3g} runs off to infinity "
                f"(> {HUGE_PARAMETER:g}): the fit is degenerate; try another model "
                "(clv.model) or more history"
            )
    bad = {k: r for k, r in _interval_problems(model).items() if r}
    if bad:
        found.append(
            f"{name}: 95% intervals of {', '.join(sorted(bad))} are {next(iter(bad.values()))}; "
            "they are reported as unavailable (null)"
        )
    if report is not None and not report.correlation >= MIN_HOLDOUT_CORRELATION:
        found.append(
            f"{name}: holdout correlation of predicted and actual purchases is "
            f"{report.correlation:.2f} (< {MIN_HOLDOUT_CORRELATION}): the model hardly "
            "predicts who buys; treat per-customer scores with caution"
        )
    if name == "bgnbd":
        found.append(
            "bgnbd: churn risk of one-time buyers is not identified by BG/NBD (P(alive) = 1 "
            "for every customer without a repeat purchase, however long idle; Fader, Hardie "
            "& Lee 2005): their churn_risk is 0 by construction; use clv.model auto, mbgnbd "
            "or pnbd"
        )
    return found


@_one_blas_thread
def fit_valuation(
    calibration: dict[str, FloatArray],
    *,
    model: str = DEFAULT_MODEL,
    spend_model: str = "gamma-gamma",
    time_unit: TimeUnit | None = None,
    holdout: tuple[FloatArray, float] | None = None,
    cumulative: tuple[FloatArray, FloatArray] | None = None,
    histories: Histories | None = None,
) -> Valuation:
    """Fit the transaction model(s) and the spend model on calibration features.

    Parameters
    ----------
    calibration
        Arrays ``frequency``, ``recency``, ``T``, ``monetary_value`` (one per customer).
    model
        ``auto`` (default), ``bgnbd``, ``mbgnbd`` or ``pnbd``. ``auto`` fits the models
        that let a one-time buyer drop out (MBG/NBD and Pareto/NBD, ``AUTO_CANDIDATES``)
        and keeps the one with the smallest per-customer holdout MAE, or, without a
        holdout, the larger log-likelihood (both have four parameters, so this is also
        the smaller BIC). BG/NBD only when asked for, with a warning.
    spend_model
        ``gamma-gamma`` or ``none``. A Gamma-Gamma fit that fails (e.g. every amount
        the same: no spread to learn) falls back to ``none`` with a warning.
    time_unit
        Recorded with the models.
    holdout
        ``(frequency_holdout, duration_holdout)`` to validate each model.
    cumulative
        ``(periods, cumulative_actual)`` repeat purchases since the calibration start,
        for the tracking curve.
    histories
        ``Histories.of`` the calibration's frequency, recency and T, when the caller has
        it already (computed otherwise). Every transaction model is fitted and validated
        on the distinct histories, weighted by their customers.

    Returns
    -------
    Valuation

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x = rng.poisson(2.0, 300).astype(float)
    >>> big_t = np.full(300, 40.0)
    >>> t_x = np.where(x > 0, rng.uniform(0, 40, 300), 0.0)
    >>> v = fit_valuation({"frequency": x, "recency": t_x, "T": big_t,
    ...                    "monetary_value": np.where(x > 0, rng.gamma(5, 4, 300), 0.0)})
    >>> v.model in AUTO_CANDIDATES, sorted(v.candidates)
    (True, ['mbgnbd', 'pnbd'])
    """
    if spend_model not in SPEND_MODELS:
        raise ConfigError(
            f"unknown spend model {spend_model!r}", fix=f"use one of: {', '.join(SPEND_MODELS)}"
        )
    names = list(AUTO_CANDIDATES) if model == "auto" else [model]
    classes = {name: _model_class(name) for name in names}
    x, t_x, big_t = calibration["frequency"], calibration["recency"], calibration["T"]
    if histories is None:
        histories = Histories.of(x, t_x, big_t)
    notes: list[str] = []
    # The spend model is fitted on a worker thread meanwhile: both fits spend their time
    # in numpy loops, which release the GIL. Each is computed by the same code as on one
    # thread; its notes keep their place among the others.
    spend_notes: list[str] = []
    with ThreadPoolExecutor(max_workers=1) as worker:
        spend_job = (
            worker.submit(
                contextvars.copy_context().run,
                _fit_spend,
                x,
                calibration["monetary_value"],
                spend_notes,
            )
            if spend_model == "gamma-gamma"
            else None
        )
        candidates = _fit_transactions(classes, histories, time_unit, notes)
        spend_fit = spend_job.result() if spend_job is not None else None
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
                histories=histories,
            )
    # auto chooses among the well-identified fits (no parameter at a boundary, finite
    # intervals) when there are any: a degenerate fit can have the better likelihood.
    sound = [n for n in candidates if not fit_warnings(n, candidates[n])]
    pool = sound or list(candidates)
    if model != "auto":
        chosen, selection = model, f"{model}: asked for"
    elif reports:
        chosen = choose_model({n: reports[n] for n in pool})
        selection = "auto: smallest per-customer holdout MAE among " + ", ".join(pool)
    else:
        chosen = max(pool, key=lambda n: candidates[n].loglik_)
        selection = (
            "auto: largest in-sample log-likelihood (= smallest BIC, same parameter count) "
            "among " + ", ".join(pool) + " (no holdout)"
        )
    if len(pool) < len(candidates):
        selection += "; left out as degenerate: " + ", ".join(sorted(set(candidates) - set(pool)))
    notes.extend(fit_warnings(chosen, candidates[chosen], reports.get(chosen)))
    spend, spend_excluded = None, 0
    if spend_fit is not None:
        spend, spend_excluded, note = spend_fit
        notes.extend(spend_notes)
        if note:
            notes.append(note)
        if spend is not None:
            notes.extend(fit_warnings("gamma-gamma", spend))
    return Valuation(
        chosen,
        candidates[chosen],
        spend,
        time_unit,
        candidates,
        reports,
        None,
        spend_excluded,
        notes,
        selection,
    )


def _fit_transactions(
    classes: dict[str, Any], histories: Histories, time_unit: TimeUnit | None, notes: list[str]
) -> dict[str, Any]:
    """Each transaction model fitted on the distinct histories; a failed one is left out
    of the choice (noted) unless it was the only one asked for."""
    from segvalue.errors import ConvergenceError

    candidates: dict[str, Any] = {}
    for name, cls in classes.items():
        fit = functools.partial(
            cls().fit, *histories.columns, weights=histories.counts, time_unit=time_unit
        )
        try:
            candidates[name] = _collecting(fit, notes)
        except ConvergenceError as exc:
            if len(classes) == 1:
                raise
            notes.append(f"{name} left out of the choice: {exc.message}")
    if not candidates:
        raise ConvergenceError(
            f"no transaction model could be fitted ({'; '.join(notes)})",
            fix="check that the data have enough repeat customers (clv.model, clv.holdout)",
        )
    return candidates


def _fit_spend(x: FloatArray, m: FloatArray, notes: list[str]) -> tuple[Any, int, str]:
    """Gamma-Gamma on the repeat customers, or None and why when it cannot be fitted."""
    from segvalue.errors import ConvergenceError
    from segvalue.models.gamma_gamma import GammaGammaModel

    # Repeat customers whose repeat purchases were all free (amount 0) carry no
    # information on spend and are outside the Gamma-Gamma support (m > 0).
    usable = (x > 0) & (m > 0)
    if int(usable.sum()) < 2:
        raise DataValidationError(
            "the spend model needs repeat customers with a positive mean spend, "
            f"and there are {int(usable.sum())}",
            fix="set clv.spend_model: none (`spend_model='none'`), or more history",
        )
    excluded = int(np.sum((x > 0) & ~usable))
    fallback = (
        "the Gamma-Gamma spend model could not be fitted ({why}); fell back to "
        "clv.spend_model: none (each customer's observed mean spend); set it to silence this"
    )
    if np.ptp(m[usable]) <= 1e-9 * float(np.max(m[usable])):
        # Every mean spend the same: no spread between customers to learn (q -> infinity).
        return None, excluded, fallback.format(why="every customer's mean spend is the same")
    try:
        fitted = _collecting(lambda: GammaGammaModel().fit(x[usable], m[usable]), notes)
        return fitted, excluded, ""
    except ConvergenceError as exc:
        return None, excluded, fallback.format(why=exc.message)


@_one_blas_thread
def score_customers(
    valuation: Valuation,
    features: dict[str, FloatArray],
    *,
    horizon: int,
    discount_rate: float,
    margin: float = 1.0,
    intervals: bool = True,
    histories: Histories | None = None,
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
    histories
        ``Histories.of`` the features' frequency, recency and T, when the caller has it
        already (computed otherwise): the transaction model scores each distinct history
        once.

    Returns
    -------
    dict of str to numpy.ndarray
        ``probability_alive``, ``churn_risk``, ``expected_purchases``,
        ``expected_spend``, ``clv``, ``clv_lower``, ``clv_upper``.
    """
    t = valuation.transactions
    x, t_x, big_t = features["frequency"], features["recency"], features["T"]
    if histories is None:
        histories = Histories.of(x, t_x, big_t)
    # Rounding may put P(alive) a hair outside [0, 1] ("-0.0 %" churn): clip.
    alive = histories.per_customer(
        np.clip(np.asarray(t.probability_alive(*histories.columns), dtype=np.float64), 0.0, 1.0)
    )
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
        histories=histories,
    )
    lower, upper = value.lower, value.upper
    unavailable = int(np.sum(np.isnan(lower) & np.isfinite(value.clv))) if intervals else 0
    if unavailable:
        valuation.warnings.append(
            f"CLV intervals unavailable for {unavailable:,} customers (the parameter "
            "uncertainty is not finite or spans more than "
            f"{MAX_INTERVAL_RATIO:.0e}): clv_lower / clv_upper are null there"
        )
    return {
        "probability_alive": alive,
        "churn_risk": 1.0 - alive,
        "expected_purchases": histories.per_customer(
            t.expected_purchases(*histories.columns, horizon=float(horizon))
        ),
        "expected_spend": value.expected_spend,
        "clv": value.clv,
        "clv_lower": lower,
        "clv_upper": upper,
    }
