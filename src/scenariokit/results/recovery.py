"""Fault windows and recovery: the run's fault occurrences on the records' clock, each one's recovery time,
and the best sustained throughput, all read from per-second figures that both the in-memory path
(`metrics.timeline`) and the streamed one (`seconds.SecondTable.timeline`) compute equally.

Recovery of one occurrence of a fault (`recovery_time(kill) < 10s`):

- the steady state is the `steady_s` seconds (default 30) before the fault's start, the whole seconds of
  the run that end at or before it: their pooled error rate and the highest of their per-second p95s (a
  second's p95 of a few dozen requests moves a lot: the band starts from the range it kept before);
- a second is back within the band when requests were sent in it, its error rate is at most the steady
  rate plus `error_points` (default 1 point) and its p95 at most `p95_factor` x the steady p95 plus
  `p95_slack_s` (default 1.5x + 10 ms);
- the recovery time is from the fault's end (for kill-target its `end`, when the restart was begun, not
  `ready`: the outage is part of recovery) to the start of the first of `hold_s` consecutive seconds
  (default 3) back within the band, counting only seconds that end after the fault's end; 0 when the band
  holds from the fault's end. None: not recovered by the end of the run.

It is an observed fact per occurrence (like a maximum): judged exactly, the worst occurrence deciding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scenariokit.compile.ir import Fault, Slo
from scenariokit.results.faults import FaultEvent, read_fault_events
from scenariokit.results.metrics import FaultSpans

Row = Mapping[str, Any]  # a timeline row: second, sent, ok, errors, p95, ...
SUSTAIN_S = 10  # max(throughput): the best mean of this many consecutive whole seconds


@dataclass(frozen=True)
class RecoveryPolicy:
    """The band a recovered second is in, and how long it must hold (a fault's `recovery:`)."""

    steady_s: float = 30.0
    hold_s: float = 3.0
    error_points: float = 0.01
    p95_factor: float = 1.5
    p95_slack_s: float = 0.010

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> RecoveryPolicy:
        """From a fault's lowered parameters (`recovery_steady_s`, `recovery_hold_s`,
        `recovery_error_rate`, `recovery_p95_factor`); absent keys keep the defaults."""
        base = cls()
        return cls(
            steady_s=float(params.get("recovery_steady_s", base.steady_s)),
            hold_s=float(params.get("recovery_hold_s", base.hold_s)),
            error_points=float(params.get("recovery_error_rate", base.error_points)),
            p95_factor=float(params.get("recovery_p95_factor", base.p95_factor)),
            p95_slack_s=base.p95_slack_s,
        )

    def text(self) -> str:
        return (
            f"steady state the {self.steady_s:g} s before the fault (its highest per-second p95); back "
            f"when {self.hold_s:g} s in a row "
            f"have requests, an error rate at most steady + {self.error_points * 100:g} points and a p95 "
            f"at most {self.p95_factor:g}x steady + {self.p95_slack_s * 1000:g} ms"
        )


@dataclass(frozen=True)
class Occurrence:
    """One applied occurrence of a fault, in seconds from the run's start."""

    name: str
    kind: str
    index: int
    start_s: float
    end_s: float
    ready_s: float | None
    cut_short: bool
    policy: RecoveryPolicy


def occurrences(
    events: Sequence[FaultEvent], started: float, planned: Sequence[Fault] = ()
) -> list[Occurrence]:
    """The applied events (a fault that could not be applied has no window), on the run's clock; each
    one's recovery band from its planned fault's `recovery:` (run.json), else from the event's params."""
    params = {fault.name: fault.params for fault in planned}
    return [
        Occurrence(
            e.name,
            e.kind,
            e.occurrence,
            e.start - started,
            e.end - started,
            None if e.ready is None else e.ready - started,
            e.cut_short,
            RecoveryPolicy.of({**e.params, **params.get(e.name, {})}),
        )
        for e in events
        if e.applied
    ]


LIVE_SLACK_S = 0.5  # a planned start this close may already have begun: the timeline is final only before it


def live_timeline(
    run_dir: Path, planned: Sequence[Fault], origin_unix: float, now_unix: float
) -> tuple[dict[str, list[tuple[float, float]]], float]:
    """What a live tracker may know during the run (SloTracker.known_faults): the occurrences ended so far
    (faults.jsonl, unix times), and the time up to which that is final: the earliest planned start not yet
    ended (the scheduler never starts one before its planned time), else now."""
    events = read_fault_events(run_dir)
    spans: dict[str, list[tuple[float, float]]] = {}
    for e in events:
        if e.applied:
            spans.setdefault(e.name, []).append((e.start, max(e.start, e.end)))
    ended = {(e.name, e.occurrence) for e in events}
    waiting = [origin_unix + t for f in planned for i, t in enumerate(f.times) if (f.name, i) not in ended]
    return spans, min([now_unix, *(t - LIVE_SLACK_S for t in waiting)])


# --- recovery -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    """One occurrence's recovery: seconds from its end (None: not by the run's end), and what it was
    measured against."""

    occurrence: Occurrence
    seconds: float | None
    steady_error_rate: float | None  # None: no whole second before the fault to take a steady state from
    steady_p95: float | None
    run_left_s: float  # from the fault's end to the end of the run's last second


def recovery_of(o: Occurrence, rows: Sequence[Row]) -> Recovery:
    """The occurrence's recovery time read from the run's per-second rows (`timeline`)."""
    p = o.policy
    # rows are the run's seconds in order (row i is second i): the steady seconds end at or before the
    # fault's start, the candidates end after its end; slices, so a thousand occurrences stay cheap
    first_steady = max(0, math.ceil(o.start_s - p.steady_s))
    steady = rows[first_steady : max(first_steady, math.floor(o.start_s))]
    sent = sum(int(r["sent"]) for r in steady)
    left = max(0.0, len(rows) - o.end_s)
    if sent == 0:
        return Recovery(o, None, None, None, left)
    error_rate = sum(int(r["errors"]) for r in steady) / sent
    p95 = max(float(r["p95"]) for r in steady if r["p95"] is not None)
    error_limit = error_rate + p.error_points
    p95_limit = p.p95_factor * p95 + p.p95_slack_s
    hold = max(1, math.ceil(p.hold_s))
    run = 0
    for r in rows[max(0, math.floor(o.end_s)) :]:
        good = (
            r["sent"] > 0
            and int(r["errors"]) / int(r["sent"]) <= error_limit
            and r["p95"] is not None
            and float(r["p95"]) <= p95_limit
        )
        run = run + 1 if good else 0
        if run == hold:
            first = int(r["second"]) - hold + 1
            return Recovery(o, max(0.0, first - o.end_s), error_rate, p95, left)
    return Recovery(o, None, error_rate, p95, left)


def recoveries(found: Sequence[Occurrence], rows: Sequence[Row]) -> dict[tuple[str, int], Recovery]:
    return {(o.name, o.index): recovery_of(o, rows) for o in found}


# --- max(throughput): the best sustained ok rate ---------------------------------------------------------


def best_sustained(ok_per_second: np.ndarray, inside: np.ndarray) -> tuple[float, int] | None:
    """The best mean of SUSTAIN_S consecutive whole seconds all inside the window, and the first of them;
    None when the window holds no such run of seconds."""
    n = SUSTAIN_S
    if len(ok_per_second) < n:
        return None
    sums = np.convolve(ok_per_second.astype(np.float64), np.ones(n), mode="valid")
    full = np.convolve(inside.astype(np.int64), np.ones(n, dtype=np.int64), mode="valid") == n
    if not full.any():
        return None
    candidates = np.where(full, sums, -1.0)
    first = int(np.argmax(candidates))
    return float(candidates[first]) / n, first


def seconds_inside(count: int, intervals: Sequence[tuple[float, float]]) -> np.ndarray:
    """Per whole second [i, i+1) of the run: whether it lies inside one of the window's intervals."""
    out = np.zeros(count, dtype=bool)
    for a, b in intervals:
        low, high = max(0, math.ceil(a)), min(count, math.floor(b) if math.isfinite(b) else count)
        if high > low:
            out[low:high] = True
    return out


def spans_for(slo: Slo, faults: FaultSpans) -> list[tuple[float, float]]:
    """recovery_time's fault's occurrences (empty when it never happened)."""
    return list(faults.get(slo.subject or "", ()))
