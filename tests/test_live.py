"""The runner's live outputs fed a poll at a time: the terminal view's window and the exporter's histogram."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from scenariokit.engines.records import RequestRecord
from scenariokit.run.exporter import LATENCY_BUCKETS, LatencyHistograms
from scenariokit.run.live import WINDOW_S, LiveView
from tests.support.ir_examples import closed_chat_scenario


def test_live_window_keeps_the_last_seconds_by_start_time() -> None:
    view = LiveView(closed_chat_scenario(), quiet=True)
    rng = random.Random(7)
    records = [RequestRecord(1000.0 + i * 0.01, "a", "", 200, True, None, rng.random()) for i in range(3000)]
    for i in range(0, len(records), 137):  # polls of uneven size, as the runner gets them
        view.add(records[i : i + 137])
    newest = records[-1].t
    inside = sorted(r.latency for r in records if r.t >= newest - WINDOW_S)
    rate, p95 = view._stats()
    assert rate == len(inside) / WINDOW_S and len(inside) < len(records)
    assert p95 == inside[int(0.95 * len(inside))]
    assert view.total == 3000 and not hasattr(view, "all_records")  # the window only, never the run


def test_live_window_of_no_records_has_no_percentile() -> None:
    view = LiveView(closed_chat_scenario(), quiet=True)
    view.add([])
    assert view._stats() == (0.0, None)


def test_latency_histograms_expose_what_the_client_histogram_would() -> None:
    rng = random.Random(3)
    values = [0.005, 0.01, 60.0, 61.0, 0.0, *(rng.expovariate(5) for _ in range(2000))]  # bounds included
    observations = [(rng.choice(["ocr", "identify"]), value) for value in values]
    expected, got = CollectorRegistry(), CollectorRegistry()
    client = Histogram("sk_seconds", "Latency.", ["name"], buckets=LATENCY_BUCKETS, registry=expected)
    for name, value in observations:
        client.labels(name).observe(value)
    ours = LatencyHistograms("sk_seconds", "Latency.")
    got.register(ours)
    ours.add(observations[:1000])
    ours.add(observations[1000:])
    series = sorted(
        line for line in generate_latest(expected).decode().splitlines() if "_created" not in line
    )
    assert sorted(generate_latest(got).decode().splitlines()) == series
