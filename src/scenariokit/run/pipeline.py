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
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from scenariokit.compile.ir import MIN_ABORT_REQUESTS, AbortRule, Scenario
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


class _Window:
    """One abort rule's trailing window: errors and requests per whole second of completion, with running
    sums, so that adding a record and checking the rule cost O(1) whatever the run's length."""

    def __init__(self, rule: AbortRule) -> None:
        self.rule = rule
        self.seconds: deque[list[int]] = deque()  # [second, errors, requests], oldest first
        self.errors = 0
        self.requests = 0

    def add(self, second: int, error: bool) -> None:
        # records arrive nearly in completion order: one that ends in a second older than the newest
        # counts in the newest (a shift of at most a poll, 0.5 s), so the seconds stay in order
        if not self.seconds or self.seconds[-1][0] < second:
            self.seconds.append([second, 0, 0])
        bucket = self.seconds[-1]
        bucket[1] += error
        bucket[2] += 1
        self.errors += error
        self.requests += 1

    def evict(self, now_second: int) -> None:
        """Keeps the seconds in (now - window, now]."""
        while self.seconds and self.seconds[0][0] <= now_second - self.rule.window_s:
            _, errors, requests = self.seconds.popleft()
            self.errors -= errors
            self.requests -= requests


class AbortWhen:
    """The scenario's `abort_when:` rules on the record pipeline. Each keeps the errors and requests of its
    trailing window by second of completion (records' clock); a rule is checked once the run has lasted its
    window and the window holds MIN_ABORT_REQUESTS requests. `held` names the first rule that held, with
    what it saw."""

    def __init__(self, rules: Sequence[AbortRule]) -> None:
        self.windows = [_Window(rule) for rule in rules]
        self.first_start: float | None = None
        self.held: str | None = None

    def add(self, batch: list[RequestRecord]) -> None:
        if self.held is not None or not batch:
            return
        latest = 0.0
        for record in batch:
            end = record.t + record.latency
            latest = max(latest, end)
            if self.first_start is None or record.t < self.first_start:
                self.first_start = record.t
            for window in self.windows:
                window.add(int(end), not record.ok)
        assert self.first_start is not None
        for window in self.windows:
            window.evict(int(latest))
            if latest - self.first_start < window.rule.window_s or window.requests < MIN_ABORT_REQUESTS:
                continue
            if window.rule.holds(window.errors, window.requests):
                errors = window.rule.metric == "error_rate"
                count = window.errors if errors else window.requests - window.errors
                self.held = (
                    f"abort_when `{window.rule.text}` held: {count:,} {'errors' if errors else 'ok'} of "
                    f"{window.requests:,} requests ({count / window.requests:.1%}) in the "
                    f"{window.rule.window_s:g} s to {latest - self.first_start:.1f} s"
                )
                return

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


def abort_rules_sink(pipeline: RecordPipeline, scenario: Scenario) -> AbortWhen | None:
    """Adds the scenario's `abort_when:` rules to the pipeline (last: they read only the batch)."""
    if not scenario.abort_when:
        return None
    sink = AbortWhen(scenario.abort_when)
    pipeline.live.append(sink)
    return sink
