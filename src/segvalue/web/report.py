"""``segvalue report``: one run's dashboard pages in one self-contained HTML file.

The report holds what the dashboard shows of a run (the overview, the segments of every
scheme, one section per segment of the KPI scheme, the CLV model; the attribution, channels
and experiments pages when the run holds a measurement; the campaigns and one section per
campaign when ``segvalue activate`` attached a plan to it), built by the same page builders
(:mod:`segvalue.web.pages`) and charts (:mod:`segvalue.web.charts`) and rendered by the
same templates: each page's template is rendered with ``base.html`` standing for
``report_page.html`` (the page's content only), then put in ``report.html``. Links between
pages become links within the file; everything the page needs (the stylesheet, Plotly's
``plotly.min.js`` from the installed package, the dashboard's script, each chart's
figure) is inlined, so the file opens offline and loads nothing from the network: it can
be mailed.

The file is written atomically through :func:`segvalue.data.writers.write_text_atomic`
and, like every output, never over a file segvalue did not write (the report carries a
``<meta name="generator" content="segvalue ...">`` a later report recognises).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import itertools
import re
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from segvalue.errors import ConfigError, DataValidationError, SegvalueError

if TYPE_CHECKING:
    from jinja2 import Environment

    from segvalue.project import Project, RunView
    from segvalue.web.charts import Chart

__all__ = ["GENERATOR", "render_report", "write_report"]

#: The start of the report's generator tag: an existing file is replaced only if it has it.
GENERATOR = "segvalue"
_SIGNATURE = f'<meta name="generator" content="{GENERATOR}'
_SUFFIXES = (".html", ".htm")
# Attributes that name an element by id: prefixed per section, ids being unique per page only.
_ID_ATTRIBUTE = re.compile(
    r'(?<![\w-])(id|for|aria-labelledby|aria-describedby|data-figure)="([^"]*)"'
)
_LOCAL_HREF = re.compile(r'href="#([^"]*)"')
_SITE_HREF = re.compile(r'\s*href="(/[^"]*)"')
_HEADING = re.compile(r"<(/?)h([1-5])\b")


@dataclass(frozen=True)
class _Section:
    anchor: str
    label: str
    html: Any  # markupsafe.Markup: the page's content, already rendered and escaped
    charts: list[Chart]


def write_report(project: Project, out_path: str | Path, run_id: str | None = None) -> Path:
    """Write one stored run as one self-contained HTML file (the dashboard's pages).

    Parameters
    ----------
    project
        The project whose results store holds the run.
    out_path
        The file to write, ending in ``.html``. An existing file is replaced only when
        segvalue wrote it (an earlier report); an input or the store is never written.
    run_id
        The run (default: the latest complete run).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    ConfigError
        No complete run in the store, or ``out_path`` may not be written.
    DataValidationError
        ``run_id`` is unknown (the message lists recent runs) or not complete.
    MissingDependencyError
        The ``web`` extra is not installed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.project import Project
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = "order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n2,b,2024-01-09,7\\n"
    >>> _ = (d / "o.csv").write_text(rows)
    >>> project = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d))
    >>> _ = project.run()
    >>> path = write_report(project, d / "report.html")
    >>> text = path.read_text()
    >>> project.runs.latest().run_id in text, "https://" in text.split("<script>")[0]
    (True, False)
    >>> project.close()
    """
    from segvalue.web import _require_web

    _require_web()
    target = Path(out_path)
    _check_target(project, target)
    view = project.runs.require_latest(run_id)
    if view.info.status != "complete":
        raise DataValidationError(
            f"run {view.run_id} is {view.info.status}: it holds no results",
            fix="pick a complete run (the runs whose status is complete)",
            parameter="run_id",
        )
    text = render_report(project, view)
    from segvalue.data.writers import write_text_atomic

    return write_text_atomic(target, text)


def _check_target(project: Project, path: Path) -> None:
    """Refuse a report path that is not .html, an input, the store or a foreign file."""
    from segvalue.data.safety import check_target

    if path.suffix.lower() not in _SUFFIXES:
        raise ConfigError(
            f"`out_path` {str(path)!r}: a report is an HTML file, not {path.suffix or 'no'!r}",
            fix="give a file name ending in .html",
            parameter="out_path",
        )
    if not path.parent.exists():
        raise ConfigError(
            f"`out_path` {str(path)!r}: folder {str(path.parent)!r} does not exist",
            fix="create it first",
            parameter="out_path",
        )
    protected = project.protected_paths()
    try:  # an existing file is replaced only when it is an earlier report
        check_target(path, "file", protected=protected, signature=_SIGNATURE.encode())
    except ConfigError as exc:
        raise ConfigError(f"`out_path`: {exc.message}", fix=exc.fix, parameter="out_path") from None


def render_report(project: Project, view: RunView) -> str:
    """The report of one complete run as HTML text (see :func:`write_report`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.project import Project
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = "order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n2,b,2024-01-09,7\\n"
    >>> _ = (d / "o.csv").write_text(rows)
    >>> project = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d))
    >>> _ = project.run()
    >>> text = render_report(project, project.runs.latest())
    >>> text.startswith("<!doctype html>"), 'id="segment-0"' in text
    (True, True)
    >>> project.close()
    """
    from segvalue import __version__
    from segvalue.web import pages
    from segvalue.web.app import _static_files

    environment = _environment()
    anchors: dict[tuple[str, ...], str] = {("overview",): "overview", ("models",): "models"}
    try:  # the dashboard's default scheme: the KPI scheme, else the run's first
        main = pages.segments_page(view, None)
        main_scheme: str | None = main["scheme"]
        main_segments = [s["segment"] for s in main["segments"]]
        personas = {s["segment"]: s["persona"] for s in main["segments"] if s["persona"]}
    except pages.NotFound:  # a run without schemes
        main_scheme, main_segments, personas = None, [], {}
    # The main scheme first, then the others in the run's order.
    schemes = sorted(view.info.schemes, key=lambda scheme: scheme != main_scheme)
    for index, scheme in enumerate(schemes):
        anchors["segments", scheme] = f"segments-{index}"
    for index, segment in enumerate(main_segments):
        anchors["segment", str(main_scheme), segment] = f"segment-{index}"
    measured = view.has_document("measurement")
    if measured:
        anchors |= _measurement_anchors(view)
    activated = view.has_document("activation")  # attached by segvalue activate
    campaigns: list[str] = []
    if activated:
        campaigns = [str(c["name"]) for c in pages.campaigns_page(view)["campaigns"]]
        anchors[("campaigns",)] = "campaigns"
        for index, name in enumerate(campaigns):
            anchors["campaign", name] = f"campaign-{index}"

    render = partial(_render_page, environment, view, anchors)
    sections = [render("overview", "Overview", "overview.html", pages.overview_page)]
    for scheme in schemes:
        build = partial(pages.segments_page, scheme=scheme)
        label = f"Segments of {scheme}"
        sections.append(render(anchors["segments", scheme], label, "segments.html", build))
    segment_sections = []
    for segment in main_segments:
        anchor = anchors["segment", str(main_scheme), segment]
        build = partial(pages.segment_page, scheme=str(main_scheme), segment=segment)
        label = f"{segment}: {personas[segment]}" if segment in personas else segment
        segment_sections.append(render(anchor, label, "segment.html", build))
    sections += segment_sections
    models = render("models", "CLV model", "models.html", pages.models_page)
    sections.append(models)
    measurement_sections = []
    if measured:  # each page at its defaults: the whole base, the first experiment
        builds = {
            "attribution": partial(pages.attribution_page, segment=None),
            "channels": partial(pages.channels_page, segment=None),
            "experiments": partial(pages.experiments_page, experiment=None, outcome=None),
        }
        measurement_sections = [
            render(anchor, anchor.capitalize(), f"{anchor}.html", build)
            for anchor, build in builds.items()
        ]
    sections += measurement_sections
    if activated:
        sections.append(render("campaigns", "Campaigns", "campaigns.html", pages.campaigns_page))
    for name in campaigns:
        build = partial(pages.campaign_page, name=name)
        sections.append(
            render(anchors["campaign", name], f"Campaign {name}", "campaign.html", build)
        )

    asset = partial(_asset, environment, _static_files())
    favicon = base64.b64encode(asset("favicon.svg").encode()).decode("ascii")
    parts = [sections[0]]
    if schemes:
        parts.append(_Section(anchors["segments", schemes[0]], "Segments", "", []))
    if main_segments:
        parts.append(_Section("segment-0", "Segment pages", "", []))
    parts += [models, *measurement_sections]
    if activated:
        parts.append(_Section("campaigns", "Campaigns", "", []))
    charts = [chart for section in sections for chart in section.charts]
    return environment.get_template("report.html").render(
        run=view,
        generator=f"{GENERATOR} {__version__}",
        version=__version__,
        written_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        favicon=f"data:image/svg+xml;base64,{favicon}",
        stylesheet=_inline(asset("dashboard.css"), "style"),
        plotly_js=_inline(asset("plotly.min.js"), "script"),
        dashboard_js=_inline(asset("dashboard.js"), "script"),
        parts=parts,
        main_scheme=main_scheme,
        segment_sections=segment_sections,
        sections=sections,
        charts=charts,
    )


def _environment() -> Environment:
    """The dashboard's template environment, with ``base.html`` as ``report_page.html``."""
    from jinja2 import BaseLoader

    from segvalue.web.app import _environment as dashboard_environment

    environment = dashboard_environment()
    assert environment.loader is not None
    pages_loader: BaseLoader = environment.loader

    class ReportLoader(BaseLoader):
        def get_source(self, environment: Environment, template: str) -> Any:
            name = "report_page.html" if template == "base.html" else template
            return pages_loader.get_source(environment, name)

    environment.loader = ReportLoader()
    return environment


def _asset(environment: Environment, static: dict[str, Path], name: str) -> str:
    """One of the files the dashboard serves under /static/, as text.

    Read like the templates, by Jinja's loader: files of the installed packages (ours
    and plotly's), not data, so not through :mod:`segvalue.data`.
    """
    from jinja2 import FileSystemLoader

    path = static[name]
    source, _, _ = FileSystemLoader(path.parent).get_source(environment, path.name)
    return source


def _render_page(
    environment: Environment,
    view: RunView,
    anchors: dict[tuple[str, ...], str],
    anchor: str,
    label: str,
    template: str,
    build: Any,
) -> _Section:
    """One dashboard page as a section of the report: ids prefixed, links made local."""
    from markupsafe import Markup

    from segvalue.web import pages

    try:
        context = build(view)
    except (pages.NotFound, SegvalueError) as exc:  # a result this run does not hold
        template, context = "missing.html", {"message": str(exc), "charts": []}
    text = environment.get_template(template).render(run=view, runs=[], request_path="", **context)
    text = _HEADING.sub(lambda m: f"<{m.group(1)}h{int(m.group(2)) + 1}", text)
    text = _prefix_ids(text, anchor)
    text = _SITE_HREF.sub(lambda m: _local_link(m.group(1), anchors), text)
    charts = [replace(c, chart_id=f"{anchor}-{c.chart_id}") for c in context.get("charts", [])]
    return _Section(anchor, label, Markup(text), charts)


def _prefix_ids(text: str, prefix: str) -> str:
    """Prefix every id (and every reference to one) with ``prefix``: unique in the report."""

    def attribute(match: re.Match[str]) -> str:
        ids = " ".join(f"{prefix}-{name}" for name in match.group(2).split())
        return f'{match.group(1)}="{ids}"'

    text = _ID_ATTRIBUTE.sub(attribute, text)
    return _LOCAL_HREF.sub(lambda m: f'href="#{prefix}-{m.group(1)}"', text)


def _measurement_anchors(view: RunView) -> dict[tuple[str, ...], str]:
    """The measurement's sections under each key of :func:`_local_link` that opens them.

    The report holds each measurement page at its defaults (the whole base; the first
    experiment and its outcome): a link that names them, or leaves them out, leads to its
    section; one to another segment, experiment or outcome has none.
    """
    from segvalue.web import pages

    anchors = {
        ("attribution", ""): "attribution",
        ("channels", ""): "channels",
        ("experiments", "", ""): "experiments",
    }
    try:
        attribution = pages.attribution_page(view, None)["segment"]
        channels = pages.channels_page(view, None)["segment"]
        experiments = pages.experiments_page(view, None, None)
    except (pages.NotFound, SegvalueError):  # the sections say what the run lacks
        return anchors
    for page, segment in (("attribution", attribution), ("channels", channels)):
        if segment is not None:
            anchors[page, str(segment)] = page
    experiment, outcome = (str(experiments[name] or "") for name in ("experiment", "outcome"))
    for named in itertools.product({"", experiment}, {"", outcome}):
        anchors["experiments", *named] = "experiments"
    return anchors


def _local_link(href: str, anchors: dict[tuple[str, ...], str]) -> str:
    """A dashboard link as a link within the report, or none (a page the report lacks)."""
    parts = urlsplit(html.unescape(href))
    path = [unquote(p) for p in parts.path.strip("/").split("/") if p]
    query = parse_qs(parts.query)
    key: tuple[str, ...] | None = None
    if not path:
        key = ("overview",)
    elif path == ["models"]:
        key = ("models",)
    elif path[0] == "segments" and len(path) == 1 and "scheme" in query:
        key = ("segments", query["scheme"][0])
    elif path[0] == "segments" and len(path) == 3:
        key = ("segment", path[1], path[2])
    elif path in (["attribution"], ["channels"]):
        key = (path[0], query.get("segment", [""])[0])
    elif path == ["experiments"]:
        key = ("experiments", *(query.get(name, [""])[0] for name in ("experiment", "outcome")))
    elif path == ["campaigns"]:
        key = ("campaigns",)
    elif path[0] == "campaigns" and len(path) == 2:  # a "/" in a name is quoted: one part
        key = ("campaign", path[1])
    anchor = None if key is None else anchors.get(key)
    return "" if anchor is None else f' href="#{anchor}"'


def _inline(text: str, element: str) -> str:
    """Text safe inside an HTML ``<script>`` or ``<style>``: it cannot close the element."""
    return re.sub(rf"</({element})", r"<\\/\1", text, flags=re.IGNORECASE)
