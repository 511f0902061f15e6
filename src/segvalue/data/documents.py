"""YAML and JSON documents (curves files): read without importing the engine.

`segvalue budget --curves FILE` reads one small document; this module keeps that path
free of Ibis and pyarrow (see docs/performance.md, start-up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segvalue.errors import ConfigError

__all__ = ["read_document"]


def read_document(path: str | Path) -> Any:
    """A YAML or JSON document (by extension; YAML otherwise) as plain data.

    Raises
    ------
    ConfigError
        When the file is missing or does not parse, naming the file and the line.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "curves.json"
    >>> _ = p.write_text('{"total": 500}')
    >>> read_document(p)
    {'total': 500}
    """
    import json

    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: file not found", fix="check the path")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{file}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            fix="correct the JSON syntax",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"{file}: invalid YAML{where}: {getattr(exc, 'problem', exc)}",
            fix="correct the YAML syntax (indentation, colons, quotes)",
        ) from None
