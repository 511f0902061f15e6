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
from typing import Any

import pyarrow as pa

from segvalue import __version__
from segvalue.config import Config, config_template, load_config, parse_config
from segvalue.data.readers import connect, read_source
from segvalue.data.validation import ValidatedData, ValidationReport, validate_sources
from segvalue.data.writers import write_outputs, write_table, write_text_atomic
from segvalue.errors import ConfigError, SegvalueError
from segvalue.features.customer import customer_features
from segvalue.features.materialise import to_arrow
from segvalue.features.rfm import rfm_features
from segvalue.units import parse_time_unit

__all__ = [
    "Progress",
    "RunResult",
    "config_hash",
    "load",
    "rfm_from_file",
    "run",
    "run_demo",
    "validate_config",
    "write_config_template",
]

#: Called as ``progress(step_description, step_index, step_count)``.
Progress = Callable[[str, int, int], None]


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

    def summary(self) -> dict[str, Any]:
        """Run metadata: id, config hash, row counts, rejects, freshness, timings."""
        return {
            "run_id": self.run_id,
            "segvalue_version": __version__,
            "config_hash": self.config_hash,
            "customers": self.features.num_rows,
            "validation": self.report.to_dict(),
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


def run(
    config: Config,
    *,
    engine: Any = None,
    progress: Progress | None = None,
    write: bool = True,
) -> RunResult:
    """Run the main job: ingest, validate, compute features, write outputs atomically.

    Parameters
    ----------
    config
        The validated configuration.
    engine
        An Ibis backend or a Spark session to use instead of ``config.engine.url``.
    progress
        Optional callback ``(description, index, total)`` for a progress bar.
    write
        Write outputs to ``config.output_dir`` (features, rejects, run report).

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
    >>> result.features.num_rows, sorted(result.outputs)
    (1, ['customer_features', 'rejects', 'run'])
    """
    steps = _Steps(len(config.sources) + 3 + int(write), progress)
    data = _load(config, steps, engine)
    report = data.report
    with steps.step("features", "computing customer features"):
        features = to_arrow(
            customer_features(data.tables, as_of=report.as_of, time_unit=report.time_unit)
        )
    with steps.step("rejects", "collecting rejects"):
        rejects = to_arrow(data.rejects.order_by(["table", "row"]))
    result = RunResult(
        run_id=dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6],
        config_hash=config_hash(config),
        report=report,
        features=features,
        rejects=rejects,
    )
    if write:
        with steps.step("write", "writing outputs"):
            result.outputs = write_outputs(
                config.output_dir,
                {"customer_features": features, "rejects": rejects},
                {"run": result.summary()},
                fmt=config.output.format,
            )
    result.timings = steps.timings
    return result


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
    data = load(config, progress=progress)
    if rejects_path is not None:
        write_table(to_arrow(data.rejects.order_by(["table", "row"])), rejects_path)
    return data.report


def rfm_from_file(
    orders: str | Path,
    *,
    customer_col: str,
    date_col: str,
    amount_col: str,
    as_of: dt.date | None = None,
    time_unit: str = "week",
    granularity: str = "day",
    delimiter: str = ",",
    decimal: str = ".",
    header: bool = True,
    date_format: str | None = None,
    strict: bool = False,
    out_file: str | Path | None = None,
) -> dict[str, Any]:
    """Validate an orders file and compute RFM / BTYD features per customer.

    Parameters
    ----------
    orders
        CSV / text (``delimiter`` may be ``"whitespace"``) or Parquet file.
    customer_col, date_col, amount_col
        The file's column names (``column0``, ``column1``, ... without a header).
    as_of
        Observation end; later orders are rejected as ``after_as_of`` (reported).
    time_unit, granularity
        See :func:`segvalue.features.rfm.rfm_features`.
    delimiter, decimal, header, date_format
        How to read the file.
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
    >>> r = rfm_from_file(p, customer_col="cid", date_col="day", amount_col="total",
    ...                   delimiter=";", decimal=",", as_of=dt.date(2024, 1, 29))
    >>> r["customers_table"][0]["recency"], r["customers_table"][0]["T"]
    (2.0, 4.0)
    """
    if decimal not in (".", ","):
        raise ConfigError(f"--decimal {decimal!r} is not supported", fix="use '.' or ','")
    if out_file is not None:
        suffix = Path(out_file).suffix.lower()
        if suffix not in (".csv", ".parquet", ".pq"):
            raise ConfigError(
                f"--out {str(out_file)!r}: unknown extension", fix="use .csv or .parquet"
            )
        if not Path(out_file).parent.exists():
            raise ConfigError(
                f"--out {str(out_file)!r}: folder does not exist", fix="create it first"
            )
    raw_config = {
        "as_of": as_of,
        "time_unit": time_unit,
        "sources": {
            "orders": {
                "path": str(orders),
                "csv": {"delimiter": delimiter, "decimal": decimal, "header": header},
                "date_format": date_format,
                "columns": {
                    "order_id": "_row",
                    "customer_id": customer_col,
                    "order_ts": date_col,
                    "amount": amount_col,
                },
            }
        },
        "validation": {"strict": strict},
    }
    try:
        data = load(parse_config(raw_config, source="command line"))
    except SegvalueError as exc:
        raise _as_option_error(exc) from None
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
        from segvalue.data.demo import generate_demo, write_demo

        if progress is not None:
            progress(f"generating {n_customers:,} demo customers", 0, 1)
        demo = generate_demo(n_customers, seed=seed)
        paths = write_demo(demo, data_dir)
        sources: dict[str, Any] = {
            name: {"path": str(path.relative_to(out))} for name, path in paths.items()
        }
        doc: dict[str, Any] = {"as_of": demo.as_of.isoformat(), "time_unit": "week"}
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
        doc = {"as_of": CDNOW_AS_OF, "time_unit": "week"}
    else:
        raise ConfigError(f"unknown --dataset {dataset!r}", fix="use 'demo' or 'cdnow'")
    doc.update(sources=sources, output={"dir": "output"})
    header = f"# segvalue.yaml for the {dataset} data, written by `segvalue demo`.\n"
    config_path = write_text_atomic(out / "segvalue.yaml", header + _yaml(doc))
    return run(load_config(config_path), progress=progress), config_path


def _yaml(doc: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(doc, sort_keys=False))
