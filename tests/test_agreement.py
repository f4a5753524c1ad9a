"""Locust and k6 agree, and both measure what the server did: against a loopback server with a fixed 100 ms
delay, each engine's p50 and p99 are judged against the same quantiles of the time the server spent on
those requests (its own clock, per request), with order-statistic confidence bounds for the sample sizes.

- never below: a client's latency contains the server's time, so the engine's quantile must be at least
  the lower confidence bound of the server's;
- not far above: the lower bound of the engine's quantile must be within TRANSPORT_S of the upper bound of
  the server's. TRANSPORT_S is what a request costs beyond the server's handler on loopback (the round
  trip and both ends' HTTP code), with room for a busy core, not a share of the nominal delay;
- the engines agree: their excesses over their own server quantiles overlap within TRANSPORT_S.

How close to 100 ms each engine comes is a performance figure, measured by benchmarks/bench_agreement.py.
The comparison covers the steady part (the first 5 s of 6): requests still in flight when Locust's shape
ends the test wait ~25 ms behind Locust's own shutdown work on the same event loop, a generator artifact
documented in docs/results-format.md.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.results.store import load_records
from tests.support.loopback import TRANSPORT_S, LoopbackServer, quantile_bounds
from tests.test_engines import assert_weights

pytestmark = [pytest.mark.engine, pytest.mark.solo]
DELAY_S = 0.1
STEADY_S = 5.0
CONFIDENCE = 0.999  # per bound; a dozen bounds are checked, so a false failure from sampling is < 1.2%
SCENARIO = """\
version: 1
name: agree
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "hold(8, 6s)", think_time: none}}
requests:
  a: {{weight: 3, path: /a}}
  b: {{weight: 1, path: /b}}
slo: ["p50(latency) < 1s during 0s..5s", "p95(latency) < 1s during 0s..5s"]
"""
# The SLOs only have each engine's run judged over a window; the agreement is checked on the records. A p95,
# not a p99: a loaded machine gave 2 of 375 Locust samples over 1 s, which bound a p99's share only below
# 1.67% (inconclusive at 95%) but a p95's well below its 5%.


def measure(server: LoopbackServer, scenario: Path, engine: str, out: Path) -> dict[str, object]:
    """One engine's run: its summary, and the client and server latencies of the steady window."""
    before = len(server.served())
    assert main(["run", str(scenario), "--engine", engine, "--out", str(out), "--quiet"]) == 0
    start = json.loads((out / "run.json").read_text())["engine_started_unix"]
    client = [r.latency for r in load_records(out) if 0 <= r.t - start < STEADY_S]
    # the server's clock is the engine's (one machine), so the same window selects the same requests
    served = [s.service_s for s in server.served(before) if 0 <= s.started_unix - start < STEADY_S]
    summary = json.loads((out / "summary.json").read_text())
    return {"summary": summary, "client": client, "server": served}


def test_locust_and_k6_agree_on_a_fixed_delay(tmp_path: Path) -> None:
    runs = {}
    with LoopbackServer(delay_s=DELAY_S) as server:
        path = tmp_path / "agree.yaml"
        path.write_text(SCENARIO.format(url=server.url))
        for engine in ("locust", "k6"):
            runs[engine] = measure(server, path, engine, tmp_path / engine)

    excess: dict[tuple[str, float], tuple[float, float]] = {}
    for engine, run in runs.items():
        summary, client, served = run["summary"], run["client"], run["server"]
        assert isinstance(summary, dict) and isinstance(client, list) and isinstance(served, list)
        assert len(client) >= 100 and len(served) >= 100, (engine, len(client), len(served))
        by_request = Counter({n: row["requests"] for n, row in summary["by_request"].items()})
        assert_weights(by_request, {"a": 3, "b": 1})
        reported = dict(zip((0.5, 0.99), (v["value"] for v in summary["verdicts"]), strict=True))
        for q, value in reported.items():
            c_lo, c_hi = quantile_bounds(client, q, CONFIDENCE)
            s_lo, s_hi = quantile_bounds(served, q, CONFIDENCE)
            shown = (
                f"{engine} p{q * 100:g}: {value * 1e3:.2f} ms, server [{s_lo * 1e3:.2f}, {s_hi * 1e3:.2f}]"
            )
            assert value >= s_lo, f"below the server's own time: {shown}"
            assert c_lo - s_hi <= TRANSPORT_S, f"more than transport above the server: {shown}"
            excess[engine, q] = (c_lo - s_hi, c_hi - s_lo)

    for q in (0.5, 0.99):
        (l_lo, l_hi), (k_lo, k_hi) = excess["locust", q], excess["k6", q]
        gap = max(l_lo, k_lo) - min(l_hi, k_hi)  # > 0 only when the two intervals are apart
        assert gap <= TRANSPORT_S, (q, excess["locust", q], excess["k6", q])
