"""Quality warnings for segmentations: the seed articles' warnings, checked on the data.

Checks (each a :class:`QualityWarning` with its numbers):

- ``small_segment``: fewer than ``min_size`` customers or a share below ``min_share``
  (the unassigned buckets are exempt: a small unassigned bucket is good news);
- ``unstable_segment``: a per-segment stability score (e.g. the cluster Jaccard
  similarity over bootstrap resamples) below ``min_stability`` (default 0.6, the usual
  "unstable" bar of Hennig's cluster-wise Jaccard bootstrap);
- ``near_duplicate``: two segments whose profile vectors point the same way with similar
  strength (cosine similarity above ``max_similarity``, default 0.98, and the shorter
  vector at least ``min_strength_ratio`` = 0.8 of the longer), or two tags whose members
  overlap by more than ``max_overlap`` (default 90 %) of the smaller tag;
- ``too_many_segments``: more segments (unassigned buckets not counted) than
  ``max_segments``, by default ``max(2, customers // (min_size * 10))``: with the
  default ``min_size`` of 30 a base of 3,000 customers supports 10 segments, i.e. every
  segment could hold about ten times the minimum size;
- ``membership_count`` (severity ``error``): in a scheme where every customer must have
  exactly one segment (every scheme not listed in ``tag_schemes``), the number of
  memberships, the number of distinct members and the number of customers differ.

A profile vector holds, for every numeric feature, category, channel and attribute value,
the segment's standardised deviation from the population: (segment mean - population
mean) / population sd.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any, Literal

import ibis.expr.types as ir
import pyarrow as pa

from segvalue.errors import DataValidationError
from segvalue.segments.profiles import SegmentProfiles, as_memberships

__all__ = [
    "DEFAULT_UNASSIGNED",
    "QualityWarning",
    "default_max_segments",
    "profile_similarity",
    "raise_for_errors",
    "segment_quality",
]

#: Segment names treated as "unassigned" buckets (exempt from size and count checks).
DEFAULT_UNASSIGNED: tuple[str, ...] = ("unassigned", "Others")

_KIND_ORDER = {
    "membership_count": 0,
    "too_many_segments": 1,
    "small_segment": 2,
    "unstable_segment": 3,
    "near_duplicate": 4,
}


@dataclass(frozen=True)
class QualityWarning:
    """One quality finding about a scheme or a segment.

    Attributes
    ----------
    kind
        ``small_segment``, ``unstable_segment``, ``near_duplicate``,
        ``too_many_segments`` or ``membership_count``.
    scheme, segment
        Where (``segment`` is None for scheme-level findings).
    message
        One sentence for people, naming the scheme and segment and the numbers.
    numbers
        The measured values and the bars they were held to.
    severity
        ``warning``, or ``error`` when the membership table is wrong.
    other_segment
        The second segment of a near-duplicate pair.
    """

    kind: str
    scheme: str
    segment: str | None
    message: str
    numbers: dict[str, float] = field(default_factory=dict)
    severity: Literal["warning", "error"] = "warning"
    other_segment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


def default_max_segments(customers: int, min_size: int) -> int:
    """Default cap on the number of segments: ``max(2, customers // (min_size * 10))``.

    Examples
    --------
    >>> default_max_segments(10_000, 30), default_max_segments(100, 30)
    (33, 2)
    """
    return max(2, int(customers) // (int(min_size) * 10))


def _base_count(customers: ir.Table | pa.Table | int | None, members: ir.Table) -> int:
    if customers is None:
        return int(members.customer_id.nunique().to_pyarrow().as_py())
    if isinstance(customers, int):
        return customers
    if isinstance(customers, pa.Table):
        return int(customers.num_rows)
    return int(customers.count().to_pyarrow().as_py())


def _vectors(profiles: SegmentProfiles) -> dict[tuple[str, str], dict[tuple[str, ...], float]]:
    """Standardised deviations from the population per (scheme, segment)."""
    vectors: dict[tuple[str, str], dict[tuple[str, ...], float]] = {}
    for r in profiles.numeric.to_pylist():
        sd = r["population_sd"]
        if r["segment_mean"] is None or r["population_mean"] is None or not sd:
            continue
        deviation = (r["segment_mean"] - r["population_mean"]) / sd
        vectors.setdefault((r["scheme"], r["segment"]), {})[("numeric", r["feature"])] = deviation
    population: dict[tuple[str, ...], tuple[float, float]] = {}
    for r in profiles.attributes.to_pylist():
        sd = r["population_sd"]
        if r["segment_rate"] is None or r["population_rate"] is None or not sd:
            continue
        value_key = (r["kind"], r["attribute"], r["value"])
        population[value_key] = (r["population_rate"], sd)
        deviation = (r["segment_rate"] - r["population_rate"]) / sd
        vectors.setdefault((r["scheme"], r["segment"]), {})[value_key] = deviation
    # An attribute value absent from a segment is a rate of 0 there, not a missing entry.
    for vector in vectors.values():
        for key, (rate, sd) in population.items():
            vector.setdefault(key, -rate / sd)
    return vectors


def profile_similarity(
    a: Mapping[tuple[str, ...], float], b: Mapping[tuple[str, ...], float]
) -> tuple[float, float]:
    """Cosine similarity and strength ratio (shorter / longer length) of two profile vectors.

    Examples
    --------
    >>> profile_similarity({("x",): 1.0, ("y",): 1.0}, {("x",): 2.0, ("y",): 2.0})
    (1.0, 0.5)
    """
    keys = sorted(set(a) | set(b))
    dot = sum(a.get(k, 0.0) * b.get(k, 0.0) for k in keys)
    norm_a = math.sqrt(sum(a.get(k, 0.0) ** 2 for k in keys))
    norm_b = math.sqrt(sum(b.get(k, 0.0) ** 2 for k in keys))
    if norm_a == 0 or norm_b == 0:
        return (1.0 if norm_a == norm_b else 0.0), (1.0 if norm_a == norm_b else 0.0)
    cosine = min(1.0, max(-1.0, dot / (norm_a * norm_b)))
    return round(cosine, 12), min(norm_a, norm_b) / max(norm_a, norm_b)


def segment_quality(
    memberships: ir.Table | pa.Table,
    *,
    min_size: int,
    min_share: float,
    max_segments: int | None = None,
    stability: Mapping[str, Mapping[str, float]] | None = None,
    profiles: SegmentProfiles | None = None,
    customers: ir.Table | pa.Table | int | None = None,
    tag_schemes: Collection[str] = (),
    unassigned: Collection[str] = DEFAULT_UNASSIGNED,
    min_stability: float = 0.6,
    max_similarity: float = 0.98,
    min_strength_ratio: float = 0.8,
    max_overlap: float = 0.9,
    scheme: str | None = None,
) -> list[QualityWarning]:
    """Check a membership table for the warnings of the module docstring.

    Parameters
    ----------
    memberships
        ``(customer_id, scheme, segment)`` (or without ``scheme``, see ``scheme``).
    min_size, min_share, max_segments
        The quality bars (``SegmentsConfig.min_size`` / ``min_share`` / ``max_segments``);
        ``max_segments`` None uses :func:`default_max_segments`.
    stability
        Per-segment stability scores, ``{scheme: {segment: score}}``.
    profiles
        Segment profiles, for the near-duplicate check of profile vectors.
    customers
        The customer table (or its row count): the base every exclusive scheme must
        cover. Default: the distinct customers of ``memberships``.
    tag_schemes
        Schemes in which a customer may carry several segments or none.
    unassigned
        Names of unassigned buckets (exempt from the size and count checks).
    min_stability, max_similarity, min_strength_ratio, max_overlap
        Bars of the stability and near-duplicate checks.
    scheme
        Scheme name when ``memberships`` has no ``scheme`` column.

    Returns
    -------
    list of QualityWarning
        Errors first, then by kind, scheme and segment.

    Examples
    --------
    >>> import pyarrow as pa
    >>> m = pa.table({"customer_id": list("abcdef"), "segment": list("AAAAAB")})
    >>> [w.message for w in segment_quality(m, min_size=2, min_share=0.0, scheme="s")]
    ["scheme 's', segment 'B': 1 customer (16.7 %) is below the minimum of 2 customers"]
    """
    members = as_memberships(memberships, scheme=scheme)
    base = _base_count(customers, members)
    sizes = (
        members.group_by(["scheme", "segment"])
        .aggregate(customers=members.customer_id.count())
        .to_pyarrow()
        .to_pylist()
    )
    per_scheme = (
        members.group_by("scheme")
        .aggregate(rows=members.customer_id.count(), members=members.customer_id.nunique())
        .to_pyarrow()
        .to_pylist()
    )
    size = {(r["scheme"], r["segment"]): int(r["customers"]) for r in sizes}
    warnings: list[QualityWarning] = []
    cap = max_segments if max_segments is not None else default_max_segments(base, min_size)
    for r in per_scheme:
        name, rows, distinct = r["scheme"], int(r["rows"]), int(r["members"])
        if name not in tag_schemes:
            warnings += _membership_errors(name, rows, distinct, base)
        count = sum(1 for s, g in size if s == name and g not in unassigned)
        if count > cap:
            warnings.append(
                QualityWarning(
                    "too_many_segments",
                    name,
                    None,
                    f"scheme {name!r} has {count} segments; a base of {base:,} customers "
                    f"supports at most {cap} (merge small or similar segments)",
                    {"segments": count, "max_segments": cap, "customers": base},
                )
            )
    for (name, segment), n in sorted(size.items()):
        if segment in unassigned:
            continue
        share = n / base if base else 0.0
        bars = []
        if n < min_size:
            bars.append(f"the minimum of {min_size} customers")
        if share < min_share:
            bars.append(f"the minimum share of {100 * min_share:.1f} %")
        if bars:
            warnings.append(
                QualityWarning(
                    "small_segment",
                    name,
                    segment,
                    f"scheme {name!r}, segment {segment!r}: {n} customer{'' if n == 1 else 's'} "
                    f"({100 * share:.1f} %) is below {' and '.join(bars)}",
                    {"customers": n, "share": share, "min_size": min_size, "min_share": min_share},
                )
            )
    for name, scores in sorted((stability or {}).items()):
        for segment, score in sorted(scores.items()):
            if score < min_stability:
                warnings.append(
                    QualityWarning(
                        "unstable_segment",
                        name,
                        segment,
                        f"scheme {name!r}, segment {segment!r}: stability {score:.2f} is "
                        f"below {min_stability:.2f} (it changes when the data are resampled)",
                        {"stability": float(score), "min_stability": min_stability},
                    )
                )
    if profiles is not None:
        warnings += _similar_profiles(profiles, max_similarity, min_strength_ratio)
    multi = [r["scheme"] for r in per_scheme if int(r["rows"]) > int(r["members"])]
    if multi:
        warnings += _overlapping(members, multi, size, max_overlap)
    return sorted(
        warnings,
        key=lambda w: (
            w.severity != "error",
            _KIND_ORDER[w.kind],
            w.scheme,
            w.segment or "",
            w.other_segment or "",
        ),
    )


def _membership_errors(name: str, rows: int, distinct: int, base: int) -> list[QualityWarning]:
    numbers: dict[str, float] = {"memberships": rows, "members": distinct, "customers": base}
    problems = []
    if rows > distinct:
        problems.append(
            f"{rows - distinct} memberships more than members (a customer is in several segments)"
        )
    if distinct < base:
        problems.append(f"{base - distinct} customers have no segment")
    if distinct > base:
        problems.append(f"{distinct - base} members are not in the customer table")
    if not problems:
        return []
    return [
        QualityWarning(
            "membership_count",
            name,
            None,
            f"scheme {name!r} must give every one of the {base:,} customers exactly one "
            f"segment, but {'; '.join(problems)}",
            numbers,
            severity="error",
        )
    ]


def _similar_profiles(
    profiles: SegmentProfiles, max_similarity: float, min_strength_ratio: float
) -> list[QualityWarning]:
    vectors = _vectors(profiles)
    out = []
    for (sa, a), (sb, b) in combinations(sorted(vectors), 2):
        if sa != sb:
            continue
        cosine, ratio = profile_similarity(vectors[(sa, a)], vectors[(sb, b)])
        if cosine > max_similarity and ratio >= min_strength_ratio:
            out.append(
                QualityWarning(
                    "near_duplicate",
                    sa,
                    a,
                    f"scheme {sa!r}: segments {a!r} and {b!r} have near-identical profiles "
                    f"(cosine similarity {cosine:.3f}, strength ratio {ratio:.2f}); "
                    "consider merging them",
                    {"cosine": cosine, "strength_ratio": ratio, "max_similarity": max_similarity},
                    other_segment=b,
                )
            )
    return out


def _overlapping(
    members: ir.Table,
    schemes: Sequence[str],
    size: Mapping[tuple[str, str], int],
    max_overlap: float,
) -> list[QualityWarning]:
    """Tag pairs whose shared members exceed ``max_overlap`` of the smaller tag."""
    tagged = members.filter(members.scheme.isin(list(schemes)))
    left = tagged.select("customer_id", "scheme", seg_a=tagged.segment)
    right = tagged.select("customer_id", "scheme", seg_b=tagged.segment)
    pairs = left.join(right, ["customer_id", "scheme"])
    pairs = pairs.filter(pairs.seg_a < pairs.seg_b)
    counts = pairs.group_by(["scheme", "seg_a", "seg_b"]).aggregate(both=pairs.customer_id.count())
    out = []
    for r in sorted(
        counts.to_pyarrow().to_pylist(), key=lambda r: (r["scheme"], r["seg_a"], r["seg_b"])
    ):
        smaller = min(size[(r["scheme"], r["seg_a"])], size[(r["scheme"], r["seg_b"])])
        overlap = int(r["both"]) / smaller
        if overlap > max_overlap:
            out.append(
                QualityWarning(
                    "near_duplicate",
                    r["scheme"],
                    r["seg_a"],
                    f"scheme {r['scheme']!r}: {100 * overlap:.0f} % of the members of the "
                    f"smaller of {r['seg_a']!r} and {r['seg_b']!r} carry both tags",
                    {"overlap": overlap, "shared": int(r["both"]), "max_overlap": max_overlap},
                    other_segment=r["seg_b"],
                )
            )
    return out


def raise_for_errors(warnings: Sequence[QualityWarning]) -> None:
    """Raise a DataValidationError listing every finding of severity ``error``.

    Examples
    --------
    >>> raise_for_errors([QualityWarning("small_segment", "s", "A", "small")])
    """
    errors = [w for w in warnings if w.severity == "error"]
    if errors:
        raise DataValidationError(
            "; ".join(w.message for w in errors),
            fix="give every customer exactly one segment per scheme (an 'unassigned' "
            "bucket for the rest), or declare the scheme as tags",
        )
