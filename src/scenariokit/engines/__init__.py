"""Engines: one package per stock load engine, each behind one class (`base.Engine`).

This module is the one registry. It holds names and import paths only, so that the DSL model can list the
engines without importing any of them; an engine's package is imported the first time it is asked for.
Adding an engine is a package under `engines/` (or anywhere importable) plus one `register` line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scenariokit.compile.ir import Scenario
    from scenariokit.engines.base import CompiledScript, Engine

DEFAULT_ENGINE = "locust"

_REGISTRY: dict[str, str] = {
    "locust": "scenariokit.engines.locust:LocustEngine",
    "k6": "scenariokit.engines.k6:K6Engine",
}
_LOADED: dict[str, Engine] = {}


def register(name: str, spec: str) -> None:
    """Register an engine class by import path, `package.module:ClassName`."""
    _REGISTRY[name] = spec
    _LOADED.pop(name, None)


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)
    _LOADED.pop(name, None)


def engine_names() -> list[str]:
    return list(_REGISTRY)  # registration order: the built-in engines first, the default first of all


def get_engine(name: str) -> Engine:
    """The engine registered under `name` (KeyError when there is none)."""
    if name not in _LOADED:
        module, _, attribute = _REGISTRY[name].partition(":")
        _LOADED[name] = getattr(importlib.import_module(module), attribute)()
    return _LOADED[name]


def engines_measuring(metric: str) -> list[str]:
    """The engines that can measure `metric`, for messages that say what to run instead."""
    return [name for name in engine_names() if metric not in get_engine(name).capabilities.unmeasurable]


def compile_scenario(scenario: Scenario, engine: str) -> CompiledScript:
    """The scenario as the engine's files; every diagnostic once, in `CompiledScript.diagnostics`.
    Raises ScenarioError when one of them is an error (something the engine cannot express)."""
    from scenariokit.compile.diagnostics import ScenarioError, Severity

    script = get_engine(engine).compile(scenario)
    errors = [d for d in script.diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise ScenarioError(errors)
    return script
