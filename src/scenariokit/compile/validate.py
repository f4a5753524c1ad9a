"""Stage 2b: run the pydantic models over parsed YAML and turn their errors into positioned diagnostics.

pydantic reports a `loc` path per error; the parse stage's SourceMap turns that path into a line and
column. Union branches that cannot match the value's YAML type are dropped so one mistake gives one
message, and every message says how to fix it.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from scenariokit.compile.diagnostics import DiagnosticBag, did_you_mean
from scenariokit.compile.model import ScenarioSpec
from scenariokit.compile.parse import Document, Path_

_TYPE_WORDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping (`key: value` lines)",
    "model_type": "a mapping (`key: value` lines)",
    "model_attributes_type": "a mapping (`key: value` lines)",
    "list_type": "a list (`- item` lines)",
}


def validate_spec(doc: Document) -> ScenarioSpec:
    bag = DiagnosticBag()
    if not isinstance(doc.data, dict):
        bag.error(
            doc.source.value(()),
            "a scenario must be a mapping of sections",
            "start with `version: 1`, `name:`, `target:`, `load:` and `requests:`",
        )
        bag.raise_if_errors()
    try:
        return ScenarioSpec.model_validate(doc.data)
    except ValidationError as exc:
        _report(exc, doc, bag)
    bag.raise_if_errors()
    raise AssertionError("unreachable: validation failed without diagnostics")


def _report(exc: ValidationError, doc: Document, bag: DiagnosticBag) -> None:
    seen: set[tuple[Path_, str]] = set()
    for error in exc.errors(include_url=False):
        resolved = _resolve(error["loc"], doc.data)
        if resolved is None:
            continue  # a union branch that does not fit the value's type
        path, tail = resolved
        key = (path, error["type"])
        if key in seen:
            continue
        seen.add(key)
        _report_one(error, path, tail, doc, bag)


def _resolve(loc: tuple[str | int, ...], data: Any) -> tuple[Path_, str | int | None] | None:
    """Map a pydantic loc onto a path in the data, skipping union tags. Returns (path, last key)."""
    path: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if (isinstance(current, dict) and part in current) or (
            isinstance(current, list) and isinstance(part, int) and part < len(current)
        ):
            path.append(part)
            current = current[part]
        elif last and isinstance(current, dict):
            return tuple(path), part  # a missing or unknown key named by the loc
        elif isinstance(part, str) and not _tag_fits(part, current):
            return None
    return tuple(path), None


def _tag_fits(tag: str, value: Any) -> bool:
    if tag.startswith(("function-", "constrained-")):
        return True
    if tag in ("str",) or tag.startswith("literal["):
        return isinstance(value, str)
    if tag in ("int", "float"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tag == "bool":
        return isinstance(value, bool)
    if tag.startswith("list["):
        return isinstance(value, list)
    if tag.startswith("dict[") or tag[:1].isupper():
        return isinstance(value, dict)
    return True


def _report_one(error: Any, path: Path_, tail: str | int | None, doc: Document, bag: DiagnosticBag) -> None:
    kind: str = error["type"]
    source = doc.source
    if kind == "extra_forbidden" and tail is None and path:
        path, tail = path[:-1], path[-1]  # the unknown key is in the data, so the path reached it
    if kind == "extra_forbidden" and tail is not None:
        allowed = _allowed_keys(path)
        hint = did_you_mean(str(tail), allowed) or f"allowed here: {', '.join(sorted(allowed))}"
        bag.error(source.key((*path, tail)), f"unknown key `{tail}`", hint)
    elif kind == "missing" and tail is not None:
        where = f"in `{_dotted(path)}`" if path else "at the top level"
        bag.error(
            source.key(path) if path else source.value(()),
            f"missing required key `{tail}` {where}",
            _missing_hint(str(tail)),
        )
    elif kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        options = [o.strip().strip("'") for o in expected.replace(" or ", ",").split(",") if o.strip()]
        got = _value_at(doc.data, path)
        hint = did_you_mean(str(got), options) or f"use one of: {expected}"
        bag.error(source.text(path), f"`{got}` is not allowed for `{_dotted(path)}`", hint)
    elif kind in _TYPE_WORDS:
        got = _describe(_value_at(doc.data, path))
        bag.error(source.text(path), f"`{_dotted(path)}` must be {_TYPE_WORDS[kind]}, not {got}")
    else:
        message = error["msg"].removeprefix("Value error, ")
        bag.error(source.text(path), f"`{_dotted(path)}`: {message[0].lower()}{message[1:]}")


def _missing_hint(key: str) -> str | None:
    examples = {
        "version": "add `version: 1` at the top",
        "name": "add `name: my-scenario`",
        "target": "add `target: {kind: openai-chat, base_url: embedded, model: ocr}`",
        "load": "add `load: {curve: ramp(0, 10, 30s) -> hold(1m)}`",
        "requests": "add `requests:` with at least one named request",
        "curve": "add `curve: ramp(0, 10, 30s) -> hold(1m)`",
        "source": "add `source: builtin:text-cards`",
    }
    return examples.get(key)


def _allowed_keys(path: Path_) -> set[str]:
    model = _model_at(path)
    if model is None:
        return set()
    return {f.alias or name for name, f in model.model_fields.items()}


def _model_at(path: Path_) -> type[BaseModel] | None:
    """The pydantic model that describes the mapping at `path`."""
    annotation: Any = ScenarioSpec
    for part in path:
        annotation = _child_annotation(annotation, part)
        if annotation is None:
            return None
    return next(iter(_models_in(annotation)), None)


def _child_annotation(annotation: Any, part: str | int) -> Any:
    """The annotation of the value one step below `annotation` (a model field, dict value or list item)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = next((f for n, f in annotation.model_fields.items() if (f.alias or n) == part), None)
        return field.annotation if field else None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        return args[1]
    if origin is list:
        return args[0]
    if origin in (typing.Annotated,):
        return _child_annotation(args[0], part)
    if origin in (typing.Union, types.UnionType):
        return next((c for a in args if (c := _child_annotation(a, part)) is not None), None)
    return None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Annotated, typing.Union, types.UnionType):
        return [m for a in args for m in _models_in(a)]
    return []


def _value_at(data: Any, path: Path_) -> Any:
    for part in path:
        data = data[part]
    return data


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return f"the number `{value}`"
    return f"`{value}`"


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path) or "<top>"
