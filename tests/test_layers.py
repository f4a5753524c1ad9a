"""The package's layers, checked on the source: each layer imports only the layers below it, and the
shared layers (run, results) never name an engine (they ask the engine's class)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "scenariokit"
# layer -> the scenariokit modules it may import (prefixes). Shared leaves (`scenariokit` for the version,
# `ports`, `exitcodes`, `processes`) may be imported anywhere; `scenariokit.engines` alone (the registry:
# names only) is read by the DSL model and the IR.
ALLOWED = {
    "compile": ("scenariokit.compile", "scenariokit.engines$"),
    "engines": ("scenariokit.compile", "scenariokit.engines"),
    "results": ("scenariokit.compile", "scenariokit.engines", "scenariokit.results"),
    # a front end beside compile/ (`scenariokit import`): it writes YAML that compile/ then reads
    "importers": ("scenariokit.compile", "scenariokit.importers", "scenariokit.engines$"),
    # a front end beside cli.py (`compile --deploy kubernetes`): compiled scripts and the capacity plan
    "deploy": (
        "scenariokit.compile",
        "scenariokit.engines",
        "scenariokit.run.capacity",
        "scenariokit.deploy",
    ),
    # the orchestrator starts the embedded target through its launcher (and nothing else of the server)
    "run": (
        "scenariokit.compile",
        "scenariokit.engines",
        "scenariokit.results",
        "scenariokit.run",
        "scenariokit_server.launcher$",
    ),
}
SHARED = ("scenariokit$", "scenariokit.ports$", "scenariokit.exitcodes$", "scenariokit.processes$")


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return [name for name in names if name.split(".")[0] in ("scenariokit", "scenariokit_server")]


def layer_files(layer: str) -> list[Path]:
    # the engines' runtimes and templates in `files/` run inside the stock engines, not in scenariokit
    return [p for p in sorted((PACKAGE / layer).rglob("*.py")) if "files" not in p.relative_to(PACKAGE).parts]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    patterns = [re.compile(p if p.endswith("$") else re.escape(p) + r"(\.|$)") for p in ALLOWED[layer]]
    patterns += [re.compile(p) for p in SHARED]
    offending = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in layer_files(layer)
        for name in imported_modules(path)
        if not any(pattern.match(name) for pattern in patterns)
    ]
    assert not offending, offending


@pytest.mark.parametrize("layer", ["run", "results"])
def test_shared_layers_never_name_an_engine(layer: str) -> None:
    named = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in layer_files(layer)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"""["'](k6|locust)["']""", line)
    ]
    assert not named, named


def test_the_layers_exist_and_hold_code() -> None:
    for layer in ALLOWED:
        assert layer_files(layer), layer
