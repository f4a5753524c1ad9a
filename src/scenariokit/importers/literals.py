"""Values written as literals in a locustfile, read from the tree (never evaluated).

Only what a reader can see without running anything is a value: strings (f-strings without a `{}`
field), numbers, booleans, None, and dicts, lists and tuples of them. Anything else (a name, a call, an
f-string with a variable, `"a" + b`) is `Untranslatable`, naming the node, so the importer can say where.
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any

# Deeper literals are refused: real request bodies are a few levels deep, and every later stage (YAML,
# pydantic, the engines) walks values recursively.
MAX_LITERAL_DEPTH = 64


class Untranslatable(Exception):
    """A part of the locustfile that has no literal value: `node` is where, the message says what."""

    def __init__(self, node: ast.AST, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.hint = hint


def describe(node: ast.AST) -> str:
    """A short name for a node that is not a literal, for a warning."""
    if isinstance(node, ast.JoinedStr):
        return "an f-string with a variable"
    if isinstance(node, ast.Name):
        return f"the variable `{node.id}`"
    if isinstance(node, ast.Call):
        return "a function call"
    if isinstance(node, ast.Attribute):
        return "an attribute"
    if isinstance(node, ast.BinOp | ast.BoolOp | ast.IfExp | ast.Subscript):
        return "a computed value"
    return f"a {type(node).__name__} expression"


def literal(node: ast.AST, depth: int = 0) -> Any:
    """The Python value a literal node stands for (tuples become lists)."""
    if depth > MAX_LITERAL_DEPTH:
        raise Untranslatable(node, f"a value nested deeper than {MAX_LITERAL_DEPTH} levels")
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.JoinedStr) and all(_fixed_part(v) for v in node.values):
        return "".join(_part_text(v) for v in node.values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = literal(node.operand, depth + 1)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):  # `API + "/orders"` of constants
        left, right = literal(node.left, depth + 1), literal(node.right, depth + 1)
        if isinstance(left, str) and isinstance(right, str):
            return left + right
        raise Untranslatable(node, "a computed value (only text is joined with +)", "write the value out")
    if isinstance(node, ast.List | ast.Tuple):
        return [literal(item, depth + 1) for item in node.elts]
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise Untranslatable(node, "a dict with `**` unpacking (a computed value)")
        out = {}
        for key, item in zip(node.keys, node.values, strict=True):
            value = literal(key, depth + 1)  # type: ignore[arg-type]  # None was refused above
            if isinstance(value, list):
                raise Untranslatable(key, "a list or tuple as a dict key")  # type: ignore[arg-type]
            out[value] = literal(item, depth + 1)
        return out
    raise Untranslatable(
        node, f"{describe(node)} (only literal values are translated)", "write the value out"
    )


def _fixed_part(node: ast.AST) -> bool:
    """An f-string part known without running anything: text, or `{CONSTANT}` (a module constant the
    reader put in place), without a format spec."""
    if isinstance(node, ast.FormattedValue):
        return isinstance(node.value, ast.Constant) and node.format_spec is None
    return isinstance(node, ast.Constant)


def _part_text(node: ast.AST) -> str:
    if isinstance(node, ast.FormattedValue) and isinstance(node.value, ast.Constant):
        convert = {ord("r"): repr, ord("a"): ascii}.get(node.conversion, str)
        return convert(node.value.value)
    return str(node.value) if isinstance(node, ast.Constant) else ""


def string(node: ast.AST, what: str) -> str:
    value = literal(node)
    if not isinstance(value, str):
        raise Untranslatable(node, f"{what} is not a string", f"write {what} as a string literal")
    return value


def number(node: ast.AST, what: str) -> float:
    value = literal(node)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Untranslatable(node, f"{what} is not a finite number", f"write {what} as a number")
    return float(value)


def json_value(node: ast.AST) -> Any:
    """A `json=` argument as the JSON the request sends: what requests' `json.dumps(..., allow_nan=False)`
    makes of it (tuples as lists, numeric and None keys as strings); anything JSON cannot carry refused."""
    value = literal(node)
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise Untranslatable(node, f"a value JSON cannot carry ({exc})", "write the body as JSON") from None


def string_dict(node: ast.AST, what: str, numbers: bool = False) -> dict[str, str]:
    """A dict of strings (headers; with `numbers`, a form or query, whose numbers requests sends as text)."""
    value = literal(node)
    if not isinstance(value, dict):
        raise Untranslatable(node, f"{what} is not a dict literal", f"write {what} as a dict")
    out: dict[str, str] = {}
    for key, item in value.items():
        kinds = (str, int, float) if numbers else (str,)
        if not isinstance(key, str) or isinstance(item, bool) or not isinstance(item, kinds):
            raise Untranslatable(
                node, f"{what} holds {key!r}: {item!r}, not text", "use string keys and values"
            )
        out[key] = item if isinstance(item, str) else str(item)
    return out
