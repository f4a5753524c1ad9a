"""`ExprError` and the arithmetic that turns a position inside a value into a `Span` in the file."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from scenariokit.compile.diagnostics import Diagnostic, Span

P = ParamSpec("P")
T = TypeVar("T")
INTERNAL_HINT = "this is a scenariokit bug; please report it with the value"


class ExprError(Exception):
    """A problem inside one expression value; `.diagnostic` points at the offending token."""

    def __init__(self, message: str, span: Span, hint: str | None = None) -> None:
        self.diagnostic = Diagnostic(span, message, hint)
        super().__init__(self.diagnostic.render())

    @property
    def message(self) -> str:
        return self.diagnostic.message

    @property
    def span(self) -> Span:
        return self.diagnostic.span

    @property
    def hint(self) -> str | None:
        return self.diagnostic.hint


def span_at(span: Span, text: str, start: int, end: int | None = None) -> Span:
    """The span of `text[start:end]` inside a value whose first character is at `span`.

    `start` and `end` are 0-based offsets into `text`; the result is clipped to the line `start` is on and is
    at least one column wide (so the end of the text can be pointed at).
    """
    start = max(0, min(start, len(text)))
    end = start + 1 if end is None else max(end, start)
    line_offset = text.count("\n", 0, start)
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    if line_end == -1:
        line_end = len(text)
    length = max(1, min(end, line_end) - start)
    return span.shifted(line_offset, start - line_start + 1, length)


def end_of(text: str) -> int:
    """The offset just after the last non-blank character: where "missing ..." errors point."""
    return len(text.rstrip())


def blank_span(span: Span, text: str) -> Span:
    """Where to point for an empty or blank value.

    Such a value can only be written quoted (`""`), and the caller's span is then the first character
    inside the quotes; there is no token to point at, so point at the value itself, from its opening quote.
    """
    column = max(1, span.column - 1)
    return Span(span.file, span.line, column, span.line, column + len(text) + 2)


def guarded(parse: Callable[P, T]) -> Callable[P, T]:
    """Make sure a parser lets nothing but `ExprError` out, even on its own bugs (reported as such)."""

    @functools.wraps(parse)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        text = args[0] if args else kwargs.get("text")
        span = args[1] if len(args) > 1 else kwargs.get("span")
        where = span if isinstance(span, Span) else Span("<unknown>", 0, 0)
        if not isinstance(text, str):
            raise ExprError(f"expected text, got {type(text).__name__}", where)
        try:
            return parse(*args, **kwargs)
        except ExprError:
            raise
        except Exception as exc:
            raise ExprError(
                f"cannot read `{text.strip()}` ({type(exc).__name__}: {exc})", where, INTERNAL_HINT
            ) from exc

    return wrapper
