"""The one orchestration path that every face (CLI, API, notebooks) calls.

``run`` reads every configured source into the engine, validates it (rejects with
reasons, lookback, freshness, sufficiency warnings), computes per-customer features in the
engine and writes the outputs atomically. Later capabilities (CLV, segments, KPIs) hang
further steps on the same path.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import importlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from segvalue import __version__
from segvalue.config import Config, config_template, load_config, parse_config
from segvalue.data.safety import (
    check_target,
    mark_folder,
    read_mark,
    remove_leftovers,
    target_lock,
)
from segvalue.errors import ConfigError, DataValidationError, SegvalueError
from segvalue.units import TimeUnit, parse_time_unit

# Heavy modules (pyarrow, Ibis, scipy.stats through the models) are imported in the
# functions that use them: `segvalue budget --curves` and `--help` must start quickly.
if TYPE_CHECKING:
    import pyarrow as pa

    from segvalue.data.validation import ValidatedData, ValidationReport
    from segvalue.models.base import Histories
    from segvalue.segments.segmentation import Segmentation
    from segvalue.store import ResultsStore, RunRecord
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
    """How memberships moved since the latest complete run with an earlier as-of date."""

    previous_run: str
    previous_as_of: dt.date | None
    matrix: pa.Table
    events: pa.Table
    alerts: list[Any]

    def summary(self) -> dict[str, Any]:
        """Previous run id, event count and drift alerts."""
        return {
            "previous_run": self.previous_run,
            "previous_as_of": None if self.previous_as_of is None else str(self.previous_as_of),
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

    Everything that shapes the results counts; where they are written (``output.dir``,
    ``store``) does not.

    Examples
    --------
    >>> from segvalue.config import parse_config
    >>> len(config_hash(parse_config({"sources": {"orders": {"path": "o.csv"}}})))
    16
    """
    # Where results go (the output folder, the store) does not change them.
    payload = json.dumps(
        config.model_dump(mode="json", exclude={"output": {"dir"}, "store": True}),
        sort_keys=True,
    )
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


def _load(
    config: Config, steps: _Steps, engine: Any = None, *, prefetch: Sequence[str] = ()
) -> ValidatedData:
    """:func:`load`; ``prefetch`` names modules the caller needs next (see :func:`_prefetch`)."""
    from segvalue.data.readers import connect, read_source
    from segvalue.data.validation import validate_sources

    con = connect(engine if engine is not None else config.engine.url)
    try:
        raws = {}
        for name in config.sources:
            with steps.step("read", f"reading {name}"):
                raws[name] = read_source(con, name, config)
        with steps.step("validate", "validating"):
            _prefetch(prefetch)
            return validate_sources(con, raws, config)
    except BaseException:
        if engine is None:  # a connection we opened ourselves: do not leak it
            con.disconnect()
        raise


def _prefetch(modules: Sequence[str]) -> None:
    """Import ``modules`` on a background thread while the engine validates the sources.

    The engine releases the GIL while it reads and parses (DuckDB: most of the validation)
    and leaves part of the cores idle (1.2 CPU s in 0.8 s on 2 cores at 1M customers):
    imports that would otherwise come after it (scipy.special through the models, 0.25 s)
    use that time instead of lengthening the command. Not a daemon
    thread: the interpreter waits for it at exit instead of stopping it holding an import
    lock. An import that fails here fails again, with its message, where it is used.
    """
    if not modules:
        return

    def load_all() -> None:
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # raised again, with its message, by the import that uses it
                return

    threading.Thread(target=load_all, name="segvalue-prefetch").start()


def _model_documents(valuation: Valuation | None) -> dict[str, Any]:
    """The fitted CLV models as JSON documents (reloadable with ``model_from_json``)."""
    if valuation is None:
        return {}
    docs = {"clv_transaction_model": valuation.transactions.to_dict()}
    if valuation.spend is not None:
        docs["clv_spend_model"] = valuation.spend.to_dict()
    if valuation.propensity_model is not None:  # its category lists travel with it
        docs["purchase_propensity_model"] = valuation.propensity_model.to_dict()
    return docs


#: Below this many repeat customers no transaction model is fitted (the run warns instead).
MIN_REPEAT_CUSTOMERS_FOR_CLV = 10


def _scalar_of(expr: Any) -> Any:
    return expr.to_pyarrow().as_py()


def _value_customers(
    config: Config, data: ValidatedData, features: Any, *, contacts: Sequence[str]
) -> tuple[Valuation | None, Any]:
    """Fit the CLV models, score each unique (x, t_x, T, m) pattern, join back in the engine.

    Models never see raw transactions: they are fitted on per-customer summaries and
    evaluated once per distinct pattern; the engine joins the scores to every customer.
    Customers without a purchase (prospects) get null scores. ``contacts``: the contact
    columns of the customers table (:func:`_contacts`), never model inputs.
    """

    import pyarrow as pa

    from segvalue.data.readers import engine_table
    from segvalue.features.materialise import to_numpy
    from segvalue.units import per_period_rate
    from segvalue.valuation import score_customers

    report, settings = data.report, config.clv
    unit, as_of = report.time_unit, report.as_of
    # ``features`` is materialised (by the caller): sums of floats in a parallel engine
    # may differ in the last bit between two evaluations, and the scores are joined back
    # on these values.
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
    patterns = features.filter(features.frequency.notnull()).select(*keys).distinct()
    arrays = to_numpy(patterns)
    scores = score_customers(
        valuation,
        arrays,
        horizon=settings.horizon,
        discount_rate=per_period_rate(settings.discount_rate, unit),
        margin=settings.margin,
    )
    # The fit's doubts reach the console and run.json with the other warnings of the run.
    report.warnings.extend(f"CLV: {w}" for w in valuation.warnings)
    scored = engine_table(data.con, pa.table({**{k: arrays[k] for k in keys}, **scores}))
    joined = features.left_join(scored, keys).drop(*(f"{k}_right" for k in keys))
    if calibration_end is not None:
        # Scored from the materialised features (the classifier ignores the CLV scores),
        # so the join above runs once, when the caller materialises the result.
        propensity = _add_propensity(data, valuation, features, calibration_end, contacts)
        joined = joined.left_join(propensity, "customer_id").drop("customer_id_right")
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
    features: pa.Table,
    customers: pa.Table | None,
    names: list[str] | None = None,
    categories: dict[str, list[str]] | None = None,
) -> tuple[np.ndarray[Any, Any], list[str], list[bool], dict[str, list[str]]]:
    """Numeric features plus customer attributes (categoricals as integer codes).

    The category list of each text column is fixed once, at fit time (``categories``
    None: the sorted distinct values), and passed back at scoring time, so a code means
    the same category in both; a value unknown to the list, or missing, is NaN (the
    classifier's missing branch). Returns the matrix, column names, which columns are
    categorical, and the category lists.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = features
    if customers is not None:
        extra = [c for c in customers.column_names if c not in table.column_names]
        table = table.join(customers.select(["customer_id", *extra]), "customer_id")
        table = table.sort_by("customer_id")
    columns, kinds, matrix = [], [], []
    fitted = {} if categories is None else categories
    learned: dict[str, list[str]] = {}
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
            if categories is None:
                distinct = sorted(v for v in pc.unique(column).to_pylist() if v is not None)
                if len(distinct) > 50:  # identifiers such as e-mail: no signal
                    continue
                learned[name] = distinct
            elif name not in fitted:
                continue
            values = _category_codes(column, fitted.get(name, learned.get(name, [])))
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
    return np.column_stack(matrix), columns, kinds, (learned if categories is None else fitted)


def _category_codes(column: pa.ChunkedArray, categories: list[str]) -> np.ndarray[Any, Any]:
    """:func:`encode_categories` of a text column: each distinct value coded once.

    A column holds a few distinct values in many rows; coding the distinct values and
    mapping the rows to them gives the same codes without a Python object per row.
    """
    import pyarrow.compute as pc

    from segvalue.models.propensity import encode_categories

    encoded = pc.dictionary_encode(column.combine_chunks())
    # One code per distinct value, and NaN (index len(dictionary)) for a missing value.
    codes = np.append(encode_categories(encoded.dictionary.to_pylist(), categories), np.nan)
    index = pc.fill_null(encoded.indices, len(encoded.dictionary))
    return np.asarray(codes[index.to_numpy(zero_copy_only=False)])


def _add_propensity(
    data: ValidatedData,
    valuation: Valuation,
    features: Any,
    calibration_end: dt.date,
    contacts: Sequence[str] = (),
) -> Any:
    """Train "buys in the next holdout-length window" on calibration-time features.

    Labels come from the holdout period; 30 % of customers (by a hash of their id) are
    held out to compare the classifier with the BTYD baseline. The classifier then
    scores every customer of ``features`` (their features at the observation end);
    returns ``(customer_id, purchase_propensity)`` of the buyers as an engine table.
    """
    import ibis
    import pyarrow as pa

    from segvalue.features.customer import customer_features
    from segvalue.features.materialise import to_arrow
    from segvalue.models.propensity import PurchasePropensityModel, evaluate_propensity
    from segvalue.segments.rules import customer_attributes

    report = data.report
    unit, as_of = report.time_unit, report.as_of
    limit = dt.datetime.combine(calibration_end + dt.timedelta(days=1), dt.time())
    tables = dict(data.tables)
    tables["orders"] = tables["orders"].filter(tables["orders"].order_ts < limit)
    if "touchpoints" in tables:
        tables["touchpoints"] = tables["touchpoints"].filter(tables["touchpoints"].ts < limit)
    customers = data.tables.get("customers")
    if customers is not None and contacts:  # contact details are never model inputs
        customers = customers.drop(*contacts)
    # Customer attributes are joined in the engine, and rows come sorted by id from it.
    past = customer_features(tables, as_of=calibration_end, time_unit=unit)
    past = customer_attributes(past.filter(past.frequency.notnull()), customers)
    orders = data.tables["orders"]
    later = orders.filter((orders.order_ts >= limit) & (orders.amount >= 0))
    buyers = later.select("customer_id").distinct().mutate(bought=ibis.literal(True))
    labelled = past.left_join(buyers, "customer_id").drop("customer_id_right")
    labelled = labelled.mutate(bought=labelled.bought.fill_null(False))
    labelled = to_arrow(labelled.order_by("customer_id"))
    matrix, names, kinds, categories = _feature_matrix(labelled.drop(["bought"]), None)
    y = np.asarray(labelled.column("bought").to_numpy(zero_copy_only=False), dtype=bool)
    ids = labelled.column("customer_id").to_pylist()
    test = np.array([hash_id(c) % 10 < 3 for c in ids])
    model = PurchasePropensityModel().fit(
        matrix[~test], y[~test], feature_names=names, categorical=kinds, categories=categories
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
    valuation.propensity_model = model
    current = customer_attributes(features.filter(features.frequency.notnull()), customers)
    current = to_arrow(current.order_by("customer_id"))
    # Scoring uses the category lists fixed at fit time (stored with the model).
    now, _, _, _ = _feature_matrix(current, None, names, model.categories_)
    scores = pa.table(
        {
            "customer_id": current.column("customer_id"),
            "purchase_propensity": model.predict_proba(now),
        }
    )
    return ibis.memtable(scores)


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
    wait: float = 0,
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
        segments), and record the run in the results store (``config.store_url``).
    schemes
        Run only these segmentation schemes (default: all configured).
    wait
        Seconds to wait when another run holds the output folder or the store (0:
        refuse at once). Both are checked and locked before anything is read.

    Returns
    -------
    RunResult

    Raises
    ------
    SegvalueError
        For any problem with the inputs or the configuration; nothing is written then.
        Also when the output folder or store exists without segvalue's mark, is or holds
        an input, or another run holds it (see :mod:`segvalue.data.safety`).

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
    if write and config.privacy.pseudonymise:  # a missing key fails before any work
        from segvalue.features.privacy import pseudonym_key

        pseudonym_key(config.privacy.key_env)
    started = dt.datetime.now(dt.UTC)
    run_id = started.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    if not write:
        return _run(config, run_id, engine=engine, progress=progress, write=False, schemes=schemes)
    with _claim_outputs(config, run_id, started, wait=wait):
        try:
            return _run(
                config, run_id, engine=engine, progress=progress, write=True, schemes=schemes
            )
        except BaseException as exc:
            _record_failure(config, run_id, exc)
            raise


def _record_failure(config: Config, run_id: str, exc: BaseException) -> None:
    """Mark the run ``failed`` in the store with its first cause (best effort)."""
    from segvalue.store import open_store

    if isinstance(exc, SegvalueError):
        reason = str(exc)
    elif isinstance(exc, KeyboardInterrupt):
        reason = "interrupted"
    else:
        reason = f"internal error: {type(exc).__name__}"
    try:
        with open_store(config.store_url, create=True) as store:
            store.fail_run(run_id, reason)
    except Exception:  # the run's own error is the one to report
        pass


def _protected(config: Config) -> dict[Path, str]:
    """What a run reads, which no output may be, contain or lie inside."""
    protected: dict[Path, str] = {}
    for name, source in config.sources.items():
        if source.path is not None:
            protected[config.source_path(name)] = f"source {name}"
        elif source.url is not None and source.url.startswith("duckdb:///"):
            protected[Path(source.url.removeprefix("duckdb://"))] = f"source {name}'s database"
    url = config.engine.url
    if url.startswith("duckdb:///") and ":memory:" not in url:
        protected[Path(url.removeprefix("duckdb://"))] = "the engine's database"
    return protected


def _store_protected(config: Config) -> dict[Path, str]:
    """The results store's file (if a file), which no output may be or contain."""
    path = config.store_path
    return {} if path is None else {path: "the results store"}


@contextmanager
def _claim_outputs(
    config: Config, run_id: str, started: dt.datetime, *, wait: float = 0
) -> Iterator[None]:
    """Check and lock the output folder and the store for a whole run; clear debris.

    The output folder may not be, contain or lie inside an input or the store file; the
    store file may not be an input. A second run refuses at once (or after ``wait``
    seconds), naming the running one. Holding both locks, the run removes what killed
    runs left (staging folders, ``running`` rows) and records itself as ``running``.
    """
    from segvalue.store import RunRecord, open_store, store_lock

    protected = _protected(config)
    output = check_target(
        config.output_dir,
        "output",
        protected={**protected, **_store_protected(config)},
        config_dir=config.base_dir,
        key="output.dir",
    )
    store_path = config.store_path
    if store_path is not None:
        for path, what in protected.items():
            if path.absolute() == store_path.absolute():
                raise ConfigError(
                    f"the results store {store_path} is {what}",
                    fix="point store.url at a file of its own",
                    parameter="store.url",
                )
    with ExitStack() as stack:
        stack.enter_context(target_lock(output, "output", wait=wait, run_id=run_id))
        stack.enter_context(store_lock(config.store_url, wait=wait, run_id=run_id))
        remove_leftovers(output)
        with open_store(config.store_url, create=True) as store:
            store.remove_debris()
            store.begin_run(
                RunRecord(
                    run_id,
                    "running",
                    started,
                    config_hash=config_hash(config),
                    versions=_versions(),
                )
            )
        yield


def _versions() -> dict[str, str]:
    """Versions of segvalue and the libraries its numbers depend on."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"segvalue": __version__, "python": platform.python_version()}
    for package in ("duckdb", "ibis-framework", "numpy", "scipy", "scikit-learn", "pyarrow"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


def _run(
    config: Config,
    run_id: str,
    *,
    engine: Any,
    progress: Progress | None,
    write: bool,
    schemes: list[str] | None,
) -> RunResult:
    # A run creates a great many short-lived Ibis objects, and each full collection
    # would also walk every object of the libraries loaded (0.5 s of the 20,000-customer
    # demo). What is alive at the start (and after the imports, see _run_steps) lives as
    # long as the run: it is kept out of the collections until the run ends. A process
    # that froze objects itself (e.g. before forking workers) is left as it is.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        return _run_steps(
            config,
            run_id,
            engine=engine,
            progress=progress,
            write=write,
            schemes=schemes,
            freeze=freeze,
        )
    finally:
        if freeze:
            gc.unfreeze()


def _run_steps(
    config: Config,
    run_id: str,
    *,
    engine: Any,
    progress: Progress | None,
    write: bool,
    schemes: list[str] | None,
    freeze: bool = False,
) -> RunResult:
    enabled = int(config.clv.enabled) + 2 * int(config.segments.enabled)
    steps = _Steps(len(config.sources) + 4 + enabled + 2 * int(write), progress)
    data = _load(config, steps, engine)
    try:
        return _after_load(
            config,
            run_id,
            data,
            steps,
            write=write,
            schemes=schemes,
            freeze=freeze,
            owned=engine is None,
        )
    finally:
        if engine is None:  # the connection the run opened: closed with the run
            data.con.disconnect()


def _after_load(
    config: Config,
    run_id: str,
    data: ValidatedData,
    steps: _Steps,
    *,
    write: bool,
    schemes: list[str] | None,
    freeze: bool,
    owned: bool,
) -> RunResult:
    """The run from the validated data on (``owned``: the run opened the engine itself)."""
    from segvalue.data.fingerprint import data_fingerprint
    from segvalue.data.readers import materialise
    from segvalue.features.customer import customer_features
    from segvalue.features.materialise import to_arrow

    report = data.report
    fingerprint = data_fingerprint(config, {name: t.rows_read for name, t in report.tables.items()})
    # Found by a query on the customers table: once per run, for every step that needs it.
    contacts = (
        list(_contacts(config, data)) if config.clv.enabled or config.segments.enabled else []
    )
    restore_threads = _leave_cores(data.con, 0)  # nothing to give back yet
    with steps.step("features", "computing customer features"):
        # Computed once, here: every later step reads the same values.
        features_expr = materialise(
            data.con,
            customer_features(data.tables, as_of=report.as_of, time_unit=report.time_unit),
            "features",
        )
    valuation = None
    fitting: dict[str, Callable[[], Any]] = {}
    if config.clv.enabled:
        before = set(features_expr.columns)
        fitting = _start_cluster_fits(config, data, features_expr, schemes, contacts)
        if owned:  # our own connection: its settings are ours to change
            restore_threads = _leave_cores(data.con, len(fitting))
        if freeze:  # scikit-learn and the loaded tables, here for the rest of the run
            gc.freeze()
        with steps.step("clv", "fitting CLV models and scoring customers"):
            valuation, features_expr = _value_customers(
                config, data, features_expr, contacts=contacts
            )
        features_expr = materialise(data.con, features_expr, "features")
        # A customer attribute named like a column the CLV step added (a score) is
        # shadowed by that column from here on: such a scheme is fitted again.
        added = set(features_expr.columns) - before
        fitting = {
            s.name: fitting[s.name]
            for s in config.segments.schemes
            if s.name in fitting and not set(getattr(s, "features", ())) & added
        }
    # Collected before the segments step, which may wait for a cluster fit meanwhile.
    with steps.step("materialise", "collecting customer table"):
        features = to_arrow(features_expr.order_by("customer_id"))
    with steps.step("rejects", "collecting rejects"):
        # The report counts every rejected row; with none, the empty table needs no query.
        rejects = (
            to_arrow(data.rejects.order_by(["table", "row"]))
            if report.rows_rejected
            else data.rejects.schema().to_pyarrow().empty_table()
        )
    segmentation = None
    if config.segments.enabled:
        with steps.step("segments", "segmenting customers"):
            segmentation = _segment(
                config, data, features_expr, schemes, fitted=fitting, contacts=contacts
            )
            if schemes and write:
                segmentation = _with_carried_schemes(
                    config, segmentation, schemes, as_of=report.as_of, fingerprint=fingerprint
                )
    restore_threads()  # the cluster fits are done
    economics = None
    if segmentation is not None and segmentation.memberships.num_rows:
        with steps.step("kpis", "segment KPIs, targets and priorities"):
            economics = _economics(config, data, features_expr, segmentation)
    result = RunResult(
        run_id=run_id,
        config_hash=config_hash(config),
        report=report,
        features=features,
        rejects=rejects,
        valuation=valuation,
        segmentation=segmentation,
        economics=economics,
    )
    if write:
        _persist(config, result, data, steps, fingerprint)
    result.timings = steps.timings
    return result


def _leave_cores(con: Any, busy: int) -> Callable[[], None]:
    """Run DuckDB on the cores that ``busy`` background fits leave free (at least one).

    Each cluster fit keeps a core busy until the segments step; DuckDB's own worker
    threads on that core only take turns with it (and with the main thread, which waits
    for their queries). Returns the function that gives DuckDB its threads back.
    Other engines, and a run without background fits, are left as they are.
    """
    if busy == 0 or getattr(con, "name", "") != "duckdb":
        return lambda: None
    threads = int(con.raw_sql("SELECT current_setting('threads')").fetchone()[0])
    if threads <= 1:
        return lambda: None
    con.raw_sql(f"SET threads = {max(1, threads - busy)}")
    return lambda: con.raw_sql(f"SET threads = {threads}")


def _contacts(config: Config, data: ValidatedData) -> dict[str, str]:
    """Contact columns of the customers table: never profiled, modelled or written."""
    from segvalue.features.privacy import contact_columns

    if "customers" not in data.tables:
        return {}
    return contact_columns(
        data.tables["customers"], listed=config.privacy.pii, not_contact=config.privacy.not_pii
    )


def _private_outputs(
    config: Config, data: ValidatedData, tables: Mapping[str, pa.Table]
) -> dict[str, pa.Table]:
    """Outputs as ``privacy`` asks: contact columns only with ``write_pii``, pseudonyms."""
    from segvalue.features.materialise import to_arrow
    from segvalue.features.privacy import pseudonym_key, pseudonymise_tables

    out = dict(tables)
    contacts = list(_contacts(config, data)) if config.privacy.write_pii else []
    if contacts and "customer_features" in out:
        details = to_arrow(data.tables["customers"].select("customer_id", *contacts))
        features = out["customer_features"].join(details, "customer_id")
        out["customer_features"] = features.sort_by("customer_id")
    if config.privacy.pseudonymise:
        out = pseudonymise_tables(out, pseudonym_key(config.privacy.key_env))
    return out


def _private_documents(config: Config, documents: dict[str, Any]) -> dict[str, Any]:
    """JSON outputs with quoted customer ids pseudonymised (``privacy.pseudonymise``)."""
    from segvalue.features.privacy import pseudonym_key, pseudonymise_document

    if not config.privacy.pseudonymise:
        return documents
    key = pseudonym_key(config.privacy.key_env)
    return {name: pseudonymise_document(doc, key) for name, doc in documents.items()}


def _start_cluster_fits(
    config: Config,
    data: ValidatedData,
    features: Any,
    only: list[str] | None,
    contacts: Sequence[str],
) -> dict[str, Callable[[], Any]]:
    """Fit the cluster schemes on background threads while the CLV step runs.

    A scheme qualifies when its features are all customer features or attributes (none
    comes from the CLV step): its sample is drawn now from the same customers and values
    the segments step sees, so the model is the one that step would fit. The fit itself
    touches no engine, so it overlaps the CLV step's queries and model fits on a second
    core. Anything that fails here is left to the segments step, which fits the scheme
    itself and reports the error in its place.
    """
    from segvalue.config import ClusterConfig
    from segvalue.segments.clusters import start_fit_clusters
    from segvalue.segments.rules import customer_attributes

    if not config.segments.enabled:
        return {}
    table = customer_attributes(features, data.tables.get("customers"))
    available, private = set(table.columns), set(contacts)
    started: dict[str, Callable[[], Any]] = {}
    for scheme in config.segments.schemes:
        if not isinstance(scheme, ClusterConfig) or (only and scheme.name not in only):
            continue
        wanted = set(scheme.features)
        if not wanted <= available or wanted & private:
            continue
        try:
            started[scheme.name] = start_fit_clusters(table, scheme)
        except Exception:  # the segments step fits it and raises this in its place
            continue
    return started


def _segment(
    config: Config,
    data: ValidatedData,
    features: Any,
    only: list[str] | None = None,
    fitted: Mapping[str, Callable[[], Any]] | None = None,
    *,
    contacts: Sequence[str],
) -> Segmentation:
    from segvalue.data.readers import materialise
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
        pii=list(contacts),
        fitted=fitted,
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


def _migration(
    config: Config, segmentation: Segmentation, store: ResultsStore, as_of: dt.date
) -> Migration | None:
    """Transitions, enter / exit events and drift since the latest complete run with an
    earlier as-of date (a run as of March recorded after one as of June compares with
    the runs before March, never backwards)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from segvalue.features.materialise import to_arrow
    from segvalue.segments.migration import drift_alerts, membership_events, transition_matrix

    previous = store.latest(before_as_of=as_of)
    if previous is None:
        return None
    before = store.table(previous.run_id, "memberships", columns=list(_MEMBERSHIP_COLUMNS))
    after = segmentation.memberships
    kinds = {name: info.get("mode", "exclusive") for name, info in segmentation.details.items()}
    common = sorted(set(kinds) & set(before.column("scheme").to_pylist()))
    tags = [n for n in common if kinds[n] == "tags"]
    exclusive = [n for n in common if kinds[n] != "tags"]

    def only(table: pa.Table, names: list[str]) -> pa.Table:
        return table.filter(pc.is_in(table.column("scheme"), pa.array(names, pa.string())))

    before_exclusive, after_exclusive = only(before, exclusive), only(after, exclusive)
    matrix = transition_matrix(before_exclusive, after_exclusive)
    alerts = drift_alerts(before_exclusive, after_exclusive, config.segments.drift_threshold)
    events = to_arrow(
        membership_events(only(before, common), only(after, common), tag_schemes=tags)
    )
    return Migration(
        previous_run=previous.run_id,
        previous_as_of=previous.as_of,
        matrix=matrix,
        events=events,
        alerts=alerts,
    )


_MEMBERSHIP_COLUMNS = ("customer_id", "scheme", "segment")


def _scheme_hashes(config: Config) -> dict[str, str]:
    """A hash of each scheme's configuration (carried results need an unchanged one)."""
    out = {}
    for scheme in config.segments.schemes:
        payload = json.dumps(scheme.model_dump(mode="json"), sort_keys=True)
        out[scheme.name] = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return out


def _with_carried_schemes(
    config: Config,
    segmentation: Segmentation,
    recomputed: Sequence[str],
    *,
    as_of: dt.date,
    fingerprint: str,
) -> Segmentation:
    """Add the other configured schemes' results from the latest complete run.

    ``run(schemes=[...])`` recomputes those schemes only; a snapshot must still hold
    every configured scheme. The others are carried from the latest complete run, which
    must have read the same data (fingerprint), as of the same date, with each carried
    scheme configured as now; otherwise the run is refused, saying which differs.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from segvalue.segments.personas import Persona
    from segvalue.store import open_store

    others = [s.name for s in config.segments.schemes if s.name not in set(recomputed)]
    if not others:
        return segmentation
    fix = "recompute every scheme (schemes=None; on the command line without --scheme)"
    try:
        store = open_store(config.store_url, create=True)
    except ConfigError:
        store = None
    with store if store is not None else nullcontext():
        previous = None if store is None else store.latest()
        if store is None or previous is None:
            raise ConfigError(
                f"recomputing {', '.join(recomputed)} alone needs a complete run holding the "
                f"other schemes ({', '.join(others)}), and the store has none",
                fix=fix,
                parameter="schemes",
            )
        assert store is not None
        doc = store.document(previous.run_id, "run")
        hashes = (doc.get("segments_config") or {}) if isinstance(doc, dict) else {}
        now = _scheme_hashes(config)
        changed = [n for n in others if hashes.get(n) != now[n]]
        problem = None
        if previous.data_fingerprint != fingerprint:
            problem = "the data changed since"
        elif previous.as_of != as_of:
            problem = f"its as-of date is {previous.as_of}, this run's {as_of},"
        elif changed:
            problem = f"the configuration of {', '.join(changed)} changed since"
        if problem is not None:
            raise ConfigError(
                f"cannot carry {', '.join(others)} from run {previous.run_id}: {problem} that run",
                fix=fix,
                parameter="schemes",
            )
        wanted = pa.array(others, pa.string())

        def carried(name: str) -> pa.Table | None:
            if name not in store.table_names(previous.run_id):
                return None
            table = store.table(previous.run_id, name)
            return table.filter(pc.is_in(table.column("scheme"), wanted))

        def joined(now_table: pa.Table | None, name: str) -> pa.Table | None:
            old = carried(name)
            if now_table is None or old is None:
                return now_table if old is None else old
            return pa.concat_tables([now_table, old.cast(now_table.schema)])

        summary = store.document(previous.run_id, "segments")
        personas = [
            Persona(
                **{
                    **p,
                    **{
                        k: tuple(p[k])
                        for k in ("needs", "objections", "channels", "triggers", "evidence")
                    },
                }
            )
            for p in store.document(previous.run_id, "personas")
            if p["scheme"] in others
        ]
        memberships = joined(segmentation.memberships, "memberships")
        sizes = joined(segmentation.sizes, "segment_sizes")
        profiles = segmentation.profiles
        if profiles is not None:
            parts = [
                joined(getattr(profiles, part), f"segment_profiles{suffix}")
                for part, suffix in (
                    ("segments", ""),
                    ("numeric", "_numeric"),
                    ("attributes", "_attributes"),
                )
            ]
            profiles = replace(profiles, segments=parts[0], numeric=parts[1], attributes=parts[2])
    assert memberships is not None and sizes is not None
    details = dict(segmentation.details)
    for name in others:
        entry = dict(summary.get("schemes", {}).get(name, {}))
        entry.pop("segments", None)
        details[name] = {**entry, "carried_from": previous.run_id}
    order = {s.name: i for i, s in enumerate(config.segments.schemes)}
    return replace(
        segmentation,
        memberships=memberships,
        sizes=sizes,
        profiles=profiles,
        personas=sorted(
            [*segmentation.personas, *personas], key=lambda p: (order.get(p.scheme, 0), p.segment)
        ),
        details=details,
    )


def _persist(
    config: Config,
    result: RunResult,
    data: ValidatedData,
    steps: _Steps,
    fingerprint: str,
) -> None:
    """Compare with the previous run, commit the run to the store, export the outputs.

    The export is staged first; the store commit (every table, document and the run's
    ``complete`` status in one transaction) happens before the staged folder is swapped
    in, so the output folder never names a run the store does not hold.
    """
    from segvalue.data.writers import write_outputs
    from segvalue.scoring import scorer_state
    from segvalue.store import open_store

    segmentation, economics, report = result.segmentation, result.economics, result.report
    with open_store(config.store_url, create=True) as store:
        if segmentation is not None:
            with steps.step("migration", "comparing with the previous run"):
                result.migration = _migration(config, segmentation, store, report.as_of)
        with steps.step("write", "writing outputs"):
            tables, documents, texts = _segment_outputs(segmentation, result.migration)
            if economics is not None:
                tables.update(
                    segment_kpis=economics.kpis,
                    kpi_status=economics.status,
                    segment_priorities=economics.priorities,
                )
                documents["budget_guidance"] = economics.guidance.to_dict()
            tables = {"customer_features": result.features, "rejects": result.rejects, **tables}
            exported = _private_outputs(config, data, tables)
            # run.json names every file of the run (write_outputs' naming) and the stage
            # timings up to the write (the write itself is timed in the RunResult only).
            documents = {"run": {}, **_model_documents(result.valuation), **documents}
            out, fmt = config.output_dir, config.output.format
            result.timings = steps.timings
            result.outputs = {n: out / f"{n}.{fmt}" for n in exported}
            result.outputs.update({n: out / f"{n}.json" for n in documents})
            result.outputs.update({Path(f).stem: out / f for f in texts})
            documents["run"] = {
                **result.summary(),
                "data_fingerprint": fingerprint,
                "segments_config": _scheme_hashes(config),
            }
            renamed = {"customer_features": "customer_scores", "segment_memberships": "memberships"}
            stored = {renamed.get(n, n): t for n, t in tables.items()}
            stored_documents = {**documents, **{Path(f).stem: body for f, body in texts.items()}}
            # What scoring one customer later needs (Project.scorer), raw ids kept: the
            # store is working state, never pseudonymised.
            stored_documents["scorer"] = scorer_state(result, config)

            def finished(running: RunRecord) -> RunRecord:
                return replace(
                    running,
                    finished_at=dt.datetime.now(dt.UTC),
                    as_of=report.as_of,
                    data_fingerprint=fingerprint,
                    schemes=sorted(set(segmentation.memberships.column("scheme").to_pylist()))
                    if segmentation is not None
                    else [],
                    row_counts={
                        "customers": result.features.num_rows,
                        **{n: t.rows_accepted for n, t in report.tables.items()},
                    },
                    rejects={
                        f"{n}.{rule}": count
                        for n, t in report.tables.items()
                        for rule, count in t.rejected.items()
                    },
                    freshness={n: t.latest for n, t in report.tables.items()},
                    timings={k: round(v, 3) for k, v in steps.timings.items()},
                )

            def commit() -> None:
                store.commit_run(result.run_id, stored, stored_documents, update=finished)

            result.outputs = write_outputs(
                out,
                exported,
                _private_documents(config, documents),
                fmt=fmt,
                texts=texts,
                protected={**_protected(config), **_store_protected(config)},
                config_dir=config.base_dir,
                before_swap=commit,
            )
        store.apply_retention(config.store.keep_runs)


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
    path: str | Path,
    *,
    schemes: list[str] | None = None,
    progress: Progress | None = None,
    wait: float = 0,
) -> RunResult:
    """Load ``segvalue.yaml`` and run the main job on it (``segvalue run`` / ``segment``).

    ``wait``: seconds to wait for another run holding the output folder or store.

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
    return run(config, progress=progress, schemes=schemes, wait=wait)


def _budget_items(
    config: Config | None, curves_path: str | Path | None
) -> tuple[list[Any], float | None, Any, dict[str, Any], list[str]]:
    """Items, default total, budget settings (None for a curves file), fitted curves, warnings."""
    from segvalue.data.documents import read_document
    from segvalue.economics.budget import curves_from_mapping
    from segvalue.economics.curves import fit_curves_from_channel_spend, response_items

    if (config is None) == (curves_path is None):
        raise ConfigError(
            "give either a config (`config`) or a curves file (`curves_path`)",
            fix="name the curves file, or the segvalue.yaml whose budget section to plan",
            parameter="curves_path",
        )
    if curves_path is not None:
        curves = curves_from_mapping(read_document(curves_path), source=str(curves_path))
        return list(curves.items), curves.total, None, {}, []
    assert config is not None
    settings = config.budget
    if settings.items:
        return list(settings.items), settings.total, settings, {}, []
    if "channel_spend" not in config.sources:
        raise ConfigError(
            "the configuration has no budget.items and no channel_spend source to fit curves from",
            fix="add a channel_spend source or budget.items, or give a curves file (`curves_path`)",
            parameter="curves_path",
        )
    data = _load(config, _Steps(len(config.sources) + 1, None))
    try:
        fits = fit_curves_from_channel_spend(
            data.tables["channel_spend"],
            segment=settings.scheme,
            form=settings.form,
            adstock=settings.adstock,
        )
    finally:
        data.con.disconnect()  # our own connection: every face may reuse the process
    warnings = [w for fit in fits.values() for w in fit.warnings]
    items = response_items(fits, max_change=settings.max_change)
    # each segment x channel item reaches its segment (objective clv values it by it)
    items = [i.model_copy(update={"segment": fits[i.name].segment}) for i in items]
    return items, settings.total, settings, dict(fits), warnings


#: The mean CLV per customer by segment, or a function that reads it when needed.
SegmentCLV = Mapping[str, float] | Callable[[], Mapping[str, float]]


def _segment_clv(
    curves_path: str | Path | None, segment_clv: SegmentCLV | None
) -> dict[str, float]:
    """Mean CLV per customer by segment: the curves file's ``segment_clv``, else the
    given one (``Project.budget`` reads the ``clv_mean`` KPI of the latest complete run)."""
    from segvalue.data.readers import read_document
    from segvalue.economics.budget import curves_from_mapping

    if curves_path is not None:
        return dict(
            curves_from_mapping(read_document(curves_path), source=str(curves_path)).segment_clv
        )
    if segment_clv is None:
        raise ConfigError(
            "objective clv needs the segments' CLV of a complete run (`segment_clv`)",
            fix="plan through Project(config).budget(objective='clv'), which reads the latest "
            "complete run",
            parameter="segment_clv",
        )
    return dict(segment_clv() if callable(segment_clv) else segment_clv)


def plan_budget(
    *,
    config: Config | None = None,
    curves_path: str | Path | None = None,
    total: float | None = None,
    objective: str | None = None,
    target: float | None = None,
    segment_clv: SegmentCLV | None = None,
) -> tuple[Any, list[str]]:
    """Optimise a budget from a curves file or from a configuration (``segvalue budget``).

    With ``curves_path`` the items and total come from the file (objective default
    ``revenue``: allocate the whole total, a curves file carries no costs). With
    ``config`` the curves are the configured ``budget.items`` or, without them,
    fitted per (segment x) channel from the ``channel_spend`` source (objective default
    ``budget.objective``, itself ``profit`` by default). With ``target``, the inverse
    problem: the smallest total whose best allocation reaches it.

    Objective ``clv`` scales each item's value by the CLV of the segment it reaches
    relative to the base (:func:`segvalue.economics.budget.clv_values`): the segment CLVs
    come from the curves file's ``segment_clv`` or from ``segment_clv`` (a mapping, or a
    function called only for objective clv; ``Project.budget`` passes the ``clv_mean``
    KPI of the latest complete run); items that match no segment are named in a warning.

    Returns
    -------
    (Allocation, list of str)
        The allocation and the curve-fitting warnings.

    Examples
    --------
    >>> plan_budget()
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: give either a config (`config`) or a curves file ...
    """
    from segvalue.economics.budget import optimise_budget, smallest_budget

    if objective is not None and objective not in ("profit", "revenue", "clv"):
        raise ConfigError(
            f"`objective` {objective!r} is not known",
            fix="use profit, revenue or clv",
            parameter="objective",
        )
    items, default_total, settings, _, warnings = _budget_items(config, curves_path)
    chosen = objective or ("revenue" if settings is None else settings.objective)
    max_change = None if settings is None else settings.max_change
    values = None
    if chosen == "clv":
        from segvalue.economics.budget import clv_values

        values, notes = clv_values(items, _segment_clv(curves_path, segment_clv))
        warnings = [*warnings, *notes]
    if target is not None:
        if chosen == "profit":
            raise ConfigError(
                "`target` finds the smallest budget for a revenue or CLV target",
                fix="add `objective='revenue'` (or clv)",
                parameter="target",
            )
        goal = cast(Literal["revenue", "clv"], chosen)
        plan = smallest_budget(items, target, objective=goal, max_change=max_change, values=values)
        return plan, warnings
    allocation = optimise_budget(
        items,
        total=total if total is not None else default_total,
        objective=cast(Objective, chosen),
        min_marginal_roi=None if settings is None else settings.min_marginal_roi,
        max_change=max_change,
        values=values,
    )
    return allocation, warnings


def budget_what_if(
    move: str,
    *,
    config: Config | None = None,
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
    segvalue.errors.ConfigError: `move` 'a:b' is not FROM:TO:SHARE. Fix: ...
    """
    from segvalue.economics.budget import what_if

    parts = move.rsplit(":", 2)
    try:
        source, destination, share = parts[0], parts[1], float(parts[2])
    except (IndexError, ValueError):
        raise ConfigError(
            f"`move` {move!r} is not FROM:TO:SHARE",
            fix="e.g. `move='paid_social:email:0.2'` moves 20% of paid_social's spend to email",
            parameter="move",
        ) from None
    items, _, _, fits, _ = _budget_items(config, curves_path)
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
    from segvalue.data.writers import write_text_atomic

    path = Path(path)
    if path.exists() and not force:
        raise ConfigError(
            f"{path} already exists", fix="use `force=True` to overwrite it", parameter="force"
        )
    return write_text_atomic(path, config_template())


def validate_config(
    config_path: str | Path | None = None,
    *,
    config: Config | None = None,
    engine: Any = None,
    strict: bool = False,
    rejects_path: str | Path | None = None,
    progress: Progress | None = None,
) -> ValidationReport:
    """Validate every source of a configuration; optionally write the rejects.

    Parameters
    ----------
    config_path
        The YAML file (or give ``config``).
    config
        The loaded configuration (``Project.validate`` passes its own).
    engine
        An Ibis backend to read the sources into instead of ``config.engine.url`` (it
        stays open; a connection opened here is closed).
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
    from segvalue.data.readers import connect
    from segvalue.data.writers import write_table
    from segvalue.features.materialise import to_arrow

    if (config is None) == (config_path is None):
        raise ConfigError(
            "give either a configuration (`config`) or its file (`config_path`)",
            fix="e.g. validate_config('segvalue.yaml')",
            parameter="config",
        )
    if config is None:
        assert config_path is not None
        config = load_config(config_path)
    if strict:
        config = config.model_copy(
            update={"validation": config.validation.model_copy(update={"strict": True})}
        )
    protected = _protected(config)
    if config_path is not None:
        protected = {Path(config_path): "the config file", **protected}
    if rejects_path is not None:
        _check_out_file(rejects_path, protected, parameter="rejects_path")
    # Our own connection unless given one, so the rejects of a failed validation can
    # still be read.
    con = connect(engine if engine is not None else config.engine.url)

    def disconnect() -> None:
        if engine is None:
            con.disconnect()

    try:
        data = load(config, engine=con, progress=progress)
    except DataValidationError as exc:
        try:
            # The rejects explain the failure: write them before reporting it.
            if rejects_path is not None and exc.rejects is not None:  # Arrow
                write_table(exc.rejects, rejects_path, protected=protected)
        finally:
            disconnect()
        raise
    except BaseException:
        disconnect()
        raise
    try:
        if rejects_path is not None:
            write_table(
                to_arrow(data.rejects.order_by(["table", "row"])), rejects_path, protected=protected
            )
    finally:
        disconnect()
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


def _check_out_file(
    out_file: str | Path | None, protected: dict[Path, str], *, parameter: str = "out_file"
) -> None:
    """Refuse an output file early: wrong extension, missing folder, an input (safety)."""
    if out_file is None:
        return
    suffix = Path(out_file).suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ConfigError(
            f"`{parameter}` {str(out_file)!r}: unknown extension {suffix!r}",
            fix="use .csv or .parquet",
            parameter=parameter,
        )
    if not Path(out_file).parent.exists():
        raise ConfigError(
            f"`{parameter}` {str(out_file)!r}: folder does not exist",
            fix="create it first",
            parameter=parameter,
        )
    try:
        check_target(out_file, "file", protected=protected)
    except ConfigError as exc:
        raise ConfigError(
            f"`{parameter}`: {exc.message}", fix=exc.fix, parameter=parameter
        ) from None


def _load_orders_file(
    orders: OrdersFile,
    *,
    as_of: dt.date | None,
    time_unit: str,
    strict: bool,
    horizon: float | None = None,
    prefetch: Sequence[str] = (),
) -> ValidatedData:
    """Validate an orders file through the same rules as a configured source.

    ``prefetch``: modules to import while the engine validates (see :func:`_prefetch`).
    """
    if orders.decimal not in (".", ","):
        raise ConfigError(
            f"`decimal` {orders.decimal!r} is not supported",
            fix="use '.' or ','",
            parameter="decimal",
        )
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
        config = parse_config(raw_config, source="command line")
        return _load(config, _Steps(len(config.sources) + 1, None), prefetch=prefetch)
    except SegvalueError as exc:
        raise _as_parameter_error(exc) from None


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
    from segvalue.data.writers import write_table
    from segvalue.features.materialise import to_arrow
    from segvalue.features.rfm import rfm_features

    protected = {Path(orders.path): "the orders file"}
    _check_out_file(out_file, protected)
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
        write_table(features, out_file, protected=protected)
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
    histories: Histories | None = None,
) -> Valuation:
    """Fit the CLV models on orders in the engine, with a holdout report when asked.

    ``full`` (features at ``as_of``) and its ``histories`` are used when there is no
    holdout: then the calibration period is the whole history.
    """
    from segvalue.features.materialise import to_numpy
    from segvalue.features.rfm import calibration_holdout, repeat_purchases_by_period, rfm_features
    from segvalue.valuation import fit_valuation

    holdout, cumulative = None, None
    if calibration_end is None:
        calibration = (
            full if full is not None else to_numpy(rfm_features(table, as_of=as_of, time_unit=unit))
        )
        if full is None:
            histories = None
    else:
        histories = None
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
        histories=histories,
    )


def clv_from_file(
    orders: OrdersFile,
    *,
    time_unit: str = "week",
    calibration_end: dt.date | None = None,
    observation_end: dt.date | None = None,
    model: str = "auto",
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
        ``auto`` (MBG/NBD or Pareto/NBD: holdout error, else log-likelihood; see
        docs/clv.md), ``bgnbd``, ``mbgnbd`` or ``pnbd``.
    spend_model
        ``gamma-gamma`` or ``none`` (observed mean repeat spend); a Gamma-Gamma fit that
        fails falls back to ``none`` with a warning in ``warnings``.
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
        ``n_customers``, ``spend_model``, ``holdout``, ``warnings``) plus the valuation
        settings, the total CLV with its interval, and the validation report.
    """
    import pyarrow as pa

    from segvalue.data.writers import write_table
    from segvalue.features.materialise import numpy_columns, to_arrow
    from segvalue.features.rfm import rfm_features
    from segvalue.units import per_period_rate

    protected = {Path(orders.path): "the orders file"}
    _check_out_file(out_file, protected)
    if int(horizon) != horizon or horizon < 1:
        raise ConfigError(
            f"`horizon` {horizon} is not a whole number >= 1", fix="e.g. 52", parameter="horizon"
        )
    # Imported while the engine reads the file: the Arrow kernels that the fetches after
    # the validation pass use, the models and scipy.
    data = _load_orders_file(
        orders,
        as_of=observation_end,
        time_unit=time_unit,
        strict=strict,
        horizon=horizon,
        prefetch=("pyarrow.compute", "segvalue.valuation"),
    )
    from segvalue.models.base import Histories
    from segvalue.valuation import score_customers

    report = data.report
    unit, as_of, table = report.time_unit, report.as_of, data.tables["orders"]
    keys = ("frequency", "recency", "T", "monetary_value")
    # One query; the customer ids stay in Arrow (a million of them would each become a
    # Python string and back), only the models' inputs become numpy. Sorted by customer
    # only for the output file: nothing else depends on the order of the customers.
    rfm = rfm_features(table, as_of=as_of, time_unit=unit)
    # The customer ids only when they are written (a million strings cost 0.1-0.2 s).
    summary = to_arrow(
        rfm.select("customer_id", *keys).order_by("customer_id")
        if out_file is not None
        else rfm.select(*keys)
    )
    full = numpy_columns(summary, keys)
    # The customers' distinct histories, found once for fitting (without a holdout) and
    # scoring: the transaction models work on those, not on every customer.
    histories = Histories.of(full["frequency"], full["recency"], full["T"])
    valuation = _fit_valuation(
        table,
        as_of=as_of,
        unit=unit,
        calibration_end=calibration_end,
        model=model,
        spend_model=spend_model,
        full=full,
        histories=histories,
    )
    rate = per_period_rate(discount_rate, unit)
    scores = score_customers(
        valuation,
        full,
        horizon=int(horizon),
        discount_rate=rate,
        margin=margin,
        histories=histories,
    )
    customer_ids = summary.column("customer_id") if out_file is not None else None
    summary = valuation.to_dict()
    clv = scores["clv"]
    summary.update(
        as_of=as_of.isoformat(),
        horizon=int(horizon),
        discount_rate_annual=discount_rate,
        discount_rate_per_period=rate,
        margin=margin,
        customers_scored=int(clv.size),
        total_clv=_exact_sum(clv),  # the same whatever the order of the customers
        report=report.to_dict(),
    )
    if out_file is not None:
        # Built only when written: Arrow from numpy imports pandas (pyarrow checks for it).
        columns = {"customer_id": customer_ids, **{k: full[k] for k in keys}, **scores}
        predictions = pa.table(columns)
        write_table(predictions, out_file, protected=protected)
        summary["out"] = str(out_file)
    return summary


def _exact_sum(values: np.ndarray[Any, Any]) -> float:
    """``math.fsum(values)`` (the exact sum, correctly rounded) in a few array passes.

    Each value is ``whole * 2**(e - 53)`` with a whole number ``|whole| < 2**53``: split
    into 26 and 27 bits, the halves of the values sharing an exponent sum exactly in
    float64 (below 2**52 for up to 2**25 values), and ``math.fsum`` of those few exact
    partial sums rounds the exact total once, as it does for the values themselves.
    ``math.fsum`` over a million values takes 0.1 s; this, 0.02 s. Values it cannot take
    exactly (non-finite, subnormal, near overflow, more than 2**25 of them) go to
    ``math.fsum``.

    Examples
    --------
    >>> _exact_sum(np.array([1e16, 1.0, -1e16, 0.5]))
    1.5
    """
    import math

    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size > 2**25 or not np.isfinite(x).all() or not x.any():
        return math.fsum(x)
    mantissa, exponent = np.frexp(x)
    low_exp, high_exp = int(exponent.min()), int(exponent.max())
    if low_exp < -1021 or high_exp > 960:
        return math.fsum(x)
    whole = np.ldexp(mantissa, 53).astype(np.int64)
    high = whole >> 26
    low = whole - (high << 26)
    offset = exponent - low_exp
    scale = np.arange(low_exp, high_exp + 1) - 53
    sums = (np.bincount(offset, weights=part) for part in (high, low))
    partials = np.concatenate([np.ldexp(next(sums), scale + 26), np.ldexp(next(sums), scale)])
    return math.fsum(partials.tolist())


# Keys of the configuration built for an orders file, and the parameter (the field of
# OrdersFile or the function's argument) that sets each: errors name the parameter.
_ORDERS_FILE_PARAMETERS = {
    "sources.orders.columns.customer_id in segvalue.yaml": "customer_col",
    "sources.orders.columns.order_ts in segvalue.yaml": "date_col",
    "sources.orders.columns.amount in segvalue.yaml": "amount_col",
    "key 'time_unit'": "time_unit",
    "key 'as_of'": "as_of",
    "key 'sources.orders.date_format'": "date_format",
    "key 'sources.orders.csv.delimiter'": "delimiter",
}


def _as_parameter_error(exc: SegvalueError) -> SegvalueError:
    """Point an error raised for the built-in config at the parameter that set the key."""
    import copy

    message, fix = exc.message, exc.fix or ""
    parameter = exc.parameter
    for key, name in _ORDERS_FILE_PARAMETERS.items():
        if key in message or key in fix:
            parameter = parameter or name
        message = message.replace(key, f"`{name}`")
        fix = fix.replace(f"correct {key}", f"pass the right `{name}`").replace(key, f"`{name}`")
    # A copy keeps what subclasses carry (the rejects of NoValidRowsError).
    worded = copy.copy(exc)
    worded.message, worded.fix, worded.parameter = message, fix or None, parameter
    worded.args = (message if not fix else f"{message}. Fix: {fix}",)
    return worded


def _granularity(value: str) -> Any:
    if value not in ("day", "unit"):
        raise ConfigError(
            f"`granularity` {value!r} is not supported",
            fix="use 'day' or 'unit'",
            parameter="granularity",
        )
    return value


def run_demo(
    *,
    dataset: str = "demo",
    n_customers: int = 20_000,
    seed: int = 42,
    out_dir: str | Path = "segvalue-demo",
    progress: Progress | None = None,
    wait: float = 0,
) -> tuple[RunResult, Path]:
    """Generate (or copy) demo data with a ready ``segvalue.yaml``, then run the main job.

    Parameters
    ----------
    dataset
        ``"demo"``: the generated retailer; ``"cdnow"``: Fader and Hardie's CDNOW log.
    n_customers, seed
        Size and seed of the generated retailer.
    out_dir
        Folder for ``data/``, ``segvalue.yaml`` and ``output/``: a new folder, an empty
        one, or one an earlier ``segvalue demo`` made (it carries segvalue's mark);
        anything else is refused before a file is written.
    progress
        Optional progress callback.
    wait
        Seconds to wait for another run holding the demo's output folder or store.

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
    from segvalue.data.writers import write_text_atomic

    if dataset not in ("demo", "cdnow"):
        raise ConfigError(
            f"unknown `dataset` {dataset!r}", fix="use 'demo' or 'cdnow'", parameter="dataset"
        )
    out = Path(out_dir)
    check_target(out, "demo")
    if read_mark(out) is None:
        mark_folder(out, "demo")
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
        raise ConfigError(
            f"unknown `dataset` {dataset!r}", fix="use 'demo' or 'cdnow'", parameter="dataset"
        )
    doc.update(sources=sources, output={"dir": "output"})
    header = f"# segvalue.yaml for the {dataset} data, written by `segvalue demo`.\n"
    config_path = write_text_atomic(out / "segvalue.yaml", header + _yaml(doc))
    return run(load_config(config_path), progress=progress, wait=wait), config_path


def _yaml(doc: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(doc, sort_keys=False))
