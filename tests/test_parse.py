"""The YAML stage keeps positions, refuses duplicate keys and quotes column offsets inside quoted values."""

from __future__ import annotations

import pytest

from scenariokit.compile.diagnostics import ScenarioError, Span
from scenariokit.compile.parse import parse_text


def test_values_and_keys_keep_their_positions() -> None:
    doc = parse_text("a:\n  b: [1, 2]\n  c: 'x'\n", "f.yaml")
    assert doc.data == {"a": {"b": [1, 2], "c": "x"}}
    assert doc.source.key(("a", "b")) == Span("f.yaml", 2, 3, 2, 4)
    assert (doc.source.value(("a", "b", 1)).line, doc.source.value(("a", "b", 1)).column) == (2, 10)
    # a quoted scalar's text starts one column after its opening quote
    assert doc.source.text(("a", "c")).column == 7


def test_unknown_paths_fall_back_to_the_nearest_ancestor() -> None:
    doc = parse_text("a:\n  b: 1\n", "f.yaml")
    assert doc.source.value(("a", "b", "zz")).line == 2


def test_duplicate_keys_are_errors_not_silently_merged() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_text("a: 1\nb: 2\na: 3\n", "f.yaml")
    (d,) = info.value.diagnostics
    assert (d.span.line, d.span.column) == (3, 1)
    assert "first defined at line 1" in d.message


def test_merge_keys_and_anchors_work() -> None:
    doc = parse_text("base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n", "f.yaml")
    assert doc.data["use"] == {"x": 1, "y": 2}


@pytest.mark.parametrize("text", ["a: [1, 2", "a: 'open", "a:\n\t- 1", "{", "a: b: c"])
def test_yaml_syntax_errors_become_one_positioned_diagnostic(text: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_text(text, "f.yaml")
    (d,) = info.value.diagnostics
    assert d.message.startswith("invalid YAML")
    assert d.span.line >= 1 and d.span.column >= 1
