"""What every engine is: one class that compiles the IR to files the stock engine runs, launches the engine
on them, reads its per-request records back, and declares what it can do (`Capabilities`), so that shared
code (the runner, the SLO judge) asks the engine instead of branching on its name.
"""

from __future__ import annotations

import json
import math
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from scenariokit import __version__
from scenariokit.compile.diagnostics import Diagnostic, ScenarioError, Span
from scenariokit.compile.ir import LoadProfile, Scenario
from scenariokit.engines.records import RAW_ROTATE_ENV, RequestRecord, raw_rotate_bytes


@dataclass(frozen=True)
class Capabilities:
    """The table shared code reads instead of an engine's name."""

    # metric -> what it is, for the metrics the engine cannot measure (a warning at compile time and
    # "not measured by this engine" in the verdict)
    unmeasurable: Mapping[str, str] = field(default_factory=dict)
    # runs several generator processes on one machine (`run --processes N`)
    worker_processes: bool = False
    # its master takes workers from other machines (`run --master`, `scenariokit worker`)
    remote_workers: bool = False
    # its processes may each run behind a command prefix on another machine (`run --launcher`)
    launched_instances: bool = False
    # one engine process uses every core (its CPU share is of all cores); else one core per process
    uses_every_core: bool = False
    # exit codes that mean the engine ended cleanly (k6's 99 is its own thresholds failing: a verdict)
    clean_exit_codes: frozenset[int] = frozenset({0})


@dataclass(frozen=True)
class CompiledScript:
    """What an engine's compiler produced: file name -> content, which file the engine runs, and every
    diagnostic (warnings; errors when the engine cannot express the scenario)."""

    engine: str
    entry: str
    files: dict[str, str] = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()

    def write(self, out_dir: Path) -> Path:
        """Write every file into `out_dir`; a name that would land outside it is refused before any is."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {name: inside_folder(out_dir, name) for name in self.files}
        for name, content in sorted(self.files.items()):
            paths[name].parent.mkdir(parents=True, exist_ok=True)
            paths[name].write_text(content, encoding="utf-8", newline="\n")
        return out_dir / self.entry


def inside_folder(folder: Path, name: str) -> Path:
    """`folder / name`, refused (ScenarioError) when `name` is absolute, holds `..`, or resolves outside
    `folder` (through a link already there): a scenario's names must never write elsewhere."""
    path = folder / name
    if "\0" in name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise _outside(folder, name)
    if folder.resolve() not in path.resolve().parents:
        raise _outside(folder, name)
    return path


def _outside(folder: Path, name: str) -> ScenarioError:
    return ScenarioError(
        [Diagnostic(Span(str(folder), 0, 0), f"refusing to write `{name}`: it is not inside {folder}")]
    )


# how long a master waits for its generators on other machines to join before it gives up (`run --master`)
WORKERS_JOIN_S = 60.0


@dataclass(frozen=True)
class LaunchPlan:
    """How the runner wants the engine started."""

    script: Path
    base_url: str
    raw_dir: Path  # where the engine's raw output (records) goes
    max_run_s: float  # a safety bound: the script's own curve ends the run
    processes: int = 1  # generator processes on this machine, where the engine supports them
    open_model: bool = True
    web_port: int | None = None  # `run --web`: the engine's own web UI on 127.0.0.1 at this port
    # `run --master`: Locust's master listens here for workers on other machines (docs/distributed.md)
    master_bind: tuple[str, int] | None = None
    expect_workers: int = 0  # the workers the master waits for before the load starts
    # k6 instances on other machines: a command prefix per instance, `{i}` its index (docs/distributed.md)
    launcher: str | None = None
    # the most users (k6 VUs) the scenario runs at once: k6's GC setting depends on it (k6/driver.py)
    peak_users: int | None = None


def peak_users(load: LoadProfile) -> int:
    """The most users an engine runs at once: a closed model's peak level, an open model's user pool."""
    if load.model == "open":
        return max(load.pre_allocated_users, load.max_users)
    return math.ceil(load.peak)


@dataclass(frozen=True)
class EngineLaunch:
    argv: list[str]
    env: dict[str, str]
    api: str | None = None  # host:port of the engine's own control/metrics API, where it has one


class RecordReader(Protocol):
    skipped: int
    dropped: int
    dropped_times: list[float]
    started_unix: float | None

    def poll(self) -> list[RequestRecord]: ...

    def release(self) -> None:
        """Every record polled so far is durably stored: raw bytes already read may be freed."""


class Engine(ABC):
    """One stock load engine. Subclasses live in their own package with their template and runtime as
    package data in `files/`."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()

    @abstractmethod
    def compile(self, scenario: Scenario) -> CompiledScript:
        """The script, its runtime helper and its data files, deterministic byte for byte."""

    @abstractmethod
    def launch(self, plan: LaunchPlan) -> EngineLaunch:
        """The command line and environment that run the compiled script."""

    @abstractmethod
    def reader(self, raw_dir: Path, launch: EngineLaunch) -> RecordReader:
        """An incremental reader of the records the runtime writes into `raw_dir`."""

    @abstractmethod
    def version(self) -> str: ...

    def files_dir(self) -> Path:
        """This engine's template and runtime files: package data in `files/` beside the engine's class."""
        module = sys.modules[type(self).__module__].__file__
        assert module is not None
        return Path(module).parent / "files"

    def cpu_capacity(self, processes: int) -> int:
        """How many cores the engine's processes can use: its CPU share is measured against these."""
        cores = os.cpu_count() or 1
        return cores if self.capabilities.uses_every_core else min(processes, cores)

    def ended_cleanly(self, returncode: int | None) -> bool:
        return returncode in self.capabilities.clean_exit_codes


# --- helpers shared by every engine ---------------------------------------------------------------


def header_lines(scenario: Scenario) -> list[str]:
    """The provenance header every generated script starts with (no timestamps: output is deterministic)."""
    return [
        f"Generated by scenariokit {__version__} from {scenario.source_path}",
        f"source sha256: {scenario.source_sha256}",
        "Do not edit: change the scenario and run `scenariokit compile` again.",
    ]


def dataset_files(scenario: Scenario) -> dict[str, str]:
    """One JSON file per data set, `data/<name>.json`: a list of records (field -> string)."""
    files = {}
    for dataset in scenario.datasets:
        payload = {
            "name": dataset.name,
            "source": dataset.source,
            "default_field": dataset.default_field,
            "pick": dataset.pick,
            "records": [dict(sorted(r.items())) for r in dataset.records],
        }
        if dataset.split is not None:  # absent otherwise: scripts compiled before it are unchanged
            payload["split"] = dataset.split
        files[f"data/{dataset.name}.json"] = json.dumps(payload, indent=1, sort_keys=True) + "\n"
    return files


def engine_env(base_url: str, raw_dir: Path) -> dict[str, str]:
    """The environment every runtime reads: where to send, where to write its records."""
    env = dict(os.environ)
    env["SCENARIOKIT_BASE_URL"] = base_url.rstrip("/")  # the runtimes join it with paths as it is
    env["SCENARIOKIT_RESULTS_DIR"] = str(raw_dir)
    env[RAW_ROTATE_ENV] = str(raw_rotate_bytes())  # the runtime rotates where the reader expects it
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
