"""Next-best category or product per customer: co-purchase affinity, segment popularity and
recency, with a reason in words; a popularity baseline; a holdout evaluation.

:func:`recommend` scores every item (a product or a category, ``level``) a customer may be
offered and returns the top ``k`` with their score, its three components and a ``reason``.
:func:`evaluate` splits the history at a cutoff, recommends from the part before it and
counts how often a top-``k`` list contains an item the customer went on to buy for the
first time, for the model and for the popularity baseline, with intervals
(docs/activation-recommendations.md).

The score of item ``j`` for customer ``c`` in segment ``g`` (``method="affinity"``)::

    score(c, j) = w_affinity A(c, j) + w_segment S(g, j) + w_popularity log p_j

- ``p_j = n_j / N``: the share of the ``N`` customers with a purchase before ``as_of``
  who bought ``j`` (``n_j`` of them);
- ``S(g, j) = log(s_gj / p_j)``, with ``s_gj = (n_gj + m p_j) / (n_g + m)`` the share of
  the segment's ``n_g`` customers (those with a purchase) who bought ``j``, shrunk towards
  ``p_j`` with ``m`` (``smoothing``) pseudo-customers; 0 without a segment;
- ``A(c, j) = log(sum over the customer's items i of w_ci lift_ij)``: the log of the
  recency-weighted mean lift (a mixture: the next purchase is prompted by one past item,
  a recent one more likely), with ``w_ci`` proportional to
  ``0.5 ** (days since c last bought i / half_life_days)`` and summing to 1; 0 for a
  customer without purchases; ``lift_jj = 1`` (an item due again is no evidence for
  itself), and

  ``lift_ij = P(j | i) / p_j``, ``P(j | i) = (c_ij + m p_j L_ij) / (n_i + m)``,

  where ``c_ij`` counts the customers who bought both (customer-item incidence, not
  baskets). The prior ``L_ij`` is 1 (no association), or at ``level="product"`` with a
  ``category`` column, the lift between the two products' categories pooled over every
  pair of distinct products in them, ``L_ab = (O_ab + m) / (E_ab + m)``, with ``O_ab`` the
  observed and ``E_ab = sum n_i n_j / N`` the expected co-purchases: a product pair seen
  rarely borrows the evidence of its categories.

Every term is a log-ratio of shares, so with unit weights the score is the log of the
segment's share buying ``j`` times the customer's mean lift. ``method="popularity"``
(the baseline) scores ``log p_j`` alone. Ties are broken by item id (ascending).

**Exclusions.** An item the customer bought before ``as_of`` is never recommended while its
window runs: the window of item ``j`` is ``replenishment[j]`` days if given, else
``repurchase_after_days`` if given, else infinite (never again). An item whose window has
passed (``days since the last purchase >= window``) is a candidate again, and its reason
says it is due.

Computation: the customer-item incidence and the item-item co-purchase counts are
``scipy.sparse`` matrices (cost ~ the sum over customers of their distinct items squared);
the scores are dense only for a chunk of customers at a time.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from numpy.typing import NDArray

from segvalue.economics.intervals import ratio_interval, wilson_interval
from segvalue.errors import ConfigError, DataValidationError, did_you_mean

__all__ = [
    "DEFAULT_WEIGHTS",
    "LEVELS",
    "METHODS",
    "HoldoutEvaluation",
    "evaluate",
    "next_best",
    "purchase_lines",
    "recommend",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: The item column each level recommends.
LEVELS: Final[dict[str, str]] = {"product": "product_id", "category": "category"}
#: ``affinity``: the full score; ``popularity``: the baseline (``log p_j`` alone).
METHODS: Final[tuple[str, ...]] = ("affinity", "popularity")
#: Weights of the score's components.
DEFAULT_WEIGHTS: Final[dict[str, float]] = {"affinity": 1.0, "segment": 1.0, "popularity": 1.0}

_DAY_S: Final = 86_400
_EPOCH: Final = dt.datetime(1970, 1, 1)
# Scores are dense for this many (customer, item) cells at a time.
_CHUNK_CELLS: Final = 2_000_000
# Up to this many items the item x item log lifts are used as a dense matrix (128 MB).
_DENSE_ITEMS: Final = 4_096
# An affinity reason needs a lift of at least this much (a "lift 1.0" explains nothing).
_MIN_REASON_LIFT: Final = 1.05

Level = Literal["category", "product"]
Method = Literal["affinity", "popularity"]


# --------------------------------------------------------------------------- input


def purchase_lines(orders: pa.Table, order_lines: pa.Table) -> pa.Table:
    """Order lines with their order's customer and time: the ``purchases`` the functions
    here take (``customer_id, order_ts, product_id, quantity`` and ``category`` when the
    lines have it).

    Lines of orders with a negative ``amount`` (returns) are left out.

    Parameters
    ----------
    orders
        ``order_id, customer_id, order_ts, amount`` (the data contract's orders).
    order_lines
        ``order_id, product_id, quantity`` and optionally ``category``.

    Returns
    -------
    pyarrow.Table
        One row per line whose order is in ``orders``, sorted by customer, time and product.

    Examples
    --------
    >>> orders = pa.table({"order_id": ["o1", "o2"], "customer_id": ["a", "b"],
    ...                    "order_ts": [dt.datetime(2025, 1, 2), dt.datetime(2025, 1, 3)],
    ...                    "amount": [10.0, 5.0]})
    >>> lines = pa.table({"order_id": ["o1", "o1", "o2"], "product_id": ["p1", "p2", "p1"],
    ...                   "quantity": [1, 2, 1], "category": ["toys", "books", "toys"]})
    >>> purchase_lines(orders, lines).column("customer_id").to_pylist()
    ['a', 'a', 'b']
    """
    for name, table, needed in (
        ("orders", orders, ("order_id", "customer_id", "order_ts", "amount")),
        ("order_lines", order_lines, ("order_id", "product_id", "quantity")),
    ):
        for column in needed:
            if column not in table.column_names:
                raise DataValidationError(
                    f"{name}: column {column!r} is missing"
                    f"{did_you_mean(column, table.column_names)}",
                    fix=f"give {name} the data contract's columns {', '.join(needed)}",
                    parameter=name,
                )
    kept = ["order_id", "product_id", "quantity"]
    if "category" in order_lines.column_names:
        kept.append("category")
    heads = orders.select(["order_id", "customer_id", "order_ts", "amount"])
    heads = heads.filter(pc.fill_null(pc.greater_equal(heads.column("amount"), 0), True))
    joined = order_lines.select(kept).join(
        heads.drop_columns(["amount"]), "order_id", join_type="inner"
    )
    out = joined.select(["customer_id", "order_ts", *kept[1:]])
    return out.sort_by(
        [("customer_id", "ascending"), ("order_ts", "ascending"), ("product_id", "ascending")]
    )


def _column(purchases: Any, name: str) -> pa.Array | None:
    """One column of a table-like (Arrow table, mapping of arrays, pandas frame), or None."""
    if isinstance(purchases, pa.Table | pa.RecordBatch):
        names = list(purchases.column_names)
        found = purchases.column(name) if name in names else None
    else:
        try:
            names = [str(c) for c in purchases.keys()]  # noqa: SIM118 (a pandas frame too)
        except AttributeError:
            raise DataValidationError(
                f"purchases: expected a table, got {type(purchases).__name__}",
                fix="pass an Arrow table or a mapping of column name to array",
                parameter="purchases",
            ) from None
        found = pa.array(purchases[name], from_pandas=True) if name in names else None
    if found is None:
        return None
    if isinstance(found, pa.ChunkedArray):
        found = found.combine_chunks()
    if pa.types.is_null(found.type) and len(found) == 0:
        # An empty list has no type: read it as the column's usual one.
        found = found.cast(pa.timestamp("s") if name == "order_ts" else pa.string())
    return found


def _required(purchases: Any, name: str) -> pa.Array:
    found = _column(purchases, name)
    if found is None:
        names = purchases.column_names if isinstance(purchases, pa.Table) else list(purchases)
        raise DataValidationError(
            f"purchases: column {name!r} is missing{did_you_mean(name, names)}",
            fix="give purchases the columns customer_id, order_ts and the level's item "
            "column (product_id or category); purchase_lines() builds them",
            parameter="purchases",
        )
    return found


def _seconds(values: pa.Array, name: str) -> IntArray:
    """Timestamps (any unit, naive UTC or aware) or dates as whole seconds since 1970."""
    kind = values.type
    if pa.types.is_timestamp(kind):
        per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[kind.unit]
        raw = values.cast(pa.timestamp(kind.unit)).cast(pa.int64())
        return np.asarray(raw.to_numpy(zero_copy_only=False), dtype=np.int64) // per_second
    if pa.types.is_date32(kind):
        days = np.asarray(values.cast(pa.int32()).to_numpy(zero_copy_only=False), np.int64)
        return days * _DAY_S
    if pa.types.is_date64(kind):
        ms = np.asarray(values.cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
        return ms // 1_000
    raise DataValidationError(
        f"purchases: column {name!r} holds {kind}, not timestamps",
        fix="parse it to timestamps or dates first",
        parameter="purchases",
    )


def _as_of_seconds(as_of: dt.date | dt.datetime, name: str = "as_of") -> int:
    if isinstance(as_of, dt.datetime):
        if as_of.tzinfo is not None:
            as_of = as_of.astimezone(dt.UTC).replace(tzinfo=None)
        return math.floor((as_of - _EPOCH).total_seconds())
    if isinstance(as_of, dt.date):
        return (as_of - _EPOCH.date()).days * _DAY_S
    raise ConfigError(
        f"`{name}` must be a date or datetime, got {as_of!r}",
        fix=f"pass e.g. `{name}=datetime.date(2025, 12, 31)`",
        parameter=name,
    )


def _no_nulls(values: pa.Array, name: str) -> None:
    if values.null_count:
        raise DataValidationError(
            f"purchases: column {name!r} has {values.null_count} empty values",
            fix="drop or fill those rows first (the data layer's validation reports them)",
            parameter="purchases",
        )


@dataclass(frozen=True)
class _Purchases:
    """The history as codes: rows before ``as_of`` with a positive quantity."""

    item_ids: pa.Array  # unique items, sorted: the code order is the tie-break order
    customer_ids: pa.Array  # unique customers with a purchase, sorted
    customer: IntArray  # per row
    item: IntArray
    ts: IntArray
    group_ids: pa.Array | None  # unique categories, sorted (product level only)
    group_of_item: IntArray | None  # per item: its category's code, -1 without one


def _sorted_unique(values: pa.Array) -> pa.Array:
    unique = pc.unique(values)
    return unique.take(pc.sort_indices(unique))


def _codes(values: pa.Array, dictionary: pa.Array) -> IntArray:
    found = pc.index_in(values, value_set=dictionary)
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _read_purchases(
    purchases: Any, level: str, as_of_s: int, *, backoff: bool, since_s: int | None = None
) -> _Purchases:
    item_column = LEVELS[level]
    customer = _required(purchases, "customer_id")
    item = _required(purchases, item_column)
    ts_values = _required(purchases, "order_ts")
    quantity = _column(purchases, "quantity")
    group = _column(purchases, "category") if level == "product" else None
    lengths = {len(customer), len(item), len(ts_values)}
    lengths |= {len(quantity)} if quantity is not None else set()
    if len(lengths) != 1:
        raise DataValidationError(
            "purchases: the columns differ in length", fix="give one value per purchase line"
        )
    for name, values in (("customer_id", customer), (item_column, item), ("order_ts", ts_values)):
        _no_nulls(values, name)
    ts = _seconds(ts_values, "order_ts")
    keep = ts < as_of_s
    if since_s is not None:
        keep &= ts >= since_s
    if quantity is not None:
        # A line with no positive quantity (a cancellation or correction) is no purchase.
        qty = np.asarray(quantity.cast(pa.float64()).to_numpy(zero_copy_only=False))
        keep &= np.nan_to_num(qty, nan=0.0) > 0
    rows = pa.array(np.flatnonzero(keep))
    customer, item = customer.take(rows), item.take(rows)
    item_ids = _sorted_unique(item)
    customer_ids = _sorted_unique(customer)
    item_code = _codes(item, item_ids)
    group_ids: pa.Array | None = None
    group_of_item: IntArray | None = None
    if group is not None and backoff:
        group = group.take(rows)
        valid = np.asarray(group.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        group_ids = _sorted_unique(group.filter(pa.array(valid)))
        group_code = _codes(group, group_ids)
        # A product's category: the one on most of its lines (ties: the first by name).
        group_of_item = np.full(len(item_ids), -1, dtype=np.int64)
        if valid.any():
            pair = item_code[valid] * len(group_ids) + group_code[valid]
            unique_pair, count = np.unique(pair, return_counts=True)
            order = np.lexsort(
                (unique_pair % len(group_ids), -count, unique_pair // len(group_ids))
            )
            first = np.r_[True, np.diff(unique_pair[order] // len(group_ids)) != 0]
            best = unique_pair[order][first]
            group_of_item[best // len(group_ids)] = best % len(group_ids)
    return _Purchases(
        item_ids=item_ids,
        customer_ids=customer_ids,
        customer=_codes(customer, customer_ids),
        item=item_code,
        ts=ts[keep],
        group_ids=group_ids,
        group_of_item=group_of_item,
    )


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class _Fitted:
    """What scoring needs: shares, lifts, each customer's items with their recency."""

    data: _Purchases
    as_of_s: int
    smoothing: float
    n_buyers: int  # customers with a purchase (N)
    buyers: FloatArray  # n_j
    log_share: FloatArray  # log p_j
    basket: sp.csr_matrix  # customer x item: days since the last purchase + 1 (0: none)
    weights: sp.csr_matrix  # customer x item: normalised recency weights w_ci
    cooccurrence: sp.csr_matrix  # item x item c_ij, zero diagonal, sorted indices
    group_lift: FloatArray  # (groups + 1) x (groups + 1): L_ab; the last: no category
    group_of_item: IntArray  # per item, -1 mapped to the last row
    segment_ids: list[str]
    segment_log_lift: FloatArray  # segment x item: S(g, j)
    segment_share: FloatArray  # segment x item: raw n_gj / n_g


def _fit(
    data: _Purchases,
    as_of_s: int,
    segment_of_customer: dict[str, int],
    segment_ids: list[str],
    *,
    half_life_days: float | None,
    smoothing: float,
    with_affinity: bool,
) -> _Fitted:
    n_customers, n_items = len(data.customer_ids), len(data.item_ids)
    m = smoothing
    # Distinct (customer, item) pairs with the time of the last purchase.
    key = data.customer * n_items + data.item
    order = np.lexsort((data.ts, key))
    key_sorted = key[order]
    last = np.r_[key_sorted[1:] != key_sorted[:-1], True] if key.size else np.zeros(0, bool)
    pair_key, pair_ts = key_sorted[last], data.ts[order][last]
    pair_customer, pair_item = pair_key // n_items, pair_key % n_items
    age_days = (as_of_s - pair_ts) / _DAY_S
    shape = (n_customers, n_items)
    # Stored as age + 1: a stored value is never 0 (which a sparse matrix would drop).
    basket = sp.csr_matrix((age_days + 1.0, (pair_customer, pair_item)), shape=shape)
    basket.sort_indices()
    recency = (
        np.ones_like(age_days) if half_life_days is None else 0.5 ** (age_days / half_life_days)
    )
    # Divide by each customer's largest weight first: an old-only history must not
    # underflow to zero weights.
    largest = np.zeros(n_customers)
    np.maximum.at(largest, pair_customer, recency)
    recency = recency / largest[pair_customer]
    totals = np.bincount(pair_customer, weights=recency, minlength=n_customers)
    weights = sp.csr_matrix((recency / totals[pair_customer], (pair_customer, pair_item)), shape)
    weights.sort_indices()

    n_buyers = max(n_customers, 1)
    buyers = np.bincount(pair_item, minlength=n_items).astype(np.float64)
    share = buyers / n_buyers
    log_share = np.log(np.maximum(share, 1e-300))

    groups = 0 if data.group_ids is None else len(data.group_ids)
    group_of_item = (
        np.full(n_items, groups, dtype=np.int64)
        if data.group_of_item is None
        else np.where(data.group_of_item < 0, groups, data.group_of_item)
    )
    group_lift = np.ones((groups + 1, groups + 1))
    cooccurrence = sp.csr_matrix((n_items, n_items))
    if with_affinity and n_items:
        incidence = sp.csr_matrix((np.ones(pair_key.size), (pair_customer, pair_item)), shape=shape)
        cooccurrence = (incidence.T @ incidence).tocsr()
        cooccurrence.setdiag(0.0)
        cooccurrence.eliminate_zeros()
        cooccurrence.sort_indices()
        if groups:
            member = sp.csr_matrix(
                (np.ones(n_items), (np.arange(n_items), group_of_item)),
                shape=(n_items, groups + 1),
            )
            observed = np.asarray((member.T @ cooccurrence @ member).todense())
            per_group = member.T @ buyers
            squares = member.T @ (buyers * buyers)
            expected = (np.outer(per_group, per_group) - np.diag(squares)) / n_buyers
            group_lift = (observed + m) / (expected + m)
            group_lift[groups, :] = 1.0  # products without a category: no prior
            group_lift[:, groups] = 1.0

    n_segments = len(segment_ids)
    segment_share = np.zeros((n_segments, n_items))
    segment_log_lift = np.zeros((n_segments, n_items))
    if n_segments and n_customers:
        names = data.customer_ids.to_pylist()
        label = np.array([segment_of_customer.get(str(c), -1) for c in names], dtype=np.int64)
        labelled = label >= 0
        member = sp.csr_matrix(
            (np.ones(int(labelled.sum())), (label[labelled], np.flatnonzero(labelled))),
            shape=(n_segments, n_customers),
        )
        incidence = sp.csr_matrix((np.ones(pair_key.size), (pair_customer, pair_item)), shape)
        counts = np.asarray((member @ incidence).todense())
        size = np.bincount(label[labelled], minlength=n_segments).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            segment_share = np.where(size[:, None] > 0, counts / size[:, None], 0.0)
        shrunk = (counts + m * share) / (size[:, None] + m)
        with np.errstate(invalid="ignore", divide="ignore"):
            segment_log_lift = np.where(share > 0, np.log(shrunk / share), 0.0)
    return _Fitted(
        data=data,
        as_of_s=as_of_s,
        smoothing=m,
        n_buyers=n_customers,
        buyers=buyers,
        log_share=log_share,
        basket=basket,
        weights=weights,
        cooccurrence=cooccurrence,
        group_lift=group_lift,
        group_of_item=group_of_item,
        segment_ids=segment_ids,
        segment_log_lift=segment_log_lift,
        segment_share=segment_share,
    )


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class _Top:
    """The top-k of each scored customer, flattened (customer position, rank order)."""

    position: IntArray  # index into the customers asked for
    item: IntArray
    score: FloatArray
    affinity: FloatArray
    segment: FloatArray
    popularity: FloatArray


def _windows(fitted: _Fitted, replenishment: Mapping[Any, float], default: float) -> FloatArray:
    window = np.full(len(fitted.data.item_ids), default, dtype=np.float64)
    if replenishment and len(fitted.data.item_ids):
        keys = list(replenishment)
        try:
            wanted = pa.array(keys).cast(fitted.data.item_ids.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise ConfigError(
                f"`replenishment` keys {keys[:3]!r} are not items of type "
                f"{fitted.data.item_ids.type}",
                fix="key the windows by the level's item ids (product_id or category)",
                parameter="replenishment",
            ) from None
        found = _codes(wanted, fitted.data.item_ids)
        for key, code in zip(keys, found.tolist(), strict=True):
            if code >= 0:
                window[code] = float(replenishment[key])
    return window


def _score(
    fitted: _Fitted,
    rows: IntArray,
    segments: IntArray,
    *,
    k: int,
    weights: Mapping[str, float],
    window: FloatArray,
) -> _Top:
    """Top-k items for the history rows ``rows`` (-1: no history), segments ``segments``
    (-1: none)."""
    n_items = len(fitted.data.item_ids)
    w_aff, w_seg, w_pop = weights["affinity"], weights["segment"], weights["popularity"]
    if not w_aff and not (w_seg and fitted.segment_log_lift.shape[0]):
        return _score_same_for_all(fitted, rows, k=k, weight=w_pop, window=window)
    m = fitted.smoothing
    chunk = max(1, _CHUNK_CELLS // max(n_items, 1))
    # One empty row at the end stands for every customer without a purchase; the basket
    # and the weights share one sparsity structure, entry by entry.
    n_history = fitted.basket.shape[0]
    empty = sp.csr_matrix((1, n_items))
    basket_all = sp.vstack([fitted.basket, empty], format="csr")
    weights_all = sp.vstack([fitted.weights, empty], format="csr")
    take_all = np.where(rows >= 0, rows, n_history)
    use_affinity = bool(w_aff) and n_items > 0
    share = fitted.buyers / max(fitted.n_buyers, 1)
    # lift_ij = (c_ij / p_j + m L_ij) / (n_i + m): the mixture sum_i w_ci lift_ij is
    # W diag(1 / (n + m)) E with E = C diag(1 / p) + m L[group(i), group(j)].
    per_trigger = sp.diags(1.0 / (fitted.buyers + m))
    group = fitted.group_of_item
    evidence: FloatArray | None = None
    if use_affinity and n_items <= _DENSE_ITEMS:
        # Sparse rows times a dense matrix: several times faster than sparse x sparse.
        evidence = fitted.cooccurrence.toarray()
        evidence /= share
        evidence += m * fitted.group_lift[np.ix_(group, group)]
    member = sp.csr_matrix(
        (np.ones(n_items), (np.arange(n_items), group)),
        shape=(n_items, fitted.group_lift.shape[0]),
    )
    out: list[tuple[Any, ...]] = []
    for start in range(0, rows.size, chunk):
        stop = min(start + chunk, rows.size)
        take = take_all[start:stop]
        basket, wts = basket_all[take], weights_all[take]
        n = take.size
        b_rows = np.repeat(np.arange(n), np.diff(basket.indptr))
        b_cols = basket.indices
        blocked = basket.data - 1.0 < window[b_cols]
        due = ~blocked
        affinity: FloatArray | None = None
        if use_affinity:
            scaled = sp.csr_matrix(wts @ per_trigger)
            if evidence is not None:
                affinity = np.asarray(scaled @ evidence)
            else:
                affinity = np.asarray((scaled @ fitted.cooccurrence).todense()) / share
                by_group = np.asarray((scaled @ member).todense()) @ fitted.group_lift
                affinity += m * by_group[:, group]
            # An item due again: its own purchase is no evidence for itself (lift_jj := 1).
            cols = b_cols[due]
            own = fitted.group_lift[group[cols], group[cols]]
            affinity[b_rows[due], cols] += wts.data[due] * (
                1.0 - m * own / (fitted.buyers[cols] + m)
            )
            with np.errstate(divide="ignore"):  # rows without purchases: set to 0 below
                np.log(affinity, out=affinity)
            affinity[np.diff(wts.indptr) == 0] = 0.0  # no purchases: no evidence
            score = affinity * w_aff
        else:
            score = np.zeros((n, n_items))
        seg = segments[start:stop]
        if w_seg and fitted.segment_log_lift.shape[0]:
            labelled = np.flatnonzero(seg >= 0)
            score[labelled] += w_seg * fitted.segment_log_lift[seg[labelled]]
        score += w_pop * fitted.log_share
        # Exclusions: an item bought within its window is no candidate.
        score[b_rows[blocked], b_cols[blocked]] = -np.inf
        out.append(_top_k(fitted, score, k, start, affinity, seg))
    if not out:
        nothing = np.zeros(0, dtype=np.int64)
        return _Top(nothing, nothing, *(np.zeros(0) for _ in range(4)))
    parts = list(zip(*out, strict=True))
    return _Top(*(np.concatenate(p) for p in parts))


def _score_same_for_all(
    fitted: _Fitted, rows: IntArray, *, k: int, weight: float, window: FloatArray
) -> _Top:
    """:func:`_score` when every customer's scores are the same (popularity alone): rank
    the items once; a customer who bought ``n`` finds their ``k`` in the first ``k + n``."""
    n_items = len(fitted.data.item_ids)
    score = weight * fitted.log_share
    ranking = np.lexsort((np.arange(n_items), -score))  # ties by item id
    basket = fitted.basket
    has = rows >= 0
    bought = np.zeros(rows.size, dtype=np.int64)
    bought[has] = np.diff(basket.indptr)[rows[has]]
    depth = np.minimum(k + bought, n_items)
    owner = np.repeat(np.arange(rows.size), depth)
    position = np.arange(int(depth.sum())) - np.repeat(np.cumsum(depth) - depth, depth)
    item = ranking[position]
    # The customers' blocked (customer, item) pairs, as keys.
    starts = basket.indptr[rows[has]]
    lengths = bought[has]
    entry = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    entry += np.repeat(starts, lengths)
    who = np.repeat(np.flatnonzero(has), lengths)
    cols = basket.indices[entry].astype(np.int64)
    blocked = basket.data[entry] - 1.0 < window[cols]
    blocked_keys = who[blocked] * n_items + cols[blocked]
    open_ = ~np.isin(owner * n_items + item, blocked_keys)
    owner, item = owner[open_], item[open_]
    first = np.searchsorted(owner, owner, side="left")
    keep = np.arange(owner.size) - first < k
    owner, item = owner[keep], item[keep]
    zeros = np.zeros(item.size)
    return _Top(owner, item, score[item], zeros, zeros.copy(), fitted.log_share[item])


def _top_k(
    fitted: _Fitted,
    score: FloatArray,
    k: int,
    offset: int,
    affinity: FloatArray | None,
    segments: IntArray,
) -> tuple[Any, ...]:
    """The k best finite scores per row; ties by column (item id) ascending: (row + offset,
    column, score, affinity, segment, popularity), flat."""
    n, n_items = score.shape
    kk = min(k, n_items)
    if kk == 0 or n == 0:
        nothing = np.zeros(0, dtype=np.int64)
        return nothing, nothing, *(np.zeros(0) for _ in range(4))
    threshold = np.partition(score, n_items - kk, axis=1)[:, n_items - kk]
    rows, cols = np.nonzero((score >= threshold[:, None]) & np.isfinite(score))
    values = score[rows, cols]
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    first = np.searchsorted(rows, rows, side="left")
    keep = np.arange(rows.size) - first < kk
    rows, cols, values = rows[keep], cols[keep], values[keep]
    segment = np.zeros(rows.size)
    if fitted.segment_log_lift.shape[0]:
        labelled = segments[rows] >= 0
        segment[labelled] = fitted.segment_log_lift[segments[rows][labelled], cols[labelled]]
    return (
        rows + offset,
        cols,
        values,
        np.zeros(rows.size) if affinity is None else affinity[rows, cols],
        segment,
        fitted.log_share[cols],
    )


# --------------------------------------------------------------------------- reasons


def _percent(share: float) -> str:
    value = 100.0 * share
    if value >= 10 or value == 0:
        return f"{value:.0f}%"
    if value >= 1:
        return f"{value:.1f}%"
    return f"{value:.2g}%"


def _lookup(matrix: sp.csr_matrix, rows: IntArray, cols: IntArray) -> FloatArray:
    """``matrix[rows[n], cols[n]]`` for every n (0 where nothing is stored)."""
    if rows.size == 0 or matrix.nnz == 0:
        return np.zeros(rows.size)
    return np.asarray(matrix[rows, cols], dtype=np.float64).ravel()


def _best_evidence(fitted: _Fitted, top: _Top, history: IntArray) -> tuple[IntArray, FloatArray]:
    """Per pick j, the customer's item i with the largest part ``w_ci lift_ij`` of the
    mixture: its code (-1: none) and the lift."""
    best_item = np.full(top.item.size, -1, dtype=np.int64)
    best_lift = np.zeros(top.item.size)
    pick = np.flatnonzero(history >= 0)
    if pick.size == 0:
        return best_item, best_lift
    weights = fitted.weights
    starts = weights.indptr[history[pick]]
    lengths = weights.indptr[history[pick] + 1] - starts
    owner = np.repeat(pick, lengths)
    entry = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    entry += np.repeat(starts, lengths)
    i, w = weights.indices[entry].astype(np.int64), weights.data[entry]
    j = top.item[owner]
    share = fitted.buyers / max(fitted.n_buyers, 1)
    m = fitted.smoothing
    count = _lookup(fitted.cooccurrence, i, j)
    prior = fitted.group_lift[fitted.group_of_item[i], fitted.group_of_item[j]]
    lift = (count + m * share[j] * prior) / ((fitted.buyers[i] + m) * share[j])
    part = np.where(i == j, -np.inf, w * lift)
    # Entries run by pick, then by item code: the first maximum is the smallest code.
    best = np.maximum.reduceat(part, np.cumsum(lengths) - lengths)
    at_best = np.flatnonzero((part == np.repeat(best, lengths)) & np.isfinite(part))
    _, first = np.unique(owner[at_best], return_index=True)
    chosen = at_best[first]
    best_item[owner[chosen]] = i[chosen]
    best_lift[owner[chosen]] = lift[chosen]
    return best_item, best_lift


def _phrases(keys: IntArray, words: Any) -> NDArray[np.object_]:
    """``words(key, n)`` for every key (``n``: where the key first occurs), formatted once
    per distinct key."""
    if keys.size == 0:
        return np.zeros(0, dtype=object)
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    texts = np.empty(unique.size, dtype=object)
    texts[:] = [words(int(u), int(n)) for u, n in zip(unique, first, strict=True)]
    out: NDArray[np.object_] = texts[inverse.ravel()]
    return out


def _reasons(
    fitted: _Fitted,
    top: _Top,
    rows: IntArray,
    segments: IntArray,
    weights: Mapping[str, float],
    window: FloatArray,
    method: str,
) -> list[str]:
    """A reason in words per recommended item: a due repurchase first, then the stronger
    of the affinity and segment evidence (by its part of the score); else popularity."""
    data = fitted.data
    item_names = [str(v) for v in data.item_ids.to_pylist()]
    group_names = [] if data.group_ids is None else [str(v) for v in data.group_ids.to_pylist()]
    share = fitted.buyers / max(fitted.n_buyers, 1)
    n_items = max(len(item_names), 1)
    item = top.item
    history = rows[top.position]
    has = history >= 0
    text = _phrases(
        item, lambda j, _: f"popular overall ({_percent(float(share[j]))} of customers)"
    )
    if method == "affinity" and weights["affinity"] > 0:
        best_item, best_lift = _best_evidence(fitted, top, history)
        with_lift = (best_item >= 0) & (best_lift >= _MIN_REASON_LIFT)
    else:
        best_item, best_lift = np.full(item.size, -1, dtype=np.int64), np.zeros(item.size)
        with_lift = np.zeros(item.size, dtype=bool)
    group = segments[top.position]
    with_segment = np.zeros(item.size, dtype=bool)
    if method == "affinity" and weights["segment"] > 0 and fitted.segment_share.shape[0]:
        labelled = group >= 0
        seg_share = np.zeros(item.size)
        seg_share[labelled] = fitted.segment_share[group[labelled], item[labelled]]
        with_segment = labelled & (top.segment > 0) & (seg_share > share[item])

    def bought_with(key: int, at: int) -> str:
        i = key // n_items
        lift = float(pair_lift[at])
        category = int(fitted.group_of_item[i])
        named = f"{group_names[category]}; " if category < len(group_names) else ""
        return f"bought with {item_names[i]} ({named}lift {lift:.1f})"

    def popular_in(key: int, _: int) -> str:
        g, j = divmod(key, n_items)
        return (
            f"popular in segment {fitted.segment_ids[g]} "
            f"({_percent(fitted.segment_share[g, j])} vs {_percent(share[j])})"
        )

    # The lift of a pair is the pair's, whoever the customer: one phrase per pair.
    lift_key = best_item[with_lift] * n_items + item[with_lift]
    pair_lift = best_lift[with_lift]
    affinity_text = np.empty(item.size, dtype=object)
    affinity_text[with_lift] = _phrases(lift_key, bought_with)
    segment_text = np.empty(item.size, dtype=object)
    segment_text[with_segment] = _phrases(
        group[with_segment] * n_items + item[with_segment], popular_in
    )
    both = with_lift & with_segment
    affinity_first = weights["affinity"] * top.affinity >= weights["segment"] * top.segment
    text[with_lift & ~both] = affinity_text[with_lift & ~both]
    text[with_segment & ~both] = segment_text[with_segment & ~both]
    first = np.where(affinity_first, affinity_text, segment_text)[both]
    second = np.where(affinity_first, segment_text, affinity_text)[both]
    text[both] = first + "; " + second
    # Days since the last purchase + 1 of a pick the customer bought (0: never bought).
    if np.isfinite(window).any():
        stored = np.zeros(item.size)
        stored[has] = _lookup(fitted.basket, history[has], item[has])
        for n in np.flatnonzero(stored):
            text[n] = (
                f"due again: last bought {int(stored[n] - 1.0)} days ago "
                f"(window {window[item[n]]:g} days); {text[n]}"
            )
    return [str(t) for t in text]


# --------------------------------------------------------------------------- public API


def _check_options(
    level: str,
    k: int,
    method: str,
    weights: Mapping[str, float] | None,
    half_life_days: float | None,
    smoothing: float,
) -> dict[str, float]:
    if level not in LEVELS:
        raise ConfigError(
            f"`level` {level!r} is not one of {', '.join(LEVELS)}{did_you_mean(level, LEVELS)}",
            fix="pass `level='category'` or `level='product'`",
            parameter="level",
        )
    if method not in METHODS:
        raise ConfigError(
            f"`method` {method!r} is not one of {', '.join(METHODS)}"
            f"{did_you_mean(method, METHODS)}",
            fix="pass `method='affinity'` (or 'popularity', the baseline)",
            parameter="method",
        )
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(
            f"`k` {k!r} is not a whole number >= 1", fix="pass e.g. `k=5`", parameter="k"
        )
    if half_life_days is not None and not (
        isinstance(half_life_days, int | float) and half_life_days > 0
    ):
        raise ConfigError(
            f"`half_life_days` {half_life_days!r} is not a number > 0",
            fix="pass e.g. `half_life_days=180`, or None for no decay",
            parameter="half_life_days",
        )
    if not (isinstance(smoothing, int | float) and smoothing > 0 and math.isfinite(smoothing)):
        raise ConfigError(
            f"`smoothing` {smoothing!r} is not a number > 0",
            fix="pass e.g. `smoothing=10`",
            parameter="smoothing",
        )
    merged = dict(DEFAULT_WEIGHTS)
    for name, value in (weights or {}).items():
        if name not in DEFAULT_WEIGHTS:
            raise ConfigError(
                f"`weights` has no component {name!r}{did_you_mean(name, DEFAULT_WEIGHTS)}",
                fix=f"use {', '.join(DEFAULT_WEIGHTS)}",
                parameter="weights",
            )
        if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
            raise ConfigError(
                f"`weights[{name!r}]` {value!r} is not a number >= 0",
                fix="pass e.g. 1.0",
                parameter="weights",
            )
        merged[name] = float(value)
    if method == "popularity":
        merged = {"affinity": 0.0, "segment": 0.0, "popularity": 1.0}
    return merged


def _check_windows(
    replenishment: Mapping[Any, float] | None, repurchase_after_days: float | None
) -> tuple[dict[Any, float], float]:
    found = dict(replenishment or {})
    for item, days in found.items():
        if not (isinstance(days, int | float) and days > 0):
            raise ConfigError(
                f"`replenishment[{item!r}]` {days!r} is not a number of days > 0",
                fix="e.g. {'grocery': 14}",
                parameter="replenishment",
            )
    if repurchase_after_days is None:
        return found, math.inf
    if not (isinstance(repurchase_after_days, int | float) and repurchase_after_days > 0):
        raise ConfigError(
            f"`repurchase_after_days` {repurchase_after_days!r} is not a number of days > 0",
            fix="pass e.g. `repurchase_after_days=365`, or None: never again",
            parameter="repurchase_after_days",
        )
    return found, float(repurchase_after_days)


def _segment_codes(
    customers: Sequence[Any] | pa.Array | pa.ChunkedArray,
    segments: Sequence[Any] | pa.Array | pa.ChunkedArray | None,
) -> tuple[pa.Array, list[str], IntArray]:
    if isinstance(customers, pa.ChunkedArray):
        ids = customers.combine_chunks()
    elif isinstance(customers, pa.Array):
        ids = customers
    else:
        ids = pa.array(list(customers), from_pandas=True)
    if ids.null_count:
        raise DataValidationError(
            "customers: an id is empty", fix="give every customer an id", parameter="customers"
        )
    if len(pc.unique(ids)) != len(ids):
        raise DataValidationError(
            "customers: an id appears more than once",
            fix="give each customer once, with one segment",
            parameter="customers",
        )
    if segments is None:
        return ids, [], np.full(len(ids), -1, dtype=np.int64)
    labels = (
        segments.to_pylist() if isinstance(segments, pa.Array | pa.ChunkedArray) else list(segments)
    )
    if len(labels) != len(ids):
        raise DataValidationError(
            f"customers ({len(ids)}) and segments ({len(labels)}) differ in length",
            fix="give one segment label per customer (None: no segment)",
            parameter="segments",
        )
    names = sorted({str(s) for s in labels if s is not None})
    index = {name: n for n, name in enumerate(names)}
    codes = np.array([-1 if s is None else index[str(s)] for s in labels], dtype=np.int64)
    return ids, names, codes


def _rows_of(customers: pa.Array, data: _Purchases) -> IntArray:
    if not len(data.customer_ids):
        return np.full(len(customers), -1, dtype=np.int64)
    wanted = customers
    if customers.type != data.customer_ids.type:
        try:
            wanted = customers.cast(data.customer_ids.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise DataValidationError(
                f"customers are {customers.type} ids, purchases have {data.customer_ids.type}",
                fix="give the customer ids one type in both",
                parameter="customers",
            ) from None
    return _codes(wanted, data.customer_ids)


def _table(
    customers: pa.Array,
    fitted: _Fitted,
    top: _Top,
    reasons: list[str],
) -> pa.Table:
    rank = np.zeros(top.position.size, dtype=np.int32)
    if top.position.size:
        first = np.searchsorted(top.position, top.position, side="left")
        rank = (np.arange(top.position.size) - first + 1).astype(np.int32)
    return pa.table(
        {
            "customer_id": customers.take(pa.array(top.position, type=pa.int64())),
            "rank": pa.array(rank, type=pa.int32()),
            "item": fitted.data.item_ids.take(pa.array(top.item, type=pa.int64())),
            "score": pa.array(top.score, type=pa.float64()),
            "affinity": pa.array(top.affinity, type=pa.float64()),
            "segment": pa.array(top.segment, type=pa.float64()),
            "popularity": pa.array(top.popularity, type=pa.float64()),
            "reason": pa.array(reasons, type=pa.string()),
        }
    )


def recommend(
    purchases: Any,
    customers: Sequence[Any] | pa.Array | pa.ChunkedArray,
    segments: Sequence[Any] | pa.Array | pa.ChunkedArray | None = None,
    *,
    as_of: dt.date | dt.datetime,
    level: Level = "category",
    k: int = 5,
    method: Method = "affinity",
    replenishment: Mapping[Any, float] | None = None,
    repurchase_after_days: float | None = None,
    weights: Mapping[str, float] | None = None,
    half_life_days: float | None = 180.0,
    smoothing: float = 10.0,
    category_backoff: bool = True,
) -> pa.Table:
    """The ``k`` best items to offer each customer, with the score and a reason.

    Parameters
    ----------
    purchases
        Purchase lines: an Arrow table (or a mapping of column to array, or a pandas frame)
        with ``customer_id``, ``order_ts`` (timestamps: naive UTC or aware; or dates), the
        level's item column (``product_id`` or ``category``) and optionally ``quantity``
        (lines without a positive quantity are no purchase) and, at the product level,
        ``category`` (the prior of the product lifts). :func:`purchase_lines` builds it
        from the contract's orders and order lines. Lines at or after ``as_of`` are
        ignored.
    customers
        The customers to recommend for, each once; they may have no purchases (they get
        the segment's and the base's most popular items).
    segments
        One segment label per customer (None: none). The segment shares are computed
        over these customers: pass the whole base with its segments, even for a few
        recommendations.
    as_of
        The time of the recommendation: a date means 00:00 UTC that day.
    level
        ``"category"`` or ``"product"``: which column of ``purchases`` is the item.
    k
        Items per customer (fewer when fewer are eligible).
    method
        ``"affinity"`` (the score in the module's docstring) or ``"popularity"`` (the
        baseline: the items most customers bought).
    replenishment
        Item -> days: an item the customer bought fewer days ago than this is excluded,
        one bought longer ago may be recommended again.
    repurchase_after_days
        The window of every item not in ``replenishment``; None (default): an item the
        customer bought is never recommended to them again.
    weights
        Weights of the components ``affinity``, ``segment``, ``popularity`` (default 1
        each); missing ones keep their default.
    half_life_days
        Half-life of a purchase's weight in the affinity: an item bought this many days
        before ``as_of`` counts half as much as one bought at ``as_of``; None: no decay.
    smoothing
        Pseudo-customers ``m`` shrinking each lift and segment share towards the prior.
    category_backoff
        At the product level, shrink product lifts towards their categories' lift (needs
        a ``category`` column); False: towards 1.

    Returns
    -------
    pyarrow.Table
        ``customer_id, rank, item, score, affinity, segment, popularity, reason``: up to
        ``k`` rows per customer, in the order of ``customers`` then rank (best first;
        equal scores by item id). ``affinity`` is ``A(c, j)``, ``segment`` ``S(g, j)``,
        ``popularity`` ``log p_j``; ``score`` their weighted sum.

    Raises
    ------
    ConfigError
        If an option is out of range.
    DataValidationError
        If a column is missing or empty in places, or customers repeat.

    Examples
    --------
    Everyone who bought a tent also bought a stove; ``c`` has the tent, not the stove:

    >>> history = {
    ...     "customer_id": ["a", "a", "b", "b", "c", "d", "d"],
    ...     "order_ts": [dt.datetime(2025, 3, 1)] * 7,
    ...     "category": ["tent", "stove", "tent", "stove", "tent", "books", "maps"],
    ... }
    >>> recs = recommend(history, ["c"], as_of=dt.date(2025, 4, 1), k=2)
    >>> recs.select(["item", "reason"]).to_pylist()[0]
    {'item': 'stove', 'reason': 'bought with tent (lift 1.1)'}
    >>> recommend(history, ["c"], as_of=dt.date(2025, 4, 1), method="popularity",
    ...           k=1).column("reason").to_pylist()
    ['popular overall (50% of customers)']
    """
    weights_used = _check_options(level, k, method, weights, half_life_days, smoothing)
    windows, default_window = _check_windows(replenishment, repurchase_after_days)
    as_of_s = _as_of_seconds(as_of)
    ids, segment_ids, segment_codes = _segment_codes(customers, segments)
    data = _read_purchases(purchases, level, as_of_s, backoff=category_backoff)
    rows = _rows_of(ids, data)
    segment_of = _segment_of_history(ids, rows, segment_codes)
    fitted = _fit(
        data,
        as_of_s,
        segment_of,
        segment_ids,
        half_life_days=half_life_days,
        smoothing=float(smoothing),
        with_affinity=method == "affinity" and weights_used["affinity"] > 0,
    )
    window = _windows(fitted, windows, default_window)
    top = _score(fitted, rows, segment_codes, k=int(k), weights=weights_used, window=window)
    reasons = _reasons(fitted, top, rows, segment_codes, weights_used, window, method)
    return _table(ids, fitted, top, reasons)


def _segment_of_history(ids: pa.Array, rows: IntArray, codes: IntArray) -> dict[str, int]:
    """History customer id (as text) -> segment code, for the customers with history."""
    names = ids.to_pylist()
    return {str(names[n]): int(codes[n]) for n in np.flatnonzero((rows >= 0) & (codes >= 0))}


def next_best(recommendations: pa.Table) -> dict[str, tuple[str, str]]:
    """Each customer's first recommendation and its reason (what a campaign attaches).

    Examples
    --------
    >>> recs = pa.table({"customer_id": ["a", "a"], "rank": [1, 2], "item": ["x", "y"],
    ...                  "reason": ["why x", "why y"]})
    >>> next_best(recs)
    {'a': ('x', 'why x')}
    """
    firsts = recommendations.filter(pc.equal(recommendations.column("rank"), 1))
    return {
        str(c): (str(i), str(r))
        for c, i, r in zip(
            firsts.column("customer_id").to_pylist(),
            firsts.column("item").to_pylist(),
            firsts.column("reason").to_pylist(),
            strict=True,
        )
    }


@dataclass(frozen=True)
class HoldoutEvaluation:
    """Hit rate at ``k`` of the model and of the popularity baseline on a holdout.

    A customer is evaluated when they are among the customers given, bought something
    before the cutoff and bought, between the cutoff and ``as_of``, at least one item they
    had not bought before it. A *hit*: one of their top-``k`` items (recommended from the
    history before the cutoff) is such an item. Rates carry Wilson intervals; the ratio
    (model / baseline, paired on the same customers) a delta-method interval.

    Attributes
    ----------
    level, k, method
        What was evaluated.
    cutoff, as_of
        The test period, ``[cutoff, as_of)`` (``as_of`` None: no end), naive UTC.
    customers
        Customers evaluated.
    without_history, without_new_items
        Customers given but not evaluated: no purchase before the cutoff; nothing new
        bought after it.
    hits, baseline_hits
        Customers with a hit, for the model and the baseline.
    hit_rate, baseline_hit_rate, ratio
        ``(estimate, lower, upper)``; NaN where undefined (no customers, no baseline hit).
    confidence
        Level of the intervals.
    """

    level: str
    k: int
    method: str
    cutoff: dt.datetime
    as_of: dt.datetime | None
    customers: int
    without_history: int
    without_new_items: int
    hits: int
    baseline_hits: int
    hit_rate: tuple[float, float, float]
    baseline_hit_rate: tuple[float, float, float]
    ratio: tuple[float, float, float]
    confidence: float

    def summary(self) -> str:
        """The evaluation in three lines of words and numbers.

        Examples
        --------
        >>> e = HoldoutEvaluation("product", 5, "affinity", dt.datetime(2025, 10, 1),
        ...     dt.datetime(2025, 12, 31), 1000, 10, 400, 200, 100, (0.2, 0.18, 0.23),
        ...     (0.1, 0.08, 0.12), (2.0, 1.7, 2.3), 0.95)
        >>> print(e.summary())
        level product, k 5, 1000 customers (95% intervals)
        hit rate 20.0% [18.0, 23.0] vs popularity 10.0% [8.0, 12.0]
        ratio 2.00 [1.70, 2.30]
        """
        m, b, r = self.hit_rate, self.baseline_hit_rate, self.ratio
        return (
            f"level {self.level}, k {self.k}, {self.customers} customers "
            f"({100 * self.confidence:g}% intervals)\n"
            f"hit rate {100 * m[0]:.1f}% [{100 * m[1]:.1f}, {100 * m[2]:.1f}] vs popularity "
            f"{100 * b[0]:.1f}% [{100 * b[1]:.1f}, {100 * b[2]:.1f}]\n"
            f"ratio {r[0]:.2f} [{r[1]:.2f}, {r[2]:.2f}]"
        )


def _as_datetime(seconds: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(seconds=seconds)


def evaluate(
    purchases: Any,
    customers: Sequence[Any] | pa.Array | pa.ChunkedArray,
    segments: Sequence[Any] | pa.Array | pa.ChunkedArray | None = None,
    *,
    cutoff: dt.date | dt.datetime,
    as_of: dt.date | dt.datetime | None = None,
    level: Level = "category",
    k: int = 5,
    method: Method = "affinity",
    weights: Mapping[str, float] | None = None,
    half_life_days: float | None = 180.0,
    smoothing: float = 10.0,
    category_backoff: bool = True,
    confidence: float = 0.95,
) -> HoldoutEvaluation:
    """Holdout hit rate at ``k`` of :func:`recommend` against the popularity baseline.

    The history before ``cutoff`` trains both (with the segments of all ``customers``);
    the purchases from ``cutoff`` up to ``as_of`` (default: all after it) test them. No
    item bought before the cutoff is recommended (replenishment plays no part: a hit
    must be an item new to the customer).

    Parameters
    ----------
    purchases, customers, segments, level, k, method, weights, half_life_days, smoothing, \
category_backoff
        As for :func:`recommend`.
    cutoff
        Train before, test from this time (a date: 00:00 UTC).
    as_of
        End of the test period (exclusive); None: no end.
    confidence
        Level of the intervals.

    Returns
    -------
    HoldoutEvaluation
        Customers evaluated, hits and hit rates of model and baseline with intervals, and
        their ratio.

    Examples
    --------
    >>> day = dt.datetime(2025, 1, 1)
    >>> later = dt.datetime(2025, 6, 1)
    >>> history = {
    ...     "customer_id": ["a", "a", "b", "b", "c", "c", "d", "d", "e", "e", "f"],
    ...     "order_ts": [day] * 10 + [later],
    ...     "category": ["tent", "stove", "tent", "stove", "books", "maps", "books", "maps",
    ...                  "books", "maps", "stove"],
    ... }
    >>> history["customer_id"].append("f"); history["order_ts"].append(day)
    >>> history["category"].append("tent")
    >>> e = evaluate(history, list("abcdef"), cutoff=dt.date(2025, 3, 1), k=1)
    >>> e.customers, e.hits, e.baseline_hits
    (1, 1, 0)
    """
    if not 0.0 < confidence < 1.0:
        raise ConfigError(
            f"`confidence` {confidence!r} is not in (0, 1)",
            fix="pass e.g. `confidence=0.95`",
            parameter="confidence",
        )
    weights_used = _check_options(level, k, method, weights, half_life_days, smoothing)
    cutoff_s = _as_of_seconds(cutoff, "cutoff")
    end_s = np.iinfo(np.int64).max if as_of is None else _as_of_seconds(as_of)
    if end_s <= cutoff_s:
        raise ConfigError(
            f"`as_of` {as_of} is not after `cutoff` {cutoff}",
            fix="test on a period after the cutoff",
            parameter="as_of",
        )
    ids, segment_ids, segment_codes = _segment_codes(customers, segments)
    train = _read_purchases(purchases, level, cutoff_s, backoff=category_backoff)
    test = _read_purchases(purchases, level, end_s, backoff=False, since_s=cutoff_s)
    rows = _rows_of(ids, train)
    fitted = _fit(
        train,
        cutoff_s,
        _segment_of_history(ids, rows, segment_codes),
        segment_ids,
        half_life_days=half_life_days,
        smoothing=float(smoothing),
        with_affinity=method == "affinity" and weights_used["affinity"] > 0,
    )
    n_items = len(train.item_ids)
    # The test period's (customer, item) pairs in the training codes; an item the training
    # period never saw gets code n_items (new, but no model can recommend it).
    test_rows = _rows_of(ids, test)
    position = np.full(len(test.customer_ids), -1, dtype=np.int64)
    position[test_rows[test_rows >= 0]] = np.flatnonzero(test_rows >= 0)
    asked = position[test.customer] if test.customer.size else np.zeros(0, np.int64)
    item = _codes(test.item_ids, train.item_ids)[test.item] if test.item.size else asked
    item = np.where(item < 0, n_items, item)
    ok = asked >= 0
    asked, item = asked[ok], item[ok]
    history = rows[asked]
    bought_before = np.zeros(asked.size, dtype=bool)
    has = (history >= 0) & (item < n_items)
    if has.any():
        bought_before[has] = np.asarray(fitted.basket[history[has], item[has]]).ravel() > 0
    new_key = np.unique(asked[~bought_before] * (n_items + 1) + item[~bought_before])
    with_new = np.zeros(len(ids), dtype=bool)
    with_new[new_key // (n_items + 1)] = True
    with_history = rows >= 0
    chosen = np.flatnonzero(with_history & with_new)
    never = np.full(n_items, math.inf)
    hits: dict[str, BoolArray] = {}
    for name, used in (
        ("model", weights_used),
        ("baseline", {"affinity": 0.0, "segment": 0.0, "popularity": 1.0}),
    ):
        top = _score(
            fitted, rows[chosen], segment_codes[chosen], k=int(k), weights=used, window=never
        )
        key = chosen[top.position] * (n_items + 1) + top.item
        hit = np.zeros(len(ids), dtype=bool)
        hit[chosen[top.position][np.isin(key, new_key)]] = True
        hits[name] = hit[chosen]
    n = int(chosen.size)
    model, base = hits["model"].astype(np.float64), hits["baseline"].astype(np.float64)
    rate = wilson_interval(model.sum(), n, level=confidence)
    base_rate = wilson_interval(base.sum(), n, level=confidence)
    ratio = ratio_interval(
        model.sum(),
        base.sum(),
        model.sum(),
        base.sum(),
        (model * base).sum(),
        n,
        level=confidence,
    )

    def triple(iv: Any) -> tuple[float, float, float]:
        return (float(iv.estimate), float(iv.lower), float(iv.upper))

    return HoldoutEvaluation(
        level=level,
        k=int(k),
        method=method,
        cutoff=_as_datetime(cutoff_s),
        as_of=None if as_of is None else _as_datetime(end_s),
        customers=n,
        without_history=int((~with_history).sum()),
        without_new_items=int((with_history & ~with_new).sum()),
        hits=int(model.sum()),
        baseline_hits=int(base.sum()),
        hit_rate=triple(rate),
        baseline_hit_rate=triple(base_rate),
        ratio=triple(ratio),
        confidence=confidence,
    )
