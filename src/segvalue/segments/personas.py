"""Data-driven personas: one per segment, written from what sets the segment apart.

A persona is generated from a segment's profile (:func:`segvalue.segments.profiles.
segment_profiles`) by fixed templates; no external service and no randomness, so the same
profiles always give the same personas. What counts as *distinguishing*:

- a numeric feature whose segment mean differs from the population mean with
  ``|z| >= z_min`` (default 3) and by at least ``min_index_change`` index points
  (default 15, i.e. index <= 85 or >= 115);
- a category, channel or attribute value that is over-represented: ``z >= z_min`` and
  index >= 100 + ``min_index_change``.

``z`` is the distance of the segment's mean from the base's in standard errors, so a
descriptor such as "big-basket" or "frequent" appears only where the base lies outside the
segment's interval of ``z_min`` standard errors. With count-only data (every order of the
same amount, :attr:`~segvalue.segments.profiles.SegmentProfiles.constant_amounts`) spend
features are never descriptors: they only restate the number of orders. A segment with no
distinguishing trait says so once ("no trait differs from the base beyond its interval")
and its needs, objections and tone stay empty rather than filled with placeholders.

Names are unique within a scheme: personas that would share one get their next most
distinctive trait that the others lack (e.g. "Frequent customers, high december share"),
else their segment name in brackets.

The name joins up to three descriptors (adjectives from :data:`NUMERIC_VOCABULARY` for the
strongest numeric differences, a lifestyle or place that most members share) with a noun
from the most over-represented category (:data:`CATEGORY_NOUNS`), e.g. "Affluent young
electronics enthusiasts". Needs, objections, channels, triggers and tone follow the rules
documented on each helper below and in docs/segments-profiles.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from segvalue.segments.profiles import SPEND_FEATURES, SegmentProfiles, rows_by_segment

__all__ = [
    "BENEFIT_PHRASES",
    "CATEGORY_NOUNS",
    "NOTHING_DISTINCTIVE",
    "NUMERIC_VOCABULARY",
    "TRAIT_PHRASES",
    "Persona",
    "build_personas",
    "personas_json",
    "personas_markdown",
]

#: feature -> (word when low, word when high, group, position in the name). One word per
#: group (``orders`` and ``frequency`` say the same thing); words are ordered by position.
NUMERIC_VOCABULARY: Mapping[str, tuple[str | None, str | None, str, int]] = {
    "income": ("budget-conscious", "affluent", "income", 1),
    "clv": ("low-value", "high-value", "value", 1),
    "discount_share": ("full-price", "deal-seeking", "price", 2),
    "revenue": ("light-spending", "high-spending", "spend", 2),
    "gross_revenue": ("light-spending", "high-spending", "spend", 2),
    "monetary_value": ("small-basket", "big-basket", "basket", 2),
    "average_order_value": ("small-basket", "big-basket", "basket", 2),
    "frequency": ("occasional", "frequent", "frequency", 3),
    "orders": ("occasional", "frequent", "frequency", 3),
    "days_since_last_order": ("recently active", "lapsing", "recency", 3),
    "churn_risk": ("committed", "at-risk", "churn", 3),
    "tenure_days": ("new", "long-standing", "tenure", 4),
    "age": ("young", "mature", "age", 5),
    "household_size": ("small-household", "large-household", "household", 6),
    "return_rate": (None, "return-prone", "returns", 6),
}
#: feature -> (phrase when low, phrase when high) for traits outside the vocabulary whose
#: name misleads (BTYD's ``recency`` is the time from the first to the last purchase).
TRAIT_PHRASES: Mapping[str, tuple[str, str]] = {
    "recency": ("a short purchase span", "a long purchase span"),
    "T": ("a short history", "a long history"),
}
#: Features in the configured time unit, whose bare values a name cannot state.
_IN_TIME_UNITS = frozenset({"recency", "T"})
#: category -> the noun that ends a persona's name; other categories: "<category> shoppers".
CATEGORY_NOUNS: Mapping[str, str] = {
    "electronics": "electronics enthusiasts",
    "fashion": "fashion lovers",
    "beauty": "beauty fans",
    "home": "home makers",
    "sports": "sports enthusiasts",
    "books": "book lovers",
    "toys": "toy buyers",
    "grocery": "grocery shoppers",
    "garden": "gardeners",
    "pets": "pet owners",
}
#: benefit sought / value -> what the persona needs.
BENEFIT_PHRASES: Mapping[str, str] = {
    "price": "low prices and visible savings",
    "quality": "durable, high-quality products",
    "convenience": "fast, effortless shopping and delivery",
    "sustainability": "sustainable, responsibly made products",
    "status": "premium brands that signal status",
    "novelty": "new arrivals and the latest trends",
    "security": "reliable products and safe, familiar choices",
    "thrift": "good value for money",
    "self_expression": "products that express who they are",
    "tradition": "trusted, classic brands",
    "achievement": "products that help them perform",
}
#: lifestyle -> a tone of voice.
LIFESTYLE_TONES: Mapping[str, str] = {
    "family_centred": "family-friendly and reassuring",
    "trend_driven": "trend-aware and visual",
    "established_comfort": "refined and unhurried",
    "traditional": "trustworthy and plain-spoken",
    "digital_native": "snappy and mobile-first",
    "green_living": "purpose-driven and transparent",
    "busy_professional": "efficient and to the point",
}
#: Attributes that state needs (benefits sought, values, interests, lifestyle).
NEED_ATTRIBUTES: tuple[str, ...] = (
    "benefit_sought",
    "benefits_sought",
    "benefit",
    "values",
    "interests",
    "lifestyle",
    "needs",
)
#: Attributes that name the benefit sought.
BENEFIT_ATTRIBUTES: tuple[str, ...] = ("benefit_sought", "benefits_sought", "benefit")
#: Attributes that name purchase occasions.
OCCASION_ATTRIBUTES: tuple[str, ...] = ("occasion", "occasions", "purchase_occasion")
#: Features that measure a purchase occasion (a share of purchases) -> the occasion.
OCCASION_FEATURES: Mapping[str, str] = {
    "december_share": "the December gift season",
    "weekend_share": "weekends",
    "discount_share": "promotions and discounts",
}
#: Attributes whose dominant value may describe the persona in its name.
DESCRIPTOR_ATTRIBUTES: Mapping[str, str] = {
    "lifestyle": "{}",
    "urbanity": "{}",
    "area_type": "{}",
    "city": "{}-based",
    "region": "{}-based",
    "country": "{}-based",
}
#: A name descriptor from an attribute needs at least this share of the members.
DESCRIPTOR_MIN_RATE = 0.4
#: A category names the persona when at least this share of wallet goes to it.
NOUN_MIN_RATE = 0.1
#: A channel engaged at a lower index than this is not "preferred" (unless it is the only one).
MIN_CHANNEL_INDEX = 80.0
#: Age cut-offs (years) for the tone of voice.
YOUNG_AGE, SENIOR_AGE = 35.0, 55.0
#: What a persona says, once, when nothing sets its segment apart.
NOTHING_DISTINCTIVE = "No trait differs from the base beyond its interval."
#: What a persona says when every order had the same amount.
CONSTANT_AMOUNTS = "Every order has the same amount, so spend is not described."


@dataclass(frozen=True)
class Persona:
    """A persona for one segment: name, story and the evidence behind it.

    ``evidence`` lists the numbers every statement rests on: ``kind`` (numeric,
    category, channel, attribute), ``attribute``, ``value``, ``segment`` and
    ``population`` (means or rates), ``index`` and ``z``.
    """

    scheme: str
    segment: str
    name: str
    customers: int
    share: float | None
    description: str
    needs: tuple[str, ...]
    objections: tuple[str, ...]
    channels: tuple[str, ...]
    triggers: tuple[str, ...]
    tone: str
    evidence: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (tuples become lists)."""
        out = asdict(self)
        for key in ("needs", "objections", "channels", "triggers", "evidence"):
            out[key] = list(out[key])
        return out


def _rank(value: float) -> float:
    """A value to order by: 9 significant digits, so that values equal in exact arithmetic
    (T in weeks and tenure in days have the same z) tie whatever their last bits (the
    engine's parallel sums differ there between runs) and the name decides."""
    return float(f"{value:.9g}")


def _human(value: str) -> str:
    return str(value).replace("_", " ").strip()


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def _index_text(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f}"


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


@dataclass
class _Segment:
    """A segment's profile rows, split by kind and filtered to what distinguishes it."""

    summary: dict[str, Any]
    numeric: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]
    z_min: float
    min_index_change: float
    ignored: frozenset[str] = frozenset()

    def distinct_numeric(self) -> list[dict[str, Any]]:
        """Numeric features that set the segment apart, strongest |z| first."""
        out = [row for row in self.numeric.values() if self._distinct(row)]
        return sorted(out, key=lambda r: (-_rank(abs(r["z"])), r["feature"]))

    def distinctive(self) -> bool:
        """Anything (a numeric feature, a category or attribute) sets the segment apart."""
        return bool(self.distinct_numeric() or self.over("category") or self.over("attribute"))

    def _distinct(self, row: dict[str, Any]) -> bool:
        if row["feature"] in self.ignored:
            return False
        z, index = row["z"], row["index"]
        if z is None or abs(z) < self.z_min:
            return False
        return index is None or abs(index - 100.0) >= self.min_index_change

    def over(self, kind: str, attributes: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Over-represented values of a kind (and attribute names), highest index first."""
        out = []
        for row in self.rows:
            if row["kind"] != kind or (
                attributes is not None and row["attribute"] not in attributes
            ):
                continue
            z, index = row["z"], row["index"]
            if z is None or index is None:
                continue
            if z >= self.z_min and index >= 100.0 + self.min_index_change:
                out.append(row)
        return sorted(out, key=lambda r: (-_rank(r["index"]), r["attribute"], r["value"]))

    def high(self, feature: str) -> bool:
        """The feature's mean is distinctly above the population's."""
        row = self.numeric.get(feature)
        return row is not None and self._distinct(row) and row["z"] > 0

    def low(self, feature: str) -> bool:
        """The feature's mean is distinctly below the population's."""
        row = self.numeric.get(feature)
        return row is not None and self._distinct(row) and row["z"] < 0


def _evidence(row: dict[str, Any]) -> dict[str, Any]:
    if "feature" in row:
        return {
            "kind": "numeric",
            "attribute": row["feature"],
            "value": None,
            "segment": row["segment_mean"],
            "population": row["population_mean"],
            "index": row["index"],
            "z": row["z"],
        }
    return {
        "kind": row["kind"],
        "attribute": row["attribute"],
        "value": row["value"],
        "segment": row["segment_rate"],
        "population": row["population_rate"],
        "index": row["index"],
        "z": row["z"],
    }


@dataclass
class _NameParts:
    """A persona name as descriptors (position, word) and a noun, plus spare traits."""

    words: list[tuple[int, str]]
    noun: str
    spare: list[tuple[int | None, str]]

    def text(self, extra: tuple[int | None, str] | None = None) -> str:
        words = list(self.words)
        tail = ""
        if extra is not None and extra[0] is not None:
            words.append((extra[0], extra[1]))
        elif extra is not None:
            tail = f", {extra[1]}"
        if not words and self.noun == "customers":
            # no descriptor word: the strongest traits, else nothing sets the segment apart
            traits = [t for _, t in self.spare if extra is None or t != extra[1]][:2]
            text = "customers with " + " and ".join(traits) if traits else "typical customers"
            text += tail
        else:
            text = " ".join([w for _, w in sorted(words, key=lambda pw: pw[0])] + [self.noun])
            text += tail
        return text[:1].upper() + text[1:]


def _name_parts(seg: _Segment) -> _NameParts:
    """Up to three descriptors and a noun, e.g. "Affluent young electronics enthusiasts";
    the segment's further distinguishing traits, strongest first, are kept to tell apart
    personas that would share a name."""
    words: list[tuple[int, str]] = []
    spare: list[tuple[int | None, str]] = []
    groups: set[str] = set()
    for row in seg.distinct_numeric():
        vocab = NUMERIC_VOCABULARY.get(row["feature"])
        high = row["z"] > 0
        word = None if vocab is None else (vocab[1] if high else vocab[0])
        if vocab is None or word is None:
            phrases = TRAIT_PHRASES.get(row["feature"])
            trait = f"{'high' if high else 'low'} {_human(row['feature'])}"
            spare.append((None, trait if phrases is None else phrases[high]))
            continue
        if vocab[2] in groups:
            continue
        groups.add(vocab[2])
        if len(words) < 2:
            words.append((vocab[3], word))
        else:
            spare.append((vocab[3], word))
    named = False
    for row in seg.over("attribute", list(DESCRIPTOR_ATTRIBUTES)):
        if not named and row["segment_rate"] >= DESCRIPTOR_MIN_RATE:
            template = DESCRIPTOR_ATTRIBUTES[row["attribute"]]
            position = 0 if template.endswith("-based") else 7
            words.append((position, template.format(_human(row["value"]).replace(" ", "-"))))
            named = True
        else:
            spare.append((None, f"{_human(row['attribute'])} {_human(row['value'])}"))
    noun = "customers"
    for row in seg.over("category"):
        if noun == "customers" and row["segment_rate"] >= NOUN_MIN_RATE:
            noun = CATEGORY_NOUNS.get(row["value"], f"{_human(row['value'])} shoppers")
        else:
            spare.append((None, f"buying {_human(row['value'])}"))
    others = [
        r
        for r in seg.over("attribute")
        if r["attribute"] not in DESCRIPTOR_ATTRIBUTES and r["segment_rate"] >= DESCRIPTOR_MIN_RATE
    ]
    spare += [(None, f"{_human(r['attribute'])} {_human(r['value'])}") for r in others]
    return _NameParts(words, noun, spare)


def _name(seg: _Segment) -> str:
    """Up to three descriptors and a noun, e.g. "Affluent young electronics enthusiasts"."""
    return _name_parts(seg).text()


def _description(seg: _Segment) -> str:
    s = seg.summary
    parts = [f"{s['customers']:,} customers ({_pct(s.get('share'))} of the base"]
    if s.get("revenue_share") is not None:
        parts[0] += f", {_pct(s['revenue_share'])} of revenue"
    parts[0] += ")."
    numeric = seg.distinct_numeric()[:4]
    if numeric:
        facts = [
            f"{_human(r['feature'])} {_fmt(r['segment_mean'])} vs {_fmt(r['population_mean'])}"
            f" (index {_index_text(r['index'])})"
            for r in numeric
        ]
        parts.append("Against the average customer: " + "; ".join(facts) + ".")
    over = sorted(
        seg.over("category") + seg.over("attribute"), key=lambda r: (-_rank(r["z"]), r["value"])
    )[:4]
    if over:
        facts = [
            f"{_human(r['value'])} ({_human(r['attribute'])}, {_pct(r['segment_rate'])}"
            f" vs {_pct(r['population_rate'])})"
            for r in over
        ]
        parts.append("Over-represented: " + "; ".join(facts) + ".")
    if s.get("clv_mean") is not None:
        parts.append(f"Mean CLV {_fmt(s['clv_mean'])}.")
    if s.get("churn_risk_mean") is not None:
        parts.append(f"Mean churn risk {_pct(s['churn_risk_mean'])}.")
    if seg.ignored:
        parts.append(CONSTANT_AMOUNTS)
    if not seg.distinctive():
        parts.append(NOTHING_DISTINCTIVE)
    return " ".join(parts)


def _needs(seg: _Segment) -> tuple[str, ...]:
    needs: list[str] = []
    for row in seg.over("attribute", NEED_ATTRIBUTES)[:4]:
        value, attribute = row["value"], row["attribute"]
        if value in BENEFIT_PHRASES:
            phrase = BENEFIT_PHRASES[value]
        elif attribute == "interests":
            phrase = f"products and content around {_human(value)}"
        elif attribute == "lifestyle":
            phrase = f"offers that fit {_article(_human(value))} lifestyle"
        else:
            phrase = _human(value)
        if phrase not in needs:
            needs.append(phrase)
    needs += [f"a strong {_human(r['value'])} range" for r in seg.over("category")[:2]]
    return tuple(needs)


def _objections(seg: _Segment) -> tuple[str, ...]:
    out: list[str] = []
    price = []
    if seg.high("discount_share"):
        index = _index_text(seg.numeric["discount_share"]["index"])
        price.append(f"discount share index {index}")
    if any(r["value"] == "price" for r in seg.over("attribute", BENEFIT_ATTRIBUTES)):
        price.append("seeks low prices")
    if seg.low("income"):
        price.append(f"income index {_index_text(seg.numeric['income']['index'])}")
    if price:
        out.append(f"Price: {', '.join(price)}; expects deals and compares prices")
    if seg.high("return_rate"):
        r = seg.numeric["return_rate"]
        out.append(
            f"Fit or quality doubts: returns {_pct(r['segment_mean'])} of spend vs "
            f"{_pct(r['population_mean'])} overall"
        )
    channels = [r for r in seg.rows if r["kind"] == "channel" and r["population_rate"]]
    if channels:
        ratio = sum(r["segment_rate"] or 0.0 for r in channels) / sum(
            r["population_rate"] for r in channels
        )
        if ratio <= 0.8 and any((r["z"] or 0.0) <= -seg.z_min for r in channels):
            out.append(
                f"Low engagement: responds to marketing at {_pct(ratio)} of the average rate"
            )
    if seg.high("days_since_last_order"):
        r = seg.numeric["days_since_last_order"]
        out.append(
            f"Drifting away: {_fmt(r['segment_mean'])} days since the last order vs "
            f"{_fmt(r['population_mean'])} overall"
        )
    for feature in ("frequency", "orders"):
        if seg.low(feature):
            r = seg.numeric[feature]
            out.append(
                f"Buys rarely ({_human(feature)} {_fmt(r['segment_mean'])} vs "
                f"{_fmt(r['population_mean'])}): needs a reason to come back"
            )
            break
    return tuple(out)


def _channels(seg: _Segment) -> list[dict[str, Any]]:
    """Up to three channels with the highest engagement rates, skipping channels where the
    segment engages clearly less than the base (index < 80) unless nothing else is left."""
    rows = [r for r in seg.rows if r["kind"] == "channel" and (r["segment_rate"] or 0) > 0]
    rows.sort(key=lambda r: (-_rank(r["segment_rate"]), -_rank(r["index"] or 0.0), r["value"]))
    preferred = [r for r in rows if r["index"] is None or r["index"] >= MIN_CHANNEL_INDEX]
    return (preferred or rows[:1])[:3]


def _triggers(seg: _Segment) -> tuple[str, ...]:
    out = [f"{_human(r['value'])} occasions" for r in seg.over("attribute", OCCASION_ATTRIBUTES)]
    for feature, occasion in OCCASION_FEATURES.items():
        if seg.high(feature):
            r = seg.numeric[feature]
            out.append(
                f"{occasion}: {_pct(r['segment_mean'])} of their purchases vs "
                f"{_pct(r['population_mean'])} overall"
            )
    if seg.high("browse_since_last_order"):
        r = seg.numeric["browse_since_last_order"]
        out.append(
            f"browsing without buying ({_fmt(r['segment_mean'])} browse touches since the "
            f"last order vs {_fmt(r['population_mean'])}): follow up after a browse session"
        )
    out += [f"new arrivals and offers in {_human(r['value'])}" for r in seg.over("category")[:2]]
    recency = seg.numeric.get("days_since_last_order")
    if recency is not None and recency["segment_median"] is not None:
        out.append(
            f"time since the last order: median {_fmt(recency['segment_median'])} days "
            f"({_fmt(recency['population_median'])} overall)"
        )
    if seg.low("tenure_days"):
        out.append("recently joined: onboarding and a second-purchase offer")
    if seg.high("churn_risk"):
        out.append("rising churn risk: a retention offer")
    return tuple(out)


def _tone(seg: _Segment) -> str:
    parts = []
    age = seg.numeric.get("age")
    if age is not None and age["segment_mean"] is not None:
        if age["segment_mean"] < YOUNG_AGE:
            parts.append("casual and energetic")
        elif age["segment_mean"] < SENIOR_AGE:
            parts.append("warm and practical")
        else:
            parts.append("clear, respectful and reassuring")
    if seg.high("income"):
        parts.append("premium and understated")
    elif seg.low("income"):
        parts.append("value-focused and straightforward")
    lifestyle = seg.over("attribute", ("lifestyle",))
    if lifestyle:
        value = lifestyle[0]["value"]
        default = f"in tune with {_article(_human(value))} lifestyle"
        parts.append(LIFESTYLE_TONES.get(value, default))
    return "; ".join(parts)


def build_personas(
    profiles: SegmentProfiles,
    *,
    z_min: float = 3.0,
    min_index_change: float = 15.0,
    max_evidence: int = 10,
) -> list[Persona]:
    """One persona per segment, written from the segment's distinguishing attributes.

    Parameters
    ----------
    profiles
        Output of :func:`segvalue.segments.profiles.segment_profiles`.
    z_min
        Minimum ``|z|`` for a difference to count as distinguishing.
    min_index_change
        Minimum distance of the index from 100 for a difference to count.
    max_evidence
        At most this many numeric and this many categorical facts in ``evidence``.

    Returns
    -------
    list of Persona
        In the order of ``profiles.segments`` (scheme, then size).

    Examples
    --------
    >>> import ibis
    >>> from segvalue.segments.profiles import segment_profiles
    >>> rich = [90_000.0 + i for i in range(20)]
    >>> poor = [30_000.0 + i for i in range(60)]
    >>> f = ibis.memtable({"customer_id": [str(i) for i in range(80)], "income": rich + poor,
    ...                    "share_electronics": [0.9] * 20 + [0.0] * 60})
    >>> m = ibis.memtable({"customer_id": [str(i) for i in range(80)],
    ...                    "segment": ["A"] * 20 + ["B"] * 60})
    >>> [p.name for p in build_personas(segment_profiles(m, f))]
    ['Budget-conscious customers', 'Affluent electronics enthusiasts']
    """
    summaries = {(r["scheme"], r["segment"]): r for r in profiles.segments.to_pylist()}
    numeric = rows_by_segment(profiles.numeric)
    attributes = rows_by_segment(profiles.attributes)
    ignored = frozenset(SPEND_FEATURES if profiles.constant_amounts else ())
    personas: list[Persona] = []
    names: dict[tuple[str, str], _NameParts] = {}
    segments: dict[tuple[str, str], _Segment] = {}
    for key, summary in summaries.items():
        seg = _Segment(
            summary=summary,
            numeric={r["feature"]: r for r in numeric.get(key, [])},
            rows=attributes.get(key, []),
            z_min=z_min,
            min_index_change=min_index_change,
            ignored=ignored,
        )
        names[key] = _name_parts(seg)
        segments[key] = seg
        channels = _channels(seg)
        over = sorted(
            seg.over("category") + seg.over("attribute"), key=lambda r: (-_rank(r["z"]), r["value"])
        )
        evidence = [_evidence(r) for r in seg.distinct_numeric()[:max_evidence]]
        evidence += [_evidence(r) for r in over[:max_evidence]]
        evidence += [_evidence(r) for r in channels]
        personas.append(
            Persona(
                scheme=key[0],
                segment=key[1],
                name=names[key].text(),
                customers=int(summary["customers"]),
                share=summary.get("share"),
                description=_description(seg),
                needs=_needs(seg),
                objections=_objections(seg),
                channels=tuple(r["value"] for r in channels),
                triggers=_triggers(seg),
                tone=_tone(seg),
                evidence=tuple(evidence),
            )
        )
    return _unique_names(personas, names, segments)


def _unique_names(
    personas: list[Persona],
    parts: Mapping[tuple[str, str], _NameParts],
    segments: Mapping[tuple[str, str], _Segment],
) -> list[Persona]:
    """Two personas of one scheme never share a name.

    Personas that would share a name are told apart, in this order, by

    1. the most distinctive spare trait of each that none of the others has
       ("Frequent customers, high weekend share");
    2. the numeric feature on which every two of them differ beyond the interval
       (``|z| >= z_min`` for the difference of their means), stated with its value
       ("Lapsing customers, days since last order 527");
    3. the segment name in brackets.
    """
    renamed: dict[tuple[str, str], str] = {}
    for group in _collisions(personas):
        for p in group:
            others = {
                text for q in group if q is not p for _, text in parts[(q.scheme, q.segment)].spare
            }
            own = parts[(p.scheme, p.segment)]
            extra = next((t for t in own.spare if t[1] not in others), None)
            renamed[(p.scheme, p.segment)] = own.text(extra) if extra else p.name
    personas = [replace(p, name=renamed.get((p.scheme, p.segment), p.name)) for p in personas]
    for group in _collisions(personas):
        labels = _separating_feature([segments[(p.scheme, p.segment)] for p in group])
        for p, label in zip(group, labels or [], strict=False):
            renamed[(p.scheme, p.segment)] = f"{p.name}, {label}"
    personas = [replace(p, name=renamed.get((p.scheme, p.segment), p.name)) for p in personas]
    repeated = {(p.scheme, p.segment) for group in _collisions(personas) for p in group}
    return [
        replace(p, name=f"{p.name} ({p.segment})") if (p.scheme, p.segment) in repeated else p
        for p in personas
    ]


def _collisions(personas: Sequence[Persona]) -> list[list[Persona]]:
    """Groups of personas of one scheme that share a name."""
    groups: dict[tuple[str, str], list[Persona]] = {}
    for p in personas:
        groups.setdefault((p.scheme, p.name), []).append(p)
    return [group for group in groups.values() if len(group) > 1]


def _separating_feature(group: Sequence[_Segment]) -> list[str] | None:
    """A label "<feature> <segment mean>" per segment, on the numeric feature whose means
    differ beyond the interval between every two of them (the largest smallest |z|)."""
    best: tuple[float, str] | None = None
    features = set.intersection(*(set(seg.numeric) for seg in group))
    for feature in sorted(features - group[0].ignored - _IN_TIME_UNITS):
        rows = [seg.numeric[feature] for seg in group]
        sd = rows[0]["population_sd"]
        if sd is None or not sd > 0 or any(not r["n"] or r["segment_mean"] is None for r in rows):
            continue
        smallest = min(
            abs(a["segment_mean"] - b["segment_mean"]) / (sd * math.sqrt(1 / a["n"] + 1 / b["n"]))
            for i, a in enumerate(rows)
            for b in rows[i + 1 :]
        )
        labels = {_fmt(r["segment_mean"]) for r in rows}
        separates = smallest >= group[0].z_min and len(labels) == len(rows)
        if separates and (best is None or smallest > best[0]):
            best = (smallest, feature)
    if best is None:
        return None
    return [f"{_human(best[1])} {_fmt(seg.numeric[best[1]]['segment_mean'])}" for seg in group]


def personas_json(personas: Sequence[Persona]) -> str:
    """The personas as a JSON array (one object per persona, see :meth:`Persona.to_dict`).

    Examples
    --------
    >>> p = Persona("rfm", "Champions", "Frequent customers", 10, 0.1, "...", (), (), (),
    ...             (), "friendly and clear")
    >>> json.loads(personas_json([p]))[0]["segment"]
    'Champions'
    """
    return json.dumps([p.to_dict() for p in personas], indent=2, ensure_ascii=False)


def personas_markdown(personas: Sequence[Persona]) -> str:
    """A persona sheet in Markdown: one section per persona, grouped by scheme.

    Examples
    --------
    >>> p = Persona("rfm", "Champions", "Frequent customers", 10, 0.1, "Ten people.",
    ...             ("good value",), (), ("email",), (), "friendly and clear")
    >>> print(personas_markdown([p]).splitlines()[2])
    ### Frequent customers (rfm: Champions)
    """
    lines: list[str] = []
    scheme = None
    for p in personas:
        if p.scheme != scheme:
            scheme = p.scheme
            lines += [f"## Scheme {scheme}", ""]
        lines += [f"### {p.name} ({p.scheme}: {p.segment})", "", p.description, ""]
        rates = {e["value"]: e for e in p.evidence if e["kind"] == "channel"}
        channels = [
            f"{c} ({_pct(rates[c]['segment'])} engaged, index {_index_text(rates[c]['index'])})"
            if c in rates
            else c
            for c in p.channels
        ]
        # A section with nothing in the data is left out, not filled with a placeholder.
        for title, items in (
            ("Needs and benefits sought", p.needs),
            ("Likely objections", p.objections),
            ("Preferred channels", tuple(channels)),
            ("Triggers", p.triggers),
        ):
            if items:
                lines += [f"**{title}:**", *[f"- {item}" for item in items], ""]
        if p.tone:
            lines += [f"**Tone:** {p.tone}", ""]
        facts = [e for e in p.evidence if e["kind"] != "channel"]
        if facts:
            lines += ["| evidence | segment | all customers | index | z |", "|---|---|---|---|---|"]
            for e in facts:
                label = _human(e["attribute"]) + (f": {_human(e['value'])}" if e["value"] else "")
                numeric = e["kind"] == "numeric"
                seg, pop = (
                    (_fmt(e["segment"]), _fmt(e["population"]))
                    if numeric
                    else (_pct(e["segment"]), _pct(e["population"]))
                )
                index, z = _index_text(e["index"]), _fmt(e["z"])
                lines.append(f"| {label} | {seg} | {pop} | {index} | {z} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
