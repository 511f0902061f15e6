"""The data contract: logical tables, their required and optional columns and types.

Users map their own column names onto these logical names in ``segvalue.yaml``. Types are
the *target* types after parsing; sources may deliver them as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CONTRACT", "ColumnSpec", "TableSpec", "table_spec"]

Kind = Literal["id", "string", "timestamp", "date", "float", "int", "bool"]


@dataclass(frozen=True)
class ColumnSpec:
    """One logical column: its name, kind and whether the contract requires it."""

    name: str
    kind: Kind
    required: bool = False


@dataclass(frozen=True)
class TableSpec:
    """One logical table of the contract."""

    name: str
    columns: tuple[ColumnSpec, ...]
    key: str | None = None  # a column whose values must be unique
    time_column: str | None = None  # the event time used for freshness / as-of checks
    money: tuple[str, ...] = ()  # money columns, checked against validation.max_amount

    @property
    def required(self) -> tuple[str, ...]:
        """Names of required columns."""
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> ColumnSpec | None:
        """The spec of a logical column, or None if the contract does not name it."""
        return next((c for c in self.columns if c.name == name), None)


def _cols(required: dict[str, Kind], optional: dict[str, Kind]) -> tuple[ColumnSpec, ...]:
    return tuple(ColumnSpec(n, k, True) for n, k in required.items()) + tuple(
        ColumnSpec(n, k, False) for n, k in optional.items()
    )


CONTRACT: dict[str, TableSpec] = {
    "customers": TableSpec(
        "customers",
        _cols(
            {"customer_id": "id"},
            {
                "signup_date": "date",
                "birth_date": "date",
                "age": "float",
                "income": "float",
                "household_size": "int",
                "consent_email": "bool",
                "consent_sms": "bool",
                "consent_push": "bool",
                "consent_ads": "bool",
            },
        ),
        key="customer_id",
        time_column="signup_date",
        money=("income",),
    ),
    "orders": TableSpec(
        "orders",
        _cols(
            {"order_id": "id", "customer_id": "id", "order_ts": "timestamp", "amount": "float"},
            {
                "currency": "string",
                "margin": "float",
                "cost": "float",
                "channel": "string",
                "returned": "bool",
                "discount": "float",
            },
        ),
        key="order_id",
        time_column="order_ts",
        money=("amount", "margin", "cost", "discount"),
    ),
    "order_lines": TableSpec(
        "order_lines",
        _cols(
            {"order_id": "id", "product_id": "id", "quantity": "float", "line_amount": "float"},
            {"category": "string", "brand": "string"},
        ),
        money=("line_amount",),
    ),
    "touchpoints": TableSpec(
        "touchpoints",
        _cols(
            {"customer_id": "id", "ts": "timestamp", "channel": "string"},
            {"campaign_id": "id", "event": "string", "cost": "float"},
        ),
        time_column="ts",
        money=("cost",),
    ),
    "channel_spend": TableSpec(
        "channel_spend",
        _cols(
            {"period": "date", "channel": "string", "spend": "float"},
            {"segment": "string", "campaign_id": "id", "conversions": "float", "revenue": "float"},
        ),
        time_column="period",
        money=("spend", "revenue"),
    ),
    "experiments": TableSpec(
        "experiments",
        _cols(
            {"customer_id": "id", "experiment_id": "id", "group": "string"},
            {"arm": "string", "assigned_at": "timestamp", "converted": "bool", "revenue": "float"},
        ),
        time_column="assigned_at",
        money=("revenue",),
    ),
    "contact_log": TableSpec(
        "contact_log",
        _cols({"customer_id": "id", "ts": "timestamp", "channel": "string"}, {"campaign_id": "id"}),
        time_column="ts",
    ),
}


def table_spec(name: str) -> TableSpec:
    """The contract of one logical table.

    Examples
    --------
    >>> table_spec("orders").required
    ('order_id', 'customer_id', 'order_ts', 'amount')
    """
    return CONTRACT[name]
