"""The dashboard's charts: Plotly figures built on the server, sent to the page as JSON.

Every function returns a :class:`Chart` (an id, a title, a text alternative and the
figure's JSON); the page's script draws it with the ``plotly.min.js`` the dashboard serves
itself. Nothing here reads the store: the pages pass in plain rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FUNNEL_COLOURS",
    "ROLE_COLOURS",
    "STATUS_COLOURS",
    "Chart",
    "activation_funnel_chart",
    "allocation_chart",
    "attribution_chart",
    "channel_chart",
    "channel_interval_chart",
    "clv_histogram",
    "frequency_histogram",
    "holdout_tracking",
    "kpi_chart",
    "lift_forest_chart",
    "migration_chart",
    "migration_sankey",
    "profile_index_chart",
    "qini_chart",
    "response_curves_chart",
    "rfm_heatmap",
]

#: The colour of each KPI status (the cards use the same, from the stylesheet).
STATUS_COLOURS = {"on_track": "#1a7f37", "at_risk": "#b35900", "off_track": "#c0262d"}
_BASE = "#1f5fa8"
_MODEL = "#b35900"
_LAYOUT: dict[str, Any] = {
    "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
    "font": {"family": "system-ui, sans-serif", "size": 13},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
    "legend": {"orientation": "h", "y": -0.2},
    "autosize": True,
}


@dataclass(frozen=True)
class Chart:
    """One server-built figure.

    Attributes
    ----------
    chart_id
        The HTML id of the chart's element (unique on its page).
    title
        What the chart shows, as the heading above it.
    description
        A text alternative for screen readers (the chart's element's label).
    figure_json
        The Plotly figure as JSON, safe to embed in a ``<script type="application/json">``.
    """

    chart_id: str
    title: str
    description: str
    figure_json: str


def _chart(chart_id: str, title: str, description: str, figure: Any) -> Chart:
    text = figure.to_json()
    # Inside a <script> element "</" would end it early; JSON allows these escapes.
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    return Chart(chart_id, title, description, text)


def _layout(**extra: Any) -> dict[str, Any]:
    layout = dict(_LAYOUT)
    layout.update(extra)
    return layout


def kpi_chart(kpi: str, rows: Sequence[Mapping[str, Any]]) -> Chart:
    """One KPI per segment: the estimate with its interval, coloured by status, and the target.

    Parameters
    ----------
    kpi
        The KPI's name.
    rows
        ``kpi_status`` rows of that KPI: ``segment, estimate, lower, upper, target, status``.

    Examples
    --------
    >>> rows = [{"segment": "a", "estimate": 0.5, "lower": 0.4, "upper": 0.6,
    ...          "target": 0.45, "status": "on_track"}]
    >>> kpi_chart("repeat_rate", rows).chart_id
    'kpi-repeat_rate'
    """
    import plotly.graph_objects as go

    segments = [str(r["segment"]) for r in rows]
    estimates = [r["estimate"] for r in rows]
    above = [None if r["upper"] is None else r["upper"] - r["estimate"] for r in rows]
    below = [None if r["lower"] is None else r["estimate"] - r["lower"] for r in rows]
    colours = [STATUS_COLOURS.get(str(r["status"]), _BASE) for r in rows]
    figure = go.Figure(
        go.Bar(
            x=segments,
            y=estimates,
            marker_color=colours,
            error_y={"type": "data", "array": above, "arrayminus": below, "color": "#333"},
            name=kpi,
            hovertemplate="%{x}: %{y:.3g}<extra></extra>",
        )
    )
    targets = {r["target"] for r in rows if r.get("target") is not None}
    if len(targets) == 1:
        figure.add_hline(
            y=targets.pop(), line_dash="dash", line_color="#333", annotation_text="target"
        )
    figure.update_layout(_layout(yaxis_title=kpi, showlegend=False, height=320))
    return _chart(
        f"kpi-{kpi}",
        f"{kpi} by segment",
        f"Bar chart of {kpi} per segment with 95% intervals against its target.",
        figure,
    )


def profile_index_chart(rows: Sequence[Mapping[str, Any]]) -> Chart:
    """A segment's numeric profile: each feature's mean as an index of the base (100).

    Parameters
    ----------
    rows
        ``segment_profiles_numeric`` rows of one segment: ``feature, index``.

    Examples
    --------
    >>> profile_index_chart([{"feature": "orders", "index": 150.0}]).title
    'Profile against the base (index, base = 100)'
    """
    import plotly.graph_objects as go

    usable = sorted((r for r in rows if r.get("index") is not None), key=lambda r: r["index"])
    figure = go.Figure(
        go.Bar(
            x=[r["index"] - 100 for r in usable],
            y=[str(r["feature"]) for r in usable],
            base=100,
            orientation="h",
            marker_color=[_BASE if r["index"] >= 100 else _MODEL for r in usable],
            customdata=[r["index"] for r in usable],
            hovertemplate="%{y}: index %{customdata:.0f}<extra></extra>",
        )
    )
    figure.add_vline(x=100, line_color="#333")
    figure.update_layout(
        _layout(
            xaxis_title="index (base = 100)",
            height=max(300, 22 * len(usable) + 80),
            showlegend=False,
            margin={"l": 10, "r": 20, "t": 20, "b": 50},
            yaxis_automargin=True,
        )
    )
    return _chart(
        "profile-index",
        "Profile against the base (index, base = 100)",
        "Horizontal bar chart: each feature's segment mean as an index of all customers' mean.",
        figure,
    )


def clv_histogram(values: Sequence[float], *, bins: int = 30) -> Chart:
    """The distribution of CLV among a segment's members (binned on the server).

    Examples
    --------
    >>> clv_histogram([1.0, 2.0, 2.5, 10.0], bins=3).chart_id
    'clv-histogram'
    """
    import numpy as np
    import plotly.graph_objects as go

    data = np.asarray([v for v in values if v is not None], dtype=float)
    data = data[np.isfinite(data)]
    counts, edges = np.histogram(data, bins=bins) if data.size else (np.zeros(0), np.zeros(1))
    figure = go.Figure(
        go.Bar(
            x=((edges[:-1] + edges[1:]) / 2).tolist(),
            y=counts.tolist(),
            width=np.diff(edges).tolist(),
            marker_color=_BASE,
            customdata=np.column_stack([edges[:-1], edges[1:]]).tolist(),
            hovertemplate="CLV %{customdata[0]:.1f} to %{customdata[1]:.1f}: "
            "%{y} customers<extra></extra>",
        )
    )
    figure.update_layout(
        _layout(xaxis_title="CLV", yaxis_title="customers", showlegend=False, height=320)
    )
    return _chart(
        "clv-histogram",
        "CLV of the segment's members",
        f"Histogram of the CLV of {data.size} customers.",
        figure,
    )


def channel_chart(rows: Sequence[Mapping[str, Any]]) -> Chart:
    """Channel use: the share of a segment's members engaged on each channel, and the base's.

    Parameters
    ----------
    rows
        ``channel, segment, base``: shares (0 to 1) of the segment and of all customers.

    Examples
    --------
    >>> channel_chart([{"channel": "email", "segment": 0.5, "base": 0.4}]).chart_id
    'channel-use'
    """
    import plotly.graph_objects as go

    channels = [str(r["channel"]) for r in rows]
    figure = go.Figure(
        [
            go.Bar(
                x=channels,
                y=[r["segment"] for r in rows],
                name="segment",
                marker_color=_BASE,
                hovertemplate="%{x}: %{y:.1%}<extra>segment</extra>",
            ),
            go.Bar(
                x=channels,
                y=[r["base"] for r in rows],
                name="all customers",
                marker_color="#8c959f",
                hovertemplate="%{x}: %{y:.1%}<extra>all customers</extra>",
            ),
        ]
    )
    figure.update_layout(
        _layout(
            barmode="group",
            yaxis_title="customers engaged",
            yaxis_tickformat=".0%",
            height=320,
        )
    )
    return _chart(
        "channel-use",
        "Channel use: customers engaged on each channel",
        "Grouped bar chart of the share of the segment's members and of all customers who "
        "engaged with each channel.",
        figure,
    )


def migration_chart(
    came_from: Sequence[Mapping[str, Any]], went_to: Sequence[Mapping[str, Any]]
) -> Chart:
    """Where a segment's new members came from and where its former members went.

    Parameters
    ----------
    came_from
        ``segment, customers`` pairs: customers now in the segment, by earlier segment.
    went_to
        ``segment, customers`` pairs: customers who left the segment, by later segment.

    Examples
    --------
    >>> migration_chart([{"segment": "a", "customers": 3}], []).chart_id
    'migration'
    """
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_trace(
        go.Bar(
            y=[str(r["segment"]) for r in came_from],
            x=[r["customers"] for r in came_from],
            orientation="h",
            name="moved in from",
            marker_color=_BASE,
        )
    )
    figure.add_trace(
        go.Bar(
            y=[str(r["segment"]) for r in went_to],
            x=[-r["customers"] for r in went_to],
            customdata=[r["customers"] for r in went_to],
            orientation="h",
            name="moved out to",
            marker_color=_MODEL,
            hovertemplate="%{y}: %{customdata} customers<extra>moved out to</extra>",
        )
    )
    rows = len({str(r["segment"]) for r in [*came_from, *went_to]})
    figure.update_layout(
        _layout(
            barmode="relative",
            xaxis_title="customers (out to the left, in to the right)",
            height=max(260, 28 * rows + 120),
            margin={"l": 10, "r": 20, "t": 20, "b": 50},
            yaxis_automargin=True,
        )
    )
    return _chart(
        "migration",
        "Migration in and out since the previous run",
        "Bar chart of customers who moved into the segment, by the segment they came from, "
        "and out of it, by the segment they went to.",
        figure,
    )


def migration_sankey(transitions: Sequence[Mapping[str, Any]], *, before: str, after: str) -> Chart:
    """How customers moved between one scheme's segments from one run to another.

    Parameters
    ----------
    transitions
        ``from_segment, to_segment, customers`` (``RunDiff`` of an exclusive scheme); a
        None segment: the customer was not in the scheme in that run.
    before, after
        Labels of the two runs (their as-of dates).

    Examples
    --------
    >>> rows = [{"from_segment": "a", "to_segment": "b", "customers": 3}]
    >>> migration_sankey(rows, before="2025-01-31", after="2025-02-28").chart_id
    'migration-sankey'
    """
    import plotly.graph_objects as go

    outside = "(not in the scheme)"
    sources = sorted({str(r["from_segment"] or outside) for r in transitions})
    targets = sorted({str(r["to_segment"] or outside) for r in transitions})
    labels = [f"{name} ({before})" for name in sources] + [f"{name} ({after})" for name in targets]
    figure = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={"label": labels, "pad": 12, "thickness": 14, "color": _BASE},
            link={
                "source": [sources.index(str(r["from_segment"] or outside)) for r in transitions],
                "target": [
                    len(sources) + targets.index(str(r["to_segment"] or outside))
                    for r in transitions
                ],
                "value": [r["customers"] for r in transitions],
                "color": "rgba(31, 95, 168, 0.25)",
            },
        )
    )
    figure.update_layout(_layout(height=max(360, 34 * max(len(sources), len(targets)) + 80)))
    return _chart(
        "migration-sankey",
        f"Customers between segments, {before} to {after}",
        "Sankey diagram: each band is the customers who were in one segment in the earlier "
        "run and are in another (or the same) in the later run.",
        figure,
    )


def frequency_histogram(rows: Sequence[Mapping[str, Any]]) -> Chart:
    """Customers per number of repeat purchases: actual against the model's expectation.

    Parameters
    ----------
    rows
        The run report's ``clv.holdout.frequency_histogram``: ``frequency, actual, expected``.

    Examples
    --------
    >>> frequency_histogram([{"frequency": "0", "actual": 5, "expected": 4.2}]).chart_id
    'frequency-histogram'
    """
    import plotly.graph_objects as go

    labels = [str(r["frequency"]) for r in rows]
    figure = go.Figure(
        [
            go.Bar(x=labels, y=[r["actual"] for r in rows], name="actual", marker_color=_BASE),
            go.Bar(x=labels, y=[r["expected"] for r in rows], name="model", marker_color=_MODEL),
        ]
    )
    figure.update_layout(
        _layout(
            barmode="group",
            xaxis_title="repeat purchases in the calibration period",
            xaxis_type="category",
            yaxis_title="customers",
            height=340,
        )
    )
    return _chart(
        "frequency-histogram",
        "Frequency histogram: actual against the model",
        "Grouped bar chart of customers per number of repeat purchases, actual and expected.",
        figure,
    )


def holdout_tracking(rows: Sequence[Mapping[str, Any]], *, time_unit: str | None) -> Chart:
    """Cumulative repeat purchases of the cohort since the calibration start: actual
    against the model (the tracking curve; the holdout period is its last stretch).

    Parameters
    ----------
    rows
        The run report's ``clv.holdout.cumulative``: ``period, actual, expected``.
    time_unit
        The unit of a period (``week``), for the axis title.

    Examples
    --------
    >>> holdout_tracking([{"period": 1.0, "actual": 2.0, "expected": 1.5}],
    ...                  time_unit="week").chart_id
    'holdout-tracking'
    """
    import plotly.graph_objects as go

    periods = [r["period"] for r in rows]
    figure = go.Figure(
        [
            go.Scatter(
                x=periods,
                y=[r["actual"] for r in rows],
                name="actual",
                mode="lines",
                line_color=_BASE,
            ),
            go.Scatter(
                x=periods,
                y=[r["expected"] for r in rows],
                name="model",
                mode="lines",
                line={"color": _MODEL, "dash": "dash"},
            ),
        ]
    )
    figure.update_layout(
        _layout(
            xaxis_title=f"{time_unit or 'period'}s since the calibration start",
            yaxis_title="cumulative repeat purchases",
            height=340,
        )
    )
    return _chart(
        "holdout-tracking",
        "Tracking: cumulative repeat purchases, actual against the model",
        "Line chart of the cohort's cumulative repeat purchases since the calibration start, "
        "actual and expected.",
        figure,
    )


def allocation_chart(current: Mapping[str, float], planned: Mapping[str, float]) -> Chart:
    """Spend per budget item: the current allocation beside the optimised plan.

    Parameters
    ----------
    current, planned
        Spend per item (``Allocation.current`` and ``Allocation.allocation``).

    Examples
    --------
    >>> allocation_chart({"email": 20.0}, {"email": 50.0}).chart_id
    'budget-allocation'
    """
    import plotly.graph_objects as go

    items = list(planned)
    figure = go.Figure(
        [
            go.Bar(
                x=items,
                y=[current.get(item, 0.0) for item in items],
                name="current",
                marker_color="#8c959f",
                hovertemplate="%{x}: %{y:,.2f}<extra>current</extra>",
            ),
            go.Bar(
                x=items,
                y=[planned[item] for item in items],
                name="planned",
                marker_color=_BASE,
                hovertemplate="%{x}: %{y:,.2f}<extra>planned</extra>",
            ),
        ]
    )
    figure.update_layout(_layout(barmode="group", yaxis_title="spend per period", height=340))
    return _chart(
        "budget-allocation",
        "Spend per item: current and planned",
        "Grouped bar chart of each budget item's current spend and its spend in the plan.",
        figure,
    )


def response_curves_chart(curves: Sequence[Mapping[str, Any]]) -> Chart:
    """Each budget item's response curve, with its current and planned spend marked.

    Parameters
    ----------
    curves
        Per item: ``name``, ``spend`` and ``response`` (the curve's points, response in
        money: ``value * response``), ``current`` and ``planned`` (spend) with
        ``current_response`` and ``planned_response``.

    Examples
    --------
    >>> curve = {"name": "a", "spend": [0.0, 100.0], "response": [0.0, 50.0],
    ...          "current": 40.0, "current_response": 20.0,
    ...          "planned": 60.0, "planned_response": 30.0}
    >>> response_curves_chart([curve]).chart_id
    'budget-curves'
    """
    import plotly.graph_objects as go

    palette = ["#1f5fa8", "#b35900", "#1a7f37", "#8250df", "#c0262d", "#0a7e8c", "#6e7781"]
    figure = go.Figure()
    for index, curve in enumerate(curves):
        colour = palette[index % len(palette)]
        name = str(curve["name"])
        figure.add_trace(
            go.Scatter(
                x=list(curve["spend"]),
                y=list(curve["response"]),
                mode="lines",
                name=name,
                legendgroup=name,
                line_color=colour,
                hovertemplate=f"{name}: spend %{{x:,.1f}}, return %{{y:,.1f}}<extra></extra>",
            )
        )
        figure.add_trace(
            go.Scatter(
                x=[curve["current"], curve["planned"]],
                y=[curve["current_response"], curve["planned_response"]],
                mode="markers",
                name=f"{name}: current and planned",
                legendgroup=name,
                showlegend=False,
                marker={"color": colour, "size": 10, "symbol": ["circle-open", "circle"]},
                customdata=["current", "planned"],
                hovertemplate=f"{name} %{{customdata}}: spend %{{x:,.1f}}, "
                "return %{y:,.1f}<extra></extra>",
            )
        )
    figure.update_layout(
        _layout(xaxis_title="spend per period", yaxis_title="return (value x response)", height=380)
    )
    return _chart(
        "budget-curves",
        "Response curves (open circle: current spend, filled: planned)",
        "Line chart of each budget item's return against its spend, with its current and "
        "planned spend marked.",
        figure,
    )


def rfm_heatmap(cells: Sequence[Mapping[str, Any]], *, bins: int) -> Chart:
    """Customers per recency score x frequency score, with their mean CLV in the hover.

    Parameters
    ----------
    cells
        ``recency``, ``frequency`` (scores 1 to ``bins``), ``customers`` and
        ``clv_mean`` (None without a CLV model).
    bins
        The scheme's number of score bins.

    Examples
    --------
    >>> rfm_heatmap([{"recency": 5, "frequency": 1, "customers": 3, "clv_mean": 12.5}],
    ...             bins=5).chart_id
    'rfm-heatmap'
    """
    import plotly.graph_objects as go

    scores = list(range(1, bins + 1))
    counts = [[0 for _ in scores] for _ in scores]
    clv: list[list[float | None]] = [[None for _ in scores] for _ in scores]
    for cell in cells:
        row, column = int(cell["frequency"]) - 1, int(cell["recency"]) - 1
        counts[row][column] = int(cell["customers"])
        clv[row][column] = cell.get("clv_mean")
    hover = [
        [
            f"R {r}, F {f}: {counts[f - 1][r - 1]:,} customers"
            + (f", mean CLV {clv[f - 1][r - 1]:,.2f}" if clv[f - 1][r - 1] is not None else "")
            for r in scores
        ]
        for f in scores
    ]
    figure = go.Figure(
        go.Heatmap(
            x=scores,
            y=scores,
            z=counts,
            text=counts,
            texttemplate="%{text}",
            hovertext=hover,
            hoverinfo="text",
            colorscale="Blues",
            colorbar={"title": {"text": "customers"}},
        )
    )
    figure.update_layout(
        _layout(
            xaxis={"title": {"text": f"recency score ({bins}: bought most recently)"}, "dtick": 1},
            yaxis={"title": {"text": "frequency score"}, "dtick": 1},
            height=380,
        )
    )
    total = sum(int(c["customers"]) for c in cells)
    return _chart(
        "rfm-heatmap",
        "RFM: customers by recency and frequency score",
        f"Heat map of {total} customers by recency score (across) and frequency score "
        "(up), with their mean CLV in each cell's hover text.",
        figure,
    )


#: The colour of each recommended channel role (the role matrix uses the same).
ROLE_COLOURS = {
    "primary": "#1a7f37",
    "secondary": "#1f5fa8",
    "support": "#6e7781",
    "test": "#8250df",
    "reduce": "#c0262d",
}
_PALETTE = ["#1f5fa8", "#b35900", "#1a7f37", "#8250df", "#c0262d", "#0a7e8c", "#6e7781"]


def _error_bars(
    rows: Sequence[Mapping[str, Any]], value: str, lower: str, upper: str
) -> tuple[list[Any], list[Any], list[Any]]:
    """Each row's ``value`` and its error bars up to ``upper`` and down to ``lower`` (as
    Plotly's ``error_y.array`` and ``arrayminus``); None where a bound is undefined."""
    values = [r.get(value) for r in rows]
    above = [
        None if v is None or r.get(upper) is None else r[upper] - v
        for r, v in zip(rows, values, strict=True)
    ]
    below = [
        None if v is None or r.get(lower) is None else v - r[lower]
        for r, v in zip(rows, values, strict=True)
    ]
    return values, above, below


def attribution_chart(
    rows: Sequence[Mapping[str, Any]], *, models: Sequence[str], channels: Sequence[str]
) -> Chart:
    """Each channel's share of the conversions under each attribution model, side by side.

    Parameters
    ----------
    rows
        ``attribution`` rows of one segment: ``model, channel, share``.
    models, channels
        The models (one bar colour each) and channels (along the axis), in order.

    Examples
    --------
    >>> rows = [{"model": "last", "channel": "email", "share": 0.6},
    ...         {"model": "markov", "channel": "email", "share": 0.5}]
    >>> attribution_chart(rows, models=["last", "markov"], channels=["email"]).chart_id
    'attribution-shares'
    """
    import plotly.graph_objects as go

    share = {(str(r["model"]), str(r["channel"])): r.get("share") for r in rows}
    figure = go.Figure(
        [
            go.Bar(
                x=list(channels),
                y=[share.get((model, channel)) for channel in channels],
                name=model,
                marker_color=_PALETTE[index % len(_PALETTE)],
                hovertemplate=f"%{{x}}: %{{y:.1%}}<extra>{model}</extra>",
            )
            for index, model in enumerate(models)
        ]
    )
    figure.update_layout(
        _layout(
            barmode="group",
            yaxis_title="share of the conversions",
            yaxis_tickformat=".0%",
            height=360,
        )
    )
    return _chart(
        "attribution-shares",
        "Share of the conversions per channel, by attribution model",
        "Grouped bar chart: for each channel, the share of the conversions each "
        "attribution model credits to it.",
        figure,
    )


def channel_interval_chart(
    rows: Sequence[Mapping[str, Any]],
    *,
    measure: str,
    label: str,
    level: float = 0.95,
    percent: bool = False,
    break_even: float | None = None,
    log: bool = False,
) -> Chart:
    """One measure of each channel with its interval, coloured by the channel's role.

    Parameters
    ----------
    rows
        ``channel_effectiveness`` rows of one segment: ``channel, role``, the measure and
        its ``<measure>_lower`` and ``<measure>_upper``.
    measure
        The column: ``conversion_rate``, ``roas``, ...
    label
        The measure in words, for the axis and the title.
    level
        The intervals' confidence level.
    percent
        Whether the measure is a share (the axis in percent).
    break_even
        A value to draw as a dashed line (ROAS: 1, the value returns its cost).
    log
        A log axis (for a ratio whose channels differ by orders of magnitude).

    Examples
    --------
    >>> rows = [{"channel": "email", "role": "primary", "roas": 3.0, "roas_lower": 2.0,
    ...          "roas_upper": 4.0}]
    >>> channel_interval_chart(rows, measure="roas", label="ROAS", break_even=1).chart_id
    'channel-roas'
    """
    import plotly.graph_objects as go

    channels = [str(r["channel"]) for r in rows]
    estimates, above, below = _error_bars(rows, measure, f"{measure}_lower", f"{measure}_upper")
    value_format = ".1%" if percent else ",.3g"
    figure = go.Figure(
        go.Bar(
            x=channels,
            y=estimates,
            marker_color=[ROLE_COLOURS.get(str(r.get("role")), _BASE) for r in rows],
            error_y={"type": "data", "array": above, "arrayminus": below, "color": "#333"},
            customdata=[str(r.get("role") or "–") for r in rows],
            hovertemplate=f"%{{x}}: %{{y:{value_format}}} (role %{{customdata}})<extra></extra>",
        )
    )
    if break_even is not None:
        figure.add_hline(
            y=break_even,
            line_dash="dash",
            line_color="#333",
            annotation_text="break-even",
            annotation_position="bottom right",
        )
    figure.update_layout(
        _layout(
            yaxis_title=f"{label} (log scale)" if log else label,
            yaxis_tickformat=".0%" if percent else None,
            yaxis_type="log" if log else None,
            showlegend=False,
            height=340,
        )
    )
    return _chart(
        f"channel-{measure.replace('_', '-')}",
        f"{label[:1].upper()}{label[1:]} per channel, with {level:.0%} intervals",
        f"Bar chart of each channel's {label} with its {level:.0%} interval, coloured by "
        "the channel's recommended role.",
        figure,
    )


def lift_forest_chart(
    rows: Sequence[Mapping[str, Any]],
    *,
    chart_id: str,
    title: str,
    level: float = 0.95,
    binary: bool = False,
) -> Chart:
    """A forest plot: each segment's lift (treated minus control) with its interval.

    Parameters
    ----------
    rows
        ``experiment_lift`` rows of one experiment, arm and outcome: ``segment, lift,
        ci_low, ci_high, under_powered``.
    chart_id, title
        The chart's HTML id (unique on its page) and heading.
    level
        The intervals' confidence level.
    binary
        Whether the outcome is 0 / 1 (the lift in percentage points).

    Examples
    --------
    >>> rows = [{"segment": "all customers", "lift": 0.02, "ci_low": -0.01,
    ...          "ci_high": 0.05, "under_powered": True}]
    >>> lift_forest_chart(rows, chart_id="lift-0", title="Lift", binary=True).chart_id
    'lift-0'
    """
    import plotly.graph_objects as go

    segments = [str(r["segment"]) for r in rows]
    lifts, above, below = _error_bars(rows, "lift", "ci_low", "ci_high")
    weak = [bool(r.get("under_powered")) for r in rows]
    value_format = ".1%" if binary else ",.3g"
    figure = go.Figure(
        go.Scatter(
            x=lifts,
            y=segments,
            mode="markers",
            marker={
                "size": 11,
                "color": ["#6e7781" if w else _BASE for w in weak],
                "symbol": ["circle-open" if w else "circle" for w in weak],
                "line": {"width": 2},
            },
            error_x={"type": "data", "array": above, "arrayminus": below, "color": "#333"},
            customdata=["under-powered" if w else "" for w in weak],
            hovertemplate=f"%{{y}}: lift %{{x:{value_format}}} %{{customdata}}<extra></extra>",
        )
    )
    figure.add_vline(x=0, line_color="#333")
    figure.update_layout(
        _layout(
            xaxis_title="lift, treated minus control" + (" (points)" if binary else ""),
            xaxis_tickformat=".1%" if binary else None,
            yaxis={"autorange": "reversed", "automargin": True},
            showlegend=False,
            height=max(260, 30 * len(rows) + 110),
            margin={"l": 10, "r": 20, "t": 20, "b": 50},
        )
    )
    return _chart(
        chart_id,
        title,
        f"Forest plot: each segment's lift with its {level:.0%} interval against a zero "
        "line; an open grey point is an under-powered result.",
        figure,
    )


def qini_chart(curves: Mapping[str, Mapping[str, Sequence[float]]]) -> Chart:
    """An uplift model's Qini curve against the perfect and the random ones.

    Parameters
    ----------
    curves
        By curve (``model``, ``perfect``, ``random``): ``share`` (of the customers,
        highest score first, 0 to 1) and ``qini`` (incremental responders so far).

    Examples
    --------
    >>> line = {"share": [0.0, 1.0], "qini": [0.0, 4.0]}
    >>> qini_chart({"model": line, "random": line}).chart_id
    'qini'
    """
    import plotly.graph_objects as go

    styles = {
        "model": {"color": _BASE, "width": 3},
        "perfect": {"color": "#1a7f37", "dash": "dot"},
        "random": {"color": "#6e7781", "dash": "dash"},
    }
    order = [name for name in styles if name in curves] + sorted(set(curves) - set(styles))
    figure = go.Figure(
        [
            go.Scatter(
                x=list(curves[name]["share"]),
                y=list(curves[name]["qini"]),
                mode="lines",
                name=name,
                line=styles.get(name, {"color": "#b35900"}),
                hovertemplate=f"top %{{x:.0%}}: %{{y:,.1f}}<extra>{name}</extra>",
            )
            for name in order
        ]
    )
    figure.update_layout(
        _layout(
            xaxis_title="customers targeted, highest score first",
            xaxis_tickformat=".0%",
            yaxis_title="incremental responders (Qini)",
            height=360,
        )
    )
    return _chart(
        "qini",
        "Qini curves: the uplift model against perfect and random targeting",
        "Line chart of the incremental responders gained when targeting a growing share of "
        "customers by the model's score, by a perfect ranking and at random.",
        figure,
    )


#: The colour of each stage of an audience funnel (totals in the base colour).
FUNNEL_COLOURS = {
    "suppressed": _MODEL,
    "holdout": "#6e7781",
    "capped": "#c0262d",
    "audience": "#1a7f37",
}
_FUNNEL_LABELS = {
    "members": "members",
    "eligible": "eligible",
    "holdout": "held out",
    "audience": "audience (sent)",
}


def activation_funnel_chart(
    stages: Sequence[Mapping[str, Any]], *, chart_id: str, title: str
) -> Chart:
    """One campaign step's audience funnel: from the members to the sends, stage by stage.

    A horizontal bar per stage, in the order of the plan: the totals (members, eligible,
    audience) from 0, and each stage that leaves customers out (suppressed by a reason,
    held out, capped by a cap) as a floating bar over the customers it removes.

    Parameters
    ----------
    stages
        ``stage, reason, customers, remaining`` in order (the API's funnel of one step).
    chart_id, title
        The chart's HTML id (unique on its page) and heading.

    Examples
    --------
    >>> stages = [
    ...     {"stage": "members", "reason": None, "customers": 10, "remaining": 10},
    ...     {"stage": "suppressed", "reason": "no_consent", "customers": 3, "remaining": 7},
    ...     {"stage": "audience", "reason": None, "customers": 7, "remaining": 7}]
    >>> activation_funnel_chart(stages, chart_id="funnel-1", title="Step 1").chart_id
    'funnel-1'
    """
    import plotly.graph_objects as go

    labels = [
        _FUNNEL_LABELS.get(str(s["stage"]), str(s["stage"]))
        + (f": {s['reason']}" if s.get("reason") else "")
        for s in stages
    ]
    removes = [s["stage"] in ("suppressed", "holdout", "capped") for s in stages]
    figure = go.Figure(
        go.Bar(
            x=[s["customers"] for s in stages],
            y=labels,
            base=[s["remaining"] if gone else 0 for s, gone in zip(stages, removes, strict=True)],
            orientation="h",
            marker_color=[FUNNEL_COLOURS.get(str(s["stage"]), _BASE) for s in stages],
            text=[
                f"{'−' if gone else ''}{s['customers']:,}"
                for s, gone in zip(stages, removes, strict=True)
            ],
            textposition="outside",
            cliponaxis=False,
            customdata=[s["customers"] for s in stages],
            hovertemplate="%{y}: %{customdata:,} customers<extra></extra>",
        )
    )
    figure.update_layout(
        _layout(
            xaxis_title="customers",
            yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
            showlegend=False,
            height=max(240, 30 * len(stages) + 100),
            margin={"l": 10, "r": 40, "t": 20, "b": 50},
        )
    )
    return _chart(
        chart_id,
        title,
        "Funnel as a bar chart: the campaign's members, the customers each suppression "
        "reason, the holdout and each frequency cap leave out (floating bars over the "
        "customers they remove), and the audience the step sends to.",
        figure,
    )
