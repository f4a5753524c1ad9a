"""SLO verdicts: statuses, margins, windows, per-request selection, threshold equality, early abort."""

from __future__ import annotations

import pytest

from scenariokit.compile.expr import parse_slo
from scenariokit.compile.ir import Stage
from scenariokit.engines.records import RequestRecord
from scenariokit.results.metrics import RunData
from scenariokit.results.slo import Verdict, certainly_lost, judge, judge_one, min_samples, overall

T0 = 1_700_000_000.0
STAGES = (Stage("ramp", "warmup", 10.0, 0, 10), Stage("spike", "rush", 10.0, 10, 40))


def rec(t: float, latency: float, name: str = "a", ok: bool = True) -> RequestRecord:
    return RequestRecord(T0 + t, name, "", 200 if ok else 500, ok, None if ok else "http_500", latency)


# 100 fast "a" requests in the warmup, 100 slow "b" requests in the rush, 2 "b" errors
RECORDS = [rec(i * 0.1, 0.010 + i * 1e-4, "a") for i in range(100)] + [
    rec(10 + i * 0.1, 0.600, "b", ok=i not in (3, 7)) for i in range(100)
]
DATA = RunData(RECORDS, T0, T0 + 20, STAGES)


def verdict(text: str, engine: str = "locust", data: RunData = DATA) -> Verdict:
    return judge_one(parse_slo(text), data, engine)


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("p99(latency) < 1s", "pass"),
        ("p99(latency) < 500ms", "fail"),
        ("p99(latency) < 100ms for a", "pass"),
        ("p99(latency) < 100ms for b", "fail"),
        ("p99(latency) < 100ms during warmup", "pass"),
        ("p99(latency) < 100ms during spike", "fail"),  # a stage kind
        ("p99(latency) < 100ms during 0s..10s", "pass"),
        ("p99(latency) < 100ms during 0s..5s", "no_data"),  # 50 samples, 100 needed
        ("p99.9(latency) < 1s", "no_data"),
        ("p95(ttft) < 1s", "no_data"),  # nothing streamed
        ("error_rate < 1.5%", "pass"),  # 2 / 200
        ("error_rate < 1%", "fail"),  # exactly 1% is not below it
        ("error_rate < 1% for b", "fail"),  # 2 / 100
        ("error_rate <= 2% during rush", "pass"),
        ("throughput >= 9.8/s during rush", "pass"),
        ("throughput >= 10/s during rush", "fail"),
        ("dropped_iterations <= 0", "pass"),
    ],
)
def test_statuses(text: str, status: str) -> None:
    assert verdict(text).status == status


@pytest.mark.parametrize("metric", ["ttft", "itl", "tpot"])
def test_streaming_metrics_are_not_measured_on_k6(metric: str) -> None:
    v = verdict(f"p95({metric}) < 1s", engine="k6")
    assert v.status == "not_measured" and "k6 cannot measure" in v.explanation


def test_margin_is_signed_room_left_and_explained() -> None:
    failed = verdict("max(latency) < 500ms")
    assert failed.value == pytest.approx(0.6) and failed.margin == pytest.approx(-0.1)
    assert failed.margin_percent == pytest.approx(-20.0)
    assert "over the 500ms limit" in failed.explanation and "200 samples" in failed.explanation
    passed = verdict("throughput >= 4/s")  # 198 ok over 20 s
    assert (
        passed.value == pytest.approx(9.9) and passed.margin == pytest.approx(5.9) and passed.status == "pass"
    )


def test_no_data_says_how_many_samples_are_needed() -> None:
    v = verdict("p99.9(latency) < 1s")
    assert "not enough data" in v.explanation and "1000 needed" in v.explanation
    assert [min_samples(parse_slo(f"{s}(latency) < 1s")) for s in ("p50", "p90", "p99", "p99.9", "max")] == [
        2,
        10,
        100,
        1000,
        1,
    ]


@pytest.mark.parametrize(("op", "holds"), [("<", False), ("<=", True), (">", False), (">=", True)])
@pytest.mark.parametrize("statistic", ["max", "min", "mean", "p50", "p99"])
def test_exact_threshold_equality_follows_the_operator(op: str, holds: bool, statistic: str) -> None:
    data = RunData([rec(i * 0.01, 0.25) for i in range(100)], T0, T0 + 20, STAGES)
    v = verdict(f"{statistic}(latency) {op} 250ms", data=data)
    assert v.value == 0.25 and v.margin == 0 and (v.status == "pass") is holds


@pytest.mark.parametrize(("op", "holds"), [("<", False), ("<=", True), (">", False), (">=", True)])
def test_exact_equality_for_rates(op: str, holds: bool) -> None:
    data = RunData([rec(i * 0.1, 0.01, ok=i % 4 != 0) for i in range(200)], T0, T0 + 20, STAGES)
    assert (verdict(f"error_rate {op} 25%", data=data).status == "pass") is holds
    assert (verdict(f"throughput {op} 7.5/s", data=data).status == "pass") is holds


def test_overall() -> None:
    verdicts = judge(tuple(parse_slo(t) for t in ("error_rate < 5%", "p99.9(latency) < 1s")), DATA, "locust")
    assert overall(verdicts) == "inconclusive" and overall(verdicts[:1]) == "pass"
    assert overall([*verdicts, verdict("p99(latency) < 1ms")]) == "fail"
    assert overall([]) == "pass"


def test_certainly_lost_only_when_no_outcome_can_rescue_the_slo() -> None:
    slo = parse_slo("error_rate < 1%")
    errors = RunData([rec(i * 0.1, 0.01, ok=i >= 20) for i in range(100)], T0, T0 + 20, STAGES)
    assert certainly_lost(slo, errors, planned_requests=1000)  # 20 errors: at best 20/1,000 = 2%
    assert not certainly_lost(slo, errors, planned_requests=10_000)  # 20/10,000 can still pass
    assert not certainly_lost(parse_slo("p99(latency) < 1s"), errors, planned_requests=10)
