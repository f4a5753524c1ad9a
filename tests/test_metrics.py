"""Metrics over synthetic records: HdrHistogram percentiles vs exact ones, splits that add up, coordinated
omission."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scenariokit.compile.ir import Stage
from scenariokit.engines.records import RequestRecord
from scenariokit.results.metrics import RunData, per_name, per_stage, sample_stats, summarize, timeline

T0 = 1_700_000_000.0
STAGES = (
    Stage("ramp", "warm", 5.0, 0, 10),
    Stage("ramp", "jump", 0.0, 10, 50),  # an instant jump holds no request
    Stage("spike", "peak", 5.0, 50, 50),
    Stage("hold", "cool", 5.0, 10, 10),
)


def rec(t: float, latency: float, name: str = "a", ok: bool = True, **extra: object) -> RequestRecord:
    error = None if ok else "http_503"
    return RequestRecord(T0 + t, name, "", 200 if ok else 503, ok, error, latency, **extra)  # type: ignore[arg-type]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(min_value=1e-5, max_value=120.0), min_size=1, max_size=500))
@example([0.001953125, 1.0000000000000003e-05])  # sub-microsecond parts once rounded below the sample
@example([1.0000000000000003e-05, 1e-05])
def test_percentiles_match_numpy_within_hdr_precision(values: list[float]) -> None:
    d = sample_stats(values)
    assert (d.count, d.min, d.max) == (len(values), min(values), max(values))
    for p in (50, 90, 95, 99, 99.9):
        exact = float(np.percentile(values, p, method="inverted_cdf"))
        # 3 significant digits, and never below the exact nearest-rank sample
        assert exact <= d.percentile(p) <= exact * 1.001 + 1e-6


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 14.999), st.floats(0.001, 3.0), st.booleans()), max_size=300))
def test_stage_and_second_splits_add_up_to_the_total(rows: list[tuple[float, float, bool]]) -> None:
    records = [rec(t, latency, name=f"n{i % 3}", ok=ok) for i, (t, latency, ok) in enumerate(rows)]
    data = RunData(records, T0, T0 + 15, STAGES)
    total = summarize(records, data.duration_s)
    stages = per_stage(data)
    assert [s["label"] for s in stages] == ["warm", "peak", "cool"]
    seconds = timeline(data)
    names = per_name(data)
    for key in ("requests", "ok", "errors"):
        assert sum(s[key] for s in stages) == total[key] == sum(n[key] for n in names.values())
    assert sum(s["sent"] for s in seconds) == total["requests"]
    assert sum(s["ok"] for s in seconds) == total["ok"]
    # Little's law: the request-seconds spread over the timeline are the latencies inside the run
    assert sum(s["concurrency"] for s in seconds) == pytest.approx(
        sum(min(r.end, T0 + 15) - r.t for r in records), abs=1e-6
    )


def test_coordinated_omission_stall_shows_in_the_corrected_p99_only() -> None:
    # open model: one request due every 10 ms; one 1 s response stalls every request queued behind it
    records, free_at = [], 0.0
    for i in range(1500):
        intended = i * 0.01
        start = max(intended, free_at)
        latency = 1.0 if i == 300 else 0.002
        records.append(rec(start, latency, intended=T0 + intended))
        free_at = start + latency
    corrected = sample_stats(r.corrected_latency for r in records)
    uncorrected = sample_stats(r.latency for r in records)
    delay = sample_stats(r.t - r.intended for r in records if r.intended is not None)
    assert uncorrected.percentile(99) < 0.003
    assert corrected.percentile(99) > 0.5 > 100 * uncorrected.percentile(99)
    assert delay.max == pytest.approx(0.99, abs=0.01)


def test_throughput_is_ok_responses_over_the_measured_window() -> None:
    records = [rec(i * 0.1, 0.05, ok=i % 10 != 0) for i in range(150)]  # 10 sent/s, 1 in 10 fails
    data = RunData(records, T0, T0 + 15, STAGES)
    warm = per_stage(data)[0]
    assert warm["requests"] == 50 and warm["throughput"] == pytest.approx(9.0)
    assert warm["error_rate"] == pytest.approx(0.1) and warm["errors_by_kind"] == {"http_5xx:503": 5}


def test_tpot_and_itl_follow_vllm() -> None:
    r = rec(0, 1.0, ttft=0.2, tokens=5, itl=(0.1, 0.3))
    assert r.tpot == pytest.approx(0.2)  # (1.0 - 0.2) / (5 - 1)
    assert rec(0, 1.0, ttft=0.2, tokens=1).tpot is None
