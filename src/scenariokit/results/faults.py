"""The run's fault timeline: one `FaultEvent` per fault occurrence, in `faults.jsonl` in the run folder.

The runner appends an event when a fault ends (or when the run ends while one is active: `end` is then the
run's end and `cut_short` is true); a fault that could not be applied has `outcome` "error: ..." and no
effect on the verdict's windows. Times are unix seconds on the records' clock (`RequestRecord.t`), so
`during <fault>` and `after <fault>` windows are plain comparisons against records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

FAULTS_FILE = "faults.jsonl"
MAX_FAULT_EVENTS = 100_000  # a scenario's schedule is bounded far below this; a longer file is not ours


class FaultEvent(BaseModel):
    """One occurrence of one scheduled fault, as it was actually carried out."""

    model_config = ConfigDict(extra="forbid")

    name: str  # the scenario's fault name: the window name in `during X` / `after X`
    kind: str  # e.g. kill-target, latency, reset, server-errors
    occurrence: int = Field(0, ge=0)  # 0, 1, ... for `every:` faults
    planned_s: float  # when the schedule said, seconds from the run's start
    start: float  # unix seconds: the fault took effect
    end: float  # unix seconds: the fault was lifted (for kill-target: the restart was begun)
    ready: float | None = None  # kill-target: the target answered ready again (None: it never did)
    params: dict[str, Any] = Field(default_factory=dict)  # lowered parameters (seconds, shares 0..1, bytes)
    outcome: str = "ok"  # "ok" or "error: <why>"
    cut_short: bool = False  # the run ended while the fault was active
    detail: dict[str, Any] = Field(default_factory=dict)  # kind-specific facts (exec output file, pid, ...)

    @property
    def applied(self) -> bool:
        return self.outcome == "ok"


def append_fault_event(run_dir: Path, event: FaultEvent) -> None:
    """Append one event as one line, flushed: a runner killed later keeps every event already ended."""
    with (run_dir / FAULTS_FILE).open("a", encoding="utf-8") as out:
        out.write(event.model_dump_json() + "\n")
        out.flush()


def read_fault_events(run_dir: Path) -> list[FaultEvent]:
    """The run's fault events in start order; [] for a run without faults. A garbled line (a runner killed
    mid-write) is skipped; anything else wrong raises ValueError naming the line."""
    path = run_dir / FAULTS_FILE
    if not path.is_file():
        return []
    events: list[FaultEvent] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if number > MAX_FAULT_EVENTS:
                raise ValueError(f"{FAULTS_FILE}: more than {MAX_FAULT_EVENTS} events")
            if not line.endswith("\n"):
                break  # the last line was cut short by a killed runner
            try:
                events.append(FaultEvent.model_validate(json.loads(line)))
            except (json.JSONDecodeError, ValidationError) as exc:
                raise ValueError(f"{FAULTS_FILE}:{number}: not a fault event: {exc}") from exc
    return sorted(events, key=lambda event: (event.start, event.name, event.occurrence))
