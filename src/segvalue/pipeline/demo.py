"""The demo project (``segvalue demo``) and the commented configuration template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segvalue.config import config_template, load_config
from segvalue.data.safety import check_target, mark_folder, read_mark
from segvalue.errors import ConfigError
from segvalue.pipeline.result import RunResult
from segvalue.pipeline.run import run
from segvalue.pipeline.stage import Progress


def run_demo(
    *,
    dataset: str = "demo",
    n_customers: int = 20_000,
    seed: int = 42,
    out_dir: str | Path = "segvalue-demo",
    progress: Progress | None = None,
    wait: float = 0,
) -> tuple[RunResult, Path]:
    """Generate (or copy) demo data with a ready ``segvalue.yaml``, then run the main job.

    Parameters
    ----------
    dataset
        ``"demo"``: the generated retailer; ``"cdnow"``: Fader and Hardie's CDNOW log.
    n_customers, seed
        Size and seed of the generated retailer.
    out_dir
        Folder for ``data/``, ``segvalue.yaml`` and ``output/``: a new folder, an empty
        one, or one an earlier ``segvalue demo`` made (it carries segvalue's mark);
        anything else is refused before a file is written.
    progress
        Optional progress callback.
    wait
        Seconds to wait for another run holding the demo's output folder or store.

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
    from segvalue.data.writers import write_text_atomic

    if dataset not in ("demo", "cdnow"):
        raise ConfigError(
            f"unknown `dataset` {dataset!r}", fix="use 'demo' or 'cdnow'", parameter="dataset"
        )
    out = Path(out_dir)
    check_target(out, "demo")
    if read_mark(out) is None:
        mark_folder(out, "demo")
    data_dir = out / "data"
    if dataset == "demo":
        from segvalue.data.demo import demo_segments, generate_demo, write_demo

        if progress is not None:
            progress(f"generating {n_customers:,} demo customers", 0, 1)
        demo = generate_demo(n_customers, seed=seed)
        paths = write_demo(demo, data_dir)
        sources: dict[str, Any] = {
            name: {"path": str(path.relative_to(out))} for name, path in paths.items()
        }
        doc: dict[str, Any] = {
            "as_of": demo.as_of.isoformat(),
            "time_unit": "week",
            "clv": {"holdout": 26, "margin": 0.3},
            "segments": demo_segments(),
            "kpis": {
                "scheme": "clusters",
                "targets": [
                    {"kpi": "repeat_rate", "target": 0.7},
                    {"kpi": "churn_risk", "target": 0.5, "direction": "at_most"},
                    {"kpi": "clv_cac", "target": 3.0},
                ],
            },
            "measurement": {"experiments": {"uplift": True, "contact_cost": 0.5, "margin": 0.3}},
        }
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
        doc = {"as_of": CDNOW_AS_OF, "time_unit": "week", "clv": {"holdout": 39}}
    else:
        raise ConfigError(
            f"unknown `dataset` {dataset!r}", fix="use 'demo' or 'cdnow'", parameter="dataset"
        )
    doc.update(sources=sources, output={"dir": "output"})
    header = f"# segvalue.yaml for the {dataset} data, written by `segvalue demo`.\n"
    config_path = write_text_atomic(out / "segvalue.yaml", header + _yaml(doc))
    return run(load_config(config_path), progress=progress, wait=wait), config_path


def write_config_template(path: str | Path, *, force: bool = False) -> Path:
    """Write the commented example ``segvalue.yaml`` (refusing to overwrite by default).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_config_template(pathlib.Path(tempfile.mkdtemp()) / "segvalue.yaml")
    >>> load_config(p).time_unit.value
    'week'
    """
    from segvalue.data.writers import write_text_atomic

    path = Path(path)
    if path.exists() and not force:
        raise ConfigError(
            f"{path} already exists", fix="use `force=True` to overwrite it", parameter="force"
        )
    return write_text_atomic(path, config_template())


def _yaml(doc: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(doc, sort_keys=False))
