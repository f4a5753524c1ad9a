"""Properties: generated values round-trip through text, curves keep their totals, only ExprError escapes."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenariokit.compile.diagnostics import Span
from scenariokit.compile.expr import (
    DataRef,
    EnvRef,
    ExprError,
    LiteralText,
    format_duration,
    format_rate,
    parse_curve,
    parse_distribution,
    parse_duration,
    parse_fraction,
    parse_rate,
    parse_slo,
    parse_template,
)
from scenariokit.compile.expr.errors import INTERNAL_HINT
from scenariokit.compile.ir import TIME_METRICS

AT = Span("p.yaml", 1, 1)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def plain(value: float) -> str:
    """A non-negative float as digits our lexer reads (no exponent)."""
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


seconds = st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False)
small = st.floats(min_value=0, max_value=1e4, allow_nan=False, allow_infinity=False)

# --- durations and rates ------------------------------------------------------------------------------------


@FAST
@given(seconds)
def test_format_duration_round_trips(value: float) -> None:
    assert parse_duration(format_duration(value)) == pytest.approx(value, abs=1e-6)


@FAST
@given(
    st.lists(st.sampled_from(["h", "m", "s", "ms", "us"]), min_size=1, max_size=5, unique=True),
    st.lists(st.integers(0, 10_000), min_size=5, max_size=5),
)
def test_compound_durations(units: list[str], numbers: list[int]) -> None:
    order = ["h", "m", "s", "ms", "us"]
    factor = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    units = sorted(units, key=order.index)
    text = "".join(f"{n}{u}" for n, u in zip(numbers, units, strict=False))
    expected = sum(n * factor[u] for n, u in zip(numbers, units, strict=False))
    assert parse_duration(text) == pytest.approx(expected)


@FAST
@given(small, st.sampled_from([("s", 1.0), ("sec", 1.0), ("m", 1 / 60), ("min", 1 / 60), ("h", 1 / 3600)]))
def test_rates(value: float, unit: tuple[str, float]) -> None:
    text = plain(value)
    assert parse_rate(f"{text}/{unit[0]}") == pytest.approx(float(text) * unit[1])
    assert parse_rate(format_rate(float(text))) == pytest.approx(float(text), abs=1e-8)


@FAST
@given(st.floats(min_value=0, max_value=100, allow_nan=False))
def test_percentages(value: float) -> None:
    text = plain(value)
    if float(text) <= 100:
        assert parse_fraction(f"{text}%") == pytest.approx(float(text) / 100)


# --- curves -------------------------------------------------------------------------------------------------


@dataclass
class Segment:
    text: str
    duration: float
    kind: str


levels = st.integers(0, 500).map(float)
durations = st.integers(0, 600).map(float)


def duration_text(value: float) -> str:
    return format_duration(value)


@st.composite
def segments(draw: st.DrawFn) -> Segment:
    kind = draw(
        st.sampled_from(
            ["ramp", "ramp-to", "ramp-rate", "hold", "hold-level", "spike", "steps", "steps-list"]
        )
    )
    d = draw(durations)
    if kind == "ramp":
        return Segment(f"ramp({draw(levels):g}, {draw(levels):g}, {duration_text(d)})", d, "ramp")
    if kind == "ramp-to":
        return Segment(f"ramp({draw(levels):g}, {duration_text(d)})", d, "ramp")
    if kind == "ramp-rate":
        start, end, rate = draw(levels), draw(levels), draw(st.integers(1, 50))
        return Segment(f"ramp({start:g}, {end:g}, {rate}/s)", abs(end - start) / rate, "ramp")
    if kind == "hold":
        return Segment(f"hold({duration_text(d)})", d, "hold")
    if kind == "hold-level":
        return Segment(f"hold({draw(levels):g}, {duration_text(d)})", d, "hold")
    if kind == "spike":
        if draw(st.booleans()):
            rise = draw(durations)
            return Segment(
                f"spike({draw(levels):g}, {duration_text(d)}, rise={duration_text(rise)})",
                d + 2 * rise,
                "spike",
            )
        return Segment(f"spike({draw(levels):g}, {duration_text(d)})", d, "spike")
    if kind == "steps":
        low, high, by = draw(st.integers(0, 20)), draw(st.integers(0, 20)), draw(st.integers(1, 5))
        count = abs(high - low) // by + 1
        return Segment(f"steps({low}, {high}, {by}, {duration_text(d)})", count * d, "steps")
    items = draw(st.lists(levels, min_size=1, max_size=6))
    return Segment(
        f"steps([{', '.join(f'{x:g}' for x in items)}], {duration_text(d)})", len(items) * d, "steps"
    )


@FAST
@given(st.lists(segments(), min_size=1, max_size=8), st.data())
def test_generated_curves(parts: list[Segment], data: st.DataObject) -> None:
    labels = [data.draw(st.one_of(st.none(), st.just(f"l{i}"))) for i in range(len(parts))]
    text = " -> ".join(p.text + (f" as {lbl}" if lbl else "") for p, lbl in zip(parts, labels, strict=True))
    stages = parse_curve(text, AT)
    assert sum(s.duration_s for s in stages) == pytest.approx(sum(p.duration for p in parts))
    assert all(s.start >= 0 and s.end >= 0 and s.duration_s >= 0 for s in stages)
    # Piecewise linear and continuous: jumps are explicit zero-length stages.
    assert all(a.end == b.start for a, b in itertools.pairwise(stages))
    # Labels: the explicit one, else the kind numbered from the second of its kind on.
    expected_labels, counts = [], {}
    for part, label in zip(parts, labels, strict=True):
        counts[part.kind] = counts.get(part.kind, 0) + 1
        expected_labels.append(
            label or (part.kind if counts[part.kind] == 1 else f"{part.kind}#{counts[part.kind]}")
        )
    # Every segment yields at least one stage, and all of a segment's stages share its span.
    by_segment: dict[Span, tuple[str, str]] = {}
    for stage in stages:
        assert by_segment.setdefault(stage.span, (stage.kind, stage.label)) == (stage.kind, stage.label)
    assert list(by_segment.values()) == [(p.kind, lbl) for p, lbl in zip(parts, expected_labels, strict=True)]


# --- SLOs ---------------------------------------------------------------------------------------------------


names = st.from_regex(r"[a-z][a-z0-9_]{0,6}(-[a-z0-9]{1,4})?", fullmatch=True).filter(
    lambda n: n not in ("for", "during")
)


@st.composite
def slos(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    metric = draw(
        st.sampled_from(
            [
                *("latency", "ttfb", "ttft", "itl", "tpot", "error_rate", "throughput", "dropped_iterations"),
                *("success_rate", "goodput", "max_throughput", "recovery_time"),
            ]
        )
    )
    op = draw(st.sampled_from(["<", "<=", ">", ">="]))
    subject = None
    if metric == "recovery_time":  # takes a fault's name and no `for` or window
        subject, threshold = draw(names), draw(st.integers(0, 600_000)) / 1000
        text = f"recovery_time({subject}) {op} {format_duration(threshold)}"
        fields = dict(metric=metric, statistic=None, op=op, threshold=threshold, requests=(), window=None)
        return text, fields | {"subject": subject}
    if metric == "max_throughput":
        metric, statistic, threshold = "throughput", "max", float(draw(st.integers(0, 10_000)))
        head, value = "max(throughput)", f"{threshold:g}/s"
    elif metric in TIME_METRICS:
        statistic = draw(st.sampled_from(["p50", "p95", "p99", "p99.9", "mean", "median", "min", "max"]))
        threshold = draw(st.integers(0, 100_000)) / 1000
        head, value = f"{statistic}({metric})", format_duration(threshold)
    elif metric in ("error_rate", "success_rate"):
        statistic, threshold = None, draw(st.integers(0, 1000)) / 1000
        head, value = metric, f"{plain(threshold * 100)}%"
    elif metric in ("throughput", "goodput"):
        statistic, threshold = None, float(draw(st.integers(0, 10_000)))
        head, value = metric, f"{threshold:g}/s"
    else:
        statistic, threshold = None, float(draw(st.integers(0, 100)))
        head, value = metric, f"{threshold:g}"
    text = f"{head} {op} {value}"
    requests = tuple(draw(st.lists(names, max_size=3, unique=True)))
    if requests:
        text += " for " + ", ".join(requests)
    window: tuple[Any, ...] | None = draw(
        st.one_of(
            st.none(),
            names.map(lambda n: (n,)),
            st.tuples(st.integers(0, 3600), st.integers(1, 3600)),
            st.tuples(names, st.one_of(st.none(), st.integers(1, 86_400)), st.just("after")),
        )
    )
    if window is not None and len(window) == 3:  # after NAME [for DURATION]
        name, length, _ = window
        text += f" after {name}" + ("" if length is None else f" for {format_duration(length)}")
    elif window is not None and len(window) == 2:
        start, length = window
        text += f" during {format_duration(start)}..{format_duration(start + length)}"
    elif window is not None:
        text += f" during {window[0]}"
    fields = dict(
        metric=metric, statistic=statistic, op=op, threshold=threshold, requests=requests, window=window
    )
    return text, fields | {"subject": subject}


@FAST
@given(slos())
def test_generated_slos(case: tuple[str, dict[str, Any]]) -> None:
    text, f = case
    got = parse_slo(text, AT)
    assert (got.metric, got.statistic, got.op, got.requests) == (
        f["metric"],
        f["statistic"],
        f["op"],
        f["requests"],
    )
    assert got.threshold == pytest.approx(f["threshold"], abs=1e-9)
    assert got.subject == f["subject"]
    window = f["window"]
    if window is None:
        assert got.window is None
    elif len(window) == 1:
        assert got.window is not None and got.window.stage == window[0] and not got.window.after
    elif len(window) == 3:
        assert got.window is not None and (got.window.stage, got.window.after) == (window[0], True)
        assert got.window.length_s == (None if window[1] is None else pytest.approx(window[1]))
    else:
        assert got.window is not None
        assert (got.window.start_s, got.window.end_s) == (
            pytest.approx(window[0]),
            pytest.approx(sum(window)),
        )


# --- templates ----------------------------------------------------------------------------------------------

ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
template_parts = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=10).map(
            LiteralText
        ),
        st.builds(lambda d, f: DataRef(d, f), ident, st.one_of(st.none(), ident)),
        ident.map(EnvRef),
    ),
    max_size=6,
)


def render(part: Any) -> str:
    if isinstance(part, LiteralText):
        return part.text.replace("{", "{{").replace("}", "}}")
    if isinstance(part, DataRef):
        return "{" + part.dataset + (f".{part.field}" if part.field else "") + "}"
    return "${env:" + part.name + "}"


def normalized(parts: list[Any]) -> list[Any]:
    out: list[Any] = []
    for part in parts:
        if isinstance(part, LiteralText):
            if out and isinstance(out[-1], str):
                out[-1] += part.text
            else:
                out.append(part.text)
        else:
            out.append((type(part).__name__, *[v for k, v in vars(part).items() if k != "span"]))
    return out


@FAST
@given(template_parts)
def test_templates_round_trip(parts: list[Any]) -> None:
    text = "".join(render(p) for p in parts)
    # A literal ending in `$` followed by a reference would read as `${`: the renderer cannot say that.
    if any(render(a).endswith("$") and not isinstance(b, LiteralText) for a, b in itertools.pairwise(parts)):
        return
    assert normalized(parse_template(text, AT)) == normalized(parts)


# --- fuzz: any text -> a value or an ExprError, never anything else -----------------------------------------

ALPHABET = "0123456789.,;:()[]{}<>=!-/%$ _abcdehilmnoprstuvwµ#\"'\n\t"
PARSERS: list[Callable[[str, Span], Any]] = [
    parse_duration,
    parse_rate,
    parse_fraction,
    parse_curve,
    parse_distribution,
    parse_slo,
    parse_template,
]


def only_expr_errors(parse: Callable[[str, Span], Any], text: str) -> None:
    try:
        parse(text, AT)
    except ExprError as exc:
        assert exc.hint != INTERNAL_HINT, exc.diagnostic.render()
        assert exc.span.file == "p.yaml" and exc.span.line >= 1 and exc.span.column >= 1


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PARSERS), st.text(ALPHABET, max_size=40))
def test_fuzz_characters(parse: Callable[[str, Span], Any], text: str) -> None:
    only_expr_errors(parse, text)


TOKENS = [
    "ramp",
    "hold",
    "spike",
    "steps",
    "(",
    ")",
    "[",
    "]",
    ",",
    "->",
    "as",
    "x",
    "rise",
    "=",
    "1",
    "0",
    "5s",
    "1m30s",
    "50/s",
    "1%",
    "-1",
    "p99",
    "latency",
    "error_rate",
    "throughput",
    "<",
    "<=",
    "==",
    "for",
    "during",
    "after",
    "recovery_time(",
    "recovery_time",
    "max(throughput)",
    "goodput",
    "success_rate",
    "..",
    "uniform",
    "none",
    "{a}",
    "${env:X}",
    "}",
    " ",
    "1e9",
    "99999999999999999999999999",
]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(PARSERS), st.lists(st.sampled_from(TOKENS), max_size=14))
def test_fuzz_tokens(parse: Callable[[str, Span], Any], tokens: list[str]) -> None:
    only_expr_errors(parse, " ".join(tokens))


@settings(max_examples=200, deadline=None)
@given(st.lists(segments(), min_size=1, max_size=4), st.integers(0, 200), st.text(ALPHABET, max_size=3))
def test_fuzz_damaged_curves(parts: list[Segment], at: int, junk: str) -> None:
    text = " -> ".join(p.text for p in parts)
    at = min(at, len(text))
    only_expr_errors(parse_curve, text[:at] + junk + text[at + 1 :])


def test_huge_numbers_are_errors() -> None:
    with pytest.raises(ExprError, match="too large"):
        parse_duration("9" * 400 + "s")
    assert math.isinf(float("9" * 400))
