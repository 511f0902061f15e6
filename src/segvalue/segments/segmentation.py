"""Every configured segmentation scheme in one pass: memberships, profiles, personas, checks.

:func:`segment_customers` is what the pipeline, ``segvalue segment`` and ``segvalue demo``
call. Each scheme is assigned in the engine (rules, lifecycle, RFM, cluster assignment);
the memberships of all schemes are stacked into one ``(customer_id, scheme, segment)``
table, cached once in the engine, then profiled, checked and turned into personas.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segvalue.config import (
    ClusterConfig,
    LifecycleConfig,
    RFMConfig,
    RuleSchemeConfig,
    SchemeConfig,
    SegmentsConfig,
)
from segvalue.errors import ConfigError
from segvalue.features.materialise import to_arrow
from segvalue.segments.lifecycle import assign_lifecycle, purchase_gaps
from segvalue.segments.personas import Persona, build_personas
from segvalue.segments.potential import market_potential
from segvalue.segments.profiles import SegmentProfiler, SegmentProfiles
from segvalue.segments.quality import QualityWarning, raise_for_errors, segment_quality
from segvalue.segments.rfm import assign_rfm
from segvalue.segments.rules import assign_rule_scheme, customer_attributes

__all__ = ["Segmentation", "segment_customers", "unassigned_name"]

#: ``cache(expr, prefix)`` stores an expression in the engine and returns the stored table.
Cache = Callable[[ir.Table, str], ir.Table]


def _no_cache(expr: ir.Table, prefix: str) -> ir.Table:
    return expr


def unassigned_name(scheme: SchemeConfig) -> str:
    """The bucket of customers no segment of ``scheme`` takes.

    Examples
    --------
    >>> unassigned_name(LifecycleConfig(type="lifecycle"))
    'prospect'
    """
    if isinstance(scheme, LifecycleConfig):
        return "prospect"
    return scheme.unassigned


@dataclass
class Segmentation:
    """The result of :func:`segment_customers`.

    Attributes
    ----------
    memberships
        ``customer_id``, ``scheme``, ``segment``: one row per customer per exclusive
        scheme, one per tag for tag schemes (and ``unassigned`` for customers without).
    sizes
        ``scheme``, ``segment``, ``customers``, ``share``.
    profiles
        Segment profiles against the whole base (None when profiling was skipped).
    personas
        One per segment (empty when ``personas: false``).
    quality
        Warnings (small, unstable, near-duplicate segments, too many segments).
    potential
        Market potential per market and segment (None without ``market_potential``).
    details
        Per scheme: its type and what it was fitted or derived from (lifecycle
        thresholds, cluster model with its k-selection curves and stability).
    """

    memberships: pa.Table
    sizes: pa.Table
    profiles: SegmentProfiles | None
    personas: list[Persona]
    quality: list[QualityWarning]
    potential: pa.Table | None
    details: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Plain data for reports and ``--json``: per scheme its segments, sizes, personas."""
        names = {(p.scheme, p.segment): p.name for p in self.personas}
        schemes: dict[str, Any] = {}
        for row in self.sizes.to_pylist():
            entry = schemes.setdefault(row["scheme"], {**self.details.get(row["scheme"], {})})
            entry.setdefault("segments", []).append(
                {
                    "segment": row["segment"],
                    "customers": row["customers"],
                    "share": row["share"],
                    "persona": names.get((row["scheme"], row["segment"])),
                }
            )
        return {
            "schemes": schemes,
            "warnings": [w.to_dict() for w in self.quality],
        }


def _assign(
    scheme: SchemeConfig,
    index: int,
    table: ir.Table,
    orders: ir.Table,
    as_of: dt.date,
    cache: Cache,
    fitted: Mapping[str, Callable[[], Any]],
) -> tuple[ir.Table, dict[str, Any]]:
    where = f"segments.schemes[{index}]"
    details: dict[str, Any] = {"type": scheme.type}
    if isinstance(scheme, RuleSchemeConfig):
        details["mode"] = scheme.mode
        return assign_rule_scheme(table, scheme, where=where), details
    if isinstance(scheme, LifecycleConfig):
        # The gaps feed both the thresholds and the stages: compute them once.
        gaps = cache(purchase_gaps(orders), "purchase_gaps")
        result = assign_lifecycle(
            orders, as_of=as_of, config=scheme, customers=table.select("customer_id"), gaps=gaps
        )
        details["thresholds"] = result.thresholds.to_dict()
        return result.memberships, details
    if isinstance(scheme, RFMConfig):
        return assign_rfm(table, scheme).select("customer_id", "segment"), details
    if isinstance(scheme, ClusterConfig):
        from segvalue.segments.clusters import assign_clusters, fit_clusters

        fit = fitted.get(scheme.name)
        model = fit() if fit is not None else fit_clusters(table, scheme)
        details["model"] = model.to_dict()
        return assign_clusters(table, model), details
    raise ConfigError(f"{where}: unknown scheme type {scheme.type!r}")  # pragma: no cover


def _stability(details: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per-segment stability scores of the cluster schemes, for the quality checks."""
    out: dict[str, dict[str, float]] = {}
    for name, info in details.items():
        per_segment = ((info.get("model") or {}).get("stability") or {}).get("jaccard")
        if per_segment:
            out[name] = {str(k): float(v) for k, v in per_segment.items()}
    return out


def segment_customers(
    features: ir.Table,
    orders: ir.Table,
    config: SegmentsConfig,
    *,
    as_of: dt.date,
    customers: ir.Table | None = None,
    order_lines: ir.Table | None = None,
    only: Sequence[str] | None = None,
    cache: Cache = _no_cache,
    pii: Sequence[str] | None = None,
    fitted: Mapping[str, Callable[[], Any]] | None = None,
) -> Segmentation:
    """Run the configured schemes and profile, check and describe their segments.

    Parameters
    ----------
    features
        One row per customer (:func:`segvalue.features.customer.customer_features`, with
        CLV columns when available); the base every scheme must cover.
    orders
        Clean orders (lifecycle stages need the purchase history).
    config
        The ``segments`` section of ``segvalue.yaml``.
    as_of
        Observation end.
    customers
        Customer attributes joined to the features for rules and profiles.
    order_lines
        For exact category spend in market potential.
    only
        Names of the schemes to run (default: all).
    cache
        Stores an expression in the engine (the pipeline passes one); without it,
        expressions are recomputed where they are reused.
    pii
        Contact columns of ``customers``: rules may use them, profiles and personas never
        (default: found by :func:`segvalue.features.privacy.contact_columns`).
    fitted
        Cluster models already being fitted, by scheme name: each a function that waits
        for the model (see :func:`segvalue.segments.clusters.start_fit_clusters`), used
        instead of fitting the scheme here. They must come from the same customers and
        feature values as ``features``.

    Returns
    -------
    Segmentation

    Raises
    ------
    ConfigError
        For an unknown scheme name in ``only`` or a rule naming an unknown field.
    DataValidationError
        When a scheme does not give every customer exactly one membership.

    Examples
    --------
    >>> import ibis, datetime as dt
    >>> from segvalue.config import SegmentsConfig
    >>> o = ibis.memtable({"order_id": ["1", "2", "3"], "customer_id": ["a", "a", "b"],
    ...     "amount": [10.0, 30.0, 5.0], "order_ts": [dt.datetime(2024, 1, 1),
    ...     dt.datetime(2024, 2, 1), dt.datetime(2024, 3, 1)]})
    >>> from segvalue.features.customer import customer_features
    >>> f = customer_features({"orders": o}, as_of=dt.date(2024, 3, 31))
    >>> s = segment_customers(f, o, SegmentsConfig(min_size=1), as_of=dt.date(2024, 3, 31))
    >>> sorted(s.summary()["schemes"])
    ['lifecycle', 'rfm']
    """
    schemes = list(enumerate(config.schemes))
    if only:
        known = [s.name for _, s in schemes]
        unknown = [n for n in only if n not in known]
        if unknown:
            raise ConfigError(
                f"{unknown[0]!r} (`schemes`) is not a scheme in segments.schemes",
                fix=f"use one of: {', '.join(known) or '(none configured)'}",
            )
        schemes = [(i, s) for i, s in schemes if s.name in only]
    for index, scheme in schemes:  # contact details are never model inputs
        if isinstance(scheme, ClusterConfig):
            listed = [f for f in scheme.features if f in set(pii or ())]
            if listed:
                raise ConfigError(
                    f"segments.schemes[{index}].features: {listed[0]!r} holds contact "
                    "details, which are never clustered on",
                    fix=f"remove {listed[0]!r} from the features (or, if it is not personal "
                    "data, list it under privacy.not_pii)",
                )
    if not schemes:
        strings = pa.array([], pa.string())
        empty = pa.table({"customer_id": strings, "scheme": strings, "segment": strings})
        sizes = pa.table(
            {
                "scheme": strings,
                "segment": strings,
                "customers": pa.array([], pa.int64()),
                "share": pa.array([], pa.float64()),
            }
        )
        return Segmentation(empty, sizes, None, [], [], None, {})
    table = cache(customer_attributes(features, customers), "segment_input")
    fitted = fitted or {}
    details: dict[str, dict[str, Any]] = {}

    def assigned(group: Sequence[tuple[int, SchemeConfig]]) -> list[ir.Table]:
        parts = []
        for index, scheme in group:
            members, info = _assign(scheme, index, table, orders, as_of, cache, fitted)
            details[scheme.name] = info
            parts.append(
                members.select(
                    "customer_id",
                    scheme=ibis.literal(scheme.name, type="string"),
                    segment=members.segment.cast("string"),
                )
            )
        return parts

    # Schemes whose cluster model is still being fitted come last: the memberships of the
    # others are stored in the engine while that fit finishes.
    late = {i for i, s in schemes if isinstance(s, ClusterConfig) and s.name in fitted}
    pending = [(i, s) for i, s in schemes if i in late]
    ready = assigned([(i, s) for i, s in schemes if i not in late])
    # The population's profile, and the other schemes' segment profiles, are computed
    # while that fit finishes too.
    profiler = SegmentProfiler(table, pii=pii)
    n_customers = int(to_arrow(table.aggregate(n=table.count())).column("n")[0].as_py())
    early = bool(ready and pending)
    if early:
        ready = [cache(ibis.union(*ready) if len(ready) > 1 else ready[0], "memberships")]
        profiler.add(ready[0])
    parts = ready + assigned(pending)
    details = {s.name: details[s.name] for _, s in schemes}  # in the configured order
    stacked = cache(ibis.union(*parts) if len(parts) > 1 else parts[0], "memberships")
    counts = stacked.group_by(["scheme", "segment"]).aggregate(customers=stacked.count())
    sizes = to_arrow(
        counts.mutate(share=counts.customers.cast("float64") / max(n_customers, 1)).order_by(
            ["scheme", ibis.desc("customers"), "segment"]
        )
    )
    used = [s for _, s in schemes]
    checks: dict[str, Any] = {
        "min_size": config.min_size,
        "min_share": config.min_share,
        "max_segments": config.max_segments,
        "stability": _stability(details),
        "customers": n_customers,
        "tag_schemes": [
            s.name for s in used if isinstance(s, RuleSchemeConfig) and s.mode == "tags"
        ],
        "unassigned": sorted({unassigned_name(s) for s in used}),
    }
    if early:
        late_names = [s.name for _, s in pending]
        profiler.add(stacked.filter(stacked.scheme.isin(late_names)))
    else:
        profiler.add(stacked)
    profiles = profiler.result()
    # Near-duplicate segments are found from the profiles; a customer missing from an
    # exclusive scheme, or in it twice, is an error.
    warnings = segment_quality(stacked, profiles=profiles, **checks)
    raise_for_errors(warnings)
    personas = build_personas(profiles) if config.personas else []
    potential = None
    if config.market_potential:
        potential = pa.concat_tables(
            [
                market_potential(stacked, table, market, order_lines=order_lines, orders=orders)
                for market in config.market_potential
            ],
            promote_options="permissive",
        )
    return Segmentation(
        memberships=to_arrow(stacked.order_by(["scheme", "customer_id", "segment"])),
        sizes=sizes,
        profiles=profiles,
        personas=personas,
        quality=warnings,
        potential=potential,
        details=details,
    )
