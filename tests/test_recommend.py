"""Next-best category / product (docs/activation-recommendations.md): exclusions, k, ties
and reasons as properties; the lift by hand; the score against a brute-force reading of
its formula; planted co-purchase structure; the demo's holdout acceptance (issue 13)."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segvalue.activation.recommend import (
    evaluate,
    next_best,
    purchase_lines,
    recommend,
)
from segvalue.data.demo import generate_demo
from segvalue.errors import ConfigError, DataValidationError

AS_OF = dt.datetime(2025, 7, 1)
DAY = dt.timedelta(days=1)


def _history(rows: list[tuple[str, str, int]], column: str = "category") -> dict[str, list[Any]]:
    """(customer, item, days before AS_OF) -> purchase columns."""
    return {
        "customer_id": [r[0] for r in rows],
        "order_ts": [AS_OF - r[2] * DAY for r in rows],
        column: [r[1] for r in rows],
    }


def _by_customer(table: pa.Table) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in table.to_pylist():
        out[row["customer_id"]].append(row)
    return out


# ---------------------------------------------------------------------------- by hand
def test_affinity_lift_by_hand() -> None:
    # a, b: x and y; c: x only; d: z. N = 4, n_x = 3, n_y = 2, n_z = 1, c_xy = 2, c_xz = 0.
    # With m = 2 pseudo-customers: P(y | x) = (2 + 2 * 0.5) / (3 + 2) = 0.6, lift 1.2;
    # P(z | x) = (0 + 2 * 0.25) / 5 = 0.1, lift 0.4.
    history = _history([("a", "x", 5), ("a", "y", 5), ("b", "x", 5), ("b", "y", 5)])
    for key, more in zip(history, (["c", "d"], [AS_OF - DAY] * 2, ["x", "z"]), strict=True):
        history[key] += more
    recs = recommend(history, ["c"], as_of=AS_OF, k=5, smoothing=2.0, half_life_days=None)
    rows = recs.to_pylist()
    assert [r["item"] for r in rows] == ["y", "z"]
    y, z = rows
    assert y["affinity"] == pytest.approx(math.log(1.2), rel=1e-12)
    assert z["affinity"] == pytest.approx(math.log(0.4), rel=1e-12)
    assert y["popularity"] == pytest.approx(math.log(0.5), rel=1e-12)
    assert y["segment"] == 0.0
    assert y["score"] == pytest.approx(math.log(1.2 * 0.5), rel=1e-12)
    assert y["reason"] == "bought with x (lift 1.2)"
    assert z["reason"] == "popular overall (25% of customers)"


def test_segment_share_by_hand() -> None:
    # Segment "campers" (a, b, c) bought tents 2 of 3; the base (a..e) 2 of 5. With m = 1:
    # s = (2 + 1 * 0.4) / (3 + 1) = 0.6, S = log(0.6 / 0.4).
    history = _history(
        [("a", "tent", 3), ("b", "tent", 3), ("c", "book", 3), ("d", "book", 3), ("e", "map", 3)]
    )
    recs = recommend(
        history,
        ["a", "b", "c", "d", "e"],
        ["campers", "campers", "campers", "readers", None],
        as_of=AS_OF,
        smoothing=1.0,
        weights={"affinity": 0.0},
    )
    pick = [r for r in recs.to_pylist() if r["customer_id"] == "c" and r["item"] == "tent"]
    assert pick[0]["segment"] == pytest.approx(math.log(0.6 / 0.4), rel=1e-12)
    assert pick[0]["rank"] == 1
    assert pick[0]["reason"] == "popular in segment campers (67% vs 40%)"
    e = [r for r in recs.to_pylist() if r["customer_id"] == "e"]
    assert all(r["segment"] == 0.0 for r in e)  # no segment: no segment term


# ---------------------------------------------------------------------------- brute force
def _brute_scores(
    lines: dict[str, list[Any]],
    customer: str,
    segment_of: dict[str, str | None],
    *,
    m: float,
    half_life: float,
) -> dict[str, tuple[float, float, float]]:
    """(affinity, segment, popularity) of every item for ``customer``, read off the
    module's formula with plain loops (product level, category prior)."""
    last: dict[tuple[str, str], dt.datetime] = {}
    category: dict[str, str] = {}
    for c, ts, item, cat in zip(
        lines["customer_id"],
        lines["order_ts"],
        lines["product_id"],
        lines["category"],
        strict=True,
    ):
        if ts < AS_OF:
            last[(c, item)] = max(last.get((c, item), ts), ts)
            category[item] = cat
    customers = sorted({c for c, _ in last})
    items = sorted(category)
    bought = {c: {i for (cc, i) in last if cc == c} for c in customers}
    n = len(customers)
    buyers = {i: sum(i in bought[c] for c in customers) for i in items}
    p = {i: buyers[i] / n for i in items}
    both = {
        (i, j): sum(i in bought[c] and j in bought[c] for c in customers)
        for i in items
        for j in items
    }
    cats = sorted(set(category.values()))
    obs = dict.fromkeys(((a, b) for a in cats for b in cats), 0.0)
    exp = dict.fromkeys(obs, 0.0)
    for i in items:
        for j in items:
            if i != j:
                obs[category[i], category[j]] += both[i, j]
                exp[category[i], category[j]] += buyers[i] * buyers[j] / n
    group_lift = {key: (obs[key] + m) / (exp[key] + m) for key in obs}
    mine = bought.get(customer, set())
    raw = {
        i: 0.5 ** ((AS_OF - last[customer, i]).total_seconds() / 86400 / half_life) for i in mine
    }
    total = sum(raw.values())
    seg = segment_of.get(customer)
    members = [c for c in customers if seg is not None and segment_of.get(c) == seg]
    out = {}
    for j in items:
        mixture = 0.0
        for i in mine:
            prior = group_lift[category[i], category[j]]
            conditional = (both[i, j] + m * p[j] * prior) / (buyers[i] + m)
            mixture += raw[i] / total * (1.0 if i == j else conditional / p[j])
        affinity = math.log(mixture) if mine else 0.0
        segment = 0.0
        if seg is not None:
            in_segment = sum(j in bought[c] for c in members)
            segment = math.log((in_segment + m * p[j]) / (len(members) + m) / p[j])
        out[j] = (affinity, segment, math.log(p[j]))
    return out


def _random_lines(seed: int, n_customers: int = 14, n_products: int = 9) -> dict[str, list[Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_customers):
        for _ in range(rng.integers(1, 6)):
            product = int(rng.integers(0, n_products))
            rows.append(
                (
                    f"c{c:02d}",
                    AS_OF - dt.timedelta(seconds=int(rng.integers(1, 400 * 86400))),
                    f"p{product}",
                    f"cat{product % 3}",
                )
            )
    # A line after as_of is not seen.
    rows.append(("c00", AS_OF + DAY, "p0", "cat0"))
    return {
        "customer_id": [r[0] for r in rows],
        "order_ts": [r[1] for r in rows],
        "product_id": [r[2] for r in rows],
        "category": [r[3] for r in rows],
    }


@pytest.mark.parametrize(("seed", "repurchase"), [(0, None), (1, None), (2, 1.0), (3, 30.0)])
def test_scores_match_the_formula_read_by_brute_force(seed: int, repurchase: float | None) -> None:
    lines = _random_lines(seed)
    customers = [*sorted(set(lines["customer_id"])), "newcomer"]
    segment_of = {c: (None if i % 4 == 3 else f"s{i % 2}") for i, c in enumerate(customers)}
    recs = recommend(
        lines,
        customers,
        [segment_of[c] for c in customers],
        as_of=AS_OF,
        level="product",
        k=100,
        smoothing=3.0,
        half_life_days=60.0,
        weights={"affinity": 1.3, "segment": 0.7, "popularity": 0.9},
        repurchase_after_days=repurchase,
    )
    seen = again = 0
    for customer, rows in _by_customer(recs).items():
        expected = _brute_scores(lines, customer, segment_of, m=3.0, half_life=60.0)
        for row in rows:
            a, s, p = expected[row["item"]]
            assert row["affinity"] == pytest.approx(a, rel=1e-9, abs=1e-12)
            assert row["segment"] == pytest.approx(s, rel=1e-9, abs=1e-12)
            assert row["popularity"] == pytest.approx(p, rel=1e-12)
            assert row["score"] == pytest.approx(1.3 * a + 0.7 * s + 0.9 * p, rel=1e-9)
            seen += 1
            again += row["reason"].startswith("due again")
    assert seen > 20
    assert (again > 0) == (repurchase is not None)


# ---------------------------------------------------------------------------- properties
history_rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d", "e", "f"]),
        st.sampled_from(["i1", "i2", "i3", "i4", "i5", "i6", "i7"]),
        st.integers(-5, 400),  # days before as_of; negative: after it (not seen)
        st.integers(-1, 3),  # quantity; <= 0: no purchase
    ),
    min_size=0,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(
    rows=history_rows,
    k=st.integers(1, 8),
    windows=st.dictionaries(st.sampled_from(["i1", "i2", "i3", "i9"]), st.integers(1, 300)),
    repurchase=st.one_of(st.none(), st.integers(1, 300)),
    segmented=st.booleans(),
    method=st.sampled_from(["affinity", "popularity"]),
)
def test_never_an_item_within_its_window_k_ties_reasons(
    rows: list[tuple[str, str, int, int]],
    k: int,
    windows: dict[str, int],
    repurchase: int | None,
    segmented: bool,
    method: Any,
) -> None:
    history = {
        "customer_id": [r[0] for r in rows],
        "order_ts": [AS_OF - r[2] * DAY for r in rows],
        "category": [r[1] for r in rows],
        "quantity": [r[3] for r in rows],
    }
    customers = ["a", "b", "c", "d", "e", "f", "g"]
    segments = ["x", "y", "x", None, "y", "x", "y"] if segmented else None
    recs = recommend(
        history,
        customers,
        segments,
        as_of=AS_OF,
        k=k,
        method=method,
        replenishment=windows,
        repurchase_after_days=repurchase,
    )
    # What each customer bought (before as_of, positive quantity) and when, by brute force.
    last: dict[tuple[str, str], int] = {}
    for c, item, days, qty in rows:
        if days > 0 and qty > 0:
            last[(c, item)] = min(last.get((c, item), days), days)
    known = {item for (_, item) in last}
    by_customer = _by_customer(recs)
    assert set(by_customer) <= set(customers)
    for customer in customers:
        picks = by_customer.get(customer, [])

        def window(item: str) -> float:
            days = windows.get(item, repurchase)
            return math.inf if days is None else float(days)

        blocked = {i for (c, i), days in last.items() if c == customer and days < window(i)}
        eligible = sorted(known - blocked)
        assert len(picks) == min(k, len(eligible))
        assert [p["rank"] for p in picks] == list(range(1, len(picks) + 1))
        items = [p["item"] for p in picks]
        assert not set(items) & blocked
        assert set(items) <= set(eligible)
        # best first; equal scores by item id
        keys = [(-p["score"], p["item"]) for p in picks]
        assert keys == sorted(keys)
        # the k best of all eligible items: nothing left out scores higher
        assert all(p["reason"] for p in picks)
        for p in picks:
            if (customer, p["item"]) in last:
                assert p["reason"].startswith("due again: last bought")
        if method == "popularity":  # the most bought eligible items, by brute force
            buyers = {i: sum(1 for (_, j) in last if j == i) for i in eligible}
            assert items == sorted(eligible, key=lambda i: (-buyers[i], i))[:k]
    # deterministic, and the order of the purchase lines does not matter
    again = recommend(
        {key: list(reversed(v)) for key, v in history.items()},
        customers,
        segments,
        as_of=AS_OF,
        k=k,
        method=method,
        replenishment=windows,
        repurchase_after_days=repurchase,
    )
    assert again.drop_columns(["score", "affinity"]).equals(
        recs.drop_columns(["score", "affinity"])
    )
    np.testing.assert_allclose(
        again.column("score").to_numpy(), recs.column("score").to_numpy(), rtol=1e-12
    )


@settings(max_examples=25, deadline=None)
@given(rows=history_rows, k=st.integers(1, 7))
def test_top_k_is_the_best_of_all_candidates(rows: list[tuple[str, str, int, int]], k: int) -> None:
    history = {
        "customer_id": [r[0] for r in rows],
        "order_ts": [AS_OF - r[2] * DAY for r in rows],
        "category": [r[1] for r in rows],
    }
    customers = ["a", "b", "c"]
    everything = _by_customer(recommend(history, customers, as_of=AS_OF, k=100))
    top = _by_customer(recommend(history, customers, as_of=AS_OF, k=k))
    for customer in customers:
        assert top.get(customer, []) == everything.get(customer, [])[:k]


def test_replenishment_window_and_repurchase_rule() -> None:
    history = _history(
        [
            ("a", "grocery", 40),
            ("a", "pets", 10),
            ("a", "garden", 400),
            ("b", "toys", 3),
            ("b", "grocery", 3),
        ]
    )
    items = lambda **kw: [  # noqa: E731
        r["item"] for r in recommend(history, ["a"], as_of=AS_OF, k=10, **kw).to_pylist()
    ]
    assert items() == ["toys"]  # never again by default
    assert "grocery" in items(replenishment={"grocery": 30})  # 40 days >= 30: due
    assert "grocery" not in items(replenishment={"grocery": 60})  # 40 < 60
    assert set(items(repurchase_after_days=365)) == {"toys", "garden"}
    got = items(replenishment={"grocery": 30, "garden": 1000}, repurchase_after_days=5)
    assert set(got) == {"toys", "grocery", "pets"}
    due = recommend(history, ["a"], as_of=AS_OF, replenishment={"grocery": 30}).to_pylist()
    reason = next(r["reason"] for r in due if r["item"] == "grocery")
    assert reason.startswith("due again: last bought 40 days ago (window 30 days)")


def test_planted_co_purchase_comes_first() -> None:
    # B is bought by everyone who buys A; the other items are bought at random (some more
    # popular than B). A customer with A and not B gets B first, with A as the reason.
    rng = np.random.default_rng(3)
    noise = [f"n{i}" for i in range(12)]
    popularity = np.linspace(3.0, 0.5, len(noise))
    rows = []
    for c in range(400):
        for item in rng.choice(noise, size=3, replace=False, p=popularity / popularity.sum()):
            rows.append((f"c{c:03d}", str(item), int(rng.integers(1, 300))))
        if c % 10 == 0:
            rows += [(f"c{c:03d}", "A", 20), (f"c{c:03d}", "B", 20)]
    rows += [("probe", "A", 5), ("probe", "n0", 5)]
    history = _history(rows, column="product_id")
    recs = recommend(history, ["probe"], as_of=AS_OF, level="product", k=3)
    first = recs.to_pylist()[0]
    assert first["item"] == "B"
    assert first["reason"].startswith("bought with A (lift ")
    # the baseline does not find it: B is not among the most bought
    baseline = recommend(history, ["probe"], as_of=AS_OF, level="product", k=3, method="popularity")
    assert "B" not in baseline.column("item").to_pylist()


# ---------------------------------------------------------------------------- inputs
def test_purchase_lines_join_and_skip_returns() -> None:
    orders = pa.table(
        {
            "order_id": ["o1", "o2", "r1"],
            "customer_id": ["a", "b", "a"],
            "order_ts": [AS_OF - 9 * DAY, AS_OF - 8 * DAY, AS_OF - 7 * DAY],
            "amount": [10.0, 5.0, -10.0],
        }
    )
    lines = pa.table(
        {
            "order_id": ["o2", "o1", "r1"],
            "product_id": ["p2", "p1", "p1"],
            "quantity": [1, 1, 1],
            "category": ["toys", "books", "books"],
        }
    )
    got = purchase_lines(orders, lines)
    assert got.column_names == ["customer_id", "order_ts", "product_id", "quantity", "category"]
    assert got.select(["customer_id", "product_id"]).to_pylist() == [
        {"customer_id": "a", "product_id": "p1"},
        {"customer_id": "b", "product_id": "p2"},
    ]
    with pytest.raises(DataValidationError, match="order_lines: column 'product_id'"):
        purchase_lines(orders, lines.drop_columns(["product_id"]))


def test_accepts_dates_aware_times_and_pandas() -> None:
    pd = pytest.importorskip("pandas")
    rows = [("a", "x", 3), ("a", "y", 3), ("b", "x", 2)]
    naive = recommend(_history(rows), ["b"], as_of=AS_OF)
    dates = _history(rows)
    dates["order_ts"] = [t.date() for t in dates["order_ts"]]
    assert recommend(dates, ["b"], as_of=AS_OF.date()).column("item").equals(naive.column("item"))
    aware = _history(rows)
    aware["order_ts"] = [t.replace(tzinfo=dt.UTC) for t in aware["order_ts"]]
    assert recommend(aware, ["b"], as_of=AS_OF.replace(tzinfo=dt.UTC)).equals(naive)
    assert recommend(pd.DataFrame(_history(rows)), ["b"], as_of=AS_OF).equals(naive)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"level": "sku"}, ConfigError, "`level` 'sku'"),
        ({"method": "afinity"}, ConfigError, "did you mean 'affinity'"),
        ({"k": 0}, ConfigError, "`k` 0"),
        ({"weights": {"segmnet": 1}}, ConfigError, "did you mean 'segment'"),
        ({"weights": {"segment": -1}}, ConfigError, "not a number >= 0"),
        ({"half_life_days": 0}, ConfigError, "half_life_days"),
        ({"smoothing": 0}, ConfigError, "smoothing"),
        ({"replenishment": {"x": 0}}, ConfigError, "replenishment"),
        ({"repurchase_after_days": -3}, ConfigError, "repurchase_after_days"),
        ({"level": "product"}, DataValidationError, "column 'product_id' is missing"),
    ],
)
def test_bad_options_name_the_parameter(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        recommend(_history([("a", "x", 1)]), ["a"], as_of=AS_OF, **kwargs)


def test_bad_customers_and_columns() -> None:
    history = _history([("a", "x", 1)])
    with pytest.raises(DataValidationError, match="more than once"):
        recommend(history, ["a", "a"], as_of=AS_OF)
    with pytest.raises(DataValidationError, match="differ in length"):
        recommend(history, ["a"], ["s", "t"], as_of=AS_OF)
    with pytest.raises(DataValidationError, match="empty values"):
        recommend({**history, "category": [None]}, ["a"], as_of=AS_OF)
    with pytest.raises(DataValidationError, match="not timestamps"):
        recommend({**history, "order_ts": ["2025-01-01"]}, ["a"], as_of=AS_OF)


def test_next_best_is_the_first_pick() -> None:
    history = _history([("a", "x", 3), ("a", "y", 3), ("b", "x", 2), ("c", "z", 1)])
    recs = recommend(history, ["b", "c"], as_of=AS_OF)
    best = next_best(recs)
    assert best["b"][0] == "y"
    assert set(best) == {"b", "c"}


def test_evaluate_counts_hits_by_hand() -> None:
    # Before the cutoff: tent buyers a, b also bought stoves; f bought a tent only.
    # After it f buys a stove: the model (stove first) hits, the baseline (books, maps:
    # bought by more customers) misses. e buys nothing new: not evaluated.
    early, late = 200, 10
    rows = [
        ("a", "tent", early),
        ("a", "stove", early),
        ("b", "tent", early),
        ("b", "stove", early),
        ("c", "books", early),
        ("c", "maps", early),
        ("d", "books", early),
        ("d", "maps", early),
        ("e", "books", early),
        ("e", "maps", early),
        ("e", "books", late),
        ("f", "tent", early),
        ("f", "stove", late),
    ]
    e = evaluate(_history(rows), list("abcdefg"), cutoff=AS_OF - 100 * DAY, k=1)
    assert (e.customers, e.hits, e.baseline_hits) == (1, 1, 0)
    assert (e.without_history, e.without_new_items) == (1, 5)
    assert e.hit_rate[0] == 1.0 and e.baseline_hit_rate[0] == 0.0
    assert math.isnan(e.ratio[0])
    with pytest.raises(ConfigError, match="not after `cutoff`"):
        evaluate(_history(rows), ["a"], cutoff=AS_OF, as_of=AS_OF - DAY)


# ---------------------------------------------------------------------------- the demo
@pytest.fixture(scope="module")
def demo() -> tuple[pa.Table, pa.Array, pa.Array, dt.date]:
    data = generate_demo(10_000, seed=42)
    lines = purchase_lines(data.tables["orders"], data.tables["order_lines"])
    truth = data.truth["customers"]
    return lines, truth.column("customer_id"), truth.column("persona"), data.as_of


def test_demo_acceptance_hit_rate_at_5_is_1_2x_popularity(demo: Any) -> None:
    """Issue 13: hit rate at 5 on the demo holdout (the last 13 weeks) >= 1.2 x the
    popularity baseline, at the product level (docs/activation-recommendations.md)."""
    lines, customers, persona, as_of = demo
    cutoff = as_of - dt.timedelta(weeks=13)
    for segments in (persona, None):  # the persona truth, and no segments at all
        e = evaluate(lines, customers, segments, cutoff=cutoff, as_of=as_of, level="product", k=5)
        assert e.customers > 2_000
        assert e.ratio[0] >= 1.2, e.summary()
        assert e.ratio[1] > 1.0, e.summary()  # the interval excludes "no better"


def test_demo_category_level_is_capped_at_5_but_beats_popularity_at_1(demo: Any) -> None:
    """With 10 categories, most customers buy one of the top 5 anyway: the baseline's hit
    rate at 5 is above 1 / 1.2, so no model can reach 1.2x there; at k = 1 it can."""
    lines, customers, persona, as_of = demo
    cutoff = as_of - dt.timedelta(weeks=13)
    at5 = evaluate(lines, customers, persona, cutoff=cutoff, as_of=as_of, k=5)
    assert at5.baseline_hit_rate[0] > 1 / 1.2
    at1 = evaluate(lines, customers, persona, cutoff=cutoff, as_of=as_of, k=1)
    assert at1.ratio[0] >= 1.2, at1.summary()


def test_demo_recommendations_never_repeat_a_purchase(demo: Any) -> None:
    lines, customers, persona, as_of = demo
    some = customers.slice(0, 2_000)
    recs = recommend(lines, some, persona.slice(0, 2_000), as_of=as_of, level="product")
    bought = set(
        zip(
            lines.column("customer_id").to_pylist(),
            lines.column("product_id").to_pylist(),
            strict=True,
        )
    )
    picks = list(
        zip(recs.column("customer_id").to_pylist(), recs.column("item").to_pylist(), strict=True)
    )
    assert len(picks) == 5 * 2_000
    assert not set(picks) & bought
    assert all(recs.column("reason").to_pylist())
