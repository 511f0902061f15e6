"""The documentation says what the code does: every config key and its default.

docs/configuration.md documents each key of :class:`segvalue.config.Config` in a table row
``| `dotted.key` | default | meaning |``. Paths follow one convention (also explained in
that file):

- ``a.b``: key ``b`` of section ``a``;
- ``sources.<table>.path``: a mapping whose keys you choose (any ``<word>`` placeholder);
- ``kpis.targets[].kpi``: a key of each list item;
- ``segments.schemes[type=rfm].bins``: a key of the list items of one ``type``;
- ``<condition>.field``: a key of a rule condition (``when``, ``need``), which nests.

The default cell is a YAML literal in backticks (compared with the model's default),
``required``, or, only where the model's default is unset (None) or a list of named items,
words that say what happens (a list's item names must appear in them).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from segvalue.config import AllOf, AnyOf, Condition, Config, NotOf

DOCS = Path(__file__).parents[1] / "docs"
CONFIGURATION = DOCS / "configuration.md"
CONDITIONS = (Condition, AllOf, AnyOf, NotOf)
README = Path(__file__).parents[1] / "README.md"


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> list[Any]:
    annotation = _strip(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [_strip(a) for a in typing.get_args(annotation)]
    return [annotation]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _type_tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    if field is None or typing.get_origin(field.annotation) is not typing.Literal:
        return None
    tags = typing.get_args(field.annotation)
    # several types share one model (rule schemes): a placeholder such as <rule type>
    return str(tags[0]) if len(tags) == 1 else "<" + "|".join(map(str, tags)) + ">"


def _nested(annotation: Any, path: str) -> Iterator[tuple[str, type[BaseModel]]]:
    """(prefix, model) for every model reachable inside one field's type."""
    for member in _members(annotation):
        origin = typing.get_origin(member)
        if _is_model(member):
            if issubclass(member, CONDITIONS):
                continue  # the condition grammar nests: documented once as <condition>
            tag = _type_tag(member)
            if tag and path.endswith("[]"):
                yield f"{path[:-2]}[type={tag}].", member
            else:
                yield f"{path}.", member
        elif origin is list:
            yield from _nested(typing.get_args(member)[0], f"{path}[]")
        elif origin is dict:
            yield from _nested(typing.get_args(member)[1], f"{path}.<name>")


def config_keys(
    model: type[BaseModel] = Config, prefix: str = ""
) -> Iterator[tuple[str, Any, bool]]:
    """(dotted path, field info, is a section) for every key, recursively."""
    for name, info in model.model_fields.items():
        if info.exclude:
            continue
        path = prefix + (info.alias or name)
        section = _is_model(_strip(info.annotation))
        yield path, info, section
        for sub_prefix, sub in _nested(info.annotation, path):
            yield from config_keys(sub, sub_prefix)


def all_config_keys() -> dict[str, tuple[Any, bool]]:
    keys = {path: (info, section) for path, info, section in config_keys()}
    for model in CONDITIONS:
        for path, info, section in config_keys(model, "<condition>."):
            keys[path] = (info, section)
    return keys


def _normal(path: str) -> str:
    return re.sub(r"<[^>]+>", "<>", path)


def documented_rows() -> dict[str, str]:
    """Normalised key -> default cell, from every ``| `key` | default | ... |`` row."""
    rows: dict[str, str] = {}
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `([^`]+)` \| ([^|]*) \|", line)
        if match:
            rows[_normal(match.group(1))] = match.group(2).strip()
    return rows


def _expected_default(info: Any) -> Any:
    value = info.default_factory() if info.default_factory is not None else info.default
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list):
        return [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    if isinstance(value, tuple):
        return list(value)
    return getattr(value, "value", value)  # enums


def test_every_config_key_is_documented() -> None:
    rows = documented_rows()
    missing = [
        path
        for path, (_, section) in all_config_keys().items()
        if not section and _normal(path) not in rows
    ]
    assert not missing, (
        f"docs/configuration.md lacks a row | `key` | default | meaning | for: {missing}"
    )


def test_documented_keys_exist() -> None:
    keys = {_normal(path) for path in all_config_keys()}
    unknown = [key for key in documented_rows() if key not in keys]
    assert not unknown, f"docs/configuration.md documents keys the config does not have: {unknown}"


def _check_default(path: str, info: Any, cell: str) -> str | None:
    """None when the documented default agrees with the model, else the problem."""
    if info.is_required():
        return None if cell == "required" else f"{path}: required, documented as {cell!r}"
    expected = _expected_default(info)
    literal = re.fullmatch(r"`([^`]*)`", cell)
    if literal is None:
        if expected is None:
            return None  # words saying what an unset key means
        names = [item.get("name") for item in expected] if isinstance(expected, list) else []
        if names and all(isinstance(n, str) and n in cell for n in names):
            return None
        return f"{path}: default {expected!r} must be written as a YAML literal in backticks"
    text = literal.group(1)
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = PydanticUndefined
    if parsed == expected or text == str(expected):
        return None
    return f"{path}: documented default {text!r}, the code has {expected!r}"


def test_documented_defaults_equal_the_code() -> None:
    rows = documented_rows()
    problems = [
        problem
        for path, (info, section) in all_config_keys().items()
        if not section and _normal(path) in rows
        if (problem := _check_default(path, info, rows[_normal(path)]))
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("cell", "default", "agrees"),
    [("`52`", 52.0, True), ("`53`", 52.0, False), ("`week`", "week", True), ("none", 1, False)],
)
def test_the_default_check_can_fail(cell: str, default: Any, agrees: bool) -> None:
    from pydantic.fields import FieldInfo

    assert (_check_default("k", FieldInfo(default=default), cell) is None) is agrees


def test_readme_quick_start_names_real_make_targets() -> None:
    makefile = (README.parent / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z]+):", makefile, re.MULTILINE))
    quick_start = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^make (\w+)", quick_start, re.MULTILINE)
    assert commands and set(commands) <= targets
