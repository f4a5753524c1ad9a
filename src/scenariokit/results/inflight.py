"""Peak requests in flight: the most requests a generator had sent and not yet seen answered at once.

Counted from the records (start `t`, end `t + latency`) on a grid of steps over the run: a request is in
flight in every step from the one its start falls in to the one its end falls in, both included. A
difference array (+1 at the first step, -1 after the last) keeps this in memory that does not grow with the
run's records: at most MAX_STEPS steps (1 ms each up to a run of MAX_STEPS ms, about 4 minutes; longer
runs get longer steps, shown as `step_s`). The peak of the running sum is then exact at the step's
resolution; it can only overstate the true peak, by requests that ended and started within one step of each
other (back-to-back requests of one user). The mean in flight is Little's law, elsewhere (`concurrency`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from scenariokit.engines.records import RequestRecord

MAX_STEPS = 250_000  # 1 MB of int32 per accumulator, whatever the run's length
MIN_STEP_S = 0.001


class InFlight:
    """One accumulator (the run's requests, or one request name's) over [started, started + duration_s);
    requests outside it are clipped to its ends."""

    def __init__(self, started: float, duration_s: float) -> None:
        self.started = started
        self.step_s = max(MIN_STEP_S, max(duration_s, MIN_STEP_S) / MAX_STEPS)
        self.steps = max(1, math.ceil(max(duration_s, 0.0) / self.step_s))
        self.diff = np.zeros(self.steps + 1, dtype=np.int32)
        self._sum: np.ndarray | None = None

    def add(self, batch: Sequence[RequestRecord]) -> None:
        if not batch:
            return
        size = len(batch)
        start = np.fromiter((r.t for r in batch), float, size) - self.started
        end = start + np.fromiter((r.latency for r in batch), float, size)
        last = self.steps - 1
        first_step = np.clip(np.floor(start / self.step_s), 0, last).astype(np.int64)
        last_step = np.clip(np.floor(end / self.step_s), 0, last).astype(np.int64)
        np.add.at(self.diff, first_step, 1)
        np.add.at(self.diff, last_step + 1, -1)
        self._sum = None

    def running(self) -> np.ndarray:
        """Requests in flight in each step."""
        if self._sum is None:
            self._sum = np.cumsum(self.diff[:-1], dtype=np.int64)
        return self._sum

    def peak(self, start_s: float = 0.0, end_s: float = math.inf) -> int:
        """The most in flight at once in the steps that overlap [start_s, end_s) from the origin."""
        first = max(0, math.floor(start_s / self.step_s))
        last = min(self.steps, math.ceil(end_s / self.step_s)) if math.isfinite(end_s) else self.steps
        window = self.running()[first:last]
        return int(window.max()) if window.size else 0

    def per_second(self, seconds: int) -> list[int]:
        """The peak in each whole second from the origin (`seconds` of them; 0 past the grid)."""
        starts = np.floor(np.arange(seconds) / self.step_s + 1e-9).astype(np.int64)
        inside = starts < self.steps
        out = np.zeros(seconds, dtype=np.int64)
        if inside.any():
            out[inside] = np.maximum.reduceat(self.running(), starts[inside])
        return out.tolist()
