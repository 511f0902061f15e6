"""Data-driven segments: clusters fitted on a sample, every customer assigned in the engine.

The flow (see ``docs/segments-clusters.md``):

1. :func:`sample_customers` draws a seeded (optionally stratified) sample of at most
   ``sample_size`` customers in the engine; only the sample is pulled into memory.
2. Each feature is imputed (the sample median), optionally ``log1p``-transformed and scaled
   (standard: mean / standard deviation; robust: median / interquartile range), all fitted
   on the sample.
3. k-means (or mini-batch k-means) with automatic k chosen by the maximum silhouette, with
   the elbow (inertia) curve and the gap statistic (Tibshirani, Walther & Hastie 2001)
   reported alongside, all on one seeded subsample of at most ``K_SELECTION_SAMPLE``
   points; the chosen k is then fitted on the whole sample. Or DBSCAN / HDBSCAN.
4. Stability: the clustering is refitted on bootstrap resamples and compared with the
   adjusted Rand index and per-cluster Jaccard similarity (Hennig 2007).
5. :func:`assign_clusters` compiles imputation, transform, scaling and the nearest-centroid
   rule into one Ibis expression, so every customer is assigned in the engine.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.cluster import DBSCAN, HDBSCAN, KMeans, MiniBatchKMeans
from sklearn.metrics import adjusted_rand_score, pairwise_distances_chunked, silhouette_score
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from segvalue.config import ClusterConfig
from segvalue.errors import ConfigError, DataValidationError, did_you_mean
from segvalue.features.materialise import to_arrow, to_numpy

__all__ = [
    "GAP_N_INIT",
    "GAP_REFERENCES",
    "K_SELECTION_SAMPLE",
    "MAX_FIT_THREADS",
    "MAX_STRATA",
    "MINIBATCH_SIZE",
    "N_INIT",
    "SILHOUETTE_SAMPLE",
    "STABILITY_SAMPLE",
    "UNSTABLE_JACCARD",
    "ClusterModel",
    "ClusterStability",
    "KSelection",
    "assign_clusters",
    "bootstrap_stability",
    "choose_elbow",
    "fit_clusters",
    "gap_statistic",
    "sample_customers",
    "start_fit_clusters",
]

FloatArray = NDArray[np.float64]
_T = TypeVar("_T")
_R = TypeVar("_R")
IntArray = NDArray[np.int64]

#: k-means restarts per fit (the best of ``N_INIT`` seeded initialisations is kept).
N_INIT = 10
#: With ``k: auto``, every candidate k is fitted and scored (silhouette, inertia, gap
#: statistic) on a seeded subsample of at most this many points of the fitting sample;
#: only the chosen k is fitted on the whole sample. The curves then cost the same for any
#: sample size (the final fit is the one k-means fit that grows with it).
K_SELECTION_SAMPLE = 5_000
#: Points the silhouette of a fixed k is computed on (a seeded subsample of the sample).
SILHOUETTE_SAMPLE = 10_000
#: Uniform reference sets of the gap statistic.
GAP_REFERENCES = 10
#: k-means restarts for each reference set of the gap statistic. Uniform data has little
#: for a restart to find: on the 20,000-customer demo, one restart instead of three raised
#: the mean log W* of the reference sets by 0.0007-0.0021 for k = 2..10, below the gap's
#: own standard error s_k (0.002-0.0035). The data's W_k come from the N_INIT-restart fits
#: (three restarts left them up to 3.6 % above the optimum there, which moved the gap by
#: up to 0.036).
GAP_N_INIT = 1
#: Points the bootstrap stability is computed on.
STABILITY_SAMPLE = 5_000
#: Clusters whose mean bootstrap Jaccard similarity is below this are flagged unstable
#: (Hennig 2007: below 0.5 a cluster "dissolves", 0.6-0.75 shows a pattern, above 0.75
#: it is stable).
UNSTABLE_JACCARD = 0.6
#: Mini-batch size of ``minibatch_kmeans``.
MINIBATCH_SIZE = 4096
#: Most threads that run independent fits at once (each fit itself on one thread).
MAX_FIT_THREADS = 4
#: A stratum column with more distinct values than this cannot be used for sampling.
MAX_STRATA = 1000

_ID = "customer_id"
_NOISE = -1
Algorithm = Literal["kmeans", "minibatch_kmeans", "dbscan", "hdbscan"]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class KSelection:
    """How k was chosen, and what each criterion would have picked.

    Attributes
    ----------
    rule
        ``"max_silhouette"`` (automatic k) or ``"fixed"`` (``k`` given in the config).
    k
        The k used.
    silhouette_k
        The k with the largest silhouette (the smallest such k on ties).
    gap_k
        Tibshirani's choice: the smallest k with ``Gap(k) >= Gap(k+1) - s(k+1)``; None when
        no k in the range satisfies it (the gap still rises at the top of the range).
    elbow_k
        The point of the inertia curve farthest below the chord joining its ends.
    note
        A sentence on agreement or disagreement between the criteria.
    points
        Sample points every candidate k was fitted and scored on (a seeded subsample of
        at most :data:`K_SELECTION_SAMPLE`); None with a fixed k.
    """

    rule: Literal["max_silhouette", "fixed"]
    k: int
    silhouette_k: int | None
    gap_k: int | None
    elbow_k: int | None
    note: str
    points: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary."""
        return {
            "rule": self.rule,
            "k": self.k,
            "silhouette_k": self.silhouette_k,
            "gap_k": self.gap_k,
            "elbow_k": self.elbow_k,
            "note": self.note,
            "points": self.points,
        }


@dataclass(frozen=True)
class ClusterStability:
    """Bootstrap stability of a clustering (Hennig 2007).

    Attributes
    ----------
    resamples
        Number of bootstrap resamples B.
    points
        Number of points the stability was computed on.
    ari
        Adjusted Rand index between the original labels and the refitted labels on the
        distinct points of each resample (noise counts as one more label).
    ari_mean
        Mean of ``ari``.
    jaccard
        Per segment: mean over resamples of the best Jaccard similarity between the segment
        (restricted to the resample) and any refitted cluster.
    unstable
        Segments with mean Jaccard below :data:`UNSTABLE_JACCARD`.
    """

    resamples: int
    points: int
    ari: tuple[float, ...]
    ari_mean: float
    jaccard: dict[str, float]
    unstable: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary."""
        return {
            "resamples": self.resamples,
            "points": self.points,
            "ari": [_json_float(a) for a in self.ari],
            "ari_mean": _json_float(self.ari_mean),
            "jaccard": {k: _json_float(v) for k, v in self.jaccard.items()},
            "unstable": list(self.unstable),
        }


@dataclass(frozen=True, eq=False)
class ClusterModel:
    """A fitted clustering: everything needed to assign any customer, as plain data.

    Attributes
    ----------
    name
        The scheme name (``ClusterConfig.name``).
    algorithm
        ``kmeans``, ``minibatch_kmeans``, ``dbscan`` or ``hdbscan``.
    features
        Feature columns, in the order of ``centroids``' columns.
    transforms
        Per feature ``"log1p"`` or ``"none"``.
    scaling
        ``standard``, ``robust`` or ``none``.
    medians
        Per feature, the sample median (raw units) that replaces a missing value.
    imputed
        Per feature, how many sample values were missing and imputed.
    center, scale
        Per feature, after the transform: ``z = (x - center) / scale``.
    scale_fallback
        Robust-scaled features whose interquartile range was 0 in the sample and that were
        scaled by their standard deviation instead.
    centroids
        ``(k, n_features)`` cluster centres in scaled units; row ``i`` is ``segments[i]``.
    radii
        Density algorithms only: a customer is assigned to the nearest centroid only within
        this distance of it (scaled units), else to ``unassigned``. None for k-means.
    k
        Number of clusters.
    k_selection
        How k was chosen (k-means only).
    curves
        Per k tried: ``silhouette``, ``inertia``, ``gap`` and ``gap_se`` (k-means only),
        on the ``k_selection.points`` points k was chosen on.
    silhouette
        Silhouette of the clustering at k (noise excluded; for k-means with ``k: auto``
        the value of ``curves[k]``), None if undefined.
    stability
        Bootstrap stability, None when ``stability_resamples`` is 0.
    sample_size
        Customers in the fitting sample.
    n_customers
        Customers in the feature table.
    sample_counts
        Fitted labels in the sample: customers per segment (and ``unassigned`` noise).
    sample_agreement
        Share of the sample whose engine assignment (nearest centroid, within the radius)
        equals its fitted label: 1 for k-means up to ties, lower for density algorithms,
        whose clusters need not be balls.
    seed
        The seed of sampling, initialisation, subsamples and resamples.
    unassigned
        The segment name of customers in no cluster.
    estimator
        The fitted scikit-learn estimator (not serialised; None after :meth:`from_dict`).
    estimator_order
        ``estimator_order[j]`` is the index in ``segments`` of the estimator's label ``j``
        (segments are numbered by decreasing size in the sample).
    """

    name: str
    algorithm: Algorithm
    features: tuple[str, ...]
    transforms: dict[str, str]
    scaling: str
    medians: dict[str, float]
    imputed: dict[str, int]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    scale_fallback: tuple[str, ...]
    centroids: FloatArray
    radii: tuple[float, ...] | None
    k: int
    k_selection: KSelection | None
    curves: dict[int, dict[str, float | None]]
    silhouette: float | None
    stability: ClusterStability | None
    sample_size: int
    n_customers: int
    sample_counts: dict[str, int]
    sample_agreement: float
    seed: int
    unassigned: str
    estimator: Any = field(default=None, repr=False)
    estimator_order: tuple[int, ...] = ()

    @property
    def segments(self) -> tuple[str, ...]:
        """Segment names ``cluster_1`` .. ``cluster_k``, largest (in the sample) first."""
        return tuple(f"cluster_{i + 1}" for i in range(self.k))

    def transform(self, columns: Mapping[str, ArrayLike]) -> FloatArray:
        """Impute, transform and scale raw feature columns into the clustering space.

        Parameters
        ----------
        columns
            One array per feature (more keys are ignored); NaN marks a missing value.

        Returns
        -------
        numpy.ndarray
            ``(n, n_features)`` scaled values.

        Raises
        ------
        ConfigError
            If a feature is missing from ``columns``.
        DataValidationError
            If a ``log1p`` feature has a negative value.

        Examples
        --------
        >>> m = _demo_model()
        >>> m.transform({"spend": [0.0, 10.0]}).round(2)
        array([[-1.],
               [ 1.]])
        """
        raw = _columns_matrix(columns, self.features)
        return _scaled(raw, self.features, self.transforms, self.medians, self.center, self.scale)

    def predict(self, columns: Mapping[str, ArrayLike]) -> NDArray[np.object_]:
        """Segment of each row by the engine's rule (nearest centroid, within the radius).

        Examples
        --------
        >>> _demo_model().predict({"spend": [1.0, 9.0, float("nan")]}).tolist()
        ['cluster_1', 'cluster_2', 'cluster_1']
        """
        index = _nearest(self.transform(columns), self.centroids, self.radii)
        names = np.array([*self.segments, self.unassigned], dtype=object)
        return names[np.where(index < 0, self.k, index)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary of the model (everything but the scikit-learn estimator).

        Examples
        --------
        >>> import json
        >>> d = _demo_model().to_dict()
        >>> d["k"], d["segments"], json.loads(json.dumps(d))["centroids"]
        (2, ['cluster_1', 'cluster_2'], [[-1.0], [1.0]])
        """
        return {
            "type": "clusters",
            "name": self.name,
            "algorithm": self.algorithm,
            "features": list(self.features),
            "transforms": dict(self.transforms),
            "scaling": self.scaling,
            "medians": {k: _json_float(v) for k, v in self.medians.items()},
            "imputed": dict(self.imputed),
            "center": [_json_float(v) for v in self.center],
            "scale": [_json_float(v) for v in self.scale],
            "scale_fallback": list(self.scale_fallback),
            "centroids": [[_json_float(v) for v in row] for row in self.centroids.tolist()],
            "radii": None if self.radii is None else [_json_float(r) for r in self.radii],
            "k": self.k,
            "segments": list(self.segments),
            "k_selection": None if self.k_selection is None else self.k_selection.to_dict(),
            "curves": {
                str(k): {name: _json_float(v) for name, v in row.items()}
                for k, row in self.curves.items()
            },
            "silhouette": _json_float(self.silhouette),
            "stability": None if self.stability is None else self.stability.to_dict(),
            "sample_size": self.sample_size,
            "n_customers": self.n_customers,
            "sample_counts": dict(self.sample_counts),
            "sample_agreement": _json_float(self.sample_agreement),
            "seed": self.seed,
            "unassigned": self.unassigned,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterModel:
        """Rebuild a model from :meth:`to_dict` (without the scikit-learn estimator).

        Examples
        --------
        >>> m = _demo_model()
        >>> again = ClusterModel.from_dict(m.to_dict())
        >>> again.predict({"spend": [9.0]}).tolist(), again.to_dict() == m.to_dict()
        (['cluster_2'], True)
        """
        selection = data.get("k_selection")
        stability = data.get("stability")
        return cls(
            name=data["name"],
            algorithm=data["algorithm"],
            features=tuple(data["features"]),
            transforms=dict(data["transforms"]),
            scaling=data["scaling"],
            medians={k: _from_json(v) for k, v in data["medians"].items()},
            imputed=dict(data["imputed"]),
            center=tuple(_from_json(v) for v in data["center"]),
            scale=tuple(_from_json(v) for v in data["scale"]),
            scale_fallback=tuple(data["scale_fallback"]),
            centroids=np.asarray(data["centroids"], dtype=np.float64).reshape(
                int(data["k"]), len(data["features"])
            ),
            radii=None if data["radii"] is None else tuple(float(r) for r in data["radii"]),
            k=int(data["k"]),
            k_selection=None if selection is None else KSelection(**selection),
            curves={
                int(k): {name: _maybe_float(v) for name, v in row.items()}
                for k, row in data["curves"].items()
            },
            silhouette=_maybe_float(data["silhouette"]),
            stability=None
            if stability is None
            else ClusterStability(
                resamples=int(stability["resamples"]),
                points=int(stability["points"]),
                ari=tuple(_from_json(a) for a in stability["ari"]),
                ari_mean=_from_json(stability["ari_mean"]),
                jaccard={k: _from_json(v) for k, v in stability["jaccard"].items()},
                unstable=tuple(stability["unstable"]),
            ),
            sample_size=int(data["sample_size"]),
            n_customers=int(data["n_customers"]),
            sample_counts={k: int(v) for k, v in data["sample_counts"].items()},
            sample_agreement=float(data["sample_agreement"]),
            seed=int(data["seed"]),
            unassigned=data["unassigned"],
        )


def _json_float(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _from_json(value: Any) -> float:
    return math.nan if value is None else float(value)


# --------------------------------------------------------------------------- sampling


def sample_customers(
    features: ir.Table,
    size: int,
    *,
    seed: int = 0,
    stratify: str | None = None,
) -> ir.Table:
    """A seeded sample of at most ``size`` customers, drawn in the engine.

    Customers are ranked by a hash of ``customer_id`` salted with the seed, and the first
    ``size`` are kept, so the sample is the same on every run with the same seed and data
    (hash functions differ between engines, so the sample differs between engines). With
    ``stratify``, each value of that column (null is a value of its own) gets a quota
    proportional to its size (largest remainders), and the first customers by hash within
    each stratum are kept. A base no larger than ``size`` is returned whole.

    Parameters
    ----------
    features
        One row per customer with a ``customer_id`` column.
    size
        Maximum number of customers.
    seed
        Salt of the hash.
    stratify
        Optional column to stratify by (at most :data:`MAX_STRATA` distinct values).

    Returns
    -------
    ibis.expr.types.Table
        The sampled rows (same columns), ordered by ``customer_id``.

    Raises
    ------
    ConfigError
        If ``stratify`` is not a column or has too many distinct values, or ``size`` < 1.

    Examples
    --------
    >>> import ibis
    >>> t = ibis.memtable({"customer_id": [f"c{i}" for i in range(100)],
    ...                    "region": ["north"] * 80 + ["south"] * 20})
    >>> s = sample_customers(t, 10, seed=1, stratify="region").to_pyarrow()
    >>> s.num_rows, s.column("region").to_pylist().count("south")
    (10, 2)
    """
    if size < 1:
        raise ConfigError(f"sample size must be at least 1, got {size}", fix="use e.g. 50000")
    _require_id(features)
    total = int(to_arrow(features.aggregate(n=features.count())).column("n")[0].as_py())
    return _sample(features, size, seed, stratify, total)


def _sample(features: ir.Table, size: int, seed: int, stratify: str | None, total: int) -> ir.Table:
    if total <= size:
        return features.order_by(_ID)
    key = (features[_ID].cast("string") + f"|{int(seed)}").hash()
    if stratify is None:
        return features.order_by([key, features[_ID]]).limit(size).order_by(_ID)
    if stratify not in features.columns:
        raise ConfigError(
            f"stratify column '{stratify}' is not a column of the feature table"
            f"{did_you_mean(stratify, features.columns)}",
            fix="name a column of the feature table, or drop 'stratify'",
        )
    stratum = features[stratify].cast("string")
    counts = to_arrow(
        features.select(_s=stratum).group_by("_s").agg(_n=ibis._.count()).order_by("_s")
    )
    if counts.num_rows > MAX_STRATA:
        raise ConfigError(
            f"stratify column '{stratify}' has {counts.num_rows} distinct values "
            f"(at most {MAX_STRATA})",
            fix="stratify by a coarser column such as region or a lifecycle stage",
        )
    values = counts.column("_s").to_pylist()
    quotas = _largest_remainder(np.asarray(counts.column("_n").to_pylist(), np.int64), size)
    cases = [
        (stratum.isnull() if v is None else stratum == v, int(q))
        for v, q in zip(values, quotas, strict=True)
    ]
    quota = ibis.cases(*cases, else_=0)
    rank = ibis.row_number().over(group_by=stratum, order_by=[key, features[_ID]])
    ranked = features.mutate(_rank=rank, _quota=quota)
    return ranked.filter(ranked._rank < ranked._quota).drop("_rank", "_quota").order_by(_ID)


def _largest_remainder(counts: IntArray, size: int) -> IntArray:
    """Hamilton's apportionment of ``size`` seats to strata proportional to ``counts``."""
    exact = counts * (size / counts.sum())
    quotas = np.minimum(np.floor(exact).astype(np.int64), counts)
    left = size - int(quotas.sum())
    order = np.argsort(-(exact - quotas), kind="stable")
    for i in order:
        if left <= 0:
            break
        if quotas[i] < counts[i]:
            quotas[i] += 1
            left -= 1
    result: IntArray = quotas
    return result


# --------------------------------------------------------------------------- validation


def _require_id(features: ir.Table) -> None:
    if _ID not in features.columns:
        raise DataValidationError(
            "the feature table has no 'customer_id' column",
            fix="cluster the output of segvalue.features.customer_features",
        )


def _transforms(config: ClusterConfig) -> dict[str, str]:
    if isinstance(config.transform, dict):
        return {f: config.transform.get(f, "none") for f in config.features}
    return dict.fromkeys(config.features, config.transform)


def _check_features(features: ir.Table, names: Sequence[str], scheme: str) -> None:
    _require_id(features)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(
                f"cluster scheme '{scheme}': feature '{name}' is listed twice",
                fix="list each feature once under 'features'",
            )
        seen.add(name)
        if name not in features.columns:
            raise ConfigError(
                f"cluster scheme '{scheme}': feature '{name}' is not a column of the feature "
                f"table{did_you_mean(name, features.columns)}",
                fix="use a column of the customer feature table (see docs/features.md)",
            )
        kind = features[name].type()
        if not (kind.is_numeric() or kind.is_boolean()):
            raise ConfigError(
                f"cluster scheme '{scheme}': feature '{name}' has type {kind}, clustering "
                "needs numbers",
                fix=f"drop '{name}' or turn it into numbers (e.g. an indicator column)",
            )


def _numeric(features: ir.Table, name: str) -> ir.FloatingValue:
    column = features[name]
    if column.type().is_boolean():
        return column.ifelse(1.0, 0.0)
    return column.cast("float64")


def _count_and_check_log1p(features: ir.Table, transforms: Mapping[str, str], scheme: str) -> int:
    """Customers in the table; every ``log1p`` feature must be >= 0 (one engine query)."""
    logged = [f for f, t in transforms.items() if t == "log1p"]
    mins = {f"_min{j}": _numeric(features, f).min() for j, f in enumerate(logged)}
    stats = to_arrow(features.aggregate(_n=features.count(), **mins))
    for j, name in enumerate(logged):
        low = stats.column(f"_min{j}")[0].as_py()
        if low is not None and low < 0:
            raise ConfigError(
                f"cluster scheme '{scheme}': feature '{name}' has negative values "
                f"(min {low:g}); log1p needs values >= 0",
                fix=f"set transform for '{name}' to 'none', or cluster a non-negative version",
            )
    return int(stats.column("_n")[0].as_py())


def _columns_matrix(columns: Mapping[str, ArrayLike], names: Sequence[str]) -> FloatArray:
    missing = [n for n in names if n not in columns]
    if missing:
        raise ConfigError(
            f"feature columns {missing} are missing",
            fix="pass every feature the model was fitted on",
        )
    return np.column_stack([np.asarray(columns[n], dtype=np.float64) for n in names])


# --------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class _Preprocessing:
    medians: dict[str, float]
    imputed: dict[str, int]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    scale_fallback: tuple[str, ...]


def _fit_preprocessing(
    raw: FloatArray,
    names: Sequence[str],
    transforms: Mapping[str, str],
    scaling: str,
    scheme: str,
) -> _Preprocessing:
    """Medians for imputation, then center / scale of the transformed, imputed sample."""
    if np.isinf(raw).any():
        bad = names[int(np.flatnonzero(np.isinf(raw).any(axis=0))[0])]
        raise DataValidationError(
            f"cluster scheme '{scheme}': feature '{bad}' has infinite values",
            fix="clip or recompute the feature so every value is finite",
        )
    missing = np.isnan(raw)
    medians, imputed = {}, {}
    for j, name in enumerate(names):
        if missing[:, j].all():
            raise DataValidationError(
                f"cluster scheme '{scheme}': feature '{name}' is missing for every "
                "customer in the sample",
                fix=f"drop '{name}' from 'features'",
            )
        medians[name] = float(np.median(raw[~missing[:, j], j]))
        imputed[name] = int(missing[:, j].sum())
    values = _transformed(raw, names, transforms, medians)
    fallback = []
    if scaling == "standard":
        center, scale = values.mean(axis=0), values.std(axis=0)
    elif scaling == "robust":
        q25, center, q75 = np.percentile(values, [25.0, 50.0, 75.0], axis=0)
        scale = q75 - q25
        flat = scale <= 0
        fallback = [names[int(j)] for j in np.flatnonzero(flat)]
        scale = np.where(flat, values.std(axis=0), scale)
    else:
        center, scale = np.zeros(len(names)), np.ones(len(names))
    constant = [names[int(j)] for j in np.flatnonzero(~(scale > 0))]
    if constant:
        raise DataValidationError(
            f"cluster scheme '{scheme}': feature '{constant[0]}' is constant in the sample "
            "and cannot be scaled",
            fix=f"drop '{constant[0]}' from 'features'",
        )
    return _Preprocessing(
        medians=medians,
        imputed=imputed,
        center=tuple(float(c) for c in center),
        scale=tuple(float(s) for s in scale),
        scale_fallback=tuple(fallback),
    )


def _transformed(
    raw: FloatArray,
    names: Sequence[str],
    transforms: Mapping[str, str],
    medians: Mapping[str, float],
) -> FloatArray:
    out = np.array(raw, dtype=np.float64, copy=True)
    for j, name in enumerate(names):
        column = out[:, j]
        column[np.isnan(column)] = medians[name]
        if transforms[name] == "log1p":
            if (column < 0).any():
                raise DataValidationError(
                    f"feature '{name}' has negative values (min {column.min():g}); "
                    "log1p needs values >= 0",
                    fix=f"set transform for '{name}' to 'none'",
                )
            out[:, j] = np.log1p(column)
    return out


def _scaled(
    raw: FloatArray,
    names: Sequence[str],
    transforms: Mapping[str, str],
    medians: Mapping[str, float],
    center: Sequence[float],
    scale: Sequence[float],
) -> FloatArray:
    values = _transformed(raw, names, transforms, medians)
    result: FloatArray = (values - np.asarray(center)) / np.asarray(scale)
    return result


# --------------------------------------------------------------------------- k selection


def _kmeans(algorithm: str, k: int, seed: int, n_init: int = N_INIT) -> Any:
    if algorithm == "minibatch_kmeans":
        return MiniBatchKMeans(
            n_clusters=k, n_init=n_init, random_state=seed, batch_size=MINIBATCH_SIZE
        )
    return KMeans(n_clusters=k, n_init=n_init, random_state=seed)


def _subsample(n: int, size: int, rng: np.random.Generator) -> IntArray:
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def _fit_threads() -> int:
    """Threads for independent fits: the cores this process may use, at most MAX_FIT_THREADS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_FIT_THREADS))


def _one_openmp_thread() -> None:
    # OpenMP's thread count is a per-thread setting: each worker sets its own.
    threadpool_limits(limits=1, user_api="openmp")


def _map_fits(fit: Callable[[_T], _R], items: Iterable[_T], threads: int) -> list[_R]:
    """``[fit(item) for item in items]``, up to ``threads`` fits at a time.

    The fits are independent and each runs on one OpenMP thread (k-means releases the
    GIL while it iterates), so the results are those of running them one after another,
    in the same order, on any number of threads.
    """
    work = list(items)
    if threads <= 1 or len(work) <= 1:
        return [fit(item) for item in work]
    with ThreadPoolExecutor(min(threads, len(work)), initializer=_one_openmp_thread) as pool:
        return list(pool.map(fit, work))


def _silhouette(z: FloatArray, labels: NDArray[np.integer], seed: int) -> float | None:
    keep = labels >= 0
    z, labels = z[keep], labels[keep]
    n_labels = np.unique(labels).size
    if n_labels < 2 or n_labels >= labels.size:
        return None
    size = SILHOUETTE_SAMPLE if labels.size > SILHOUETTE_SAMPLE else None
    return float(silhouette_score(z, labels, sample_size=size, random_state=seed))


def _silhouettes(
    z: FloatArray, labelings: Mapping[int, NDArray[np.integer]], seed: int
) -> dict[int, float | None]:
    """:func:`_silhouette` of several labelings of the same points, sharing one distance pass.

    Every labeling is scored on the same sample (scikit-learn draws it from the seed
    alone), so the pairwise distances, the bulk of the work, are computed once in chunks
    and each labeling only sums them per cluster (a matrix product with its one-hot
    membership; all labelings' memberships side by side, so each block of distances is
    read once): the values of ``silhouette_score`` (Rousseeuw 1987) up to rounding.
    Labelings with noise (label -1) or a degenerate sample fall back to ``_silhouette``.
    """
    n = z.shape[0]
    out: dict[int, float | None] = {}
    size = SILHOUETTE_SAMPLE if n > SILHOUETTE_SAMPLE else n
    sample = np.random.RandomState(seed).permutation(n)[:size] if n > size else np.arange(n)
    # Per labeling: cluster codes of the sampled points, their columns in ``onehot``, sizes.
    shared: dict[int, tuple[NDArray[np.integer], slice, NDArray[np.integer]]] = {}
    columns = 0
    for key, labels in labelings.items():
        drawn = labels[sample]
        codes = np.unique(drawn, return_inverse=True)[1].reshape(-1)
        counts = np.bincount(codes)
        whole = np.unique(labels).size
        if (labels < 0).any() or whole < 2 or whole >= labels.size or not 2 <= counts.size < size:
            out[key] = _silhouette(z, labels, seed)
            continue
        shared[key] = (codes, slice(columns, columns + counts.size), counts)
        columns += counts.size
    if not shared:
        return out
    onehot = np.zeros((size, columns))
    for codes, block, _ in shared.values():
        onehot[np.arange(size), block.start + codes] = 1.0
    points = z[sample]
    intra = {key: np.empty(size) for key in shared}
    inter = {key: np.empty(size) for key in shared}
    # Rows of distances a few MB at a time: the full matrix of 10,000 points is 800 MB.
    start = 0
    for chunk in pairwise_distances_chunked(points, working_memory=64):
        rows = slice(start, start + chunk.shape[0])
        start += chunk.shape[0]
        summed = chunk @ onehot  # summed distance of each row to each cluster of each labeling
        here = np.arange(chunk.shape[0])
        for key, (members, block, sizes) in shared.items():
            mean_to = summed[:, block]
            own = members[rows]
            intra[key][rows] = mean_to[here, own]
            mean_to /= sizes
            mean_to[here, own] = np.inf
            inter[key][rows] = mean_to.min(axis=1)
    for key, (members, _, sizes) in shared.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            a = intra[key] / (sizes - 1)[members]
            values = (inter[key] - a) / np.maximum(a, inter[key])
        out[key] = float(np.mean(np.nan_to_num(values)))  # singleton clusters score 0
    return out


def gap_statistic(
    z: ArrayLike,
    ks: Sequence[int],
    *,
    references: int = GAP_REFERENCES,
    seed: int = 0,
    fit: Callable[[FloatArray, int], float] | None = None,
    within: Mapping[int, float] | None = None,
    threads: int = 1,
) -> dict[int, tuple[float, float]]:
    """The gap statistic of Tibshirani, Walther & Hastie (2001) for each k.

    ``Gap(k) = mean_b log W*_kb - log W_k`` where ``W_k`` is the pooled within-cluster
    sum of squares (k-means inertia) of the data and ``W*_kb`` that of reference set ``b``,
    drawn uniformly over the box aligned with the data's principal components (the paper's
    reference distribution (b), Section 3). ``s_k = sd_k * sqrt(1 + 1/B)`` with ``sd_k``
    the standard deviation (divisor B) of ``log W*_kb`` (the paper's equation (7)).

    Parameters
    ----------
    z
        ``(n, p)`` scaled data.
    ks
        Numbers of clusters.
    references
        Number of reference sets B.
    seed
        Seed of the reference draws and of the k-means fits.
    fit
        ``fit(data, k) -> W_k`` for the reference sets, and for the data unless ``within``
        gives it; default k-means with :data:`GAP_N_INIT` restarts on a reference set and
        :data:`N_INIT` on the data.
    within
        ``W_k`` of the data per k when it is already known (the fits that chose k).
    threads
        Reference fits run up to this many at a time (each on one thread): the result
        does not depend on it.

    Returns
    -------
    dict of int to (float, float)
        ``{k: (Gap(k), s_k)}``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> blobs = np.concatenate([rng.normal(c, 0.1, (100, 2)) for c in (0.0, 3.0, 6.0)])
    >>> gaps = gap_statistic(blobs, [1, 2, 3, 4], references=5)
    >>> max(gaps, key=lambda k: gaps[k][0])
    3
    """
    data = np.asarray(z, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]

    def kmeans_inertia(x: FloatArray, k: int) -> float:
        restarts = N_INIT if x is data else GAP_N_INIT
        return float(KMeans(n_clusters=k, n_init=restarts, random_state=seed).fit(x).inertia_)

    fitted = kmeans_inertia if fit is None else fit
    rng = np.random.default_rng(seed)
    mean = data.mean(axis=0)
    _, _, vt = np.linalg.svd(data - mean, full_matrices=False)
    rotated = (data - mean) @ vt.T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    draws = [rng.uniform(low, high, size=rotated.shape) @ vt + mean for _ in range(references)]
    jobs = [(ref, int(k)) for k in ks for ref in draws]
    w_ref = _map_fits(lambda job: fitted(*job), jobs, threads)
    out = {}
    for i, k in enumerate(ks):
        w_k = within[k] if within is not None else fitted(data, k)
        log_w = math.log(max(w_k, np.finfo(float).tiny))
        done = w_ref[i * references : (i + 1) * references]
        log_ref = np.log([max(w, np.finfo(float).tiny) for w in done])
        sd = float(log_ref.std())
        out[int(k)] = (float(log_ref.mean() - log_w), sd * math.sqrt(1.0 + 1.0 / references))
    return out


def _gap_choice(gaps: Mapping[int, tuple[float, float]]) -> int | None:
    ks = sorted(gaps)
    for k, nxt in itertools.pairwise(ks):
        if gaps[k][0] >= gaps[nxt][0] - gaps[nxt][1]:
            return k
    return None


def choose_elbow(inertia: Mapping[int, float]) -> int | None:
    """The elbow of an inertia curve: the k farthest below the chord joining its ends.

    Both axes are rescaled to [0, 1] first (the "kneedle" idea of Satopää et al. 2011);
    None with fewer than three points.

    Examples
    --------
    >>> choose_elbow({2: 100.0, 3: 40.0, 4: 30.0, 5: 25.0, 6: 22.0})
    3
    """
    ks = sorted(inertia)
    if len(ks) < 3:
        return None
    x = (np.asarray(ks, float) - ks[0]) / (ks[-1] - ks[0])
    y = np.asarray([inertia[k] for k in ks], dtype=np.float64)
    span = y[0] - y[-1]
    if span <= 0:
        return None
    y = (y - y[-1]) / span
    below = (1.0 - x) - y  # chord from (0, 1) to (1, 0) minus the curve
    return int(ks[int(np.argmax(below))])


def _selection_note(chosen: int, gap_k: int | None, elbow_k: int | None) -> str:
    others = {"gap statistic": gap_k, "elbow": elbow_k}
    agree = [name for name, k in others.items() if k == chosen]
    differ = {name: k for name, k in others.items() if k is not None and k != chosen}
    parts = [f"silhouette picks k={chosen}"]
    if agree:
        parts.append(f"{' and '.join(agree)} agree")
    if differ:
        listed = ", ".join(f"{name} k={k}" for name, k in differ.items())
        parts.append(
            f"{listed} differ(s): the silhouette rewards well-separated clusters, the gap "
            "statistic any structure beyond a uniform reference (it favours more clusters "
            "in large samples), the elbow is a visual heuristic; compare the curves and "
            "the stability before trusting fine splits"
        )
    if gap_k is None:
        parts.append("the gap rule is not met within k_range (the gap still rises)")
    return "; ".join(parts)


# --------------------------------------------------------------------------- stability


def bootstrap_stability(
    z: ArrayLike,
    labels: ArrayLike,
    refit: Callable[[FloatArray], NDArray[np.integer]],
    *,
    resamples: int,
    seed: int = 0,
    threads: int = 1,
) -> tuple[list[float], dict[int, float]]:
    """Bootstrap stability: ARI per resample and mean Jaccard per cluster (Hennig 2007).

    Each resample draws ``n`` points with replacement, refits the clustering on them and
    compares, on the distinct points drawn, the original labels with the refitted ones:
    the adjusted Rand index (noise, label -1, counts as a label) and, per original
    cluster C, ``max_D |C* & D| / |C* | D|`` over refitted clusters D, with C* the points
    of C drawn (Hennig 2007, "Cluster-wise assessment of cluster stability",
    Computational Statistics & Data Analysis 52(1), Section 2).

    Parameters
    ----------
    z
        ``(n, p)`` data.
    labels
        Original labels (``-1`` for noise).
    refit
        ``refit(data) -> labels`` for a resample.
    resamples
        Number of resamples B.
    seed
        Seed of the resampling.
    threads
        Refits run up to this many at a time (each on one thread; ``refit`` must then be
        safe to call from several threads): the result does not depend on it.

    Returns
    -------
    (list of float, dict of int to float)
        The ARI of each resample and the mean Jaccard of each original cluster.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.cluster import KMeans
    >>> rng = np.random.default_rng(0)
    >>> z = np.concatenate([rng.normal(c, 0.1, (50, 2)) for c in (0.0, 5.0)])
    >>> labels = KMeans(2, n_init=4, random_state=0).fit(z).labels_
    >>> refit = lambda x: KMeans(2, n_init=4, random_state=0).fit(x).labels_
    >>> ari, jaccard = bootstrap_stability(z, labels, refit, resamples=3)
    >>> [round(a, 2) for a in ari], {c: round(j, 2) for c, j in jaccard.items()}
    ([1.0, 1.0, 1.0], {0: 1.0, 1: 1.0})
    """
    data = np.asarray(z, dtype=np.float64)
    original = np.asarray(labels)
    rng = np.random.default_rng(seed)
    clusters = [int(c) for c in np.unique(original) if c >= 0]
    aris: list[float] = []
    jaccard: dict[int, list[float]] = {c: [] for c in clusters}
    n = original.size
    draws = [rng.integers(0, n, size=n) for _ in range(resamples)]
    refitted = _map_fits(lambda draw: np.asarray(refit(data[draw])), draws, threads)
    for draw, new in zip(draws, refitted, strict=True):
        points, first = np.unique(draw, return_index=True)
        old_l, new_l = original[points], new[first]
        aris.append(float(adjusted_rand_score(old_l, new_l)))
        found = [d for d in np.unique(new_l) if d >= 0]
        for c in clusters:
            in_c = old_l == c
            if not in_c.any():
                continue
            best = 0.0
            for d in found:
                in_d = new_l == d
                best = max(best, float((in_c & in_d).sum() / (in_c | in_d).sum()))
            jaccard[c].append(best)
    return aris, {c: float(np.mean(v)) if v else math.nan for c, v in jaccard.items()}


# --------------------------------------------------------------------------- fitting


def _density_labels(algorithm: str, z: FloatArray, config: ClusterConfig) -> tuple[Any, Any]:
    if algorithm == "dbscan":
        estimator = DBSCAN(eps=float(config.eps or 0.0), min_samples=config.min_samples)
    else:
        estimator = HDBSCAN(
            min_cluster_size=config.min_cluster_size,
            min_samples=config.min_samples,
            copy=True,
        )
    estimator.fit(z)
    labels = np.asarray(estimator.labels_, dtype=np.int64)
    return estimator, np.where(labels < 0, _NOISE, labels)


def _nearest(z: FloatArray, centroids: FloatArray, radii: Sequence[float] | None) -> IntArray:
    """Index of the nearest centroid (first on ties), -1 beyond the radius."""
    distance = np.column_stack([((z - c) ** 2).sum(axis=1) for c in centroids])
    index = distance.argmin(axis=1).astype(np.int64)
    if radii is not None:
        limit = np.asarray(radii, dtype=np.float64)[index] ** 2
        index = np.where(distance[np.arange(z.shape[0]), index] <= limit, index, _NOISE)
    result: IntArray = index
    return result


def _relabel(labels: IntArray) -> tuple[IntArray, tuple[int, ...]]:
    """Number clusters by decreasing size (ties: first occurrence); noise stays -1."""
    found = [int(c) for c in np.unique(labels) if c >= 0]
    first = {c: int(np.flatnonzero(labels == c)[0]) for c in found}
    size = {c: int((labels == c).sum()) for c in found}
    ranked = sorted(found, key=lambda c: (-size[c], first[c]))
    new_index = {old: new for new, old in enumerate(ranked)}
    mapping = np.full(max(found, default=-1) + 2, _NOISE, dtype=np.int64)
    for old, new in new_index.items():
        mapping[old] = new
    relabelled = np.where(labels >= 0, mapping[np.maximum(labels, 0)], _NOISE)
    order = tuple(new_index.get(j, _NOISE) for j in range(max(found, default=-1) + 1))
    return relabelled.astype(np.int64), order


def fit_clusters(
    features: ir.Table,
    config: ClusterConfig,
    *,
    stratify: str | None = None,
) -> ClusterModel:
    """Fit a clustering on a sample of the feature table.

    Parameters
    ----------
    features
        One row per customer: ``customer_id`` plus the numeric (or boolean) columns named
        in ``config.features``, e.g. :func:`segvalue.features.customer.customer_features`
        joined with customer attributes.
    config
        The cluster scheme: features, transforms, scaling, algorithm, k or ``"auto"`` with
        ``k_range``, ``sample_size``, DBSCAN ``eps`` / ``min_samples``, HDBSCAN
        ``min_cluster_size``, ``stability_resamples`` and ``seed``.
    stratify
        Optional column to stratify the sample by (see :func:`sample_customers`).

    Returns
    -------
    ClusterModel
        Centroids, transform parameters, k and how it was chosen, the curves, stability,
        sample diagnostics; assign every customer with :func:`assign_clusters`.

    Raises
    ------
    ConfigError
        A feature is missing, listed twice, not numeric, or negative under ``log1p``; the
        sample is too small for the k asked; a density algorithm finds no cluster.
    DataValidationError
        A feature is missing for the whole sample, constant, or infinite.

    Notes
    -----
    Missing values are replaced by the sample median of the feature (before the
    transform); ``imputed`` reports how many were replaced in the sample. With
    ``k: auto`` every k in ``k_range`` is fitted (k-means with :data:`N_INIT` seeded
    restarts) on a seeded subsample of at most :data:`K_SELECTION_SAMPLE` sample points,
    and k is the largest silhouette on that subsample; the inertia curve, its elbow and
    the gap statistic (same points, :data:`GAP_REFERENCES` reference sets) are reported in
    ``curves`` and ``k_selection``. The chosen k is then fitted on the whole sample.

    Examples
    --------
    >>> import ibis, numpy as np
    >>> from segvalue.config import ClusterConfig
    >>> rng = np.random.default_rng(0)
    >>> spend = np.concatenate([rng.normal(10, 1, 120), rng.normal(50, 2, 80)])
    >>> t = ibis.memtable({"customer_id": [f"c{i:03d}" for i in range(200)], "spend": spend})
    >>> cfg = ClusterConfig(type="cluster", features=["spend"], k_range=(2, 4),
    ...                     stability_resamples=2)
    >>> model = fit_clusters(t, cfg)
    >>> model.k, model.sample_counts, model.stability.ari_mean
    (2, {'cluster_1': 120, 'cluster_2': 80}, 1.0)
    """
    return _fit_in_memory(*_draw_sample(features, config, stratify), threads=_fit_threads())


def _draw_sample(
    features: ir.Table, config: ClusterConfig, stratify: str | None
) -> tuple[FloatArray, list[str], dict[str, str], ClusterConfig, int]:
    """The engine part of :func:`fit_clusters`: checks, then the sample as a matrix."""
    scheme = config.name
    names = list(config.features)
    _check_features(features, names, scheme)
    transforms = _transforms(config)
    n_customers = _count_and_check_log1p(features, transforms, scheme)
    if n_customers == 0:
        raise DataValidationError(
            f"cluster scheme '{scheme}': the feature table has no customers",
            fix="check the sources and the lookback window",
        )
    sample = _sample(features, config.sample_size, config.seed, stratify, n_customers)
    arrays = to_numpy(sample.select(_ID, **{f: _numeric(sample, f) for f in names}).order_by(_ID))
    raw = _columns_matrix(arrays, names)
    n = raw.shape[0]
    algorithm: Algorithm = config.algorithm
    ks = _ks(config)
    if algorithm in ("kmeans", "minibatch_kmeans") and n <= max(ks):
        raise ConfigError(
            f"cluster scheme '{scheme}': {n} customers in the sample, too few for k = {max(ks)}",
            fix="lower 'k' / 'k_range', or cluster a larger base",
        )
    least = config.min_cluster_size if algorithm == "hdbscan" else config.min_samples
    if algorithm in ("dbscan", "hdbscan") and n < least:
        knob = "min_cluster_size" if algorithm == "hdbscan" else "min_samples"
        raise ConfigError(
            f"cluster scheme '{scheme}': {n} customers in the sample, fewer than {knob} = {least}",
            fix=f"lower '{knob}', or cluster a larger base",
        )
    return raw, names, transforms, config, n_customers


def _fit_in_memory(
    raw: FloatArray,
    names: list[str],
    transforms: dict[str, str],
    config: ClusterConfig,
    n_customers: int,
    *,
    threads: int,
) -> ClusterModel:
    # One thread for the in-memory fits: many small OpenMP / BLAS jobs gain little from
    # threads, lose badly when the cores are busy, and one thread keeps results identical
    # on every machine.
    with threadpool_limits(limits=1):
        return _fit_sample(raw, names, transforms, config, n_customers, threads)


def start_fit_clusters(
    features: ir.Table, config: ClusterConfig, *, stratify: str | None = None
) -> Callable[[], ClusterModel]:
    """:func:`fit_clusters`, with the in-memory fit on a background thread.

    The engine work (checks, sample) runs now, in the calling thread, and raises as
    :func:`fit_clusters` does; the fit of the sample then runs on a daemon thread while
    the caller goes on (it touches no engine). Call the returned function to wait for
    the model; it raises the fit's error, if any. The model is the one
    :func:`fit_clusters` returns.

    Examples
    --------
    >>> import ibis
    >>> from segvalue.config import ClusterConfig
    >>> t = ibis.memtable({"customer_id": [f"c{i}" for i in range(8)],
    ...                    "spend": [1.0, 1.1, 0.9, 1.0, 9.0, 9.2, 8.9, 9.1]})
    >>> cfg = ClusterConfig(type="cluster", features=["spend"], k=2, stability_resamples=0)
    >>> model = start_fit_clusters(t, cfg)
    >>> model().sample_counts
    {'cluster_1': 4, 'cluster_2': 4}
    """
    future: Future[ClusterModel] = Future()
    arguments = _draw_sample(features, config, stratify)
    # The caller keeps one core busy meanwhile: the fits get the others (at least one).
    threads = max(1, _fit_threads() - 1)

    def fit() -> None:
        try:
            future.set_result(_fit_in_memory(*arguments, threads=threads))
        except BaseException as error:  # handed to the caller, raised where it waits
            future.set_exception(error)

    # A daemon thread: a run that fails meanwhile does not wait for the fit to exit.
    threading.Thread(target=fit, name=f"fit {config.name}", daemon=True).start()
    return future.result


def _fit_sample(
    raw: FloatArray,
    names: list[str],
    transforms: dict[str, str],
    config: ClusterConfig,
    n_customers: int,
    threads: int = 1,
) -> ClusterModel:
    scheme = config.name
    n = raw.shape[0]
    algorithm: Algorithm = config.algorithm
    ks = _ks(config)
    pre = _fit_preprocessing(raw, names, transforms, config.scaling, scheme)
    z = _scaled(raw, names, transforms, pre.medians, pre.center, pre.scale)
    rng = np.random.default_rng(config.seed)

    curves: dict[int, dict[str, float | None]] = {}
    selection: KSelection | None = None
    radii: tuple[float, ...] | None = None
    if algorithm in ("kmeans", "minibatch_kmeans"):
        distinct = np.unique(z, axis=0).shape[0]
        if distinct < max(ks):
            raise ConfigError(
                f"cluster scheme '{scheme}': only {distinct} distinct feature vectors in "
                f"the sample, too few for k = {max(ks)}",
                fix="lower 'k' / 'k_range', or add features that vary between customers",
            )
        estimator, selection, curves = _fit_kmeans(z, config, ks, rng, threads)
        fitted = np.asarray(estimator.labels_, dtype=np.int64)
    else:
        estimator, fitted = _density_labels(algorithm, z, config)
        if not (fitted >= 0).any():
            knob = "eps" if algorithm == "dbscan" else "min_cluster_size"
            raise ConfigError(
                f"cluster scheme '{scheme}': {algorithm} found no cluster in the sample "
                f"of {n} customers (every point is noise)",
                fix=f"increase '{knob}' or decrease 'min_samples'"
                if algorithm == "dbscan"
                else f"decrease '{knob}' or 'min_samples'",
            )
    labels, order = _relabel(fitted)
    k = int(labels.max()) + 1
    centroids = np.stack([z[labels == c].mean(axis=0) for c in range(k)])
    if algorithm in ("kmeans", "minibatch_kmeans"):
        # The estimator's own centres, in segment order: identical to its predict().
        centers = np.asarray(estimator.cluster_centers_, dtype=np.float64)
        centroids = centers[[order.index(new) for new in range(k)]]
    else:
        radii = _radii(z, labels, centroids, algorithm, estimator, config)
    engine_rule = _nearest(z, centroids, radii)
    segments = [f"cluster_{i + 1}" for i in range(k)]
    counts = {s: int((labels == i).sum()) for i, s in enumerate(segments)}
    if (labels < 0).any():
        counts[config.unassigned] = int((labels < 0).sum())
    stability = _stability(z, labels, algorithm, k, config, rng, segments, threads)
    return ClusterModel(
        name=scheme,
        algorithm=algorithm,
        features=tuple(names),
        transforms=transforms,
        scaling=config.scaling,
        medians=pre.medians,
        imputed=pre.imputed,
        center=pre.center,
        scale=pre.scale,
        scale_fallback=pre.scale_fallback,
        centroids=centroids,
        radii=radii,
        k=k,
        k_selection=selection,
        curves=curves,
        silhouette=curves[k]["silhouette"] if k in curves else _silhouette(z, labels, config.seed),
        stability=stability,
        sample_size=n,
        n_customers=n_customers,
        sample_counts=counts,
        sample_agreement=float((engine_rule == labels).mean()),
        seed=config.seed,
        unassigned=config.unassigned,
        estimator=estimator,
        estimator_order=order,
    )


def _ks(config: ClusterConfig) -> list[int]:
    if config.k == "auto":
        low, high = config.k_range
        return list(range(low, high + 1))
    return [int(config.k)]


def _fit_kmeans(
    z: FloatArray,
    config: ClusterConfig,
    ks: Sequence[int],
    rng: np.random.Generator,
    threads: int,
) -> tuple[Any, KSelection, dict[int, dict[str, float | None]]]:
    seed, algorithm = config.seed, config.algorithm
    if config.k != "auto":
        k = ks[0]
        fitted = _kmeans(algorithm, k, seed).fit(z)
        silhouette = _silhouettes(z, {k: np.asarray(fitted.labels_)}, seed)[k]
        curves: dict[int, dict[str, float | None]] = {
            k: {
                "silhouette": silhouette,
                "inertia": float(fitted.inertia_),
                "gap": None,
                "gap_se": None,
            }
        }
        note = f"k={k} fixed in the configuration"
        return fitted, KSelection("fixed", k, None, None, None, note), curves
    # Each candidate k on one seeded subsample (the whole sample when it is small enough),
    # which the silhouette, the elbow and the gap statistic all share; the gap's data W_k
    # are these fits' inertia.
    points = z[_subsample(z.shape[0], K_SELECTION_SAMPLE, rng)]
    fitted = _map_fits(lambda k: _kmeans(algorithm, k, seed).fit(points), ks, threads)
    fits = dict(zip(ks, fitted, strict=True))
    sil = _silhouettes(points, {k: np.asarray(fits[k].labels_) for k in ks}, seed)
    inertia = {k: float(fits[k].inertia_) for k in ks}

    def gap_fit(x: FloatArray, k: int) -> float:
        return float(_kmeans(algorithm, k, seed, GAP_N_INIT).fit(x).inertia_)

    gaps = gap_statistic(
        points,
        ks,
        references=GAP_REFERENCES,
        seed=seed,
        fit=gap_fit,
        within=inertia,
        threads=threads,
    )
    scored = [k for k in ks if sil[k] is not None]
    best = max(scored, key=lambda k: (sil[k], -k)) if scored else ks[0]
    gap_k, elbow_k = _gap_choice(gaps), choose_elbow(inertia)
    curves = {
        k: {"silhouette": sil[k], "inertia": inertia[k], "gap": gaps[k][0], "gap_se": gaps[k][1]}
        for k in ks
    }
    selection = KSelection(
        "max_silhouette",
        best,
        best,
        gap_k,
        elbow_k,
        _selection_note(best, gap_k, elbow_k),
        points=int(points.shape[0]),
    )
    # The same estimator settings on every sample point: the segments use all of them.
    final = fits[best] if points.shape[0] == z.shape[0] else _kmeans(algorithm, best, seed).fit(z)
    return final, selection, curves


def _radii(
    z: FloatArray,
    labels: IntArray,
    centroids: FloatArray,
    algorithm: str,
    estimator: Any,
    config: ClusterConfig,
) -> tuple[float, ...]:
    """Assignment radius per cluster: how far from its centroid a customer may still join.

    DBSCAN: the farthest core member plus ``eps`` (DBSCAN attaches any point within
    ``eps`` of a core point). HDBSCAN: the farthest member plus the median core distance
    of the members (their distance to the ``min_samples``-th nearest sample point), the
    reach of density at which the cluster's members are connected.
    """
    core = np.zeros(labels.size, dtype=bool)
    if algorithm == "dbscan":
        core[np.asarray(estimator.core_sample_indices_, dtype=np.int64)] = True
    else:
        neighbours = NearestNeighbors(n_neighbors=min(config.min_samples, labels.size)).fit(z)
    out = []
    for c in range(centroids.shape[0]):
        members = labels == c
        if algorithm == "dbscan":
            members &= core
            reach = float(config.eps or 0.0)
        else:
            reach = float(np.median(neighbours.kneighbors(z[members])[0][:, -1]))
        distance = np.sqrt(((z[members] - centroids[c]) ** 2).sum(axis=1))
        out.append(float(distance.max()) + reach)
    return tuple(out)


def _stability(
    z: FloatArray,
    labels: IntArray,
    algorithm: str,
    k: int,
    config: ClusterConfig,
    rng: np.random.Generator,
    segments: Sequence[str],
    threads: int,
) -> ClusterStability | None:
    if config.stability_resamples == 0:
        return None
    keep = _subsample(z.shape[0], STABILITY_SAMPLE, rng)
    seed = config.seed

    def refit(x: FloatArray) -> NDArray[np.integer]:
        if algorithm in ("kmeans", "minibatch_kmeans"):
            return np.asarray(_kmeans(algorithm, k, seed).fit(x).labels_)
        return np.asarray(_density_labels(algorithm, x, config)[1])

    aris, jaccard = bootstrap_stability(
        z[keep],
        labels[keep],
        refit,
        resamples=config.stability_resamples,
        seed=seed,
        threads=threads,
    )
    per_segment = {segments[c]: v for c, v in sorted(jaccard.items())}
    unstable = tuple(s for s, v in per_segment.items() if not v >= UNSTABLE_JACCARD)
    return ClusterStability(
        resamples=config.stability_resamples,
        points=int(keep.size),
        ari=tuple(aris),
        ari_mean=float(np.mean(aris)),
        jaccard=per_segment,
        unstable=unstable,
    )


# --------------------------------------------------------------------------- assignment


def assign_clusters(features: ir.Table, model: ClusterModel) -> ir.Table:
    """Assign every customer to a segment in the engine, by the fitted model.

    Each feature is imputed with its sample median, transformed and scaled exactly as in
    the fit; the squared Euclidean distance to each centroid is computed as Ibis
    arithmetic, and the customer joins the nearest centroid (the first on ties, like
    ``numpy.argmin``). For DBSCAN / HDBSCAN the customer joins the nearest centroid only
    within that cluster's radius, else ``model.unassigned``.

    Parameters
    ----------
    features
        One row per customer with ``customer_id`` and the model's feature columns.
    model
        The output of :func:`fit_clusters` (or :meth:`ClusterModel.from_dict`).

    Returns
    -------
    ibis.expr.types.Table
        ``customer_id`` and ``segment`` (``cluster_1`` .. ``cluster_k`` or the unassigned
        name), one row per row of ``features``.

    Raises
    ------
    ConfigError
        If a feature column is missing or not numeric.

    Examples
    --------
    >>> import ibis
    >>> t = ibis.memtable({"customer_id": ["a", "b", "c"], "spend": [1.0, 9.0, None]})
    >>> assign_clusters(t, _demo_model()).order_by("customer_id").to_pyarrow().to_pylist()
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'customer_id': 'a', 'segment': 'cluster_1'}, {'customer_id': 'b', 'segment': 'cluster_2'},
     {'customer_id': 'c', 'segment': 'cluster_1'}]
    """
    names = list(model.features)
    _check_features(features, names, model.name)
    scaled: dict[str, ir.Value] = {}
    for j, name in enumerate(names):
        x = _numeric(features, name).fill_null(model.medians[name])
        if model.transforms[name] == "log1p":
            x = (x + 1.0).ln()
        scaled[f"_z{j}"] = (x - model.center[j]) / model.scale[j]
    stage1 = features.select(_ID, **scaled)
    distances: dict[str, ir.Value] = {}
    for c in range(model.k):
        total: ir.NumericValue | None = None
        for j in range(len(names)):
            diff = stage1[f"_z{j}"] - float(model.centroids[c, j])
            total = diff * diff if total is None else total + diff * diff
        distances[f"_d{c}"] = total
    stage2 = stage1.select(_ID, **distances)
    d = [stage2[f"_d{c}"] for c in range(model.k)]
    nearest = d[0] if model.k == 1 else ibis.least(*d)
    unassigned = ibis.literal(model.unassigned, type=dt.string)
    branches = []
    for c, name in enumerate(model.segments):
        label: ir.Value = ibis.literal(name, type=dt.string)
        if model.radii is not None:
            label = (d[c] <= model.radii[c] ** 2).ifelse(label, unassigned)
        branches.append((d[c] == nearest, label))
    return stage2.select(_ID, segment=ibis.cases(*branches, else_=unassigned))


def _demo_model() -> ClusterModel:
    """A two-cluster model on one feature, for the examples."""
    return ClusterModel(
        name="clusters",
        algorithm="kmeans",
        features=("spend",),
        transforms={"spend": "none"},
        scaling="standard",
        medians={"spend": 4.0},
        imputed={"spend": 0},
        center=(5.0,),
        scale=(5.0,),
        scale_fallback=(),
        centroids=np.array([[-1.0], [1.0]]),
        radii=None,
        k=2,
        k_selection=None,
        curves={},
        silhouette=None,
        stability=None,
        sample_size=10,
        n_customers=10,
        sample_counts={"cluster_1": 5, "cluster_2": 5},
        sample_agreement=1.0,
        seed=0,
        unassigned="unassigned",
    )
