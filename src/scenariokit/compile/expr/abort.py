"""Abort rules (`abort_when:`) -> `ir.AbortRule`.

    rule    = metric comparison threshold over DURATION
    metric  = error_rate | success_rate
    compare = < | <= | > | >=

`error_rate > 20% over 10s` ends the run once more than 20% of the requests of the trailing 10 s failed
(run/pipeline.py, `AbortWhen`). The threshold is a percentage or a fraction; the window 1 s to 1 h. The
rates are counted over requests as they complete, a point value on the window (not a verdict with bounds:
the rule stops a run whose outcome is already plain, and the SLOs still judge what was measured).
"""

from __future__ import annotations

from typing import Any, Literal, cast

from lark import Token

from scenariokit.compile.diagnostics import UNKNOWN_SPAN, Span, did_you_mean
from scenariokit.compile.expr import _parsing
from scenariokit.compile.expr._parsing import ValueTransformer, whole
from scenariokit.compile.expr.errors import guarded
from scenariokit.compile.expr.quantity import fraction
from scenariokit.compile.expr.units import Quantity
from scenariokit.compile.ir import AbortRule

AbortMetric = Literal["error_rate", "success_rate"]
AbortOp = Literal["<", "<=", ">", ">="]
METRICS = ("error_rate", "success_rate")
OPERATORS = ("<", "<=", ">", ">=")
MIN_WINDOW_S, MAX_WINDOW_S = 1.0, 3600.0
_EXAMPLE = "error_rate > 20% over 10s"

_EXAMPLES: _parsing.Examples = [
    (
        ("an abort rule starts with a metric: error_rate or success_rate", f"e.g. {_EXAMPLE}"),
        ["> 20%", "20% > 1", "over 10s"],
    ),
    (
        ("expected a comparison: <, <=, >, >=", f"e.g. {_EXAMPLE}"),
        ["error_rate 20%", "error_rate", "error_rate over 10s", "error_rate x"],
    ),
    (
        ("expected a threshold after the comparison", f"e.g. {_EXAMPLE}"),
        ["error_rate >", "error_rate > over"],
    ),
    (
        ("an abort rule needs its window: `over 10s`", f"e.g. {_EXAMPLE}"),
        ["error_rate > 20%", "error_rate > 20% 10s", "error_rate > 20% for 10s", "error_rate > 20% during x"],
    ),
    (("expected the window's length after `over`", f"e.g. {_EXAMPLE}"), ["error_rate > 20% over"]),
    (
        ("{token} is extra: a rule ends with its window", "write one rule per list item"),
        ["error_rate > 20% over 10s x", "error_rate > 20% over 10s 5s"],
    ),
]


class _AbortTransformer(ValueTransformer):
    def start(self, children: list[Any]) -> AbortRule:
        name, op_token, threshold, window = children
        metric = self._metric(cast(Token, name))
        op = self._operator(cast(Token, op_token))
        value = fraction(self, cast(Quantity, threshold), "a percentage")
        window_s = self.duration(cast(Quantity, window), "the window")
        if not MIN_WINDOW_S <= window_s <= MAX_WINDOW_S:
            q = cast(Quantity, window)
            raise self.error(
                f"a window of {q.text} is out of range", q.start, q.end, "use 1s to 1h, e.g. over 10s"
            )
        start, end = whole(self.text)
        return AbortRule(
            cast(AbortMetric, metric),
            cast(AbortOp, op),
            value,
            window_s,
            self.text.strip(),
            self.at(start, end),
        )

    def _metric(self, token: Token) -> str:
        name, start = str(token), token.start_pos or 0
        if name not in METRICS:
            hint = did_you_mean(name, METRICS) or "abort rules read error_rate or success_rate"
            raise self.error(f"`{name}` cannot end a run", start, start + len(name), hint)
        return name

    def _operator(self, token: Token) -> str:
        op, start = str(token), token.start_pos or 0
        if op not in OPERATORS:
            fix = {"=<": "<=", "=>": ">="}.get(op, ">")
            raise self.error(f"`{op}` is not a comparison here", start, start + len(op), f"write {fix}")
        return op


@guarded
def parse_abort(text: str, span: Span = UNKNOWN_SPAN) -> AbortRule:
    """An abort rule -> `AbortRule` (see the module docstring for the grammar)."""
    empty = ("empty abort rule", f"e.g. {_EXAMPLE}")
    rule: AbortRule = _parsing.parse("abort", text, span, _AbortTransformer(text, span), _EXAMPLES, empty)
    return rule
