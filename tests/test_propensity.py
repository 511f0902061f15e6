"""Purchase propensity: one category encoding from fit to scoring, saved with the model.

The trees are exported from scikit-learn and evaluated in numpy; the export must agree
with scikit-learn's own predict_proba (including categorical splits and missing values),
and a model loaded from JSON must predict exactly what the fitted one did.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from segvalue.errors import DataValidationError, NotFittedError
from segvalue.models.propensity import PurchasePropensityModel, encode_categories


def _data(n: int = 3000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=n)
    numeric[rng.random(n) < 0.1] = np.nan
    channel = rng.integers(0, 5, n).astype(float)
    channel[rng.random(n) < 0.05] = np.nan
    logit = 1.5 * np.nan_to_num(numeric) + np.where(channel == 3, 1.5, -0.5)
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return np.column_stack([numeric, channel]), y


@pytest.fixture(scope="module")
def fitted() -> tuple[PurchasePropensityModel, np.ndarray]:
    X, y = _data()
    model = PurchasePropensityModel(max_iter=60).fit(
        X,
        y,
        feature_names=["recency", "channel"],
        categorical=[False, True],
        categories={"channel": ["app", "email", "search", "social", "store"]},
    )
    return model, X


def test_exported_trees_reproduce_scikit_learn(
    fitted: tuple[PurchasePropensityModel, np.ndarray],
) -> None:
    model, X = fitted
    # The exported trees alone (a loaded model), against scikit-learn's own predict_proba.
    from segvalue.models.propensity import quantised

    ours = PurchasePropensityModel.from_dict(model.to_dict()).predict_proba(X)
    # scikit-learn's classifier was fitted on the rounded inputs the model gives it.
    theirs = model.classifier_.predict_proba(quantised(X))[:, 1]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
    # the categorical signal was learned: category 3 ("social") scores higher
    assert ours[X[:, 1] == 3].mean() > ours[X[:, 1] == 1].mean() + 0.2


def test_json_round_trip_predicts_the_same(
    fitted: tuple[PurchasePropensityModel, np.ndarray],
) -> None:
    model, X = fitted
    text = json.dumps(model.to_dict())
    loaded = PurchasePropensityModel.from_dict(json.loads(text))
    assert loaded.categories_ == {"channel": ["app", "email", "search", "social", "store"]}
    assert loaded.feature_names_ == ["recency", "channel"]
    # The fitted model scores through scikit-learn, the loaded one through the exported
    # trees: the same leaves, summed in the same order, give identical probabilities.
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert not hasattr(loaded, "classifier_")  # no scikit-learn object needed to score


def test_one_row_at_a_time_predicts_what_all_rows_at_once_predict(
    fitted: tuple[PurchasePropensityModel, np.ndarray],
) -> None:
    """Few rows (real-time scoring) walk each path in Python, many rows in numpy: the same
    leaves and sums, so identical probabilities, missing values and categories included."""
    model, X = fitted
    loaded = PurchasePropensityModel.from_dict(json.loads(json.dumps(model.to_dict())))
    rows = X[:300].copy()
    rows[::7, 0] = np.nan  # missing numbers
    rows[::11, 1] = np.nan  # missing categories
    rows[5, 1] = 99.0  # a code no one had at fit time
    at_once = loaded.predict_proba(rows)
    one_by_one = np.concatenate([loaded.predict_proba(row[None, :]) for row in rows])
    np.testing.assert_array_equal(one_by_one, at_once)
    np.testing.assert_array_equal(at_once, model.predict_proba(rows))


def test_unknown_category_at_scoring_is_scored_as_missing(
    fitted: tuple[PurchasePropensityModel, np.ndarray],
) -> None:
    model, _ = fitted
    categories = model.categories_["channel"]
    codes = encode_categories(["social", "carrier pigeon", None], categories)
    assert codes[0] == 3 and np.isnan(codes[1]) and np.isnan(codes[2])
    rows = np.column_stack([np.zeros(3), codes])
    p = model.predict_proba(rows)
    assert p[1] == p[2]  # unknown == missing, never another category's code
    assert p[0] != p[1]


def test_codes_do_not_depend_on_order_of_appearance() -> None:
    """Fit-time lists are sorted: the same value has the same code in any row order."""
    categories = sorted({"b", "a", "c"})
    first = encode_categories(["c", "a", "b"], categories)
    second = encode_categories(["a", "b", "c"], categories)
    assert first.tolist() == [2.0, 0.0, 1.0] and second.tolist() == [0.0, 1.0, 2.0]


def test_not_fitted_and_bad_input_are_named() -> None:
    with pytest.raises(NotFittedError, match="PurchasePropensityModel"):
        PurchasePropensityModel().predict_proba(np.zeros((1, 2)))
    with pytest.raises(NotFittedError, match="PurchasePropensityModel"):
        PurchasePropensityModel().to_dict()
    with pytest.raises(DataValidationError, match="not a saved PurchasePropensityModel"):
        PurchasePropensityModel.from_dict({"type": "BetaGeoModel"})


def test_pipeline_matrix_uses_the_fit_time_categories_at_scoring() -> None:
    """Scoring data where a new category appears first: codes keep their fit-time meaning
    (by first appearance, "new" would have taken code 0 and shifted every other)."""
    import pyarrow as pa

    from segvalue.pipeline import _feature_matrix

    fit_table = pa.table(
        {"customer_id": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "region": ["west", "east", "west"]}
    )
    _, names, kinds, categories = _feature_matrix(fit_table, None)
    assert names == ["x", "region"] and kinds == [False, True]
    assert categories == {"region": ["east", "west"]}
    score_table = pa.table(
        {"customer_id": ["d", "e", "f"], "x": [1.0, 1.0, 1.0], "region": ["north", "west", "east"]}
    )
    matrix, names_now, _, _ = _feature_matrix(score_table, None, names, categories)
    assert names_now == names
    assert np.isnan(matrix[0, 1]) and matrix[1, 1] == 1.0 and matrix[2, 1] == 0.0


def test_float_noise_in_the_features_does_not_move_the_scores() -> None:
    """Two runs on the same data may sum a feature in another order (its last bit differs):
    the classifier's inputs are rounded to 12 significant digits, so it fits the same
    trees and gives the same scores. Without the rounding, values one bit apart are new
    distinct values, the bin edges move and so do the scores."""
    from segvalue.models.propensity import PurchasePropensityModel

    rng = np.random.default_rng(7)
    prices = np.round(rng.uniform(5, 60, 40), 2)
    X = np.column_stack(
        [rng.choice(prices, (3000, 3)).sum(axis=1), rng.integers(1, 9, 3000).astype(float)]
    )
    y = rng.random(3000) < 1 / (1 + np.exp(-(X[:, 0] - 95.0) / 15 - (X[:, 1] - 4) / 2))
    noisy = X.copy()
    moved = rng.random(3000) < 0.3  # as a parallel sum in another order would
    noisy[moved, 0] = np.nextafter(noisy[moved, 0], np.inf)
    names = ["revenue", "orders"]
    first = PurchasePropensityModel(max_iter=60).fit(X, y, feature_names=names)
    second = PurchasePropensityModel(max_iter=60).fit(noisy, y, feature_names=names)
    assert np.array_equal(first.predict_proba(X), second.predict_proba(noisy))
