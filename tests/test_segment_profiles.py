"""Segment profiles, personas, quality warnings and market potential on hand-built data.

Every reference number below is computed by hand in the comment next to it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
import pytest

from segvalue.config import Condition, MarketPotentialConfig
from segvalue.errors import ConfigError, DataValidationError
from segvalue.segments.personas import (
    BENEFIT_PHRASES,
    NOTHING_DISTINCTIVE,
    build_personas,
    personas_json,
    personas_markdown,
)
from segvalue.segments.potential import market_potential
from segvalue.segments.profiles import (
    SegmentProfiler,
    SegmentProfiles,
    as_memberships,
    segment_profiles,
)
from segvalue.segments.quality import (
    default_max_segments,
    raise_for_errors,
    segment_quality,
)

# --------------------------------------------------------------------------- fixtures

IDS = ["a", "b", "c", "d", "e", "f"]
FEATURES = pa.table(
    {
        "customer_id": IDS,
        "income": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        "revenue": [1.0, 1.0, 1.0, 1.0, 2.0, 4.0],
        "share_toys": [0.5, 0.0, 0.0, 0.0, 1.0, 1.0],
        "touches_email": [1, 0, 0, 1, 3, 2],
        "engaged_email": [1, 0, 0, 0, 3, 2],
        "city": ["Oslo", "Oslo", "Rome", "Rome", "Oslo", None],
        "clv": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "churn_risk": [0.5, 0.5, 0.5, 0.5, 0.1, 0.3],
    }
)
MEMBERS = pa.table({"customer_id": IDS, "segment": ["L", "L", "L", "L", "H", "H"]})
SD_INCOME = math.sqrt(1750 / 5)  # deviations -25..25 from 35: squares sum to 1750, n - 1 = 5


def _rows(table: pa.Table, **match: Any) -> list[dict[str, Any]]:
    return [r for r in table.to_pylist() if all(r[k] == v for k, v in match.items())]


def _one(table: pa.Table, **match: Any) -> dict[str, Any]:
    rows = _rows(table, **match)
    assert len(rows) == 1, (match, rows)
    return rows[0]


@pytest.fixture(scope="module")
def profiles() -> SegmentProfiles:
    return segment_profiles(MEMBERS, ibis.memtable(FEATURES), scheme="value")


# --------------------------------------------------------------------------- profiles


def test_profile_sizes_revenue_and_clv(profiles: SegmentProfiles) -> None:
    assert profiles.population == 6
    high = _one(profiles.segments, segment="H")
    assert high["scheme"] == "value"
    assert high["customers"] == 2
    assert high["share"] == pytest.approx(2 / 6)
    assert high["revenue"] == pytest.approx(6.0)
    assert high["revenue_share"] == pytest.approx(0.6)  # (2 + 4) / 10
    assert high["clv_mean"] == pytest.approx(5.5)
    assert high["clv_total"] == pytest.approx(11.0)
    assert high["churn_risk_mean"] == pytest.approx(0.2)
    low = _one(profiles.segments, segment="L")
    assert low["revenue_share"] == pytest.approx(0.4)
    assert low["clv_total"] == pytest.approx(10.0)
    # largest segment first within a scheme
    assert profiles.segments.column("segment").to_pylist() == ["L", "H"]


def test_profile_numeric_index_and_z(profiles: SegmentProfiles) -> None:
    high = _one(profiles.numeric, segment="H", feature="income")
    assert high["segment_mean"] == pytest.approx(55.0)
    assert high["segment_median"] == pytest.approx(55.0)
    assert high["population_mean"] == pytest.approx(35.0)
    assert high["population_median"] == pytest.approx(35.0)
    assert high["population_sd"] == pytest.approx(SD_INCOME)
    assert high["n"] == 2
    assert high["index"] == pytest.approx(55 / 35 * 100)
    assert high["z"] == pytest.approx(20 / (SD_INCOME / math.sqrt(2)))  # 1.5119
    low = _one(profiles.numeric, segment="L", feature="income")
    assert low["index"] == pytest.approx(25 / 35 * 100)
    assert low["z"] == pytest.approx(-10 / (SD_INCOME / 2))
    # scores are summarised, shares and channels profiled separately, not as features
    features = set(profiles.numeric.column("feature").to_pylist())
    assert features == {"income", "revenue"}


def test_profile_categories_channels_and_cities(profiles: SegmentProfiles) -> None:
    toys = _one(profiles.attributes, segment="H", kind="category", value="toys")
    assert toys["segment_rate"] == pytest.approx(1.0)
    assert toys["population_rate"] == pytest.approx(2.5 / 6)
    assert toys["index"] == pytest.approx(240.0)
    assert _one(profiles.attributes, segment="L", value="toys")["index"] == pytest.approx(30.0)
    email = _one(profiles.attributes, segment="H", kind="channel", value="email")
    assert email["segment_rate"] == pytest.approx(1.0)  # e and f engaged
    assert email["population_rate"] == pytest.approx(0.5)  # a, e, f of six
    assert email["index"] == pytest.approx(200.0)
    assert email["z"] == pytest.approx(0.5 / (0.5 / math.sqrt(2)))
    # city: shares among members with a known city (f has none)
    oslo_h = _one(profiles.attributes, segment="H", attribute="city", value="Oslo")
    assert oslo_h["members"] == 1
    assert oslo_h["segment_rate"] == pytest.approx(1.0)
    assert oslo_h["population_rate"] == pytest.approx(0.6)  # 3 of 5 known
    assert oslo_h["index"] == pytest.approx(100 / 0.6)
    rome_l = _one(profiles.attributes, segment="L", attribute="city", value="Rome")
    assert rome_l["segment_rate"] == pytest.approx(0.5)
    assert rome_l["index"] == pytest.approx(125.0)
    assert not _rows(profiles.attributes, segment="H", value="Rome")


def test_profiles_of_several_schemes_and_customer_attributes() -> None:
    features = ibis.memtable(FEATURES.drop(["city"]))
    customers = ibis.memtable(
        pa.table({"customer_id": IDS, "city": ["Oslo", "Oslo", "Rome", "Rome", "Oslo", None]})
    )
    members = pa.table(
        {
            "customer_id": [*IDS, "a", "e"],
            "scheme": ["value"] * 6 + ["tags", "tags"],
            "segment": ["L", "L", "L", "L", "H", "H", "T", "T"],
        }
    )
    p = segment_profiles(members, features, customers=customers, numeric=["income"])
    assert p.schemes() == ["tags", "value"]
    tag = _one(p.segments, scheme="tags", segment="T")
    assert tag["customers"] == 2
    assert tag["share"] == pytest.approx(2 / 6)  # of every customer, not of the scheme
    assert _one(p.numeric, scheme="tags", feature="income")["segment_mean"] == pytest.approx(30)
    oslo = _one(p.attributes, scheme="tags", attribute="city", value="Oslo")
    assert oslo["segment_rate"] == pytest.approx(1.0)
    assert json.loads(json.dumps(p.to_dict()))["population"] == 6


def test_profile_column_errors_name_the_column() -> None:
    with pytest.raises(DataValidationError, match=r"'incme'.*did you mean 'income'"):
        segment_profiles(MEMBERS, ibis.memtable(FEATURES), numeric=["incme"])
    with pytest.raises(DataValidationError, match=r"'city' is string, not numeric"):
        segment_profiles(MEMBERS, ibis.memtable(FEATURES), numeric=["city"])
    with pytest.raises(DataValidationError, match=r"lacks column\(s\) \['segment'\]"):
        as_memberships(pa.table({"customer_id": ["a"], "cluster": ["1"]}))


def test_identifier_like_strings_are_not_profiled() -> None:
    n = 60
    features = ibis.memtable(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "email": [f"c{i}@x.invalid" for i in range(n)],
            "gender": ["f", "m"] * (n // 2),
        }
    )
    members = pa.table({"customer_id": [f"c{i}" for i in range(n)], "segment": ["A"] * n})
    p = segment_profiles(members, features)
    assert set(p.attributes.column("attribute").to_pylist()) == {"gender"}


# --------------------------------------------------------------------------- personas


def _planted(category: str = "electronics", n_rest: int = 160) -> tuple[pa.Table, pa.Table]:
    """40 affluent customers who buy ``category`` and use the app, and a mixed rest."""
    rng = np.random.default_rng(7)
    n = 40 + n_rest
    planted = np.arange(n) < 40
    returners = (np.arange(n) >= 40) & (np.arange(n) < 100)
    income = np.where(planted, rng.normal(110_000, 8_000, n), rng.normal(40_000, 8_000, n))
    features = pa.table(
        {
            "customer_id": [f"c{i:03d}" for i in range(n)],
            "income": income,
            "age": rng.normal(45, 5, n),
            "orders": rng.poisson(4, n) + 1,
            "return_rate": np.where(returners, 0.30, 0.02) + rng.uniform(0, 0.01, n),
            f"share_{category}": np.where(planted, 0.7, 0.05),
            "share_grocery": np.where(planted, 0.1, 0.5),
            "engaged_app_push": np.where(planted, 3, rng.integers(0, 2, n)),
            "engaged_email": np.where(returners, 0, rng.integers(0, 3, n)),
            "benefit_sought": np.where(planted, "quality", rng.choice(["price", "novelty"], n)),
        }
    )
    segment = np.where(planted, "P", np.where(returners, "R", "S"))
    members = pa.table({"customer_id": features.column("customer_id"), "segment": segment})
    return members, features


def _persona(personas: list[Any], segment: str) -> Any:
    (found,) = [p for p in personas if p.segment == segment]
    return found


def test_persona_names_and_describes_the_planted_attributes() -> None:
    members, features = _planted()
    personas = build_personas(segment_profiles(members, ibis.memtable(features)))
    p = _persona(personas, "P")
    assert p.name.startswith("Affluent")
    assert "electronics enthusiasts" in p.name
    assert "income" in p.description and "electronics" in p.description
    assert BENEFIT_PHRASES["quality"] in p.needs
    assert "a strong electronics range" in p.needs
    assert p.channels[0] == "app_push"
    assert "premium" in p.tone
    assert "new arrivals and offers in electronics" in p.triggers
    assert p.customers == 40 and p.share == pytest.approx(0.2)
    evidence = {(e["kind"], e["attribute"], e["value"]) for e in p.evidence}
    assert ("numeric", "income", None) in evidence
    assert ("category", "category", "electronics") in evidence
    # the return-prone, e-mail-silent segment gets those objections; P does not
    r = _persona(personas, "R")
    assert any(o.startswith("Fit or quality doubts") for o in r.objections)
    assert "return-prone" in r.name.lower()
    assert not any(o.startswith("Fit or quality doubts") for o in p.objections)
    assert any(o.startswith("Price") for o in _persona(personas, "S").objections)


def test_personas_follow_the_data_and_are_deterministic() -> None:
    members, features = _planted(category="garden")
    profiles = segment_profiles(members, ibis.memtable(features))
    first, second = build_personas(profiles), build_personas(profiles)
    assert [p.to_dict() for p in first] == [p.to_dict() for p in second]
    garden = _persona(first, "P")
    assert "gardeners" in garden.name and "electronics" not in garden.name.lower()
    names = [p.name for p in first]
    assert len(set(names)) == len(names)


def test_typical_segment_gets_a_plain_persona() -> None:
    ids = [f"c{i}" for i in range(40)]
    features = ibis.memtable({"customer_id": ids, "income": [float(i % 4) for i in range(40)]})
    members = pa.table({"customer_id": ids, "segment": ["A", "B"] * 20})
    personas = build_personas(segment_profiles(members, features))
    # identical profiles: both "typical", told apart by their segment names
    assert sorted(p.name for p in personas) == ["Typical customers (A)", "Typical customers (B)"]
    # nothing distinctive is said once, with no placeholder needs, objections or tone
    assert personas[0].description.count(NOTHING_DISTINCTIVE) == 1
    assert personas[0].needs == personas[0].objections == ()
    assert personas[0].tone == ""
    sheet = personas_markdown(personas)
    assert "**Tone:**" not in sheet and "none in the data" not in sheet


def test_persona_sheet_markdown_and_json() -> None:
    members, features = _planted()
    personas = build_personas(segment_profiles(members, ibis.memtable(features), scheme="demo"))
    sheet = personas_markdown(personas)
    p = _persona(personas, "P")
    assert sheet.startswith("## Scheme demo\n")
    assert f"### {p.name} (demo: P)" in sheet
    assert "- app_push (100% engaged, index" in sheet
    assert "| income |" in sheet
    assert sheet.count("**Tone:**") == 3
    loaded = json.loads(personas_json(personas))
    assert [d["segment"] for d in loaded] == [q.segment for q in personas]
    assert loaded[0]["needs"] == list(personas[0].needs)


# --------------------------------------------------------------------------- quality


def _members(sizes: dict[str, int], scheme: str = "s") -> pa.Table:
    ids, segs = [], []
    for segment, n in sizes.items():
        segs += [segment] * n
    ids = [f"c{i}" for i in range(len(segs))]
    return pa.table({"customer_id": ids, "scheme": [scheme] * len(ids), "segment": segs})


def _kinds(warnings: list[Any]) -> list[tuple[str, str | None]]:
    return [(w.kind, w.segment) for w in warnings]


def test_small_segments_by_size_and_share() -> None:
    m = _members({"A": 50, "B": 5, "unassigned": 1})
    found = segment_quality(m, min_size=6, min_share=0.0, max_segments=10)
    assert _kinds(found) == [("small_segment", "B")]
    assert found[0].numbers["customers"] == 5
    assert "segment 'B': 5 customers" in found[0].message
    assert segment_quality(m, min_size=5, min_share=0.0, max_segments=10) == []
    # B: 5 / 56 = 0.0893 of the base; the unassigned bucket of 1 is exempt
    by_share = segment_quality(m, min_size=1, min_share=0.09, max_segments=10)
    assert _kinds(by_share) == [("small_segment", "B")]
    assert "below the minimum share of 9.0 %" in by_share[0].message
    assert segment_quality(m, min_size=1, min_share=0.089, max_segments=10) == []


def test_small_segment_share_edges() -> None:
    m = _members({"A": 45, "B": 5})  # B: 5 / 50 = 0.1 exactly
    assert segment_quality(m, min_size=1, min_share=0.1, max_segments=10) == []
    warned = segment_quality(m, min_size=1, min_share=0.1001, max_segments=10)
    assert _kinds(warned) == [("small_segment", "B")]
    assert warned[0].numbers["share"] == pytest.approx(0.1)


def test_unstable_segments() -> None:
    m = _members({"A": 50, "B": 50})
    found = segment_quality(
        m, min_size=1, min_share=0.0, stability={"s": {"A": 0.59, "B": 0.6}}, max_segments=10
    )
    assert _kinds(found) == [("unstable_segment", "A")]
    assert found[0].numbers["stability"] == pytest.approx(0.59)


def test_too_many_segments_for_the_base() -> None:
    assert default_max_segments(1_000, 30) == 3
    m = _members({"A": 400, "B": 300, "C": 200, "D": 100, "unassigned": 5})
    found = segment_quality(m, min_size=30, min_share=0.0)
    assert _kinds(found) == [("too_many_segments", None)]
    assert found[0].numbers == {"segments": 4, "max_segments": 3, "customers": 1005}
    assert segment_quality(m, min_size=30, min_share=0.0, max_segments=4) == []


def test_every_customer_exactly_once_per_exclusive_scheme() -> None:
    m = _members({"A": 30, "B": 30})
    assert segment_quality(m, min_size=1, min_share=0.0, customers=60, max_segments=10) == []
    missing = segment_quality(m, min_size=1, min_share=0.0, customers=62, max_segments=10)
    assert _kinds(missing) == [("membership_count", None)]
    assert missing[0].severity == "error"
    assert (
        "scheme 's'" in missing[0].message and "2 customers have no segment" in missing[0].message
    )
    with pytest.raises(DataValidationError, match="scheme 's' must give every one of the 62"):
        raise_for_errors(missing)
    twice = pa.concat_tables([m, _members({"B": 3})])  # c0..c2 again, in B
    dup = segment_quality(twice, min_size=1, min_share=0.0, customers=60, max_segments=10)
    assert [w.kind for w in dup if w.severity == "error"] == ["membership_count"]
    assert "3 memberships more than members" in dup[0].message
    # the same table is fine for a tag scheme (and an Ibis customer table counts rows)
    customers = ibis.memtable({"customer_id": [f"c{i}" for i in range(60)]})
    tags = segment_quality(
        twice, min_size=1, min_share=0.0, customers=customers, tag_schemes={"s"}, max_segments=9
    )
    assert [w for w in tags if w.severity == "error"] == []
    raise_for_errors(tags)


def test_overlapping_tags_are_near_duplicates() -> None:
    ids = [f"c{i}" for i in range(100)]
    rows = [(c, "T1") for c in ids]
    rows += [(c, "T2") for c in ids[:95]]  # 95 of the smaller tag's 95 -> 100 %
    rows += [(c, "T3") for c in ids[50:]]  # T3: 50 customers of T1 ...
    rows += [(f"y{i}", "T3") for i in range(50)]  # ... and 50 others
    m = pa.table(
        {
            "customer_id": [r[0] for r in rows],
            "scheme": ["t"] * len(rows),
            "segment": [r[1] for r in rows],
        }
    )
    found = segment_quality(m, min_size=1, min_share=0.0, tag_schemes={"t"}, max_segments=10)
    dups = [(w.segment, w.other_segment) for w in found if w.kind == "near_duplicate"]
    # T1-T2: 95 / 95; T2-T3: 45 / 95 = 0.47; T1-T3: 50 / 100
    assert dups == [("T1", "T2")]
    (w,) = [w for w in found if w.kind == "near_duplicate"]
    assert w.numbers["overlap"] == pytest.approx(1.0)
    assert w.numbers["shared"] == 95


def test_near_duplicate_profiles() -> None:
    # A and B: the same income and spend distribution; C: far away; D: like A, twice as far
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 50)
    income = np.concatenate([50 + base, 50 + base, 80 + base, 45 + base, 40 + 3 * base])
    spend = np.concatenate([10 + base, 10 + base, 5 + base, 12 + base, 20 + base])
    segments = ["A"] * 50 + ["B"] * 50 + ["C"] * 50 + ["D"] * 50 + ["E"] * 50
    ids = [f"c{i}" for i in range(250)]
    features = ibis.memtable({"customer_id": ids, "income": income, "spend": spend})
    members = pa.table({"customer_id": ids, "segment": segments})
    profiles = segment_profiles(members, features, scheme="k")
    found = segment_quality(
        members, min_size=1, min_share=0.0, profiles=profiles, scheme="k", max_segments=10
    )
    dups = [(w.segment, w.other_segment) for w in found if w.kind == "near_duplicate"]
    assert dups == [("A", "B")]
    (w,) = [w for w in found if w.kind == "near_duplicate"]
    assert w.numbers["cosine"] == pytest.approx(1.0)
    assert w.numbers["strength_ratio"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- potential

POT_FEATURES = pa.table(
    {
        "customer_id": ["a", "b", "c", "d", "e", "f"],
        "share_toys": [0.5, 0.0, 0.0, 0.25, 1.0, 0.0],
        "gross_revenue": [100.0, 50.0, 80.0, 40.0, 30.0, 10.0],
        "household_size": [4, 4, 1, 3, 2, None],
        "income": [10.0, 20.0, 30.0, 40.0, 50.0, 70.0],
    }
)
POT_MEMBERS = pa.table(
    {"customer_id": ["a", "b", "c", "d", "e", "f"], "segment": ["X", "X", "X", "X", "Y", "Y"]}
)


def test_market_potential_by_hand() -> None:
    cfg = MarketPotentialConfig(name="toys", category="toys", adoption_rate=0.5)
    out = market_potential(POT_MEMBERS, ibis.memtable(POT_FEATURES), cfg, min_buyers=2)
    x, y = _one(out, segment="X"), _one(out, segment="Y")
    assert x["customers"] == 4 and x["share"] == pytest.approx(4 / 6)
    # X: incomes 10, 20, 30, 40 -> interpolated quartiles 17.5, 25, 32.5
    assert (x["income_mean"], x["income_q25"], x["income_median"], x["income_q75"]) == (
        pytest.approx(25.0),
        pytest.approx(17.5),
        pytest.approx(25.0),
        pytest.approx(32.5),
    )
    # X buyers a (0.5 x 100 = 50) and d (0.25 x 40 = 10): mean 30; b and c addressable
    assert (x["buyers"], x["addressable"], x["with_need"]) == (2, 2, 4)
    assert x["value_per_customer"] == pytest.approx(30.0)
    assert x["value_basis"] == "segment"
    assert x["revenue_potential"] == pytest.approx(2 * 0.5 * 30.0)
    assert x["addressable_share"] == pytest.approx(0.5)
    # Y has one buyer (e: 30) < min_buyers: all buyers' mean (50 + 10 + 30) / 3 = 30
    assert (y["buyers"], y["addressable"]) == (1, 1)
    assert y["value_basis"] == "all buyers"
    assert y["value_per_customer"] == pytest.approx(30.0)
    assert y["revenue_potential"] == pytest.approx(1 * 0.5 * 30.0)
    assert "adoption rate 0.5" in y["assumptions"] and "3 buyers" in y["assumptions"]


def test_market_potential_need_from_config_and_from_a_predicate() -> None:
    need = Condition(field="household_size", op=">=", value=3)
    cfg = MarketPotentialConfig(name="family toys", category="toys", need=need)
    features = ibis.memtable(POT_FEATURES)
    out = market_potential(POT_MEMBERS, features, cfg, min_buyers=1)
    x, y = _one(out, segment="X"), _one(out, segment="Y")
    # X: need a, b, d (c has 1 person); not bought: b -> 1 addressable; Y: nobody in need
    assert (x["with_need"], x["addressable"], y["with_need"], y["addressable"]) == (3, 1, 0, 0)
    assert x["revenue_potential"] == pytest.approx(1 * 1.0 * 30.0)
    assert y["revenue_potential"] == pytest.approx(0.0)
    assert "configured need" in x["assumptions"]
    same = market_potential(
        POT_MEMBERS, features, cfg, min_buyers=1, need=lambda t: t.household_size >= 3
    )
    assert same.column("addressable").to_pylist() == out.column("addressable").to_pylist()
    bad = MarketPotentialConfig(
        name="bad", category="toys", need=Condition(field="househld_size", op=">", value=1)
    )
    with pytest.raises(ConfigError, match="househld_size"):
        market_potential(POT_MEMBERS, features, bad)


def test_market_potential_from_order_lines_and_a_configured_value() -> None:
    orders = ibis.memtable(
        {"order_id": ["o1", "o2", "o3"], "customer_id": ["a", "a", "e"], "amount": [1.0] * 3}
    )
    lines = ibis.memtable(
        {
            "order_id": ["o1", "o2", "o2", "o3"],
            "category": ["toys", "toys", "books", "toys"],
            "line_amount": [20.0, 16.0, 99.0, 12.0],
        }
    )
    features = ibis.memtable(POT_FEATURES.drop(["income"]))
    cfg = MarketPotentialConfig(name="toys", category="toys", adoption_rate=0.25)
    out = market_potential(
        POT_MEMBERS, features, cfg, order_lines=lines, orders=orders, min_buyers=1
    )
    x = _one(out, segment="X")
    assert "income_mean" not in out.column_names
    assert (x["buyers"], x["addressable"]) == (1, 3)  # only a bought toys (36) in X
    assert x["value_per_customer"] == pytest.approx(36.0)
    assert x["revenue_potential"] == pytest.approx(3 * 0.25 * 36.0)
    fixed = MarketPotentialConfig(name="toys", category="toys", value_per_customer=100.0)
    out = market_potential(POT_MEMBERS, features, fixed, order_lines=lines, orders=orders)
    assert _one(out, segment="X")["revenue_potential"] == pytest.approx(300.0)
    assert _one(out, segment="X")["value_basis"] == "configured"


def test_market_potential_unknown_category() -> None:
    cfg = MarketPotentialConfig(name="t", category="toy")
    with pytest.raises(DataValidationError, match=r"'share_toy'.*did you mean 'share_toys'"):
        market_potential(POT_MEMBERS, ibis.memtable(POT_FEATURES), cfg)
    with pytest.raises(DataValidationError, match="without orders"):
        market_potential(
            POT_MEMBERS, ibis.memtable(POT_FEATURES), cfg, order_lines=ibis.memtable(POT_FEATURES)
        )


# --------------------------------------------------------------------------- backends


def _all_outputs(con: Any) -> dict[str, list[dict[str, Any]]]:
    features = con.create_table("seg_features", FEATURES, overwrite=True)
    members = con.create_table("seg_members", MEMBERS, overwrite=True)
    profiles = segment_profiles(members, features, scheme="value")
    quality = segment_quality(
        members, min_size=3, min_share=0.0, profiles=profiles, customers=features, scheme="v"
    )
    pot_features = con.create_table("seg_pot_features", POT_FEATURES, overwrite=True)
    pot_members = con.create_table("seg_pot_members", POT_MEMBERS, overwrite=True)
    cfg = MarketPotentialConfig(
        name="toys", category="toys", need=Condition(field="income", op=">=", value=20)
    )
    potential = market_potential(pot_members, pot_features, cfg, min_buyers=2)
    return {
        "segments": profiles.segments.to_pylist(),
        "numeric": profiles.numeric.to_pylist(),
        "attributes": profiles.attributes.to_pylist(),
        "personas": [p.to_dict() for p in build_personas(profiles)],
        "quality": [w.to_dict() for w in quality],
        "potential": potential.to_pylist(),
    }


def test_same_profiles_quality_and_potential_on_postgres(postgres_url: str) -> None:
    from backend_compare import assert_same_rows

    pg = ibis.connect(postgres_url)
    try:
        on_pg = _all_outputs(pg)
    finally:
        for name in ("seg_features", "seg_members", "seg_pot_features", "seg_pot_members"):
            pg.drop_table(name, force=True)
        pg.disconnect()
    on_duck = _all_outputs(ibis.duckdb.connect())
    assert [w["kind"] for w in on_pg["quality"]] == ["small_segment"]
    # X: income >= 20 are b, c, d; of them b and c have not bought toys
    assert _one(pa.Table.from_pylist(on_pg["potential"]), segment="X")["addressable"] == 2
    for key, rows in on_duck.items():
        if key in ("personas", "quality"):
            assert on_pg[key] == rows, key
        else:
            assert_same_rows(on_pg[key], rows)


def test_profiler_in_parts_equals_profiles_of_all_schemes_at_once() -> None:
    # The pipeline profiles the schemes it has while a cluster fit finishes, then adds
    # that scheme: the result must be segment_profiles of every membership at once
    # (same rows, same order), whichever part comes first.
    def scheme(name: str, segments: list[str]) -> pa.Table:
        return pa.table({"customer_id": IDS, "scheme": [name] * 6, "segment": segments})

    zeta = scheme("zeta", ["L", "L", "L", "L", "H", "H"])
    alpha = scheme("alpha", ["x", "y", "y", "x", "y", "y"])
    mid = scheme("mid", ["p", "q", "q", "q", "r", "r"])
    whole = segment_profiles(pa.concat_tables([zeta, alpha, mid]), ibis.memtable(FEATURES))
    for first, later in (([zeta, mid], [alpha]), ([alpha], [zeta, mid])):
        profiler = SegmentProfiler(ibis.memtable(FEATURES))
        profiler.add(pa.concat_tables(first))
        profiler.add(pa.concat_tables(later))
        parts = profiler.result()
        for name in ("segments", "numeric", "attributes"):
            assert getattr(parts, name).equals(getattr(whole, name)), name
        assert parts.population == whole.population == 6
