"""Stage 2b: run the pydantic models over parsed YAML and turn their errors into positioned diagnostics.

pydantic reports a `loc` path per error; the parse stage's SourceMap turns that path into a line and
column. Union branches that cannot match the value's YAML type are dropped so one mistake gives one
message, and every message says how to fix it.

Values sent to the target as written (JSON bodies, header names) are checked here too, before the models
run: YAML can write what JSON cannot hold (a date, a set, binary data, `.nan`, a number as a key), and such
a value would reach the generated scripts as code, or crash the compiler. Each is reported where it stands.
"""

from __future__ import annotations

import datetime
import math
import re
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, JsonValue, ValidationError

from scenariokit.compile.diagnostics import Diagnostic, DiagnosticBag, Span, did_you_mean
from scenariokit.compile.limits import (
    MAX_DATASET_NAME_CHARS,
    MAX_EXPR_CHARS,
    MAX_TEMPLATE_BRACES,
    MAX_USERS,
)
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
# What PyYAML counts as a line break (str.splitlines() counts more, so its line numbers would differ).
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
# Model fields whose mapping keys are sent as written (header names), like every key inside a JSON value.
_SENT_KEYS_FIELDS = frozenset({"headers"})
# Mappings whose keys are names with a pattern: what the name is, and how to write one.
_NAME_KEYS = {
    "data": (
        "a data set name",
        f"use letters, digits, `_` and `-`, starting with a letter or `_`, at most {MAX_DATASET_NAME_CHARS}"
        " characters (it is written `{name}` in templates and names the file data/<name>.json)",
    ),
}
# How to bring a value within its bounds, by field name.
_BOUND_HINTS = {
    "weight": "weights are relative (3 and 1 send 3 : 1), so small numbers say the same",
    "max_users": f"one machine runs at most {MAX_USERS} users; lower the rate or the expected latency",
    "pre_allocated_users": f"one machine runs at most {MAX_USERS} users",
}
_BOUND_KINDS = frozenset({"less_than_equal", "greater_than_equal", "less_than", "greater_than"})
# A flow's mistakes (`steps:`), by (pydantic's error kind, the key): how to write it instead.
_FLOW_HINTS = {
    ("extra_forbidden", "weight"): "a step is sent once per pick of its flow: put `weight` on the entry, "
    "beside `steps:`",
    ("extra_forbidden", "steps"): "flows do not nest: list every request of the flow as a step of its own",
    ("too_short", "steps"): "a flow needs at least one step; a single request needs no `steps:`",
    ("string_pattern_mismatch", "name"): "a step's name is letters, digits and `_`, joined by single `-` "
    "(its records are `<entry>.<name>`, which an SLO's `for` names)",
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
    not_json = _check_sent_values(doc, bag)
    _check_template_sizes(doc, doc.data, (), bag)
    try:
        spec = ScenarioSpec.model_validate(doc.data)
    except ValidationError as exc:
        _report(exc, doc, bag, not_json)
    else:
        bag.raise_if_errors()  # a set or a number key in a body passes the models: it was built as JSON
        return spec
    bag.raise_if_errors()
    raise AssertionError("unreachable: validation failed without diagnostics")


def _report(exc: ValidationError, doc: Document, bag: DiagnosticBag, not_json: set[Path_]) -> None:
    seen: set[tuple[Path_, str]] = set()
    for error in exc.errors(include_url=False):
        resolved = _resolve(error["loc"], doc.data)
        if resolved is None:
            continue  # a union branch that does not fit the value's type
        path, tail = resolved
        if any(path[: len(p)] == p for p in not_json):
            continue  # already reported, where it stands, by _check_sent_values
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
        if part == "[key]":  # the key just passed is what was wrong
            return tuple(path), part
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
    if tail == "[key]":
        what, hint = _NAME_KEYS.get(str(path[-2]) if len(path) > 1 else "", ("a name", None))
        bag.error(source.key(path), f"`{path[-1]}` is not {what}", hint)
    elif kind == "extra_forbidden" and tail is not None:
        allowed = _allowed_keys(path)
        hint = _flow_hint(kind, tail, path) or did_you_mean(str(tail), allowed)
        hint = hint or f"allowed here: {', '.join(sorted(allowed))}"
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
        value = _value_at(doc.data, path)
        hint = _quote_hint(value, _written(doc, source.value(path), value)) if kind == "string_type" else None
        bag.error(
            source.text(path), f"`{_dotted(path)}` must be {_TYPE_WORDS[kind]}, not {_describe(value)}", hint
        )
    elif kind in ("string_too_long", "too_long"):
        most = error.get("ctx", {}).get("max_length")
        hint = "no curve, duration or SLO needs this much; shorten it" if most == MAX_EXPR_CHARS else None
        unit = "items" if kind == "too_long" else "characters"  # a list's length counts its items
        bag.error(source.text(path), f"`{_dotted(path)}` is longer than {most} {unit}", hint)
    else:
        message = error["msg"].removeprefix("Value error, ")
        hint = _BOUND_HINTS.get(str(path[-1])) if kind in _BOUND_KINDS and path else None
        hint = hint or (_flow_hint(kind, path[-1], path[:-1]) if path else None)
        bag.error(source.text(path), f"`{_dotted(path)}`: {message[0].lower()}{message[1:]}", hint)


def _flow_hint(kind: str, key: str | int, parent: Path_) -> str | None:
    """A flow's hint (_FLOW_HINTS) for `key` in the mapping at `parent`: a request entry or a step."""
    in_flow = len(parent) >= 2 and parent[0] == "requests" and (len(parent) == 2 or parent[2] == "steps")
    return _FLOW_HINTS.get((kind, str(key))) if in_flow else None


def _quote_hint(value: Any, written: str) -> str | None:
    """How to make a scalar YAML read as something else (`2024-01-01`, `yes`, `404`) text."""
    if isinstance(value, bytes):
        return "remove the `!!binary` tag to keep the text as written"
    if isinstance(value, bool | int | float | datetime.date):
        return f'quote it to make it text: `"{written}"`'
    return None


# --- values sent as written -------------------------------------------------------------------------


def _check_template_sizes(doc: Document, value: Any, path: Path_, bag: DiagnosticBag) -> None:
    """A text with more braces than any template needs: finding its references would take minutes."""
    if isinstance(value, str):
        if value.count("{") + value.count("$") > MAX_TEMPLATE_BRACES:
            bag.error(
                doc.source.text(path),
                f"`{_dotted(path)}` holds more than {MAX_TEMPLATE_BRACES} `{{` and `$`",
                "a template needs a few references; put repeated data in a data set",
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_template_sizes(doc, item, (*path, key), bag)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_template_sizes(doc, item, (*path, i), bag)


def _check_sent_values(doc: Document, bag: DiagnosticBag) -> set[Path_]:
    """Report what JSON cannot hold in the values sent as written. Returns the paths of the JSON values
    found wanting, whose errors from the models (less precise) are then left out."""
    found: set[Path_] = set()
    for path, whole in _sent_as_written(ScenarioSpec, doc.data, ()):
        problems = list(_not_json(doc, _value_at(doc.data, path), path, keys_only=not whole))
        bag.extend(problems)
        if problems and whole:
            found.add(path)
    return found


def _sent_as_written(annotation: Any, data: Any, path: Path_) -> Iterator[tuple[Path_, bool]]:
    """Where the data holds a value the models declare as sent as written: a JSON value (True), or a map
    whose keys are sent as names (False: its values are text, which the models check)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is JsonValue:
        yield path, True
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(data, dict):
        for name, field in annotation.model_fields.items():
            key = field.alias or name
            if key in _SENT_KEYS_FIELDS and isinstance(data.get(key), dict):
                yield (*path, key), False
            elif key in data and key not in _SENT_KEYS_FIELDS:
                yield from _sent_as_written(field.annotation, data[key], (*path, key))
    elif origin is dict and isinstance(data, dict):
        for key, item in data.items():
            yield from _sent_as_written(args[1], item, (*path, key))
    elif origin is list and isinstance(data, list):
        for i, item in enumerate(data):
            yield from _sent_as_written(args[0], item, (*path, i))
    elif origin is typing.Annotated:
        yield from _sent_as_written(args[0], data, path)
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _sent_as_written(arg, data, path)


def _not_json(doc: Document, value: Any, path: Path_, keys_only: bool = False) -> Iterator[Diagnostic]:
    """A diagnostic for each part of `value` that JSON cannot hold, at the part's own position."""
    source = doc.source
    span = source.value(path)
    tag = source.tags.get(path)
    if tag is not None:
        if tag == "!!set":
            what, hint = "a YAML set (`!!set`)", "write a list instead: a `- item` line each"
        else:
            what, hint = f"a value tagged `{tag}`", f"remove the tag `{tag}`; JSON has no tags"
        yield Diagnostic(span, f"`{_dotted(path)}` is {what}, which JSON cannot hold", hint)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if (*path, key) in source.non_text_keys:
                written, key_value = source.non_text_keys[(*path, key)]
                yield Diagnostic(
                    source.key((*path, key)),
                    f"the key `{written}` in `{_dotted(path)}` is {_kind(key_value)}, not text",
                    f'quote it to make it text: `"{written}":`',
                )
            if not keys_only:
                yield from _not_json(doc, item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _not_json(doc, item, (*path, i))
    elif isinstance(value, float) and not math.isfinite(value):
        written = _written(doc, span, value)
        yield Diagnostic(
            span,
            f"`{_dotted(path)}` is `{written}` ({_kind(value)}), which JSON cannot hold",
            "JSON numbers are finite: write a number or null, or quote it to send the text",
        )
    elif not (value is None or isinstance(value, str | bool | int | float)):
        written = _written(doc, span, value)
        hint = _quote_hint(value, written) or "write it as text, a number, a list or a mapping"
        yield Diagnostic(span, f"`{_dotted(path)}` is {_kind(value)}, which JSON cannot hold", hint)


def _kind(value: Any) -> str:
    """What a YAML scalar was read as, in words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, float) and math.isnan(value):
        return "not a number"
    if isinstance(value, float) and math.isinf(value):
        return "infinity"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, datetime.datetime):
        return "a date and time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, bytes):
        return "binary data (`!!binary`)"
    return f"a {type(value).__name__}"


def _written(doc: Document, span: Span, value: Any) -> str:
    """A one-line scalar as written in the file (`2024-01-01 10:00:00`, `.NaN`), else as Python shows it."""
    lines = _LINE_BREAK.split(doc.text)
    if span.end_line == span.line and 0 < span.line <= len(lines):
        written = lines[span.line - 1][span.column - 1 : span.end_column - 1]
        return written.split(None, 1)[-1] if written.startswith("!") else written  # without a tag
    return str(value)


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
