"""One comparison for "the same features on every backend"."""

from __future__ import annotations

from typing import Any

import pytest


def sorted_rows(table: Any, key: str = "customer_id") -> list[dict[str, Any]]:
    """Rows of an Arrow table as dicts, sorted by ``key``."""
    return sorted(table.to_pylist(), key=lambda r: r[key])


def assert_same_rows(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> None:
    """Equal row by row: same columns, exact non-floats, floats to 1e-12 relative."""
    assert len(left) == len(right)
    for x, y in zip(left, right, strict=True):
        assert x.keys() == y.keys()
        for key, value in y.items():
            if isinstance(value, float):
                assert x[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
            else:
                assert x[key] == value, key
