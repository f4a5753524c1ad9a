"""A table of broken scenarios: each must fail with exit code 2 and name file:line:column and a fix.

Each case is a complete scenario with one mistake. The expected position is where a person would look to
fix it: the key, the value, or the token inside an expression.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.compile.diagnostics import ScenarioError
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario

GOOD = """\
version: 1
name: t
target: {kind: openai-chat, base_url: embedded, model: ocr}
load:
  curve: ramp(0, 2, 5s) -> hold(5s) as steady
  think_time: constant(1s)
data:
  images: {source: builtin:text-cards, count: 2}
requests:
  a: {prompt: "hi", image: "{images}"}
  b: {prompt: "hi", stream: true}
slo:
  - p99(latency) < 500ms
"""


def replace(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def with_body(line: str) -> str:
    """GOOD plus a raw request `c` whose JSON body ends with `line`, on line 16 from column 9."""
    request = '  b: {prompt: "hi", stream: true}\n'
    return replace(
        request, request + "  c:\n    raw:\n      json:\n        model: ocr\n        " + line + "\n"
    )


METRICS_URL = "http://127.0.0.1:9100/metrics"


def with_targets(*rows: str) -> str:
    """GOOD plus `monitoring.targets` with one flow mapping a row, the first on line 16 from column 7."""
    return GOOD + "monitoring:\n  targets:\n" + "".join(f"    - {row}\n" for row in rows)


# (id, scenario text, line, column, message fragment, hint fragment or None)
CASES: list[tuple[str, str, int, int, str, str | None]] = [
    ("tab-indent", replace("  think_time:", "\tthink_time:"), 6, 1, "invalid YAML", "tabs"),
    (
        "unclosed-flow",
        replace("model: ocr}", "model: ocr"),
        4,
        5,
        "flow mapping started at line 3, column 9",
        None,
    ),
    (
        "duplicate-key",
        replace("  think_time: constant(1s)\n", "  think_time: constant(1s)\n  curve: hold(1s)\n"),
        7,
        3,
        "duplicate key `curve`",
        "last one silently",
    ),
    ("unknown-top-key", replace("slo:", "slos:"), 12, 1, "unknown key `slos`", "did you mean `slo`?"),
    (
        "unknown-nested-key",
        replace("think_time:", "think_tme:"),
        6,
        3,
        "unknown key `think_tme`",
        "did you mean `think_time`?",
    ),
    (
        "unknown-request-key",
        replace('a: {prompt: "hi"', 'a: {promt: "hi"'),
        10,
        7,
        "unknown key `promt`",
        "did you mean `prompt`?",
    ),
    (
        "missing-target",
        replace("target: {kind: openai-chat, base_url: embedded, model: ocr}\n", ""),
        1,
        1,
        "missing required key `target`",
        "target:",
    ),
    (
        "missing-curve",
        replace("  curve: ramp(0, 2, 5s) -> hold(5s) as steady\n", ""),
        4,
        1,
        "missing required key `curve`",
        "curve:",
    ),
    ("bad-version", replace("version: 1", "version: 2"), 1, 10, "`2` is not allowed", None),
    ("bad-engine", GOOD + "engine: lcust\n", 14, 9, "`lcust` is not allowed", "did you mean `locust`?"),
    (
        "bad-kind",
        replace("kind: openai-chat", "kind: openai"),
        3,
        16,
        "`openai` is not allowed",
        "did you mean `openai-chat`?",
    ),
    ("duration-no-unit", replace("model: ocr}", "model: ocr, timeout: 30}"), 3, 70, "unit", "30s"),
    ("curve-missing-duration", replace("ramp(0, 2, 5s)", "ramp(0, 2)"), 5, 10, "ramp", None),
    (
        "curve-unknown-function",
        replace("ramp(0, 2, 5s)", "rmp(0, 2, 5s)"),
        5,
        10,
        "rmp",
        "did you mean `ramp`?",
    ),
    ("curve-hold-no-unit", replace("hold(5s)", "hold(5)"), 5, 33, "unit", None),
    ("curve-empty", replace("ramp(0, 2, 5s) -> hold(5s) as steady", '""'), 5, 10, "empty", None),
    (
        "closed-fractional-users",
        replace("ramp(0, 2, 5s)", "ramp(0, 2.5, 5s)"),
        5,
        10,
        "whole numbers",
        "model: open",
    ),
    (
        "think-time-inverted",
        replace("constant(1s)", "uniform(2s, 1s)"),
        6,
        15,
        "low (2s) is above its high (1s)",
        "uniform(1s, 2s)",
    ),
    (
        "slo-unknown-metric",
        replace("p99(latency)", "p99(latncy)"),
        13,
        9,
        "latncy",
        "did you mean `latency`?",
    ),
    ("slo-no-unit", replace("< 500ms", "< 500"), 13, 20, "`500` needs a unit", "500ms"),
    ("slo-no-comparison", replace("< 500ms", "500ms"), 13, 18, "comparison", None),
    ("slo-unknown-request", replace("< 500ms", "< 500ms for c"), 13, 5, "no request is called `c`", None),
    (
        "slo-unknown-window",
        replace("< 500ms", "< 500ms during spike"),
        13,
        33,  # at the name
        "no load stage or fault is called `spike`",
        None,
    ),
    ("slo-duplicate", GOOD + "  - p99(latency) < 500ms\n", 14, 5, "repeats SLO #1", "k6"),
    # soak SLOs (results/trend.py): growths per hour, positioned like every other threshold
    ("soak-bad-unit", replace("p99(latency) < 500ms", "memory_growth < 5XB/h"), 13, 21, "`XB/h`", "5MB/h"),
    ("soak-no-time", replace("p99(latency) < 500ms", "memory_growth < 5MB"), 13, 21, "`MB`", "per hour"),
    ("soak-1e400", replace("p99(latency) < 500ms", "memory_growth < 1e400MB/h"), 13, 21, "`e400MB/h`", None),
    (
        "soak-too-large",
        replace("p99(latency) < 500ms", "p95(latency_trend) < 1" + "0" * 400 + "%/h"),
        13,
        26,
        "too large",
        None,
    ),
    (
        "soak-negative",
        replace("p99(latency) < 500ms", "memory_growth < -5MB/h"),
        13,
        21,
        "is negative",
        "memory_growth < 5MB/h",
    ),
    ("soak-empty", replace("p99(latency) < 500ms", "memory_growth <"), 13, 20, "expected a threshold", None),
    (
        "soak-wrong-kind",
        replace("p99(latency) < 500ms", "throughput_trend > 5MB/h"),
        13,
        24,
        "not a memory growth",
        "10%/h",
    ),
    (
        "soak-no-statistic",
        replace("p99(latency) < 500ms", "latency_trend < 10%/h"),
        13,
        5,
        "needs a statistic",
        "p99(latency_trend)",
    ),
    (
        "soak-memory-per-request",
        replace("p99(latency) < 500ms", "memory_growth < 5MB/h for a"),
        13,
        27,
        "not a request's",
        None,
    ),
    (
        "soak-growth-on-a-time",
        replace("p99(latency) < 500ms", "p99(latency) < 10%/h"),
        13,
        20,
        "not a relative growth",
        "p95(latency_trend) < 10%/h",
    ),
    (
        "slo-ttft-without-stream",
        replace("< 500ms", "< 500ms for a").replace("p99(latency)", "p95(ttft)"),
        13,
        5,
        "streamed",
        "stream: true",
    ),
    (
        "weights-zero",
        replace('a: {prompt: "hi"', 'a: {weight: 0, prompt: "hi"').replace(
            'b: {prompt: "hi"', 'b: {weight: 0, prompt: "hi"'
        ),
        9,
        1,
        "add up to 0",
        "positive",
    ),
    (
        "weight-negative",
        replace('a: {prompt: "hi"', 'a: {weight: -1, prompt: "hi"'),
        10,
        15,
        "greater than or equal to 0",
        None,
    ),
    (
        "unknown-dataset",
        replace('"{images}"', '"{imgs}"'),
        10,
        29,
        "unknown data set `imgs`",
        "did you mean `images`?",
    ),
    (
        "unknown-dataset-field",
        replace('"{images}"', '"{images.txt}"'),
        10,
        29,
        "no field `txt`",
        "did you mean `text`?",
    ),
    ("unclosed-template", replace('"{images}"', '"{images"'), 10, 29, "unclosed `{`", "{{"),
    (
        "mixed-chat-and-rest",
        replace('b: {prompt: "hi"', 'b: {path: /x, prompt: "hi"'),
        11,
        3,
        "mixes chat fields",
        None,
    ),
    (
        "rest-without-path",
        replace("kind: openai-chat", "kind: http").replace(
            '  a: {prompt: "hi", image: "{images}"}\n  b: {prompt: "hi", stream: true}\n',
            "  a: {method: GET}\n",
        ),
        10,
        3,
        "needs a `path`",
        "/api/v1/identify",
    ),
    ("chat-without-model", replace(", model: ocr}", "}"), 10, 3, "need a model", "target.model"),
    (
        "bad-status",
        replace('a: {prompt: "hi"', 'a: {expect: {status: 999}, prompt: "hi"'),
        10,
        24,
        "not an HTTP status code",
        None,
    ),
    (
        "max-tokens-not-number",
        replace('b: {prompt: "hi"', 'b: {max_tokens: many, prompt: "hi"'),
        11,
        19,
        "must be a whole number",
        None,
    ),
    (
        "base-url-not-url",
        replace("base_url: embedded", "base_url: localhost:8000"),
        3,
        39,
        "not an http(s) URL",
        "http://127.0.0.1:8000",
    ),
    ("bad-name", replace("name: t", "name: my scenario"), 2, 7, "`name`", None),
    (
        "unknown-builtin-data",
        replace("builtin:text-cards", "builtin:cats"),
        8,
        20,
        "unknown built-in data set",
        "text-cards",
    ),
    ("not-a-mapping", "- just\n- a list\n", 1, 1, "must be a mapping", "version: 1"),
    ("empty-file", "# nothing here\n", 1, 1, "empty", "version: 1"),
    (
        "monitoring-interval-out-of-range",
        GOOD + "monitoring: {interval: 10ms}\n",
        14,
        24,
        "sampling interval of 10ms is out of range",
        "100ms to 1m",
    ),
    (
        "monitoring-unknown-key",
        GOOD + "monitoring: {promethus: true}\n",
        14,
        14,
        "unknown key `promethus`",
        "did you mean `prometheus`?",
    ),
    # monitoring.targets: only http(s) with a host, no credentials (they would be kept in run.json), no CR/LF
    # (request splitting), a closed set of roles, file names that cannot leave monitor/targets/, at most 16
    (
        "monitor-file-url",
        with_targets('{url: "file:///etc/passwd", role: node}'),
        16,
        14,
        "not an http(s) URL",
        "http://127.0.0.1:9100/metrics",
    ),
    (
        "monitor-credentials",
        with_targets('{url: "http://user:secret@127.0.0.1:9100/metrics", role: node}'),
        16,
        14,
        "holds credentials",
        None,
    ),
    (
        "monitor-crlf",
        with_targets('{url: "http://127.0.0.1:9100/metrics\\r\\nX-Injected: 1", role: node}'),
        16,
        14,
        "control character",
        None,
    ),
    ("monitor-port", with_targets('{url: "http://127.0.0.1:99999/m", role: node}'), 16, 14, "port", None),
    (
        "monitor-role",
        with_targets(f'{{url: "{METRICS_URL}", role: gpu}}'),
        16,
        52,
        "`gpu` is not allowed",
        "dcgm",
    ),
    (
        "monitor-name-escape",
        with_targets(f'{{url: "{METRICS_URL}", role: node, name: ../../etc}}'),
        16,
        64,
        "should match pattern",
        None,
    ),
    (
        "monitor-names-twice",
        with_targets(
            f'{{url: "{METRICS_URL}", role: node, name: a}}',
            f'{{url: "{METRICS_URL}", role: process, name: a}}',
        ),
        17,
        67,
        "two monitoring targets are named `a`",
        "its own `name`",
    ),
    (
        "monitor-name-as-default",
        with_targets(
            f'{{url: "{METRICS_URL}", role: node, name: process-2}}',
            f'{{url: "{METRICS_URL}", role: process}}',
        ),
        17,
        7,
        "named `process-2`",
        None,
    ),
    (
        "monitor-17-targets",
        with_targets(*[f'{{url: "{METRICS_URL}", role: node, name: n{i}}}' for i in range(17)]),
        16,
        5,
        "longer than 16 items",
        None,
    ),
    (
        "weight-infinite",
        replace('a: {prompt: "hi"', 'a: {weight: .inf, prompt: "hi"'),
        10,
        15,
        "finite",
        None,
    ),
    # What YAML can write and JSON cannot hold, in a body sent as written: where it stands, and the fix.
    (
        "json-date",
        with_body("day: 2024-01-01"),
        16,
        14,
        "`requests.c.raw.json.day` is a date, which JSON cannot hold",
        '`"2024-01-01"`',
    ),
    (
        "json-date-and-time",
        with_body("at: 2024-01-01 10:00:00"),
        16,
        13,
        "is a date and time",
        '`"2024-01-01 10:00:00"`',
    ),
    ("json-set", with_body("tags: !!set {a, b}"), 16, 15, "is a YAML set (`!!set`)", "write a list"),
    (
        "json-binary",
        with_body("blob: !!binary aGVsbG8="),
        16,
        15,
        "is binary data (`!!binary`)",
        "remove the `!!binary` tag",
    ),
    (
        "json-number-key",
        with_body("1: one"),
        16,
        9,
        "the key `1` in `requests.c.raw.json` is a number, not text",
        '`"1":`',
    ),
    (
        "json-null-key",
        with_body("null: none"),
        16,
        9,
        "the key `null` in `requests.c.raw.json` is null",
        '`"null":`',
    ),
    ("json-nan", with_body("score: .nan"), 16, 16, "`requests.c.raw.json.score` is `.nan`", "finite"),
    (
        "json-infinity-in-a-list",
        with_body("range: [0, -.inf]"),
        16,
        20,
        "`requests.c.raw.json.range.1` is `-.inf` (infinity)",
        "finite",
    ),
    (
        "json-custom-tag",
        with_body("at: !point {x: 1}"),
        16,
        13,
        "is a value tagged `!point`",
        "remove the tag",
    ),
    (
        "rest-json-date-in-a-list",
        replace("kind: openai-chat", "kind: http").replace(
            '  a: {prompt: "hi", image: "{images}"}\n  b: {prompt: "hi", stream: true}\n',
            "  a: {path: /x, json: {items: [{due: 2024-01-01}]}}\n",
        ),
        10,
        38,
        "`requests.a.json.items.0.due` is a date",
        '`"2024-01-01"`',
    ),
    (
        "header-date",
        replace('b: {prompt: "hi"', 'b: {headers: {X-Day: 2024-01-01}, prompt: "hi"'),
        11,
        24,
        "`requests.b.headers.X-Day` must be text, not `2024-01-01`",
        '`"2024-01-01"`',
    ),
    (
        "header-number-key",
        replace("model: ocr}", "model: ocr, headers: {404: a}}"),
        3,
        71,
        "the key `404` in `target.headers` is a number",
        '`"404":`',
    ),
    (
        "yaml-unknown-tag",
        with_body("x: !foo bar"),
        16,
        12,
        "could not determine a constructor for the tag '!foo'",
        "remove the tag",
    ),
    ("yaml-merge-of-a-number", with_body("<<: 1"), 16, 13, "invalid merge", "<<: *anchor"),
    (
        "data-set-name-not-an-identifier",
        replace("  images: {source", '  "../out/x": {source'),
        8,
        3,
        "`../out/x` is not a data set name",
        "letters, digits",
    ),
    (
        "curve-of-zero-seconds",
        replace("ramp(0, 2, 5s) -> hold(5s) as steady", "hold(2, 0s)"),
        5,
        10,
        "lasts 0s",
        "1s to 7 days",
    ),
    (
        "users-beyond-a-fleet",
        replace("ramp(0, 2, 5s)", "ramp(0, 20000000, 5s)"),
        5,
        10,
        "a level of 2e+07 users",
        "closed model",
    ),
    (
        "nested-too-deep",
        with_body("deep: " + "[" * 100 + "]" * 100),
        16,
        110,
        "nested more than 100 levels deep",
        "flatten",
    ),
]


def first_error(tmp_path: Path, text: str, fragment: str) -> tuple[int, int, str, str | None]:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    matching = [d for d in info.value.diagnostics if fragment in d.message] or info.value.diagnostics
    d = matching[0]
    return d.span.line, d.span.column, d.message, d.hint


@pytest.mark.parametrize(
    ("case", "text", "line", "column", "fragment", "hint"), CASES, ids=[c[0] for c in CASES]
)
def test_broken_scenario_is_reported_at_the_right_place(
    tmp_path: Path, case: str, text: str, line: int, column: int, fragment: str, hint: str | None
) -> None:
    got_line, got_column, message, got_hint = first_error(tmp_path, text, fragment)
    assert fragment in message, message
    assert (got_line, got_column) == (line, column), f"{message} (hint: {got_hint})"
    if hint is not None:
        assert got_hint is not None and hint in got_hint, got_hint


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 25


def test_good_base_scenario_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    assert load_scenario(path).scenario.name == "t"


def test_cli_reports_file_line_column_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(replace("think_time:", "think_tme:"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    # a path outside the working directory is shown as given; the console does not wrap lines
    assert f"{path.as_posix()}:6:3: error: unknown key `think_tme`\n" in err
    assert "did you mean `think_time`?" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "command", [["validate"], ["compile", "--engine", "locust"], ["compile", "--engine", "k6"]]
)
def test_a_date_in_a_body_is_exit_2_with_its_position_for_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = tmp_path / "dated.yaml"
    path.write_text(with_body("day: 2024-01-01"))
    out = ["-o", str(tmp_path / "build")] if command[0] == "compile" else []
    assert main([command[0], str(path), *command[1:], *out]) == 2
    err = capsys.readouterr().err
    assert f"{path.as_posix()}:16:14: error: `requests.c.raw.json.day` is a date" in err
    assert "Traceback" not in err
    assert not (tmp_path / "build").exists()


def test_deeply_nested_json_is_fine_and_reaches_both_engines(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(with_body("deep: " + "[" * 90 + '{"k": [1.5, null, "x"]}' + "]" * 90))
    scenario = load_scenario(path).scenario
    body = scenario.requests[-1].json_body
    assert isinstance(body, dict)
    value = body["deep"]
    for _ in range(90):
        value = value[0]
    assert value == {"k": [1.5, None, "x"]}
    for engine in ("locust", "k6"):
        script = compile_scenario(scenario, engine)
        assert "1.5" in script.files[script.entry]


def test_every_problem_of_a_stage_is_reported_at_once(tmp_path: Path) -> None:
    """Within a stage every problem is collected; a later stage runs once the earlier ones pass."""
    checks = [
        (
            replace("think_time:", "think_tme:").replace('a: {prompt: "hi"', 'a: {promt: "hi"'),
            "think_tme",
            "promt",
        ),
        (replace("p99(latency)", "p99(latncy)").replace('"{images}"', '"{imgs}"'), "latncy", "`imgs`"),
        (with_body("a: 2024-01-01\n        b: .nan"), "json.a` is a date", "json.b` is `.nan`"),
    ]
    for text, first, second in checks:
        path = tmp_path / "two.yaml"
        path.write_text(textwrap.dedent(text))
        with pytest.raises(ScenarioError) as info:
            load_scenario(path)
        messages = " | ".join(d.message for d in info.value.diagnostics)
        assert first in messages and second in messages, messages
