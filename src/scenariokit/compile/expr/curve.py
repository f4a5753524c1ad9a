"""Load curves: `ramp(0, 200, 1m) -> hold(3m) -> spike(600, 30s) as peak -> ramp(0, 30s)`.

Segments, chained with `->`, each move the level (users in a closed model, requests/s in an open one;
a rate literal such as `50/s` is also a level, in requests/s):

- `ramp(from, to, DURATION)`, `ramp(to, DURATION)` (from the current level), and the same with a RATE instead
  of the duration: how fast the level moves, so `ramp(10000, 100/s)` adds 100 per second and lasts 100 s.
  The last argument is always the duration or speed, so `ramp(0.5/s, 2/s)` ramps to 0.5/s at 2 per second.
- `hold(DURATION)` keeps the current level; `hold(level, DURATION)` sets it and holds.
- `spike(peak, DURATION)` jumps to `peak`, holds it for DURATION, and jumps back to the level before it;
  `spike(peak, DURATION, rise=5s)` ramps up and down over `rise` instead (it then lasts DURATION + 2 x rise).
- `steps(from, to, by, DURATION)` holds from, from+by, ... up to `to` (or down, when from > to), each for
  DURATION; `steps([1, 2, 4, 8], DURATION)` holds the listed levels.

The result is a piecewise-linear tuple of `ir.Stage`s. A level change that happens at once (a spike, a
`hold(level, ...)` or `ramp(from, ...)` that starts somewhere else, the next of the steps) is a
zero-duration stage. The curve starts at the first segment's own level: nothing jumps into the first
segment, except a spike, which rises from and returns to 0. Each stage's `span` covers its segment.

Labels, used by SLO windows (`p95(latency) < 1s during peak`):

- `... as NAME` labels a segment: `spike(600, 30s) as flash-sale`.
- Otherwise the label is the function name, numbered from the second segment of that kind on, counting
  every segment of the kind, labelled or not: `ramp -> hold -> hold -> ramp` is labelled
  `ramp, hold, hold#2, ramp#2`.
- Every stage of a segment (a spike's jumps, each of the steps) carries the segment's label and its
  kind, so `during peak` covers the whole spike and `during steps` every step. (The caller also accepts
  a kind as a window: `during spike` covers all spikes.) To judge one step alone, use a time window
  (`during 40s..60s`).
- A label may not be a function name (ramp, hold, spike, steps) and may not be used twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lark import Token
from lark.tree import Meta
from lark.visitors import v_args

from scenariokit.compile.diagnostics import UNKNOWN_SPAN, Span
from scenariokit.compile.expr import _parsing
from scenariokit.compile.expr._calls import Call, CallTransformer, ListArg
from scenariokit.compile.expr.errors import ExprError, blank_span, guarded
from scenariokit.compile.ir import Stage

FUNCTIONS = ("ramp", "hold", "spike", "steps")
USAGE = {
    "ramp": "ramp(0, 200, 1m), ramp(200, 1m) from the current level, or ramp(0, 200, 10/s) at 10 per second",
    "hold": "hold(3m) at the current level, or hold(50, 3m)",
    "spike": "spike(600, 30s), or spike(600, 30s, rise=5s)",
    "steps": "steps(1, 8, 1, 20s), or steps([1, 2, 4, 8], 20s)",
}
MAX_STEPS = 1000

# Malformed examples for `match_examples`. An LALR parser fails in a different state after each kind of
# value and argument position, so the cut-off calls are generated for all of them.
_VALUES = ("1", "1s", "1/s", "1%")
_ARG_PREFIXES = ("hold(", "ramp(0, ", "ramp(0, 1, ", "spike(1, 1s, rise=", "spike(rise=", "spike(rise=1s, ")
_LIST_PREFIXES = ("steps([", "steps([1, ", "steps([1, 2, ")


def _after_arg(tail: str) -> list[str]:
    return [prefix + value + tail for prefix in _ARG_PREFIXES for value in _VALUES]


def _after_item(tail: str) -> list[str]:
    return [prefix + value + tail for prefix in _LIST_PREFIXES for value in _VALUES]


_JOIN = "e.g. ramp(0, 10, 1m) -> hold(5m)"
_EXAMPLES: _parsing.Examples = [
    (
        ("segments are joined with `->`: add one before {token}", _JOIN),
        [f"hold(1s) {t}" for t in ("hold(1s)", "5", "5s", "5/s", "5%", "(", ")", "[", "]", ",", "=")]
        + [
            f"hold(1s) as a {t}"
            for t in ("hold(1s)", "5", "5s", "5/s", "5%", "(", ")", "[", "]", ",", "=", "as")
        ],
    ),
    (
        ("`->` must be followed by a segment", _JOIN),
        [f"hold(1s) -> {t}" for t in ("", "->", "5", "5s", "5/s", "5%", "(", ")", "[", "]", ",", "=")],
    ),
    (
        ("a curve is made of calls such as ramp(0, 10, 1m) and hold(5m); {token} is not one", None),
        ["5", "5s", "5/s", "5%", "->", "(", ")", "[", "]", ",", "="],
    ),
    (
        ("expected `(` after the function name", "e.g. hold(5m)"),
        [f"hold{t}" for t in ("", " 5", " 5s", " 5/s", " 5%", " x", " -> hold(1s)", ")", ",", "[", "]", "=")],
    ),
    (
        ("`as` needs a label after it", "e.g. spike(600, 30s) as peak"),
        [
            f"hold(1s) as{t}"
            for t in ("", " ->", " 5", " 5s", " 5/s", " 5%", " (", " )", " [", " ]", " ,", " =")
        ],
    ),
    (
        ("missing `)` before {token}", "close the call, e.g. hold(5m)"),
        _after_arg("")
        + _after_arg(" -> hold(1s)")
        + _after_arg(" ]")
        + [f"steps([1]{t}" for t in ("", " -> hold(1s)", " ]")]
        + [f"steps([1], 1s{t}" for t in ("", " -> hold(1s)", " ]")],
    ),
    (
        ("missing `]` before {token}", "e.g. steps([1, 2, 4], 20s)"),
        [
            "steps([",
            "steps([ )",
            "steps([ -> hold(1s)",
            *_after_item(""),
            *_after_item(")"),
            *_after_item(" -> hold(1s)"),
        ],
    ),
    (
        ("missing `,` before {token}", None),
        [example for t in (" 2", " 2s", " 2/s", " 2%", " x", " (", " [", " =") for example in _after_arg(t)]
        + [
            example
            for t in (" 2", " 2s", " 2/s", " 2%", " x", " (", " [", " =")
            for example in _after_item(t)
        ]
        + [f"steps([1]{t}" for t in (" 2", " 2s", " 2/s", " 2%", " x", " (", " [", " =")],
    ),
    (
        ("an argument is missing before {token}", None),
        [f"{p}{t}" for p in ("hold(", "hold(1s, ") for t in (",", "]", "=")]
        + [f"{p}{t}" for p in ("steps([", "steps([1, ") for t in (",", "]", "=")]
        + ["hold(1s, )", "steps([1], ,", "steps([1], )"],
    ),
    (
        ("expected a value after `=`", "e.g. rise=5s"),
        [f"spike(1, 1s, rise={t}" for t in ("", ")", ",", "x", "(", "[", "]", "=", " -> hold(1s)")],
    ),
    (
        (
            "a name must be followed by `=`: named arguments look like rise=5s",
            "values are numbers: 5, 30s, 50/s",
        ),
        [f"spike(1, 1s, rise {t}" for t in ("1s", "1", "1/s", "1%", "x", "(", "[")]
        + [f"hold({t}" for t in ("x", "x)", "x,", "x]", "x -> hold(1s)")]
        + [f"hold(1s, {t}" for t in ("x", "x)", "x,", "x]")],
    ),
]


@dataclass(frozen=True)
class _Segment:
    call: Call
    label: str | None
    label_start: int
    start: int
    end: int


class _CurveTransformer(CallTransformer):
    def start(self, children: list[tuple[Stage, ...]]) -> tuple[Stage, ...]:
        return children[0]

    @v_args(meta=True)
    def segment(self, meta: Meta, children: list[Any]) -> _Segment:
        call, label = children
        label_start = label.start_pos if isinstance(label, Token) else 0
        return _Segment(
            call, str(label) if label is not None else None, label_start or 0, meta.start_pos, meta.end_pos
        )

    def curve(self, segments: list[_Segment]) -> tuple[Stage, ...]:
        return _Builder(self, segments).build()


class _Builder:
    """Walks the segments in order, keeping the current level, and emits stages."""

    def __init__(self, t: _CurveTransformer, segments: list[_Segment]) -> None:
        self.t = t
        self.segments = segments
        self.stages: list[Stage] = []
        self.level: float | None = None  # None before the first segment: nothing to jump from
        self.kind = ""
        self.label = ""
        self.span = UNKNOWN_SPAN

    def build(self) -> tuple[Stage, ...]:
        labels = self._labels()
        for segment, label in zip(self.segments, labels, strict=True):
            self.kind, self.label = segment.call.name, label
            self.span = self.t.at(segment.start, segment.end)
            getattr(self, f"_{segment.call.name}")(segment.call)
        return tuple(self.stages)

    def _labels(self) -> list[str]:
        counts: dict[str, int] = {}
        labels: list[str] = []
        explicit: set[str] = set()
        for segment in self.segments:
            call = segment.call
            if call.name not in FUNCTIONS:
                raise self.t.unknown_function(call, list(FUNCTIONS), "curve function")
            counts[call.name] = counts.get(call.name, 0) + 1
            default = call.name if counts[call.name] == 1 else f"{call.name}#{counts[call.name]}"
            if segment.label is None:
                labels.append(default)
                continue
            where = (segment.label_start, segment.label_start + len(segment.label))
            if segment.label in FUNCTIONS:
                raise self.t.error(
                    f"`{segment.label}` is a curve function, not a label",
                    *where,
                    f"`during {segment.label}` already means every {segment.label}; "
                    "choose another name, e.g. `as peak`",
                )
            if segment.label in explicit:
                raise self.t.error(
                    f"the label `{segment.label}` is used twice",
                    *where,
                    "SLO windows name one segment; choose another name",
                )
            explicit.add(segment.label)
            labels.append(segment.label)
        return labels

    # -- emitting ----------------------------------------------------------------------------------

    def emit(self, duration: float, start: float, end: float) -> None:
        self.stages.append(Stage(self.kind, self.label, duration, start, end, self.span))
        self.level = end

    def jump(self, to: float) -> None:
        """An instant change to `to`, unless the level is already there (or nothing came before)."""
        if self.level is not None and self.level != to:
            self.emit(0.0, self.level, to)
        self.level = to

    @property
    def current(self) -> float:
        return self.level if self.level is not None else 0.0

    # -- the functions -------------------------------------------------------------------------------

    def _ramp(self, call: Call) -> None:
        t = self.t
        t.check_named(call, (), USAGE["ramp"])
        args = t.no_lists(call, call.positional)
        if len(args) > 3:
            raise t.too_many(call, args[3], USAGE["ramp"])
        if not args or (len(args) == 1 and args[0].kind in ("duration", "rate")):
            raise t.error(
                "ramp needs a level to go to and a duration: ramp(0, 200, 1m)",
                call.start,
                call.name_end,
                f"write {USAGE['ramp']}",
            )
        last = args[-1]
        if last.kind == "number" and len(args) == 3:
            t.duration(last)
        if last.kind not in ("duration", "rate"):
            levels = ", ".join(a.text for a in args)
            raise t.error(
                "ramp needs a duration or rate: ramp(0, 200, 1m)",
                call.start,
                call.name_end,
                f"e.g. ramp({levels}, 1m), or ramp({levels}, 10/s) to move 10 per second",
            )
        levels = [t.level(a) for a in args[:-1]]
        start = levels[0] if len(levels) == 2 else self.current
        to = levels[-1]
        if last.kind == "duration":
            duration = last.value
        elif last.value > 0:
            duration = abs(to - start) / last.value
        else:
            raise t.error("a ramp's rate must be above 0", last.start, last.end, "e.g. ramp(0, 200, 10/s)")
        if len(levels) == 2:
            self.jump(start)
        self.emit(duration, start, to)

    def _hold(self, call: Call) -> None:
        t = self.t
        t.check_named(call, (), USAGE["hold"])
        args = t.no_lists(call, call.positional)
        if not args:
            raise t.error(
                "hold needs a duration: hold(3m)", call.start, call.name_end, f"write {USAGE['hold']}"
            )
        if len(args) > 2:
            raise t.too_many(call, args[2], USAGE["hold"])
        duration = t.duration(args[-1])
        level = t.level(args[0]) if len(args) == 2 else self.current
        self.jump(level)
        self.emit(duration, level, level)

    def _spike(self, call: Call) -> None:
        t = self.t
        named = t.check_named(call, ("rise",), USAGE["spike"])
        args = t.no_lists(call, call.positional)
        if len(args) > 2:
            raise t.error(
                "too many arguments for spike",
                args[2].start,
                args[2].end,
                "give the rise time by name: spike(600, 30s, rise=5s)",
            )
        if len(args) < 2:
            raise t.error(
                "spike needs a peak and a duration: spike(600, 30s)",
                call.start,
                call.name_end,
                f"write {USAGE['spike']}",
            )
        peak, duration = t.level(args[0]), t.duration(args[1])
        rise = t.duration(named["rise"].value) if "rise" in named else 0.0
        before = self.current
        if rise > 0:
            self.level = before
            self.emit(rise, before, peak)
        else:
            self.level = before
            self.jump(peak)
        self.emit(duration, peak, peak)
        if rise > 0:
            self.emit(rise, peak, before)
        else:
            self.jump(before)

    def _steps(self, call: Call) -> None:
        t = self.t
        t.check_named(call, (), USAGE["steps"])
        args = call.positional
        items = args[0] if args else None
        if isinstance(items, ListArg):
            if len(args) != 2:
                raise self._steps_usage(call, args[2] if len(args) > 2 else None)
            last = t.no_lists(call, args[1:])[0]
            if not items.items:
                raise t.error(
                    "steps needs at least one level", items.start, items.end, f"write {USAGE['steps']}"
                )
            levels = [t.level(q) for q in items.items]
        else:
            plain = t.no_lists(call, args)
            if len(plain) != 4:
                raise self._steps_usage(call, plain[4] if len(plain) > 4 else None)
            first, to, by, last = plain
            low, high, step = t.level(first), t.level(to), t.level(by)
            if step <= 0:
                raise t.error("steps' `by` must be above 0", by.start, by.end, f"write {USAGE['steps']}")
            count = math.floor(abs(high - low) / step + 1e-9) + 1
            if count > MAX_STEPS:
                raise t.error(
                    f"steps would make {count} steps; {MAX_STEPS} at most",
                    call.start,
                    call.end,
                    "use a larger `by`",
                )
            sign = 1.0 if high >= low else -1.0
            levels = [low + sign * i * step for i in range(count)]
        duration = t.duration(last)
        for level in levels:
            self.jump(level)
            self.emit(duration, level, level)

    def _steps_usage(self, call: Call, extra: Any) -> ExprError:
        if extra is not None:
            return self.t.too_many(call, extra, USAGE["steps"])
        return self.t.error(
            "steps needs from, to, by and a duration: steps(1, 8, 1, 20s)",
            call.start,
            call.name_end,
            "or a list of levels: steps([1, 2, 4, 8], 20s)",
        )


@guarded
def parse_curve(text: str, span: Span = UNKNOWN_SPAN) -> tuple[Stage, ...]:
    """A load curve -> piecewise-linear stages (see the module docstring for the language and labels)."""
    if not text.strip():
        raise ExprError("empty curve", blank_span(span, text), "e.g. ramp(0, 10, 30s) -> hold(1m)")
    stages: tuple[Stage, ...] = _parsing.parse("curve", text, span, _CurveTransformer(text, span), _EXAMPLES)
    return stages
