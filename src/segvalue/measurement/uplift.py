"""Evaluating uplift scores on a randomised test: Qini and uplift curves, their
normalised areas, uplift at k, with bootstrap intervals.

The definitions are scikit-uplift 0.5.1's (``sklift.metrics``), so that numbers agree
across tools:

* Rows sorted by score, highest first; rows with the same score form one step (ties
  grouped). At each step, with n rows so far, n_t of them treated and n_c not, and
  y_t, y_c the responders among them:
  **uplift curve** (y_t / n_t - y_c / n_c) n, **Qini curve** y_t - y_c n_t / n_c (a
  ratio with a zero count taken as 0); both start at (0, 0).
* The **perfect** curves order the rows by what is known after the fact: Qini by
  y t - y (1 - t) (treated responders first, control responders last: negative effects
  kept); uplift by 2 [y = t] + (y if control responders outnumber treated
  non-responders, else t).
* The areas (trapezoids) are **normalised**: (area - baseline) / (perfect area -
  baseline), the baseline being the straight line from (0, 0) to the perfect curve's
  end. 1 is perfect, 0 is random.
* **uplift at k**: among the top ``k`` share of rows by score (ceil(n k)), the treated
  rows' response rate minus the control rows'.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from segvalue.errors import DataValidationError

__all__ = [
    "UPLIFT_METHODS",
    "UpliftModel",
    "evaluate_uplift",
    "fit_uplift",
    "perfect_qini_curve",
    "perfect_uplift_curve",
    "qini_auc_score",
    "qini_curve",
    "targeting_policy",
    "uplift_at_k",
    "uplift_auc_score",
    "uplift_curve",
]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def _arrays(y: Any, score: Any, treatment: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
    y_a = np.asarray(y, dtype=np.float64).ravel()
    s_a = np.asarray(score, dtype=np.float64).ravel()
    t_a = np.asarray(treatment, dtype=np.float64).ravel()
    if not (y_a.size == s_a.size == t_a.size):
        raise DataValidationError(
            f"outcome, score and treatment have {y_a.size}, {s_a.size} and {t_a.size} values",
            fix="give one of each per row",
        )
    for name, values in (("outcome", y_a), ("treatment", t_a)):
        if not np.all((values == 0) | (values == 1)):
            raise DataValidationError(
                f"the {name} must be 0 or 1 (true or false) in every row",
                fix=f"code the {name} as 0 / 1",
                parameter=name,
            )
    if not np.all(np.isfinite(s_a)):
        raise DataValidationError(
            "a score is not a finite number", fix="score every row", parameter="score"
        )
    if t_a.sum() in (0, t_a.size):
        raise DataValidationError(
            "uplift needs treated and control rows; one group is empty",
            fix="evaluate on a randomised test with both groups",
            parameter="treatment",
        )
    return y_a, s_a, t_a


class _Sorted:
    """Rows sorted by score (highest first) and their groups of tied scores, found once;
    the curves' steps then under any row weights (a bootstrap resample's counts: the
    resample's curve is the same points, plus repeats where a group drew no row)."""

    def __init__(self, y: FloatArray, score: FloatArray, t: FloatArray) -> None:
        self.order = np.argsort(score, kind="mergesort")[::-1]
        self.y, self.t = y[self.order], t[self.order]
        ranked = score[self.order]
        self.ends = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]

    def steps(self, weights: FloatArray | None = None) -> tuple[FloatArray, ...]:
        """Cumulative (n, n_t, n_c, y_t, y_c) at each step of tied scores."""
        w = np.ones(self.y.size) if weights is None else weights[self.order]
        wt = w * self.t
        n = np.cumsum(w)[self.ends]
        n_t = np.cumsum(wt)[self.ends]
        y_t = np.cumsum(wt * self.y)[self.ends]
        y_c = np.cumsum((w - wt) * self.y)[self.ends]
        return n, n_t, n - n_t, y_t, y_c


def _steps(y: FloatArray, score: FloatArray, t: FloatArray) -> tuple[FloatArray, ...]:
    """Cumulative (n, n_t, n_c, y_t, y_c) at each step of tied scores, highest first."""
    return _Sorted(y, score, t).steps()


def _qini_points(steps: tuple[FloatArray, ...]) -> tuple[FloatArray, FloatArray]:
    n, n_t, n_c, y_t, y_c = steps
    return _start_at_zero(n, y_t - y_c * _ratio(n_t, n_c))


def _uplift_points(steps: tuple[FloatArray, ...]) -> tuple[FloatArray, FloatArray]:
    n, n_t, n_c, y_t, y_c = steps
    return _start_at_zero(n, (_ratio(y_t, n_t) - _ratio(y_c, n_c)) * n)


def _start_at_zero(x: FloatArray, v: FloatArray) -> tuple[FloatArray, FloatArray]:
    if x.size == 0 or x[0] != 0 or v[0] != 0:
        return np.r_[0.0, x], np.r_[0.0, v]
    return x, v


def _ratio(a: FloatArray, b: FloatArray) -> FloatArray:
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def uplift_curve(y: Any, score: Any, treatment: Any) -> tuple[FloatArray, FloatArray]:
    """The uplift curve's points: rows targeted, (y_t / n_t - y_c / n_c) n."""
    return _uplift_points(_steps(*_arrays(y, score, treatment)))


def qini_curve(y: Any, score: Any, treatment: Any) -> tuple[FloatArray, FloatArray]:
    """The Qini curve's points: rows targeted, y_t - y_c n_t / n_c.

    Examples
    --------
    >>> x, q = qini_curve([1, 0, 1, 0], [0.9, 0.5, 0.4, 0.1], [1, 1, 0, 0])
    >>> x.tolist(), q.tolist()
    ([0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 1.0, -1.0, 0.0])
    """
    return _qini_points(_steps(*_arrays(y, score, treatment)))


def perfect_qini_curve(y: Any, treatment: Any) -> tuple[FloatArray, FloatArray]:
    """The Qini curve of the after-the-fact order (negative effects kept)."""
    y_a = np.asarray(y, dtype=np.float64)
    t_a = np.asarray(treatment, dtype=np.float64)
    return qini_curve(y_a, y_a * t_a - y_a * (1 - t_a), t_a)


def perfect_uplift_curve(y: Any, treatment: Any) -> tuple[FloatArray, FloatArray]:
    """The uplift curve of the after-the-fact order."""
    y_a = np.asarray(y, dtype=np.float64)
    t_a = np.asarray(treatment, dtype=np.float64)
    return uplift_curve(y_a, _perfect_uplift_score(y_a, t_a, _by_responders(y_a, t_a)), t_a)


def _by_responders(y: FloatArray, t: FloatArray, w: FloatArray | None = None) -> bool:
    """Whether the perfect uplift order puts responders first among equals (more control
    responders than treated non-responders), under row weights ``w``."""
    w = np.ones(y.size) if w is None else w
    return bool(np.sum(w * ((y == 1) & (t == 0))) > np.sum(w * ((y == 0) & (t == 1))))


def _perfect_uplift_score(y: FloatArray, t: FloatArray, by_responders: bool) -> FloatArray:
    return np.asarray(2 * (y == t) + (y if by_responders else t), dtype=np.float64)


def _area(x: FloatArray, v: FloatArray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (v[1:] + v[:-1]) / 2))


def _normalised(
    actual: tuple[FloatArray, FloatArray], perfect: tuple[FloatArray, FloatArray]
) -> float:
    baseline = _area(np.array([0.0, perfect[0][-1]]), np.array([0.0, perfect[1][-1]]))
    best = _area(*perfect) - baseline
    return (_area(*actual) - baseline) / best if best != 0 else math.nan


def qini_auc_score(y: Any, score: Any, treatment: Any) -> float:
    """The normalised area under the Qini curve (scikit-uplift's ``qini_auc_score``
    with ``negative_effect=True``).

    Examples
    --------
    >>> round(qini_auc_score([1, 0, 1, 0], [0.9, 0.5, 0.4, 0.1], [1, 1, 0, 0]), 4)
    0.3333
    """
    return _normalised(qini_curve(y, score, treatment), perfect_qini_curve(y, treatment))


def uplift_auc_score(y: Any, score: Any, treatment: Any) -> float:
    """The normalised area under the uplift curve (scikit-uplift's ``uplift_auc_score``).

    Examples
    --------
    >>> round(uplift_auc_score([1, 0, 1, 0], [0.9, 0.5, 0.4, 0.1], [1, 1, 0, 0]), 4)
    0.1111
    """
    return _normalised(uplift_curve(y, score, treatment), perfect_uplift_curve(y, treatment))


def uplift_at_k(y: Any, score: Any, treatment: Any, k: float = 0.3) -> float:
    """Treated minus control response rate among the top ``k`` share of rows by score
    (scikit-uplift's ``strategy='overall'``); NaN when a group is missing there.

    Examples
    --------
    >>> uplift_at_k([1, 0, 1, 0], [0.9, 0.5, 0.4, 0.1], [1, 1, 0, 0], k=0.75)
    -0.5
    """
    if not 0 < k <= 1:
        raise DataValidationError(f"k {k!r} is not in (0, 1]", fix="e.g. 0.3", parameter="k")
    y_a, s_a, t_a = _arrays(y, score, treatment)
    top = np.argsort(s_a, kind="mergesort")[::-1][: math.ceil(y_a.size * k)]
    treated, control = y_a[top][t_a[top] == 1], y_a[top][t_a[top] == 0]
    if treated.size == 0 or control.size == 0:
        return math.nan
    return float(treated.mean() - control.mean())


def evaluate_uplift(
    y: Any,
    score: Any,
    treatment: Any,
    *,
    at: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5),
    level: float = 0.95,
    resamples: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """Qini and uplift AUC, uplift at each ``at``, and bootstrap (percentile) intervals
    of the two areas: rows resampled within the treated and the control group
    (``resamples`` times, seeded).

    Returns ``{"qini_auc", "uplift_auc", "qini_auc_ci": [lo, hi], "uplift_auc_ci": [lo,
    hi], "uplift_at": {"0.1": ..., ...}, "n", "n_treated"}``; None where a value is
    undefined (a group missing among the top rows, or no perfect ordering better than
    random).
    """
    y_a, s_a, t_a = _arrays(y, score, treatment)
    rng = np.random.default_rng(seed)
    treated, control = np.flatnonzero(t_a == 1), np.flatnonzero(t_a == 0)
    # Each resample as row counts over orders sorted once (the same curves as the
    # resampled rows sorted anew: property-tested).
    model = _Sorted(y_a, s_a, t_a)
    perfect_qini = _Sorted(y_a, y_a * t_a - y_a * (1 - t_a), t_a)
    perfect_uplift = {
        flag: _Sorted(y_a, _perfect_uplift_score(y_a, t_a, flag), t_a) for flag in (True, False)
    }
    draws = np.empty((resamples, 2))
    for b in range(resamples):
        rows = np.r_[rng.choice(treated, treated.size), rng.choice(control, control.size)]
        w = np.bincount(rows, minlength=y_a.size).astype(np.float64)
        draws[b] = (
            _normalised(_qini_points(model.steps(w)), _qini_points(perfect_qini.steps(w))),
            _normalised(
                _uplift_points(model.steps(w)),
                _uplift_points(perfect_uplift[_by_responders(y_a, t_a, w)].steps(w)),
            ),
        )
    tail = (1 - level) / 2 * 100

    def interval(column: int) -> list[float]:
        finite = draws[np.isfinite(draws[:, column]), column]
        if finite.size == 0:
            return [math.nan, math.nan]
        return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]

    def known(value: float) -> float | None:  # undefined (NaN) as None: strict JSON
        return value if math.isfinite(value) else None

    return {
        "qini_auc": known(qini_auc_score(y_a, s_a, t_a)),
        "uplift_auc": known(uplift_auc_score(y_a, s_a, t_a)),
        "qini_auc_ci": [known(v) for v in interval(0)],
        "uplift_auc_ci": [known(v) for v in interval(1)],
        "uplift_at": {f"{k:g}": known(uplift_at_k(y_a, s_a, t_a, k)) for k in at},
        "n": int(y_a.size),
        "n_treated": int(treated.size),
    }


# ---------------------------------------------------------------------------- models
#: The uplift models :func:`fit_uplift` fits.
UPLIFT_METHODS = ("x-learner", "two-model")
#: The boosted trees' settings: shallow, with large leaves (an effect is a small
#: difference of two noisy probabilities), early stopping on a seeded tenth.
_BOOSTING: dict[str, Any] = {
    "max_iter": 200,
    "learning_rate": 0.05,
    "max_leaf_nodes": 8,
    "min_samples_leaf": 50,
    "early_stopping": True,
}


class UpliftModel:
    """A fitted uplift model: ``predict(features)`` gives each row's estimated effect of
    the treatment on the probability of responding.

    * ``two-model``: a gradient-boosted classifier per group; the effect is the
      difference of their probabilities.
    * ``x-learner`` (Kunzel, Sekhon, Bickel and Yu 2019, "Metalearners for estimating
      heterogeneous treatment effects using machine learning", PNAS 116(10)): the two
      classifiers, then each group's imputed effects (a treated row's outcome minus the
      control model's prediction, the treated model's prediction minus a control row's
      outcome) regressed on the features, the two effect models weighted by the share
      treated (a randomised test: the propensity is that share).

    Gradient boosting is scikit-learn's ``HistGradientBoosting``, seeded.
    """

    def __init__(self, method: str, parts: dict[str, Any], share_treated: float) -> None:
        self.method = method
        self._parts = parts
        self.share_treated_ = share_treated

    def predict(self, features: Any) -> FloatArray:
        """The estimated effect per row (a probability difference, in [-1, 1])."""
        x = np.asarray(features, dtype=np.float64)
        if self.method == "two-model":
            p1 = self._parts["treated"].predict_proba(x)[:, 1]
            p0 = self._parts["control"].predict_proba(x)[:, 1]
            return np.asarray(p1 - p0, dtype=np.float64)
        e = self.share_treated_
        tau0 = self._parts["effect_control"].predict(x)
        tau1 = self._parts["effect_treated"].predict(x)
        return np.asarray(np.clip(e * tau0 + (1 - e) * tau1, -1.0, 1.0), dtype=np.float64)


def fit_uplift(
    features: Any,
    outcome: Any,
    treatment: Any,
    *,
    method: str = "x-learner",
    seed: int = 0,
    categorical: Any = None,
) -> UpliftModel:
    """Fit an uplift model (``x-learner`` or ``two-model``) on a randomised test;
    ``categorical``: which feature columns hold category codes (0, 1, ...).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((2000, 2)); t = rng.integers(0, 2, 2000)
    >>> y = (rng.random(2000) < 0.2 + 0.4 * t * (x[:, 0] > 0.5)).astype(int)
    >>> model = fit_uplift(x, y, t)
    >>> effect = model.predict(x)
    >>> high, low = effect[x[:, 0] > 0.5].mean(), effect[x[:, 0] <= 0.5].mean()
    >>> bool(high > low + 0.2)
    True
    """
    from segvalue.measurement.attribution import one_of

    one_of(method, UPLIFT_METHODS, "uplift method", "method")
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise DataValidationError(
            "uplift models need at least one feature column", fix="name them with `feature`"
        )
    y_a, _, t_a = _arrays(outcome, np.zeros(x.shape[0]), treatment)
    if not np.all(np.isfinite(x)):
        raise DataValidationError(
            "a feature is missing or not a finite number", fix="fill in or drop those rows"
        )
    mask = None if categorical is None else np.asarray(categorical, dtype=bool)
    treated, control = t_a == 1, t_a == 0
    for name, rows in (("treated", treated), ("control", control)):
        if len(set(y_a[rows].tolist())) < 2:
            raise DataValidationError(
                f"the {name} group's outcomes are all the same: nothing to learn",
                fix="evaluate on a test where both groups have responders and non-responders",
            )

    def classifier(rows: Any) -> Any:
        model = HistGradientBoostingClassifier(
            **_BOOSTING, random_state=seed, categorical_features=mask
        )
        return model.fit(x[rows], y_a[rows])

    parts = {"treated": classifier(treated), "control": classifier(control)}
    share = float(treated.mean())
    if method == "x-learner":
        imputed_treated = y_a[treated] - parts["control"].predict_proba(x[treated])[:, 1]
        imputed_control = parts["treated"].predict_proba(x[control])[:, 1] - y_a[control]
        for name, rows, target in (
            ("effect_treated", treated, imputed_treated),
            ("effect_control", control, imputed_control),
        ):
            regressor = HistGradientBoostingRegressor(
                **_BOOSTING, random_state=seed, categorical_features=mask
            )
            parts[name] = regressor.fit(x[rows], target)
    return UpliftModel(method, parts, share)


def targeting_policy(
    y: Any,
    score: Any,
    treatment: Any,
    *,
    value: float,
    margin: float = 1.0,
    contact_cost: float = 0.0,
) -> dict[str, Any]:
    """Whom to contact to maximise incremental profit, and what that earned on a test.

    The policy contacts a row when its predicted uplift times the profit of a response
    (``value`` x ``margin``) exceeds ``contact_cost``. Measured on the test's rows: for
    the rows it picks, (treated response rate - control response rate) x rows x value x
    margin - rows x cost, beside the same for contacting everyone.

    Examples
    --------
    >>> p = targeting_policy([1, 0, 1, 0, 0, 0], [0.5, 0.5, 0.4, 0.4, 0.0, 0.0],
    ...                      [1, 0, 1, 0, 1, 0], value=10.0, contact_cost=1.0)
    >>> p["share_targeted"], round(p["profit"], 2), round(p["profit_everyone"], 2)
    (0.6667, 36.0, 34.0)
    """
    y_a, s_a, t_a = _arrays(y, score, treatment)
    if value <= 0 or not 0 < margin <= 1 or contact_cost < 0:
        raise DataValidationError(
            "value must be > 0, margin in (0, 1] and the contact cost >= 0",
            fix="e.g. `value=60`, `margin=0.4`, `contact_cost=0.5`",
        )
    threshold = contact_cost / (value * margin)

    def measured(rows: Any) -> float:
        treated, control = y_a[rows & (t_a == 1)], y_a[rows & (t_a == 0)]
        if treated.size == 0 or control.size == 0:
            return 0.0
        n = int(rows.sum())
        gain = (treated.mean() - control.mean()) * n * value * margin
        return float(gain - n * contact_cost)

    picked = s_a > threshold
    return {
        "threshold": threshold,
        "share_targeted": round(float(picked.mean()), 4),
        "profit": measured(picked),
        "profit_everyone": measured(np.ones_like(picked)),
    }
