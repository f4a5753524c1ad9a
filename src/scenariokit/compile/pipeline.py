"""The compiler's pipeline in one place: parse -> validate -> lower, each stage in its own module. The IR it
returns goes to an engine (`scenariokit.engines.compile_scenario`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scenariokit.compile.datasets import DataRoot
from scenariokit.compile.diagnostics import Diagnostic, ScenarioError, Span
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


def load_scenario(path: Path, data_root: Path | None = None) -> Loaded:
    """A scenario file as IR. Raises ScenarioError listing every problem found. Data files are read from
    inside `data_root` (default: the scenario's folder) and nowhere else."""
    if data_root is not None and not data_root.is_dir():
        raise ScenarioError([Diagnostic(Span(str(data_root), 0, 0), "--data-root is not a folder")])
    name = display_path(path)
    doc = parse_file(path, name)
    spec = validate_spec(doc)
    scenario, warnings = lower(spec, doc, name, DataRoot.of(path.parent, data_root))
    return Loaded(scenario, tuple(warnings))
