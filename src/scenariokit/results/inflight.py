"""Peak requests in flight: the most requests a generator had sent and not yet seen answered at once.

Counted from the records (start `t`, end `t + latency`) at instants spaced one step apart over the run: a
request is in flight at an instant when it started at or before it and ended after it. A difference array
(+1 at its first instant, -1 after its last) keeps this in memory that does not grow with the run's
records: at most MAX_STEPS instants (1 ms apart up to a run of 250 s; longer runs get longer steps, shown
as `step_s`). The peak is then exact at those instants and never overstates (two requests one user sends
back to back never overlap); it can miss a peak shorter than a step, and a request shorter than a step may
fall between two instants. The mean in flight is Little's law, elsewhere (`concurrency`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from scenariokit.engines.records import RequestRecord

MAX_STEPS = 250_000  # 1 MB of int32 per accumulator, whatever the run's length
MIN_STEP_S = 0.001


class InFlight:
    """One accumulator (the run's requests, or one request name's) at the instants of
    [started, started + duration_s); the parts of requests outside it are not counted."""

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
        # the instants k * step_s with start <= k * step_s < end: from ceil(start) to ceil(end) - 1 in steps
        first = np.clip(np.ceil(start / self.step_s), 0, self.steps).astype(np.int64)
        after = np.clip(np.ceil(end / self.step_s), 0, self.steps).astype(np.int64)
        after = np.maximum(after, first)  # a request between two instants adds nothing
        np.add.at(self.diff, first, 1)
        np.add.at(self.diff, after, -1)
        self._sum = None

    def running(self) -> np.ndarray:
        """Requests in flight at each instant."""
        if self._sum is None:
            self._sum = np.cumsum(self.diff[:-1], dtype=np.int64)
        return self._sum

    def peak(self, start_s: float = 0.0, end_s: float = math.inf) -> int:
        """The most in flight at the instants in [start_s, end_s) from the origin."""
        first = max(0, math.ceil(start_s / self.step_s - 1e-9))
        last = min(self.steps, math.ceil(end_s / self.step_s)) if math.isfinite(end_s) else self.steps
        window = self.running()[first:last]
        return int(window.max()) if window.size else 0

    def per_second(self, seconds: int) -> list[int]:
        """The peak in each whole second from the origin (`seconds` of them; 0 past the grid)."""
        starts = np.ceil(np.arange(seconds) / self.step_s - 1e-9).astype(np.int64)
        inside = starts < self.steps
        out = np.zeros(seconds, dtype=np.int64)
        if inside.any():
            out[inside] = np.maximum.reduceat(self.running(), starts[inside])
        return out.tolist()


def connection_counts(generator: dict[str, Any]) -> list[tuple[float, int]]:
    """(unix time, open connections) of each generator.json sample that counted them (run/connections.py:
    the engine's ESTABLISHED sockets to the target, once a second)."""
    samples = generator.get("samples") or []
    return [
        (float(s["t"]), s["connections"])
        for s in samples
        if isinstance(s, dict)
        and isinstance(s.get("connections"), int)
        and isinstance(s.get("t"), int | float)
    ]


def peak_connections(
    counts: Sequence[tuple[float, int]], started: float, start_s: float = 0.0, end_s: float = math.inf
) -> int | None:
    """The most connections open in the samples of [start_s, end_s) from the origin; None without any."""
    inside = [n for t, n in counts if start_s <= t - started < end_s]
    return max(inside) if inside else None


def peak_connections_in(
    counts: Sequence[tuple[float, int]], started: float, seconds: Iterable[int]
) -> int | None:
    """The most connections open in the samples of the given whole seconds from the origin."""
    wanted = set(seconds)
    inside = [n for t, n in counts if math.floor(t - started) in wanted]
    return max(inside) if inside else None
