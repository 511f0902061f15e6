"""Validate a configuration's sources without running (``segvalue validate``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from segvalue.config import Config, load_config
from segvalue.errors import ConfigError, DataValidationError
from segvalue.pipeline.files import check_out_file
from segvalue.pipeline.ingest import load, protected_inputs
from segvalue.pipeline.stage import Progress

if TYPE_CHECKING:
    from segvalue.data.validation import ValidationReport


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
    protected = protected_inputs(config)
    if config_path is not None:
        protected = {Path(config_path): "the config file", **protected}
    if rejects_path is not None:
        check_out_file(rejects_path, protected, parameter="rejects_path")
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
