"""Network faults end to end (issue 18's must-show): `scenariokit run` with a `faults:` section puts the
runner's FaultProxy between a real engine (Locust and k6) and a fast loopback target, and the records show
each fault in its window and nowhere else.

One run per engine, 10 s of load, two windows: `slow` (200 ms added once per response, 2 s to 4.5 s) and
`flaky` (30% of requests reset, 6 s to 8.5 s). The requests are POSTs: a client may silently retry an
idempotent request whose kept-alive connection broke (Go's net/http does for a GET), which would hide a
reset; a POST is never retried, so every request reaches the proxy once and the share is the proxy's draw.
The reset share counts requests, not connections: after a reset the engine opens a new connection, and a
kept-alive connection carries many requests. Shares are judged with exact binomial tests.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from scipy.stats import binomtest

from scenariokit.cli import main
from scenariokit.engines.records import RequestRecord
from scenariokit.results.faults import FaultEvent, read_fault_events
from scenariokit.results.runfolder import RunFolder
from tests.support.loopback import LoopbackServer

pytestmark = pytest.mark.engine

DELAY_S, SHARE = 0.2, 0.3
SCENARIO = """\
version: 1
name: chaos-network-test
target: {{kind: http, base_url: "{url}", timeout: 5s}}
load: {{curve: "ramp(0, 4, 1s) -> hold(9s)", think_time: constant(50ms)}}
requests:
  post: {{method: POST, path: /api/echo, json: {{n: 1}}}}
faults:
  - {{name: slow, kind: latency, at: 2s, duration: 2.5s, delay: {delay_ms:g}ms}}
  - {{name: flaky, kind: reset, at: 6s, duration: 2.5s, share: {share_pct:g}%}}
slo:
  - error_rate < 100%
"""
# What each engine records for a reset before any response byte: k6 (Go) says "read: connection reset by
# peer", kind connection_reset, code 1220. Locust's FastHttpUser client (geventhttpclient) raises
# HTTPConnectionClosed("connection closed."), as for a plain FIN, with the ConnectionResetError as the
# exception's __context__: the runtime reads the chain, so the kind is connection_reset and the code the
# raised class.
RESET = {"k6": {("connection_reset", "1220")}, "locust": {("connection_reset", "HTTPConnectionClosed")}}
EDGE_S = 0.3  # records this close to a window's edge may have met either side of it
ALPHA = 0.001


@dataclass(frozen=True)
class NetworkRun:
    engine: str
    code: int
    records: list[RequestRecord]
    events: dict[str, FaultEvent]
    proxy: dict[str, int]
    served: int  # requests the target answered: a count that does not come from the engine


@pytest.fixture(scope="module", params=["locust", "k6"])
def network_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NetworkRun]:
    root = tmp_path_factory.mktemp(f"chaos-network-{request.param}")
    with LoopbackServer() as server:
        path = root / "chaos.yaml"
        path.write_text(SCENARIO.format(url=server.url, delay_ms=DELAY_S * 1000, share_pct=SHARE * 100))
        folder = root / "run"
        code = main(["run", str(path), "--engine", request.param, "--out", str(folder), "--quiet"])
        served = server.count("/api/echo", "POST")  # the monitor also scrapes the target (/metrics)
    records = sorted(RunFolder(folder).all_records(), key=lambda r: r.t)
    events = {event.name: event for event in read_fault_events(folder)}
    proxy = json.loads((folder / "faults" / "proxy.json").read_text())["counts"]
    yield NetworkRun(request.param, code, records, events, proxy, served)


def inside(records: list[RequestRecord], start: float, end: float) -> list[RequestRecord]:
    return [r for r in records if start + EDGE_S <= r.t <= end - EDGE_S]


def p50_ms(records: list[RequestRecord]) -> float:
    return 1000 * statistics.median(r.latency for r in records)


@pytest.mark.solo  # compares latencies to 20 ms
def test_latency_raises_the_p50_by_the_delay_in_its_window_only(network_run: NetworkRun) -> None:
    slow = network_run.events["slow"]
    assert slow.applied and not slow.cut_short
    before = inside(network_run.records, slow.start - 2.0, slow.start)
    during = inside(network_run.records, slow.start, slow.end)
    after = inside(network_run.records, slow.end, network_run.events["flaky"].start)
    assert min(len(before), len(during), len(after)) >= 20, (len(before), len(during), len(after))
    rise = p50_ms(during) - p50_ms(before)
    assert DELAY_S * 1000 * 0.9 <= rise <= DELAY_S * 1000 * 1.1, (p50_ms(before), p50_ms(during))
    assert abs(p50_ms(after) - p50_ms(before)) <= DELAY_S * 1000 * 0.1, (p50_ms(before), p50_ms(after))


def test_resets_are_that_share_of_requests_in_the_window_and_none_outside(network_run: NetworkRun) -> None:
    flaky = network_run.events["flaky"]
    assert flaky.applied and network_run.code != 3
    window = inside(network_run.records, flaky.start, flaky.end)
    failed = [r for r in window if not r.ok]
    assert {(r.error, r.code) for r in failed} <= RESET[network_run.engine]
    assert all(r.status == 0 for r in failed)  # no response: not an HTTP error
    resets = failed
    assert binomtest(len(resets), len(window), SHARE).pvalue > ALPHA, (len(resets), len(window))
    near = [r for r in network_run.records if flaky.start - EDGE_S <= r.t <= flaky.end + EDGE_S]
    outside = [r for r in network_run.records if not r.ok and r not in near]
    assert outside == [], [(r.t - flaky.start, r.error) for r in outside]


def test_every_request_is_a_record_and_no_reset_reached_the_target(network_run: NetworkRun) -> None:
    """The proxy's request count and the target's answers are counts the engine did not make."""
    records, proxy = network_run.records, network_run.proxy
    assert proxy["requests"] == len(records)  # a POST is never retried: one request, one record
    assert network_run.served == proxy["responses"] == sum(1 for r in records if r.ok)
    assert proxy["fault:flaky"] == sum(1 for r in records if not r.ok)


def test_locust_names_a_reset_connection_reset(network_run: NetworkRun) -> None:
    if network_run.engine != "locust":
        pytest.skip("k6 is checked above")
    assert {r.error for r in network_run.records if not r.ok} == {"connection_reset"}
