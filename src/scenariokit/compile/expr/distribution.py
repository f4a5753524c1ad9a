"""Think-time distributions -> `ir.Distribution` (all parameters in seconds).

`none`; `constant(1s)` or a bare duration `1s`; `uniform(0.5s, 2.5s)` (alias `between`, Locust's name);
`exponential(mean=1s)` or `exponential(1s)`; `normal(mean=1s, sd=200ms)` or `normal(1s, 200ms)`.
Parameters may be given by position or by name: value / low, high / mean / mean, sd.
"""

from __future__ import annotations

from typing import Any

from lark import Token

from scenariokit.compile.diagnostics import UNKNOWN_SPAN, Span, did_you_mean
from scenariokit.compile.expr import _parsing
from scenariokit.compile.expr._calls import Call, CallTransformer
from scenariokit.compile.expr._parsing import whole
from scenariokit.compile.expr.errors import ExprError, blank_span, guarded
from scenariokit.compile.expr.units import Quantity, format_duration
from scenariokit.compile.ir import Distribution

PARAMS: dict[str, tuple[str, ...]] = {
    "none": (),
    "constant": ("value",),
    "uniform": ("low", "high"),
    "between": ("low", "high"),
    "exponential": ("mean",),
    "normal": ("mean", "sd"),
}
EXAMPLE = {
    "none": "none",
    "constant": "constant(1s)",
    "uniform": "uniform(0.5s, 2.5s)",
    "between": "between(0.5s, 2.5s)",
    "exponential": "exponential(mean=1s)",
    "normal": "normal(mean=1s, sd=200ms)",
}
KIND = {"between": "uniform"}

_EXAMPLES: _parsing.Examples = [
    (
        ("{token} is extra: a think time is one distribution", None),
        [
            "none none",
            "1s 2s",
            "constant(1s) 1",
            "constant(1s) constant(1s)",
            "constant(1s) (",
            "1s (",
            "1s)",
        ],
    ),
    (
        ("missing `)`", "e.g. uniform(0.5s, 2.5s)"),
        ["uniform(", "uniform(1s", "uniform(1s, 2s", "normal(mean=1s"],
    ),
    (
        ("missing `,` before {token}", None),
        ["uniform(1s 2s", "normal(mean=1s sd=1s", "uniform(1s, 2s 3s", "normal(1s, sd=1s 1"],
    ),
    (("an argument is missing before {token}", None), ["uniform(,", "uniform(1s,)", "uniform(1s, ,"]),
    (
        ("expected a value after `=`", "e.g. exponential(mean=1s)"),
        ["exponential(mean=)", "exponential(mean=,"],
    ),
    (
        ("named arguments need `=`", "e.g. exponential(mean=1s)"),
        ["exponential(mean 1s)", "exponential(mean)", "uniform(1s, high)", "uniform(low,"],
    ),
]


class _DistributionTransformer(CallTransformer):
    def start(self, children: list[Any]) -> Distribution:
        return self._call(children[0])

    def constant_value(self, children: list[Quantity]) -> Distribution:
        (q,) = children
        return Distribution("constant", (("value", self.duration(q)),), self.whole_span())

    def bare_name(self, children: list[Token]) -> Distribution:
        (name,) = children
        start = name.start_pos or 0
        if name == "none":
            return Distribution("none", (), self.whole_span())
        if name in PARAMS:
            raise self.error(f"{name} needs arguments: {EXAMPLE[str(name)]}", start, start + len(name))
        hint = did_you_mean(str(name), PARAMS) or "write none, 1s, " + ", ".join(
            EXAMPLE[k] for k in list(PARAMS)[1:]
        )
        raise self.error(f"unknown think time `{name}`", start, start + len(name), hint)

    def whole_span(self) -> Span:
        return self.at(*whole(self.text))

    def _call(self, call: Call) -> Distribution:
        if call.name not in PARAMS:
            raise self.unknown_function(call, list(PARAMS), "distribution")
        names = PARAMS[call.name]
        usage = EXAMPLE[call.name]
        given = self.check_named(call, names, usage)
        values: dict[str, Quantity] = {}
        for param, arg in zip(names, self.no_lists(call, call.positional), strict=False):
            values[param] = arg
        extra = self.no_lists(call, call.positional)[len(names) :]
        if extra:
            raise self.too_many(call, extra[0], usage)
        for param, named in given.items():
            if param in values:
                raise self.error(f"`{param}` is given twice", named.start, named.end)
            values[param] = named.value
        missing = [p for p in names if p not in values]
        if missing:
            raise self.error(f"{call.name} needs {' and '.join(missing)}: {usage}", call.start, call.end)
        seconds = {p: self.duration(values[p]) for p in names}
        self._check(call, seconds)
        kind = KIND.get(call.name, call.name)
        return Distribution(kind, tuple((p, seconds[p]) for p in names), self.whole_span())  # type: ignore[arg-type]

    def _check(self, call: Call, p: dict[str, float]) -> None:
        if "low" in p and p["low"] > p["high"]:
            low, high = format_duration(p["low"]), format_duration(p["high"])
            raise self.error(
                f"{call.name}'s low ({low}) is above its high ({high})",
                call.start,
                call.end,
                f"write {call.name}({high}, {low})",
            )
        if call.name == "exponential" and p["mean"] <= 0:
            raise self.error(
                "an exponential think time needs a mean above 0",
                call.start,
                call.end,
                "for no think time write none",
            )


@guarded
def parse_distribution(text: str, span: Span = UNKNOWN_SPAN) -> Distribution:
    """A think time -> `Distribution` with params value / low, high / mean / mean, sd (seconds)."""
    if not text.strip():
        raise ExprError("empty think time", blank_span(span, text), "write none, 1s or uniform(0.5s, 2.5s)")
    transformer = _DistributionTransformer(text, span)
    result: Distribution = _parsing.parse("distribution", text, span, transformer, _EXAMPLES)
    return result
