"""Locust as an engine: a generated locustfile (`codegen`) over a runtime helper (`files/`), started by
`driver`, its records read by the shared line reader."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from scenariokit.compile.ir import Scenario
from scenariokit.engines.base import (
    Capabilities,
    CompiledScript,
    Engine,
    EngineLaunch,
    LaunchPlan,
    RecordReader,
)
from scenariokit.engines.locust.codegen import compile_locust
from scenariokit.engines.locust.driver import locust_launch
from scenariokit.engines.records import RecordLinesReader


class LocustEngine(Engine):
    name = "locust"
    # the runtime measures every metric the DSL has, TTFT and ITL included; one process uses one core
    capabilities = Capabilities(worker_processes=True, remote_workers=True)

    def compile(self, scenario: Scenario) -> CompiledScript:
        return compile_locust(scenario, self.files_dir())

    def launch(self, plan: LaunchPlan) -> EngineLaunch:
        return locust_launch(plan)

    def reader(self, raw_dir: Path, launch: EngineLaunch) -> RecordReader:
        return RecordLinesReader(raw_dir)

    def version(self) -> str:
        return f"locust {importlib.metadata.version('locust')}"  # importing locust would monkey-patch us
