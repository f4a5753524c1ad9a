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
    ("think-time-inverted", replace("constant(1s)", "uniform(2s, 1s)"), 6, 15, "", None),
    (
        "slo-unknown-metric",
        replace("p99(latency)", "p99(latncy)"),
        13,
        9,
        "latncy",
        "did you mean `latency`?",
    ),
    ("slo-no-unit", replace("< 500ms", "< 500"), 13, 20, "", "500ms"),
    ("slo-no-comparison", replace("< 500ms", "500ms"), 13, 18, "comparison", None),
    ("slo-unknown-request", replace("< 500ms", "< 500ms for c"), 13, 5, "no request is called `c`", None),
    (
        "slo-unknown-window",
        replace("< 500ms", "< 500ms during spike"),
        13,
        5,
        "no load stage is called `spike`",
        None,
    ),
    ("slo-duplicate", GOOD + "  - p99(latency) < 500ms\n", 14, 5, "repeats SLO #1", "k6"),
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
    ("unclosed-template", replace('"{images}"', '"{images"'), 10, 29, "", None),
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
    assert (
        f"{path}:6:3: error: unknown key `think_tme`" in err.replace("\n", " ").replace("  ", " ")
        or ":6:3: error: unknown key `think_tme`" in err
    )
    assert "did you mean `think_time`?" in err
    assert "Traceback" not in err


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = replace("think_time:", "think_tme:").replace("p99(latency)", "p99(latncy)")
    path = tmp_path / "two.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    messages = " | ".join(d.message for d in info.value.diagnostics)
    assert "think_tme" in messages
