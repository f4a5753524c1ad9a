"""The expression languages, one table each: good values -> IR values, bad ones -> message + column."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from scenariokit.compile.diagnostics import Span
from scenariokit.compile.expr import (
    DataRef,
    EnvRef,
    ExprError,
    LiteralText,
    _parsing,
    curve,
    distribution,
    format_duration,
    format_rate,
    parse_curve,
    parse_distribution,
    parse_duration,
    parse_fraction,
    parse_rate,
    parse_slo,
    parse_template,
    quantity,
    slo,
)
from scenariokit.compile.ir import Distribution, Window

# The value starts at line 3, column 10 of the file: errors must land at 10 + (offset in the value).
AT = Span("s.yaml", 3, 10)


def column(text_column: int) -> int:
    return AT.column + text_column - 1


# --- durations, rates, fractions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("0s", 0.0),
        ("10min", 600.0),
        ("1h2m3s4ms", 3723.004),
        ("  2s  ", 2.0),
        ("-0s", 0.0),
    ],
)
def test_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, AT) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("50/s", 50.0),
        ("0.5/s", 0.5),
        ("3000/m", 50.0),
        ("10/min", 10 / 60),
        ("100/h", 100 / 3600),
        ("7/sec", 7.0),
    ],
)
def test_rate(text: str, per_second: float) -> None:
    assert parse_rate(text, AT) == pytest.approx(per_second)


@pytest.mark.parametrize(
    ("text", "value"), [("0.5%", 0.005), ("1%", 0.01), ("0.005", 0.005), ("100%", 1.0), ("0", 0.0)]
)
def test_fraction(text: str, value: float) -> None:
    assert parse_fraction(text, AT) == pytest.approx(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (90, "1m30s"),
        (0.5, "500ms"),
        (0, "0s"),
        (1, "1s"),
        (1.5, "1.5s"),
        (3600, "1h"),
        (3661, "1h1m1s"),
        (0.00025, "250us"),
        (0.0015, "1.5ms"),
        (90.25, "1m30.25s"),
        (7200.5, "2h0.5s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_format_duration_refuses(bad: float) -> None:
    with pytest.raises(ValueError):
        format_duration(bad)


def test_format_rate() -> None:
    assert format_rate(50) == "50/s"
    assert format_rate(0.5) == "0.5/s"
    assert parse_rate(format_rate(1 / 3)) == pytest.approx(1 / 3, abs=1e-9)


# --- curves -------------------------------------------------------------------------------------------------

StageT = tuple[str, str, float, float, float]  # kind, label, duration, start, end


def stages(text: str) -> list[StageT]:
    return [(s.kind, s.label, s.duration_s, s.start, s.end) for s in parse_curve(text, AT)]


CURVES: list[tuple[str, list[StageT]]] = [
    (
        "ramp(0, 200, 1m) -> hold(3m) -> spike(600, 30s) -> hold(1m) -> ramp(0, 30s)",
        [
            ("ramp", "ramp", 60, 0, 200),
            ("hold", "hold", 180, 200, 200),
            ("spike", "spike", 0, 200, 600),
            ("spike", "spike", 30, 600, 600),
            ("spike", "spike", 0, 600, 200),
            ("hold", "hold#2", 60, 200, 200),
            ("ramp", "ramp#2", 30, 200, 0),
        ],
    ),
    ("ramp(0, 10000, 100/s)", [("ramp", "ramp", 100, 0, 10000)]),
    ("ramp(10000, 100/s)", [("ramp", "ramp", 100, 0, 10000)]),
    ("ramp(5, 20, 2s) -> hold(4s)", [("ramp", "ramp", 2, 5, 20), ("hold", "hold", 4, 20, 20)]),
    (
        "hold(10, 1s) -> ramp(2, 4, 1s)",
        [("hold", "hold", 1, 10, 10), ("ramp", "ramp", 0, 10, 2), ("ramp", "ramp", 1, 2, 4)],
    ),
    ("hold(1m)", [("hold", "hold", 60, 0, 0)]),
    ("hold(5, 1s) -> hold(5, 1s)", [("hold", "hold", 1, 5, 5), ("hold", "hold#2", 1, 5, 5)]),
    (
        "spike(8, 2s)",
        [("spike", "spike", 0, 0, 8), ("spike", "spike", 2, 8, 8), ("spike", "spike", 0, 8, 0)],
    ),
    (
        "hold(4, 1s) -> spike(8, 2s, rise=1s) as peak",
        [
            ("hold", "hold", 1, 4, 4),
            ("spike", "peak", 1, 4, 8),
            ("spike", "peak", 2, 8, 8),
            ("spike", "peak", 1, 8, 4),
        ],
    ),
    (
        "steps(1, 3, 1, 20s) as sweep -> ramp(0, 5s)",
        [
            ("steps", "sweep", 20, 1, 1),
            ("steps", "sweep", 0, 1, 2),
            ("steps", "sweep", 20, 2, 2),
            ("steps", "sweep", 0, 2, 3),
            ("steps", "sweep", 20, 3, 3),
            ("ramp", "ramp", 5, 3, 0),
        ],
    ),
    (
        "steps(1, 4, 2, 1s)",
        [("steps", "steps", 1, 1, 1), ("steps", "steps", 0, 1, 3), ("steps", "steps", 1, 3, 3)],
    ),
    (
        "steps(3, 1, 2, 1s)",
        [("steps", "steps", 1, 3, 3), ("steps", "steps", 0, 3, 1), ("steps", "steps", 1, 1, 1)],
    ),
    (
        "steps([1, 2, 4], 1s)",
        [
            ("steps", "steps", 1, 1, 1),
            ("steps", "steps", 0, 1, 2),
            ("steps", "steps", 1, 2, 2),
            ("steps", "steps", 0, 2, 4),
            ("steps", "steps", 1, 4, 4),
        ],
    ),
    ("ramp(0.5/s, 2/s, 20s)", [("ramp", "ramp", 20, 0.5, 2)]),
    ("ramp(0, 30/m, 1s)", [("ramp", "ramp", 1, 0, 0.5)]),
    ("hold(0, 0s)", [("hold", "hold", 0, 0, 0)]),
    ("ramp(0, 0, 0s)", [("ramp", "ramp", 0, 0, 0)]),
    ("ramp(3, 3, 1/s)", [("ramp", "ramp", 0, 3, 3)]),
    ("hold(1s)\n  -> hold(2s)", [("hold", "hold", 1, 0, 0), ("hold", "hold#2", 2, 0, 0)]),
    ("hold(1s) as warm-up -> hold(1s)", [("hold", "warm-up", 1, 0, 0), ("hold", "hold#2", 1, 0, 0)]),
]


@pytest.mark.parametrize(("text", "expected"), CURVES, ids=[c[0] for c in CURVES])
def test_curve(text: str, expected: list[StageT]) -> None:
    assert stages(text) == [
        (k, lbl, pytest.approx(d), pytest.approx(a), pytest.approx(b)) for k, lbl, d, a, b in expected
    ]


def test_curve_stage_spans_cover_their_segment() -> None:
    text = "ramp(0, 2, 5s) -> hold(5s) as steady -> spike(4, 1s)"
    got = parse_curve(text, AT)
    assert [(s.span.line, s.span.column, s.span.end_column) for s in got[:2]] == [
        (3, column(1), column(15)),
        (3, column(19), column(37)),
    ]
    assert {s.span.column for s in got[2:]} == {column(41)}


def test_curve_span_on_a_later_line() -> None:
    with pytest.raises(ExprError) as info:
        parse_curve("hold(1s)\n-> hold(5)", AT)
    assert (info.value.span.line, info.value.span.column) == (4, 9)


# --- distributions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "params"),
    [
        ("none", "none", ()),
        ("constant(1s)", "constant", (("value", 1.0),)),
        ("constant(value=200ms)", "constant", (("value", 0.2),)),
        ("1s", "constant", (("value", 1.0),)),
        ("uniform(0.5s, 2.5s)", "uniform", (("low", 0.5), ("high", 2.5))),
        ("between(0.5s, 2.5s)", "uniform", (("low", 0.5), ("high", 2.5))),
        ("uniform(high=2s, low=1s)", "uniform", (("low", 1.0), ("high", 2.0))),
        ("uniform(1s, 1s)", "uniform", (("low", 1.0), ("high", 1.0))),
        ("exponential(mean=1s)", "exponential", (("mean", 1.0),)),
        ("exponential(2s)", "exponential", (("mean", 2.0),)),
        ("normal(mean=1s, sd=200ms)", "normal", (("mean", 1.0), ("sd", 0.2))),
        ("normal(1s, 0s)", "normal", (("mean", 1.0), ("sd", 0.0))),
    ],
)
def test_distribution(text: str, kind: str, params: tuple[tuple[str, float], ...]) -> None:
    got = parse_distribution(text, AT)
    assert (got.kind, got.params) == (kind, params)
    assert (got.span.line, got.span.column) == (3, 10)


def test_distribution_mean() -> None:
    assert parse_distribution("uniform(1s, 3s)").mean_s == 2.0
    assert isinstance(parse_distribution("none"), Distribution)


# --- SLOs ---------------------------------------------------------------------------------------------------

SLOS: list[tuple[str, dict[str, Any]]] = [
    ("p99(latency) < 500ms", dict(metric="latency", statistic="p99", op="<", threshold=0.5)),
    (
        "p95(ttft) < 300ms for identify",
        dict(metric="ttft", statistic="p95", threshold=0.3, requests=("identify",)),
    ),
    (
        "p99.9(latency) <= 2s for identify, ocr",
        dict(statistic="p99.9", op="<=", requests=("identify", "ocr")),
    ),
    ("mean(itl) < 50ms", dict(metric="itl", statistic="mean", threshold=0.05)),
    ("avg(tpot) < 50ms", dict(metric="tpot", statistic="mean")),
    ("median(latency) < 1s", dict(statistic="median")),
    ("max(latency) < 5s", dict(statistic="max", threshold=5.0)),
    ("min(ttfb) > 1ms", dict(metric="ttfb", statistic="min", op=">")),
    ("error_rate < 0.5%", dict(metric="error_rate", statistic=None, threshold=0.005)),
    ("error_rate < 0.01", dict(metric="error_rate", threshold=0.01)),
    ("throughput >= 50/s", dict(metric="throughput", op=">=", threshold=50.0)),
    ("throughput >= 60/m", dict(threshold=1.0)),
    ("dropped_iterations <= 0", dict(metric="dropped_iterations", op="<=", threshold=0.0)),
    ("p95(latency) < 800ms during flash-sale", dict(window=Window(stage="flash-sale"))),
    ("p99(latency) < 2s during 21m..31m", dict(window=Window(start_s=1260.0, end_s=1860.0))),
    ("p99(latency) < 2s during 5m..", dict(window=Window(start_s=300.0, end_s=None))),
    ("p99(latency) < 2s during ..1m", dict(window=Window(start_s=0.0, end_s=60.0))),
    ("p99(latency) < 2s during spike for a, b", dict(window=Window(stage="spike"), requests=("a", "b"))),
    ("p99(latency)<2s for no-messages", dict(requests=("no-messages",))),
    ("  p50(latency) < 1s  ", dict(statistic="p50", text="p50(latency) < 1s")),
]


@pytest.mark.parametrize(("text", "fields"), SLOS, ids=[s[0] for s in SLOS])
def test_slo(text: str, fields: dict[str, Any]) -> None:
    got = parse_slo(text, AT)
    for name, value in fields.items():
        want = pytest.approx(value) if isinstance(value, float) else value
        assert getattr(got, name) == want, name
    assert got.text == fields.get("text", text)


def test_slo_span_and_percentile() -> None:
    got = parse_slo("p99.9(latency) < 1s", AT)
    assert (got.span.column, got.span.end_column) == (column(1), column(20))
    assert got.percentile == 99.9


# --- templates ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("", []),
        ("plain", [LiteralText("plain")]),
        ("{images}", [DataRef("images", None)]),
        ("{images.text}", [DataRef("images", "text")]),
        ("Bearer ${env:API_KEY}", [LiteralText("Bearer "), EnvRef("API_KEY")]),
        ("{{literal}} $5 ${{x}}", [LiteralText("{literal} $5 ${x}")]),
        ("a{b}c{d.e}", [LiteralText("a"), DataRef("b", None), LiteralText("c"), DataRef("d", "e")]),
        ("{my-data.some_field}", [DataRef("my-data", "some_field")]),
    ],
)
def test_template(text: str, parts: list[Any]) -> None:
    got = parse_template(text, AT)
    assert [(type(p), {k: v for k, v in vars(p).items() if k != "span"}) for p in got] == [
        (type(p), {k: v for k, v in vars(p).items() if k != "span"}) for p in parts
    ]


def test_template_spans() -> None:
    got = parse_template("x {images.text} ${env:K}", AT)
    assert [(p.span.column, p.span.end_column) for p in got] == [
        (column(1), column(3)),
        (column(3), column(16)),
        (column(16), column(17)),
        (column(17), column(25)),
    ]


# --- errors: message, column (1-based inside the value), hint -----------------------------------------------

Parser = Callable[[str, Span], Any]
BAD: list[tuple[Parser, str, str, int, str | None]] = [
    (parse_duration, "30", "needs a unit", 1, "durations need a unit: 30s"),
    (parse_duration, "-1s", "negative", 1, None),
    (parse_duration, "5sec", "unknown unit `sec`", 1, "us, ms, s, m or h"),
    (parse_duration, "5 s", "without a space", 3, "write 5s"),
    (parse_duration, "1s 2s", "extra", 4, None),
    (parse_duration, "30s1m", "largest first", 1, "1m30s"),
    (parse_duration, "50/s", "got a rate", 1, None),
    (parse_duration, "", "empty duration", 1, "500ms"),
    (parse_duration, "soon", "unexpected `soon`", 1, None),
    (parse_rate, "50", "a rate needs a unit", 1, "50/s"),
    (parse_rate, "5/x", "unknown unit `/x`", 1, None),
    (parse_fraction, "150%", "more than 100%", 1, None),
    (parse_fraction, "5", "more than 100%", 1, "write 5%"),
    (parse_curve, "", "empty curve", 0, None),
    (parse_curve, "   ", "empty curve", 0, None),
    (parse_curve, "ramp(0, 200)", "ramp needs a duration or rate: ramp(0, 200, 1m)", 1, "ramp(0, 200, 10/s)"),
    (parse_curve, "ramp(0, 200, 5)", "needs a unit", 14, "5s"),
    (parse_curve, "ramp(1m)", "ramp needs a level", 1, None),
    (parse_curve, "ramp(0, 1, 2, 1m)", "too many arguments", 15, None),
    (parse_curve, "ramp(0, 10, 0/s)", "rate must be above 0", 13, None),
    (parse_curve, "ramp(1m, 10, 1m)", "expected a level, got a duration", 6, None),
    (parse_curve, "hold(3)", "needs a unit", 6, "durations need a unit: 3s"),
    (parse_curve, "ramp(0, 2, 5s) -> hold(5) as steady", "needs a unit", 24, "5s"),
    (parse_curve, "hold()", "hold needs a duration", 1, None),
    (parse_curve, "hold(-5, 1s)", "negative", 6, None),
    (parse_curve, "spike(600)", "spike needs a peak and a duration: spike(600, 30s)", 1, None),
    (parse_curve, "spike(600, 30s, 5s)", "too many arguments", 17, "rise=5s"),
    (parse_curve, "spike(600, 30s, ris=5s)", "no argument `ris`", 17, "did you mean `rise`?"),
    (parse_curve, "spike(6, 3s, rise=1s, rise=1s)", "given twice", 23, None),
    (parse_curve, "rmp(0, 200, 1m)", "unknown curve function `rmp`", 1, "did you mean `ramp`?"),
    (parse_curve, "hold(1s) -> rmp(0, 1s)", "unknown curve function `rmp`", 13, "did you mean `ramp`?"),
    (parse_curve, "steps(1, 8, 20s)", "steps needs from, to, by and a duration", 1, None),
    (parse_curve, "steps(1, 8, 0, 20s)", "must be above 0", 13, None),
    (parse_curve, "steps([], 20s)", "at least one level", 7, None),
    (parse_curve, "steps(0, 5000, 1, 1s)", "1000 at most", 1, None),
    (parse_curve, "hold([1], 1s)", "takes no list", 6, "steps"),
    (parse_curve, "ramp(10%, 1m)", "expected a level, got a percentage", 6, None),
    (parse_curve, "hold(1s) as hold", "is a curve function, not a label", 13, None),
    (parse_curve, "hold(1s) as a -> hold(1s) as a", "used twice", 30, None),
    (parse_curve, "hold(1s) hold(2s)", "joined with `->`", 10, None),
    (parse_curve, "hold(1s) ->", "`->` must be followed by a segment", 12, None),
    (parse_curve, "hold(1s", "missing `)`", 8, None),
    (parse_curve, "ramp(0, 10, 1m -> hold(1s)", "missing `)` before `->`", 16, None),
    (parse_curve, "steps([1, 2, 1s)", "missing `]`", 16, None),
    (parse_curve, "ramp(0 10 1m)", "missing `,` before `10`", 8, None),
    (parse_curve, "ramp(0, , 1m)", "argument is missing", 9, None),
    (parse_curve, "hold 5s", "expected `(`", 6, None),
    (parse_curve, "hold(1s) as", "`as` needs a label", 12, None),
    (parse_curve, "hold(x)", "followed by `=`", 7, None),
    (parse_curve, "5s", "made of calls", 1, None),
    (parse_curve, "hold(1s) ; hold(1s)", "unexpected `;`", 10, None),
    (parse_curve, "'hold(1s)'", "unexpected", 1, "quotes"),
    (parse_curve, "hold(1 m)", "without a space", 8, "write 1m"),
    (parse_distribution, "uniform(2s, 1s)", "low (2s) is above its high (1s)", 1, "uniform(1s, 2s)"),
    (parse_distribution, "uniform(1s)", "uniform needs high", 1, None),
    (parse_distribution, "uniform(1s, 2s, 3s)", "too many arguments", 17, None),
    (parse_distribution, "uniform(low=1s, 2s)", "given twice", 9, None),
    (parse_distribution, "normal(mean=1s)", "normal needs sd", 1, None),
    (parse_distribution, "normal(mean=1s, sdev=1s)", "no argument `sdev`", 17, None),
    (parse_distribution, "exponential(0s)", "above 0", 1, "none"),
    (parse_distribution, "exponential(mean=1)", "needs a unit", 18, "1s"),
    (parse_distribution, "constnt(1s)", "unknown distribution `constnt`", 1, "did you mean `constant`?"),
    (parse_distribution, "unifrm", "unknown think time", 1, "did you mean `uniform`?"),
    (parse_distribution, "constant", "needs arguments", 1, None),
    (parse_distribution, "1", "needs a unit", 1, "1s"),
    (parse_distribution, "", "empty think time", 0, None),
    (parse_distribution, "none none", "extra", 6, None),
    (parse_slo, "p99(latncy) < 500ms", "unknown metric `latncy`", 5, "did you mean `latency`?"),
    (parse_slo, "p99(latency) < 500", "needs a unit", 16, "latency is a time: write 500ms"),
    (parse_slo, "p99(latency) < 2", "needs a unit", 16, "write 2s"),
    (parse_slo, "p99(latency) 500ms", "expected a comparison: <, <=, >, >=", 14, None),
    (parse_slo, "p99(latency)", "expected a comparison", 13, None),
    (parse_slo, "p99(latency) <", "expected a threshold", 15, None),
    (parse_slo, "p99(latency < 1s", "missing `)`", 13, None),
    (parse_slo, "p99() < 1s", "expected a metric name", 5, None),
    (parse_slo, "latency < 1s", "latency needs a statistic", 1, "p99(latency)"),
    (parse_slo, "p99 < 1s", "of what?", 1, "p99(latency)"),
    (parse_slo, "q99(latency) < 1s", "unknown statistic `q99`", 1, "did you mean `p99`?"),
    (parse_slo, "p0(latency) < 1s", "above 0 and at most 100", 1, None),
    (parse_slo, "p99(error_rate) < 1%", "takes no statistic", 1, "error_rate < 1%"),
    (parse_slo, "error_rate < 1s", "error_rate is a fraction, not a duration", 14, None),
    (parse_slo, "error_rate < 5", "more than 100%", 14, "5%"),
    (parse_slo, "throughput >= 50", "throughput is a rate", 15, "50/s"),
    (parse_slo, "dropped_iterations == 0", "`==` is not supported", 20, "dropped_iterations <= 0"),
    (parse_slo, "dropped_iterations < 0.5", "not a whole number", 22, None),
    (parse_slo, "p99(latency) = 1s", "`=` is not supported", 14, None),
    (parse_slo, "p99(latency) =< 1s", "write `<=`", 14, None),
    (parse_slo, "p99(latency) < 1s for", "`for` needs request names", 22, None),
    (parse_slo, "p99(latency) < 1s for a,", "missing after `,`", 25, None),
    (parse_slo, "p99(latency) < 1s for a b", "missing `,` before `b`", 25, None),
    (parse_slo, "p99(latency) < 1s for a, a", "listed twice", 26, None),
    (parse_slo, "p99(latency) < 1s during", "`during` needs", 25, None),
    (parse_slo, "p99(latency) < 1s during 1m", "start..end", 28, None),
    (parse_slo, "p99(latency) < 1s during 2m..1m", "ends before it starts", 19, None),
    (parse_slo, "p99(latency) < 1s during 60..120", "needs a unit", 26, "60s"),
    (parse_slo, "p99(latency) < 1s during ..", "needs a start, an end or both", 26, None),
    (parse_slo, "p99(latency) < 1s during a during b", "given twice", 28, None),
    (parse_slo, "p99(latency) < 1s x", "out of place", 19, None),
    (parse_slo, "< 1s", "starts with a metric", 1, None),
    (parse_slo, "", "empty SLO", 0, None),
    (parse_template, "{images", "unclosed `{`", 1, "{{"),
    (parse_template, "x {a {b}", "unclosed `{`", 3, None),
    (parse_template, "a } b", "unmatched `}`", 3, "}}"),
    (parse_template, "x {}", "empty reference", 3, None),
    (parse_template, "{a b}", "not a data reference", 1, None),
    (parse_template, '{"json": 1}', "not a data reference", 1, "{{"),
    (parse_template, "{a.b.c}", "not a data reference", 1, None),
    (parse_template, "${API_KEY}", "only ${env:NAME}", 1, None),
    (parse_template, "${env:}", "empty environment variable name", 1, None),
    (parse_template, "${env:1X}", "not an environment variable name", 7, None),
    (parse_template, "ab ${env:X", "unclosed `${`", 4, None),
]


@pytest.mark.parametrize(
    ("parse", "text", "fragment", "text_column", "hint"),
    BAD,
    ids=[f"{p.__name__}:{t!r}" for p, t, *_ in BAD],
)
def test_bad_input(parse: Parser, text: str, fragment: str, text_column: int, hint: str | None) -> None:
    with pytest.raises(ExprError) as info:
        parse(text, AT)
    d = info.value.diagnostic
    assert fragment in d.message
    assert (d.span.file, d.span.line, d.span.column) == ("s.yaml", 3, column(text_column)), d.render()
    if hint is not None:
        assert d.hint is not None and hint in d.hint, d.hint


def test_error_carries_a_diagnostic() -> None:
    with pytest.raises(ExprError) as info:
        parse_duration("5", AT)
    err = info.value
    assert err.message == err.diagnostic.message and err.span == err.diagnostic.span and err.hint
    assert str(err).startswith("s.yaml:3:10: error: a duration needs a unit")


def test_non_text_input_is_an_expr_error() -> None:
    with pytest.raises(ExprError, match="expected text"):
        parse_duration(30, AT)  # type: ignore[arg-type]


# --- the example tables behind the syntax errors ------------------------------------------------------------


EXAMPLE_TABLES = [(curve, "curve"), (distribution, "distribution"), (slo, "slo"), (quantity, "quantity")]


@pytest.mark.parametrize(("module", "grammar"), EXAMPLE_TABLES, ids=[g for _, g in EXAMPLE_TABLES])
def test_every_malformed_example_fails_and_gets_its_own_message(module: Any, grammar: str) -> None:
    """Two examples that fail the same way under different messages would make the messages arbitrary."""
    for (message, hint), examples in module._EXAMPLES:
        for example in examples:
            exc = _parsing._example_error(grammar, example)
            assert exc is not None, f"{example!r} parses"
            got = _parsing.syntax_error(exc, grammar, example, AT, module._EXAMPLES)
            assert got.message.startswith(message.split("{token}")[0]), (example, got.message)
            assert got.hint == hint, example
