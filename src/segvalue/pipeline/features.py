"""The features stage: per-customer features computed once in the engine.

Every later stage reads the same values: :func:`compute_features` materialises them in
the engine (:class:`Features`), :func:`collect_features` fetches the final customer table
(with the CLV scores joined) as Arrow, and :func:`rfm_of_orders` gives the RFM / BTYD
summary of a file read without a configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from segvalue.pipeline.stage import Steps
from segvalue.units import TimeUnit

if TYPE_CHECKING:
    import pyarrow as pa

    from segvalue.data.validation import ValidatedData


@dataclass(frozen=True)
class Features:
    """Per-customer features of a run, materialised in the engine.

    Attributes
    ----------
    table
        An Ibis table of the engine, one row per customer
        (:func:`segvalue.features.customer.customer_features`).
    """

    table: Any


def compute_features(data: ValidatedData, steps: Steps) -> Features:
    """Compute the customer features once, in the engine (timed as ``features``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.pipeline.ingest import load
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> compute_features(load(cfg), Steps(1, None)).table.count().execute()
    1
    """
    from segvalue.data.readers import materialise
    from segvalue.features.customer import customer_features

    report = data.report
    with steps.step("features", "computing customer features"):
        # Computed once, here: every later step reads the same values.
        table = materialise(
            data.con,
            customer_features(data.tables, as_of=report.as_of, time_unit=report.time_unit),
            "features",
        )
    return Features(table=table)


def collect_features(features: Any, steps: Steps) -> pa.Table:
    """The customer table as Arrow, sorted by customer id (timed as ``materialise``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.pipeline.ingest import load
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> steps = Steps(2, None)
    >>> collect_features(compute_features(load(cfg), steps).table, steps).num_rows
    1
    """
    from segvalue.features.materialise import to_arrow

    with steps.step("materialise", "collecting customer table"):
        return to_arrow(features.order_by("customer_id"))


def rfm_of_orders(
    data: ValidatedData, *, time_unit: TimeUnit, granularity: Literal["day", "unit"] = "day"
) -> pa.Table:
    """RFM / BTYD features of the validated orders, sorted by customer id.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.pipeline.ingest import load
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = "order_id,customer_id,order_ts,amount\\n1,a,2024-01-01,5\\n2,a,2024-01-15,4\\n"
    >>> _ = (d / "o.csv").write_text(rows)
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}, "as_of": "2024-01-29"},
    ...                    base_dir=d)
    >>> rfm_of_orders(load(cfg), time_unit=TimeUnit.WEEK).column("T").to_pylist()
    [4.0]
    """
    from segvalue.features.materialise import to_arrow
    from segvalue.features.rfm import rfm_features

    return to_arrow(
        rfm_features(
            data.tables["orders"],
            as_of=data.report.as_of,
            time_unit=time_unit,
            granularity=granularity,
        ).order_by("customer_id")
    )
