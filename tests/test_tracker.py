"""The incremental SLO tracker against the reference path over the records themselves: the same HDR
percentiles as `sample_stats`, and the same facts and verdicts as `slo.judge` on the same records, fed in
batches of any size."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from scenariokit.compile.expr import parse_slo
from scenariokit.compile.ir import Stage
from scenariokit.engines.records import RequestRecord
from scenariokit.results.metrics import RunData, sample_stats
from scenariokit.results.slo import facts_of, judge
from scenariokit.results.tracker import Distribution, SloTracker

T0 = 1_700_000_000.0
STAGES = (Stage("ramp", "warmup", 10.0, 0, 10), Stage("steady", "hold", 20.0, 10, 10))
END = T0 + 30

# latencies from below the histogram's 1 µs floor to above its 1 h ceiling, and HDR bucket edges
LATENCY = st.one_of(
    st.floats(min_value=-0.5, max_value=5000.0, allow_nan=False),
    st.sampled_from([0.0, 1e-7, 1e-6, 0.0020475, 0.002048, 0.0020485, 0.1, 3600.0, 3600.5]),
    st.floats(min_value=0.001, max_value=2.0, allow_nan=False),
)

SLOS = tuple(
    parse_slo(text)
    for text in (
        "p95(latency) < 500ms",
        "p99(latency) <= 1s for a",
        "p50(latency) > 10ms during warmup",
        "p90(ttfb) >= 20ms for b during 5s..25s",
        "mean(latency) < 800ms",
        "max(latency) < 10s for b",
        "min(latency) > 1ms during steady",
        "p100(latency) < 3600s",
        "error_rate < 5% for a",
        "error_rate <= 10% during steady",
        "throughput > 20/s",
        "throughput >= 5/s for b during warmup",
    )
)


def batches(records: list[RequestRecord], cuts: list[int]) -> list[list[RequestRecord]]:
    edges = sorted({0, len(records), *(c % (len(records) + 1) for c in cuts)})
    return [records[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=60, deadline=None)
@given(st.lists(LATENCY, min_size=1, max_size=400), st.lists(st.integers(0, 400), max_size=6))
def test_distribution_equals_sample_stats(values: list[float], cuts: list[int]) -> None:
    dist = Distribution()
    for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(values)], strict=True):
        dist.add(np.asarray(values[a:b], dtype=float))
    assert dist.stats([97.5, 100.0]) == sample_stats(values, [97.5, 100.0])
    if len(values) >= 2:
        assert math.isclose(dist.stdev(), float(np.std(values, ddof=1)), rel_tol=1e-9, abs_tol=1e-12)


RECORD = st.tuples(
    st.floats(min_value=-1.0, max_value=31.0, allow_nan=False),  # start, seconds from T0
    st.sampled_from(["a", "b", "c"]),
    LATENCY,
    st.booleans(),
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0, allow_nan=False)),
)


def make(row: tuple[float, str, float, bool, float | None]) -> RequestRecord:
    start, name, latency, ok, ttfb = row
    status, error = (200, None) if ok else (503, "http_503")
    return RequestRecord(T0 + start, name, "", status, ok, error, latency, ttfb=ttfb)


@settings(max_examples=40, deadline=None)
@given(st.lists(RECORD, min_size=0, max_size=500), st.lists(st.integers(0, 500), max_size=8))
def test_tracker_facts_and_verdicts_equal_the_records_path(rows: list[tuple], cuts: list[int]) -> None:
    records = sorted((make(row) for row in rows), key=lambda r: r.t)
    tracker = SloTracker(SLOS, STAGES, 0.95, "locust", origin_unix=T0)
    for batch in batches(records, cuts) if records else []:
        tracker.add(batch)
    data = RunData(records, T0, END, STAGES)
    for slo in SLOS:
        ours, theirs = tracker.facts(slo, END), facts_of(slo, data, 0.95)
        assert (ours.value, ours.samples, ours.k, ours.length) == (
            theirs.value,
            theirs.samples,
            theirs.k,
            theirs.length,
        ), slo.text
        assert math.isclose(ours.stdev, theirs.stdev, rel_tol=1e-9) or (
            math.isnan(ours.stdev) and math.isnan(theirs.stdev)
        )
    for ours_v, reference in zip(tracker.verdicts(END), judge(SLOS, data, "locust", 0.95), strict=True):
        assert (ours_v.status, ours_v.value, ours_v.samples, ours_v.k) == (
            reference.status,
            reference.value,
            reference.samples,
            reference.k,
        ), ours_v.slo


def test_an_engine_that_cannot_measure_a_metric_gets_not_measured() -> None:
    slo = parse_slo("p95(ttft) < 1s")
    tracker = SloTracker((slo,), STAGES, engine="k6", origin_unix=T0)
    tracker.add([make((1.0, "a", 0.2, True, None))])
    assert [v.status for v in tracker.verdicts(END)] == ["not_measured"]


def test_the_first_batch_stands_in_for_an_unknown_origin() -> None:
    slo = parse_slo("error_rate < 50% during 0s..1s")
    tracker = SloTracker((slo,), STAGES)
    tracker.add([make((5.0, "a", 0.1, False, None)), make((6.5, "a", 0.1, True, None))])
    assert tracker.origin_unix == T0 + 5.0 and tracker.errors_of(slo) == (1, 1)
