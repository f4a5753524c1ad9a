"""Verdicts on confidence bounds (issue 14): the decision never contradicts exact bounds computed here
independently (scipy's binomtest, chi-square and t intervals), a breach certain from the samples always
fails, and the sample sizes the docs quote are what a brute-force search finds."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta, binom, binomtest, chi2, ttest_1samp

from scenariokit.cli import main
from scenariokit.compile.expr import parse_slo
from scenariokit.compile.ir import Stage
from scenariokit.engines.records import RequestRecord
from scenariokit.results.confidence import (
    clean_zero_samples,
    mean_bounds,
    poisson_bounds,
    quantile_bounds,
    share_bounds,
)
from scenariokit.results.metrics import RunData
from scenariokit.results.slo import judge_one
from scenariokit.run.exporter import LiveExporter
from tests.support.ir_examples import closed_chat_scenario
from tests.support.loopback import LoopbackServer

T0 = 1_700_000_000.0
STAGES = (Stage("hold", "hold", 60.0, 1, 1),)
OPS = ("<", "<=", ">", ">=")
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
CONFIDENCES = (0.9, 0.95, 0.99)
# latencies on a coarse grid (whole milliseconds) so that samples often sit exactly on the limit
LATENCY = st.integers(min_value=1, max_value=40).map(lambda ms: ms / 1000)


def data_of(latencies: list[float], oks: list[bool] | None = None) -> RunData:
    oks = oks or [True] * len(latencies)
    records = [
        RequestRecord(T0 + i * 0.01, "a", "hold", 200 if ok else 500, ok, None if ok else "http_500", lat)
        for i, (lat, ok) in enumerate(zip(latencies, oks, strict=True))
    ]
    return RunData(records, T0, T0 + 60, STAGES)


def exact_share_bounds(k: int, n: int, c: float) -> tuple[float, float]:
    """One-sided bounds at c are the ends of scipy's two-sided exact (Clopper-Pearson) interval at 2c - 1."""
    interval = binomtest(k, n).proportion_ci(confidence_level=2 * c - 1, method="exact")
    return interval.low, interval.high


def wrong_side(op: str, values: np.ndarray, limit: float) -> int:
    """Samples that count against `pP(x) op limit`, written out on its own (not the code's table)."""
    beyond = {"<": values >= limit, "<=": values > limit, ">": values <= limit, ">=": values < limit}[op]
    return int(np.count_nonzero(beyond))


@settings(max_examples=300, deadline=None)
@given(
    latencies=st.lists(LATENCY, min_size=1, max_size=400),
    limit_ms=st.integers(min_value=0, max_value=41),
    op=st.sampled_from(OPS),
    percentile=st.sampled_from(PERCENTILES),
    c=st.sampled_from(CONFIDENCES),
)
def test_a_percentile_verdict_never_contradicts_the_exact_bounds(
    latencies: list[float], limit_ms: int, op: str, percentile: float, c: float
) -> None:
    text = f"p{percentile:g}(latency) {op} {limit_ms}ms"
    slo = parse_slo(text)
    v = judge_one(slo, data_of(latencies), "locust", confidence=c)
    n = len(latencies)
    k = wrong_side(op, np.array(latencies), slo.threshold)  # the parsed limit: 9ms reads 0.009000000000000001
    allowed = 1 - percentile / 100 if op in ("<", "<=") else percentile / 100
    low, high = exact_share_bounds(k, n, c)
    assert (v.samples, v.k) == (n, k)
    assert v.share_low == pytest.approx(low, abs=1e-9) and v.share_high == pytest.approx(high, abs=1e-9)
    # allowances sit far from any bound's rounding error except where a bound is exactly 0 or 1
    if v.status == "fail":
        assert low > allowed - 1e-9, (text, k, n, low)
    elif v.status == "pass":
        assert high < allowed + 1e-9, (text, k, n, high)
    else:
        assert v.status == "inconclusive" and low <= allowed + 1e-9 and high >= allowed - 1e-9
    if low > allowed + 1e-9:  # a breach certain from the samples alone (every one over, at enough n)
        assert v.status == "fail"
    if k == n and (1 - c) ** (1 / n) > allowed:
        assert v.status == "fail", "all samples beyond the limit, at a size that makes it certain"
    # the point value never says the SLO holds where the bounds say it certainly does not
    if v.status == "fail" and op in ("<", "<="):
        assert v.value is not None and not slo.holds(v.value)


@settings(max_examples=200, deadline=None)
@given(
    oks=st.lists(st.booleans(), min_size=1, max_size=600),
    limit_permille=st.integers(min_value=0, max_value=1000),
    op=st.sampled_from(OPS),
    c=st.sampled_from(CONFIDENCES),
)
def test_an_error_rate_verdict_never_contradicts_the_exact_bounds(
    oks: list[bool], limit_permille: int, op: str, c: float
) -> None:
    limit = limit_permille / 1000
    v = judge_one(
        parse_slo(f"error_rate {op} {limit_permille / 10:g}%"),
        data_of([0.01] * len(oks), oks),
        "locust",
        c,
    )
    errors = oks.count(False)
    low, high = exact_share_bounds(errors, len(oks), c)
    assert v.k == errors and v.low == pytest.approx(low, abs=1e-9) and v.high == pytest.approx(high, abs=1e-9)
    under = op in ("<", "<=")
    if v.status == "pass":  # even the worse end holds
        assert (high <= limit + 1e-9) if under else (low >= limit - 1e-9)
    elif v.status == "fail":  # even the better end breaks it
        assert (low >= limit - 1e-9) if under else (high <= limit + 1e-9)
    if under and low > limit + 1e-9:
        assert v.status == "fail"
    if under and high < limit - 1e-9:
        assert v.status == "pass"


def test_the_issues_figures() -> None:
    """0 errors of 40 bound the rate below 7.2% at 95%; 83 of 83 samples over bound the share above 96.5%."""
    assert (
        share_bounds(0, 40, 0.95)[1] == pytest.approx(1 - 0.05 ** (1 / 40)) == pytest.approx(0.0722, abs=1e-4)
    )
    assert share_bounds(83, 83, 0.95)[0] == pytest.approx(0.9646, abs=1e-4)


@pytest.mark.parametrize("c", CONFIDENCES)
@pytest.mark.parametrize("allowed", [0.5, 0.1, 0.05, 0.01, 0.005, 0.001])
def test_samples_needed_with_none_beyond_match_a_brute_force_search(allowed: float, c: float) -> None:
    sizes = np.arange(1, 10_000)
    highs = beta.ppf(c, 1, sizes)  # Clopper-Pearson's upper end for 0 of n, for every n at once
    brute = int(sizes[np.argmax(highs < allowed)])
    assert exact_share_bounds(0, brute, c)[1] < allowed <= exact_share_bounds(0, brute - 1, c)[1]
    assert clean_zero_samples(allowed, c) == brute


@pytest.mark.parametrize("count", [0, 1, 7, 83, 1000])
def test_poisson_bounds_are_garwoods(count: int) -> None:
    low, high = poisson_bounds(count, 0.95)
    assert low == pytest.approx(chi2.ppf(0.05, 2 * count) / 2 if count else 0.0)
    assert high == pytest.approx(chi2.ppf(0.95, 2 * count + 2) / 2)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(min_value=0.001, max_value=5.0), min_size=2, max_size=200),
    st.sampled_from(CONFIDENCES),
)
def test_mean_bounds_are_students(values: list[float], c: float) -> None:
    array = np.array(values)
    bounds = mean_bounds(len(values), float(array.mean()), float(array.std(ddof=1)), c)
    assert bounds is not None
    if array.std() > 1e-9:
        expected = ttest_1samp(array, 0.0).confidence_interval(confidence_level=2 * c - 1)
        assert bounds == pytest.approx((expected.low, expected.high), rel=1e-6, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=500),
    st.sampled_from((0.5, 0.9, 0.99)),
    st.sampled_from(CONFIDENCES),
)
def test_quantile_bounds_are_the_order_statistics_with_the_stated_coverage(
    values: list[int], q: float, c: float
) -> None:
    """x(u) is the first order statistic with P(Binomial(n, q) <= u - 1) >= c; x(l) the last with
    P(Binomial(n, q) >= l) >= c."""
    n, ordered = len(values), sorted(values)
    low, high = quantile_bounds(values, q, c)
    ranks_up = [u for u in range(1, n + 1) if binom.cdf(u - 1, n, q) >= c]
    ranks_down = [m for m in range(1, n + 1) if binom.sf(m - 1, n, q) >= c]
    assert high == (ordered[ranks_up[0] - 1] if ranks_up else None)
    assert low == (ordered[ranks_down[-1] - 1] if ranks_down else None)


@pytest.mark.parametrize("op", OPS)
def test_min_and_max_are_facts_of_the_observed_samples(op: str) -> None:
    """One sample over decides `max < L` at once; `max` passing says only that none observed was over."""
    data = data_of([0.01] * 5 + [0.2])
    v = judge_one(parse_slo(f"max(latency) {op} 100ms"), data, "locust")
    assert v.status == ("fail" if op in ("<", "<=") else "pass") and "observed maximum" in v.rule
    assert v.low == v.high == 0.2 and not math.isnan(v.value or math.nan)


# --- the must-show runs: a real engine (Locust) against a 100 ms loopback server ---------------------

RUN = """\
version: 1
name: confidence
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "hold(1, {seconds}s)", think_time: constant({think})}}
requests:
  a: {{path: /a}}
slo:
  - {slo}
"""


def run_once(tmp_path: Path, server_url: str, slo: str, seconds: int, think: str) -> tuple[int, dict, str]:
    scenario = tmp_path / "confidence.yaml"
    scenario.write_text(RUN.format(url=server_url, seconds=seconds, think=think, slo=slo))
    out = tmp_path / "run"
    code = main(["run", str(scenario), "--engine", "locust", "--out", str(out), "--quiet"])
    return code, json.loads((out / "summary.json").read_text()), (out / "summary.md").read_text()


@pytest.mark.engine
def test_a_certain_breach_in_a_15_second_smoke_run_exits_1_with_its_interval(tmp_path: Path) -> None:
    """The issue's run: every request takes 100 ms against `p99(latency) < 1ms`. About 80 samples, all
    over: a certain breach (the old 100-sample rule called it inconclusive, and inconclusive exited 0)."""
    with LoopbackServer(delay_s=0.1) as server:
        code, summary, md = run_once(tmp_path, server.url, "p99(latency) < 1ms", 15, "80ms")
    verdict = summary["verdicts"][0]
    n = verdict["samples"]
    assert code == 1 and summary["verdict"] == "fail" and verdict["status"] == "fail"
    assert 30 <= n <= 100 and verdict["k"] == n  # every sample over the limit
    assert verdict["share_low"] == pytest.approx(0.05 ** (1 / n)) and verdict["allowed_share"] == 0.01
    assert verdict["explanation"].startswith(
        f"fail: {n} of {n} samples at or over 1ms; the share is at least"
    )
    assert (
        "| `p99(latency) < 1ms` | fail | " in md and f"{n}/{n}: [{verdict['share_low']:.3%}, 100.000%]" in md
    )


@pytest.mark.engine
def test_an_honest_short_run_with_too_few_samples_exits_4(tmp_path: Path) -> None:
    """About 20 samples all under 10 s: the share over is bounded only below ~14%, not below p99's 1%."""
    with LoopbackServer(delay_s=0.1) as server:
        code, summary, md = run_once(tmp_path, server.url, "p99(latency) < 10s", 3, "50ms")
    verdict = summary["verdicts"][0]
    n = verdict["samples"]
    assert code == 4 and summary["verdict"] == "inconclusive" and verdict["status"] == "inconclusive"
    assert 5 <= n < 299 and verdict["k"] == 0
    assert verdict["share_high"] == pytest.approx(1 - 0.05 ** (1 / n)) and verdict["share_high"] > 0.01
    assert "299 samples with none at or over would pass at 95%" in verdict["explanation"]
    assert f"0/{n}: [0.000%, {verdict['share_high']:.3%}], 1% allowed" in md


@pytest.mark.parametrize(
    ("slo", "samples", "confidence", "status"),
    [
        ("p99(latency) < 1ms", 10, 0.95, 0.0),  # all 10 over: a certain breach
        ("p99(latency) < 10s", 100, 0.95, -1.0),  # none over, but 299 needed
        ("p99(latency) < 10s", 100, 0.5, 1.0),  # at the run's confidence of 0.5, 100 are enough
    ],
)
def test_the_live_status_is_the_verdict_so_far_at_the_runs_confidence(
    slo: str, samples: int, confidence: float, status: float
) -> None:
    scenario = dataclasses.replace(closed_chat_scenario(), slos=(parse_slo(slo),))
    exporter = LiveExporter(scenario, confidence)
    exporter.tracker.add(data_of([0.1] * samples).records)  # the pipeline feeds the tracker first
    exporter.tick(T0)
    assert exporter.registry.get_sample_value("scenariokit_slo_status", {"slo": slo}) == status
