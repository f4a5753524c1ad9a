"""The record pipeline: the runner's poll loop reads each batch of records from the engine once and hands
it to a list of sinks, in order (Locust's event hooks are the model; ../shared/notes/decisions.md: workers
on other machines feed the same pipeline).

The crash-safe Parquet store goes first, so a batch is stored before anything else sees it; then the
incremental SLO tracker (results/tracker.py), which the live sinks read; then the live view (its window
only), the live Prometheus exporter and, with --abort-on-fail, the abort judge. None keeps the run's
records: memory is flat in the run's length (docs/performance.md, benchmarks/bench_long_run.py).

The store's errors (a full disk: OSError) go to the caller, which stops the run as before. A live sink
that raises is dropped with a warning and the run goes on: a display or an endpoint must not cost a
24-hour soak its records.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Protocol

from scenariokit.compile.ir import Scenario
from scenariokit.engines.records import RequestRecord
from scenariokit.results.confidence import DEFAULT_CONFIDENCE
from scenariokit.results.slo import lost_on_counts
from scenariokit.results.store import RecordStore
from scenariokit.results.tracker import SloTracker
from scenariokit.run.exporter import LiveExporter
from scenariokit.run.live import LiveView


class RecordSink(Protocol):
    def add(self, batch: list[RequestRecord]) -> None: ...

    def close(self) -> None: ...


class StoreSink:
    """The Parquet store as the pipeline's first sink."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def add(self, batch: list[RequestRecord]) -> None:
        self.store.append(batch)

    def close(self) -> None:
        self.store.close()


class RecordPipeline:
    """The store first, then the live sinks; `failures` names each live sink dropped and why."""

    def __init__(self, store: RecordSink, live: Sequence[RecordSink] = ()) -> None:
        self.store = store
        self.live = list(live)
        self.failures: list[str] = []

    def add(self, batch: list[RequestRecord]) -> None:
        self.store.add(batch)  # raises on a full disk: the caller's to handle, as before the pipeline
        for sink in list(self.live):
            try:
                sink.add(batch)
            except Exception as exc:  # any failure of a live sink: drop it, keep storing
                self._drop(sink, exc)

    def close(self) -> None:
        """Closes the store (its last part) even when a live sink's close fails."""
        try:
            self.store.close()
        finally:
            for sink in list(self.live):
                try:
                    sink.close()
                except Exception as exc:  # as in add
                    self._drop(sink, exc)

    def _drop(self, sink: RecordSink, exc: Exception) -> None:
        self.live.remove(sink)
        failure = (
            f"the live {type(sink).__name__} stopped ({type(exc).__name__}: {exc}); records are still stored"
        )
        self.failures.append(failure)
        print(f"warning: {failure}", file=sys.stderr)


class AbortJudge:
    """--abort-on-fail: after a grace period, stop once an SLO can no longer be met (`lost`). It reads the
    tracker's counts, so a check costs the same at hour 20 as at second 20."""

    GRACE_S = 10.0
    EVERY_S = 2.0

    def __init__(
        self, scenario: Scenario, tracker: SloTracker, confidence: float = DEFAULT_CONFIDENCE
    ) -> None:
        from scenariokit.compile.plan import make_plan

        self.scenario = scenario
        self.tracker = tracker
        self.confidence = confidence
        self.planned = sum(make_plan(scenario).expected_requests.values())
        self.next_check = time.monotonic() + self.GRACE_S
        self.lost: str | None = None  # the SLOs certainly lost, once there are

    def add(self, batch: list[RequestRecord]) -> None:
        now = time.monotonic()
        if now < self.next_check or self.lost is not None:
            return
        self.next_check = now + self.EVERY_S
        lost = [
            slo.text
            for slo in self.scenario.slos
            if lost_on_counts(slo, *self.tracker.errors_of(slo), self.planned, self.confidence)
        ]
        self.lost = "; ".join(lost) if lost else None

    def close(self) -> None:
        """Nothing held."""


def runner_pipeline(
    scenario: Scenario,
    store: RecordStore,
    view: LiveView,
    exporter: LiveExporter,
    abort_on_fail: bool = False,
    confidence: float = DEFAULT_CONFIDENCE,
) -> tuple[RecordPipeline, AbortJudge | None]:
    """The runner's sinks in their order (the benchmark builds the same): the store, the exporter's
    tracker, the live view, the exporter, the abort judge."""
    judge = AbortJudge(scenario, exporter.tracker, confidence) if abort_on_fail else None
    live: list[RecordSink] = [exporter.tracker, view, exporter]
    view.tracker = exporter.tracker
    return RecordPipeline(StoreSink(store), live + ([judge] if judge else [])), judge
