"""Source positions and the diagnostics every stage reports through.

Every stage (parse, model, expr, lower, backends) reports problems as `Diagnostic`s that carry a `Span`
into the scenario file. Problems are collected and raised once, as a `ScenarioError`, so a user sees
every mistake in one run (the sqlglot ErrorLevel.RAISE idea).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, order=True)
class Span:
    """A 1-based (line, column) range in a source file. `end_*` is exclusive."""

    file: str
    line: int
    column: int
    end_line: int = 0
    end_column: int = 0

    def shifted(self, line_offset: int, column: int, length: int = 1) -> Span:
        """A span for a position inside a one-line scalar that starts at this span.

        `line_offset` counts lines inside the scalar (0 for the first line); `column` is 1-based inside it.
        """
        col = self.column + column - 1 if line_offset == 0 else column
        return Span(self.file, self.line + line_offset, col, self.line + line_offset, col + length)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


UNKNOWN_SPAN = Span("<unknown>", 0, 0)


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    span: Span
    message: str
    hint: str | None = None
    severity: Severity = Severity.ERROR

    def render(self) -> str:
        text = f"{self.span}: {self.severity.value}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ScenarioError(Exception):
    """Raised once with every error found; exit code 2 at the command line."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.span, d.message))
        super().__init__("\n".join(d.render() for d in self.diagnostics))


@dataclass
class DiagnosticBag:
    """Collects diagnostics while a stage works; `raise_if_errors` ends the stage."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, span: Span, message: str, hint: str | None = None) -> None:
        self.items.append(Diagnostic(span, message, hint, Severity.ERROR))

    def warning(self, span: Span, message: str, hint: str | None = None) -> None:
        self.items.append(Diagnostic(span, message, hint, Severity.WARNING))

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.items.extend(diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.WARNING]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ScenarioError(self.errors)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """'did you mean `x`?' for the closest candidate, or None when nothing is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else None
