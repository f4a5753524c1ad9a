"""scenariokit's own live metrics, as a Prometheus text endpoint on loopback while a run goes.

Fed from the same record stream the run folder gets, so a dashboard shows what the verdict will be built
from: requests by name and outcome, a latency histogram per name, the intended load level, and each SLO's
status so far (1 pass, 0 fail, -1 inconclusive so far: its bounds do not decide yet). Prometheus
(`--monitor prometheus`) scrapes it; so can any other scraper.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from ipaddress import ip_address
from itertools import accumulate
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from scenariokit.compile.ir import Scenario
from scenariokit.engines.records import RequestRecord
from scenariokit.results.analysis import level_at
from scenariokit.results.confidence import DEFAULT_CONFIDENCE
from scenariokit.results.metrics import NO_FAULTS
from scenariokit.results.recovery import live_timeline
from scenariokit.results.tracker import SloTracker

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SLO_STATUS = {"pass": 1.0, "fail": 0.0}
SLO_EVERY_S = 5.0  # every SLO's status, read from the tracker (O(SLOs), not O(records)), this often
# Loopback and a free port unless `--metrics-listen` says otherwise: the compose stack's Prometheus, in a
# container, scrapes host.docker.internal:9646 (monitoring/prometheus/targets/scenariokit.json), so a run
# watched by it listens on an address containers reach, at that port.
DEFAULT_LISTEN = ("127.0.0.1", 0)
COMPOSE_PORT = 9646
ANY_ADDRESS = {"0.0.0.0", "::"}


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:9646`), the host an IP address; ValueError says what is wrong."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(
            f"{text!r} is not HOST:PORT with a port from 1 to 65535 (e.g. 0.0.0.0:{COMPOSE_PORT})"
        )
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address (e.g. 127.0.0.1, 0.0.0.0 or [::1])") from None
    return host, int(port_text)


class LiveExporter:
    """A record sink (run/pipeline.py). Its SLO statuses come from `tracker`, which the pipeline feeds
    before the exporter (one is made for the scenario when none is given: then feed it yourself)."""

    def __init__(
        self,
        scenario: Scenario,
        confidence: float = DEFAULT_CONFIDENCE,
        tracker: SloTracker | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.confidence = confidence  # the run's: the live status is what the verdict would say now
        # with faults, their windows' times come as the run goes (faults.jsonl in `run_dir`, read each tick)
        faults = None if scenario.faults and run_dir is not None else NO_FAULTS
        self.run_dir = run_dir
        self.tracker = tracker or SloTracker(
            scenario.slos, scenario.load.stages, confidence, scenario.engine, faults=faults
        )
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "scenariokit_requests", "Requests measured, by name and outcome.", ["name", "outcome"], registry=r
        )
        self.latency = LatencyHistograms(
            "scenariokit_request_duration_seconds",
            "Latency of measured requests (from the intended start in open-model runs).",
        )
        r.register(self.latency)
        self.level = Gauge(
            "scenariokit_intended_load", "Intended users (closed) or requests/s (open).", registry=r
        )
        self.slo = Gauge(
            "scenariokit_slo_status",
            "1 pass, 0 fail, -1 inconclusive so far (the bounds do not decide yet).",
            ["slo"],
            registry=r,
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
        self._next_slo = 0.0

    def start(self, host: str = DEFAULT_LISTEN[0], port: int = DEFAULT_LISTEN[1]) -> str:
        """Serves /metrics on host:port (0: a free one); returns the URL this machine scrapes it at."""
        self.server, _thread = start_http_server(port, addr=host, registry=self.registry)
        local = "127.0.0.1" if host in ANY_ADDRESS else f"[{host}]" if ":" in host else host
        self.url = f"http://{local}:{self.server.server_port}/metrics"
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def add(self, records: list[RequestRecord]) -> None:
        # counted per label set, a poll at a time: this runs for every request
        outcomes = Tally((r.name, "ok" if r.ok else (r.error_kind or "error")) for r in records)
        for (name, outcome), count in outcomes.items():
            self.requests.labels(name, outcome).inc(count)
        self.latency.add((r.name, r.corrected_latency) for r in records)

    def close(self) -> None:
        """Nothing to flush (the HTTP endpoint is `stop`ped by the run, after the summary's inputs)."""

    def tick(self, origin_unix: float | None) -> None:
        """Refresh the load level and, every few seconds, every SLO's status over the records so far."""
        now = time.time()
        if origin_unix is not None:
            self.level.set(level_at(self.scenario.load.stages, now - origin_unix))
        if now < self._next_slo or self.tracker.origin_unix is None or not self.scenario.slos:
            return
        if self.scenario.faults and self.run_dir is not None:
            spans, until = live_timeline(self.run_dir, self.scenario.faults, self.tracker.origin_unix, now)
            self.tracker.known_faults(spans, until)
        for verdict in self.tracker.verdicts(now):
            self.slo.labels(verdict.slo).set(SLO_STATUS.get(verdict.status, -1.0))
        self._next_slo = now + SLO_EVERY_S


class LatencyHistograms(Collector):
    """A Prometheus histogram per request name (`name` label) fed a poll's records at a time. The
    client's Histogram takes a lock and walks its buckets in Python for each value; the runner shares
    the cores with the engine, so at thousands of requests a second that cost the engine requests."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(sorted(buckets))
        self.counts: dict[str, list[int]] = {}  # per name: one count per bound, then one past the last
        self.sums: dict[str, float] = {}
        self.lock = threading.Lock()  # collect() runs in the exporter's HTTP thread

    def add(self, observations: Iterable[tuple[str, float]]) -> None:
        bounds, width = self.bounds, len(self.bounds) + 1
        with self.lock:
            for name, value in observations:
                counts = self.counts.get(name)
                if counts is None:
                    counts = self.counts[name] = [0] * width
                    self.sums[name] = 0.0
                counts[bisect_left(bounds, value)] += 1  # the first bound >= value: Prometheus' `le`
                self.sums[name] += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["name"])
        with self.lock:
            snapshot = [(name, list(counts), self.sums[name]) for name, counts in sorted(self.counts.items())]
        for name, counts, total in snapshot:
            cumulative = list(accumulate(counts))
            les = [floatToGoString(bound) for bound in self.bounds] + ["+Inf"]
            family.add_metric([name], list(zip(les, cumulative, strict=True)), total)
        yield family
