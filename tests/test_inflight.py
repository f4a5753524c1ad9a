"""Peak in flight (results/inflight.py) on hand-made records: what the instants see, and its bounds."""

from __future__ import annotations

import pytest

from scenariokit.engines.records import RequestRecord
from scenariokit.results.inflight import MAX_STEPS, InFlight

T0 = 1_000_000.0


def req(start: float, latency: float) -> RequestRecord:
    return RequestRecord(T0 + start, "a", "hold", 200, True, None, latency)


@pytest.mark.parametrize(
    ("spans", "peak"),
    [
        ([], 0),
        ([(0.0, 1.0)], 1),
        ([(0.0, 1.0), (0.5, 1.0), (0.9, 0.2)], 3),
        ([(0.0, 0.5), (0.5, 0.5)], 1),  # back to back: never two at once
        ([(0.1001, 0.0004), (0.1005, 0.0004)], 0),  # both between two instants 1 ms apart
        ([(-5.0, 6.0), (9.5, 5.0)], 1),  # parts outside the run are not counted; what is inside is
        ([(2.0, 1.0), (2.2, 0.1), (2.25, 0.1), (2.3, 0.1)], 3),
    ],
)
def test_the_peak_is_the_most_in_flight_at_one_instant(spans: list[tuple[float, float]], peak: int) -> None:
    counter = InFlight(T0, 10.0)
    counter.add([req(s, lat) for s, lat in spans])
    assert counter.peak() == peak


def test_windows_and_seconds_see_their_own_instants() -> None:
    counter = InFlight(T0, 4.0)
    counter.add([req(0.2, 0.5), req(0.3, 0.5), req(1.5, 1.0), req(2.1, 0.1), req(2.2, 0.1)])
    assert counter.per_second(4) == [2, 1, 2, 0]
    assert (counter.peak(0, 1), counter.peak(1, 2), counter.peak(1.0, 3.0), counter.peak(3, 4)) == (
        2,
        1,
        2,
        0,
    )
    assert counter.peak(0.5, 0.5) == 0  # an empty window


def test_a_long_run_keeps_a_fixed_size_with_longer_steps() -> None:
    day = InFlight(T0, 86_400.0)
    assert day.diff.size == MAX_STEPS + 1 and day.step_s == pytest.approx(86_400.0 / MAX_STEPS)
    day.add([req(3600.0, 5.0), req(3601.0, 5.0)])
    assert day.peak() == 2 and InFlight(T0, 30.0).step_s == 0.001
