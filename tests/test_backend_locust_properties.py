"""Property: any string from YAML reaches the generated locustfile as data, never as code.

Arbitrary text (quotes, backslashes, `${`, braces, newlines, triple quotes, `</script>`, NUL, unicode) is put
in every value a scenario can carry into the script. The script must still parse, its syntax tree must have
exactly the shape of the same scenario with plain text (so nothing became code), and every injected string
must be present in it as a string constant.
"""

from __future__ import annotations

import ast
import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from scenariokit.compile.ir import Dataset, Expect, Scenario
from scenariokit.engines import get_engine
from tests.support.ir_examples import closed_chat_scenario

PIECES = [*"aZ 0'\"\\{}$#\n\r\t\x00<>/;:()[]`", "${", '"""', "'''", "</script>", "é", "\u2028", "😀"]
NASTY = (
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=12)
    .map("".join)
    .map(lambda s: s if s.strip() else s + "x")
)


def with_text(text: str) -> Scenario:
    base = closed_chat_scenario()
    identify, ocr, empty = base.requests
    cards = base.datasets[0]
    records = tuple({**r, "text": text} for r in cards.records)
    return dataclasses.replace(
        base,
        name=f"n{text}",
        source_path=f"scenarios/{text}.yaml",
        target=dataclasses.replace(base.target, model=text, headers=(("X-Value", text),)),
        load=dataclasses.replace(
            base.load, stages=tuple(dataclasses.replace(s, label=text) for s in base.load.stages)
        ),
        requests=(
            dataclasses.replace(
                identify, name=text, path=f"/{text}", json_body={"prompt": text, text: [text]}
            ),
            dataclasses.replace(ocr, expect=Expect(contains=text), headers=((text, text),)),
            dataclasses.replace(empty, text_body=text, json_body=None),
        ),
        datasets=(Dataset(cards.name, cards.source, cards.fields, cards.default_field, records),),
    )


def shape(tree: ast.AST) -> list[str]:
    """The tree's node types in order: what code it is, whatever its names and constants say."""
    return [type(node).__name__ for node in ast.walk(tree)]


def string_constants(tree: ast.AST) -> set[str]:
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


BASELINE = ast.parse(
    get_engine("locust").compile(with_text("plain")).files["chat-mix.locust.py".replace("chat-mix", "nplain")]
)


@settings(max_examples=120, deadline=None)
@given(NASTY)
def test_any_string_stays_data_in_the_locustfile(text: str) -> None:
    script = get_engine("locust").compile(with_text(text))
    tree = ast.parse(script.files[script.entry])
    assert shape(tree) == shape(BASELINE)
    constants = string_constants(tree)
    for expected in (text, f"/{text}", f"n{text}"):
        assert expected in constants
    # each stage's label reaches its `sk.Stage(...)` call as a constant
    labels = [
        ast.literal_eval(node.args[0])
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Stage"
    ]
    assert labels == [text] * len(with_text(text).load.stages)
    # the data files are JSON, whatever their records hold
    records = json.loads(script.files["data/images.json"])["records"]
    assert records and all(record["text"] == text for record in records)
