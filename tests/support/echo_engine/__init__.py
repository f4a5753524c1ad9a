"""A third engine for tests only: proof that shared code never names an engine.

It is a whole engine in one package plus one registry line (`register("echo", ...)`): it compiles a
scenario to a plan file (the requests, their weights and the load curve as JSON data) and a small runtime
that sends the plan's requests with the standard library, one user at a time, writing records in the
shared format. The runner, the SLO judge and the reports run it as they run Locust and k6.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scenariokit.compile.ir import Scenario
from scenariokit.engines.base import (
    Capabilities,
    CompiledScript,
    Engine,
    EngineLaunch,
    LaunchPlan,
    RecordReader,
    dataset_files,
    engine_env,
)
from scenariokit.engines.records import RecordLinesReader

RUNTIME = "echo_runtime.py"


class EchoEngine(Engine):
    name = "echo"
    capabilities = Capabilities(unmeasurable={"ttfb": "time to first byte"})

    def compile(self, scenario: Scenario) -> CompiledScript:
        entry = f"{scenario.name}.echo.json"
        plan = {
            "name": scenario.name,
            "base_url": scenario.default_base_url,
            "headers": dict(scenario.target.headers),
            "stages": [[s.label, s.duration_s, s.start, s.end] for s in scenario.load.stages],
            "requests": [
                {"name": r.name, "weight": r.weight, "method": r.method, "path": r.path}
                for r in scenario.requests
                if r.weight > 0
            ],
        }
        files = {
            entry: json.dumps(plan, indent=1, sort_keys=True) + "\n",
            RUNTIME: (self.files_dir() / RUNTIME).read_text(encoding="utf-8"),
            **dataset_files(scenario),
        }
        return CompiledScript(self.name, entry, files)

    def launch(self, plan: LaunchPlan) -> EngineLaunch:
        runtime = plan.script.parent / RUNTIME
        argv = [sys.executable, str(runtime), str(plan.script), str(plan.max_run_s)]
        return EngineLaunch(argv, engine_env(plan.base_url, plan.raw_dir))

    def reader(self, raw_dir: Path, launch: EngineLaunch) -> RecordReader:
        return RecordLinesReader(raw_dir)

    def version(self) -> str:
        return "echo 1"
