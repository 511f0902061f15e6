"""The ingest stage: read every configured source, validate it, fingerprint the data.

:func:`read_and_validate` reads and validates (the ``read`` and ``validate`` timings);
:func:`ingest` adds what every later stage needs once per run: the data fingerprint and
the contact columns of the customers table (:class:`Ingested`).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segvalue.config import Config
from segvalue.pipeline.stage import Progress, Steps

if TYPE_CHECKING:
    import pyarrow as pa

    from segvalue.data.validation import ValidatedData


@dataclass(frozen=True)
class Ingested:
    """The validated sources of a run and what identifies them.

    Attributes
    ----------
    data
        Clean tables in the engine, the rejects and the validation report.
    fingerprint
        The data fingerprint (:func:`segvalue.data.fingerprint.data_fingerprint`).
    contacts
        Contact columns of the customers table: never profiled, modelled or written
        (empty when neither CLV nor segments are enabled: nothing reads them then).
    """

    data: ValidatedData
    fingerprint: str
    contacts: tuple[str, ...]


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
    steps = Steps(len(config.sources) + 1, progress)
    return read_and_validate(config, steps, engine)


def read_and_validate(
    config: Config, steps: Steps, engine: Any = None, *, prefetch: Sequence[str] = ()
) -> ValidatedData:
    """:func:`load` on the run's timer (``read`` per source, then ``validate``).

    ``prefetch`` names modules the caller needs next (see :func:`_prefetch`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> steps = Steps(2, None)
    >>> read_and_validate(cfg, steps).report.rows_rejected, sorted(steps.timings)
    (0, ['read', 'validate'])
    """
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


def contact_columns_of(config: Config, data: ValidatedData) -> dict[str, str]:
    """Contact columns of the customers table: never profiled, modelled or written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> _ = (d / "c.csv").write_text("customer_id,email\\na,a@example.com\\n")
    >>> sources = {"orders": {"path": "o.csv"}, "customers": {"path": "c.csv"}}
    >>> cfg = parse_config({"sources": sources}, base_dir=d)
    >>> list(contact_columns_of(cfg, load(cfg)))
    ['email']
    """
    from segvalue.features.privacy import contact_columns

    if "customers" not in data.tables:
        return {}
    return contact_columns(
        data.tables["customers"], listed=config.privacy.pii, not_contact=config.privacy.not_pii
    )


def protected_inputs(config: Config) -> dict[Path, str]:
    """What a run reads, which no output may be, contain or lie inside.

    Examples
    --------
    >>> import pathlib
    >>> from segvalue.config import parse_config
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=pathlib.Path("/s"))
    >>> protected_inputs(cfg)
    {PosixPath('/s/o.csv'): 'source orders'}
    """
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


def ingest(config: Config, data: ValidatedData) -> Ingested:
    """The fingerprint and contact columns of validated data (:class:`Ingested`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> ingested = ingest(cfg, load(cfg))
    >>> len(ingested.fingerprint), ingested.contacts
    (16, ())
    """
    from segvalue.data.fingerprint import data_fingerprint

    report = data.report
    fingerprint = data_fingerprint(config, {name: t.rows_read for name, t in report.tables.items()})
    # Found by a query on the customers table: once per run, for every step that needs it.
    contacts = (
        tuple(contact_columns_of(config, data))
        if config.clv.enabled or config.segments.enabled
        else ()
    )
    return Ingested(data=data, fingerprint=fingerprint, contacts=contacts)


def collect_rejects(data: ValidatedData, steps: Steps) -> pa.Table:
    """The rejected rows as Arrow, ordered by table and row (timed as ``rejects``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = "order_id,customer_id,order_ts,amount\\n1,a,x,5\\n2,a,2024-01-02,5\\n"
    >>> _ = (d / "o.csv").write_text(rows)
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> collect_rejects(load(cfg), Steps(1, None)).num_rows
    1
    """
    from segvalue.features.materialise import to_arrow

    with steps.step("rejects", "collecting rejects"):
        # The report counts every rejected row; with none, the empty table needs no query.
        if data.report.rows_rejected:
            return to_arrow(data.rejects.order_by(["table", "row"]))
        return data.rejects.schema().to_pyarrow().empty_table()
