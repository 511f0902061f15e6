"""Commands on an orders file read without a configuration (``rfm``, ``clv`` on a file).

Built on the stages of a run: the file is read and validated by the ingest stage
(through a configuration built for it), summarised by the features stage and valued by
the valuation stage's model fit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from segvalue.config import parse_config
from segvalue.data.safety import check_target
from segvalue.errors import ConfigError, SegvalueError
from segvalue.pipeline.features import rfm_of_orders
from segvalue.pipeline.ingest import read_and_validate
from segvalue.pipeline.stage import Steps
from segvalue.pipeline.valuation import fit_clv_models
from segvalue.units import parse_time_unit

if TYPE_CHECKING:
    from segvalue.data.validation import ValidatedData


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


def check_out_file(
    out_file: str | Path | None, protected: dict[Path, str], *, parameter: str = "out_file"
) -> None:
    """Refuse an output file early: wrong extension, missing folder, an input (safety).

    Examples
    --------
    >>> check_out_file("scores.txt", {})
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: `out_file` 'scores.txt': unknown extension '.txt'. Fix: ...
    """
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

    ``prefetch``: modules to import while the engine validates (see
    :func:`segvalue.pipeline.ingest._prefetch`).
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
        return read_and_validate(config, Steps(len(config.sources) + 1, None), prefetch=prefetch)
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

    protected = {Path(orders.path): "the orders file"}
    check_out_file(out_file, protected)
    data = _load_orders_file(orders, as_of=as_of, time_unit=time_unit, strict=strict)
    report = data.report
    features = rfm_of_orders(
        data, time_unit=parse_time_unit(time_unit), granularity=_granularity(granularity)
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

    Examples
    --------
    Fader and Hardie's CDNOW log, BG/NBD calibrated on its first 39 weeks:

    >>> import tempfile, pathlib
    >>> from segvalue.data.datasets import copy_cdnow
    >>> path = copy_cdnow(pathlib.Path(tempfile.mkdtemp()))
    >>> orders = OrdersFile(path, "customer_id", "date", "dollar_value", delimiter="whitespace")
    >>> summary = clv_from_file(orders, model="bgnbd", calibration_end=dt.date(1997, 9, 30))
    >>> summary["model"], summary["as_of"], summary["customers_scored"]
    ('bgnbd', '1998-06-30', 23570)
    """
    import pyarrow as pa

    from segvalue.data.writers import write_table
    from segvalue.features.materialise import numpy_columns, to_arrow
    from segvalue.features.rfm import rfm_features
    from segvalue.units import per_period_rate

    protected = {Path(orders.path): "the orders file"}
    check_out_file(out_file, protected)
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
    valuation = fit_clv_models(
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
    # The per-customer intervals (four more evaluations of the transaction model) only
    # when they are written: the summary reports none of them.
    scores = score_customers(
        valuation,
        full,
        horizon=int(horizon),
        discount_rate=rate,
        margin=margin,
        intervals=out_file is not None,
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


def _granularity(value: str) -> Literal["day", "unit"]:
    if value not in ("day", "unit"):
        raise ConfigError(
            f"`granularity` {value!r} is not supported",
            fix="use 'day' or 'unit'",
            parameter="granularity",
        )
    return cast(Literal["day", "unit"], value)
