"""Rule segments: the condition DSL of ``segvalue.yaml`` compiled to Ibis predicates.

A condition is a tree of comparisons ``{field, op, value}`` joined by ``all`` / ``any`` /
``not`` (see :class:`segvalue.config.Condition`). :func:`compile_condition` turns it into
one boolean expression over the columns of a customer table, so that a rule scheme runs in
the engine as a single ``CASE WHEN`` (first match) or a union of filters (tags).

Missing values (SQL nulls; NaN in float columns counts as missing too) follow one rule,
chosen so that every condition is plainly true or false for every customer:

* a comparison on a missing value is **false**: a customer without an ``age`` matches
  neither ``age >= 30`` nor ``age < 30``, nor ``age != 30``, nor ``age not_in [30]``;
* ``is_null`` is true exactly on missing values, ``not_null`` on the others;
* ``all`` / ``any`` / ``not`` are ordinary two-valued logic over those results, so
  ``not: {field: age, op: '>=', value: 30}`` **does** match a customer without an age.
  Write ``{all: [{field: age, op: not_null}, ...]}`` to require a value.

Field names are checked against the table, and values against the column types, before
anything runs: an unknown field or a value of the wrong type is a
:class:`~segvalue.errors.ConfigError` that names the key (``segments.schemes[0].rules[2]
.when.field``), suggests the closest column and lists the available ones.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import ibis
import ibis.expr.datatypes as dtypes
import ibis.expr.types as ir

from segvalue.config import AllOf, AnyOf, Condition, ConditionExpr, NotOf, RuleSchemeConfig
from segvalue.errors import ConfigError, DataValidationError, did_you_mean

__all__ = [
    "assign_rule_scheme",
    "compile_condition",
    "condition_fields",
    "customer_attributes",
]

Kind = Literal["number", "text", "boolean", "date", "timestamp", "other"]

_ORDERING = ("<", "<=", ">", ">=", "between")
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _kind(dtype: dtypes.DataType) -> Kind:
    if dtype.is_boolean():
        return "boolean"
    if dtype.is_numeric():
        return "number"
    if dtype.is_string():
        return "text"
    if dtype.is_timestamp():
        return "timestamp"
    if dtype.is_date():
        return "date"
    return "other"


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _literal(value: Any, kind: Kind, field: str, dtype: dtypes.DataType, key: str) -> Any:
    """``value`` as a Python value of the column's kind, or a ConfigError naming the key."""

    def mismatch(fix: str) -> ConfigError:
        return ConfigError(
            f"key '{key}': field {field!r} is {kind} ({dtype}) but the value {value!r} is "
            f"{_describe(value)}",
            fix=fix,
        )

    if value is None:
        raise mismatch(f"remove null from the values; test for missing {field!r} with is_null")
    if kind == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise mismatch("compare with a number, or choose a text field") from None
            raise mismatch(f"write the number without quotes: {number:g}")
        raise mismatch("compare with a number")
    if kind == "text":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float | bool):
            raise mismatch(f"quote the value so that it is text: '{value}'")
        raise mismatch("compare with text")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise mismatch("write true or false, without quotes")
    if kind in ("date", "timestamp"):
        if isinstance(value, dt.datetime):
            return value if kind == "timestamp" else value.date()
        if isinstance(value, dt.date):
            return value if kind == "date" else dt.datetime.combine(value, dt.time())
        if isinstance(value, str):
            try:
                if kind == "date":
                    return dt.date.fromisoformat(value)
                return dt.datetime.fromisoformat(value)
            except ValueError:
                pass
        raise mismatch("write an ISO date such as '2024-12-31' (in quotes)")
    raise mismatch(f"column {field!r} holds {dtype}: only is_null / not_null apply to it")


def _unknown_field(field: str, columns: Sequence[str], key: str) -> ConfigError:
    hint = did_you_mean(field, columns)
    return ConfigError(
        f"key '{key}': unknown field {field!r}{hint}",
        fix=f"use a column of the customer table: {', '.join(columns)}",
    )


def _compile_leaf(cond: Condition, table: ir.Table, where: str) -> ir.BooleanValue:
    columns = list(table.columns)
    if cond.field not in columns:
        raise _unknown_field(cond.field, columns, f"{where}.field")
    column = table[cond.field]
    dtype = column.type()
    kind = _kind(dtype)
    present = column.notnull()
    if dtype.is_floating():
        present = present & ~column.isnan()  # NaN is missing too, never "larger than all"
    if cond.op == "is_null":
        return ~present
    if cond.op == "not_null":
        return present
    key = f"{where}.value"
    if cond.op == "regex":
        if kind != "text":
            raise ConfigError(
                f"key '{where}.op': regex needs a text field, but {cond.field!r} is "
                f"{kind} ({dtype}) (value {cond.value!r})",
                fix="use ==, in, between or a comparison for this field",
            )
        return present & column.re_search(str(cond.value))
    if cond.op in _ORDERING and kind == "boolean":
        raise ConfigError(
            f"key '{where}.op': {cond.op!r} needs an ordered field, but {cond.field!r} is "
            f"boolean (value {cond.value!r})",
            fix="use == true / == false",
        )
    if cond.op in ("in", "not_in"):
        values = [_literal(v, kind, cond.field, dtype, key) for v in cond.value]
        found = column.isin(values)
        return present & (found if cond.op == "in" else ~found)
    if cond.op == "between":
        low, high = (_literal(v, kind, cond.field, dtype, key) for v in cond.value)
        if low > high:
            raise ConfigError(
                f"key '{key}': 'between' bounds are reversed: {low!r} > {high!r}",
                fix=f"write the lower bound first: [{cond.value[1]!r}, {cond.value[0]!r}]",
            )
        return present & column.between(low, high)
    value = _literal(cond.value, kind, cond.field, dtype, key)
    return present & _COMPARE[cond.op](column, value)


def compile_condition(expr: ConditionExpr, table: ir.Table, *, where: str) -> ir.BooleanValue:
    """Compile a condition tree to one Ibis boolean expression over ``table``'s columns.

    Parameters
    ----------
    expr
        A :class:`~segvalue.config.Condition` or an ``all`` / ``any`` / ``not`` of them.
    table
        The table whose columns the conditions name (customer features and attributes).
    where
        The key of ``expr`` in ``segvalue.yaml`` (``segments.schemes[0].rules[2].when``),
        used in error messages.

    Returns
    -------
    ibis.expr.types.BooleanValue
        Never null: a comparison on a missing value is false (see the module docstring).

    Raises
    ------
    ConfigError
        For an unknown field (with the closest column and the list of columns) or a value
        whose type does not fit the column (naming field, type and value).

    Examples
    --------
    >>> import ibis
    >>> from segvalue.config import Condition, NotOf
    >>> t = ibis.memtable({"customer_id": ["a", "b", "c"], "age": [25.0, 41.0, None]})
    >>> older = Condition(field="age", op=">=", value=30)
    >>> t.filter(compile_condition(older, t, where="when")).customer_id.to_list()
    ['b']
    >>> sorted(t.filter(compile_condition(NotOf(**{"not": older}), t, where="when"))
    ...     .customer_id.to_list())
    ['a', 'c']
    """
    if isinstance(expr, Condition):
        return _compile_leaf(expr, table, where)
    if isinstance(expr, AllOf):
        parts = [
            compile_condition(e, table, where=f"{where}.all[{i}]")
            for i, e in enumerate(expr.all_of)
        ]
        return functools.reduce(operator.and_, parts)
    if isinstance(expr, AnyOf):
        parts = [
            compile_condition(e, table, where=f"{where}.any[{i}]")
            for i, e in enumerate(expr.any_of)
        ]
        return functools.reduce(operator.or_, parts)
    if isinstance(expr, NotOf):
        return ~compile_condition(expr.not_of, table, where=f"{where}.not")
    raise TypeError(f"not a condition: {expr!r}")


def _leaves(expr: ConditionExpr) -> Iterator[Condition]:
    if isinstance(expr, Condition):
        yield expr
    elif isinstance(expr, AllOf | AnyOf):
        for sub in expr.all_of if isinstance(expr, AllOf) else expr.any_of:
            yield from _leaves(sub)
    elif isinstance(expr, NotOf):
        yield from _leaves(expr.not_of)


def condition_fields(expr: ConditionExpr | RuleSchemeConfig) -> list[str]:
    """The fields a condition (or every rule of a scheme) reads, sorted, each once.

    Examples
    --------
    >>> from segvalue.config import AnyOf, Condition
    >>> condition_fields(AnyOf(**{"any": [Condition(field="b", op="is_null"),
    ...     Condition(field="a", op="==", value=1)]}))
    ['a', 'b']
    """
    exprs = [r.when for r in expr.rules] if isinstance(expr, RuleSchemeConfig) else [expr]
    return sorted({leaf.field for e in exprs for leaf in _leaves(e)})


def customer_attributes(features: ir.Table, customers: ir.Table | None) -> ir.Table:
    """The feature table with the customers table's attribute columns joined on.

    Rules may name customer attributes (age, country, benefit_sought, ...) next to
    features. Columns the features already have, and internal ones (starting with
    ``_``), are not joined again; customers missing from ``customers`` get nulls.

    Examples
    --------
    >>> import ibis
    >>> f = ibis.memtable({"customer_id": ["a", "b"], "orders": [2, 0]})
    >>> c = ibis.memtable({"customer_id": ["a"], "country": ["DE"], "_row": [1]})
    >>> for row in customer_attributes(f, c).order_by("customer_id").to_pyarrow().to_pylist():
    ...     print(row)
    {'customer_id': 'a', 'orders': 2, 'country': 'DE'}
    {'customer_id': 'b', 'orders': 0, 'country': None}
    """
    if customers is None:
        return features
    extra = [c for c in customers.columns if c not in features.columns and not c.startswith("_")]
    if not extra:
        return features
    joined = features.left_join(customers.select("customer_id", *extra), "customer_id")
    return joined.select(*features.columns, *extra)


def assign_rule_scheme(
    features: ir.Table, scheme: RuleSchemeConfig, *, where: str | None = None
) -> ir.Table:
    """Segment memberships of a rule scheme, computed in the engine.

    Parameters
    ----------
    features
        One row per customer: ``customer_id`` and the columns the rules name.
    scheme
        The scheme: ``mode: first_match`` (ordered rules, first true wins) or ``tags``.
    where
        The scheme's key in ``segvalue.yaml`` for error messages (default
        ``segments.schemes[<name>]``); rules are ``<where>.rules[i].when``.

    Returns
    -------
    ibis.expr.types.Table
        ``customer_id``, ``segment``. ``first_match``: exactly one row per customer, the
        scheme's ``unassigned`` bucket when no rule holds. ``tags``: one row per tag a
        customer carries, and one ``unassigned`` row for a customer with none, so that
        every customer appears.

    Raises
    ------
    ConfigError
        From :func:`compile_condition`, before anything runs.
    DataValidationError
        If ``features`` has no ``customer_id`` column.

    Examples
    --------
    >>> import ibis
    >>> from segvalue.config import RuleSchemeConfig
    >>> f = ibis.memtable({"customer_id": ["a", "b", "c"], "orders": [1, 5, 12]})
    >>> scheme = RuleSchemeConfig.model_validate({"name": "usage", "type": "behavioural",
    ...     "rules": [{"segment": "heavy", "when": {"field": "orders", "op": ">=", "value": 10}},
    ...               {"segment": "medium", "when": {"field": "orders", "op": ">=", "value": 3}}]})
    >>> out = assign_rule_scheme(f, scheme).order_by("customer_id").to_pyarrow()
    >>> out.column("segment").to_pylist()
    ['unassigned', 'medium', 'heavy']
    """
    if "customer_id" not in features.columns:
        raise DataValidationError(
            "the customer table for rule segments has no 'customer_id' column",
            fix="pass the customer feature table (one row per customer_id)",
        )
    prefix = where if where is not None else f"segments.schemes[{scheme.name}]"
    predicates = [
        compile_condition(rule.when, features, where=f"{prefix}.rules[{i}].when")
        for i, rule in enumerate(scheme.rules)
    ]
    unassigned = ibis.literal(scheme.unassigned, "string")
    if scheme.mode == "first_match":
        branches = [
            (p, ibis.literal(rule.segment, "string"))
            for p, rule in zip(predicates, scheme.rules, strict=True)
        ]
        return features.select("customer_id", segment=ibis.cases(*branches, else_=unassigned))
    parts = [
        features.filter(p).select("customer_id", segment=ibis.literal(rule.segment, "string"))
        for p, rule in zip(predicates, scheme.rules, strict=True)
    ]
    no_tag = ~functools.reduce(operator.or_, predicates)
    parts.append(features.filter(no_tag).select("customer_id", segment=unassigned))
    return ibis.union(*parts, distinct=False)
