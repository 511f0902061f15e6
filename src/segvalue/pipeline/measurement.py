"""The measurement stage: attribution per segment, channel effectiveness and roles,
experiment lift per segment and uplift models, from the run's own data.

It runs after the segments step, on the scheme ``measurement.scheme`` (default: the KPI
scheme), when the run has touchpoints (attribution, effectiveness) or an experiments
source (lift, uplift); the lift of ``experiments.priority_outcome`` per segment feeds the
segment priorities. Its tables and document are stored with the run
(``attribution``, ``channel_effectiveness``, ``experiment_lift``, ``uplift_curves``,
``uplift_scores``, and the ``measurement`` document); docs/measurement.md defines them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from segvalue.config import Config, MeasurementConfig
from segvalue.errors import ConfigError, DataValidationError, did_you_mean

if TYPE_CHECKING:
    from segvalue.data.validation import ValidatedData
    from segvalue.measurement.attribution import Journeys
    from segvalue.segments.segmentation import Segmentation

__all__ = ["Measurement", "measure", "measurement_scheme", "pick_scheme"]

#: The segment label of the rows over every customer.
EVERYONE = "all customers"
#: Points of each stored Qini curve (the share of customers targeted, 0 to 1).
CURVE_POINTS = 101
_DAY_US = 86_400 * 1_000_000
#: Responders and non-responders each group of an uplift model's training half needs.
MIN_CLASS = 5

_ATTRIBUTION_SCHEMA = pa.schema(
    [
        ("scheme", pa.string()),
        ("segment", pa.string()),
        ("model", pa.string()),
        ("channel", pa.string()),
        ("conversions", pa.float64()),
        ("value", pa.float64()),
        ("share", pa.float64()),
        ("removal_effect", pa.float64()),
    ]
)


@dataclass
class Measurement:
    """What the measurement stage found (see the module)."""

    scheme: str | None
    attribution: pa.Table
    effectiveness: pa.Table
    lift: pa.Table
    uplift_curves: pa.Table
    uplift_scores: pa.Table
    details: dict[str, Any] = field(default_factory=dict)
    #: Per segment (lift, lower, upper) of the priority outcome, for the priorities.
    priority_lift: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def tables(self) -> dict[str, pa.Table]:
        """The tables stored with the run, by name."""
        return {
            "attribution": self.attribution,
            "channel_effectiveness": self.effectiveness,
            "experiment_lift": self.lift,
            "uplift_curves": self.uplift_curves,
            "uplift_scores": self.uplift_scores,
        }

    def summary(self) -> dict[str, Any]:
        """For run.json: the scheme, the row counts and the stage's facts."""
        return {
            "scheme": self.scheme,
            "rows": {name: table.num_rows for name, table in self.tables().items()},
            **{k: v for k, v in self.details.items() if k != "uplift"},
        }


def _table(records: list[dict[str, Any]]) -> pa.Table:
    """Records as a table, every key of any record a column (None where a record has none)."""
    if not records:
        return pa.table({})
    keys = list(dict.fromkeys(k for r in records for k in r))
    return pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in records])


def measurement_scheme(config: Config, present: list[str]) -> str | None:
    """The scheme measured: ``measurement.scheme``, else the KPI scheme; None when the
    run segmented none. A configured scheme the run did not segment is an error.

    Examples
    --------
    >>> from segvalue.config import parse_config
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}})
    >>> measurement_scheme(cfg, ["lifecycle", "rfm"])
    'lifecycle'
    """
    if not present:
        return None
    return pick_scheme(config, present, config.measurement.scheme, "measurement.scheme")


def pick_scheme(config: Config, present: Sequence[str], wanted: str | None, key: str) -> str:
    """``wanted`` (the setting ``key``) when it is a scheme of the run, else the KPI
    scheme when the run has it, else the run's first scheme.

    Examples
    --------
    >>> from segvalue.config import parse_config
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}})
    >>> pick_scheme(cfg, ["rfm"], None, "measurement.scheme")
    'rfm'
    """
    from segvalue.economics.kpis import resolve_kpi_scheme

    if wanted is not None:
        if wanted not in present:
            raise ConfigError(
                f"{key} {wanted!r} is not a scheme of this run"
                f"{did_you_mean(wanted, list(present))}",
                fix=f"use one of {', '.join(sorted(present))}",
                parameter=key,
            )
        return wanted
    scheme = resolve_kpi_scheme(config.kpis, config.segments)
    return scheme if scheme in present else sorted(present)[0]


def _segments_of(segmentation: Segmentation | None, scheme: str | None) -> dict[str, str]:
    if segmentation is None or scheme is None:
        return {}
    m = segmentation.memberships
    out: dict[str, str] = {}
    for customer, s, segment in zip(
        m.column("customer_id").to_pylist(),
        m.column("scheme").to_pylist(),
        m.column("segment").to_pylist(),
        strict=True,
    ):
        if s == scheme and segment is not None:
            out.setdefault(str(customer), str(segment))
    return out


def measure(
    config: Config,
    data: ValidatedData,
    features: pa.Table,
    segmentation: Segmentation | None,
) -> Measurement | None:
    """Attribution, effectiveness, lift and uplift of the run's data (see the module);
    None when measurement is off or the run has neither touchpoints nor experiments.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.pipeline.ingest import load
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n"
    ...     "1,a,2024-01-02,5\\n2,b,2024-01-03,8\\n")
    >>> _ = (d / "t.csv").write_text("customer_id,ts,channel\\n"
    ...     "a,2024-01-01,email\\nb,2024-01-02,search\\nb,2024-01-02T12:00,email\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"},
    ...                     "touchpoints": {"path": "t.csv"}}}, base_dir=d)
    >>> m = measure(cfg, load(cfg), pa.table({"customer_id": ["a", "b"]}), None)
    >>> m.details["conversions"], m.details["journeys"]
    ('orders', 2)
    >>> rows = m.attribution.filter(pa.compute.equal(m.attribution["model"], "last"))
    >>> dict(zip(rows["channel"].to_pylist(), rows["conversions"].to_pylist()))
    {'email': 2.0, 'search': 0.0}
    """
    settings = config.measurement
    tables = data.tables
    if not settings.enabled or ("touchpoints" not in tables and "experiments" not in tables):
        return None
    present = (
        sorted(set(segmentation.memberships.column("scheme").to_pylist()))
        if segmentation is not None
        else []
    )
    scheme = measurement_scheme(config, present)
    segment_of = _segments_of(segmentation, scheme)
    details: dict[str, Any] = {"scheme": scheme, "level": settings.level}
    attribution = _ATTRIBUTION_SCHEMA.empty_table()
    effectiveness = pa.table({})
    if "touchpoints" in tables:
        attribution, effectiveness = _attribution(settings, data, scheme, segment_of, details)
    lift = pa.table({})
    curves = pa.table({})
    scores = pa.table({})
    priority: dict[str, tuple[float, float, float]] = {}
    if "experiments" in tables:
        lift, priority = _lift(settings, data, segment_of, details)
        if settings.experiments.uplift:
            curves, scores = _uplift(settings, data, features, details)
    return Measurement(scheme, attribution, effectiveness, lift, curves, scores, details, priority)


# ---------------------------------------------------------------------------- attribution
def _times_us(column: pa.ChunkedArray | pa.Array) -> np.ndarray[Any, np.dtype[np.int64]]:
    as_us = column.cast(pa.timestamp("us"))
    return np.asarray(as_us.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _conversion_rows(
    settings: MeasurementConfig, data: ValidatedData, touches: pa.Table, details: dict[str, Any]
) -> tuple[pa.Table, np.ndarray[Any, np.dtype[np.bool_]]]:
    """The touchpoint rows and the conversion rows, with a ``value`` each, and which rows
    are conversions."""
    from segvalue.features.materialise import to_arrow

    events = (
        touches.column("event").to_pylist()
        if "event" in touches.column_names
        else [None] * touches.num_rows
    )
    is_conversion = np.array([e == "conversion" for e in events], dtype=bool)
    source = settings.attribution.conversions
    if source == "auto":
        source = "touchpoints" if is_conversion.any() else "orders"
    details["conversions"] = source
    o = data.tables["orders"]
    orders = to_arrow(o.filter(o.amount > 0).select("customer_id", "order_ts", "amount"))
    base = pa.table(
        {
            "customer_id": touches.column("customer_id").cast(pa.string()),
            "ts": touches.column("ts").cast(pa.timestamp("us")),
            "channel": touches.column("channel").cast(pa.string()),
            "cost": touches.column("cost").cast(pa.float64())
            if "cost" in touches.column_names
            else pa.nulls(touches.num_rows, pa.float64()),
        }
    )
    if source == "orders":
        keep = ~is_conversion
        rows = pa.concat_tables(
            [
                base.filter(pa.array(keep)).append_column(
                    "value", pa.array(np.zeros(int(keep.sum())))
                ),
                pa.table(
                    {
                        "customer_id": orders.column("customer_id").cast(pa.string()),
                        "ts": orders.column("order_ts").cast(pa.timestamp("us")),
                        "channel": pa.nulls(orders.num_rows, pa.string()),
                        "cost": pa.nulls(orders.num_rows, pa.float64()),
                        "value": orders.column("amount").cast(pa.float64()),
                    }
                ),
            ]
        )
        flags = np.r_[np.zeros(int(keep.sum()), bool), np.ones(orders.num_rows, bool)]
        details["conversion_value"] = "the order's amount"
        return rows, flags
    # A conversion event's value: the customer's first order at or after it, within a day.
    value = np.zeros(touches.num_rows)
    picked = np.flatnonzero(is_conversion)
    if picked.size and orders.num_rows:
        found = _next_order(
            base.column("customer_id").take(pa.array(picked)),
            _times_us(base.column("ts").take(pa.array(picked))),
            orders.column("customer_id").cast(pa.string()),
            _times_us(orders.column("order_ts")),
            np.asarray(orders.column("amount").cast(pa.float64()).to_numpy(), dtype=np.float64),
        )
        matched = ~np.isnan(found)
        value[picked[matched]] = found[matched]
        details["conversions_without_an_order"] = int((~matched).sum())
    details["conversion_value"] = "the customer's first order at or after it, within a day"
    return base.append_column("value", pa.array(value)), is_conversion


def _next_order(
    customers: Any, times: Any, order_customers: Any, order_times: Any, amounts: Any
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Per conversion, the amount of the customer's first order at or after it within a
    day (NaN: none)."""
    import pyarrow.compute as pc

    n, m = len(customers), len(order_customers)
    who = pc.dictionary_encode(pa.concat_arrays([_plain(customers), _plain(order_customers)]))
    codes = np.asarray(who.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    at = np.r_[times, order_times]
    is_order = np.r_[np.zeros(n, bool), np.ones(m, bool)]
    # By customer, then time; at the same moment the conversion first (an order then
    # placed counts as at or after it).
    order = np.lexsort((is_order, at, codes))
    position = np.where(is_order[order], np.arange(n + m), n + m)
    next_pos = np.minimum.accumulate(position[::-1])[::-1]  # the next order row, sorted
    out = np.full(n, np.nan)
    rows = np.flatnonzero(~is_order[order])
    target = next_pos[rows]
    ok = target < n + m
    source, hit = order[rows[ok]], order[target[ok]]
    same = (codes[source] == codes[hit]) & (at[hit] - at[source] <= _DAY_US)
    out[source[same]] = amounts[hit[same] - n]
    return out


def _plain(values: Any) -> pa.Array:
    array = values.cast(pa.string())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _attribution(
    settings: MeasurementConfig,
    data: ValidatedData,
    scheme: str | None,
    segment_of: dict[str, str],
    details: dict[str, Any],
) -> tuple[pa.Table, pa.Table]:
    from segvalue.features.materialise import to_arrow
    from segvalue.measurement.attribution import attribute, journey_credit, journeys_from_touches
    from segvalue.measurement.effectiveness import channel_effectiveness, customer_channels

    a = settings.attribution
    t = data.tables["touchpoints"]
    touches = to_arrow(
        t.select(*[c for c in ("customer_id", "ts", "channel", "event", "cost") if c in t.columns])
    )
    rows, is_conversion = _conversion_rows(settings, data, touches, details)
    customers = rows.column("customer_id")
    journeys = journeys_from_touches(
        customers,
        rows.column("ts"),
        rows.column("channel"),
        is_conversion,
        rows.column("value"),
        lookback_days=a.lookback_days,
        session_gap_minutes=a.session_gap_minutes,
    )
    details.update(
        journeys=len(journeys.touches),
        converting_journeys=int(journeys.converted.sum()),
        conversions_without_touches=journeys.untouched,
        channels=list(journeys.channels),
        models=list(a.models),
        credit_model=a.credit_model,
        lookback_days=a.lookback_days,
        session_gap_minutes=a.session_gap_minutes,
    )
    groups: dict[str, Journeys] = {EVERYONE: journeys}
    if segment_of:
        picks: dict[str, list[int]] = {}
        for j, customer in enumerate(journeys.customers):
            segment = segment_of.get(str(customer))
            if segment is not None:
                picks.setdefault(segment, []).append(j)
        groups.update({s: _subset(journeys, picks[s]) for s in sorted(picks)})
    records: list[dict[str, Any]] = []
    model_details: dict[str, dict[str, Any]] = {}
    for segment, group in groups.items():
        paths = group.paths()  # aggregated once, for every model but time-decay
        for model in a.models:
            options: dict[str, Any] = {}
            if model == "time-decay":
                options["half_life_days"] = a.half_life_days
            elif model == "shapley":
                options["value_function"] = a.value_function
            elif model not in ("markov",):
                options.update(direct=a.direct, position=a.position)
            if group.converted.sum() <= 0:
                continue
            given = group if model == "time-decay" else paths
            found = attribute(given, model, order=a.markov_order, **options)
            total = found.total_conversions
            for i, channel in enumerate(found.channels):
                records.append(
                    {
                        "scheme": scheme if segment != EVERYONE else None,
                        "segment": segment,
                        "model": model,
                        "channel": channel,
                        "conversions": float(found.conversions[i]),
                        "value": float(found.value[i]),
                        "share": float(found.conversions[i] / total) if total > 0 else None,
                        "removal_effect": None
                        if found.removal_effects is None
                        else float(found.removal_effects[i]),
                    }
                )
            extra = {
                k: v
                for k, v in found.details.items()
                if isinstance(v, (int, float, str, bool)) and k != "conversions_without_touches"
            }
            if extra and segment == EVERYONE:
                model_details[model] = extra
    details["model_details"] = model_details
    credit = journey_credit(
        journeys,
        a.credit_model,
        direct=a.direct,
        position=a.position,
        half_life_days=a.half_life_days,
    )
    has_cost = "cost" in touches.column_names
    per_customer = customer_channels(
        journeys,
        credit,
        customers,
        rows.column("channel"),
        ~is_conversion,
        rows.column("cost") if has_cost else None,
    )
    effect = channel_effectiveness(
        per_customer,
        [segment_of.get(str(c)) for c in per_customer.customers],
        level=settings.level,
        min_reach=a.min_reach,
        everyone=EVERYONE,
    )
    for row in effect:
        row["scheme"] = scheme if row["segment"] != EVERYONE else None
    return (
        pa.Table.from_pylist(records, schema=_ATTRIBUTION_SCHEMA),
        _table(effect),
    )


def _subset(journeys: Journeys, rows: list[int]) -> Journeys:
    from segvalue.measurement.attribution import Journeys

    return Journeys(
        journeys.channels,
        tuple(journeys.touches[j] for j in rows),
        tuple(journeys.ages[j] for j in rows),
        journeys.converted[rows],
        journeys.value[rows],
        0,
        tuple(journeys.customers[j] for j in rows),
    )


# ---------------------------------------------------------------------------- experiments
def _outcome_columns(settings: MeasurementConfig, table: Any) -> list[str]:
    e = settings.experiments
    columns = list(table.columns)
    if e.outcomes is None:
        found = [c for c in ("converted", "revenue") if c in columns]
        if not found:
            raise ConfigError(
                "the experiments source has no outcome column (converted, revenue)",
                fix="name its outcome columns in measurement.experiments.outcomes",
                parameter="measurement.experiments.outcomes",
            )
        return found
    for name in e.outcomes:
        if name not in columns:
            raise ConfigError(
                f"measurement.experiments.outcomes names {name!r}, not a column of the "
                f"experiments source{did_you_mean(name, columns)}",
                fix=f"use columns of the experiments source: {', '.join(columns)}",
                parameter="measurement.experiments.outcomes",
            )
    return list(e.outcomes)


def _experiment_rows(
    settings: MeasurementConfig, data: ValidatedData
) -> tuple[pa.Table, list[str]]:
    from segvalue.features.materialise import to_arrow

    e = settings.experiments
    x = data.tables["experiments"]
    if e.group_column not in x.columns:
        raise ConfigError(
            f"measurement.experiments.group_column {e.group_column!r} is not a column of the "
            f"experiments source{did_you_mean(e.group_column, list(x.columns))}",
            fix="name the column holding each customer's group (treatment, control, ...)",
            parameter="measurement.experiments.group_column",
        )
    outcomes = _outcome_columns(settings, x)
    keep = ["customer_id", "experiment_id", e.group_column, *outcomes]
    if "assigned_at" in x.columns:
        keep.append("assigned_at")
    return to_arrow(x.select(*dict.fromkeys(keep))), outcomes


def _lift(
    settings: MeasurementConfig,
    data: ValidatedData,
    segment_of: dict[str, str],
    details: dict[str, Any],
) -> tuple[pa.Table, dict[str, tuple[float, float, float]]]:
    from segvalue.measurement.lift import campaign_roi, lift_table

    e = settings.experiments
    table, outcomes = _experiment_rows(settings, data)
    experiments = sorted({str(v) for v in table.column("experiment_id").to_pylist()})
    records: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for experiment in experiments:
        mine = table.filter(
            pa.compute.equal(table.column("experiment_id").cast(pa.string()), experiment)
        )
        groups = [None if g is None else str(g) for g in mine.column(e.group_column).to_pylist()]
        if e.control not in groups:
            skipped[experiment] = len(groups)
            continue
        arms = sorted({g for g in groups if g is not None} - {e.control, *e.ignore})
        customers = [str(c) for c in mine.column("customer_id").to_pylist()]
        for outcome in outcomes:
            raw = mine.column(outcome).to_pylist()
            rows = [i for i, v in enumerate(raw) if v is not None and groups[i] is not None]
            values = np.array([float(raw[i]) for i in rows])
            finite = np.isfinite(values)
            rows = [r for r, ok in zip(rows, finite, strict=True) if ok]
            if not arms or not rows:
                continue
            found = lift_table(
                [groups[i] for i in rows],
                {outcome: values[finite]},
                control=e.control,
                treatments=[a for a in arms if a in {groups[i] for i in rows}] or None,
                segments=[segment_of.get(customers[i]) for i in rows] if segment_of else None,
                level=settings.level,
                adjust=e.adjust,
            )
            for row in found:
                row["experiment_id"] = experiment
                row["segment"] = EVERYONE if row["segment"] is None else row["segment"]
                low, high = row.pop("incremental_ci")
                row["incremental_lower"], row["incremental_upper"] = low, high
                if not row["binary"] and e.contact_cost is not None:
                    roi = campaign_roi(
                        {**row, "incremental_ci": [low, high]},
                        contact_cost=e.contact_cost,
                        margin=e.margin,
                    )
                    row.update(
                        roi_cost=roi["cost"],
                        roi=roi["roi"],
                        roi_lower=roi["roi_low"],
                        roi_upper=roi["roi_high"],
                    )
                records.append(row)
    details["experiments"] = experiments
    if skipped:
        details["experiments_without_control"] = skipped
    lift = _table(records)
    return lift, _priority_lift(settings, records, outcomes, details)


def _priority_lift(
    settings: MeasurementConfig,
    records: list[dict[str, Any]],
    outcomes: list[str],
    details: dict[str, Any],
) -> dict[str, tuple[float, float, float]]:
    """Per segment, the lift of the priority outcome in the latest experiment's first arm."""
    e = settings.experiments
    outcome = e.priority_outcome or (outcomes[0] if outcomes else None)
    if e.priority_outcome is not None and e.priority_outcome not in outcomes:
        raise ConfigError(
            f"measurement.experiments.priority_outcome {e.priority_outcome!r} is not one of "
            f"the outcomes ({', '.join(outcomes)})",
            fix="pick one of the outcomes",
            parameter="measurement.experiments.priority_outcome",
        )
    chosen = [r for r in records if r["outcome"] == outcome]
    if not chosen:
        return {}
    experiment = max(r["experiment_id"] for r in chosen)
    arm = min(r["arm"] for r in chosen if r["experiment_id"] == experiment)
    details["priority_lift"] = {"experiment_id": experiment, "arm": arm, "outcome": outcome}
    return {
        r["segment"]: (float(r["lift"]), float(r["ci_low"]), float(r["ci_high"]))
        for r in chosen
        if r["experiment_id"] == experiment
        and r["arm"] == arm
        and r["segment"] != EVERYONE
        and all(math.isfinite(float(r[k])) for k in ("lift", "ci_low", "ci_high"))
    }


# ---------------------------------------------------------------------------- uplift
def _uplift(
    settings: MeasurementConfig,
    data: ValidatedData,
    features: pa.Table,
    details: dict[str, Any],
) -> tuple[pa.Table, pa.Table]:
    """Per experiment: an uplift model fitted on a seeded half of the customers (every
    treated arm against control, on the first 0/1 outcome), evaluated on the other half;
    the Qini curves and every customer's score."""
    from segvalue.measurement.uplift import (
        evaluate_uplift,
        fit_uplift,
        perfect_qini_curve,
        qini_curve,
    )

    e = settings.experiments
    table, outcomes = _experiment_rows(settings, data)
    columns = _uplift_features(settings, features)
    index = {str(c): i for i, c in enumerate(features.column("customer_id").to_pylist())}
    matrix = np.column_stack(
        [features.column(c).cast(pa.float64()).fill_null(math.nan).to_numpy() for c in columns]
    )
    curves: list[dict[str, Any]] = []
    scores: list[dict[str, Any]] = []
    found: dict[str, Any] = {}
    for experiment in sorted({str(v) for v in table.column("experiment_id").to_pylist()}):
        mine = table.filter(
            pa.compute.equal(table.column("experiment_id").cast(pa.string()), experiment)
        )
        groups = [str(g) for g in mine.column(e.group_column).to_pylist()]
        binary = [
            o
            for o in outcomes
            if {v for v in mine.column(o).to_pylist() if v is not None} <= {0, 1}
        ]
        if not binary:
            found[experiment] = {"skipped": "no 0/1 outcome"}
            continue
        outcome = binary[0]
        y_raw = mine.column(outcome).to_pylist()
        rows = [
            i
            for i, g in enumerate(groups)
            if y_raw[i] is not None
            and g not in e.ignore
            and str(mine.column("customer_id")[i].as_py()) in index
        ]
        y = np.array([float(y_raw[i]) for i in rows])
        t = np.array([1.0 if groups[i] != e.control else 0.0 for i in rows])
        if t.sum() < 50 or (1 - t).sum() < 50:
            found[experiment] = {"skipped": "fewer than 50 treated or control customers"}
            continue
        ids = [str(mine.column("customer_id")[i].as_py()) for i in rows]
        x = matrix[[index[c] for c in ids]]
        rng = np.random.default_rng(e.seed)
        train = np.zeros(len(rows), dtype=bool)
        for flag in (0.0, 1.0):  # half of each group
            members = np.flatnonzero(t == flag)
            train[rng.permutation(members)[: members.size // 2]] = True
        fit_rows = np.flatnonzero(train)
        if fit_rows.size > e.uplift_sample:  # a seeded sample of the training half
            fit_rows = np.sort(rng.choice(fit_rows, e.uplift_sample, replace=False))
        fewest = min(
            int(((t[fit_rows] == g) & (y[fit_rows] == v)).sum()) for g in (0, 1) for v in (0, 1)
        )
        if fewest < MIN_CLASS:  # each group's classifier needs both outcomes, and some
            found[experiment] = {
                "skipped": f"fewer than {MIN_CLASS} responders or non-responders in a group "
                "of the training half"
            }
            continue
        model = fit_uplift(
            x[fit_rows], y[fit_rows], t[fit_rows], method=e.uplift_method, seed=e.seed
        )
        score = model.predict(x)
        test = ~train
        evaluation = evaluate_uplift(y[test], score[test], t[test], resamples=200, seed=e.seed)
        found[experiment] = {
            "outcome": outcome,
            "method": e.uplift_method,
            "features": columns,
            "n_train": int(train.sum()),
            "n_fit": int(fit_rows.size),
            **evaluation,
        }
        grid = np.linspace(0.0, 1.0, CURVE_POINTS)
        for name, (xs, vs) in (
            ("model", qini_curve(y[test], score[test], t[test])),
            ("perfect", perfect_qini_curve(y[test], t[test])),
        ):
            share = xs / xs[-1]
            for s, v in zip(grid, np.interp(grid, share, vs), strict=True):
                curves.append(
                    {
                        "experiment_id": experiment,
                        "curve": name,
                        "share": float(s),
                        "qini": float(v),
                    }
                )
        end = float(qini_curve(y[test], score[test], t[test])[1][-1])
        for s in grid:
            curves.append(
                {
                    "experiment_id": experiment,
                    "curve": "random",
                    "share": float(s),
                    "qini": float(s * end),
                }
            )
        scores.extend(
            {"experiment_id": experiment, "customer_id": c, "uplift": float(u), "holdout": bool(h)}
            for c, u, h in zip(ids, score, test, strict=True)
        )
    details["uplift"] = found
    return (
        _table(curves),
        _table(scores),
    )


def _uplift_features(settings: MeasurementConfig, features: pa.Table) -> list[str]:
    wanted = settings.experiments.uplift_features
    numeric = [
        f.name
        for f in features.schema
        if f.name != "customer_id"
        and (
            pa.types.is_integer(f.type)
            or pa.types.is_floating(f.type)
            or pa.types.is_boolean(f.type)
        )
    ]
    if wanted is None:
        if not numeric:
            raise DataValidationError(
                "the run's customer features have no numeric column to fit an uplift model on",
                fix="turn measurement.experiments.uplift off, or add customer attributes",
            )
        return numeric
    for name in wanted:
        if name not in numeric:
            raise ConfigError(
                f"measurement.experiments.uplift_features names {name!r}, not a numeric "
                f"customer feature{did_you_mean(name, numeric)}",
                fix="name numeric columns of customer_features",
                parameter="measurement.experiments.uplift_features",
            )
    return list(wanted)
