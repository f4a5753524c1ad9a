"""The compiler's pipeline in one place: parse -> validate -> lower, each stage in its own module. The IR it
returns goes to an engine (`scenariokit.engines.compile_scenario`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scenariokit.compile.diagnostics import Diagnostic
from scenariokit.compile.ir import Scenario
from scenariokit.compile.lower import lower
from scenariokit.compile.parse import parse_file
from scenariokit.compile.validate import validate_spec


@dataclass(frozen=True)
class Loaded:
    scenario: Scenario
    warnings: tuple[Diagnostic, ...]


def display_path(path: Path) -> str:
    """The path as the user knows it: relative to the working directory when inside it, POSIX style."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def load_scenario(path: Path) -> Loaded:
    """A scenario file as IR. Raises ScenarioError listing every problem found."""
    name = display_path(path)
    doc = parse_file(path, name)
    spec = validate_spec(doc)
    scenario, warnings = lower(spec, doc, name)
    return Loaded(scenario, tuple(warnings))
