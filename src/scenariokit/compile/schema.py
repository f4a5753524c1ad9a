"""The DSL's JSON Schema, generated from the pydantic models (checked in: schemas/scenario.schema.json)."""

from __future__ import annotations

import json
from typing import Any

from scenariokit.compile.model import ScenarioSpec

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def scenario_schema() -> dict[str, Any]:
    schema = ScenarioSpec.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": SCHEMA_DIALECT, **schema}


def scenario_schema_text() -> str:
    return json.dumps(scenario_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
