"""SLO verdicts: statuses on confidence bounds, margins, windows, per-request selection, threshold equality,
early abort. The bounds themselves are checked against scipy in tests/test_confidence.py."""

from __future__ import annotations

import pytest

from scenariokit.compile.expr import parse_slo
from scenariokit.compile.ir import Stage
from scenariokit.engines.records import RequestRecord
from scenariokit.results.metrics import RunData
from scenariokit.results.slo import Verdict, certainly_lost, judge, judge_one, overall

T0 = 1_700_000_000.0
STAGES = (Stage("ramp", "warmup", 10.0, 0, 10), Stage("spike", "rush", 10.0, 10, 40))


def rec(t: float, latency: float, name: str = "a", ok: bool = True) -> RequestRecord:
    return RequestRecord(T0 + t, name, "", 200 if ok else 500, ok, None if ok else "http_500", latency)


# 400 fast "a" requests in the warmup, 400 slow "b" requests in the rush, 2 "b" errors. At 95%, a p99 with
# no sample over its limit needs 299 samples to pass, so each half is enough on its own.
RECORDS = [rec(i * 0.025, 0.010 + i * 2.5e-5, "a") for i in range(400)] + [
    rec(10 + i * 0.025, 0.600, "b", ok=i not in (3, 7)) for i in range(400)
]
DATA = RunData(RECORDS, T0, T0 + 20, STAGES)


def verdict(text: str, engine: str = "locust", data: RunData = DATA) -> Verdict:
    return judge_one(parse_slo(text), data, engine)


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("p99(latency) < 1s", "pass"),  # 0 of 800 over: the share over is at most 0.37%
        ("p99(latency) < 500ms", "fail"),  # 400 of 800 over
        ("p99(latency) < 100ms for a", "pass"),
        ("p99(latency) < 100ms for b", "fail"),
        ("p99(latency) < 100ms during warmup", "pass"),
        ("p99(latency) < 100ms during spike", "fail"),  # a stage kind
        ("p99(latency) < 100ms during 0s..10s", "pass"),
        ("p99(latency) < 100ms during 0s..2.5s", "inconclusive"),  # 100 samples, none over: 299 needed
        ("p99.9(latency) < 1s", "inconclusive"),  # 800 samples, none over: 2,995 needed
        ("p95(ttft) < 1s", "inconclusive"),  # nothing streamed
        ("p50(latency) > 1ms", "pass"),  # the mirror: the share at or under 1ms is 0 of 800
        ("p50(latency) > 600ms", "fail"),  # every sample is at or under 600ms
        ("error_rate < 1.5%", "pass"),  # 2 / 800: at most 0.78%
        ("error_rate < 0.25%", "inconclusive"),  # 2 / 800 is the limit itself
        ("error_rate < 0.01%", "fail"),  # 2 / 800: at least 0.044%
        ("error_rate < 1% for b", "inconclusive"),  # 2 / 400: up to 1.57%
        ("error_rate <= 2% during rush", "pass"),
        ("throughput >= 35/s during rush", "pass"),  # 398 ok in 10 s: 36.6/s to 43.2/s
        ("throughput >= 40/s during rush", "inconclusive"),
        ("throughput >= 45/s during rush", "fail"),
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
    assert "beyond the < 500ms limit" in failed.explanation and "800 samples" in failed.explanation
    assert "observed maximum" in failed.rule and failed.low == failed.high == pytest.approx(0.6)
    passed = verdict("throughput >= 4/s")  # 798 ok over 20 s
    assert (
        passed.value == pytest.approx(39.9)
        and passed.margin == pytest.approx(35.9)
        and passed.status == "pass"
    )
    assert passed.low is not None and passed.high is not None and passed.low < 39.9 < passed.high


def test_a_certain_breach_fails_whatever_the_sample_size() -> None:
    """The issue's case: every sample over the limit is a certain breach, even 83 of them; the words give
    the count, the bound and what the percentile allows."""
    data = RunData([rec(i * 0.18, 0.100) for i in range(83)], T0, T0 + 15, STAGES)
    v = verdict("p99(latency) < 1ms", data=data)
    assert v.status == "fail" and (v.samples, v.k) == (83, 83)
    assert v.share_low == pytest.approx(0.05 ** (1 / 83)) and v.allowed_share == pytest.approx(0.01)
    assert v.explanation.startswith(
        "fail: 83 of 83 samples at or over 1ms; the share is at least 96.5% (95% lower bound) "
        "and p99 allows 1%"
    )
    assert "lower bound" in v.rule and v.value == pytest.approx(0.1) and v.confidence == 0.95


def test_inconclusive_says_how_many_samples_would_decide() -> None:
    v = verdict("p99.9(latency) < 1s")
    assert (
        v.status == "inconclusive" and "2,995 samples with none at or over would pass at 95%" in v.explanation
    )
    few = verdict("p99(latency) < 100ms during 0s..2.5s")
    assert "299 samples with none at or over would pass at 95%" in few.explanation
    assert few.share_high == pytest.approx(1 - 0.05 ** (1 / 100))
    rate = verdict("error_rate < 1% for b")  # 2 / 400
    assert "requests at the rate observed (0.5%) would decide at 95%" in rate.explanation
    at_limit = verdict("error_rate < 0.25%")
    assert "no number of requests decides" in at_limit.explanation


def test_confidence_moves_the_decision() -> None:
    """0 of 100 over bounds the share below 2.95% at 95% and below 0.69% at 50%: a p99 passes at 50%."""
    assert verdict("p99(latency) < 100ms during 0s..2.5s").status == "inconclusive"
    lax = judge_one(parse_slo("p99(latency) < 100ms during 0s..2.5s"), DATA, "locust", confidence=0.5)
    assert lax.status == "pass" and lax.confidence == 0.5 and "50% upper bound" in lax.explanation


@pytest.mark.parametrize(("op", "holds"), [("<", False), ("<=", True), (">", False), (">=", True)])
@pytest.mark.parametrize("statistic", ["max", "min", "mean", "p50", "p99"])
def test_exact_threshold_equality_follows_the_operator(op: str, holds: bool, statistic: str) -> None:
    """300 samples all at the limit: enough for a p99 either way (the share beyond is 0 or all of them)."""
    data = RunData([rec(i * 0.01, 0.25) for i in range(300)], T0, T0 + 20, STAGES)
    v = verdict(f"{statistic}(latency) {op} 250ms", data=data)
    assert v.value == 0.25 and v.margin == 0
    assert v.status == ("pass" if holds else "fail")


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_a_rate_exactly_at_its_limit_is_never_decided(op: str) -> None:
    """25% errors and 7.5 ok/s measured: the bounds straddle the limit whatever the operator."""
    data = RunData([rec(i * 0.1, 0.01, ok=i % 4 != 0) for i in range(200)], T0, T0 + 20, STAGES)
    errors = verdict(f"error_rate {op} 25%", data=data)
    assert errors.status == "inconclusive" and errors.value == 0.25
    assert errors.low is not None and errors.high is not None and errors.low < 0.25 < errors.high
    assert verdict(f"throughput {op} 7.5/s", data=data).status == "inconclusive"


def test_overall() -> None:
    verdicts = judge(tuple(parse_slo(t) for t in ("error_rate < 5%", "p99.9(latency) < 1s")), DATA, "locust")
    assert [v.status for v in verdicts] == ["pass", "inconclusive"]
    assert overall(verdicts) == "inconclusive" and overall(verdicts[:1]) == "pass"
    assert overall([*verdicts, verdict("p99(latency) < 1ms")]) == "fail"
    assert overall([]) == "pass" and overall([], measured=False) == "inconclusive"
    unmeasurable = judge_one(parse_slo("p95(ttft) < 1s"), DATA, "k6")  # said in its verdict, decides nothing
    assert unmeasurable.status == "not_measured" and overall([verdicts[0], unmeasurable]) == "pass"


def test_certainly_lost_only_when_no_outcome_can_rescue_the_slo() -> None:
    slo = parse_slo("error_rate < 1%")
    errors = RunData([rec(i * 0.1, 0.01, ok=i >= 20) for i in range(100)], T0, T0 + 20, STAGES)
    assert certainly_lost(slo, errors, planned_requests=1000)  # 20 errors: at best 20/1,000, at least 1.33%
    assert not certainly_lost(slo, errors, planned_requests=10_000)  # 20/10,000 can still pass
    # 20/1,500 is 1.33% but its lower bound 0.89% is inside: the final verdict would not be a certain fail
    assert not certainly_lost(slo, errors, planned_requests=1500)
    assert certainly_lost(slo, errors, planned_requests=1500, confidence=0.5)  # 50%: bounds near 1.33%
    assert not certainly_lost(parse_slo("p99(latency) < 1s"), errors, planned_requests=10)
