"""Budget planning over fitted or given response curves (``segvalue budget``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, cast

from segvalue.config import Config
from segvalue.errors import ConfigError
from segvalue.pipeline.ingest import read_and_validate
from segvalue.pipeline.stage import Steps

#: What a budget maximises.
Objective = Literal["profit", "revenue", "clv"]


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
    data = read_and_validate(config, Steps(len(config.sources) + 1, None))
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
