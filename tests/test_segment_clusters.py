"""Clusters: planted personas recovered, engine assignment, transforms, density, stability."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from segvalue.config import ClusterConfig
from segvalue.data.demo import generate_demo
from segvalue.errors import ConfigError, DataValidationError
from segvalue.features.customer import customer_features
from segvalue.features.materialise import to_numpy
from segvalue.segments.clusters import (
    ClusterModel,
    _gap_choice,
    _largest_remainder,
    assign_clusters,
    choose_elbow,
    fit_clusters,
    sample_customers,
)

PLANTED_PERSONAS = 6  # src/segvalue/data/demo.py::_PERSONAS


# --------------------------------------------------------------------------- demo data


@dataclass
class Demo:
    features: ir.Table
    persona: dict[str, int]
    config: ClusterConfig


def _demo(n: int, seed: int, **overrides: Any) -> Demo:
    """Features an analyst would cluster the demo retailer on.

    Demographics (age, income, household size), spend (order value, number of orders),
    category mix (share of spend per category), channel mix (touches per channel) and
    price sensitivity (share of orders with a discount); money and counts on log1p.
    """
    demo = generate_demo(n, seed=seed)
    tables = {
        name: ibis.memtable(demo.tables[name])
        for name in ("customers", "orders", "order_lines", "touchpoints")
    }
    features = customer_features(tables, as_of=demo.as_of)
    customers = tables["customers"].select("customer_id", "age", "income", "household_size")
    orders = tables["orders"]
    purchases = orders.filter(orders.amount > 0)
    discount = purchases.group_by("customer_id").agg(
        discount_share=(purchases.discount.fill_null(0) > 0).mean()
    )
    features = features.join(customers, "customer_id").left_join(discount, "customer_id")
    features = features.drop("customer_id_right")
    con = ibis.duckdb.connect()
    table = con.create_table("features", features.to_pyarrow())
    shares = [c for c in table.columns if c.startswith("share_")]
    touches = [c for c in table.columns if c.startswith("touches_")]
    names = ["age", "income", "household_size", "average_order_value", "orders"]
    names += [*shares, *touches, "discount_share"]
    logged = ["income", "average_order_value", "orders", *touches]
    config = ClusterConfig(
        type="cluster",
        name="behaviour",
        features=names,
        transform=dict.fromkeys(logged, "log1p"),
        k="auto",
        k_range=(2, 10),
        seed=0,
        **overrides,
    )
    truth = demo.truth["customers"]
    persona = dict(
        zip(truth["customer_id"].to_pylist(), truth["persona_id"].to_pylist(), strict=True)
    )
    return Demo(table, persona, config)


def _segments(features: ir.Table, model: ClusterModel) -> dict[str, str]:
    rows = assign_clusters(features, model).to_pyarrow()
    ids, segments = rows["customer_id"].to_pylist(), rows["segment"].to_pylist()
    assert len(ids) == len(set(ids)), "a customer appears twice"
    return dict(zip(ids, segments, strict=True))


@pytest.fixture(scope="module")
def demo() -> Demo:
    return _demo(4_000, seed=1)


@pytest.fixture(scope="module")
def demo_model(demo: Demo) -> ClusterModel:
    return fit_clusters(demo.features, demo.config)


# --------------------------------------------------------------------------- acceptance


def _assert_personas_recovered(demo: Demo, model: ClusterModel) -> float:
    assert model.k == PLANTED_PERSONAS
    assert model.k_selection is not None
    assert model.k_selection.rule == "max_silhouette"
    # Every k of the range is reported, and the chosen k is the silhouette maximum.
    assert sorted(model.curves) == list(range(2, 11))
    silhouettes = {k: row["silhouette"] for k, row in model.curves.items()}
    assert max(silhouettes, key=lambda k: silhouettes[k] or -1.0) == PLANTED_PERSONAS
    inertia = [model.curves[k]["inertia"] for k in range(2, 11)]
    assert all(a > b for a, b in itertools.pairwise(inertia))
    assert all(model.curves[k]["gap"] is not None for k in model.curves)
    segments = _segments(demo.features, model)
    assert len(segments) == len(demo.persona)  # every customer, once
    assert set(segments.values()) == set(model.segments)
    ids = sorted(segments)
    ari = adjusted_rand_score([demo.persona[i] for i in ids], [segments[i] for i in ids])
    assert ari >= 0.8
    return float(ari)


def test_auto_k_recovers_the_planted_personas(demo: Demo, demo_model: ClusterModel) -> None:
    # Measured on this data: silhouette 0.249 at k=6 (next best 0.233 at k=7), ARI 0.90.
    _assert_personas_recovered(demo, demo_model)
    assert demo_model.sample_size == demo_model.n_customers == 4_000
    assert demo_model.imputed["income"] == 111  # income is missing for ~3 % of customers
    assert sum(demo_model.imputed.values()) == 111
    stability = demo_model.stability
    assert stability is not None and stability.resamples == 10
    assert stability.ari_mean > 0.95
    assert stability.unstable == ()


def test_personas_recovered_from_a_sample_of_the_base() -> None:
    # Fit on 3,000 of 4,000 customers; the engine assigns all 4,000.
    demo = _demo(4_000, seed=3, sample_size=3_000, stability_resamples=0)
    model = fit_clusters(demo.features, demo.config)
    assert model.sample_size == 3_000 and model.n_customers == 4_000
    assert model.stability is None
    _assert_personas_recovered(demo, model)


def test_engine_assignment_equals_sklearn_predict(demo: Demo, demo_model: ClusterModel) -> None:
    model = demo_model
    sample = sample_customers(demo.features, 2_000, seed=5)
    arrays = to_numpy(sample.select("customer_id", *model.features))
    z = model.transform(arrays)
    predicted = model.estimator.predict(z)
    expected = [model.segments[model.estimator_order[label]] for label in predicted]
    engine = _segments(demo.features, model)
    got = [engine[i] for i in arrays["customer_id"]]
    assert got == expected
    assert model.predict(arrays).tolist() == expected
    # The training labels themselves: the engine agrees with every one.
    assert model.sample_agreement == 1.0


def test_model_is_json_and_reloads(demo: Demo, demo_model: ClusterModel) -> None:
    doc = json.loads(json.dumps(demo_model.to_dict()))
    assert doc["k"] == 6 and doc["features"][0] == "age"
    assert set(doc["curves"]) == {str(k) for k in range(2, 11)}
    again = ClusterModel.from_dict(doc)
    assert again.to_dict() == demo_model.to_dict()
    assert _segments(demo.features, again) == _segments(demo.features, demo_model)


# --------------------------------------------------------------------------- transforms


def _table(**columns: Any) -> ir.Table:
    n = len(next(iter(columns.values())))
    return ibis.memtable({"customer_id": [f"c{i:05d}" for i in range(n)], **columns})


def _two_blobs(n: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0.0, 1.0, n // 2), rng.normal(20.0, 1.0, n - n // 2)])
    y = np.concatenate([rng.normal(0.0, 1.0, n // 2), rng.normal(20.0, 1.0, n - n // 2)])
    return {"x": x, "y": y}


def test_log1p_on_negative_values_raises() -> None:
    data = _two_blobs()
    data["y"][17] = -3.5
    config = ClusterConfig(type="cluster", name="value", features=["x", "y"], transform="log1p")
    with pytest.raises(ConfigError) as err:
        fit_clusters(_table(**data), config)
    message = str(err.value)
    assert "cluster scheme 'value'" in message and "feature 'x'" in message
    assert "(min -" in message and "log1p needs values >= 0" in message
    only_y = config.model_copy(update={"transform": {"y": "log1p"}})
    with pytest.raises(ConfigError, match=r"feature 'y' has negative values \(min -3.5\)"):
        fit_clusters(_table(**data), only_y)


def test_robust_scaling_and_median_imputation_by_hand() -> None:
    # x: median 3, quartiles 2 and 4 (numpy's linear interpolation), IQR 2.
    # y: one missing value, imputed by the median of [0, 1, 2, 10] = 1.5; then
    #    [0, 1, 1.5, 2, 10] has median 1.5 and quartiles 1 and 2, IQR 1.
    # z: IQR 0 -> scaled by its standard deviation instead (mean 0.2, sd 0.4).
    x = [1.0, 2.0, 3.0, 4.0, 100.0]
    y = [0.0, 1.0, None, 2.0, 10.0]
    z = [0.0, 0.0, 0.0, 0.0, 1.0]
    config = ClusterConfig(
        type="cluster",
        features=["x", "y", "z"],
        scaling="robust",
        k=2,
        sample_size=100,
        stability_resamples=0,
    )
    model = fit_clusters(_table(x=x, y=y, z=z), config)
    assert model.medians == {"x": 3.0, "y": 1.5, "z": 0.0}
    assert model.imputed == {"x": 0, "y": 1, "z": 0}
    assert model.center == (3.0, 1.5, 0.0)
    assert model.scale == pytest.approx((2.0, 1.0, 0.4), rel=1e-12)
    assert model.scale_fallback == ("z",)
    scaled = model.transform({"x": [7.0], "y": [float("nan")], "z": [1.0]})
    assert scaled.tolist()[0] == pytest.approx([2.0, 0.0, 2.5], rel=1e-12)


def test_standard_scaling_with_log1p_by_hand() -> None:
    # log1p(e - 1) = 1, log1p(e**3 - 1) = 3: mean 2, population sd 1.
    e = float(np.e)
    spend = [e - 1.0, e**3 - 1.0] * 50
    config = ClusterConfig(
        type="cluster",
        features=["spend"],
        transform="log1p",
        k=2,
        sample_size=100,
        stability_resamples=0,
    )
    model = fit_clusters(_table(spend=spend), config)
    assert model.center == pytest.approx((2.0,), rel=1e-12)
    assert model.scale == pytest.approx((1.0,), rel=1e-12)
    assert sorted(model.centroids.ravel().tolist()) == pytest.approx([-1.0, 1.0], abs=1e-12)
    assert model.sample_counts == {"cluster_1": 50, "cluster_2": 50}


def test_configuration_and_data_errors_name_the_feature() -> None:
    table = _table(age=[30.0, 40.0, 50.0] * 40, city=["a", "b", "c"] * 40, flat=[1.0] * 120)
    bad = {
        "agee": (ConfigError, r"feature 'agee' is not a column .*did you mean 'age'"),
        "city": (ConfigError, r"feature 'city' has type string, clustering needs numbers"),
        "flat": (DataValidationError, r"feature 'flat' is constant in the sample"),
    }
    for name, (error, message) in bad.items():
        config = ClusterConfig(type="cluster", features=["age", name], stability_resamples=0)
        with pytest.raises(error, match=message):
            fit_clusters(table, config)
    twice = ClusterConfig(type="cluster", features=["age", "age"])
    with pytest.raises(ConfigError, match="feature 'age' is listed twice"):
        fit_clusters(table, twice)
    too_many = ClusterConfig(type="cluster", features=["age"], k_range=(2, 5))
    with pytest.raises(ConfigError, match=r"only 3 distinct feature vectors .* k = 5"):
        fit_clusters(table, too_many)
    empty = _table(age=pa.array([None] * 50, pa.float64()), other=list(range(50)))
    empty_config = ClusterConfig(type="cluster", features=["other", "age"])
    with pytest.raises(DataValidationError, match="feature 'age' is missing for every customer"):
        fit_clusters(empty, empty_config)
    with pytest.raises(DataValidationError, match="no 'customer_id' column"):
        fit_clusters(table.rename(id="customer_id"), twice)


# --------------------------------------------------------------------------- sampling


def test_stratified_sample_keeps_the_strata_shares_and_is_seeded() -> None:
    n = 1_000
    region = ["north"] * 700 + ["south"] * 200 + [None] * 100
    table = _table(region=region, v=np.arange(n, dtype=float))
    first = sample_customers(table, 100, seed=3, stratify="region").to_pyarrow()
    assert first.num_rows == 100
    counts = Counter(first.column("region").to_pylist())
    assert counts == {"north": 70, "south": 20, None: 10}
    again = sample_customers(table, 100, seed=3, stratify="region").to_pyarrow()
    assert again.column("customer_id").to_pylist() == first.column("customer_id").to_pylist()
    other = sample_customers(table, 100, seed=4, stratify="region").to_pyarrow()
    assert other.column("customer_id").to_pylist() != first.column("customer_id").to_pylist()
    plain = sample_customers(table, 100, seed=3).to_pyarrow().column("customer_id").to_pylist()
    assert len(set(plain)) == 100 and plain == sorted(plain)
    assert sample_customers(table, 5_000).to_pyarrow().num_rows == n
    with pytest.raises(ConfigError, match=r"stratify column 'regoin' .*did you mean 'region'"):
        sample_customers(table, 100, stratify="regoin")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=1_000), min_size=1, max_size=12),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_largest_remainder_quotas(counts: list[int], fraction: float) -> None:
    total = sum(counts)
    size = round(fraction * total)
    quotas = _largest_remainder(np.asarray(counts, dtype=np.int64), size)
    assert int(quotas.sum()) == size
    assert all(0 <= q <= c for q, c in zip(quotas.tolist(), counts, strict=True))
    exact = np.asarray(counts) * size / total
    assert np.all(np.abs(quotas - exact) < 1.0)


# --------------------------------------------------------------------------- k selection


def test_gap_rule_and_elbow_by_hand() -> None:
    # Tibshirani, Walther & Hastie (2001): the smallest k with Gap(k) >= Gap(k+1) - s(k+1).
    gaps = {1: (0.10, 0.02), 2: (0.50, 0.02), 3: (0.80, 0.05), 4: (0.78, 0.05), 5: (0.90, 0.05)}
    assert _gap_choice(gaps) == 3
    assert _gap_choice({2: (0.1, 0.01), 3: (0.2, 0.01), 4: (0.3, 0.01)}) is None
    # Rescaled curve: x = 0, .25, .5, .75, 1; y = 1, .25, .125, .0625, 0; the chord 1 - x
    # lies 0.5 above the curve at k=3, farther than anywhere else.
    assert choose_elbow({2: 17.0, 3: 5.0, 4: 3.0, 5: 2.0, 6: 1.0}) == 3
    assert choose_elbow({2: 3.0, 3: 2.0}) is None


def _blobs(n_per: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.array([(0.0, 0.0), (6.0, 0.0), (0.0, 6.0)])
    label = np.repeat(np.arange(3), n_per)
    points = centers[label] + rng.normal(0.0, 0.4, (3 * n_per, 2))
    # Twelve outliers on a circle of radius 25 around the blobs, far from each other.
    angle = np.linspace(0.0, 2.0 * np.pi, 12, endpoint=False)
    outliers = np.column_stack([3.0 + 25.0 * np.cos(angle), 3.0 + 25.0 * np.sin(angle)])
    points = np.concatenate([points, outliers])
    label = np.concatenate([label, np.full(12, -1)])
    return {"x": points[:, 0], "y": points[:, 1]}, label


@pytest.mark.parametrize("algorithm", ["kmeans", "minibatch_kmeans"])
def test_kmeans_on_blobs_is_stable(algorithm: str) -> None:
    data, label = _blobs(300)
    keep = label >= 0
    table = _table(x=data["x"][keep], y=data["y"][keep])
    config = ClusterConfig(type="cluster", features=["x", "y"], algorithm=algorithm, k_range=(2, 6))
    model = fit_clusters(table, config)
    assert model.k == 3
    assert model.k_selection is not None
    assert (model.k_selection.gap_k, model.k_selection.elbow_k) == (3, 3)
    segments = _segments(table, model)
    ids = sorted(segments)
    assert adjusted_rand_score(label[keep], [segments[i] for i in ids]) == 1.0
    assert model.stability is not None
    assert model.stability.ari_mean == 1.0
    assert min(model.stability.jaccard.values()) == 1.0


def test_stability_is_low_on_uniform_noise() -> None:
    # Uniform noise in 5 dimensions has no clusters: k-means splits it differently on
    # every resample. Measured: mean ARI 0.34, every cluster's Jaccard below 0.6.
    rng = np.random.default_rng(0)
    noise = rng.uniform(size=(1_000, 5))
    table = _table(**{f"v{j}": noise[:, j] for j in range(5)})
    config = ClusterConfig(type="cluster", features=[f"v{j}" for j in range(5)], k_range=(2, 6))
    model = fit_clusters(table, config)
    assert model.stability is not None
    assert model.stability.ari_mean < 0.6
    assert set(model.stability.unstable) == set(model.segments)


# --------------------------------------------------------------------------- density


@pytest.mark.parametrize(
    ("algorithm", "options"),
    [
        ("dbscan", {"eps": 0.5, "min_samples": 5, "sample_size": 1_000}),
        ("hdbscan", {"min_cluster_size": 50, "min_samples": 5}),
    ],
)
def test_density_clusters_find_the_blobs_and_leave_outliers_unassigned(
    algorithm: str, options: dict[str, Any]
) -> None:
    data, label = _blobs(1_000)
    table = _table(**data)
    config = ClusterConfig(
        type="cluster",
        features=["x", "y"],
        scaling="none",
        algorithm=algorithm,
        stability_resamples=3,
        unassigned="no cluster",
        **options,
    )
    model = fit_clusters(table, config)
    assert model.k == 3
    assert model.curves == {} and model.k_selection is None
    assert model.radii is not None and len(model.radii) == 3
    segments = _segments(table, model)
    assert len(segments) == 3_012
    got = np.array([segments[i] for i in sorted(segments)])
    assert set(got[label < 0]) == {"no cluster"}
    assert "no cluster" not in set(got[label >= 0])
    assert adjusted_rand_score(label[label >= 0], got[label >= 0]) == 1.0
    assert model.stability is not None and model.stability.ari_mean > 0.99
    if algorithm == "dbscan":  # fitted on a third: the rest is assigned by the engine
        assert model.sample_size == 1_000
    else:
        assert model.sample_counts["no cluster"] == 12


def test_dbscan_finding_nothing_says_what_to_change() -> None:
    data, _ = _blobs(100)
    config = ClusterConfig(
        type="cluster", features=["x", "y"], algorithm="dbscan", eps=0.001, min_samples=5
    )
    with pytest.raises(ConfigError, match=r"dbscan found no cluster .*Fix: increase 'eps'"):
        fit_clusters(_table(**data), config)


# --------------------------------------------------------------------------- backends


def test_assignment_and_sampling_on_postgres(postgres_url: str) -> None:
    data, label = _blobs(200)
    keep = label >= 0
    arrow = pa.table(
        {
            "customer_id": [f"c{i:05d}" for i in range(int(keep.sum()))],
            "x": data["x"][keep],
            "y": data["y"][keep],
        }
    )
    duck = ibis.memtable(arrow)
    config = ClusterConfig(type="cluster", features=["x", "y"], k_range=(2, 4))
    model = fit_clusters(duck, config)
    con = ibis.connect(postgres_url)
    try:
        table = con.create_table("cluster_features", arrow, overwrite=True)
        assert _segments(table, model) == _segments(duck, model)
        on_pg = fit_clusters(table, config.model_copy(update={"sample_size": 300}))
        assert on_pg.sample_size == 300 and on_pg.k == 3
        sample = sample_customers(table, 100, seed=1).to_pyarrow()
        assert sample.num_rows == 100
    finally:
        con.drop_table("cluster_features", force=True)
        con.disconnect()


@pytest.mark.parametrize("sample", [200, 10_000])
def test_silhouettes_of_every_k_equal_scikit_learns(
    monkeypatch: pytest.MonkeyPatch, sample: int
) -> None:
    """One distance pass for every k gives scikit-learn's silhouette_score for each k.

    With 500 points a sample of 200 exercises scikit-learn's own subsample (the same
    points for every k); 10,000 scores every point. A labeling with noise (-1) and one
    with a singleton cluster take the fallback and the 0-for-singletons rule.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    from segvalue.segments import clusters

    monkeypatch.setattr(clusters, "SILHOUETTE_SAMPLE", sample)
    rng = np.random.default_rng(3)
    z = np.concatenate([rng.normal(c, 0.8, (125, 3)) for c in (0.0, 2.0, 4.0, 6.0)])
    labelings = {
        k: KMeans(n_clusters=k, n_init=1, random_state=0).fit(z).labels_ for k in (2, 3, 5, 8)
    }
    singleton = labelings[3].copy()
    singleton[0] = 7
    labelings[10] = singleton
    noisy = labelings[2].copy()
    noisy[::10] = -1
    labelings[11] = noisy
    shared = clusters._silhouettes(z, labelings, seed=5)
    for key, labels in labelings.items():
        keep = labels >= 0
        size = sample if keep.sum() > sample else None
        expected = silhouette_score(z[keep], labels[keep], sample_size=size, random_state=5)
        assert shared[key] == pytest.approx(expected, rel=1e-12, abs=1e-12), key


def test_fits_on_several_threads_equal_fits_one_after_another() -> None:
    """Independent fits (gap reference sets, bootstrap refits) may run two at a time: each
    on one thread, so the results are exactly those of the serial loop, in order."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    from segvalue.segments.clusters import bootstrap_stability, gap_statistic

    rng = np.random.default_rng(4)
    z = np.concatenate([rng.normal(c, 0.7, (150, 3)) for c in (0.0, 3.0, 6.0)])
    labels = KMeans(3, n_init=3, random_state=0).fit(z).labels_

    def refit(x: np.ndarray) -> np.ndarray:
        return np.asarray(KMeans(3, n_init=3, random_state=0).fit(x).labels_)

    with threadpool_limits(limits=1):
        serial = gap_statistic(z, [2, 3, 4], references=4, seed=1)
        threaded = gap_statistic(z, [2, 3, 4], references=4, seed=1, threads=2)
        assert threaded == serial
        one = bootstrap_stability(z, labels, refit, resamples=4, seed=2)
        two = bootstrap_stability(z, labels, refit, resamples=4, seed=2, threads=2)
        assert two == one
