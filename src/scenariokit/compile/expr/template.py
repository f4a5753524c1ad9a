"""Value templates: strings in request bodies and headers that pull in data and secrets.

    {images}           the data set's default field (for images: a data: URL)
    {images.text}      one field of the data set's current record
    ${env:API_KEY}     an environment variable, read when the test runs
    {{  }}             literal `{` and `}`  (so `${{` is a literal `${`)

Names: data sets and fields are `[A-Za-z_][A-Za-z0-9_-]*`; environment variables `[A-Za-z_][A-Za-z0-9_]*`.
A hand-written scanner rather than a grammar: everything outside a reference is literal text, which is
simpler to say with a regex than with a grammar's ignore rules. Data set and field names are checked by the
caller, who knows the data sets. The parts are IR values; `lower` turns them into the IR's `Text` (a plain
string, or a `Template` whose parts the engines' runtimes only join).
"""

from __future__ import annotations

import re

from scenariokit.compile.diagnostics import UNKNOWN_SPAN, Span
from scenariokit.compile.expr.errors import ExprError, guarded, span_at
from scenariokit.compile.ir import DataRef, EnvRef, LiteralText, TemplatePart

__all__ = ["DataRef", "EnvRef", "LiteralText", "TemplatePart", "parse_template"]

_DATA_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_DATA_REF = re.compile(rf"({_DATA_NAME})(?:\.({_DATA_NAME}))?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LITERAL = re.compile(r"[^{}$]+")
_BRACES_HINT = "for a literal brace write {{ or }}"


class _Scanner:
    def __init__(self, text: str, span: Span) -> None:
        self.text = text
        self.span = span
        self.parts: list[TemplatePart] = []
        self.literal: list[str] = []
        self.literal_start = 0

    def at(self, start: int, end: int | None = None) -> Span:
        return span_at(self.span, self.text, start, end)

    def add_literal(self, pos: int, text: str) -> None:
        if not self.literal:
            self.literal_start = pos
        self.literal.append(text)

    def flush(self, end: int) -> None:
        if self.literal:
            self.parts.append(LiteralText("".join(self.literal), self.at(self.literal_start, end)))
            self.literal = []

    def scan(self) -> list[TemplatePart]:
        text, pos = self.text, 0
        while pos < len(text):
            if match := _LITERAL.match(text, pos):
                self.add_literal(pos, match.group(0))
                pos = match.end()
            elif text.startswith(("{{", "}}"), pos):
                self.add_literal(pos, text[pos])
                pos += 2
            elif text.startswith("${", pos) and not text.startswith("${{", pos):
                pos = self._env(pos)
            elif text[pos] == "$":
                self.add_literal(pos, "$")
                pos += 1
            elif text[pos] == "{":
                pos = self._data(pos)
            else:  # a lone "}"
                raise ExprError("unmatched `}`", self.at(pos), _BRACES_HINT)
        self.flush(len(text))
        return self.parts

    def _close(self, start: int, opener: str, example: str) -> int:
        """The offset of the `}` closing the reference at `start`, or an error for an unclosed one."""
        close = self.text.find("}", start)
        inner_open = self.text.find("{", start + len(opener))
        if close == -1 or (inner_open != -1 and inner_open < close):
            raise ExprError(
                f"unclosed `{opener}`",
                self.at(start, start + len(opener)),
                f"close it: {example}; {_BRACES_HINT}",
            )
        return close

    def _data(self, start: int) -> int:
        close = self._close(start, "{", "{images}")
        inner = self.text[start + 1 : close]
        where = self.at(start, close + 1)
        if not inner.strip():
            raise ExprError(
                "empty reference `{}`", where, f"write {{dataset}} or {{dataset.field}}; {_BRACES_HINT}"
            )
        match = _DATA_REF.fullmatch(inner)
        if not match:
            raise ExprError(
                f"`{{{inner}}}` is not a data reference",
                where,
                f"write {{dataset}} or {{dataset.field}}; {_BRACES_HINT}",
            )
        self.flush(start)
        self.parts.append(DataRef(match.group(1), match.group(2), where))
        return close + 1

    def _env(self, start: int) -> int:
        close = self._close(start, "${", "${env:API_KEY}")
        inner = self.text[start + 2 : close]
        where = self.at(start, close + 1)
        source, colon, name = inner.partition(":")
        if source != "env" or not colon:
            raise ExprError(
                f"`${{{inner}}}` is not a reference: only ${{env:NAME}} is",
                where,
                "e.g. ${env:API_KEY}; for a literal `${` write `${{`",
            )
        if not name:
            raise ExprError("empty environment variable name", where, "e.g. ${env:API_KEY}")
        if not _ENV_NAME.fullmatch(name):
            name_start = start + len("${env:")
            raise ExprError(
                f"`{name}` is not an environment variable name",
                self.at(name_start, close),
                "names are letters, digits and _, not starting with a digit: API_KEY",
            )
        self.flush(start)
        self.parts.append(EnvRef(name, where))
        return close + 1


@guarded
def parse_template(text: str, span: Span = UNKNOWN_SPAN) -> list[TemplatePart]:
    """Split a template into literal text, data references and environment references."""
    return _Scanner(text, span).scan()
