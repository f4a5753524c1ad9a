"""Capacity analysis over synthetic runs: levels, the knee (found where the limit puts it, not found on a
linear system), distress signals in time order, and suggestions that quote them."""

from __future__ import annotations

import pytest

from scenariokit.compile.ir import Stage
from scenariokit.engines.records import RequestRecord
from scenariokit.results.analysis import (
    Level,
    analyse,
    find_knee,
    first_sustained,
    fit_saturation,
    level_at,
    load_levels,
    suggest,
)
from scenariokit.results.metrics import RunData

T0 = 1_700_000_000.0


def steps(levels: list[int], seconds: float) -> tuple[Stage, ...]:
    return tuple(Stage("steps", "sweep", seconds, n, n) for n in levels)


def closed_loop(stages: tuple[Stage, ...], slots: int, service_s: float) -> list[RequestRecord]:
    """Records of users sending back to back to a server with `slots` processors shared by the requests in
    it: latency is the service time times max(1, users / slots), so throughput stops growing at `slots`
    users and holds there."""
    records, elapsed = [], 0.0
    for stage in stages:
        users = int(stage.start)
        latency = service_s * max(1.0, users / slots)
        for user in range(users):
            t = elapsed + user * 1e-3
            while t + latency <= elapsed + stage.duration_s:
                records.append(RequestRecord(T0 + t, "a", "", 200, True, None, latency))
                t += latency
        elapsed += stage.duration_s
    return records


def run(stages: tuple[Stage, ...], records: list[RequestRecord]) -> RunData:
    return RunData(records, T0, T0 + sum(s.duration_s for s in stages), stages)


def test_level_at_walks_the_curve() -> None:
    stages = (Stage("ramp", "r", 10, 0, 10), Stage("hold", "h", 5, 10, 10), Stage("ramp", "j", 0, 10, 50))
    assert [level_at(stages, t) for t in (0, 5, 12, 99)] == [0, 5, 10, 50]


@pytest.mark.parametrize("slots", [1, 2, 4])
def test_knee_is_found_at_the_servers_limit(slots: int) -> None:
    stages = steps([1, 2, 3, 4, 5, 6, 8], 5)
    data = run(stages, closed_loop(stages, slots, 0.1))
    levels = load_levels(data)
    assert [lv.level for lv in levels] == [1, 2, 3, 4, 5, 6, 8]
    assert levels[0].throughput == pytest.approx(10, rel=0.05)
    knee = find_knee(levels)
    assert knee.found and knee.level == slots, knee.explanation
    assert knee.fit is not None and knee.fit.knee_level == pytest.approx(slots, rel=0.1)
    assert knee.fit.capacity == pytest.approx(10 * slots, rel=0.05) and knee.fit.p_value < 0.01
    assert "two-segment fit" in knee.explanation


def test_no_knee_while_throughput_grows_with_load() -> None:
    stages = steps([1, 2, 4, 8], 5)
    knee = find_knee(load_levels(run(stages, closed_loop(stages, 100, 0.1))))
    assert not knee.found and "no knee up to 8 users" in knee.explanation


def level(users: float, throughput: float) -> Level:
    return Level(users, 5, int(throughput * 5), throughput, 0.0, users, 0.1, 0.1, 0.1)


def test_the_saturation_fit_finds_the_bend_and_tests_it() -> None:
    # the knee test's measured levels (tests/test_knee.py, k6 against the embedded server, 2 slots)
    measured = [level(1, 8.75), level(2, 17.50), level(3, 17.75), level(4, 17.75), level(5, 18.00)]
    fit = fit_saturation(measured)
    assert fit is not None
    assert fit.slope == pytest.approx(8.75) and fit.capacity == pytest.approx(17.833, abs=1e-3)
    assert fit.knee_level == pytest.approx(2.04, abs=0.01) and fit.r_squared > 0.99 and fit.p_value < 1e-3


def test_a_straight_line_is_not_called_saturated() -> None:
    fit = fit_saturation([level(n, 10.0 * n + (0.3 if n % 2 else -0.3)) for n in range(1, 7)])
    assert fit is not None and fit.p_value > 0.05 and fit.knee_level >= 5


def test_a_spike_into_distress_brackets_the_knee() -> None:
    ramp, steady = level(2, 1.8), level(4, 3.4)
    spike = Level(24, 20, 350, 13.9, 0.21, 5.1, 0.38, 1.2, 1.4)  # 21% refused, p50 up from 0.1 s
    knee = find_knee([ramp, steady, spike])
    assert not knee.found and knee.between == (4, 24)
    assert knee.explanation.startswith("the knee lies between 4 and 24 users"), knee.explanation
    advice = suggest([ramp, steady, spike], knee, [], run(steps([4, 24], 5), []), "users")
    assert any("steps(4, 24, 4, 20s)" in line for line in advice), advice


def test_the_fit_needs_three_levels() -> None:
    assert fit_saturation([level(1, 10), level(2, 20)]) is None


def test_too_few_levels_say_so() -> None:
    stages = steps([1, 2], 5)
    knee = find_knee(load_levels(run(stages, closed_loop(stages, 1, 0.1))))
    assert not knee.found and "too few load levels" in knee.explanation


def test_a_ramp_is_binned_into_levels() -> None:
    stages = (Stage("ramp", "up", 60, 0, 60),)
    records = [RequestRecord(T0 + t + 0.5, "a", "", 200, True, None, 0.05) for t in range(60)]
    levels = load_levels(run(stages, records))
    assert 6 <= len(levels) <= 12 and all(lv.throughput == pytest.approx(1.0) for lv in levels)


def test_first_sustained_needs_consecutive_points() -> None:
    points = [(0, True), (1, False), (2, True), (3, True), (4, True), (5, True)]
    assert first_sustained(points, 3) == 2
    assert first_sustained([(0, True), (1, True)], 3) is None


def test_first_sustained_counts_seconds_whatever_the_sampling_interval() -> None:
    half_second = [(t / 2, t >= 4) for t in range(20)]  # true from 2.0 s on, sampled every 0.5 s
    assert first_sustained(half_second, 3) == 2.0
    assert first_sustained([(t / 2, 4 <= t < 9) for t in range(20)], 3) is None  # only 2.5 s long


def test_distress_signals_in_time_order_with_suggestions() -> None:
    stages = steps([2, 4, 8], 10)
    records = closed_loop(stages, 2, 0.1)
    # from 22 s the target refuses a third of the requests with 429
    records += [RequestRecord(T0 + 22 + i / 10, "a", "", 429, False, "http_429", 0.002) for i in range(60)]
    data = run(stages, records)
    target = [
        {
            "t": T0 + s,
            "up": True,
            "metrics": {'vllm:num_requests_waiting{model_name="ocr"}': 0 if s < 8 else 3},
        }
        for s in range(30)
    ]
    host = [
        {"t": T0 + s, "cpu_percent": 95.0 if s >= 25 else 40.0, "memory_percent": 30.0} for s in range(30)
    ]
    analysis = analyse(data, "closed", target, host, [], {"samples": [], "threshold": 0.9})
    components = [s.component for s in analysis.signals]
    assert components == [
        "target: request queue",  # 8 s
        "target: latency",  # 10 s: 4 users on 2 slots double it
        "errors: http_4xx:429",  # 22 s
        "host: CPU",  # 25 s
    ]
    queue = analysis.signals[0]
    assert queue.at_s == 8 and queue.level == 2
    assert analysis.first_distress is queue
    text = " ".join(analysis.suggestions)
    assert "queue grew first at 8 s (2 users)" in text and "refused requests from 22 s" in text
    assert analysis.knee.found and analysis.knee.level == 2


# --- the target's /metrics: not scraped is not down -------------------------------------------------


def scrapes(outcomes: list[str]) -> list[dict[str, object]]:
    """target.jsonl samples, one a second from T0, with these scrape outcomes."""
    status = {"ok": 200, "absent": 404, "refused": 0, "timeout": 0, "error": 503}
    return [
        {"t": T0 + s + 0.5, "scrape": o, "status": status[o], "up": o == "ok", "metrics": {}}
        for s, o in enumerate(outcomes)
    ]


def records_until(stop_s: int, ok: bool = True) -> list[RequestRecord]:
    """Ten requests a second from T0 until `stop_s`: ok, or refused connections."""
    return [
        RequestRecord(T0 + i / 10, "a", "", 200 if ok else 0, ok, None if ok else "connection_refused", 0.01)
        for i in range(stop_s * 10)
    ]


STAGES = steps([2], 20)


@pytest.mark.parametrize(
    ("case", "outcomes", "records", "down_at", "note"),
    [
        # a REST service: /metrics is 404 from the start, requests succeed
        ("absent from the start", ["absent"] * 20, records_until(20), None, True),
        # served, then nothing listens and requests fail from 10 s
        ("up then refused", ["ok"] * 10 + ["refused"] * 10, records_until(10), 10.5, False),
        ("up then timeouts", ["ok"] * 10 + ["timeout"] * 10, records_until(10), 10.5, False),
        # /metrics stops being served (404) while requests go on: not scraped, not down
        ("404 after being up", ["ok"] * 10 + ["absent"] * 10, records_until(20), None, False),
        # scrapes refused, but the requests in those seconds were answered: the target is up
        ("refused while requests succeed", ["ok"] * 5 + ["refused"] * 15, records_until(20), None, False),
        # the scrape failed to connect only while requests failed too: down from 12 s
        ("refused, requests fail", ["ok"] * 5 + ["refused"] * 15, records_until(12), 12.5, False),
    ],
)
def test_the_target_is_down_only_when_nothing_answers(
    case: str, outcomes: list[str], records: list[RequestRecord], down_at: float | None, note: bool
) -> None:
    analysis = analyse(run(STAGES, records), "closed", scrapes(outcomes), [], [], {})
    down = [s for s in analysis.signals if s.component == "target: down"]
    assert [s.at_s for s in down] == ([] if down_at is None else [down_at]), case
    assert bool(analysis.target_note) == note, case
    if note:
        assert analysis.target_note == (
            "the target has no Prometheus /metrics: target-side signals not available"
        )


@pytest.mark.parametrize(
    ("ups", "down_at", "note"),
    [
        ([False] * 20, None, True),  # never up: a target without /metrics, as old runs recorded it
        ([True] * 8 + [False] * 12, 8.5, False),  # up, then not: down as before
    ],
)
def test_old_samples_with_only_up_are_still_read(ups: list[bool], down_at: float | None, note: bool) -> None:
    target = [{"t": T0 + s + 0.5, "up": up, "metrics": {}} for s, up in enumerate(ups)]
    analysis = analyse(run(STAGES, records_until(8)), "closed", target, [], [], {})
    assert [s.at_s for s in analysis.signals if s.component == "target: down"] == (
        [] if down_at is None else [down_at]
    )
    assert bool(analysis.target_note) == note
