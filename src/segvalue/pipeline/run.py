"""The run: the stages called in order (ingest, features, valuation, segments, economics,
persist), with the optimisations that make them overlap.

The stages that tests interrupt or replace (``valuation.value_customers``,
``segments.start_cluster_fits``, ``segments.segment``, ``economics.compute_economics``,
``segments.compare_with_previous``) are looked up on their modules at each call.
"""

from __future__ import annotations

import datetime as dt
import gc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segvalue.config import Config, load_config
from segvalue.errors import ConfigError
from segvalue.pipeline import economics as economics_stage
from segvalue.pipeline import segments as segments_stage
from segvalue.pipeline import valuation as valuation_stage
from segvalue.pipeline.features import collect_features, compute_features
from segvalue.pipeline.ingest import collect_rejects, ingest, read_and_validate
from segvalue.pipeline.persist import claim_outputs, persist, record_failure
from segvalue.pipeline.result import RunResult, config_hash
from segvalue.pipeline.stage import Progress, Steps

if TYPE_CHECKING:
    from segvalue.data.validation import ValidatedData


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
    with claim_outputs(config, run_id, started, wait=wait):
        try:
            return _run(
                config, run_id, engine=engine, progress=progress, write=True, schemes=schemes
            )
        except BaseException as exc:
            record_failure(config, run_id, exc)
            raise


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
    enabled += int(_measures(config))
    steps = Steps(len(config.sources) + 4 + enabled + 2 * int(write), progress)
    data = read_and_validate(config, steps, engine)
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
    steps: Steps,
    *,
    write: bool,
    schemes: list[str] | None,
    freeze: bool,
    owned: bool,
) -> RunResult:
    """The run from the validated data on (``owned``: the run opened the engine itself)."""
    from segvalue.data.readers import materialise
    from segvalue.pipeline.events import EventsMerged, merge_stored_events

    # The orders and touchpoints received in real time (POST /api/v1/events) are part of
    # the data a recorded run sees.
    events = merge_stored_events(config, data) if write else EventsMerged()
    ingested = ingest(config, data)
    report, contacts = data.report, list(ingested.contacts)
    restore_threads = _leave_cores(data.con, 0)  # nothing to give back yet
    features_expr = compute_features(data, steps).table
    valuation = None
    fitting: dict[str, Callable[[], Any]] = {}
    if config.clv.enabled:
        before = set(features_expr.columns)
        fitting = segments_stage.start_cluster_fits(config, data, features_expr, schemes, contacts)
        if owned:  # our own connection: its settings are ours to change
            restore_threads = _leave_cores(data.con, len(fitting))
        if freeze:  # scikit-learn and the loaded tables, here for the rest of the run
            gc.freeze()
        with steps.step("clv", "fitting CLV models and scoring customers"):
            valued = valuation_stage.value_customers(config, data, features_expr, contacts=contacts)
        valuation = valued.valuation
        features_expr = materialise(data.con, valued.features, "features")
        # A customer attribute named like a column the CLV step added (a score) is
        # shadowed by that column from here on: such a scheme is fitted again.
        added = set(features_expr.columns) - before
        fitting = {
            s.name: fitting[s.name]
            for s in config.segments.schemes
            if s.name in fitting and not set(getattr(s, "features", ())) & added
        }
    # Collected before the segments step, which may wait for a cluster fit meanwhile.
    features = collect_features(features_expr, steps)
    rejects = collect_rejects(data, steps)
    segmentation = None
    if config.segments.enabled:
        with steps.step("segments", "segmenting customers"):
            segmentation = segments_stage.segment_all(
                config,
                data,
                features_expr,
                only=schemes,
                fitted=fitting,
                contacts=contacts,
                carry=write,
                fingerprint=ingested.fingerprint,
            ).segmentation
    restore_threads()  # the cluster fits are done
    measured = None
    if _measures(config):
        from segvalue.pipeline import measurement as measurement_stage

        with steps.step("measurement", "attribution, channel effectiveness and lift"):
            measured = measurement_stage.measure(config, data, features, segmentation)
    economics = None
    if segmentation is not None and segmentation.memberships.num_rows:
        with steps.step("kpis", "segment KPIs, targets and priorities"):
            economics = economics_stage.compute_economics(
                config,
                data,
                features_expr,
                segmentation,
                lift=measured.priority_lift if measured is not None else None,
                lift_scheme=measured.scheme if measured is not None else None,
            )
    result = RunResult(
        run_id=run_id,
        config_hash=config_hash(config),
        report=report,
        features=features,
        rejects=rejects,
        valuation=valuation,
        segmentation=segmentation,
        economics=economics,
        measurement=measured,
    )
    if write:
        persist(config, result, data, steps, ingested.fingerprint, events=events)
    result.timings = steps.timings
    return result


def _measures(config: Config) -> bool:
    """Whether the run has a measurement step (docs/measurement.md)."""
    return config.measurement.enabled and bool({"touchpoints", "experiments"} & set(config.sources))


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
