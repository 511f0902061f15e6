"""The estimator contract shared by every model (scikit-learn style, see STYLE.md).

* ``__init__`` takes keyword-only hyperparameters and only stores them.
* ``fit`` validates, compresses the data to unique rows with counts, maximises the
  likelihood on log-parameters and stores ``params_``, ``covariance_``, ``stderr_``,
  ``confidence_intervals_``, ``loglik_``, ``n_customers_``, ``converged_``; returns self.
* Predictions before ``fit`` raise :class:`~segvalue.errors.NotFittedError`.
* Models serialise as JSON data (:meth:`MLEModel.to_json`), never as pickles.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar, Self

import numpy as np

from segvalue.errors import DataValidationError, NotFittedError
from segvalue.models._fit import (
    FitResult,
    compress_rows,
    fit_log_params,
    log_wald_intervals,
    unique_rows,
)
from segvalue.units import TimeUnit, parse_time_unit

__all__ = [
    "MODEL_TYPES",
    "BTYDModel",
    "Histories",
    "MLEModel",
    "check_rfm",
    "model_from_json",
]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

_MODEL_MODULES = ("bgnbd", "pareto_nbd", "bgbb", "gamma_gamma", "sbg")

#: Every concrete model class by name, for :func:`model_from_json`.
MODEL_TYPES: dict[str, type[MLEModel]] = {}


def _versions() -> dict[str, str]:
    out = {}
    for package in ("segvalue", "numpy", "scipy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "unknown"
    return out


class MLEModel:
    """Base class: maximum likelihood on log-parameters over compressed data.

    Subclasses set ``param_names`` and implement ``_negative_loglik`` (the weighted
    total and its exact gradient with respect to the log-parameters) and ``_initial``.
    """

    param_names: ClassVar[tuple[str, ...]] = ()
    model_name: ClassVar[str] = ""
    #: Whether ``_negative_loglik_hessian`` is implemented (then Newton is tried first).
    _exact_hessian: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.param_names:
            MODEL_TYPES[cls.__name__] = cls

    def __init__(self, *, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    # --- hooks -------------------------------------------------------------------------
    def _prepare(self, data: dict[str, FloatArray]) -> Any:
        """What the objective reads: the compressed data, or structures derived from it once."""
        return data

    def _negative_loglik(self, log_params: FloatArray, data: Any) -> tuple[float, FloatArray]:
        raise NotImplementedError

    def _negative_loglik_hessian(
        self, log_params: FloatArray, data: Any
    ) -> tuple[float, FloatArray, FloatArray]:
        """Value, gradient and exact Hessian in the log-parameters (``_exact_hessian``)."""
        raise NotImplementedError

    def _initial(self, data: dict[str, FloatArray]) -> FloatArray:
        return np.zeros(len(self.param_names))

    # --- fitting -----------------------------------------------------------------------
    def _objectives(self, data: dict[str, FloatArray]) -> tuple[Any, Any]:
        """The penalised objective and, when the model has one, its exact-Hessian version."""
        penalizer = float(self.penalizer)
        prepared = self._prepare(data)

        def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
            value, grad = self._negative_loglik(log_params, prepared)
            if penalizer:
                theta2 = np.exp(2 * log_params)
                value += penalizer * float(theta2.sum())
                grad = grad + 2 * penalizer * theta2
            return value, grad

        def with_hessian(log_params: FloatArray) -> tuple[float, FloatArray, FloatArray]:
            value, grad, hess = self._negative_loglik_hessian(log_params, prepared)
            if penalizer:
                theta2 = np.exp(2 * log_params)
                value += penalizer * float(theta2.sum())
                grad = grad + 2 * penalizer * theta2
                hess = hess + np.diag(4 * penalizer * theta2)
            return value, grad, hess

        return objective, (with_hessian if self._exact_hessian else None)

    def _fit_data(self, data: dict[str, FloatArray], time_unit: TimeUnit | None) -> Self:
        if self.penalizer < 0:
            raise DataValidationError(
                f"{type(self).__name__}: penalizer {self.penalizer} is negative",
                fix="use 0 (none) or a small positive value such as 0.001",
            )
        n_customers = float(data["weights"].sum())
        objective, hessian = self._objectives(data)
        result = fit_log_params(
            objective,
            self._initial(data),
            model=self.model_name or type(self).__name__,
            scale=n_customers,
            hessian=hessian,
        )
        self._store(result, n_customers, time_unit, _fingerprint(data))
        return self

    def _store(
        self, result: FitResult, n_customers: float, time_unit: TimeUnit | None, fp: str
    ) -> None:
        names = self.param_names
        self.params_ = dict(zip(names, (float(v) for v in result.params), strict=True))
        self.covariance_ = result.covariance
        self.stderr_ = dict(
            zip(names, (float(v) for v in np.sqrt(np.diag(result.covariance))), strict=True)
        )
        bounds = log_wald_intervals(result.params, result.covariance)
        self.confidence_intervals_ = {
            n: (float(lo), float(hi)) for n, (lo, hi) in zip(names, bounds, strict=True)
        }
        self.loglik_ = float(result.loglik)
        self.n_customers_ = round(n_customers)
        self.converged_ = bool(result.converged)
        self.fit_result_ = result
        self.time_unit_ = time_unit
        self.data_fingerprint_ = fp

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet",
                fix="call fit(...) before asking for predictions",
            )

    def with_params(self, values: Any) -> Self:
        """A copy of this fitted model with other parameter values (same order).

        Used to propagate parameter uncertainty: predictions are evaluated at draws from
        the sampling distribution of the estimates.
        """
        self._check_fitted()
        clone = copy.copy(self)
        clone.params_ = dict(
            zip(self.param_names, (float(v) for v in np.asarray(values)), strict=True)
        )
        return clone

    def sample_params(self, n_draws: int, *, seed: int = 0) -> FloatArray:
        """Draws of the parameters from their asymptotic (log-normal) sampling distribution.

        The log-parameters are multivariate normal with the covariance of the MLE (delta
        method from ``covariance_``). Returns an array of shape (n_draws, n_params).
        """
        theta = self._param_array()
        jac_inv = np.diag(1.0 / theta)
        cov_log = jac_inv @ self.covariance_ @ jac_inv
        if not np.all(np.isfinite(cov_log)):
            raise NotFittedError(
                f"{type(self).__name__}: the parameter covariance is not available "
                "(the Hessian was not positive definite)",
                fix="intervals need a well-identified fit: more data or a penalizer",
            )
        rng = np.random.default_rng(seed)
        draws = rng.multivariate_normal(np.log(theta), cov_log, size=n_draws)
        return np.asarray(np.exp(draws))

    def _param_array(self) -> FloatArray:
        self._check_fitted()
        return np.array([self.params_[n] for n in self.param_names])

    def summary(self) -> list[dict[str, float | str]]:
        """One row per parameter: estimate, standard error and 95% interval."""
        self._check_fitted()
        return [
            {
                "parameter": name,
                "estimate": self.params_[name],
                "stderr": self.stderr_[name],
                "lower_95": self.confidence_intervals_[name][0],
                "upper_95": self.confidence_intervals_[name][1],
            }
            for name in self.param_names
        ]

    # --- persistence -------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        """The keyword arguments of ``__init__`` and their values."""
        return {"penalizer": self.penalizer}

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as plain data (type, hyperparameters, parameters, ...)."""
        self._check_fitted()
        return {
            "type": type(self).__name__,
            "hyperparameters": self.hyperparameters(),
            "params": dict(self.params_),
            "stderr": dict(self.stderr_),
            "covariance": np.where(
                np.isfinite(self.covariance_), self.covariance_, np.nan
            ).tolist(),
            "loglik": self.loglik_,
            "n_customers": self.n_customers_,
            "converged": self.converged_,
            "time_unit": self.time_unit_.value if self.time_unit_ else None,
            "versions": _versions(),
            "data_fingerprint": self.data_fingerprint_,
        }

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict` (NaN written as null)."""
        data = self.to_dict()
        data["covariance"] = [
            [None if not np.isfinite(v) else v for v in row] for row in data["covariance"]
        ]
        return json.dumps(data, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a fitted model from :meth:`to_dict` output."""
        model = cls(**data.get("hyperparameters", {}))
        names = cls.param_names
        params = data["params"]
        missing = [n for n in names if n not in params]
        if missing:
            raise DataValidationError(
                f"{cls.__name__}: saved model lacks parameters {missing}",
                fix="save the model again with to_json()",
            )
        covariance = np.array(
            [[np.nan if v is None else v for v in row] for row in data["covariance"]],
            dtype=np.float64,
        )
        values = np.array([params[n] for n in names], dtype=np.float64)
        result = FitResult(
            params=values,
            covariance=covariance,
            loglik=float(data["loglik"]),
            converged=bool(data.get("converged", True)),
            iterations=0,
            gradient_norm=float("nan"),
            message="loaded",
            method="loaded",
        )
        unit = data.get("time_unit")
        model._store(
            result,
            float(data["n_customers"]),
            parse_time_unit(unit) if unit else None,
            str(data.get("data_fingerprint", "")),
        )
        return model


def model_from_json(text: str) -> MLEModel:
    """Rebuild any fitted segvalue model from its JSON.

    Examples
    --------
    >>> model_from_json('{"type": "Nope"}')
    Traceback (most recent call last):
    ...
    segvalue.errors.DataValidationError: unknown model type 'Nope'. Fix: ...
    """
    for module in _MODEL_MODULES:  # register every model class before looking it up
        importlib.import_module(f"segvalue.models.{module}")
    data = json.loads(text)
    kind = data.get("type")
    if kind not in MODEL_TYPES:
        raise DataValidationError(
            f"unknown model type {kind!r}", fix=f"one of: {', '.join(sorted(MODEL_TYPES))}"
        )
    return MODEL_TYPES[kind].from_dict(data)


def _fingerprint(data: dict[str, FloatArray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(data[key], dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def check_rfm(
    frequency: Any, recency: Any, T: Any, weights: Any = None
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray | None]:
    """Validate (frequency, recency, T) arrays, naming the first bad customer row.

    Examples
    --------
    >>> check_rfm([1, 0], [2.0, 0.0], [3.0, 1.0])[0].tolist()
    [1.0, 0.0]
    >>> check_rfm([1], [4.0], [3.0])
    Traceback (most recent call last):
    ...
    segvalue.errors.DataValidationError: row 0: recency 4.0 is greater than T 3.0. Fix: ...
    """
    x = np.asarray(frequency, dtype=np.float64).ravel()
    t_x = np.asarray(recency, dtype=np.float64).ravel()
    big_t = np.asarray(T, dtype=np.float64).ravel()
    if not (x.size == t_x.size == big_t.size):
        raise DataValidationError(
            f"frequency, recency and T have different lengths ({x.size}, {t_x.size}, {big_t.size})",
            fix="pass one value per customer in each",
        )
    if x.size == 0:
        raise DataValidationError("no customers to fit", fix="pass at least one customer")
    w = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    checks = [
        (~np.isfinite(x) | ~np.isfinite(t_x) | ~np.isfinite(big_t), "has a missing value"),
        ((x < 0) | (x != np.round(x)), "frequency {x} is not a whole number >= 0"),
        (t_x < 0, "recency {t} is negative"),
        # T = 0 (first purchase on the last day) is allowed: such a customer's
        # likelihood contribution is 1 and predictions start from the prior.
        (big_t < 0, "T {T} is negative"),
        (t_x > big_t * (1 + 1e-9) + 1e-12, "recency {t} is greater than T {T}"),
        ((x == 0) & (t_x != 0), "recency {t} with frequency 0 (must be 0)"),
    ]
    if w is not None:
        checks.append(((w.size != x.size) | (w < 0) | ~np.isfinite(w), "weight is invalid"))
    for condition, template in checks:
        bad = np.broadcast_to(condition, x.shape)
        if bad.any():
            i = int(np.argmax(bad))
            text = template.format(x=x[i], t=t_x[i], T=big_t[i])
            raise DataValidationError(
                f"row {i}: {text}",
                fix="compute features with segvalue.features.rfm_features (recency <= T)",
            )
    return x, t_x, big_t, w


@dataclass(frozen=True)
class Histories:
    """The distinct (frequency, recency, T) histories of many customers.

    The transaction models see a customer only through her history, and a million
    customers share a few hundred thousand: fit, predict and differentiate once per
    distinct history (``frequency``, ``recency``, ``T``, with ``counts`` customers each),
    and give each customer her history's result with :meth:`per_customer`.

    Examples
    --------
    >>> h = Histories.of([2, 0, 2], [5.0, 0.0, 5.0], [9.0, 4.0, 9.0])
    >>> h.frequency.tolist(), h.counts.tolist(), h.per_customer(np.array([0.1, 0.2])).tolist()
    ([0.0, 2.0], [1.0, 2.0], [0.2, 0.1, 0.2])
    """

    frequency: FloatArray
    recency: FloatArray
    T: FloatArray
    counts: FloatArray
    inverse: np.ndarray[Any, np.dtype[np.intp]]

    @classmethod
    def of(cls, frequency: Any, recency: Any, T: Any) -> Histories:
        """Validate per-customer arrays (:func:`check_rfm`) and find their distinct rows."""
        columns = [np.asarray(v, dtype=np.float64).ravel() for v in (frequency, recency, T)]
        if columns[0].size:  # no customers: nothing to check (a fit refuses them itself)
            columns = list(check_rfm(*columns)[:3])
        rows, inverse = unique_rows(*columns)
        counts = np.bincount(inverse, minlength=rows.shape[0]).astype(np.float64)
        return cls(rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy(), counts, inverse)

    @property
    def columns(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(frequency, recency, T)`` of the distinct histories."""
        return self.frequency, self.recency, self.T

    def per_customer(self, values: Any) -> FloatArray:
        """Values per distinct history, repeated for each customer (in the input order)."""
        return np.asarray(np.asarray(values, dtype=np.float64)[self.inverse])


class BTYDModel(MLEModel):
    """Base of the continuous-time buy-till-you-die models fitted on (x, t_x, T)."""

    def fit(
        self,
        frequency: Any,
        recency: Any,
        T: Any,
        *,
        weights: Any = None,
        time_unit: TimeUnit | str | None = None,
    ) -> Self:
        """Fit by maximum likelihood on the unique (frequency, recency, T) rows.

        Parameters
        ----------
        frequency, recency, T
            Per-customer repeat transactions, time of last purchase and age, in one
            time unit (see :func:`segvalue.features.rfm.rfm_features`).
        weights
            Customers per row when the rows are already unique triples.
        time_unit
            The unit of recency and T, recorded with the model.

        Returns
        -------
        self
        """
        x, t_x, big_t, w = check_rfm(frequency, recency, T, weights)
        ux, ut, uT, counts = compress_rows(x, t_x, big_t, weights=w)
        data = {"x": ux, "t_x": ut, "T": uT, "weights": counts}
        unit = parse_time_unit(time_unit) if time_unit is not None else None
        return self._fit_data(data, unit)
