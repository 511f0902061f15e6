"""The persist stage: claim and lock, begin / fail records, store commit and export.

:func:`claim_outputs` checks and locks the output folder and the store for a whole run
and records it as ``running``; :func:`record_failure` marks a failed run;
:func:`persist` compares with the previous run (timed as ``migration``), commits the run
to the store and swaps in the export (timed as ``write``), giving :class:`Persisted`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segvalue import __version__
from segvalue.config import Config
from segvalue.data.safety import check_target, remove_leftovers, target_lock
from segvalue.errors import ConfigError, SegvalueError
from segvalue.pipeline import segments as segments_stage
from segvalue.pipeline.ingest import contact_columns_of, protected_inputs
from segvalue.pipeline.result import RunResult, config_hash
from segvalue.pipeline.stage import Steps
from segvalue.pipeline.valuation import model_documents

if TYPE_CHECKING:
    import pyarrow as pa

    from segvalue.data.validation import ValidatedData
    from segvalue.pipeline.events import EventsMerged
    from segvalue.pipeline.segments import Migration
    from segvalue.segments.segmentation import Segmentation
    from segvalue.store import RunRecord


@dataclass(frozen=True)
class Persisted:
    """What the persist stage wrote.

    Attributes
    ----------
    outputs
        Every exported file by name (``run.json`` names them too).
    migration
        The comparison with the latest complete run with an earlier as-of date (None
        without segments or without such a run).
    """

    outputs: dict[str, Path]
    migration: Migration | None


def record_failure(config: Config, run_id: str, exc: BaseException) -> None:
    """Mark the run ``failed`` in the store with its first cause (best effort).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> off = {"enabled": False}
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}, "clv": off,
    ...                     "segments": off}, base_dir=d)
    >>> from segvalue.store import open_store
    >>> with claim_outputs(cfg, "r1", dt.datetime.now(dt.UTC)):
    ...     record_failure(cfg, "r1", KeyboardInterrupt())
    >>> with open_store(cfg.store_url) as store:
    ...     store.run("r1").status, store.run("r1").error
    ('failed', 'interrupted')
    """
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


def protected_store(config: Config) -> dict[Path, str]:
    """The results store's file (if a file) and its events journal, which no output may be
    or contain.

    Examples
    --------
    >>> import pathlib
    >>> from segvalue.config import parse_config
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=pathlib.Path("/s"))
    >>> for path in sorted(protected_store(cfg)):
    ...     print(path.name)
    segvalue-store.duckdb
    segvalue-store.duckdb.journal
    segvalue-store.duckdb.journal.moving
    """
    from segvalue.store.journal import EventJournal, journal_path

    path = config.store_path
    if path is None:
        return {}
    journal = EventJournal(journal_path(path))
    shown = "the results store's events journal"
    return {path: "the results store", journal.path: shown, journal.moving: shown}


@contextmanager
def claim_outputs(
    config: Config, run_id: str, started: dt.datetime, *, wait: float = 0
) -> Iterator[None]:
    """Check and lock the output folder and the store for a whole run; clear debris.

    The output folder may not be, contain or lie inside an input or the store file; the
    store file may not be an input. A second run refuses at once (or after ``wait``
    seconds), naming the running one. Holding both locks, the run removes what killed
    runs left (staging folders, ``running`` rows) and records itself as ``running``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> off = {"enabled": False}
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}, "clv": off,
    ...                     "segments": off}, base_dir=d)
    >>> from segvalue.store import open_store
    >>> with claim_outputs(cfg, "r1", dt.datetime.now(dt.UTC)):
    ...     with open_store(cfg.store_url) as store:
    ...         store.run("r1").status
    'running'
    """
    from segvalue.store import RunRecord, open_store, store_lock

    protected = protected_inputs(config)
    output = check_target(
        config.output_dir,
        "output",
        protected={**protected, **protected_store(config)},
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
                    versions=versions(),
                )
            )
        yield


def versions() -> dict[str, str]:
    """Versions of segvalue and the libraries its numbers depend on.

    Examples
    --------
    >>> from segvalue import __version__
    >>> versions()["segvalue"] == __version__
    True
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"segvalue": __version__, "python": platform.python_version()}
    for package in ("duckdb", "ibis-framework", "numpy", "scipy", "scikit-learn", "pyarrow"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


def persist(
    config: Config,
    result: RunResult,
    data: ValidatedData,
    steps: Steps,
    fingerprint: str,
    *,
    events: EventsMerged | None = None,
) -> Persisted:
    """Compare with the previous run, commit the run to the store, export the outputs.

    The export is staged first; the store commit (every table, document and the run's
    ``complete`` status in one transaction) happens before the staged folder is swapped
    in, so the output folder never names a run the store does not hold. ``result`` gets
    its migration, outputs and timings on the way (``run.json`` is its summary).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> off = {"enabled": False}
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}, "clv": off,
    ...                     "segments": off}, base_dir=d)
    >>> from segvalue.store import open_store
    >>> from segvalue.pipeline.features import collect_features, compute_features
    >>> from segvalue.pipeline.ingest import collect_rejects, ingest, load
    >>> steps = Steps(4, None)
    >>> data = load(cfg)
    >>> features = collect_features(compute_features(data, steps).table, steps)
    >>> result = RunResult("r1", config_hash(cfg), data.report, features,
    ...                    collect_rejects(data, steps))
    >>> with claim_outputs(cfg, "r1", dt.datetime.now(dt.UTC)):
    ...     persisted = persist(cfg, result, data, steps, ingest(cfg, data).fingerprint)
    >>> sorted(persisted.outputs), persisted.migration
    (['customer_features', 'rejects', 'run'], None)
    >>> with open_store(cfg.store_url) as store:
    ...     store.run("r1").status
    'complete'
    """
    from segvalue.data.writers import write_outputs
    from segvalue.pipeline.events import EventsMerged, history_tables
    from segvalue.pipeline.ingest import contact_columns_of
    from segvalue.scoring import scorer_state
    from segvalue.store import open_store

    segmentation, economics, report = result.segmentation, result.economics, result.report
    with open_store(config.store_url, create=True) as store:
        if segmentation is not None:
            with steps.step("migration", "comparing with the previous run"):
                result.migration = segments_stage.compare_with_previous(
                    config, segmentation, store, report.as_of
                )
        with steps.step("write", "writing outputs"):
            tables, documents, texts = _segment_outputs(segmentation, result.migration)
            if economics is not None:
                tables.update(
                    segment_kpis=economics.kpis,
                    kpi_status=economics.status,
                    segment_priorities=economics.priorities,
                )
                documents["budget_guidance"] = economics.guidance.to_dict()
            if result.measurement is not None:
                tables.update(
                    {n: t for n, t in result.measurement.tables().items() if t.num_columns}
                )
                documents["measurement"] = result.measurement.details
            tables = {"customer_features": result.features, "rejects": result.rejects, **tables}
            exported = _private_outputs(config, data, tables)
            # run.json names every file of the run (write_outputs' naming) and the stage
            # timings up to the write (the write itself is timed in the RunResult only).
            documents = {"run": {}, **model_documents(result.valuation), **documents}
            out, fmt = config.output_dir, config.output.format
            result.timings = steps.timings
            result.outputs = {n: out / f"{n}.{fmt}" for n in exported}
            result.outputs.update({n: out / f"{n}.json" for n in documents})
            result.outputs.update({Path(f).stem: out / f for f in texts})
            documents["run"] = {
                **result.summary(),
                "data_fingerprint": fingerprint,
                "segments_config": segments_stage.scheme_hashes(config),
            }
            renamed = {"customer_features": "customer_scores", "segment_memberships": "memberships"}
            stored = {renamed.get(n, n): t for n, t in tables.items()}
            stored_documents = {**documents, **{Path(f).stem: body for f, body in texts.items()}}
            # What scoring one customer later needs (Project.scorer), raw ids kept: the
            # store is working state, never pseudonymised.
            stored_documents["scorer"] = scorer_state(result, config)
            # What re-scoring one customer after a real-time event reads: the customer's
            # accepted rows, and which stored events the run took in.
            contacts = list(contact_columns_of(config, data))
            scoring = stored_documents["scorer"]["features"]
            stored.update(history_tables(data, scoring, contacts))
            stored_documents["events"] = (events or EventsMerged()).to_dict()

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
                protected={**protected_inputs(config), **protected_store(config)},
                config_dir=config.base_dir,
                before_swap=commit,
            )
        store.apply_retention(config.store.keep_runs)
    return Persisted(outputs=result.outputs, migration=result.migration)


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


def _private_outputs(
    config: Config, data: ValidatedData, tables: Mapping[str, pa.Table]
) -> dict[str, pa.Table]:
    """Outputs as ``privacy`` asks: contact columns only with ``write_pii``, pseudonyms."""
    from segvalue.features.materialise import to_arrow
    from segvalue.features.privacy import pseudonym_key, pseudonymise_tables

    out = dict(tables)
    contacts = list(contact_columns_of(config, data)) if config.privacy.write_pii else []
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
