"""Measurement of files, as the CLI's attribute, lift and uplift commands read them: a
path table, touchpoints, an experiment, a scored test (the data layer reads them; the
measurement package computes)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segvalue.errors import DataValidationError
from segvalue.measurement.attribution import (
    Journeys,
    Paths,
    attribute,
    journeys_from_touches,
)

__all__ = [
    "PathColumns",
    "TouchColumns",
    "attribute",
    "evaluate_uplift_file",
    "fit_uplift_file",
    "lift_file",
    "read_journeys",
    "read_paths",
    "read_rows",
    "sample_size_check",
]


@dataclass(frozen=True)
class PathColumns:
    """The columns of a path table (ChannelAttribution's names by default); ``value`` and
    ``nulls`` may be absent from the file (0 then)."""

    path: str = "path"
    conversions: str = "total_conversions"
    value: str = "total_conversion_value"
    nulls: str = "total_null"


def read_paths(
    file: Path,
    *,
    columns: PathColumns = PathColumns(),
    sep: str = ">",
    by: str | None = None,
    delimiter: str = ",",
) -> dict[str | None, Paths]:
    """The paths of a CSV / text or Parquet path table: all of them under ``None``, or
    per value of the column ``by`` (in order of first appearance).

    Raises
    ------
    DataValidationError
        A missing column (naming the file and the columns it has), or a count or value
        that is not a number >= 0 (naming the file, line or row, column and value).

    Examples
    --------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "paths.csv"
    >>> _ = f.write_text("path,total_conversions,total_null\\nC1 > C2 > C3,1,0\\nC1,0,1\\n")
    >>> read_paths(f)[None].channels
    ('C1', 'C2', 'C3')
    """
    wanted = [columns.path, columns.conversions] + ([by] if by else [])
    fix = (
        "name the path table's columns with `path_col`, `conversions_col`, `value_col`, "
        "`nulls_col` (or `by`)"
    )
    rows, places = read_rows(file, wanted, delimiter=delimiter, fix=fix)
    groups: dict[str | None, list[tuple[str, float, float, float]]] = {}
    for row, where in zip(rows, places, strict=True):
        numbers = [
            _number(row.get(name), where, name, absent=name != columns.conversions)
            for name in (columns.conversions, columns.value, columns.nulls)
        ]
        key = None if by is None else ("" if row[by] is None else str(row[by]))
        text = row[columns.path]
        if text is None or not str(text).strip():
            raise DataValidationError(
                f"{where}: column {columns.path!r} is empty",
                fix="give every row a path such as 'search > email'",
                parameter=columns.path,
            )
        groups.setdefault(key, []).append((str(text), *numbers))  # type: ignore[arg-type]
    if not groups:
        raise DataValidationError(f"{file} holds no path", fix="give at least one row")
    out: dict[str | None, Paths] = {}
    for key, members in groups.items():
        out[key] = Paths.parse(
            [m[0] for m in members],
            [m[1] for m in members],
            value=[m[2] for m in members],
            nulls=[m[3] for m in members],
            sep=sep,
        )
    return out


def read_rows(
    file: Path, required: list[str], *, delimiter: str = ",", fix: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a CSV / text or Parquet file (read by the data layer) and where each
    is (``"FILE, line N"``); a missing ``required`` column names the ones there."""
    import ibis

    from segvalue.config import SourceConfig
    from segvalue.data.readers import read_file

    source = SourceConfig(path=str(file), csv={"delimiter": delimiter})
    con = ibis.duckdb.connect()
    try:
        table, word, offset = read_file(con, file, source, label=str(file))
        present = list(table.columns)
        for name in required:
            if name not in present:
                raise DataValidationError(
                    f"{file}: no column {name!r} (it has {', '.join(present)})",
                    fix=fix,
                    parameter=name,
                )
        rows = table.to_pyarrow().to_pylist()
    finally:
        con.disconnect()
    first = 1 if offset is None else offset
    return rows, [f"{file}, {word} {first + i}" for i in range(len(rows))]


def lift_file(
    file: Path,
    *,
    group_col: str,
    control: str,
    outcomes: list[str],
    treatments: list[str] | None = None,
    by: str | None = None,
    level: float = 0.95,
    adjust: str = "holm",
    delimiter: str = ",",
    contact_cost: float | None = None,
    margin: float = 1.0,
) -> list[dict[str, Any]]:
    """:func:`segvalue.measurement.lift.lift_table` of an experiment file: one row per
    subject, its group, its outcomes (numbers, or true / false) and optionally a
    segment column ``by``. With ``contact_cost`` (per treated subject), each row of an
    outcome that is not 0/1 (revenue) gets its ``roi`` (:func:`campaign_roi`).

    Examples
    --------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "exp.csv"
    >>> _ = f.write_text("group,converted\\nt,true\\nt,true\\nc,false\\nc,true\\n")
    >>> lift_file(f, group_col="group", control="c", outcomes=["converted"])[0]["lift"]
    0.5
    """
    from segvalue.measurement.lift import campaign_roi, lift_table

    if not outcomes:
        raise DataValidationError(
            "no outcome column given", fix="name one with `outcome`", parameter="outcome"
        )
    required = [group_col, *outcomes] + ([by] if by else [])
    fix = "name the experiment's columns with `group_col`, `outcome` (and `by`)"
    rows, places = read_rows(file, required, delimiter=delimiter, fix=fix)
    values: dict[str, list[float]] = {name: [] for name in outcomes}
    for row, where in zip(rows, places, strict=True):
        if row[group_col] is None or not str(row[group_col]).strip():
            raise DataValidationError(
                f"{where}: column {group_col!r} is empty",
                fix="give every row its group (e.g. treatment or control)",
                parameter=group_col,
            )
        for name in outcomes:
            values[name].append(_outcome(row[name], where, name))
    found = lift_table(
        [str(row[group_col]).strip() for row in rows],
        values,
        control=control,
        treatments=treatments or None,
        segments=None if by is None else [row[by] for row in rows],
        level=level,
        adjust=adjust,
    )
    if contact_cost is not None:  # the campaign's return, for outcomes that are money
        for row in found:
            if not row["binary"]:
                row["roi"] = campaign_roi(row, contact_cost=contact_cost, margin=margin)
    return found


def sample_size_check(
    effect: float,
    *,
    baseline: float | None = None,
    sd: float | None = None,
    level: float = 0.95,
    power: float = 0.8,
    treated_share: float = 0.5,
) -> dict[str, Any]:
    """The customers a test needs to find a lift of ``effect``, checked before running
    it: :func:`segvalue.measurement.lift.sample_size` of a rate from its ``baseline``
    (the control group's expected rate) or of a mean with standard deviation ``sd``,
    with what was asked beside it (what ``segvalue sample-size --json`` prints).

    Returns
    -------
    dict
        ``{"effect", "baseline", "sd", "level", "power", "treated_share", "n_total",
        "n_treated", "n_control"}``; of ``baseline`` and ``sd``, the one not given is None.

    Raises
    ------
    DataValidationError
        An input out of range, naming it (``parameter`` and in backticks).

    Examples
    --------
    >>> sample_size_check(0.02, baseline=0.10)["n_treated"]
    3839
    >>> sample_size_check(0.5, sd=2.0)["n_total"]
    504
    """
    from segvalue.measurement.lift import sample_size

    sizes = sample_size(
        effect, baseline=baseline, sd=sd, level=level, power=power, treated_share=treated_share
    )
    asked = {"effect": effect, "baseline": baseline, "sd": sd, "level": level, "power": power}
    return {**asked, "treated_share": treated_share, **sizes}


def evaluate_uplift_file(
    file: Path,
    *,
    treatment_col: str,
    outcome_col: str,
    score_col: str,
    delimiter: str = ",",
    **options: Any,
) -> dict[str, Any]:
    """:func:`segvalue.measurement.uplift.evaluate_uplift` of a scored test file: a row
    per subject with its treatment (1 / 0 or true / false), outcome (likewise) and score.

    Examples
    --------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "scored.csv"
    >>> _ = f.write_text("t,y,s\\n1,1,0.9\\n1,0,0.5\\n0,1,0.4\\n0,0,0.1\\n")
    >>> out = evaluate_uplift_file(f, treatment_col="t", outcome_col="y", score_col="s",
    ...                            resamples=20)
    >>> round(out["qini_auc"], 4)
    0.3333
    """
    from segvalue.measurement.uplift import evaluate_uplift

    columns = [treatment_col, outcome_col, score_col]
    fix = "name the columns with `treatment_col`, `outcome_col` and `score_col`"
    rows, places = read_rows(file, columns, delimiter=delimiter, fix=fix)
    values: dict[str, list[float]] = {name: [] for name in columns}
    for row, where in zip(rows, places, strict=True):
        for name in columns:
            values[name].append(_outcome(row[name], where, name))
    return evaluate_uplift(values[outcome_col], values[score_col], values[treatment_col], **options)


def fit_uplift_file(
    file: Path,
    *,
    treatment_col: str,
    outcome_col: str,
    features: list[str],
    method: str = "x-learner",
    holdout: float = 0.3,
    seed: int = 0,
    id_col: str | None = None,
    out: Path | None = None,
    delimiter: str = ",",
    resamples: int = 500,
    value: float | None = None,
    margin: float = 1.0,
    contact_cost: float = 0.0,
) -> dict[str, Any]:
    """Fit an uplift model on a test file's rows outside a seeded holdout (``holdout`` of
    each group), evaluate it on the holdout, and (``out``) write every row's score. With
    ``value`` (a response's value), also the profit of targeting by the model on the
    holdout (:func:`segvalue.measurement.uplift.targeting_policy`) as ``"policy"``.

    Features are numbers, or text taken as categories. The scores file holds the row's
    ``id_col`` value (else its line or row number), ``uplift_score`` and ``holdout``: no
    other column of the input, so nothing else of it (contact details) is copied.

    Returns ``{"method", "features", "n_train", "n_holdout", "holdout": {...as
    evaluate_uplift...}, "out"}``.
    """
    import pyarrow as pa

    from segvalue.data.writers import write_table
    from segvalue.measurement.uplift import evaluate_uplift, fit_uplift, targeting_policy

    if not features:
        raise DataValidationError(
            "no feature column given", fix="name one or more with `feature`", parameter="feature"
        )
    if not 0 < holdout < 1:
        raise DataValidationError(
            f"holdout {holdout!r} is not in (0, 1)", fix="e.g. 0.3", parameter="holdout"
        )
    required = [treatment_col, outcome_col, *features] + ([id_col] if id_col else [])
    fix = "name the columns with `treatment_col`, `outcome_col`, `feature` (and `id_col`)"
    rows, places = read_rows(file, required, delimiter=delimiter, fix=fix)
    y = np.array(
        [_outcome(r[outcome_col], w, outcome_col) for r, w in zip(rows, places, strict=True)]
    )
    t = np.array(
        [_outcome(r[treatment_col], w, treatment_col) for r, w in zip(rows, places, strict=True)]
    )
    columns, categorical = [], []
    for name in features:
        raw = [r[name] for r in rows]
        numbers = [_maybe_number(v) for v in raw]
        if all(v is not None for v in numbers):
            columns.append(np.array(numbers, dtype=np.float64))
            categorical.append(False)
        else:
            codes: dict[str, int] = {}
            columns.append(np.array([codes.setdefault(str(v), len(codes)) for v in raw], float))
            categorical.append(True)
    x = np.column_stack(columns)
    rng = np.random.default_rng(seed)
    held = np.zeros(len(rows), dtype=bool)
    for group in (0.0, 1.0):
        members = np.flatnonzero(t == group)
        held[rng.choice(members, round(members.size * holdout), replace=False)] = True
    model = fit_uplift(
        x[~held], y[~held], t[~held], method=method, seed=seed, categorical=categorical
    )
    scores = model.predict(x)
    result: dict[str, Any] = {
        "method": method,
        "features": list(features),
        "n_train": int((~held).sum()),
        "n_holdout": int(held.sum()),
        "holdout": evaluate_uplift(y[held], scores[held], t[held], resamples=resamples, seed=seed),
        "out": None,
    }
    if value is not None:
        result["policy"] = targeting_policy(
            y[held], scores[held], t[held], value=value, margin=margin, contact_cost=contact_cost
        )
    if out is not None:
        ids = [str(r[id_col]) for r in rows] if id_col else [p.rsplit(" ", 1)[-1] for p in places]
        table = pa.table(
            {
                id_col or "row": pa.array(ids, pa.string()),
                "uplift_score": pa.array(scores, pa.float64()),
                "holdout": pa.array(held, pa.bool_()),
            }
        )
        result["out"] = str(write_table(table, out, protected={Path(file): "the input file"}))
    return result


def _maybe_number(raw: Any) -> float | None:
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _outcome(raw: Any, where: str, column: str) -> float:
    if isinstance(raw, bool):
        return float(raw)
    text = "" if raw is None else str(raw).strip().lower()
    if text in ("true", "false"):
        return float(text == "true")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataValidationError(
            f"{where}: column {column!r} holds {str(raw)[:40]!r}, not a number or true/false",
            fix="give each outcome as a number (spend) or true / false (converted); "
            "drop rows without one",
            parameter=column,
        )
    return value


@dataclass(frozen=True)
class TouchColumns:
    """The columns of a touchpoints file (the data contract's names by default): a row
    whose ``event`` is ``conversion_event`` is a conversion, worth ``value`` (optional)."""

    customer: str = "customer_id"
    ts: str = "ts"
    channel: str = "channel"
    event: str = "event"
    conversion_event: str = "conversion"
    value: str = "value"


def read_journeys(
    file: Path,
    *,
    columns: TouchColumns = TouchColumns(),
    by: str | None = None,
    lookback_days: float = 30.0,
    session_gap_minutes: float = 30.0,
    delimiter: str = ",",
) -> dict[str | None, Journeys]:
    """The journeys of a touchpoints file (:func:`journeys_from_touches`): all under
    ``None``, or per value of the column ``by``.

    Examples
    --------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "touches.csv"
    >>> _ = f.write_text("customer_id,ts,channel,event\\n"
    ...     "a,2025-01-01 10:00:00,email,click\\na,2025-01-02 09:00:00,search,click\\n"
    ...     "a,2025-01-02 10:00:00,onsite,conversion\\n")
    >>> j = read_journeys(f)[None]
    >>> [[j.channels[c] for c in t] for t in j.touches], j.converted.tolist()
    ([['email', 'search']], [1.0])
    """
    import datetime as dt

    required = [columns.customer, columns.ts, columns.channel, columns.event]
    fix = (
        "name the touchpoints' columns with `customer_col`, `ts_col`, `channel_col`, "
        "`event_col` (or `by`)"
    )
    rows, places = read_rows(file, required + ([by] if by else []), delimiter=delimiter, fix=fix)
    groups: dict[str | None, list[tuple[Any, ...]]] = {}
    for row, where in zip(rows, places, strict=True):
        moment = row[columns.ts]
        if isinstance(moment, str):
            try:
                moment = dt.datetime.fromisoformat(moment.strip())
            except ValueError:
                moment = None
        if not isinstance(moment, dt.datetime):
            raise DataValidationError(
                f"{where}: column {columns.ts!r} holds {str(row[columns.ts])[:40]!r}, "
                "not a date and time",
                fix="give times as YYYY-MM-DD HH:MM:SS",
                parameter=columns.ts,
            )
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        customer, channel = row[columns.customer], row[columns.channel]
        if customer is None or channel is None or not str(channel).strip():
            raise DataValidationError(
                f"{where}: the customer or the channel is empty",
                fix="give every touchpoint its customer and channel",
                parameter=columns.channel,
            )
        converted = str(row[columns.event]).strip() == columns.conversion_event
        value = _number(row.get(columns.value), where, columns.value, absent=True)
        key = None if by is None else ("" if row[by] is None else str(row[by]))
        groups.setdefault(key, []).append((str(customer), moment, str(channel), converted, value))
    if not groups:
        raise DataValidationError(f"{file} holds no touchpoint", fix="give at least one row")
    return {
        key: journeys_from_touches(
            [m[0] for m in members],
            [m[1] for m in members],
            [m[2] for m in members],
            [m[3] for m in members],
            [m[4] for m in members],
            lookback_days=lookback_days,
            session_gap_minutes=session_gap_minutes,
        )
        for key, members in groups.items()
    }


def _number(raw: Any, where: str, column: str, *, absent: bool) -> float:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if absent:
            return 0.0
        raise DataValidationError(
            f"{where}: column {column!r} is empty", fix="give a count >= 0", parameter=column
        )
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise DataValidationError(
            f"{where}: column {column!r} holds {str(raw)[:40]!r}, not a number >= 0",
            fix="give counts and values as plain numbers >= 0 (a '.' decimal mark)",
            parameter=column,
        )
    return value
