"""scenariokit's own live metrics, as a Prometheus text endpoint on loopback while a run goes.

Fed from the same record stream the run folder gets, so a dashboard shows what the verdict will be built
from: requests by name and outcome, a latency histogram per name, the intended load level, and each SLO's
status so far (1 pass, 0 fail, -1 not enough data yet). Prometheus (`--monitor prometheus`) scrapes it;
so can any other scraper.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from scenariokit.analysis import level_at
from scenariokit.ir import Scenario
from scenariokit.records import RequestRecord

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SLO_STATUS = {"pass": 1.0, "fail": 0.0}
SLO_EVERY_S = 5.0  # judging every SLO walks all records so far: not on every poll


class LiveExporter:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "scenariokit_requests", "Requests measured, by name and outcome.", ["name", "outcome"], registry=r
        )
        self.latency = Histogram(
            "scenariokit_request_duration_seconds",
            "Latency of measured requests (from the intended start in open-model runs).",
            ["name"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.level = Gauge(
            "scenariokit_intended_load", "Intended users (closed) or requests/s (open).", registry=r
        )
        self.slo = Gauge(
            "scenariokit_slo_status", "1 pass, 0 fail, -1 not enough data yet.", ["slo"], registry=r
        )
        Gauge(
            "scenariokit_run_info",
            "The run being measured.",
            ["scenario", "engine", "load_model"],
            registry=r,
        ).labels(scenario.name, scenario.engine, scenario.load.model).set(1)
        self.server: Any = None
        self.url = ""
        self.started_unix: float | None = None
        self._last_slo = 0.0
        self._histograms: dict[str, Any] = {}

    def start(self) -> str:
        self.server, _thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.url = f"http://127.0.0.1:{self.server.server_port}/metrics"
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def add(self, records: list[RequestRecord]) -> None:
        # counted per label set, and histogram children cached: this runs for every request
        outcomes = Tally((r.name, "ok" if r.ok else (r.error_kind or "error")) for r in records)
        for (name, outcome), count in outcomes.items():
            self.requests.labels(name, outcome).inc(count)
        for r in records:
            histogram = self._histograms.get(r.name)
            if histogram is None:
                histogram = self._histograms[r.name] = self.latency.labels(r.name)
            histogram.observe(r.corrected_latency)

    def tick(self, all_records: list[RequestRecord], origin_unix: float | None) -> None:
        """Refresh the load level and, every few seconds, every SLO's status over the records so far."""
        now = time.time()
        if origin_unix is not None:
            self.level.set(level_at(self.scenario.load.stages, now - origin_unix))
        if now - self._last_slo < SLO_EVERY_S or not all_records or origin_unix is None:
            return
        self._last_slo = now
        from scenariokit.metrics import RunData
        from scenariokit.slo import judge

        data = RunData(all_records, origin_unix, now, self.scenario.load.stages)
        for verdict in judge(self.scenario.slos, data, self.scenario.engine):
            self.slo.labels(verdict.slo).set(SLO_STATUS.get(verdict.status, -1.0))
