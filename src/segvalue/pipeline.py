"""The one orchestration path that every face (CLI, API, notebooks) calls.

``run`` reads every configured source into the engine, validates it (rejects with
reasons, lookback, freshness, sufficiency warnings), computes per-customer features in the
engine and writes the outputs atomically. Later capabilities (CLV, segments, KPIs) hang
further steps on the same path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from segvalue import __version__
from segvalue.config import Config, config_template, load_config, parse_config
from segvalue.data.readers import connect, engine_table, materialise, read_source
from segvalue.data.store import load_snapshot, previous_run, save_snapshot
from segvalue.data.validation import ValidatedData, ValidationReport, validate_sources
from segvalue.data.writers import write_outputs, write_table, write_text_atomic
from segvalue.errors import ConfigError, SegvalueError
from segvalue.features.customer import customer_features
from segvalue.features.materialise import to_arrow
from segvalue.features.rfm import rfm_features
from segvalue.segments.segmentation import Segmentation
from segvalue.units import TimeUnit, parse_time_unit
from segvalue.valuation import Valuation

__all__ = [
    "OrdersFile",
    "Progress",
    "RunResult",
    "budget_what_if",
    "clv_from_file",
    "config_hash",
    "load",
    "plan_budget",
    "rfm_from_file",
    "run",
    "run_config",
    "run_demo",
    "validate_config",
    "write_config_template",
]

Objective = Literal["profit", "revenue", "clv"]

#: Called as ``progress(step_description, step_index, step_count)``.
Progress = Callable[[str, int, int], None]


@dataclass
class Economics:
    """Segment KPIs with intervals, target status, priorities and budget guidance."""

    scheme: str
    kpis: pa.Table
    status: pa.Table
    priorities: pa.Table
    guidance: Any

    def summary(self) -> dict[str, Any]:
        """The scheme, per-segment statuses off track or at risk, and the ranking."""
        flagged = [r for r in self.status.to_pylist() if r["status"] in ("off_track", "at_risk")]
        return {
            "scheme": self.scheme,
            "segments": self.kpis.num_rows - 1,
            "targets_flagged": flagged,
            "priorities": [
                {k: r[k] for k in ("segment", "rank", "score", "reasons") if k in r}
                for r in self.priorities.to_pylist()
            ],
        }


@dataclass
class Migration:
    """How memberships moved since the previous recorded run."""

    previous_run: str
    matrix: pa.Table
    events: pa.Table
    alerts: list[Any]

    def summary(self) -> dict[str, Any]:
        """Previous run id, event count and drift alerts."""
        return {
            "previous_run": self.previous_run,
            "events": self.events.num_rows,
            "drift_alerts": [a.to_dict() for a in self.alerts],
        }


@dataclass
class RunResult:
    """What one run produced."""

    run_id: str
    config_hash: str
    report: ValidationReport
    features: pa.Table
    rejects: pa.Table
    outputs: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    valuation: Valuation | None = None
    segmentation: Segmentation | None = None
    migration: Migration | None = None
    economics: Economics | None = None

    def summary(self) -> dict[str, Any]:
        """Run metadata: id, config hash, row counts, rejects, freshness, timings."""
        return {
            "run_id": self.run_id,
            "segvalue_version": __version__,
            "config_hash": self.config_hash,
            "customers": self.features.num_rows,
            "validation": self.report.to_dict(),
            "clv": None if self.valuation is None else self.valuation.to_dict(),
            "segments": None if self.segmentation is None else self.segmentation.summary(),
            "migration": None if self.migration is None else self.migration.summary(),
            "kpis": None if self.economics is None else self.economics.summary(),
            "timings_seconds": {k: round(v, 3) for k, v in self.timings.items()},
            "outputs": {k: str(v) for k, v in self.outputs.items()},
        }


def config_hash(config: Config) -> str:
    """A stable hash of the configuration, recorded with every run.

    Examples
    --------
    >>> from segvalue.config import parse_config
    >>> len(config_hash(parse_config({"sources": {"orders": {"path": "o.csv"}}})))
    16
    """
    payload = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class _Steps:
    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.progress, self.index = total, progress, 0
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, key: str, description: str) -> Iterator[None]:
        if self.progress is not None:
            self.progress(description, self.index, self.total)
        start = time.perf_counter()
        yield
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start
        self.index += 1
        if self.progress is not None and self.index == self.total:
            self.progress("done", self.total, self.total)


def load(config: Config, *, engine: Any = None, progress: Progress | None = None) -> ValidatedData:
    """Read and validate every configured source (no outputs are written).

    Parameters
    ----------
    config
        The validated configuration.
    engine
        An Ibis backend or a ``pyspark.sql.SparkSession`` to use instead of
        ``config.engine.url`` (sources given by ``table`` alone are read from it).
    progress
        Optional callback for long steps.

    Returns
    -------
    ValidatedData
        Clean tables in the engine, the rejects and the report.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> load(cfg).report.tables["orders"].rows_accepted
    1
    """
    steps = _Steps(len(config.sources) + 1, progress)
    return _load(config, steps, engine)


def _load(config: Config, steps: _Steps, engine: Any = None) -> ValidatedData:
    con = connect(engine if engine is not None else config.engine.url)
    try:
        raws = {}
        for name in config.sources:
            with steps.step("read", f"reading {name}"):
                raws[name] = read_source(con, name, config)
        with steps.step("validate", "validating"):
            return validate_sources(con, raws, config)
    except BaseException:
        if engine is None:  # a connection we opened ourselves: do not leak it
            con.disconnect()
        raise


def _model_documents(valuation: Valuation | None) -> dict[str, Any]:
    """The fitted CLV models as JSON documents (reloadable with ``model_from_json``)."""
    if valuation is None:
        return {}
    docs = {"clv_transaction_model": valuation.transactions.to_dict()}
    if valuation.spend is not None:
        docs["clv_spend_model"] = valuation.spend.to_dict()
    return docs


#: Below this many repeat customers no transaction model is fitted (the run warns instead).
MIN_REPEAT_CUSTOMERS_FOR_CLV = 10


def _scalar_of(expr: Any) -> Any:
    return expr.to_pyarrow().as_py()


def _value_customers(
    config: Config, data: ValidatedData, features: Any
) -> tuple[Valuation | None, Any]:
    """Fit the CLV models, score each unique (x, t_x, T, m) pattern, join back in the engine.

    Models never see raw transactions: they are fitted on per-customer summaries and
    evaluated once per distinct pattern; the engine joins the scores to every customer.
    Customers without a purchase (prospects) get null scores.
    """

    from segvalue.features.materialise import to_numpy
    from segvalue.units import per_period_rate
    from segvalue.valuation import score_customers

    report, settings = data.report, config.clv
    unit, as_of = report.time_unit, report.as_of
    repeaters = int(_scalar_of(features.filter(features.frequency > 0).count()))
    if repeaters < MIN_REPEAT_CUSTOMERS_FOR_CLV:
        report.warnings.append(
            f"CLV not computed: {repeaters} repeat customers, at least "
            f"{MIN_REPEAT_CUSTOMERS_FOR_CLV} are needed to fit a transaction model"
        )
        return None, features
    calibration_end = None
    if settings.holdout is not None:
        calibration_end = as_of - dt.timedelta(days=round(settings.holdout * unit.days))
    valuation = _fit_valuation(
        data.tables["orders"],
        as_of=as_of,
        unit=unit,
        calibration_end=calibration_end,
        model=settings.model,
        spend_model=settings.spend_model,
    )
    keys = ["frequency", "recency", "T", "monetary_value"]
    # Materialise once: sums of floats in a parallel engine may differ in the last bit
    # between two evaluations, and the scores are joined back on these values.
    features = materialise(data.con, features, "features")
    patterns = features.filter(features.frequency.notnull()).select(*keys).distinct()
    arrays = to_numpy(patterns)
    scores = score_customers(
        valuation,
        arrays,
        horizon=settings.horizon,
        discount_rate=per_period_rate(settings.discount_rate, unit),
        margin=settings.margin,
    )
    scored = engine_table(data.con, pa.table({**{k: arrays[k] for k in keys}, **scores}))
    joined = features.left_join(scored, keys).drop(*(f"{k}_right" for k in keys))
    if calibration_end is not None:
        joined = _add_propensity(data, valuation, joined, calibration_end)
    return valuation, joined


# Columns that identify or date a customer rather than describe behaviour.
_NOT_FEATURES = {"customer_id", "first_purchase", "last_purchase"}
_SCORES = {
    "probability_alive",
    "churn_risk",
    "expected_purchases",
    "expected_spend",
    "clv",
    "clv_lower",
    "clv_upper",
}


def _feature_matrix(
    features: pa.Table, customers: pa.Table | None, names: list[str] | None = None
) -> tuple[np.ndarray[Any, Any], list[str], list[bool]]:
    """Numeric features plus customer attributes (categoricals as integer codes)."""
    import pyarrow.compute as pc

    table = features
    if customers is not None:
        extra = [c for c in customers.column_names if c not in table.column_names]
        table = table.join(customers.select(["customer_id", *extra]), "customer_id")
        table = table.sort_by("customer_id")
    columns, kinds, matrix = [], [], []
    for name in table.column_names:
        if name in _NOT_FEATURES or name in _SCORES or name.startswith("_"):
            continue
        if names is not None and name not in names:
            continue
        column = table.column(name)
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            categorical = False
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            encoded = pc.dictionary_encode(column).combine_chunks()
            if len(encoded.dictionary) > 50:  # identifiers such as e-mail: no signal
                continue
            values = encoded.indices.cast(pa.float64()).to_numpy(zero_copy_only=False)
            categorical = True
        else:
            continue
        columns.append(name)
        kinds.append(categorical)
        matrix.append(np.nan_to_num(values, nan=np.nan))
    if names is not None:
        order = [columns.index(n) for n in names if n in columns]
        columns = [columns[i] for i in order]
        kinds = [kinds[i] for i in order]
        matrix = [matrix[i] for i in order]
    return np.column_stack(matrix), columns, kinds


def _add_propensity(
    data: ValidatedData, valuation: Valuation, features: Any, calibration_end: dt.date
) -> Any:
    """Train "buys in the next holdout-length window" on calibration-time features.

    Labels come from the holdout period; 30 % of customers (by a hash of their id) are
    held out to compare the classifier with the BTYD baseline. The classifier then
    scores every customer from their features at the observation end.
    """
    import ibis

    from segvalue.features.materialise import to_arrow
    from segvalue.models.propensity import PurchasePropensityModel, evaluate_propensity

    report = data.report
    unit, as_of = report.time_unit, report.as_of
    limit = dt.datetime.combine(calibration_end + dt.timedelta(days=1), dt.time())
    tables = dict(data.tables)
    tables["orders"] = tables["orders"].filter(tables["orders"].order_ts < limit)
    if "touchpoints" in tables:
        tables["touchpoints"] = tables["touchpoints"].filter(tables["touchpoints"].ts < limit)
    past = customer_features(tables, as_of=calibration_end, time_unit=unit)
    past = past.filter(past.frequency.notnull())
    orders = data.tables["orders"]
    later = orders.filter((orders.order_ts >= limit) & (orders.amount >= 0))
    buyers = later.select("customer_id").distinct().mutate(bought=ibis.literal(True))
    labelled = past.left_join(buyers, "customer_id").drop("customer_id_right")
    labelled = to_arrow(labelled.mutate(bought=labelled.bought.fill_null(False)))
    labelled = labelled.sort_by("customer_id")
    customers = to_arrow(data.tables["customers"]) if "customers" in data.tables else None
    matrix, names, kinds = _feature_matrix(labelled.drop(["bought"]), customers)
    y = np.asarray(labelled.column("bought").to_numpy(zero_copy_only=False), dtype=bool)
    ids = labelled.column("customer_id").to_pylist()
    test = np.array([hash_id(c) % 10 < 3 for c in ids])
    model = PurchasePropensityModel().fit(
        matrix[~test], y[~test], feature_names=names, categorical=kinds
    )
    t_model = valuation.transactions
    x, t_x, big_t = (
        labelled.column(k).to_numpy(zero_copy_only=False) for k in ("frequency", "recency", "T")
    )
    horizon = (as_of - calibration_end).days / unit.days
    baseline = 1.0 - np.asarray(
        t_model.probability_of_purchases(0, x[test], t_x[test], big_t[test], horizon=horizon)
    )
    valuation.propensity = {
        "horizon": horizon,
        "customers": int(y.size),
        "held_out": int(test.sum()),
        "base_rate": float(y.mean()),
        "features": names,
        "classifier": evaluate_propensity(y[test], model.predict_proba(matrix[test])).to_dict(),
        "btyd_baseline": evaluate_propensity(y[test], baseline).to_dict(),
    }
    current = to_arrow(features.filter(features.frequency.notnull()))
    now, _, _ = _feature_matrix(current, customers, names)
    scores = pa.table(
        {
            "customer_id": current.sort_by("customer_id").column("customer_id")
            if customers is not None
            else current.column("customer_id"),
            "purchase_propensity": model.predict_proba(now),
        }
    )
    joined = features.left_join(ibis.memtable(scores), "customer_id")
    return joined.drop("customer_id_right")


def hash_id(customer_id: str) -> int:
    """A stable hash of a customer id (Python's hash() is salted per process).

    Examples
    --------
    >>> hash_id("C0000001") == hash_id("C0000001")
    True
    """
    return int(hashlib.blake2b(str(customer_id).encode(), digest_size=4).hexdigest(), 16)


def run(
    config: Config,
    *,
    engine: Any = None,
    progress: Progress | None = None,
    write: bool = True,
    schemes: list[str] | None = None,
) -> RunResult:
    """Run the main job: ingest, validate, features, CLV, segments; write outputs atomically.

    Parameters
    ----------
    config
        The validated configuration.
    engine
        An Ibis backend or a Spark session to use instead of ``config.engine.url``.
    progress
        Optional callback ``(description, index, total)`` for a progress bar.
    write
        Write outputs to ``config.output_dir`` (features, rejects, run report, CLV models,
        segments) and record the run's memberships in ``config.store_dir``.
    schemes
        Run only these segmentation schemes (default: all configured).

    Returns
    -------
    RunResult

    Raises
    ------
    SegvalueError
        For any problem with the inputs or the configuration; nothing is written then.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> result = run(cfg)
    >>> result.features.num_rows, [n for n in sorted(result.outputs) if "segment" not in n][:5]
    (1, ['budget_guidance', 'customer_features', 'kpi_status', 'persona_sheet', 'personas'])
    >>> result.segmentation.sizes.column("scheme").to_pylist()
    ['lifecycle', 'rfm']
    """
    enabled = int(config.clv.enabled) + 2 * int(config.segments.enabled)
    steps = _Steps(len(config.sources) + 4 + enabled + 2 * int(write), progress)
    data = _load(config, steps, engine)
    report = data.report
    with steps.step("features", "computing customer features"):
        features_expr = customer_features(
            data.tables, as_of=report.as_of, time_unit=report.time_unit
        )
    valuation = None
    if config.clv.enabled:
        with steps.step("clv", "fitting CLV models and scoring customers"):
            valuation, features_expr = _value_customers(config, data, features_expr)
    features_expr = materialise(data.con, features_expr, "features")
    segmentation = None
    if config.segments.enabled:
        with steps.step("segments", "segmenting customers"):
            segmentation = _segment(config, data, features_expr, schemes)
    economics = None
    if segmentation is not None and segmentation.memberships.num_rows:
        with steps.step("kpis", "segment KPIs, targets and priorities"):
            economics = _economics(config, data, features_expr, segmentation)
    with steps.step("materialise", "collecting customer table"):
        features = to_arrow(features_expr.order_by("customer_id"))
    with steps.step("rejects", "collecting rejects"):
        rejects = to_arrow(data.rejects.order_by(["table", "row"]))
    result = RunResult(
        run_id=dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6],
        config_hash=config_hash(config),
        report=report,
        features=features,
        rejects=rejects,
        valuation=valuation,
        segmentation=segmentation,
        economics=economics,
    )
    if write:
        if segmentation is not None:
            with steps.step("migration", "comparing with the previous run"):
                result.migration = _migration(config, segmentation)
        with steps.step("write", "writing outputs"):
            tables, documents, texts = _segment_outputs(segmentation, result.migration)
            if economics is not None:
                tables.update(
                    segment_kpis=economics.kpis,
                    kpi_status=economics.status,
                    segment_priorities=economics.priorities,
                )
                documents["budget_guidance"] = economics.guidance.to_dict()
            result.outputs = write_outputs(
                config.output_dir,
                {"customer_features": features, "rejects": rejects, **tables},
                {"run": result.summary(), **_model_documents(valuation), **documents},
                fmt=config.output.format,
                texts=texts,
            )
            if segmentation is not None:
                save_snapshot(
                    config.store_dir, result.run_id, segmentation.memberships, result.summary()
                )
    result.timings = steps.timings
    return result


def _segment(
    config: Config, data: ValidatedData, features: Any, only: list[str] | None = None
) -> Segmentation:
    from segvalue.segments.segmentation import segment_customers

    return segment_customers(
        features,
        data.tables["orders"],
        config.segments,
        as_of=data.report.as_of,
        customers=data.tables.get("customers"),
        order_lines=data.tables.get("order_lines"),
        only=only,
        cache=lambda expr, prefix: materialise(data.con, expr, prefix),
    )


def _economics(
    config: Config, data: ValidatedData, features: Any, segmentation: Segmentation
) -> Economics:
    from segvalue.economics.kpis import kpi_status, resolve_kpi_scheme, segment_kpis
    from segvalue.economics.priorities import budget_guidance, segment_priorities

    scheme = resolve_kpi_scheme(config.kpis, config.segments)
    present = set(segmentation.memberships.column("scheme").to_pylist())
    if scheme not in present:  # e.g. `segment --scheme` ran other schemes only
        scheme = sorted(present)[0]
    # clv.margin counts only when the user set it; otherwise ROI is on revenue.
    margin = config.clv.margin if "margin" in config.clv.model_fields_set else None
    kpis = segment_kpis(
        segmentation.memberships,
        features,
        orders=data.tables["orders"],
        touchpoints=data.tables.get("touchpoints"),
        channel_spend=data.tables.get("channel_spend"),
        config=config.kpis,
        scheme=scheme,
        as_of=data.report.as_of,
        margin_rate=margin,
    )
    return Economics(
        scheme=scheme,
        kpis=kpis,
        status=kpi_status(kpis, config.kpis.targets),
        priorities=segment_priorities(kpis),
        guidance=budget_guidance(kpis, horizon=config.clv.horizon),
    )


def _migration(config: Config, segmentation: Segmentation) -> Migration | None:
    """Transitions, enter / exit events and drift since the latest recorded run."""
    from segvalue.segments.migration import drift_alerts, membership_events, transition_matrix

    previous = previous_run(config.store_dir)
    if previous is None:
        return None
    before = load_snapshot(config.store_dir, previous)
    after = segmentation.memberships
    kinds = {name: info.get("mode", "exclusive") for name, info in segmentation.details.items()}
    common = sorted(set(kinds) & set(before.column("scheme").to_pylist()))
    tags = [n for n in common if kinds[n] == "tags"]
    exclusive = [n for n in common if kinds[n] != "tags"]

    def only(table: pa.Table, names: list[str]) -> pa.Table:
        return table.filter(pc.is_in(table.column("scheme"), pa.array(names, pa.string())))

    matrix = transition_matrix(only(before, exclusive), only(after, exclusive))
    alerts = drift_alerts(
        only(before, exclusive), only(after, exclusive), config.segments.drift_threshold
    )
    events = to_arrow(
        membership_events(only(before, common), only(after, common), tag_schemes=tags)
    )
    return Migration(previous_run=previous, matrix=matrix, events=events, alerts=alerts)


def _segment_outputs(
    segmentation: Segmentation | None, migration: Migration | None
) -> tuple[dict[str, pa.Table], dict[str, Any], dict[str, str]]:
    """Tables, JSON documents and text files of the segmentation step."""
    if segmentation is None:
        return {}, {}, {}
    from segvalue.segments.personas import personas_markdown

    tables = {"segment_memberships": segmentation.memberships, "segment_sizes": segmentation.sizes}
    if segmentation.profiles is not None:
        tables["segment_profiles"] = segmentation.profiles.segments
        tables["segment_profiles_numeric"] = segmentation.profiles.numeric
        tables["segment_profiles_attributes"] = segmentation.profiles.attributes
    if segmentation.potential is not None:
        tables["market_potential"] = segmentation.potential
    if migration is not None:
        tables["segment_migration"] = migration.matrix
        tables["membership_events"] = migration.events
    documents = {
        "segments": segmentation.summary(),
        "personas": [p.to_dict() for p in segmentation.personas],
    }
    texts = {"persona_sheet.md": personas_markdown(segmentation.personas)}
    return tables, documents, texts


def run_config(
    path: str | Path, *, schemes: list[str] | None = None, progress: Progress | None = None
) -> RunResult:
    """Load ``segvalue.yaml`` and run the main job on it (``segvalue run`` / ``segment``).

    Examples
    --------
    >>> run_config("/nonexistent/segvalue.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: ...
    """
    config = load_config(path)
    if schemes and not config.segments.enabled:
        raise ConfigError(
            f"{path}: segments.enabled is false", fix="set segments.enabled: true to segment"
        )
    return run(config, progress=progress, schemes=schemes)


def _budget_items(
    config_path: str | Path | None, curves_path: str | Path | None
) -> tuple[list[Any], float | None, Any, dict[str, Any], list[str]]:
    """Items, default total, budget settings (None for a curves file), fitted curves, warnings."""
    from segvalue.data.readers import read_document
    from segvalue.economics.budget import curves_from_mapping
    from segvalue.economics.curves import fit_curves_from_channel_spend, response_items

    if (config_path is None) == (curves_path is None):
        raise ConfigError(
            "give either a config (-c) or a curves file (--curves)",
            fix="segvalue budget --curves curves.yaml, or segvalue budget -c segvalue.yaml",
        )
    if curves_path is not None:
        curves = curves_from_mapping(read_document(curves_path), source=str(curves_path))
        return list(curves.items), curves.total, None, {}, []
    assert config_path is not None
    config = load_config(config_path)
    settings = config.budget
    if settings.items:
        return list(settings.items), settings.total, settings, {}, []
    if "channel_spend" not in config.sources:
        raise ConfigError(
            f"{config_path}: no budget.items and no channel_spend source to fit curves from",
            fix="add a channel_spend source, budget.items, or use --curves FILE",
        )
    data = _load(config, _Steps(len(config.sources) + 1, None))
    fits = fit_curves_from_channel_spend(
        data.tables["channel_spend"],
        segment=settings.scheme,
        form=settings.form,
        adstock=settings.adstock,
    )
    warnings = [w for fit in fits.values() for w in fit.warnings]
    items = response_items(fits, max_change=settings.max_change)
    return items, settings.total, settings, dict(fits), warnings


def plan_budget(
    *,
    config_path: str | Path | None = None,
    curves_path: str | Path | None = None,
    total: float | None = None,
    objective: str | None = None,
    target: float | None = None,
) -> tuple[Any, list[str]]:
    """Optimise a budget from a curves file or from ``segvalue.yaml`` (``segvalue budget``).

    With ``curves_path`` the items and total come from the file (objective default
    ``revenue``: allocate the whole total). With ``config_path`` the curves are the
    configured ``budget.items`` or, without them, fitted per (segment x) channel from the
    ``channel_spend`` source (objective default ``budget.objective``). With ``target``,
    the inverse problem: the smallest total whose best allocation reaches it.

    Returns
    -------
    (Allocation, list of str)
        The allocation and the curve-fitting warnings.

    Examples
    --------
    >>> plan_budget()
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: give either a config (-c) or a curves file (--curves). Fix: ...
    """
    from segvalue.economics.budget import optimise_budget, smallest_budget

    if objective is not None and objective not in ("profit", "revenue", "clv"):
        raise ConfigError(
            f"--objective {objective!r} is not known", fix="use profit, revenue or clv"
        )
    items, default_total, settings, _, warnings = _budget_items(config_path, curves_path)
    chosen = objective or ("revenue" if settings is None else settings.objective)
    max_change = None if settings is None else settings.max_change
    if target is not None:
        if chosen == "profit":
            raise ConfigError(
                "--target finds the smallest budget for a revenue or CLV target",
                fix="add --objective revenue (or clv)",
            )
        goal = cast(Literal["revenue", "clv"], chosen)
        return smallest_budget(items, target, objective=goal, max_change=max_change), warnings
    allocation = optimise_budget(
        items,
        total=total if total is not None else default_total,
        objective=cast(Objective, chosen),
        min_marginal_roi=None if settings is None else settings.min_marginal_roi,
        max_change=max_change,
    )
    return allocation, warnings


def budget_what_if(
    move: str,
    *,
    config_path: str | Path | None = None,
    curves_path: str | Path | None = None,
) -> Any:
    """The change in outcome when ``FROM:TO:SHARE`` of spend moves (``budget --move``).

    Fitted curves carry their parameter uncertainty into an interval; curves given in a
    file or in ``budget.items`` have none (the interval is then None, and said so).

    Examples
    --------
    >>> budget_what_if("a:b")
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: --move 'a:b' is not FROM:TO:SHARE. Fix: ...
    """
    from segvalue.economics.budget import what_if

    parts = move.rsplit(":", 2)
    try:
        source, destination, share = parts[0], parts[1], float(parts[2])
    except (IndexError, ValueError):
        raise ConfigError(
            f"--move {move!r} is not FROM:TO:SHARE",
            fix="e.g. --move paid_social:email:0.2 moves 20% of paid_social's spend to email",
        ) from None
    items, _, _, fits, _ = _budget_items(config_path, curves_path)
    return what_if(items, move=(source, destination, share), uncertainty=fits or None)


def write_config_template(path: str | Path, *, force: bool = False) -> Path:
    """Write the commented example ``segvalue.yaml`` (refusing to overwrite by default).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_config_template(pathlib.Path(tempfile.mkdtemp()) / "segvalue.yaml")
    >>> load_config(p).time_unit.value
    'week'
    """
    path = Path(path)
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists", fix="use --force to overwrite it")
    return write_text_atomic(path, config_template())


def validate_config(
    config_path: str | Path,
    *,
    strict: bool = False,
    rejects_path: str | Path | None = None,
    progress: Progress | None = None,
) -> ValidationReport:
    """Validate every source of a ``segvalue.yaml``; optionally write the rejects.

    Parameters
    ----------
    config_path
        The YAML file.
    strict
        Fail on any rejected row (overrides ``validation.strict`` when true).
    rejects_path
        Where to write the rejected rows (``.csv`` or ``.parquet``).
    progress
        Optional progress callback.

    Returns
    -------
    ValidationReport

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = "order_id,customer_id,order_ts,amount\\n1,a,x,5\\n2,a,2024-01-02,5\\n"
    >>> _ = (d / "o.csv").write_text(rows)
    >>> _ = (d / "segvalue.yaml").write_text("sources: {orders: {path: o.csv}}\\nas_of: 2024-01-31")
    >>> validate_config(d / "segvalue.yaml").tables["orders"].rejected
    {'unparseable_value': 1}
    """
    config = load_config(config_path)
    if strict:
        config = config.model_copy(
            update={"validation": config.validation.model_copy(update={"strict": True})}
        )
    from segvalue.data.validation import NoValidRowsError

    try:
        data = load(config, progress=progress)
    except NoValidRowsError as exc:  # the rejects explain the failure: write them anyway
        if rejects_path is not None and exc.rejects is not None:
            write_table(exc.rejects, rejects_path)
        raise
    if rejects_path is not None:
        write_table(to_arrow(data.rejects.order_by(["table", "row"])), rejects_path)
    return data.report


@dataclass(frozen=True)
class OrdersFile:
    """An orders file read without a config: where it is and which columns to use.

    Attributes
    ----------
    path
        CSV / text (``delimiter`` may be ``"whitespace"``) or Parquet file.
    customer_col, date_col, amount_col
        The file's column names (``column0``, ``column1``, ... without a header).
    delimiter, decimal, header, date_format
        How to read the file.
    """

    path: str | Path
    customer_col: str
    date_col: str
    amount_col: str
    delimiter: str = ","
    decimal: str = "."
    header: bool = True
    date_format: str | None = None


def _check_out_file(out_file: str | Path | None) -> None:
    if out_file is None:
        return
    suffix = Path(out_file).suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ConfigError(f"--out {str(out_file)!r}: unknown extension", fix="use .csv or .parquet")
    if not Path(out_file).parent.exists():
        raise ConfigError(f"--out {str(out_file)!r}: folder does not exist", fix="create it first")


def _load_orders_file(
    orders: OrdersFile,
    *,
    as_of: dt.date | None,
    time_unit: str,
    strict: bool,
    horizon: float | None = None,
) -> ValidatedData:
    """Validate an orders file through the same rules as a configured source."""
    if orders.decimal not in (".", ","):
        raise ConfigError(f"--decimal {orders.decimal!r} is not supported", fix="use '.' or ','")
    raw_config: dict[str, Any] = {
        "as_of": as_of,
        "time_unit": time_unit,
        "sources": {
            "orders": {
                "path": str(orders.path),
                "csv": {
                    "delimiter": orders.delimiter,
                    "decimal": orders.decimal,
                    "header": orders.header,
                },
                "date_format": orders.date_format,
                "columns": {
                    "order_id": "_row",
                    "customer_id": orders.customer_col,
                    "order_ts": orders.date_col,
                    "amount": orders.amount_col,
                },
            }
        },
        "validation": {"strict": strict},
    }
    if horizon is not None:
        raw_config["validation"] = {"strict": strict, "prediction_horizon": horizon}
    try:
        return load(parse_config(raw_config, source="command line"))
    except SegvalueError as exc:
        raise _as_option_error(exc) from None


def rfm_from_file(
    orders: OrdersFile,
    *,
    as_of: dt.date | None = None,
    time_unit: str = "week",
    granularity: str = "day",
    strict: bool = False,
    out_file: str | Path | None = None,
) -> dict[str, Any]:
    """Validate an orders file and compute RFM / BTYD features per customer.

    Parameters
    ----------
    orders
        The file and its columns.
    as_of
        Observation end; later orders are rejected as ``after_as_of`` (reported).
    time_unit, granularity
        See :func:`segvalue.features.rfm.rfm_features`.
    strict
        Fail on any rejected row.
    out_file
        Write the features to ``.csv`` or ``.parquet`` instead of returning the rows.

    Returns
    -------
    dict
        ``as_of``, ``time_unit``, ``customers``, ``total_repeat_purchases``,
        ``repeat_customers``, ``report`` and (without ``out_file``) ``customers`` rows.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "o.csv"
    >>> _ = p.write_text("cid;day;total\\na;20240101;10,5\\na;20240115;4\\n")
    >>> f = OrdersFile(p, "cid", "day", "total", delimiter=";", decimal=",")
    >>> r = rfm_from_file(f, as_of=dt.date(2024, 1, 29))
    >>> r["customers_table"][0]["recency"], r["customers_table"][0]["T"]
    (2.0, 4.0)
    """
    _check_out_file(out_file)
    data = _load_orders_file(orders, as_of=as_of, time_unit=time_unit, strict=strict)
    report = data.report
    features = to_arrow(
        rfm_features(
            data.tables["orders"],
            as_of=report.as_of,
            time_unit=parse_time_unit(time_unit),
            granularity=_granularity(granularity),
        ).order_by("customer_id")
    )
    frequency = features.column("frequency").to_pylist()
    result: dict[str, Any] = {
        "as_of": report.as_of.isoformat(),
        "time_unit": report.time_unit.value,
        "customers": features.num_rows,
        "total_repeat_purchases": int(sum(frequency)),
        "repeat_customers": int(sum(1 for f in frequency if f > 0)),
        "report": report.to_dict(),
    }
    if out_file is not None:
        write_table(features, out_file)
        result["out"] = str(out_file)
    else:
        result["customers_table"] = features.to_pylist()
    return result


def _fit_valuation(
    table: Any,
    *,
    as_of: dt.date,
    unit: TimeUnit,
    calibration_end: dt.date | None,
    model: str,
    spend_model: str,
    full: dict[str, Any] | None = None,
) -> Valuation:
    """Fit the CLV models on orders in the engine, with a holdout report when asked."""
    from segvalue.features.materialise import to_numpy
    from segvalue.features.rfm import calibration_holdout, repeat_purchases_by_period
    from segvalue.valuation import fit_valuation

    holdout, cumulative = None, None
    if calibration_end is None:
        calibration = (
            full if full is not None else to_numpy(rfm_features(table, as_of=as_of, time_unit=unit))
        )
    else:
        if calibration_end >= as_of:
            raise ConfigError(
                f"calibration end {calibration_end} is not before the observation end {as_of}",
                fix="choose an earlier calibration end (or a later observation end)",
            )
        calibration = to_numpy(
            calibration_holdout(
                table, calibration_end=calibration_end, observation_end=as_of, time_unit=unit
            )
        )
        holdout = (calibration["frequency_holdout"], float(calibration["duration_holdout"][0]))
        start = calibration["first_purchase"].min().astype(dt.date)
        counts = to_numpy(repeat_purchases_by_period(table, start=start, end=as_of, time_unit=unit))
        n_periods = int(np.ceil(((as_of - start).days + 1) / unit.days))
        per_period = np.zeros(n_periods + 1)
        np.add.at(per_period, counts["period"].astype(np.int64), counts["repeat_purchases"])
        cumulative = (np.arange(1, n_periods + 1, dtype=float), np.cumsum(per_period[1:]))
    return fit_valuation(
        calibration,
        model=model,
        spend_model=spend_model,
        time_unit=unit,
        holdout=holdout,
        cumulative=cumulative,
    )


def clv_from_file(
    orders: OrdersFile,
    *,
    time_unit: str = "week",
    calibration_end: dt.date | None = None,
    observation_end: dt.date | None = None,
    model: str = "bgnbd",
    spend_model: str = "gamma-gamma",
    horizon: int = 52,
    discount_rate: float = 0.10,
    margin: float = 1.0,
    strict: bool = False,
    out_file: str | Path | None = None,
) -> dict[str, Any]:
    """Fit BTYD and spend models on an orders file and value every customer.

    Parameters
    ----------
    orders
        The file and its columns.
    time_unit
        Unit of recency, T, the horizon and the log-likelihood.
    calibration_end
        Fit on orders up to this date and validate on the rest (holdout report);
        without it the models are fitted on everything and no holdout is reported.
    observation_end
        Last day of data (default: the latest order); later orders are rejected.
    model
        ``bgnbd``, ``mbgnbd``, ``pnbd`` or ``auto`` (chosen by holdout error).
    spend_model
        ``gamma-gamma`` or ``none`` (observed mean repeat spend).
    horizon
        Whole time units for expected purchases and CLV.
    discount_rate
        ANNUAL discount rate, converted exactly to the time unit.
    margin
        Profit share of spend in (0, 1].
    strict
        Fail on any rejected row.
    out_file
        Per-customer predictions to ``.csv`` or ``.parquet``.

    Returns
    -------
    dict
        The model summary (``model``, ``time_unit``, ``params``, ``stderr``, ``loglik``,
        ``n_customers``, ``spend_model``, ``holdout``) plus the valuation settings, the
        total CLV with its interval, and the validation report.
    """
    from segvalue.features.materialise import to_numpy
    from segvalue.units import per_period_rate
    from segvalue.valuation import score_customers

    _check_out_file(out_file)
    if int(horizon) != horizon or horizon < 1:
        raise ConfigError(f"--horizon {horizon} is not a whole number >= 1", fix="e.g. 52")
    data = _load_orders_file(
        orders, as_of=observation_end, time_unit=time_unit, strict=strict, horizon=horizon
    )
    report = data.report
    unit, as_of, table = report.time_unit, report.as_of, data.tables["orders"]
    full = to_numpy(rfm_features(table, as_of=as_of, time_unit=unit).order_by("customer_id"))
    valuation = _fit_valuation(
        table,
        as_of=as_of,
        unit=unit,
        calibration_end=calibration_end,
        model=model,
        spend_model=spend_model,
        full=full,
    )
    rate = per_period_rate(discount_rate, unit)
    scores = score_customers(
        valuation, full, horizon=int(horizon), discount_rate=rate, margin=margin
    )
    predictions = pa.table(
        {
            "customer_id": full["customer_id"],
            **{k: full[k] for k in ("frequency", "recency", "T", "monetary_value")},
            **scores,
        }
    )
    summary = valuation.to_dict()
    clv = scores["clv"]
    summary.update(
        as_of=as_of.isoformat(),
        horizon=int(horizon),
        discount_rate_annual=discount_rate,
        discount_rate_per_period=rate,
        margin=margin,
        customers_scored=int(clv.size),
        total_clv=float(clv.sum()),
        report=report.to_dict(),
    )
    if out_file is not None:
        write_table(predictions, out_file)
        summary["out"] = str(out_file)
    return summary


_RFM_OPTIONS = {
    "sources.orders.columns.customer_id in segvalue.yaml": "--customer-col",
    "sources.orders.columns.order_ts in segvalue.yaml": "--date-col",
    "sources.orders.columns.amount in segvalue.yaml": "--amount-col",
    "key 'time_unit'": "--time-unit",
    "key 'as_of'": "--as-of",
    "key 'sources.orders.date_format'": "--date-format",
    "key 'sources.orders.csv.delimiter'": "--delimiter",
}


def _as_option_error(exc: SegvalueError) -> SegvalueError:
    """Point an error raised for the built-in config at the command-line option instead."""
    message, fix = exc.message, exc.fix or ""
    for key, option in _RFM_OPTIONS.items():
        message = message.replace(key, option)
        fix = fix.replace(f"correct {key}", f"pass the right {option}").replace(key, option)
    return type(exc)(message, fix=fix or None)


def _granularity(value: str) -> Any:
    if value not in ("day", "unit"):
        raise ConfigError(f"--granularity {value!r} is not supported", fix="use 'day' or 'unit'")
    return value


def run_demo(
    *,
    dataset: str = "demo",
    n_customers: int = 20_000,
    seed: int = 42,
    out_dir: str | Path = "segvalue-demo",
    progress: Progress | None = None,
) -> tuple[RunResult, Path]:
    """Generate (or copy) demo data with a ready ``segvalue.yaml``, then run the main job.

    Parameters
    ----------
    dataset
        ``"demo"``: the generated retailer; ``"cdnow"``: Fader and Hardie's CDNOW log.
    n_customers, seed
        Size and seed of the generated retailer.
    out_dir
        Folder for ``data/``, ``segvalue.yaml`` and ``output/``.
    progress
        Optional progress callback.

    Returns
    -------
    (RunResult, Path)
        The run and the path of the written ``segvalue.yaml``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> result, cfg = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
    >>> result.features.num_rows, cfg.name
    (300, 'segvalue.yaml')
    """
    from segvalue.data.datasets import CDNOW_AS_OF, copy_cdnow

    out = Path(out_dir)
    data_dir = out / "data"
    if dataset == "demo":
        from segvalue.data.demo import demo_segments, generate_demo, write_demo

        if progress is not None:
            progress(f"generating {n_customers:,} demo customers", 0, 1)
        demo = generate_demo(n_customers, seed=seed)
        paths = write_demo(demo, data_dir)
        sources: dict[str, Any] = {
            name: {"path": str(path.relative_to(out))} for name, path in paths.items()
        }
        doc: dict[str, Any] = {
            "as_of": demo.as_of.isoformat(),
            "time_unit": "week",
            "clv": {"holdout": 26, "margin": 0.3},
            "segments": demo_segments(),
            "kpis": {
                "scheme": "clusters",
                "targets": [
                    {"kpi": "repeat_rate", "target": 0.7},
                    {"kpi": "churn_risk", "target": 0.5, "direction": "at_most"},
                    {"kpi": "clv_cac", "target": 3.0},
                ],
            },
        }
    elif dataset == "cdnow":
        path = copy_cdnow(data_dir)
        sources = {
            "orders": {
                "path": str(path.relative_to(out)),
                "csv": {"delimiter": "whitespace", "header": True},
                "columns": {
                    "order_id": "_row",
                    "customer_id": "customer_id",
                    "order_ts": "date",
                    "amount": "dollar_value",
                },
            }
        }
        doc = {"as_of": CDNOW_AS_OF, "time_unit": "week", "clv": {"holdout": 39}}
    else:
        raise ConfigError(f"unknown --dataset {dataset!r}", fix="use 'demo' or 'cdnow'")
    doc.update(sources=sources, output={"dir": "output"})
    header = f"# segvalue.yaml for the {dataset} data, written by `segvalue demo`.\n"
    config_path = write_text_atomic(out / "segvalue.yaml", header + _yaml(doc))
    return run(load_config(config_path), progress=progress), config_path


def _yaml(doc: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(doc, sort_keys=False))
