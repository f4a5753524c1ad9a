"""The checked-in JSON Schema matches the models, and every example scenario validates against it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from scenariokit.compile.schema import scenario_schema_text

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "schemas" / "scenario.schema.json"
EXAMPLES = sorted((ROOT / "scenarios").glob("*.yaml"))


def test_checked_in_schema_is_in_sync_with_the_models() -> None:
    assert SCHEMA_FILE.read_text() == scenario_schema_text(), (
        "schemas/scenario.schema.json is stale: run `scenariokit schema > schemas/scenario.schema.json`"
    )


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_validates_against_the_schema(path: Path) -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_points_editors_at_the_schema(path: Path) -> None:
    assert path.read_text().startswith("# yaml-language-server: $schema=../schemas/scenario.schema.json")


def test_schema_rejects_an_unknown_key_like_the_compiler() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    doc = yaml.safe_load((ROOT / "scenarios" / "smoke.yaml").read_text())
    doc["load"]["think_tme"] = "1s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(doc)


def test_summary_schema_is_in_sync_with_the_model() -> None:
    from scenariokit.results.summary import summary_schema_text

    assert (ROOT / "schemas" / "summary.schema.json").read_text() == summary_schema_text(), (
        "schemas/summary.schema.json is stale: "
        "regenerate it from scenariokit.results.summary.summary_schema_text()"
    )


def test_run_schema_is_in_sync_with_the_model() -> None:
    from scenariokit.results.runfolder import run_schema_text

    assert (ROOT / "schemas" / "run.schema.json").read_text() == run_schema_text(), (
        "schemas/run.schema.json is stale: regenerate it from scenariokit.results.runfolder.run_schema_text()"
    )
