"""A stable fingerprint of a run's input data, recorded with every run.

Two runs with the same fingerprint read the same data: ``run --schemes`` carries other
schemes' results only from a run with the same fingerprint and as-of date.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from segvalue.config import Config
from segvalue.errors import ConfigError, redact_secrets

__all__ = ["data_fingerprint"]

_CHUNK = 1 << 20


def data_fingerprint(config: Config, row_counts: Mapping[str, int] | None = None) -> str:
    """SHA-256 (first 16 hex digits) over every configured source.

    A file source counts by its bytes (name, size and content); a database table, which
    has no bytes to hash here, by its location (URL without secrets, table name) and the
    number of rows read from it (``row_counts``, from the validation report).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> data_fingerprint(cfg) == data_fingerprint(cfg), len(data_fingerprint(cfg))
    (True, 16)
    """
    digest = hashlib.sha256()
    for name in sorted(config.sources):
        source = config.sources[name]
        digest.update(f"\0source\0{name}\0".encode())
        if source.path is not None:
            path = config.source_path(name)
            try:
                with path.open("rb") as handle:
                    digest.update(str(path.stat().st_size).encode())
                    while block := handle.read(_CHUNK):
                        digest.update(block)
            except OSError as exc:
                raise ConfigError(
                    f"cannot read {path} to fingerprint it: {exc.strerror or exc}",
                    fix="check that the file is readable",
                    parameter=f"sources.{name}.path",
                ) from None
        else:
            where: Any = redact_secrets(str(source.url or config.engine.url))
            rows = (row_counts or {}).get(name)
            digest.update(f"{where}\0{source.table}\0{rows}".encode())
    return digest.hexdigest()[:16]
