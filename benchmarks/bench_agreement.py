"""Benchmark: how close Locust and k6 come to what the server did (the "within 5%" claim, measured).

    python benchmarks/bench_agreement.py [--seconds 6] [--users 8] [--delay-ms 100] [--repeats 3]

The measurement of tests/test_agreement.py, as a figure rather than a pass/fail: a loopback server
(tests/support/loopback.py) answers every request after a fixed `--delay-ms` and keeps, per request, the
time its handler spent (request parsed -> response written). Each engine runs the same scenario through
`scenariokit run` (closed model, `--users` users, no think time, a 3:1 mix of two GETs, `--seconds` of
hold); the steady part (all but the last second, where Locust's own shutdown delays the requests in
flight) is compared. Per engine, the median over `--repeats` of:

- the engine's p50 and p99 (its summary, from scenariokit's own records) and the server's p50 and p99 of
  the same requests (those it started in the same window);
- the engine's error against the server, engine / server - 1, and against the nominal delay: the "within
  5%" figure. The target is |error| <= 5% against the server; the nominal figure is shown beside it
  because a loaded machine also slows the server's own sleep.

Engines alternate within each repeat (their order rotates). Only 127.0.0.1 is ever sent to, and every run
is bounded by `--seconds` plus start-up.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

# the loopback server with per-request times lives with the tests; benchmarks run as scripts
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scenariokit.cli import main as scenariokit_main
from scenariokit.results.store import load_records
from tests.support.loopback import LoopbackServer

ENGINES = ("locust", "k6")
QUANTILES = (0.5, 0.99)
TARGET = 0.05
SCENARIO = """\
version: 1
name: bench-agreement
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "hold({users}, {seconds}s)", think_time: none}}
requests:
  a: {{weight: 3, path: /a}}
  b: {{weight: 1, path: /b}}
slo: ["p50(latency) < 10s during 0s..{steady}s", "p99(latency) < 10s during 0s..{steady}s"]
"""


def nearest_rank(values: list[float], q: float) -> float:
    return float(np.quantile(values, q, method="inverted_cdf"))


def trial(
    engine: str, server: LoopbackServer, scenario: Path, out: Path, steady_s: float
) -> dict[str, float]:
    """One run: the engine's p50/p99 (summary) and the server's over the same window, in seconds."""
    before = len(server.served())
    with contextlib.redirect_stderr(io.StringIO()) as said:  # its verdict lines, between the table's
        code = scenariokit_main(["run", str(scenario), "--engine", engine, "--out", str(out), "--quiet"])
    if code != 0:
        raise SystemExit(f"{engine}: scenariokit run exited {code}\n{said.getvalue()}")
    start = json.loads((out / "run.json").read_text())["engine_started_unix"]
    verdicts = json.loads((out / "summary.json").read_text())["verdicts"]
    served = [s.service_s for s in server.served(before) if 0 <= s.started_unix - start < steady_s]
    requests = sum(1 for r in load_records(out) if 0 <= r.t - start < steady_s)
    figures = {"requests": float(requests)}
    for q, verdict in zip(QUANTILES, verdicts, strict=True):
        figures[f"engine p{q * 100:g}"] = verdict["value"]
        figures[f"server p{q * 100:g}"] = nearest_rank(served, q)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6, help="length of each run's hold (default 6)")
    parser.add_argument("--users", type=int, default=8, help="concurrent users / VUs (default 8)")
    parser.add_argument("--delay-ms", type=float, default=100.0, help="the server's delay (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per engine (median; default 3)")
    args = parser.parse_args()
    if args.seconds < 2:
        parser.error("--seconds must be at least 2 (the last second is left out)")
    steady_s = args.seconds - 1
    delay_s = args.delay_ms / 1000
    results: dict[str, list[dict[str, float]]] = {e: [] for e in ENGINES}
    with (
        tempfile.TemporaryDirectory(prefix="bench-agreement-") as name,
        LoopbackServer(delay_s=delay_s) as server,
    ):
        tmp = Path(name)
        scenario = tmp / "agree.yaml"
        scenario.write_text(
            SCENARIO.format(url=server.url, users=args.users, seconds=args.seconds, steady=steady_s)
        )
        print(
            f"server: loopback at {server.url}, {args.delay_ms:g} ms delay; {args.users} users, no think time"
        )
        print(f"host: {os.cpu_count()} CPUs; {args.repeats} repeats of {args.seconds}s, engines interleaved")
        for repeat in range(args.repeats):
            order = ENGINES[repeat % 2 :] + ENGINES[: repeat % 2]
            for engine in order:
                figures = trial(engine, server, scenario, tmp / f"{engine}-{repeat}", steady_s)
                results[engine].append(figures)
                shown = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in figures.items() if k != "requests")
                print(f"  {engine:6} #{repeat + 1}: {figures['requests']:.0f} requests; {shown}")
    print()
    header = ("engine", "quantile", "engine ms", "server ms", "vs server", "vs nominal")
    print("{:8} {:>8} {:>10} {:>10} {:>10} {:>11}  target".format(*header))
    for engine in ENGINES:
        for q in QUANTILES:
            label = f"p{q * 100:g}"
            measured = statistics.median(f[f"engine {label}"] for f in results[engine])
            served = statistics.median(f[f"server {label}"] for f in results[engine])
            paired = statistics.median(
                f[f"engine {label}"] / f[f"server {label}"] - 1 for f in results[engine]
            )
            nominal = measured / delay_s - 1
            verdict = "met" if abs(paired) <= TARGET else "MISSED"
            print(
                f"{engine:8} {label:>8} {measured * 1e3:>10.2f} {served * 1e3:>10.2f} {paired:>+10.2%} "
                f"{nominal:>+11.2%}  {verdict}"
            )
    for q in QUANTILES:
        label = f"p{q * 100:g}"
        ratio = statistics.median(
            loc[f"engine {label}"] / k6[f"engine {label}"]
            for loc, k6 in zip(results["locust"], results["k6"], strict=True)
        )
        print(f"locust / k6 {label}: {ratio:.3f} (median of the repeats' ratios)")
    print(
        f"\nengine / server ms: medians of {args.repeats} runs, over the steady {steady_s}s of each."
        "\nvs server: the median of each run's engine quantile over the server's quantile of the same run,"
        f"\nminus 1 (what the engine adds); vs nominal: against {args.delay_ms:g} ms. Target |vs server| <= "
        f"{TARGET:.0%}."
    )


if __name__ == "__main__":
    main()
