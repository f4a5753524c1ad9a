"""The streamed summary (results/stream.py, a record batch at a time) against the in-memory path over the
same run folder: every percentile, count, rate, error table and verdict equal, exactly."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from scenariokit.compile.expr import parse_slo
from scenariokit.compile.ir import Stage
from scenariokit.engines.records import RequestRecord
from scenariokit.results import seconds, stream
from scenariokit.results.analysis import analyse, level_groups
from scenariokit.results.metrics import (
    TIME_METRIC_VALUES,
    RunData,
    per_name,
    per_stage,
    sample_stats,
    summarize,
    timeline,
)
from scenariokit.results.slo import judge
from scenariokit.results.store import RecordStore, load_records

T0 = 1_700_000_000.0
RECORDS = 200_000
STAGES = (
    Stage("ramp", "warmup", 60.0, 0, 50),
    Stage("hold", "soak", 240.0, 50, 50),
    Stage("ramp", "", 60.0, 50, 0),
)
SLOS = tuple(
    parse_slo(text)
    for text in (
        "p99(latency) < 300ms",
        "p95(latency) < 80ms for search",
        "p50(latency) > 5ms during soak",
        "p99.9(ttfb) < 1s for stream during 1m..4m",
        "p90(itl) < 30ms",
        "p75(latency) <= 60ms for upload",
        "median(tpot) < 50ms",
        "mean(latency) < 100ms during soak",
        "max(latency) < 5s",
        "min(ttfb) > 0s",
        "error_rate < 2%",
        "error_rate < 5% for upload during warmup",
        "throughput > 500/s during soak",
        "dropped_iterations < 10 during soak",
    )
)
ERRORS = [
    ("http_503", None, None),
    ("timeout", "ReadTimeout", "read timed out"),
    ("connection_refused", "ECONN", None),
]


def synthetic(n: int, rng: random.Random) -> list[RequestRecord]:
    """Open-model records over 6 minutes, a little out of order as polls deliver them."""
    out = []
    for i in range(n):
        t = T0 - 0.5 + 360.5 * i / n + rng.uniform(-0.5, 0.5)  # a few start before the engine's origin
        name = rng.choice(("search", "search", "upload", "stream"))
        latency = rng.lognormvariate(-3.5, 0.9) if rng.random() > 0.001 else rng.choice([0.0, 1e-7, 4000.0])
        ok = rng.random() > 0.015
        error, code, message = (None, None, None) if ok else rng.choice(ERRORS)
        streamed = name == "stream"
        itl = tuple(rng.expovariate(80) for _ in range(rng.randint(0, 4))) if streamed else None
        out.append(
            RequestRecord(
                t, name, "", 200 if ok else 503, ok, error, latency, intended=t - rng.expovariate(400),
                ttfb=latency * 0.3 if streamed else None, ttft=latency * 0.4 if streamed else None,
                itl=itl, tokens=rng.randint(1, 40) if streamed else None, code=code,
                message=message if rng.random() < 0.01 else None,
            )
        )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("streamed")
    store = RecordStore(folder)
    records = synthetic(RECORDS, random.Random(16))
    for i in range(0, RECORDS, 7_000):  # parts of uneven size, as a run writes them
        store.pending.extend(records[i : i + 7_000])
        if i % 21_000 == 0:
            store.flush()
    store.close()
    return folder


def test_the_streamed_summary_equals_the_in_memory_one(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "BATCH_ROWS", 10_000)  # many batches per part
    records = load_records(run_dir)
    ended, dropped = T0 + 361.0, [T0 + 70.0 + i for i in range(12)]
    data = RunData(records, T0, ended, STAGES, dropped)
    streamed = stream.stream_run(run_dir, SLOS, STAGES, "locust", T0, ended, dropped, 0.95)
    assert streamed.records == RECORDS and streamed.last_end == max(r.end for r in records)
    assert stream.last_end(run_dir, 0.0) == streamed.last_end
    assert streamed.overall == summarize(records, data.duration_s)
    assert streamed.by_request == per_name(data)
    assert streamed.by_stage == per_stage(data)
    for name, read in TIME_METRIC_VALUES.items():
        assert streamed.time_metrics[name] == sample_stats(v for r in records for v in read(r)), name
    for ours, theirs in zip(streamed.verdicts, judge(SLOS, data, "locust", 0.95), strict=True):
        spread = ours.rule.startswith("Student")  # a mean's bounds: its spread merged batch by batch
        same = ("explanation", "low", "high") if spread else ()
        for key, value in vars(theirs).items():
            if key in same:
                continue
            assert getattr(ours, key) == value, (ours.slo, key)
        if spread:
            assert math.isclose(ours.low, theirs.low, rel_tol=1e-12) and ours.status == theirs.status


def test_an_empty_run_folder_streams_to_nothing(tmp_path: Path) -> None:
    (tmp_path / "records").mkdir()
    streamed = stream.stream_run(tmp_path, SLOS, STAGES, "k6", T0, None)
    assert streamed.records == 0 and streamed.last_end is None and streamed.overall["requests"] == 0
    assert {v.status for v in streamed.verdicts} <= {"inconclusive", "not_measured"}


def test_the_streamed_timeline_and_analysis_equal_the_in_memory_ones(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "BATCH_ROWS", 10_000)
    monkeypatch.setattr(seconds, "SPILL_SECONDS", 45)  # several spill files, one second split across batches
    records = load_records(run_dir)
    data = RunData(records, T0, T0 + 361.0, STAGES)
    groups = level_groups(STAGES, data.duration_s)
    streamed = stream.stream_run(run_dir, (), STAGES, "locust", T0, T0 + 361.0, groups=groups)
    assert streamed.seconds.timeline == timeline(data)
    frame = RunData([], T0, T0 + 361.0, STAGES)  # the run's clock and stages, its records streamed
    target = [{"t": T0 + s, "outcome": "refused"} for s in range(100, 110)]
    ours = analyse(frame, "open", target, [], [], {}, streamed.seconds)
    theirs = analyse(data, "open", target, [], [], {})
    assert ours == theirs and len(ours.levels) == 12 and ours.signals
