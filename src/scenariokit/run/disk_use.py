"""A run folder's expected disk use, from the plan: printed by `scenariokit plan` and checked against the
free space before a run sends anything.

Records grow with the requests (Parquet bytes per record, plus each part's fixed cost); the raw folder is
bounded whatever the length (the runtime rotates, the reader frees what the store holds: engines/records.py);
the monitor's samples grow with the seconds; the rest (script, summaries, report) is a fixed allowance.
Every constant is measured by `benchmarks/bench_disk_use.py` (docs/performance.md, "Disk use") and the
rotation test checks a real run folder against it (tests/test_raw_rotation.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scenariokit.compile.ir import Scenario
from scenariokit.compile.plan import make_plan
from scenariokit.engines.records import raw_rotate_bytes
from scenariokit.results.store import (
    PARQUET_BYTES_PER_PART,
    PARQUET_BYTES_PER_RECORD,
    PART_ROWS,
    PART_SECONDS,
)

ITL_BYTES_PER_GAP = 8  # a streamed answer's inter-token gaps: float64s that do not compress
STREAM_TOKENS = 256  # the gaps of a streamed request without `max_tokens`: a guess, stated in `plan`
RAW_BYTES_PER_RECORD = 150  # Locust's JSON line, the larger of the two engines' (k6's batches: 46)
RAW_UNSTORED_S = 2 * PART_SECONDS  # raw lines read but not in a part yet, with the flush and poll delays
MONITOR_BYTES_PER_S = 2_000  # host, target and GPU samples, generator.json
FIXED_BYTES = 8 << 20  # script, data files, logs, summaries, junit.xml and report.html


@dataclass(frozen=True)
class DiskEstimate:
    duration_s: float
    requests: float
    records_bytes: float  # records/: Parquet parts
    raw_bound_bytes: float  # raw/: the most it holds at once
    monitor_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.records_bytes + self.raw_bound_bytes + self.monitor_bytes + FIXED_BYTES

    @property
    def per_hour_bytes(self) -> float:
        """What the run folder grows by in an hour at the plan's average rate (raw/ does not grow)."""
        if self.duration_s <= 0:
            return 0.0
        return (self.records_bytes + self.monitor_bytes) / self.duration_s * 3600


def disk_estimate(scenario: Scenario, processes: int = 1) -> DiskEstimate:
    """What a run of the scenario writes, from the plan's expected requests (`processes`: Locust's worker
    processes, each with raw files of its own)."""
    plan = make_plan(scenario)
    requests = sum(plan.expected_requests.values())
    duration = plan.duration_s
    if not math.isfinite(requests):  # a closed model with no latency and no think time: no estimate
        requests = 0.0
    parts = math.ceil(max(duration / PART_SECONDS, requests / PART_ROWS)) + 1
    records = requests * PARQUET_BYTES_PER_RECORD + parts * PARQUET_BYTES_PER_PART
    if requests > 0:  # a streamed answer's record holds a gap per token after the first
        records += sum(
            count * _gaps(scenario, name) * ITL_BYTES_PER_GAP
            for name, count in plan.expected_requests.items()
        )
    peak_rate = requests / duration * _peak_share(scenario) if duration > 0 else 0.0
    # per process, the file being written (up to a rotation step and a flush) and one read whole
    # awaiting a part; and the lines read since the last part, at the peak rate
    raw = (max(1, processes) + 1) * 2 * raw_rotate_bytes() + peak_rate * RAW_UNSTORED_S * RAW_BYTES_PER_RECORD
    return DiskEstimate(
        duration, requests, records, min(raw, requests * RAW_BYTES_PER_RECORD), duration * MONITOR_BYTES_PER_S
    )


def _gaps(scenario: Scenario, name: str) -> int:
    """The inter-token gaps a request's record holds: none unless it streams a chat answer."""
    request = next(r for r in scenario.requests if r.name == name)
    if not request.stream:
        return 0
    body = request.json_body if isinstance(request.json_body, dict) else {}
    tokens = body.get("max_tokens")
    return (tokens if isinstance(tokens, int) and tokens > 0 else STREAM_TOKENS) - 1


def _peak_share(scenario: Scenario) -> float:
    """The peak level over the average one (the rate at peak, per request of the average rate)."""
    load = scenario.load
    average = load.level_integral() / load.duration_s if load.duration_s > 0 else 0.0
    return load.peak / average if average > 0 else 1.0


def mib(value: float) -> str:
    return f"{value / 2**20:,.1f} MiB" if value < 2**30 else f"{value / 2**30:,.2f} GiB"


def describe(estimate: DiskEstimate, scenario: Scenario) -> list[str]:
    """`plan`'s lines about disk use."""
    streamed = any(r.stream for r in scenario.requests)
    gaps = f", a streamed answer {ITL_BYTES_PER_GAP} more a token after the first" if streamed else ""
    return [
        f"disk: about {mib(estimate.per_hour_bytes)} per hour, {mib(estimate.total_bytes)} in total "
        f"(records {mib(estimate.records_bytes)} for {estimate.requests:,.0f} requests at "
        f"{PARQUET_BYTES_PER_RECORD} bytes each{gaps}, raw/ at most {mib(estimate.raw_bound_bytes)}, "
        f"monitor {mib(estimate.monitor_bytes)}, summaries and report {mib(FIXED_BYTES)})",
    ]
