"""Purchase propensity with covariates: P(buys within the horizon) by gradient boosting.

BTYD models use only (x, t_x, T). Demographics, categories and channel engagement carry
more signal; a gradient-boosted classifier on them is evaluated on held-out customers
against the BTYD probability of at least one purchase as the baseline, by AUC, Brier
score and a calibration table. Arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from segvalue.errors import DataValidationError, NotFittedError

__all__ = ["PropensityEvaluation", "PurchasePropensityModel", "evaluate_propensity"]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


class PurchasePropensityModel:
    """Gradient-boosted classifier of "buys within the horizon".

    Parameters
    ----------
    max_iter, learning_rate, max_leaf_nodes, l2_regularization
        Passed to scikit-learn's ``HistGradientBoostingClassifier`` (missing values are
        handled natively).
    random_state
        Seed of the early-stopping split.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 2))
    >>> y = rng.random(2000) < 1 / (1 + np.exp(-2 * X[:, 0]))
    >>> m = PurchasePropensityModel(max_iter=50).fit(X, y, feature_names=["a", "b"])
    >>> bool(m.predict_proba(np.array([[2.0, 0.0]]))[0] > 0.8)
    True
    """

    def __init__(
        self,
        *,
        max_iter: int = 200,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        l2_regularization: float = 1.0,
        random_state: int = 0,
    ) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.l2_regularization = l2_regularization
        self.random_state = random_state

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        feature_names: list[str],
        categorical: list[bool] | None = None,
    ) -> Self:
        """Fit on a feature matrix and 0/1 labels.

        Parameters
        ----------
        X
            (n, k) numeric matrix; categorical columns hold integer codes; NaN = missing.
        y
            Whether each customer bought within the horizon.
        feature_names
            Names of the k columns.
        categorical
            Which columns are categorical codes.

        Returns
        -------
        self
        """
        from sklearn.ensemble import HistGradientBoostingClassifier

        matrix = np.asarray(X, dtype=np.float64)
        labels = np.asarray(y, dtype=bool).ravel()
        if matrix.ndim != 2 or matrix.shape[0] != labels.size:
            raise DataValidationError(
                f"X has shape {matrix.shape} for {labels.size} labels",
                fix="pass one feature row per customer",
            )
        if matrix.shape[1] != len(feature_names):
            raise DataValidationError(
                f"{matrix.shape[1]} columns but {len(feature_names)} feature names",
                fix="name every column",
            )
        if labels.all() or not labels.any():
            raise DataValidationError(
                "every customer has the same label: nothing to learn",
                fix="use a longer holdout window or more customers",
            )
        self.classifier_ = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            l2_regularization=self.l2_regularization,
            categorical_features=np.asarray(categorical, dtype=bool) if categorical else None,
            early_stopping=True,
            random_state=self.random_state,
        ).fit(matrix, labels)
        self.feature_names_ = list(feature_names)
        self.n_customers_ = int(labels.size)
        self.base_rate_ = float(labels.mean())
        return self

    def predict_proba(self, X: Any) -> FloatArray:
        """P(buys within the horizon) per row of ``X``."""
        if not hasattr(self, "classifier_"):
            raise NotFittedError(
                "This PurchasePropensityModel instance is not fitted yet", fix="call fit first"
            )
        matrix = np.asarray(X, dtype=np.float64)
        return np.asarray(self.classifier_.predict_proba(matrix)[:, 1], dtype=np.float64)


@dataclass(frozen=True)
class PropensityEvaluation:
    """Held-out quality of one score: AUC, Brier score and a calibration table."""

    auc: float
    brier: float
    calibration: list[dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"auc": self.auc, "brier": self.brier, "calibration": self.calibration}


def evaluate_propensity(y_true: Any, score: Any, *, bins: int = 10) -> PropensityEvaluation:
    """AUC, Brier score and a calibration table (equal-count bins) of a probability score.

    Examples
    --------
    >>> ev = evaluate_propensity([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9], bins=2)
    >>> ev.auc, round(ev.brier, 4), [b["observed"] for b in ev.calibration]
    (1.0, 0.0375, [0.0, 1.0])
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(score, dtype=np.float64).ravel()
    if y.size != p.size or y.size == 0:
        raise DataValidationError(
            f"{y.size} labels for {p.size} scores", fix="pass one score per label"
        )
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < y.size else float("nan")
    order = np.argsort(p, kind="stable")
    table = []
    for chunk in np.array_split(order, min(bins, y.size)):
        if chunk.size:
            table.append(
                {
                    "customers": float(chunk.size),
                    "predicted": float(p[chunk].mean()),
                    "observed": float(y[chunk].mean()),
                }
            )
    return PropensityEvaluation(auc, float(np.mean((p - y) ** 2)), table)
