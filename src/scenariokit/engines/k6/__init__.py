"""k6 as an engine: a generated script (`codegen`) over a runtime module (`files/`), started by `driver`,
its batched records and dropped iterations read by `reader`."""

from __future__ import annotations

import re
import subprocess
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
from scenariokit.engines.k6.codegen import UNMEASURABLE, compile_k6
from scenariokit.engines.k6.driver import k6_binary, k6_launch
from scenariokit.engines.k6.reader import K6RecordReader


class K6Engine(Engine):
    name = "k6"
    capabilities = Capabilities(
        unmeasurable=UNMEASURABLE,  # k6 reads whole responses: no time to first token
        uses_every_core=True,
        # `--processes N`: N instances on execution segments, on other machines behind a launcher
        worker_processes=True,
        launched_instances=True,
        clean_exit_codes=frozenset({0, 99}),  # 99: k6's own thresholds failed, a verdict, not a crash
    )

    def compile(self, scenario: Scenario) -> CompiledScript:
        return compile_k6(scenario, self.files_dir())

    def launch(self, plan: LaunchPlan) -> EngineLaunch:
        return k6_launch(plan)

    def reader(self, raw_dir: Path, launch: EngineLaunch) -> RecordReader:
        return K6RecordReader(raw_dir, launch.api)

    def version(self) -> str:
        result = subprocess.run([k6_binary(), "version"], capture_output=True, text=True, check=False)
        match = re.search(r"v\d+\.\d+\.\d+", result.stdout)
        return f"k6 {match.group(0) if match else 'unknown'}"
