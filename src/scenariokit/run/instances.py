"""`monitoring.instances`: the ready target instances, sampled on the records' clock while the run goes.

Each tick writes one JSON line to `monitor/instances.jsonl`: `{"t": unix seconds, "ready": n}`, or
`{"t": ..., "ready": null, "error": "..."}` when the count could not be read (Prometheus down, a query
error, a query with several series). `monitor/instances.json` records where the count came from and what
time-to-scale reads (results/autoscaling.py), so `scenariokit report` rebuilds it from the folder.

- `query`: an instant query (`GET /api/v1/query`) to the Prometheus the scenario names, or the one the
  run starts. The query travels as a URL-encoded parameter, as written. An empty vector is 0: PromQL's
  `count(up{job="vllm"} == 1)` has no sample when no instance is up.
- `from: targets`: the `monitoring.targets` of the role, each scraped once per tick (run/monitor.py's
  `scrape`, the same outcome vocabulary); those whose scrape is `ok` are counted.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from scenariokit.compile.ir import Instances, MonitorTarget
from scenariokit.run.monitor import ROLE_PREFIXES, scrape

QUERY_TIMEOUT_S = 2.0
# the run's own Prometheus: the longest wait for its first scrape of every target. Its scrape manager applies
# newly discovered targets on a 5 s ticker (Prometheus 2.x scrape/manager.go), so a target can wait ~5 s
# after /-/ready for its first scrape; seen here: 5.0 s passed with three of four targets never scraped
FIRST_SCRAPES_S = 12.0
MAX_ERROR_CHARS = 300  # Prometheus's error text, kept short in every sample


class InstancesUnavailable(RuntimeError):
    """A query with no Prometheus to send it to (found before any load is sent)."""


def prometheus_for(spec: Instances, run_prometheus: str | None) -> str | None:
    """The Prometheus a query goes to: the scenario's, else the run's own; None for `from: targets`."""
    if spec.source != "query":
        return None
    url = spec.prometheus_url or run_prometheus
    if url is None:
        raise InstancesUnavailable(
            "`monitoring.instances.query` needs a Prometheus: name one with `prometheus:`, or run with "
            "--monitor prometheus (or `monitoring.prometheus: true`)"
        )
    return url


def query_value(client: httpx.Client, prometheus: str, query: str) -> tuple[int | None, str | None]:
    """(ready, None) or (None, why): one instant query's single value, as a count of instances."""
    try:
        response = client.get(f"{prometheus}/api/v1/query", params={"query": query})
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return None, f"Prometheus did not answer: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    if not isinstance(body, dict) or body.get("status") != "success":
        why = body.get("error", response.text) if isinstance(body, dict) else response.text
        return None, f"Prometheus refused the query ({response.status_code}): {why}"[:MAX_ERROR_CHARS]
    try:
        return _count_of(body.get("data", {}))
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):  # not the API's shape
        return None, f"Prometheus's answer is not an instant query's: {response.text}"[:MAX_ERROR_CHARS]


def _count_of(data: Any) -> tuple[int | None, str | None]:
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        value = result[1]
    elif kind == "vector" and isinstance(result, list):
        if not result:
            return 0, None  # count() of nothing: no instance matched
        if len(result) > 1:
            return None, f"the query returned {len(result)} series; wrap it in count() or sum()"
        value = result[0]["value"][1]
    else:
        return None, f"the query returned a {kind}, not one number"
    number = float(value)
    if not math.isfinite(number) or number < 0:
        return None, f"the query's value {value} is not a count"
    return round(number), None


def first_scrapes(client: httpx.Client, prometheus: str, timeout_s: float) -> bool:
    """Waits until Prometheus has scraped each of its targets once (none is `unknown`): a Prometheus just
    started has no `up` series yet, and its count would read 0 instances for the run's first second."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            active = client.get(f"{prometheus}/api/v1/targets").json()["data"]["activeTargets"]
            if active and all(t.get("health") != "unknown" for t in active):
                return True
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.1)
    return False


class InstanceSampler:
    """A daemon thread sampling the ready instances every `interval_s` until stopped (a context manager
    around the engine run, inside the Prometheus it may query)."""

    def __init__(
        self,
        run_dir: Path,
        spec: Instances,
        prometheus: str | None,
        targets: tuple[MonitorTarget, ...],
        interval_s: float,
        own_prometheus: bool = False,
    ) -> None:
        self.dir = run_dir / "monitor"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.prometheus = prometheus
        self.targets = tuple(t for t in targets if t.role == spec.role) if spec.source == "targets" else ()
        self.interval_s = interval_s
        self.own_prometheus = own_prometheus
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scenariokit-instances", daemon=True)
        # certificate checks only where there is TLS, as the monitor does (docs/performance.md)
        urls = [prometheus or "", *(t.url for t in self.targets)]
        self._client = httpx.Client(
            timeout=QUERY_TIMEOUT_S, verify=any(u.startswith("https://") for u in urls)
        )
        described = {k: v for k, v in asdict(spec).items() if k != "span"}
        described |= {"prometheus_url": prometheus, "counted": [t.name for t in self.targets]}
        (self.dir / "instances.json").write_text(json.dumps(described, indent=1) + "\n")

    def __enter__(self) -> InstanceSampler:
        if self.own_prometheus and self.prometheus is not None:
            deadline = time.monotonic() + FIRST_SCRAPES_S
            first_scrapes(self._client, self.prometheus, FIRST_SCRAPES_S)
            if self.spec.query is not None:
                self._first_count(self.prometheus, self.spec.query, deadline)
        self.sample(time.time())  # the count before the first tick: the load starts against it
        self._thread.start()
        return self

    def _first_count(self, prometheus: str, query: str, deadline: float) -> None:
        """Waits (to the same deadline) for the query to count an instance: the run's own Prometheus loads
        its file-listed targets a moment after it starts, so its first scrape of every target it knows can
        come before it knows the instances at all (the count then read 0 for the run's first second). A
        fleet with no instance ready at the start waits the whole deadline, once."""
        while time.monotonic() < deadline:
            ready, _ = query_value(self._client, prometheus, query)
            if ready:
                return
            time.sleep(0.1)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=QUERY_TIMEOUT_S * max(1, len(self.targets)) + 1)
        self._client.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample(time.time())

    def sample(self, now: float) -> None:
        if self.prometheus is not None and self.spec.query is not None:
            ready, error = query_value(self._client, self.prometheus, self.spec.query)
        else:
            kept = ROLE_PREFIXES[self.spec.role or "process"]
            ready = sum(scrape(self._client, t.url, kept)["scrape"] == "ok" for t in self.targets)
            error = None
        line = {"t": now, "ready": ready} | ({"error": error} if error else {})
        with (self.dir / "instances.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, separators=(",", ":")) + "\n")
