"""The ``segvalue`` command line: parse, call the pipeline or library, format.

Library errors become exit codes in one place (:func:`run`): 0 ok, 2 a user error with one
clear message and no traceback, 1 a bug.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape as _escape_markup
from rich.padding import Padding
from rich.table import Table as _RichTable

from segvalue import __version__
from segvalue.errors import ConfigError, SegvalueError, safe_text

if TYPE_CHECKING:
    from segvalue.project import Project, RunDiff, RunInfo, RunView

#: ``-c`` of the commands that read a project; the read commands default to ./segvalue.yaml.
ConfigOption = Annotated[Path, typer.Option("-c", "--config", help="Path to segvalue.yaml.")]
#: ``--run`` of the read commands.
RunOption = Annotated[
    str | None, typer.Option("--run", metavar="ID", help="This run (default: latest complete).")
]
DEFAULT_CONFIG = Path("segvalue.yaml")

#: The library's parameter names and the options that set them: errors name parameters
#: (`horizon`, `force=True`), the command line words them as options (see as_options).
OPTIONS = {
    "amount_col": "--amount-col",
    "as_of": "--as-of",
    "config": "-c",
    "config_path": "-c",
    "curves_path": "--curves",
    "customer_col": "--customer-col",
    "dataset": "--dataset",
    "date_col": "--date-col",
    "date_format": "--date-format",
    "decimal": "--decimal",
    "delimiter": "--delimiter",
    "force": "--force",
    "granularity": "--granularity",
    "horizon": "--horizon",
    "move": "--move",
    "objective": "--objective",
    "out_file": "--out",
    "out_path": "--out",
    "rejects": "--rejects",
    "rejects_path": "--rejects",
    "run_id": "--run",
    "schemes": "--scheme",
    "scope": "--scope",
    "status": "--status",
    "target": "--target",
    "time_unit": "--time-unit",
    "total": "--total",
    "wait": "--wait",
    "n_customers": "--customers",
    "seed": "--seed",
    "spend_model": "--spend-model",
    # measurement: attribute, lift, uplift
    "by": "--by",
    "channel_col": "--channel-col",
    "contact_cost": "--contact-cost",
    "conversions_col": "--conversions-col",
    "event_col": "--event-col",
    "feature": "--feature",
    "format": "--format",
    "group_col": "--group-col",
    "id_col": "--id-col",
    "margin": "--margin",
    "nulls_col": "--nulls-col",
    "outcome": "--outcome",
    "outcome_col": "--outcome-col",
    "path_col": "--path-col",
    "score_col": "--score-col",
    "treatment_col": "--treatment-col",
    "ts_col": "--ts-col",
    "value": "--value",
    "value_col": "--value-col",
    # sample-size
    "baseline": "--baseline",
    "effect": "--effect",
    "level": "--level",
    "power": "--power",
    "sd": "--sd",
    "treated_share": "--treated-share",
    # hash
    "country": "--country",
    "destination": "--destination",
    "email": "--email",
    "phone": "--phone",
}
_PARAMETER = re.compile(r"`(\w+)(?:=([^`]*))?`")


def as_options(text: str, options: dict[str, str] | None = None) -> str:
    """Word the parameters an error names (in backticks) as command-line options.

    `` `horizon` `` becomes ``--horizon``, `` `force=True` `` ``--force``,
    `` `objective='revenue'` `` ``--objective revenue``; names without an option stay.

    Examples
    --------
    >>> as_options("add `objective='revenue'` (or clv); `force=True`; `horizon` 0; `x`")
    'add --objective revenue (or clv); --force; --horizon 0; `x`'
    """
    known = OPTIONS if options is None else options

    def option(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        flag = known.get(name)
        if flag is None:
            return match.group(0)
        if value is None or value == "True":
            return flag
        return f"{flag} {value.strip(chr(39) + chr(34))}"

    return _PARAMETER.sub(option, text)


def _project(config: Path) -> Project:
    from segvalue.project import Project

    return Project.from_yaml(config)


#: ``--wait`` of the commands that write the output folder and the store.
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait",
        metavar="SECONDS",
        help="Wait up to SECONDS for another run using the same output folder (default: "
        "refuse at once).",
    ),
]

# Only what every command needs is imported here: `segvalue --help` must start in well under
# half a second, so the pipeline (Ibis, pyarrow, scipy, ...) is imported inside each command.
app = typer.Typer(
    name="segvalue",
    help="Customer segments, lifetime value and ROI-maximising action.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help text is printed as written: no Rich markup, no emoji codes (":email:" in
    # "paid_social:email:0.2" stays text).
    rich_markup_mode=None,
)
# Our own markup styles fixed words; every user-derived string goes through escape().
# emoji=False: a ":name:" inside user data or a message is never turned into an emoji.
# Prose wraps at the terminal width; tables are built to fit 80 columns.
out = Console(emoji=False, highlight=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)


class Table(_RichTable):
    """A Rich table whose cells wrap, never cut with "…", so it fits an 80-column terminal.

    A column is never narrower than the longest word of its heading.
    """

    def add_column(self, header: Any = "", *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("overflow", "fold")
        if isinstance(header, str):
            kwargs.setdefault("min_width", max((len(w) for w in header.split()), default=0))
        super().add_column(header, *args, **kwargs)


def escape(text: str) -> str:
    """User text for Rich: markup escaped, control characters and secrets made harmless."""
    return _escape_markup(safe_text(text))


@contextmanager
def _progress(enabled: bool = True) -> Iterator[Any]:
    """A Rich progress bar on stderr, fed by the pipeline's progress callback."""
    if not enabled or not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task("starting", total=1)

    def update(description: str, index: int, total: int) -> None:
        bar.update(task, description=description, completed=index, total=total)

    with bar:
        yield update


def _version(value: bool) -> None:
    if value:
        out.print(f"segvalue {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Customer segments, lifetime value and ROI-maximising action."""


@app.command(short_help="Write a commented example segvalue.yaml.")
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the example.")] = Path(
        "segvalue.yaml"
    ),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented example segvalue.yaml."""
    from segvalue.pipeline import write_config_template

    write_config_template(path, force=force)
    out.print(f"wrote {escape(str(path))}", soft_wrap=True)
    out.print("edit its sources and columns, then run:")
    out.print(f"  segvalue validate -c {escape(str(path))}", soft_wrap=True)


@app.command(short_help="Run the main job on built-in demo data.")
def demo(
    customers: Annotated[int, typer.Option(help="Number of customers to generate.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 42,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the demo data, config and outputs.")
    ] = Path("segvalue-demo"),
    dataset: Annotated[str, typer.Option(help="demo (generated retailer) or cdnow.")] = "demo",
    json_output: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
    wait: WaitOption = 0,
) -> None:
    """Run the main job on built-in demo data: generate, validate, compute features."""
    from segvalue.pipeline import run_demo

    with _progress(not json_output) as progress:
        result, config_path = run_demo(
            dataset=dataset,
            n_customers=customers,
            seed=seed,
            out_dir=out_dir,
            progress=progress,
            wait=wait,
        )
    report_path = _demo_report(config_path)
    if json_output:
        summary = {**result.summary(), "report": None if report_path is None else str(report_path)}
        out.print_json(json.dumps(summary, default=str))
        return
    _print_report(result.report.to_dict())
    _print_features(result.features)
    _print_segments(result.summary().get("segments"))
    out.print(f"\n[bold]config[/]  {escape(_shown(config_path))}", soft_wrap=True)
    _print_outputs(result.outputs)
    # What the run stored, read back (reads compute nothing), and what to plan with it.
    commands = ["segment --show", "kpis", "runs"]
    if "channel_spend" in result.report.tables:  # budget curves are fitted from its history
        commands.append("budget")
    for command in commands:
        out.print(f"try: segvalue {command} -c {escape(_shown(config_path))}", soft_wrap=True)
    if report_path is not None:
        shown = f"{escape(_shown(report_path))} ({_size(report_path)})"
        out.print(f"[bold]report[/]  {shown}", soft_wrap=True)
    else:
        out.print("report: not written (it needs the web extra: pip install 'segvalue[web]')")
    out.print(f"dashboard: segvalue serve -c {escape(_shown(config_path))}", soft_wrap=True)


def _demo_report(config_path: Path) -> Path | None:
    """The demo's ``report.html`` beside its ``segvalue.yaml`` (None without the web extra)."""
    from segvalue.errors import MissingDependencyError

    try:
        from segvalue.web.report import write_report

        with _project(config_path) as project:
            return write_report(project, config_path.parent / "report.html")
    except MissingDependencyError:
        return None


def _size(path: Path) -> str:
    """A file's size for a person: 4.2 MB, 812 kB, 120 bytes."""
    size = path.stat().st_size
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    return f"{size / 1_000:.0f} kB" if size >= 1_000 else f"{size} bytes"


@app.command(short_help="Read and validate every source; report rejects.")
def validate(
    config: Annotated[Path, typer.Option("-c", "--config", help="Path to segvalue.yaml.")],
    strict: Annotated[bool, typer.Option(help="Fail on any rejected row.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    rejects: Annotated[
        Path | None, typer.Option(help="Also write the rejected rows (.csv or .parquet).")
    ] = None,
) -> None:
    """Read and validate every source; report rejects, freshness and warnings."""
    with _project(config) as project, _progress(not json_output) as progress:
        report = project.validate(strict=strict, rejects=rejects, progress=progress)
    if json_output:
        out.print_json(json.dumps(report.to_dict(), default=str))
    else:
        _print_report(report.to_dict())


@app.command("run", short_help="Run the main job on your data; write the outputs.")
def run_job(
    config: Annotated[Path, typer.Option("-c", "--config", help="Path to segvalue.yaml.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
    wait: WaitOption = 0,
    schemes: Annotated[
        str | None,
        typer.Option(
            "--schemes",
            help="Recompute only these schemes (A,B); the others are carried from the "
            "latest complete run.",
        ),
    ] = None,
) -> None:
    """Run the main job on your data: validate, features, CLV, segments; write outputs.

    With --schemes A,B only those segmentation schemes are recomputed; the others are
    carried from the latest complete run (same data and as-of date), so the run still
    holds every configured scheme.
    """
    only = [s.strip() for s in schemes.split(",") if s.strip()] if schemes else None
    with _project(config) as project, _progress(not json_output) as progress:
        result = project.run(progress=progress, wait=wait, schemes=only)
    if json_output:
        out.print_json(json.dumps(result.summary(), default=str))
        return
    _print_report(result.report.to_dict())
    _print_segments(result.summary().get("segments"), only=only)
    if result.migration is not None:
        _print_migration(result.migration.summary())
    if result.measurement is not None:
        _print_measurement(result.measurement)
    _print_outputs(result.outputs)


@app.command(short_help="Segment the customers, or --show the stored segments.")
def segment(
    config: ConfigOption = DEFAULT_CONFIG,
    scheme: Annotated[
        list[str] | None, typer.Option(help="Only this scheme (repeat for several).")
    ] = None,
    show: Annotated[
        bool, typer.Option("--show", help="Show a stored run's segments; compute nothing.")
    ] = False,
    run_id: RunOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print segments as JSON.")] = False,
    wait: WaitOption = 0,
) -> None:
    """Recompute segments (a run of those schemes), or --show those of a stored run."""
    if show:
        with _project(config) as project:
            _show_segments(project.runs.require_latest(run_id), scheme, json_output)
        return
    if run_id is not None:
        raise ConfigError(
            "--run reads a stored run: it goes with --show", fix="add --show, or leave out --run"
        )
    with _project(config) as project, _progress(not json_output) as progress:
        result = project.run(schemes=scheme or None, progress=progress, wait=wait)
    summary = result.summary()
    if json_output:
        doc = {k: summary[k] for k in ("run_id", "segments", "migration")}
        doc["outputs"] = summary["outputs"]
        out.print_json(json.dumps(doc, default=str))
        return
    _print_segments(summary.get("segments"), only=scheme or None)
    if summary.get("migration"):
        _print_migration(summary["migration"])
    _print_outputs(result.outputs)


def _show_segments(view: RunView, schemes: list[str] | None, json_output: bool) -> None:
    """Sizes and personas of a stored run, of every scheme or of ``schemes``."""
    doc = view.segments()
    known = doc.get("schemes", {})
    unknown = [name for name in schemes or [] if name not in known]
    if unknown:
        from segvalue.errors import DataValidationError, did_you_mean

        raise DataValidationError(
            f"run {view.run_id} has no scheme {unknown[0]!r}{did_you_mean(unknown[0], known)}",
            fix=f"use one of: {', '.join(known)}",
        )
    chosen = list(schemes or known)
    warnings = [w for w in doc.get("warnings", []) if w.get("scheme") in (None, *chosen)]
    shown = {**doc, "schemes": {name: known[name] for name in chosen}, "warnings": warnings}
    personas = [p for p in view.personas() if p.get("scheme") in chosen]
    if json_output:
        payload = {**_run_heading(view), "segments": shown, "personas": personas}
        out.print_json(json.dumps(payload, default=str))
        return
    _print_heading(_run_heading(view))
    _print_segments(shown)


def _run_heading(view: RunView) -> dict[str, Any]:
    info = view.info.to_dict()
    return {"run_id": info["run_id"], "as_of": info["as_of"], "finished_at": info["finished_at"]}


def _print_heading(heading: dict[str, Any]) -> None:
    """The line naming the run a read command shows (``_run_heading``)."""
    finished = heading["finished_at"]
    when = "" if finished is None else f", finished {finished[:19].replace('T', ' ')}"
    as_of = heading["as_of"] or "-"
    out.print(f"run {escape(heading['run_id'])} (as of {as_of}{when})", soft_wrap=True)


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _number(value: float | None) -> str:
    return "n/a" if value is None else _short(value)


#: The KPI table, in two tables of at most five columns so that each fits an 80-column
#: terminal with its intervals: (key, heading, percent?). `--json` has every KPI.
_KPI_TABLES = (
    (
        ("customers", "customers", False),
        ("share", "share", True),
        ("average_order_value", "order value", False),
        ("repeat_rate", "repeat rate", True),
    ),
    (
        ("churn_risk", "churn risk", True),
        ("clv_mean", "CLV (mean)", False),
        ("clv_cac", "CLV:CAC", False),
    ),
)


def _short(value: float, percent: bool = False) -> str:
    """A number in at most about six characters: 35.47, 1.23k, 4.5M, 12.3%.

    Examples
    --------
    >>> _short(35.4711), _short(12345.6), _short(0.1234, percent=True), _short(-0.0)
    ('35.47', '12.3k', '12.3%', '0')
    >>> _short(-0.0001, percent=True)
    '0.0%'
    """
    if percent:
        text = f"{value:.1%}"
        return "0.0%" if text == "-0.0%" else text  # never "-0.0 %"
    if value == 0:
        return "0"  # never "-0"
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.4g}"


def _kpi_cell(row: dict[str, Any], key: str, percent: bool) -> str:
    """The estimate, and its interval on a second line."""
    value, low, high = row.get(key), row.get(f"{key}_lower"), row.get(f"{key}_upper")
    if value is None:
        return "n/a"
    if key == "customers":
        return f"{value:,}"
    text = _short(value, percent)
    if low is not None and high is not None:
        text += f"\n[{_short(low, percent)}, {_short(high, percent)}]"
    return escape(text)


@app.command(short_help="Segment KPIs of a stored run: intervals, targets, priorities.")
def kpis(
    config: ConfigOption = DEFAULT_CONFIG,
    run_id: RunOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print KPIs as JSON.")] = False,
) -> None:
    """Segment KPIs with 95% intervals, target status, priorities and budget guidance.

    Read from the latest complete run in the store (or --run ID): nothing is computed or
    recorded; `segvalue run` computes a new run.
    """
    with _project(config) as project:
        doc = _kpis_document(project.runs.require_latest(run_id))
    if json_output:
        shown = {k: v for k, v in doc.items() if k != "persona_names"}
        out.print_json(json.dumps(shown, default=str))
        return
    _print_kpis(doc)


def _kpis_document(view: RunView) -> dict[str, Any]:
    """What `kpis` shows of a run: its heading, KPIs, statuses, priorities, guidance."""
    rows = view.segment_kpis().to_pylist()
    scheme = str(rows[0]["scheme"]) if rows and "scheme" in rows[0] else ""
    personas = view.personas() if view.has_document("personas") else []
    return {
        **_run_heading(view),
        "scheme": scheme,
        "kpis": rows,
        "status": view.kpi_status().to_pylist(),
        "priorities": sorted(view.priorities().to_pylist(), key=lambda r: r["rank"]),
        "guidance": view.budget_guidance(),
        "persona_names": {p["segment"]: p["name"] for p in personas if p["scheme"] == scheme},
    }


def _print_kpis(doc: dict[str, Any]) -> None:
    _print_heading(doc)
    for index, columns in enumerate(_KPI_TABLES):
        title = f"Segment KPIs ({doc['scheme']}), 95% intervals" if index == 0 else None
        table = Table(title=escape(title) if title else None)
        table.add_column("segment")
        for _, heading, _ in columns:
            table.add_column(heading, justify="right")
        for row in doc["kpis"]:
            cells = [_kpi_cell(row, key, percent) for key, _, percent in columns]
            table.add_row(escape(str(row["segment"])), *cells)
        out.print(table)
    out.print("each cell: the estimate, then its 95% interval; --json has every KPI")
    for row in doc["status"]:
        if row["status"] != "on_track":
            out.print(
                f"[yellow]{row['status']}:[/] {escape(str(row['segment']))} {row['kpi']} "
                f"{_number(row['estimate'])} [{_number(row['lower'])}, "
                f"{_number(row['upper'])}] vs target {_number(row['target'])}",
                highlight=False,
            )
    for row in doc["priorities"]:
        persona = doc["persona_names"].get(row["segment"])
        label = str(row["segment"]) + (f" ({persona})" if persona else "")
        out.print(f"{row['rank']}. {escape(label)}: {escape(row['reasons'])}")


@app.command(short_help="One stored run as one self-contained HTML file.")
def report(
    out_path: Annotated[
        Path, typer.Option("--out", help="The HTML file to write (e.g. report.html).")
    ],
    config: ConfigOption = DEFAULT_CONFIG,
    run_id: RunOption = None,
) -> None:
    """Write one stored run as one HTML file with the dashboard's pages and charts.

    Read from the latest complete run in the store (or --run ID): the overview, the
    segments of every scheme, a section per segment of the KPI scheme and the CLV model.
    Everything is inlined (Plotly too): it opens offline and can be mailed.
    """
    from segvalue.web.report import write_report

    with _project(config) as project:
        view = project.runs.require_latest(run_id)
        path = write_report(project, out_path, run_id=view.run_id)
    out.print(f"wrote {escape(_shown(path))} ({_size(path)})", soft_wrap=True)
    out.print(f"run {escape(view.run_id)}, as of {view.info.as_of}", soft_wrap=True)
    out.print("open it in a browser: it loads nothing from the network")


runs_app = typer.Typer(
    help="The runs recorded in the store: list, show one, diff two. Reads only.",
    no_args_is_help=False,
    invoke_without_command=True,
    rich_markup_mode=None,
)
app.add_typer(runs_app, name="runs")

StatusOption = Annotated[
    str | None,
    typer.Option("--status", help="Only runs with this status: complete, failed, running."),
]


#: ``-c`` of the runs subcommands: by default the one given to ``segvalue runs``.
RunsConfigOption = Annotated[
    Path | None,
    typer.Option(
        "-c",
        "--config",
        help="Path to segvalue.yaml (default: as given to runs, else ./segvalue.yaml).",
    ),
]


@runs_app.callback()
def runs_main(
    ctx: typer.Context,
    config: ConfigOption = DEFAULT_CONFIG,
    status: StatusOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """The runs recorded in the store, newest first (`segvalue runs` = `segvalue runs list`)."""
    # `segvalue runs -c X --json show ID` means the same as `segvalue runs show ID -c X --json`
    ctx.obj = {"config": config, "status": status, "json": json_output}
    if ctx.invoked_subcommand is None:
        _list_runs(config, status, json_output)


def _given(ctx: typer.Context, config: Path | None, json_output: bool) -> tuple[Path, bool]:
    """A subcommand's config and --json, else those given to ``segvalue runs``."""
    parent = ctx.obj or {}
    return config or parent.get("config", DEFAULT_CONFIG), json_output or parent.get("json", False)


@runs_app.command("list", short_help="The runs, newest first, with their status.")
def runs_list(
    ctx: typer.Context,
    config: RunsConfigOption = None,
    status: StatusOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """The runs recorded in the store, newest first, with their status."""
    path, as_json = _given(ctx, config, json_output)
    _list_runs(path, status or (ctx.obj or {}).get("status"), as_json)


def _list_runs(config: Path, status: str | None, json_output: bool) -> None:
    with _project(config) as project:
        runs = project.runs.list(status=status)
    if json_output:
        out.print_json(json.dumps({"runs": [r.to_dict() for r in runs]}, default=str))
        return
    if not runs:
        out.print(f"no runs recorded in the store yet{'' if status is None else f' ({status})'}")
        out.print(f"compute one: segvalue run -c {escape(_shown(config))}", soft_wrap=True)
        return
    table = Table(title=f"Runs ({len(runs)}), newest first")
    # A run id is copied from here into other commands: never broken across lines.
    table.add_column("run", min_width=max(len(r.run_id) for r in runs))
    for column in ("status", "as of", "started", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for info in runs:
        seconds = (
            ""
            if info.finished_at is None
            else f"{(info.finished_at - info.started_at).total_seconds():,.1f}"
        )
        table.add_row(
            escape(info.run_id),
            _status(info.status),
            "-" if info.as_of is None else info.as_of.isoformat(),
            _when(info.started_at)[:16],
            seconds,
        )
    out.print(table)


def _status(status: str) -> str:
    colour = {"complete": "green", "failed": "red", "running": "yellow"}.get(status)
    return escape(status) if colour is None else f"[{colour}]{escape(status)}[/]"


@runs_app.command("show", short_help="One run: status, times, hashes, counts, timings.")
def runs_show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="ID", help="The run's id.")],
    config: RunsConfigOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """One run: status, as-of date, times, hashes, row counts, rejects, timings."""
    config, json_output = _given(ctx, config, json_output)
    with _project(config) as project:
        view = project.runs.get(run_id)
        complete = view.info.status == "complete"
        tables = view.table_names() if complete else []
        documents = view.document_names() if complete else []
    if json_output:
        doc = {**view.info.to_dict(), "tables": tables, "documents": documents}
        out.print_json(json.dumps(doc, default=str))
        return
    _print_run(view.info, tables, documents)


def _print_run(info: RunInfo, tables: list[str], documents: list[str]) -> None:
    table = Table(title=f"Run {escape(info.run_id)}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    as_of = "-" if info.as_of is None else info.as_of.isoformat()
    rows = [
        ("status", _status(info.status)),
        ("as of", as_of),
        ("started", _when(info.started_at)),
        ("finished", _when(info.finished_at)),
        ("config hash", escape(info.config_hash)),
        ("data fingerprint", escape(info.data_fingerprint)),
        ("schemes", escape(", ".join(info.schemes) or "-")),
    ]
    rows += [(f"rows: {escape(name)}", f"{n:,}") for name, n in info.row_counts.items()]
    rows += [(f"rejected: {escape(rule)}", f"{n:,}") for rule, n in info.rejects.items()]
    rows += [(f"seconds: {escape(stage)}", f"{t:,.2f}") for stage, t in info.timings.items()]
    for row in rows:
        table.add_row(*row)
    out.print(table)
    if info.error:
        out.print(f"[red]error:[/] {escape(info.error)}", highlight=False)
    if tables:
        out.print(f"tables: {escape(', '.join(tables))}")
    if documents:
        out.print(f"documents: {escape(', '.join(documents))}")


#: The KPIs `runs diff` shows (--json has every KPI): key, heading, percent?
_DIFF_KPIS = (
    ("customers", "customers", False),
    ("repeat_rate", "repeat rate", True),
    ("churn_risk", "churn risk", True),
    ("clv_mean", "CLV (mean)", False),
)


@runs_app.command("diff", short_help="What changed from run A to run B.")
def runs_diff(
    ctx: typer.Context,
    before: Annotated[str, typer.Argument(metavar="A", help="The earlier run's id.")],
    after: Annotated[str, typer.Argument(metavar="B", help="The later run's id.")],
    config: RunsConfigOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the diff as JSON.")] = False,
) -> None:
    """What changed from run A to run B: segment sizes, customers moving, KPIs."""
    config, json_output = _given(ctx, config, json_output)
    with _project(config) as project:
        diff = project.runs.diff(before, after)
    if json_output:
        out.print_json(json.dumps(diff.to_dict(), default=str))
        return
    _print_diff(diff)


def _print_diff(diff: RunDiff) -> None:
    for label, info in (("from", diff.before), ("to", diff.after)):
        as_of = "-" if info.as_of is None else info.as_of.isoformat()
        out.print(f"{label} run {escape(info.run_id)} (as of {as_of})", soft_wrap=True)
    if diff.before.config_hash != diff.after.config_hash:
        out.print("the configuration changed between the runs")
    if diff.before.data_fingerprint != diff.after.data_fingerprint:
        out.print("the input data changed between the runs")
    for name, scheme in diff.schemes.items():
        table = Table(title=f"Scheme {escape(name)}")
        for column in ("segment", "before", "after", "change", "entered", "left"):
            table.add_column(column, justify="left" if column == "segment" else "right")
        for row in scheme.sizes.to_pylist():
            segment = row["segment"]
            table.add_row(
                escape(str(segment)),
                f"{row['before']:,}",
                f"{row['after']:,}",
                f"{row['change']:+,}",
                f"{scheme.entered.get(segment, 0):,}",
                f"{scheme.left.get(segment, 0):,}",
            )
        out.print(table)
    if diff.kpis is not None and diff.kpi_scheme is not None:
        _print_kpi_changes(diff.kpi_scheme, diff.kpis.to_pylist())


def _print_kpi_changes(scheme: str, rows: list[dict[str, Any]]) -> None:
    """Per segment the later run's value of the main KPIs and its change."""
    by_segment: dict[str, dict[str, Any]] = {}
    for row in rows:
        by_segment.setdefault(row["segment"], {})[row["kpi"]] = row
    table = Table(title=f"KPI changes ({escape(scheme)})")
    table.add_column("segment")
    for _, heading, _ in _DIFF_KPIS:
        table.add_column(heading, justify="right")
    for segment, values in by_segment.items():
        cells = [_change_cell(values.get(key), percent) for key, _, percent in _DIFF_KPIS]
        table.add_row(escape(segment), *cells)
    out.print(table)
    out.print(
        "each cell: the later run's value, then its change (rates: percentage points); "
        "--json has every KPI"
    )


def _change_cell(row: dict[str, Any] | None, percent: bool) -> str:
    r"""The later value, and its change on a second line (a rate's in percentage points).

    Examples
    --------
    >>> _change_cell({"after": 0.25, "change": -0.012}, True)
    '25.0%\n(-1.2 pts)'
    >>> _change_cell({"after": 40.37, "change": 0.5}, False), _change_cell(None, False)
    ('40.37\n(+0.5)', 'n/a')
    """
    if row is None or row["after"] is None:
        return "n/a"
    text = _short(row["after"], percent)
    change = row["change"]
    if change is not None:
        if percent:
            text += f"\n({change * 100:+.1f} pts)"
        else:
            shown = _short(change)
            text += f"\n({'' if shown.startswith('-') else '+'}{shown})"
    return escape(text)


@app.command(short_help="Allocate a budget across items (response curves).")
def budget(
    config: Annotated[
        Path | None, typer.Option("-c", "--config", help="Path to segvalue.yaml.")
    ] = None,
    curves: Annotated[
        Path | None, typer.Option(help="Curves file (YAML or JSON): items and total.")
    ] = None,
    total: Annotated[float | None, typer.Option(help="Total budget to allocate.")] = None,
    objective: Annotated[
        str | None, typer.Option(help="profit, revenue or clv (default: config / revenue).")
    ] = None,
    target: Annotated[
        float | None, typer.Option(help="Smallest budget reaching this expected outcome.")
    ] = None,
    move: Annotated[
        str | None, typer.Option(help="What-if: FROM:TO:SHARE, e.g. paid_social:email:0.2.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Allocate a budget across items with diminishing returns (response curves)."""
    from segvalue.pipeline import budget_what_if, plan_budget

    if config is not None and curves is None:  # the project's budget section
        with _project(config) as project:
            if move is not None:
                _print_what_if(project.what_if(move), json_output)
                return
            plan, warnings = project.budget(total=total, objective=objective, target=target)
        _print_plan(plan, warnings, json_output)
        return
    from segvalue.config import load_config

    loaded = None if config is None else load_config(config)  # refused with --curves
    if move is not None:
        _print_what_if(budget_what_if(move, config=loaded, curves_path=curves), json_output)
        return
    plan, warnings = plan_budget(
        config=loaded, curves_path=curves, total=total, objective=objective, target=target
    )
    _print_plan(plan, warnings, json_output)


def _print_what_if(scenario: Any, json_output: bool) -> None:
    if json_output:
        out.print_json(json.dumps(scenario.to_dict(), default=str))
        return
    interval = scenario.interval
    span = "" if interval is None else f" (95% interval {interval[0]:,.2f} to {interval[1]:,.2f})"
    out.print(f"change in outcome: {scenario.change_value:+,.2f}{span}")
    for name, change in scenario.change_by_item.items():
        out.print(f"  {escape(name)}: {change:+,.2f}")
    for note in scenario.notes:
        out.print(f"[dim]{escape(note)}[/]")


def _print_plan(plan: Any, warnings: list[str], json_output: bool) -> None:
    doc = plan.to_dict()
    if json_output:
        out.print_json(json.dumps({**doc, "warnings": warnings}, default=str))
        return
    table = Table(title=f"Budget plan ({plan.method})")
    for column in ("item", "current", "planned", "marginal ROI"):
        table.add_column(column, justify="left" if column == "item" else "right")
    for name, spend in doc["allocation"].items():
        mroi = doc["marginal_roi"].get(name)
        table.add_row(
            escape(name),
            f"{doc['current_allocation'].get(name, 0.0):,.2f}",
            f"{spend:,.2f}",
            "" if mroi is None else f"{mroi:.4f}",
        )
    out.print(table)
    out.print(
        f"expected response {doc['expected_response']:,.3f} "
        f"(current {doc['current_response']:,.3f}); "
        f"binding: {escape(', '.join(doc['binding_constraints']) or 'none')}"
    )
    for warning in warnings:
        out.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


@app.command(short_help="Credit conversions to channels: rule-based, Markov, Shapley.")
def attribute(
    file: Annotated[Path, typer.Argument(help="Path table or touchpoints (CSV or Parquet).")],
    input_format: Annotated[
        str,
        typer.Option("--format", help="paths (ChannelAttribution's table) or touchpoints."),
    ] = "paths",
    model: Annotated[
        str,
        typer.Option(
            help="first, last, last-non-direct, linear, linear-unique, position, time-decay "
            "(touchpoints), markov or shapley."
        ),
    ] = "markov",
    order: Annotated[int, typer.Option(help="Markov order, 1-4.")] = 1,
    by: Annotated[
        str | None, typer.Option(help="Attribute per value of this column (e.g. segment).")
    ] = None,
    value_function: Annotated[
        str, typer.Option(help="Shapley: subset-sum or conversion-rate.")
    ] = "subset-sum",
    direct: Annotated[str, typer.Option(help="The direct channel (last-non-direct).")] = "direct",
    half_life: Annotated[float, typer.Option(help="Time-decay half-life, days.")] = 7.0,
    sep: Annotated[str, typer.Option(help="Separator of a path's channels.")] = ">",
    path_col: Annotated[str, typer.Option(help="Column of the paths.")] = "path",
    conversions_col: Annotated[str, typer.Option(help="Conversions column.")] = (
        "total_conversions"
    ),
    value_col: Annotated[
        str | None,
        typer.Option(help="Conversion value column (optional; paths: total_conversion_value)."),
    ] = None,
    nulls_col: Annotated[str, typer.Option(help="Non-conversions column (optional).")] = (
        "total_null"
    ),
    customer_col: Annotated[str, typer.Option(help="Touchpoints: customer column.")] = (
        "customer_id"
    ),
    ts_col: Annotated[str, typer.Option(help="Touchpoints: time column.")] = "ts",
    channel_col: Annotated[str, typer.Option(help="Touchpoints: channel column.")] = "channel",
    event_col: Annotated[str, typer.Option(help="Touchpoints: event column.")] = "event",
    conversion_event: Annotated[
        str, typer.Option(help="Touchpoints: the event of a conversion row.")
    ] = "conversion",
    lookback_days: Annotated[
        float, typer.Option(help="Touchpoints: touches this long before a conversion count.")
    ] = 30.0,
    session_gap_minutes: Annotated[
        float, typer.Option(help="Touchpoints: one channel's touches this close are one.")
    ] = 30.0,
    delimiter: Annotated[str, typer.Option(help="',', ';', 'tab', '|' or 'whitespace'.")] = ",",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Attribute conversions and their value to channels (exact Markov chains and
    Shapley values; definitions in docs/measurement.md)."""
    from segvalue.pipeline import PathColumns, TouchColumns, read_journeys, read_paths
    from segvalue.pipeline import attribute as attribute_paths

    groups: dict[str | None, Any]
    if model == "time-decay" and input_format == "paths":
        raise ConfigError(
            "time-decay needs each touch's time: a path table has none",
            fix="attribute a touchpoints file (--format touchpoints), or pick another model",
            parameter="model",
        )
    if input_format == "paths":
        columns = PathColumns(
            path_col, conversions_col, value_col or "total_conversion_value", nulls_col
        )
        groups = read_paths(file, columns=columns, sep=sep, by=by, delimiter=delimiter)
    elif input_format == "touchpoints":
        touch = TouchColumns(
            customer_col, ts_col, channel_col, event_col, conversion_event, value_col or "value"
        )
        groups = read_journeys(
            file,
            columns=touch,
            by=by,
            lookback_days=lookback_days,
            session_gap_minutes=session_gap_minutes,
            delimiter=delimiter,
        )
    else:
        raise ConfigError(
            f"--format {input_format!r} is not a known input format",
            fix="use --format paths (a path table) or --format touchpoints",
            parameter="format",
        )
    options: dict[str, Any] = {}
    if model == "shapley":
        options["value_function"] = value_function
    elif model == "time-decay":
        options["half_life_days"] = half_life
    elif model != "markov":
        options["direct"] = direct
    results = {
        key: attribute_paths(paths, model, order=order, **options) for key, paths in groups.items()
    }
    if json_output:
        if by is None:
            out.print_json(json.dumps(results[None].to_dict()))
        else:
            segments = {str(k): r.to_dict() for k, r in results.items()}
            out.print_json(json.dumps({"model": model, "by": by, "segments": segments}))
        return
    for key, result in results.items():
        _print_attribution(result, None if key is None else f"{by} = {key}")


def _print_attribution(result: Any, group: str | None) -> None:
    doc = result.to_dict()
    title = f"Attribution: {doc['model']}" + (f" (order {doc['order']})" if "order" in doc else "")
    table = Table(title=title + ("" if group is None else f", {escape(group)}"))
    markov_model = result.removal_effects is not None
    for column in (
        "channel",
        "conversions",
        "share",
        "value",
        *(("removal effect",) * markov_model),
    ):
        table.add_column(column, justify="left" if column == "channel" else "right")
    total = doc["total_conversions"]
    ranked = sorted(doc["channels"].items(), key=lambda item: -item[1]["conversions"])
    for name, one in ranked:
        share = one["conversions"] / total if total > 0 else 0.0
        cells = [escape(name), f"{one['conversions']:,.2f}", f"{share:.1%}", f"{one['value']:,.2f}"]
        if markov_model:
            cells.append(f"{one['removal_effect']:.3f}")
        table.add_row(*cells)
    out.print(table)
    line = f"conversions {total:,.2f}, value {doc['total_value']:,.2f}"
    if "conversion_probability" in doc:
        line += f"; P(conversion) {doc['conversion_probability']:.4f}, {doc['states']:,} states"
    if doc.get("conversions_without_touches"):
        line += (
            f"; {doc['conversions_without_touches']:,} conversions had no touch in the "
            "lookback (not attributed)"
        )
    if doc.get("exact") is False:
        line += f"; sampled ({doc['samples']:,} orders of the channels)"
    out.print(line)


@app.command(short_help="Lift against a control group, with intervals, per segment.")
def lift(
    file: Annotated[Path, typer.Argument(help="Experiment file: a row per subject.")],
    group_col: Annotated[str, typer.Option(help="Column of each row's group.")],
    control: Annotated[str, typer.Option(help="The control group's label.")],
    outcome: Annotated[
        list[str], typer.Option(help="Outcome column (number or true/false); repeatable.")
    ],
    treatment: Annotated[
        list[str] | None, typer.Option(help="Treatment label (default: every other).")
    ] = None,
    by: Annotated[str | None, typer.Option(help="Lift per value of this column too.")] = None,
    level: Annotated[float, typer.Option(help="Interval coverage.")] = 0.95,
    adjust: Annotated[
        str, typer.Option(help="p-values across segments: holm, bh or none.")
    ] = "holm",
    contact_cost: Annotated[
        float | None, typer.Option(help="Cost per treated subject: the ROI of money outcomes.")
    ] = None,
    margin: Annotated[float, typer.Option(help="Profit share of a money outcome.")] = 1.0,
    delimiter: Annotated[str, typer.Option(help="',', ';', 'tab', '|' or 'whitespace'.")] = ",",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON records.")] = False,
) -> None:
    """Treated against control per arm, outcome (and segment): means, the lift with its
    interval (Newcombe for 0/1 outcomes, Welch otherwise), relative lift, p-values
    adjusted across segments, and a warning when a test is under-powered."""
    from segvalue.pipeline import lift_file

    rows = lift_file(
        file,
        group_col=group_col,
        control=control,
        outcomes=outcome,
        treatments=treatment,
        by=by,
        level=level,
        adjust=adjust,
        delimiter=delimiter,
        contact_cost=contact_cost,
        margin=margin,
    )
    if json_output:
        out.print_json(json.dumps(rows))
        return
    out.print(escape(f"lift against {control}; [low, high]: its {level:.0%} interval"))
    for r in rows:
        segment = "everyone" if r["segment"] is None else f"{by} = {r['segment']}"
        out.print(
            f"[bold]{escape(r['arm'])}[/] against {escape(control)}, "
            f"{escape(r['outcome'])}, {escape(segment)}"
        )
        out.print(
            f"  treated {r['treated_mean']:,.4g} (n {r['n_treated']:,}), "
            f"control {r['control_mean']:,.4g} (n {r['n_control']:,})"
        )
        relative = "" if r["rel_lift"] is None else f", relative {r['rel_lift']:+.1%}"
        out.print(
            f"  lift {r['lift']:+,.4g} [{r['ci_low']:,.4g}, {r['ci_high']:,.4g}]{relative}, "
            f"p {_p(r['p_value'])} (adj. {_p(r['p_adjusted'])})"
        )
        low, high = r["incremental_ci"]
        out.print(
            escape(
                f"  incremental {_amount(r['incremental'], '+')} [{_amount(low)}, "
                f"{_amount(high)}] over "
                f"{r['n_treated']:,} treated"
            )
        )
        if "roi" in r:
            roi = r["roi"]
            out.print(
                escape(
                    f"  ROI {roi['roi']:+.1%} [{roi['roi_low']:+.1%}, {roi['roi_high']:+.1%}] "
                    f"on a cost of {roi['cost']:,.2f}"
                )
            )
        if r["under_powered"]:
            out.print(
                "  [yellow]under-powered:[/] it finds 80 % of effects of "
                f"{r['minimum_detectable_effect']:,.4g} or more only"
            )


def _amount(value: float, sign: str = "") -> str:
    """4 significant digits, whole numbers from 1,000 on (no exponent)."""
    return f"{value:{sign},.0f}" if abs(value) >= 1000 else f"{value:{sign},.4g}"


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


@app.command("sample-size", short_help="Customers a test needs to detect a lift, before it runs.")
def sample_size(
    effect: Annotated[
        float, typer.Option(help="The lift to detect: 0.02 (2 points) on a rate, or on a mean.")
    ],
    baseline: Annotated[
        float | None, typer.Option(help="A rate: the control group's expected rate, (0, 1).")
    ] = None,
    sd: Annotated[
        float | None, typer.Option(help="A mean: its standard deviation per customer.")
    ] = None,
    level: Annotated[float, typer.Option(help="Confidence of the two-sided test.")] = 0.95,
    power: Annotated[float, typer.Option(help="Chance of detecting the lift.")] = 0.8,
    treated_share: Annotated[float, typer.Option(help="Share of customers treated.")] = 0.5,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """How many customers a test needs to detect a lift of --effect on a rate (from its
    --baseline) or on a mean (with standard deviation --sd), before running it."""
    from segvalue.pipeline import sample_size_check

    found = sample_size_check(
        effect,
        baseline=baseline,
        sd=sd,
        level=level,
        power=power,
        treated_share=treated_share,
    )
    if json_output:
        out.print_json(json.dumps(found))
        return
    if baseline is not None:
        change = f"{_percent(baseline)} -> {_percent(baseline + effect)}"
        detect = f"{change} ({'+' if effect > 0 else '-'}{_percent(abs(effect))[:-1]} points)"
    else:
        detect = f"a mean difference of {effect:+,.4g} (sd {sd:,.4g})"
    out.print(f"to detect {detect} at {level * 100:g}% confidence with {power * 100:g}% power:")
    treated = f"{found['n_treated']:,} treated"
    if treated_share != 0.5:
        treated += f" ({treated_share * 100:g}%)"
    out.print(f"  {found['n_total']:,} customers: {treated}, {found['n_control']:,} control")


def _percent(value: float) -> str:
    """A rate with one decimal (10.0%), more where it has them (0.25%)."""
    shown = f"{value * 100:.1f}"
    if abs(float(shown) - value * 100) > 1e-9:
        shown = f"{value * 100:.4g}"
    return f"{shown}%"


@app.command("hash", short_help="Match keys for an ad platform: an e-mail / phone, SHA-256.")
def hash_keys(
    destination: Annotated[
        str, typer.Option(metavar="NAME", help="The ad platform: meta, google or tiktok.")
    ],
    email: Annotated[str | None, typer.Option(metavar="ADDRESS", help="An e-mail address.")] = None,
    phone: Annotated[
        str | None,
        typer.Option(
            metavar="NUMBER", help="A phone number: +49 30 1234567, or national with --country."
        ),
    ] = None,
    country: Annotated[
        str | None,
        typer.Option(metavar="CC", help="The customer's country (ISO code: DE, GB, US)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The match keys of an e-mail address and / or phone number for --destination: each
    normalised as that platform publishes it, then hashed (lower-case hex SHA-256), as an
    audience upload carries them (docs/activation-matchkeys.md). The values are printed
    here only, never logged."""
    from segvalue.pipeline.matchkeys import MATCH_KEY_FIELDS, hash_contact

    keys = hash_contact(destination, email=email, phone=phone, country=country)
    if json_output:
        out.print_json(json.dumps({field: keys[field] for field in MATCH_KEY_FIELDS}))
        return
    out.print(f"destination: {escape(destination)}")
    for field, given in (("email", email), ("phone", phone)):
        if given is None:
            continue
        if keys[field] is None:
            why = as_options(str(keys[f"{field}_problem"]))
            out.print(f"{field}: [yellow]not hashed:[/] {escape(repr(given))}: {escape(why)}")
        else:
            out.print(f"{field}: {escape(str(keys[field]))}")
            out.print(f"  sha256: {keys[f'{field}_sha256']}")


uplift_app = typer.Typer(
    help="Evaluate uplift scores: Qini, uplift AUC, uplift at k.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(uplift_app, name="uplift")


@app.command(short_help="Plan the campaigns: audiences, suppression, caps, holdouts.")
def activate(
    config: Annotated[Path, typer.Option("-c", "--config", help="Path to segvalue.yaml.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; store nothing.")
    ] = False,
    run: Annotated[str | None, typer.Option(help="A run id; default: the latest.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Plan the campaigns of segvalue.yaml on the latest complete run: per campaign and
    step the audience, the contacts suppressed (by reason) and capped (by cap), the
    holdout and the global control group. Without --dry-run the plan is stored with
    the run, for `segvalue export` and the dashboard."""
    with _project(config) as project:
        plan = project.activate(dry_run=dry_run, run_id=run)
        view = project.runs.require_latest(run)
    summary = json.loads(json.dumps(plan.summary(), default=str))
    if json_output:
        out.print_json(json.dumps({"run_id": view.run_id, "dry_run": dry_run, **summary}))
        return
    stored = "dry run: nothing stored" if dry_run else "stored with the run"
    out.print(
        f"[bold]Activation[/] of run {view.run_id} (scheme {escape(str(summary['scheme']))}), "
        f"{stored}",
        highlight=False,
    )
    share = summary["global_control_share"]
    out.print(
        f"global control group: {summary['global_control']:,} of {summary['customers']:,} "
        f"customers ({share:.0%} asked); caps: {', '.join(summary['caps']) or 'none'}",
        highlight=False,
    )
    if summary["customers_in_default_zone"]:
        out.print(
            f"{summary['customers_in_default_zone']:,} customers without a time zone count in "
            f"{summary['default_time_zone']}",
            highlight=False,
        )
    for channel, column in (summary.get("no_consent_column") or {}).items():
        out.print(
            f"[yellow]warning:[/] no consent column {escape(column)!r} for {escape(channel)}: "
            "nobody is contacted on it",
            highlight=False,
        )
    for campaign in summary["campaigns"]:
        ends = f" to {campaign['end']}" if campaign["end"] else ""
        table = Table(
            title=f"{campaign['name']} ({campaign['objective']}, priority "
            f"{campaign['priority']}, {campaign['start']}{ends}): {campaign['members']:,} "
            f"members, {campaign['eligible']:,} eligible, {campaign['holdout']:,} held out",
        )
        for column in ("step", "day", "channel", "audience", "suppressed", "capped"):
            table.add_column(column, justify="right" if column in ("step", "audience") else "left")
        for step in campaign["steps"]:
            table.add_row(
                str(step["step"]),
                str(step["day"]),
                escape(str(step["channel"])),
                f"{step['audience']:,}",
                escape(_counts(step["suppressed"])),
                escape(_counts(step["capped"])),
            )
        out.print(table)


@app.command(short_help="Export an audience: a file, a table, a webhook, an ad platform.")
def export(
    audience: Annotated[
        str,
        typer.Argument(
            help="A campaign's name, experiment:<campaign>, or segment-events.",
            show_default=False,
        ),
    ],
    to: Annotated[
        str,
        typer.Option("--to", help="csv, parquet, jsonl, table, webhook, meta, google or tiktok."),
    ],
    target: Annotated[
        str | None,
        typer.Argument(help="A file, a table name or a webhook URL.", show_default=False),
    ] = None,
    config: Annotated[Path, typer.Option("-c", "--config", help="Path to segvalue.yaml.")] = Path(
        "segvalue.yaml"
    ),
    step: Annotated[int | None, typer.Option(help="One step of the campaign only.")] = None,
    run: Annotated[str | None, typer.Option(help="A run id; default: the latest.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Export a campaign's audience as `segvalue activate` stored it (or segment-events:
    the enter / exit events) to a file with its manifest, a database table, a webhook
    (signed batches, retried, dead letters kept), or an ad platform's hashed customer list.
    Contact details only as activation.exports.contact_columns lists them."""
    with _project(config) as project:
        done = project.export(audience, to, target, step=step, run_id=run)
    if json_output:
        out.print_json(json.dumps(done, default=str))
        return
    what = f"{audience} (step {step})" if step is not None else audience
    if to == "webhook":
        out.print(
            f"{what}: {done['delivered_records']:,} of {done['records']:,} records delivered in "
            f"{done['batches']:,} batches ({done['attempts']:,} requests)",
            highlight=False,
        )
        if done.get("dead_lettered_batches"):
            out.print(
                f"[yellow]{done['dead_lettered_batches']:,} batches failed:[/] kept in "
                f"{escape(str(done.get('dead_letter')))}",
                highlight=False,
            )
        return
    where = _shown(Path(done["path"])) if done.get("path") else f"table {done.get('table')}"
    out.print(f"{what}: {done['rows']:,} rows to {to}:", highlight=False)
    out.print(f"  {escape(where)}", highlight=False, soft_wrap=True)
    if done.get("manifest"):
        out.print(f"  manifest beside it: {escape(Path(done['manifest']).name)}", highlight=False)
    out.print(f"  sha256 {done['sha256']}", highlight=False)
    if to in ("meta", "google", "tiktok"):
        out.print(
            f"  {done.get('without_a_usable_key', 0):,} customers without a usable key left out",
            highlight=False,
        )


def _counts(counts: dict[str, int]) -> str:
    """Counts by reason, largest first: "no_consent 40, unsubscribed 2" ("-" for none)."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {v:,}" for k, v in ranked) or "-"


@uplift_app.command("fit", short_help="Fit an uplift model; evaluate it on a holdout.")
def uplift_fit(
    file: Annotated[Path, typer.Argument(help="Test file: a row per subject.")],
    treatment_col: Annotated[str, typer.Option(help="Treated (1/true) or control (0/false).")],
    outcome_col: Annotated[str, typer.Option(help="Responded (1/true) or not (0/false).")],
    feature: Annotated[
        list[str], typer.Option(help="Feature column (number or category); repeatable.")
    ],
    method: Annotated[str, typer.Option(help="x-learner or two-model.")] = "x-learner",
    holdout: Annotated[float, typer.Option(help="Share of each group held out.")] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the split, models and resampling.")] = 0,
    id_col: Annotated[
        str | None, typer.Option(help="Id column copied to --out (else the row number).")
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write every row's score (.csv or .parquet).")
    ] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples for intervals.")] = 500,
    value: Annotated[
        float | None, typer.Option(help="A response's value: also the targeting profit.")
    ] = None,
    margin: Annotated[float, typer.Option(help="Profit share of that value, (0, 1].")] = 1.0,
    contact_cost: Annotated[float, typer.Option(help="Cost of contacting one row.")] = 0.0,
    delimiter: Annotated[str, typer.Option(help="',', ';', 'tab', '|' or 'whitespace'.")] = ",",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fit an uplift model (X-learner or two models, gradient boosting) outside a seeded
    holdout and evaluate its scores there (Qini and uplift AUC with intervals)."""
    from segvalue.pipeline import fit_uplift_file

    result = fit_uplift_file(
        file,
        treatment_col=treatment_col,
        outcome_col=outcome_col,
        features=feature,
        method=method,
        holdout=holdout,
        seed=seed,
        id_col=id_col,
        out=out_file,
        delimiter=delimiter,
        resamples=resamples,
        value=value,
        margin=margin,
        contact_cost=contact_cost,
    )
    if json_output:
        out.print_json(json.dumps(result))
        return
    out.print(
        f"{escape(result['method'])} on {', '.join(escape(f) for f in result['features'])}: "
        f"fitted on {result['n_train']:,} rows, evaluated on {result['n_holdout']:,} held out"
    )
    _print_uplift(result["holdout"])
    policy = result.get("policy")
    if policy is not None:
        out.print(
            f"targeting where uplift > {policy['threshold']:.4f} (cost / profit of a response): "
            f"{policy['share_targeted']:.0%} of the holdout, incremental profit "
            f"{policy['profit']:,.2f} (everyone: {policy['profit_everyone']:,.2f})"
        )
    if result["out"] is not None:
        out.print(f"scores written to {escape(result['out'])}", soft_wrap=True)


@uplift_app.command("evaluate", short_help="Qini and uplift AUC of scores, with intervals.")
def uplift_evaluate(
    file: Annotated[Path, typer.Argument(help="Scored test file: a row per subject.")],
    treatment_col: Annotated[str, typer.Option(help="Treated (1/true) or control (0/false).")],
    outcome_col: Annotated[str, typer.Option(help="Responded (1/true) or not (0/false).")],
    score_col: Annotated[str, typer.Option(help="The uplift score to evaluate.")],
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples for intervals.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the resampling.")] = 0,
    delimiter: Annotated[str, typer.Option(help="',', ';', 'tab', '|' or 'whitespace'.")] = ",",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Normalised areas under the Qini and uplift curves (scikit-uplift 0.5.1's
    definitions) with bootstrap intervals, and uplift among the top 10-50 %."""
    from segvalue.pipeline import evaluate_uplift_file

    result = evaluate_uplift_file(
        file,
        treatment_col=treatment_col,
        outcome_col=outcome_col,
        score_col=score_col,
        delimiter=delimiter,
        resamples=resamples,
        seed=seed,
    )
    if json_output:
        out.print_json(json.dumps(result))
        return

    _print_uplift(result)


def _print_uplift(result: dict[str, Any]) -> None:
    def shown(value: float | None, sign: str = "") -> str:
        return "n/a" if value is None else f"{value:{sign}.4f}"

    out.print(f"{result['n']:,} rows, {result['n_treated']:,} treated")
    for name, key in (("Qini AUC", "qini_auc"), ("uplift AUC", "uplift_auc")):
        low, high = result[f"{key}_ci"]
        interval = escape(f"[{shown(low)}, {shown(high)}]")
        out.print(f"{name} {shown(result[key])} {interval} (1: perfect, 0: random)")
    for k, value in result["uplift_at"].items():
        missing = " (a group has no row there)" if value is None else ""
        out.print(f"uplift among the top {float(k):.0%}: {shown(value, '+')}{missing}")


keys_app = typer.Typer(
    help="API keys for segvalue serve: create, list, revoke.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(keys_app, name="keys")


@keys_app.command("create", short_help="Create an API key; it is printed once.")
def keys_create(
    config: ConfigOption = DEFAULT_CONFIG,
    scope: Annotated[
        str, typer.Option("--scope", help="read (every GET, budget plans) or write.")
    ] = "read",
    name: Annotated[
        str | None, typer.Option("--name", metavar="N", help="A name to recognise it by.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help='Print {"key", "id", "scope"} as JSON.')
    ] = False,
) -> None:
    """Create an API key for the REST API. The key is printed once: the store keeps its
    hash only."""
    with _project(config) as project:
        key, info = project.keys.create(scope, name=name)
    if json_output:
        out.print_json(json.dumps({"key": key, "id": info.key_id, "scope": info.scope}))
        return
    named = "" if info.name is None else f" ({escape(info.name)})"
    out.print(f"created API key {escape(info.key_id)}{named}, scope {escape(info.scope)}:")
    out.print(f"  {escape(key)}", soft_wrap=True)
    out.print("it is shown only now: keep it somewhere safe. Send it as")
    out.print("  Authorization: Bearer KEY", soft_wrap=True)
    out.print(
        f"revoke it with: segvalue keys revoke {escape(info.key_id)} -c {escape(_shown(config))}",
        soft_wrap=True,
    )


@keys_app.command("list", short_help="The API keys: id, name, scope, created, revoked.")
def keys_list(
    config: ConfigOption = DEFAULT_CONFIG,
    json_output: Annotated[bool, typer.Option("--json", help="Print the keys as JSON.")] = False,
) -> None:
    """The API keys, oldest first (never the keys themselves)."""
    with _project(config) as project:
        keys = project.keys.list()
    if json_output:
        out.print_json(json.dumps({"keys": [k.to_dict() for k in keys]}))
        return
    if not keys:
        out.print("no API keys yet")
        out.print(
            f"create one: segvalue keys create -c {escape(_shown(config))} --scope read",
            soft_wrap=True,
        )
        return
    table = Table(title=f"API keys ({len(keys)})")
    table.add_column("id", min_width=max(len(k.key_id) for k in keys))
    for column in ("name", "scope", "created", "revoked"):
        table.add_column(column)
    for info in keys:
        table.add_row(
            escape(info.key_id),
            escape(info.name or "-"),
            escape(info.scope),
            _when(info.created_at)[:16],
            "-" if info.revoked_at is None else f"[red]{_when(info.revoked_at)[:16]}[/]",
        )
    out.print(table)


@keys_app.command("revoke", short_help="Revoke an API key: it is refused from now on.")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (keys list).")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Revoke an API key: the API refuses it from now on."""
    with _project(config) as project:
        info = project.keys.revoke(key_id)
    assert info.revoked_at is not None
    out.print(f"revoked API key {escape(info.key_id)} at {_when(info.revoked_at)[:16]}")


@app.command(short_help="Serve the REST API over the results store.")
def serve(
    config: ConfigOption = DEFAULT_CONFIG,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default: serve.host, 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on (default: serve.port, 8000).")
    ] = None,
) -> None:
    """Serve the REST API (/api/v1, see docs/api.md) and the dashboard (/, see
    docs/dashboard.md) until interrupted (Ctrl-C); off loopback the dashboard asks for an
    API key."""
    import logging

    try:
        import uvicorn

        from segvalue.api import API_PREFIX, create_app
    except ImportError:
        raise ConfigError(
            "segvalue serve needs the web extra (FastAPI, uvicorn)",
            fix="pip install 'segvalue[web]'",
        ) from None
    project = _project(config)
    settings = project.config.serve
    bind_host, bind_port = host or settings.host, port or settings.port
    # The API's access log and the dashboard's (logins, pages prepared) on standard error.
    for name in ("segvalue.api", "segvalue.web"):
        log = logging.getLogger(name)
        if not log.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
    _check_listen(bind_host, bind_port)
    shown = f"[{bind_host}]" if ":" in bind_host else bind_host
    base = f"http://{shown}:{bind_port}"
    out.print(f"segvalue API on {base}{API_PREFIX} (OpenAPI: {base}{API_PREFIX}/openapi.json)")
    out.print(f"health: {base}/health")
    from segvalue.web import dashboard_router

    app = create_app(project)
    create_key = f"segvalue keys create -c {escape(_shown(config))} --scope read"
    # Open without a key on loopback (this machine only); any other address: a login.
    login = not _loopback(bind_host)
    app.include_router(dashboard_router(project, login=login, prepare=True))
    if login:
        out.print(f"dashboard: {base}/ (log in with an API key: {create_key})", soft_wrap=True)
    else:
        out.print(f"dashboard: {base}/ (loopback only: open without a key)")
    out.print(f"every {API_PREFIX} route needs an API key: {create_key}", soft_wrap=True)
    out.print(
        f"real-time orders and touchpoints: POST {base}{API_PREFIX}/events with a key of "
        "scope write (--scope write)",
        soft_wrap=True,
    )
    out.file.flush()
    try:
        # uvicorn's access log would name the path (it may hold a customer id): ours logs
        # the route template instead.
        uvicorn.run(
            app,
            host=bind_host,
            port=bind_port,
            access_log=False,
            log_level="info",
            server_header=False,
        )
    finally:
        project.close()


def _loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_listen(host: str, port: int) -> None:
    """A clear error now, rather than uvicorn's exit, when the address cannot be bound."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind(address)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            fix="pick another --port or --host (serve.port, serve.host in segvalue.yaml)",
            parameter="serve.port",
        ) from None


@app.command(short_help="RFM / BTYD features per customer from an orders file.")
def rfm(
    orders: Annotated[Path, typer.Argument(help="Orders file (CSV/text or Parquet).")],
    customer_col: Annotated[str, typer.Option(help="Customer id column.")],
    date_col: Annotated[str, typer.Option(help="Order date / timestamp column.")],
    amount_col: Annotated[str, typer.Option(help="Order amount column.")],
    as_of: Annotated[
        str | None, typer.Option(help="Observation end YYYY-MM-DD (default: last order).")
    ] = None,
    time_unit: Annotated[str, typer.Option(help="day, week or month.")] = "week",
    granularity: Annotated[
        str, typer.Option(help="day: merge same-day purchases; unit: merge per time unit.")
    ] = "day",
    delimiter: Annotated[str, typer.Option(help="',', ';', 'tab', '|' or 'whitespace'.")] = ",",
    decimal: Annotated[str, typer.Option(help="Decimal mark: '.' or ','.")] = ".",
    header: Annotated[bool, typer.Option(help="The file has a header line.")] = True,
    date_format: Annotated[str | None, typer.Option(help="e.g. %d/%m/%Y.")] = None,
    strict: Annotated[bool, typer.Option(help="Fail on any rejected row.")] = False,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write features to .csv or .parquet.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Frequency, recency, T and monetary value per customer from an orders file."""
    from segvalue.pipeline import OrdersFile, rfm_from_file

    source = OrdersFile(
        orders, customer_col, date_col, amount_col, delimiter, decimal, header, date_format
    )
    result = rfm_from_file(
        source,
        as_of=_parse_date(as_of, "--as-of"),
        time_unit=time_unit,
        granularity=granularity,
        strict=strict,
        out_file=out_file,
    )
    if json_output:
        out.print_json(json.dumps(result, default=str))
        return
    _print_report(result["report"])
    stats = Table(title=f"RFM summary ({result['time_unit']}s, as of {result['as_of']})")
    for column in ("customers", "total_repeat_purchases", "repeat_customers"):
        stats.add_column(column.replace("_", " "), justify="right")
    stats.add_row(
        *(f"{result[c]:,}" for c in ("customers", "total_repeat_purchases", "repeat_customers"))
    )
    out.print(stats)
    if out_file is not None:
        out.print(f"features written to {out_file}")
    else:
        # The BTYD columns fit 80 columns; --out and --json carry the purchase dates too.
        _print_rows(
            result["customers_table"][:10],
            title="first customers",
            columns=("customer_id", "frequency", "recency", "T", "monetary_value"),
        )


@app.command(short_help="Fit CLV models and value every customer.")
def clv(
    orders: Annotated[Path, typer.Argument(help="Orders file (CSV/text or Parquet).")],
    customer_col: Annotated[str, typer.Option(help="Customer id column.")],
    date_col: Annotated[str, typer.Option(help="Order date / timestamp column.")],
    amount_col: Annotated[str, typer.Option(help="Order amount column.")],
    time_unit: Annotated[str, typer.Option(help="day, week or month.")] = "week",
    calibration_end: Annotated[
        str | None, typer.Option(help="Fit up to this date, validate after (YYYY-MM-DD).")
    ] = None,
    observation_end: Annotated[
        str | None, typer.Option(help="Last day of data (default: last order).")
    ] = None,
    model: Annotated[
        str, typer.Option(help="auto (MBG/NBD or Pareto/NBD), bgnbd, mbgnbd or pnbd.")
    ] = "auto",
    spend_model: Annotated[str, typer.Option(help="gamma-gamma or none.")] = "gamma-gamma",
    horizon: Annotated[int, typer.Option(help="Whole time units to value.")] = 52,
    discount_rate: Annotated[float, typer.Option(help="Annual discount rate.")] = 0.10,
    margin: Annotated[float, typer.Option(help="Profit share of spend, (0, 1].")] = 1.0,
    delimiter: Annotated[str, typer.Option(help="',', ';', 'tab', '|' or 'whitespace'.")] = ",",
    decimal: Annotated[str, typer.Option(help="Decimal mark: '.' or ','.")] = ".",
    header: Annotated[bool, typer.Option(help="The file has a header line.")] = True,
    date_format: Annotated[str | None, typer.Option(help="e.g. %d/%m/%Y.")] = None,
    strict: Annotated[bool, typer.Option(help="Fail on any rejected row.")] = False,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Per-customer predictions (.csv/.parquet).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fit BTYD + spend models and value every customer (CLV, P(alive), churn risk)."""
    from segvalue.pipeline import OrdersFile, clv_from_file

    source = OrdersFile(
        orders, customer_col, date_col, amount_col, delimiter, decimal, header, date_format
    )
    with _progress(not json_output) as progress:
        if progress is not None:
            progress("fitting models", 0, 1)
        result = clv_from_file(
            source,
            time_unit=time_unit,
            calibration_end=_parse_date(calibration_end, "--calibration-end"),
            observation_end=_parse_date(observation_end, "--observation-end"),
            model=model,
            spend_model=spend_model,
            horizon=horizon,
            discount_rate=discount_rate,
            margin=margin,
            strict=strict,
            out_file=out_file,
        )
    if json_output:
        from segvalue.data.writers import json_safe

        report = result.pop("report")
        result["rows_rejected"] = report["rows_rejected"]
        out.print_json(json.dumps(json_safe(result), default=str))
        return
    _print_report(result["report"])
    _print_valuation(result)
    if out_file is not None:
        out.print(f"per-customer predictions written to {out_file}")


def _print_valuation(result: dict[str, Any]) -> None:
    unit = result["time_unit"]
    params = Table(title=f"{result['model']} parameters (time unit: {unit})")
    for column in ("parameter", "estimate", "std. error", "95% interval"):
        params.add_column(column, justify="left" if column == "parameter" else "right")
    for name, value in result["params"].items():
        bounds = result["confidence_intervals"].get(name)
        span = "unavailable" if bounds is None else f"{bounds[0]:.4g} - {bounds[1]:.4g}"
        params.add_row(name, f"{value:.4g}", f"{result['stderr'][name]:.4g}", span)
    out.print(params)
    out.print(f"log-likelihood {result['loglik']:.2f} on {result['n_customers']:,} customers")
    if len(result["candidates"]) > 1:
        text = "; ".join(
            f"{name}: LL {c['loglik']:.2f}"
            + (f", holdout MAE {c['holdout_mae']:.4f}" if c["holdout_mae"] is not None else "")
            for name, c in result["candidates"].items()
        )
        out.print(f"model chosen: {result['model']} ({text})")
    if result.get("selection"):
        out.print(f"selection: {escape(result['selection'])}", highlight=False)
    spend = result["spend_model"]
    if spend is not None:
        text = ", ".join(f"{k} = {v:.4f}" for k, v in spend["params"].items())
        out.print(f"spend (Gamma-Gamma): {text}; log-likelihood {spend['loglik']:.2f}")
    holdout = result["holdout"]
    if holdout is not None:
        out.print(
            f"holdout: actual {holdout['actual_repeat']:,.0f} vs predicted "
            f"{holdout['predicted_repeat']:,.1f} repeat purchases; per customer MAE "
            f"{holdout['mae']:.3f}, RMSE {holdout['rmse']:.3f}, correlation "
            f"{holdout['correlation']:.3f}"
        )
    out.print(
        f"total CLV over {result['horizon']} {unit}s ({result['discount_rate_annual']:.0%} a "
        f"year, margin {result['margin']:.0%}): {result['total_clv'] + 0.0:,.2f} for "
        f"{result['customers_scored']:,} customers"
    )
    for warning in result.get("warnings", []):
        out.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def _parse_date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} {value!r} is not a date", fix="use YYYY-MM-DD") from None


def _print_report(report: dict[str, Any]) -> None:
    table = Table(title=f"Input as of {report['as_of']} (loaded {report['loaded_at']})")
    for column in ("table", "read", "accepted", "rejected", "lookback", "latest event"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for t in report["tables"].values():
        table.add_row(
            t["table"],
            f"{t['rows_read']:,}",
            f"{t['rows_accepted']:,}",
            f"{t['rows_rejected']:,}",
            f"{t['dropped_by_lookback']:,}",
            str(t["latest_event"] or "-")[:10],
        )
    out.print(table)
    for t in report["tables"].values():
        for rule, n in t["rejected_by_rule"].items():
            out.print(f"  [yellow]rejected[/] {escape(t['source'])}: {n:,} rows ({rule}), e.g.")
            for example in t["examples_by_rule"].get(rule, []):
                out.print(f"    {escape(example)}", highlight=False)
        if t["returns"]:
            out.print(
                f"  returns in {escape(t['source'])}: {t['returns']:,} rows, "
                f"{t['returns_amount']:,.2f} netted against their customers"
            )
        if t.get("zero_amounts"):
            out.print(f"  zero-amount orders kept as purchases: {t['zero_amounts']:,}")
        if t["dropped_by_lookback"]:
            out.print(
                f"  lookback: {t['dropped_by_lookback']:,} rows of {t['table']} before "
                f"{report['lookback_start']} left out"
            )
    for note in report.get("notes", []):
        out.print(f"  {escape(note)}", highlight=False)
    for warning in report["warnings"]:
        out.print(f"[yellow]warning:[/] {escape(warning)}")


def _print_features(features: Any) -> None:
    import pyarrow.compute as pc

    table = Table(title=f"Customer features ({features.num_rows:,} customers)")
    for column in ("feature", "mean", "median", "max"):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for name in ("frequency", "recency", "T", "monetary_value", "revenue", "return_rate"):
        if name not in features.column_names:
            continue
        col = features.column(name)
        quantile = pc.quantile(col, q=0.5)[0].as_py()
        table.add_row(
            name,
            f"{pc.mean(col).as_py() or 0:,.2f}",
            f"{quantile or 0:,.2f}",
            f"{pc.max(col).as_py() or 0:,.2f}",
        )
    out.print(table)


def _print_segments(segments: dict[str, Any] | None, only: list[str] | None = None) -> None:
    if not segments:
        return
    for name, scheme in segments["schemes"].items():
        if only and name not in only:  # the others were carried from the last run
            continue
        table = Table(title=f"Scheme {name} ({scheme['type']})")
        for column in ("segment", "customers", "share", "persona"):
            table.add_column(
                column, justify="right" if column in ("customers", "share") else "left"
            )
        for row in scheme["segments"]:
            table.add_row(
                escape(str(row["segment"])),
                f"{row['customers']:,}",
                f"{row['share']:.1%}",
                escape(row["persona"] or ""),
            )
        out.print(table)
    for warning in segments["warnings"]:
        out.print(f"[yellow]warning:[/] {escape(warning['message'])}", highlight=False)


def _print_measurement(measured: Any) -> None:
    """The measurement step in a few lines: journeys, the whole base's channel roles, the
    lift that feeds the priorities, the uplift model (docs/measurement.md)."""
    facts = measured.details
    scheme = f" per segment of {escape(str(facts['scheme']))}" if facts.get("scheme") else ""
    out.print(f"[bold]measurement[/]{scheme}", highlight=False)
    if "journeys" in facts:
        out.print(
            f"  {facts['journeys']:,} journeys, {facts['converting_journeys']:,} converting; "
            f"{facts['conversions_without_touches']:,} conversions had no touch in "
            f"{facts['lookback_days']:g} days",
            highlight=False,
        )
        roles: dict[str, list[str]] = {}
        for row in measured.effectiveness.to_pylist():
            if row["segment"] == "all customers":
                roles.setdefault(row["role"], []).append(str(row["channel"]))
        shown = "; ".join(f"{role} {', '.join(names)}" for role, names in roles.items())
        out.print(f"  channel roles (all customers): {escape(shown)}", highlight=False)
    chosen = facts.get("priority_lift")
    if chosen:
        for row in measured.lift.to_pylist():
            if (
                row["segment"] == "all customers"
                and row["experiment_id"] == chosen["experiment_id"]
                and row["arm"] == chosen["arm"]
                and row["outcome"] == chosen["outcome"]
            ):
                power = ", under-powered" if row["under_powered"] else ""
                out.print(
                    f"  {escape(str(chosen['experiment_id']))} {escape(str(chosen['arm']))}: "
                    f"{escape(str(chosen['outcome']))} lift {row['lift']:+.3g} "
                    f"({row['ci_low']:.3g} to {row['ci_high']:.3g}, "
                    f"p {_p(row['p_value'])}{power}); per segment in the priorities",
                    highlight=False,
                )
    for experiment, found in (facts.get("uplift") or {}).items():
        if found.get("qini_auc") is not None:
            low, high = found["qini_auc_ci"]
            out.print(
                f"  uplift model ({found['method']}) on {escape(str(experiment))}: Qini AUC "
                f"{found['qini_auc']:.3f} ({low:.3f} to {high:.3f}) on "
                f"{found['n']:,} held-out customers",
                highlight=False,
            )


def _print_migration(migration: dict[str, Any]) -> None:
    as_of = migration.get("previous_as_of")
    since = f"run {migration['previous_run']}" + (f" (as of {as_of})" if as_of else "")
    out.print(f"since {since}: {migration['events']:,} membership changes")
    for alert in migration["drift_alerts"]:
        out.print(f"[yellow]drift:[/] {escape(alert['message'])}", highlight=False)


def _shown(path: Path) -> str:
    """A path as short as it can be said: relative to the working folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):  # outside the working folder, or that folder is gone
        return str(path)


def _print_outputs(outputs: dict[str, Path]) -> None:
    """The output folder once, then one file per line (short lines, paths never broken)."""
    folders = {Path(path).parent for path in outputs.values()}
    if len(folders) != 1:
        for name, path in outputs.items():
            out.print(f"[bold]{escape(name)}[/]  {escape(_shown(path))}", soft_wrap=True)
        return
    # soft_wrap: a path is never broken across lines (it stays copyable).
    out.print(f"[bold]outputs[/] in {escape(_shown(folders.pop()))}{os.sep}", soft_wrap=True)
    names = "  ".join(Path(path).name for path in outputs.values())
    out.print(Padding(escape(names), (0, 0, 0, 2)))


def _print_rows(rows: list[dict[str, Any]], *, title: str, columns: tuple[str, ...]) -> None:
    if not rows:
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        values = (row[column] for column in columns)
        table.add_row(*(escape(f"{v:.2f}" if isinstance(v, float) else str(v)) for v in values))
    out.print(table)


def cli(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code (library errors -> 2, no traceback).

    Parameters
    ----------
    argv
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 ok, 2 a user error, 1 a bug (the traceback is shown then).

    Examples
    --------
    >>> cli(["--version"])  # doctest: +ELLIPSIS
    segvalue ...
    0
    """
    try:
        app(args=argv, prog_name="segvalue")
    except SegvalueError as exc:
        # User text (file names, values, "segvalue[postgres]") must not be read as markup.
        # escape() sanitises again: a subclass may set its message after SegvalueError's check.
        # The library names its parameters (in backticks): say the options.
        message = as_options(exc.message)
        fix = None if exc.fix is None else as_options(exc.fix)
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        if fix:
            err.print(f"[bold]fix:[/] {escape(fix)}", highlight=False)
        return 2
    except SystemExit as exc:  # click exits after --help and usage errors (code 2)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except OSError as exc:
        # Last line: writers and readers convert these; one that slipped through still
        # names its path instead of a traceback. Without a path it is a bug: re-raise.
        if exc.filename is None:
            raise
        reason = exc.strerror or type(exc).__name__
        err.print(
            f"[bold red]error:[/] {escape(str(exc.filename))}: {escape(reason)}", highlight=False
        )
        err.print("[bold]fix:[/] check the path, its permissions and the free disk space")
        return 2
    return 0


def run() -> None:
    """Console entry point."""
    code = cli()
    # The process ends here: frozen objects are skipped by the garbage collections of
    # the interpreter's shutdown, which otherwise walk every object of scikit-learn,
    # scipy and pandas (0.5-1 s after `segvalue run`).
    gc.freeze()
    sys.exit(code)
