"""Single values: durations (`1m30s`), rates (`50/s`) and fractions (`0.5%` or `0.005`)."""

from __future__ import annotations

from scenariokit.compile.diagnostics import UNKNOWN_SPAN, Span
from scenariokit.compile.expr import _parsing
from scenariokit.compile.expr._parsing import ValueTransformer, whole
from scenariokit.compile.expr.errors import ExprError, guarded, span_at
from scenariokit.compile.expr.units import KIND_NAMES, Quantity

_EXAMPLES: _parsing.Examples = [
    (("{token} is extra: write one value", None), ["1s 2s", "1s 2", "1s)", "1 2"]),
]


class _QuantityTransformer(ValueTransformer):
    def start(self, children: list[Quantity]) -> Quantity:
        return children[0]


def _quantity(text: str, span: Span, what: str, example: str) -> Quantity:
    if not text.strip():
        start, _ = whole(text)
        raise ExprError(f"empty {what}", span_at(span, text, start), f"write e.g. {example}")
    result: Quantity = _parsing.parse("quantity", text, span, _QuantityTransformer(text, span), _EXAMPLES)
    return result


@guarded
def parse_duration(text: str, span: Span = UNKNOWN_SPAN) -> float:
    """`500ms`, `1.5s`, `2m`, `1m30s`, `1h`, `250us`, `0s` -> seconds. A bare number is an error."""
    q = _quantity(text, span, "duration", "500ms, 2s, 1m")
    return _QuantityTransformer(text, span).duration(q)


@guarded
def parse_rate(text: str, span: Span = UNKNOWN_SPAN) -> float:
    """`50/s`, `0.5/s`, `3000/m`, `10/min`, `100/h` -> per second. A bare number is an error."""
    q = _quantity(text, span, "rate", "50/s, 3000/m")
    if q.kind == "rate":
        return q.value
    t = _QuantityTransformer(text, span)
    if q.kind == "number":
        n = q.number_text
        raise t.error("a rate needs a unit", q.start, q.end, f"rates need a unit: {n}/s, {n}/m or {n}/h")
    raise t.error(
        f"expected a rate, got {KIND_NAMES[q.kind]} `{q.text}`",
        q.start,
        q.end,
        "rates look like 50/s, 3000/m, 100/h",
    )


@guarded
def parse_fraction(text: str, span: Span = UNKNOWN_SPAN) -> float:
    """`0.5%` -> 0.005, `1%` -> 0.01, and a bare fraction `0.005` -> 0.005; between 0 and 1."""
    q = _quantity(text, span, "fraction", "0.5% or 0.005")
    return fraction(_QuantityTransformer(text, span), q)


@guarded
def parse_byte_rate(text: str, span: Span = UNKNOWN_SPAN) -> float:
    """`100KB/s`, `1.5MiB/s`, `500B/s` -> bytes per second (decimal kB, MB, GB; binary KiB, MiB, GiB)."""
    q = _quantity(text, span, "bandwidth", "100KB/s, 1MiB/s")
    if q.kind == "byte_rate":
        return q.value
    t = _QuantityTransformer(text, span)
    raise t.error(
        f"expected a bandwidth, got {KIND_NAMES[q.kind]} `{q.text}`",
        q.start,
        q.end,
        "bandwidths are bytes per second: 100KB/s, 1MiB/s, 500B/s",
    )


def fraction(t: ValueTransformer, q: Quantity, what: str = "a fraction") -> float:
    if q.kind not in ("percent", "number"):
        raise t.error(
            f"expected {what}, got {KIND_NAMES[q.kind]} `{q.text}`",
            q.start,
            q.end,
            "write a percentage (0.5%) or a fraction (0.005)",
        )
    if q.value > 1:
        hint = "100% is the most" if q.kind == "percent" else f"for a percentage write {q.number_text}%"
        raise t.error(f"`{q.text}` is more than 100%", q.start, q.end, hint)
    return q.value


__all__ = ["fraction", "parse_byte_rate", "parse_duration", "parse_fraction", "parse_rate"]
