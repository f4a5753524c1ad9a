"""Shared machinery: load the grammars, run a parse, and turn every Lark failure into an `ExprError`.

Each language is a `.lark` file in `grammars/` (read with importlib.resources) built once into an LALR
parser with positions. A syntax error is first matched against a table of malformed examples
(Lark's `match_examples`, as in its `error_reporting_lalr.py`); when none matches, the message is built
from the offending token and what the parser expected there.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any, TypeVar

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import PatternStr
from lark.load_grammar import PackageResource

from scenariokit.compile.diagnostics import Span
from scenariokit.compile.expr.errors import ExprError, blank_span, end_of, span_at
from scenariokit.compile.expr.units import KIND_NAMES, Quantity, UnitError, quantity

T = TypeVar("T")

_GRAMMARS = resources.files("scenariokit.compile.expr").joinpath("grammars")

# (message, hint) -> malformed examples that fail in the same parser state. `{token}` in a message is
# replaced by the offending text.
Examples = Sequence[tuple[tuple[str, str | None], Sequence[str]]]

_TERMINAL_NAMES = {
    "DURATION": "a duration",
    "RATE": "a rate",
    "PERCENT": "a percentage",
    "NUMBER": "a number",
    "NAME": "a name",
    "COMPARE": "a comparison",
    "$END": "the end",
}


def _import_grammar(base_path: object, grammar_path: str) -> tuple[PackageResource, str]:
    """Lark import hook: `%import units (...)` reads grammars/units.lark from this package."""
    resource = _GRAMMARS.joinpath(grammar_path)
    if not resource.is_file():
        raise OSError(grammar_path)
    return PackageResource("scenariokit.compile.expr", f"grammars/{grammar_path}"), resource.read_text(
        encoding="utf-8"
    )


@functools.cache
def parser(name: str) -> Lark:
    """The LALR parser for grammars/<name>.lark, built on first use."""
    text = _GRAMMARS.joinpath(f"{name}.lark").read_text(encoding="utf-8")
    return Lark(
        text, parser="lalr", propagate_positions=True, maybe_placeholders=True, import_paths=[_import_grammar]
    )


def parse(
    name: str,
    text: str,
    span: Span,
    transformer: Transformer[Token, T],
    examples: Examples,
    empty: tuple[str, str | None] | None = None,
) -> T:
    """Parse `text` with grammar `name` and transform it; every failure becomes an `ExprError`. `empty`:
    the (message, hint) for a blank text, refused before the grammar's less helpful "unexpected the end"."""
    if empty is not None and not text.strip():
        raise ExprError(empty[0], blank_span(span, text), empty[1])
    lark = parser(name)
    try:
        tree = lark.parse(text)
    except UnexpectedInput as exc:
        raise syntax_error(exc, name, text, span, examples) from None
    except LarkError as exc:  # pragma: no cover - any other Lark failure is still the user's input
        raise ExprError(f"cannot read `{text.strip()}`: {exc}", span_at(span, text, 0, len(text))) from None
    try:
        return transformer.transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, ExprError):
            raise exc.orig_exc from None
        raise exc.orig_exc from exc


def syntax_error(exc: UnexpectedInput, name: str, text: str, span: Span, examples: Examples) -> ExprError:
    lark = parser(name)
    if isinstance(exc, UnexpectedToken) and exc.token.type == "$END":
        start, end = end_of(text), end_of(text) + 1
        shown = "the end"
    elif isinstance(exc, UnexpectedToken):
        start, end = exc.token.start_pos or 0, exc.token.end_pos or 0
        shown = f"`{exc.token}`"
    else:
        start = exc.pos_in_stream or 0
        end = _word_end(text, start)
        shown = f"`{text[start:end]}`"
    where = span_at(span, text, start, end)
    spaced = _spaced_unit(text, start)
    if spaced:
        return ExprError("a unit goes right after its number, without a space", where, f"write {spaced}")
    label = _match(exc, name, examples)
    if label is not None:
        message, hint = label
        return ExprError(message.replace("{token}", shown), where, hint)
    return _generic(exc, lark, shown, where)


def _match(exc: UnexpectedInput, name: str, examples: Examples) -> tuple[str, str | None] | None:
    """The label of the example that fails like `exc` does: Lark's `match_examples`, restated.

    Same algorithm (same parser state and, for token errors, the same accepted tokens; then the same token,
    else the same token type, else the first example in that state wins), but calling it directly is not
    possible: with `use_accepts=True`, lark 1.3.1 formats a debug message with `%d` of a ParserState and
    raises TypeError whenever two errors share a state but not their accepted tokens; and without it, a
    value followed by the end of the text fails in the same state inside `f(1` and inside `f([1`.
    """
    if exc.state is None:
        return None
    token = getattr(exc, "token", None)
    candidate: tuple[str, str | None] | None = None
    by_type = False
    for label, malformed in examples:
        for example in malformed:
            other = _example_error(name, example)
            if other is None or other.state != exc.state or _accepts(other) != _accepts(exc):
                continue
            other_token = getattr(other, "token", None)
            if token is not None and other_token is not None:
                if other_token == token and other_token.type == token.type:
                    return label
                if other_token.type == token.type and not by_type:
                    candidate, by_type = label, True
            if candidate is None:
                candidate = label
    return candidate


def _accepts(exc: UnexpectedInput) -> frozenset[str] | None:
    """The tokens the parser would take where `exc` happened (None for lexer errors)."""
    if not isinstance(exc, UnexpectedToken) or exc.interactive_parser is None:
        return None
    try:
        return frozenset(exc.accepts)
    except LarkError:  # pragma: no cover - defensive
        return None


@functools.cache
def _example_error(name: str, example: str) -> UnexpectedInput | None:
    """How a malformed example fails, computed once: errors are matched against these."""
    try:
        parser(name).parse(example)
    except UnexpectedInput as exc:
        return exc
    return None


def _generic(exc: UnexpectedInput, lark: Lark, shown: str, where: Span) -> ExprError:
    expected = _describe(_expected(exc), lark)
    message = f"unexpected {shown}" + (f": expected {expected}" if expected else "")
    hint = "the value needs no quotes inside it" if shown[1:2] in ("'", '"') else None
    return ExprError(message, where, hint)


def _spaced_unit(text: str, start: int) -> str | None:
    """`5s` when the failure is at the `s` of `5 s`: a unit written apart from its number."""
    number = re.search(r"(\d+(?:\.\d+)?)[ \t]+$", text[:start])
    unit = re.match(r"(ms|us|µs|min|h|m|s|%|/[A-Za-z]+)(?![A-Za-z0-9_])", text[start:])
    return number.group(1) + unit.group(1) if number and unit else None


def _expected(exc: UnexpectedInput) -> Iterable[str]:
    if isinstance(exc, UnexpectedToken):
        return exc.accepts or exc.expected
    if isinstance(exc, UnexpectedCharacters):
        return exc.allowed or ()
    return ()


def _describe(names: Iterable[str], lark: Lark) -> str:
    phrases: list[str] = []
    # Imported terminals are namespaced (calls__DURATION); anonymous ones (__ANON_0) are looked up as is.
    by_base = {n.split("__", 1)[1] if "__" in n and not n.startswith("__") else n: n for n in names}
    bare = set(by_base) - {"BAD_QUANTITY"}
    if {"DURATION", "RATE", "PERCENT", "NUMBER"} <= bare:
        phrases.append("a value")
        bare -= {"DURATION", "RATE", "PERCENT", "NUMBER", "GROWTH"}
    for name in sorted(bare):
        if name in _TERMINAL_NAMES:
            phrases.append(_TERMINAL_NAMES[name])
            continue
        try:
            pattern = lark.get_terminal(by_base[name]).pattern
        except KeyError:
            continue
        if isinstance(pattern, PatternStr):
            phrases.append(f"`{pattern.value}`")
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " or " + phrases[-1]


def _word_end(text: str, start: int) -> int:
    match = re.compile(r"[^\s,()\[\]]+").match(text, start)
    return match.end() if match else start + 1


class ValueTransformer(Transformer[Token, Any]):
    """Base transformer: knows the text and span, and turns `value` nodes into `Quantity`s."""

    def __init__(self, text: str, span: Span) -> None:
        super().__init__()
        self.text = text
        self.span = span

    def at(self, start: int, end: int | None = None) -> Span:
        return span_at(self.span, self.text, start, end)

    def error(self, message: str, start: int, end: int | None = None, hint: str | None = None) -> ExprError:
        return ExprError(message, self.at(start, end), hint)

    def value(self, children: list[Token]) -> Quantity:
        (token,) = children
        start = token.start_pos or 0
        try:
            return quantity(token.type, str(token), start)
        except UnitError as exc:
            raise self.error(exc.message, start, start + len(token), exc.hint) from None

    # -- checks shared by the languages: each raises with the fix for the value that was written --

    def duration(self, q: Quantity, what: str = "a duration") -> float:
        if q.kind == "duration":
            return q.value
        if q.kind == "number":
            raise self.error(f"{what} needs a unit", q.start, q.end, duration_hint(q.number_text))
        raise self.error(
            f"expected {what}, got {KIND_NAMES[q.kind]} `{q.text}`",
            q.start,
            q.end,
            "durations look like 500ms, 2s, 1m30s",
        )

    def level(self, q: Quantity) -> float:
        """A curve level: a number (users, or requests/s) or a rate literal (`50/s`)."""
        if q.kind in ("number", "rate"):
            return q.value
        raise self.error(
            f"expected a level, got {KIND_NAMES[q.kind]} `{q.text}`",
            q.start,
            q.end,
            "a level is a number of users (closed model) or requests/s (open model): 50 or 50/s",
        )


def duration_hint(number: str) -> str:
    return f"durations need a unit: {number}s (or 500ms, 1m)"


def whole(text: str) -> tuple[int, int]:
    """Offsets of `text` without its surrounding blanks."""
    start = len(text) - len(text.lstrip())
    return start, max(start, end_of(text))
