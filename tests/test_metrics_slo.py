"""Metrics and SLO verdicts on synthetic records: exactness, windows, coordinated omission, statuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenariokit.compile.expr import parse_slo
from scenariokit.compile.ir import Stage
from scenariokit.engines.records import RequestRecord
from scenariokit.results.metrics import RunData, per_stage, sample_stats
from scenariokit.results.slo import judge_one, overall

T0 = 1_000_000.0
STAGES = (Stage("ramp", "ramp", 10.0, 0, 10), Stage("spike", "peak", 10.0, 10, 10))


def rec(t: float, latency: float, name: str = "a", ok: bool = True, **extra: object) -> RequestRecord:
    return RequestRecord(
        t=T0 + t,
        name=name,
        stage="",
        status=200 if ok else 500,
        ok=ok,
        error=None if ok else "http_500",
        latency=latency,
        **extra,
    )  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=1e-4, max_value=30.0), min_size=1, max_size=400))
def test_percentiles_match_exact_ones_within_hdr_precision(values: list[float]) -> None:
    d = sample_stats(values)
    assert d.count == len(values) and d.min == min(values) and d.max == max(values)
    assert d.mean == pytest.approx(sum(values) / len(values))
    for p in (50, 90, 99):
        exact = float(np.percentile(values, p, method="inverted_cdf"))
        assert d.percentile(p) == pytest.approx(exact, rel=2e-3, abs=2e-6)


def test_stage_windows_split_the_run_and_add_up() -> None:
    records = [rec(t * 0.1, 0.05) for t in range(200)]
    data = RunData(records, T0, T0 + 20, STAGES)
    rows = per_stage(data)
    assert [r["label"] for r in rows] == ["ramp", "peak"]
    assert sum(r["requests"] for r in rows) == len(records)


def test_coordinated_omission_correction_shows_a_stall() -> None:
    # an open model schedules a request every 10 ms; one 1 s stall delays everything behind it
    records, clock = [], 0.0
    for i in range(1000):
        intended = i * 0.01
        start = max(intended, clock)
        latency = 1.0 if i == 500 else 0.002
        records.append(rec(start, latency, intended=T0 + intended))
        clock = start + latency
    data = RunData(records, T0, T0 + 12, STAGES)
    corrected = judge_one(parse_slo("p99(latency) < 50ms"), data, "locust")
    plain = sample_stats(r.latency for r in records)
    assert plain.percentile(99) < 0.01 and corrected.value is not None and corrected.value > 0.5
    assert corrected.status == "fail"


def test_verdicts_pass_fail_inconclusive_and_not_measured() -> None:
    records = [rec(i * 0.025, 0.1 + (i % 10) * 0.01) for i in range(400)] + [rec(5, 0.1, ok=False)]
    data = RunData(records, T0, T0 + 20, STAGES)
    assert judge_one(parse_slo("p99(latency) < 500ms"), data, "locust").status == "pass"  # 0 of 401 over
    failed = judge_one(parse_slo("p50(latency) < 10ms"), data, "locust")
    assert failed.status == "fail" and failed.margin is not None and failed.margin < 0
    assert "401 of 401 samples at or over 10ms" in failed.explanation
    few = judge_one(parse_slo("p99.9(latency) < 1s"), data, "locust")  # 401 samples, none over: 2,995 needed
    assert few.status == "inconclusive" and "2,995 samples with none at or over" in few.explanation
    assert judge_one(parse_slo("p95(ttft) < 1s"), data, "k6").status == "not_measured"
    errors = judge_one(parse_slo("error_rate < 2%"), data, "locust")  # 1 / 401: at most 1.18%
    assert errors.value == pytest.approx(1 / 401) and errors.status == "pass"
    assert overall([failed, few]) == "fail" and overall([few]) == "inconclusive"


@pytest.mark.parametrize(("op", "holds"), [("<", False), ("<=", True), (">", False), (">=", True)])
def test_threshold_equality_follows_the_operator(op: str, holds: bool) -> None:
    data = RunData([rec(1, 0.5)], T0, T0 + 10, STAGES)
    verdict = judge_one(parse_slo(f"max(latency) {op} 500ms"), data, "locust")
    assert (verdict.status == "pass") is holds


def test_windows_and_request_selection() -> None:
    records = [rec(i * 0.025, 0.05, name="a") for i in range(400)] + [
        rec(10 + i * 0.025, 2.0, name="b") for i in range(400)
    ]
    data = RunData(records, T0, T0 + 20, STAGES)
    assert judge_one(parse_slo("p99(latency) < 100ms during ramp"), data, "locust").status == "pass"
    assert judge_one(parse_slo("p99(latency) < 100ms during peak"), data, "locust").status == "fail"
    assert judge_one(parse_slo("p99(latency) < 100ms during spike"), data, "locust").status == "fail"  # kind
    assert judge_one(parse_slo("p99(latency) < 100ms during 0s..10s"), data, "locust").status == "pass"
    assert judge_one(parse_slo("p99(latency) < 100ms for a"), data, "locust").status == "pass"
    throughput = judge_one(parse_slo("throughput >= 35/s during ramp"), data, "locust")
    assert throughput.value == pytest.approx(40.0) and throughput.status == "pass"


def test_tpot_follows_vllms_definition() -> None:
    r = rec(0, 1.0, ttft=0.2, tokens=5)
    assert r.tpot == pytest.approx((1.0 - 0.2) / 4)
    assert rec(0, 1.0, ttft=0.2, tokens=1).tpot is None
    assert math.isnan(sample_stats([]).mean)
