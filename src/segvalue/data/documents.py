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

    from segvalue.config import read_yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: file not found", fix="check the path")
    if file.suffix.lower() != ".json":
        return read_yaml(file, what="curves")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text", fix="save the file as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{file}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            fix="correct the JSON syntax",
        ) from None
