"""A run folder, typed: `run.json` as the `RunMeta` model (schema: schemas/run.schema.json) and `RunFolder`,
the one reader that `summary`, `report`, `compare` and `scenariokit report` go through.

run.json holds the stages as IR `Stage` values and the SLOs as IR `Slo` values with the span of their
scenario line, so nothing re-parses SLO text. A folder written before that (format 1: `slos` as texts, each
stage's span null) still loads: its SLO texts go through the SLO parser once, at load.

Stored paths (`scenario_path`, a span's file) are displayed, never opened: the folder's own copy of the
scenario is `scenario.yaml`, and every file read is a fixed name under the folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scenariokit.compile.expr import ExprError, parse_slo
from scenariokit.compile.ir import Fault, Slo, Stage
from scenariokit.engines.records import RequestRecord
from scenariokit.results.confidence import DEFAULT_CONFIDENCE
from scenariokit.results.hardware import Hardware
from scenariokit.results.store import load_records, read_samples
from scenariokit.results.stream import last_end, record_batches

if TYPE_CHECKING:
    from scenariokit.results.summary import Summary

RUN_FORMAT = 2  # 1: SLOs as texts (before the typed run folder); 2: SLOs and stages as IR values
MAX_RUN_JSON_BYTES = 4 * 1024 * 1024  # a real run.json is a few KB; a bigger one is not one a run wrote
MAX_SIDE_JSON_BYTES = 64 * 1024 * 1024  # generator.json and raw/reader.json grow with the run, but not this


class NotARun(ValueError):
    """The path is not a run folder at all (exit 2: the command line is wrong)."""


class CorruptRun(ValueError):
    """A run folder whose stored data cannot be read (exit 3): the message says which file and why."""


class HostInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hostname: str
    platform: str
    cpus: int | None
    python: str


class RunMeta(BaseModel):
    """run.json: what was run, against what, how it ended; written at the start and again at the end."""

    model_config = ConfigDict(extra="forbid")

    format: int = Field(
        1,
        ge=1,
        le=RUN_FORMAT,
        description="run.json's format: 2 stores SLOs as IR values; 1 (absent) as texts",
    )
    scenariokit_version: str | None = None
    scenario_name: str
    scenario_path: str = Field(description="as given on the command line: displayed, never opened")
    scenario_sha256: str
    git_commit: str | None = None
    engine: str
    engine_version: str = ""
    engine_processes: int | None = Field(None, description="Locust worker processes (`run --processes`)")
    base_url: str = ""
    embedded_target: bool = False
    live_metrics_url: str | None = None
    prometheus_url: str | None = None
    confidence: float = Field(
        DEFAULT_CONFIDENCE, ge=0.5, lt=1.0, description="of each bound an SLO verdict is decided by"
    )
    load_model: Literal["closed", "open"] = "closed"
    planned_duration_s: float | None = None
    stages: list[Stage] = Field(description="the planned load curve, as the IR's stages")
    slos: list[Slo] = Field(
        default_factory=list, description="the scenario's SLOs, as the IR's, each with its span in the file"
    )
    faults: list[Fault] = Field(
        default_factory=list,
        description="the planned faults, as the IR's (times from the run's start); faults.jsonl has what ran",
    )
    host: HostInfo | None = None
    hardware: Hardware | None = Field(
        None, description="the generator's and (when known) the target's CPU, memory, GPUs, driver, CUDA"
    )
    started_unix: float = Field(description="when the runner started (before the target and the engine)")
    engine_started_unix: float | None = Field(None, description="the engine's own test start: stage clock")
    ended_unix: float | None = None
    exit_reason: str = Field("completed", description="completed, aborted, interrupted, engine_crashed, …")
    exit_detail: str = ""
    engine_returncode: int | None = None

    @field_validator("stages", mode="before")
    @classmethod
    def _stage_spans(cls, value: Any) -> Any:
        """Format 1 wrote each stage's span as null: the IR's unknown span stands for it."""
        if isinstance(value, list):
            return [_without_null_span(s) for s in value]
        return value

    @field_validator("slos", mode="before")
    @classmethod
    def _slo_texts(cls, value: Any) -> Any:
        """Format 1 stored each SLO as its text: parse it once here (no span: that run did not keep it)."""
        if not isinstance(value, list):
            return value
        out = []
        for item in value:
            if isinstance(item, str):
                try:
                    out.append(parse_slo(item))
                except ExprError as exc:
                    raise ValueError(f"the SLO {item!r} does not parse: {exc}") from None
            else:
                out.append(_without_null_span(item))
        return out

    @field_validator("started_unix", "engine_started_unix", "ended_unix")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("a time must be a finite number of seconds")
        return value

    @property
    def clock_start(self) -> float:
        """Stage windows are measured from the engine's start; the runner's when the engine never started."""
        return self.engine_started_unix or self.started_unix


def _without_null_span(item: Any) -> Any:
    if isinstance(item, dict) and item.get("span", 0) is None:
        return {k: v for k, v in item.items() if k != "span"}
    return item


def write_run_meta(run_dir: Path, meta: RunMeta) -> None:
    """The one place run.json is written (the runner, at its start and at its end)."""
    (run_dir / "run.json").write_text(meta.model_dump_json(indent=2) + "\n")


def run_schema_text() -> str:
    return json.dumps(RunMeta.model_json_schema(), indent=2, sort_keys=True) + "\n"


class RunFolder:
    """A run folder, read: `meta` is checked on construction (NotARun, CorruptRun); the rest is read when
    asked for, the records a batch at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta = read_run_meta(path)

    def check_records(self) -> None:
        """records/ present and each part's footer readable (a part cut short loses its footer)."""
        records = self.path / "records"
        if not records.is_dir():
            raise CorruptRun(f"{self.path} has no records/ folder: its measurements are gone")
        for part in sorted(records.glob("part-*.parquet")):
            try:
                pq.read_metadata(part)
            except (pa.ArrowException, OSError) as exc:
                raise CorruptRun(f"{part} is not a readable Parquet part ({exc})") from None

    def records(self) -> Iterator[list[RequestRecord]]:
        """The stored records in time order of their parts, a batch at a time: memory does not grow with
        the run."""
        return record_batches(self.path)

    def all_records(self) -> list[RequestRecord]:
        """Every record at once, for what needs them together (compare's rank tests)."""
        try:
            return load_records(self.path)
        except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
            raise CorruptRun(
                f"{self.path}/records holds unreadable data ({type(exc).__name__}: {exc})"
            ) from None

    def last_end(self) -> float:
        """When the run ended: run.json's end, else the latest request end (a run killed before its end)."""
        return self.meta.ended_unix or last_end(self.path, self.meta.clock_start)

    def samples(self, name: str) -> list[dict[str, Any]]:
        """The monitor's samples `monitor/<name>` (host.jsonl, target.jsonl, gpu.jsonl)."""
        if "/" in name or name.startswith("."):
            raise ValueError(f"{name!r} is not a monitor file name")
        return read_samples(self.path, name)

    @property
    def generator(self) -> dict[str, Any]:
        """generator.json: the load generator's health (results/health.py reads it)."""
        return _side_json(self.path / "generator.json")

    @property
    def reader_facts(self) -> dict[str, Any]:
        """raw/reader.json: dropped iterations, skipped lines, raw files freed."""
        return _side_json(self.path / "raw" / "reader.json")

    @property
    def gpu_info(self) -> dict[str, Any]:
        return _side_json(self.path / "monitor" / "gpu.json")

    def summary(
        self, strict: bool = False, allow_inconclusive: bool = False, confidence: float | None = None
    ) -> Summary:
        from scenariokit.results.summary import rebuild_summary

        return rebuild_summary(self, strict, allow_inconclusive, confidence)


def read_run_meta(run_dir: Path) -> RunMeta:
    """run.json, read with a size cap and validated; raises NotARun (no run.json) or CorruptRun."""
    path = run_dir / "run.json"
    if not path.is_file():
        raise NotARun(f"{run_dir} is not a run folder (no run.json)")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_RUN_JSON_BYTES + 1)
        if len(raw) > MAX_RUN_JSON_BYTES:
            raise CorruptRun(
                f"{path} is over {MAX_RUN_JSON_BYTES // 2**20} MiB: not the run.json a run writes"
            )
        document = json.loads(raw.decode("utf-8"))
    except (ValueError, OSError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise CorruptRun(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(document, dict):
        raise CorruptRun(f"{path} is not an object: not the run.json a run writes")
    try:
        return RunMeta.model_validate(document)
    except ValidationError as exc:
        raise CorruptRun(f"{path} is not the run.json a run writes: {_first_problem(exc)}") from None


def _first_problem(exc: ValidationError) -> str:
    """One line: the first field that is wrong and why (pydantic's own text spans many lines)."""
    errors = exc.errors(include_url=False)
    missing = [".".join(map(str, e["loc"])) for e in errors if e["type"] == "missing"]
    if missing:
        return "without " + ", ".join(missing)
    first = errors[0]
    where = ".".join(map(str, first["loc"])) or "the document"
    message = " ".join(str(first["msg"]).split())  # one line: a parse error's hint is on its own line
    return f"{where}: {message} ({len(errors)} problem(s))"


def _side_json(path: Path) -> dict[str, Any]:
    """A JSON object the run writes beside run.json; {} when absent or unreadable (a run killed mid-write:
    the summary says what it lacks, it does not fail)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SIDE_JSON_BYTES + 1)
        if len(raw) > MAX_SIDE_JSON_BYTES:
            return {}
        document = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return document if isinstance(document, dict) else {}
