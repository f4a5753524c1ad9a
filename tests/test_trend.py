"""Soak verdicts (results/trend.py): the slope's autocorrelation-robust interval on synthetic series (a
planted slope inside it; flat runs flagged no more often than the stated 5%), the steady part, the RSS
series, and real soaks: a planted leak in the embedded server, latency that grows on a loopback server."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from scenariokit.cli import main
from scenariokit.compile.expr import parse_slo
from scenariokit.compile.ir import Stage
from scenariokit.engines.records import RequestRecord
from scenariokit.results.store import load_records
from scenariokit.results.trend import (
    bucket_width,
    fit_trend,
    judge_trend,
    steady_part,
    target_rss,
)
from tests.support.loopback import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]
C = 0.95
RUNS = 20
# the most flat runs out of 20 a 5% false-positive rate flags with 95% probability: P(X > 3) = 1.6%
ALLOWED_FIRES = int(binom.ppf(0.95, RUNS, 1 - C))


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) noise: a slow bucket is followed by a slow bucket."""
    z = rng.normal(0, sd * math.sqrt(1 - phi**2), n)
    e = np.empty(n)
    e[0] = rng.normal(0, sd)
    for i in range(1, n):
        e[i] = phi * e[i - 1] + z[i]
    return e


def latency_records(
    rng: np.random.Generator, growth_per_h: float, n_buckets: int = 40
) -> list[RequestRecord]:
    """20 requests a 15 s bucket over 10 minutes after a 60 s warm-up; each bucket's latency level is
    50 ms x (1 + growth x hours) x an autocorrelated factor (sd 8%, phi 0.5), each request lognormal
    around it (sd 30%): a p95 per bucket as noisy as a real one."""
    out = []
    factors = 1 + ar1(rng, n_buckets, 0.5, 0.08)
    for i in range(n_buckets):
        for _ in range(20):
            offset = 60 + (i + rng.random()) * 15
            level = 0.050 * (1 + growth_per_h * (offset - 60) / 3600) * factors[i]
            latency = float(level * rng.lognormal(0, 0.3))
            out.append(
                RequestRecord(
                    t=offset, name="a", stage="soak", status=200, ok=True, error=None, latency=latency
                )
            )
    return out


STAGES = (Stage("ramp", "warm", 60, 0, 5), Stage("hold", "soak", 600, 5, 5))


def judge_latency(records: list[RequestRecord], text: str = "p95(latency_trend) < 10%/h") -> object:
    return judge_trend(parse_slo(text), records, Path("/nonexistent"), 0.0, 660.0, STAGES, C)


def write_rss(run_dir: Path, rss: np.ndarray, every_s: float = 1.0, start: float = 0.0) -> None:
    (run_dir / "monitor").mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {
                "t": start + i * every_s,
                "scrape": "ok",
                "metrics": {
                    "process_resident_memory_bytes": 70e6,
                    'scenariokit_worker_resident_memory_bytes{worker="0"}': float(v),
                },
            }
        )
        for i, v in enumerate(rss)
    ]
    (run_dir / "monitor" / "target.jsonl").write_text("\n".join(lines) + "\n")


# --- synthetic series --------------------------------------------------------------------------------


def test_the_binomial_bound_the_flat_runs_are_held_to() -> None:
    assert ALLOWED_FIRES == 3 and binom.sf(ALLOWED_FIRES, RUNS, 1 - C) < 0.05


def test_flat_latency_runs_are_called_decaying_no_more_often_than_the_stated_rate() -> None:
    rng = np.random.default_rng(16)
    fires = sum(judge_latency(latency_records(rng, 0.0)).out.direction == "rising" for _ in range(RUNS))
    assert fires <= ALLOWED_FIRES, f"{fires} of {RUNS} flat runs called decaying"


def test_flat_memory_runs_are_called_leaking_no_more_often_than_the_stated_rate(tmp_path: Path) -> None:
    """600 one-second scrapes of a flat RSS with an allocator's wander: AR(1), phi 0.9, sd 2 MB."""
    rng = np.random.default_rng(61)
    slo = parse_slo("memory_growth < 5MB/h")
    fires = 0
    for run in range(RUNS):
        write_rss(tmp_path / str(run), 600e6 + ar1(rng, 660, 0.9, 2e6))
        trend = judge_trend(slo, [], tmp_path / str(run), 0.0, 660.0, STAGES, C)
        fires += trend.out.direction == "rising"
    assert fires <= ALLOWED_FIRES, f"{fires} of {RUNS} flat runs called leaking"


def test_a_planted_latency_growth_is_flagged_and_inside_the_interval() -> None:
    """+600%/h (the p95 doubles in 10 minutes) over 20 runs: each flagged, and the interval (two one-sided
    95% bounds: 90% coverage) holds the planted slope at least as often as 90% gives with 99% probability."""
    rng = np.random.default_rng(7)
    inside = 0
    for _ in range(RUNS):
        trend = judge_latency(latency_records(rng, 6.0))
        v = trend.verdict
        assert trend.out.direction == "rising" and v.status == "fail", v.explanation
        inside += v.low <= 6.0 <= v.high
    assert inside >= binom.ppf(0.01, RUNS, 0.90), f"the planted +600%/h inside {inside} of {RUNS} intervals"


def test_a_planted_leak_is_flagged_with_the_rate_inside_its_interval(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    planted = 36e6  # bytes per hour: 10 kB a second
    t = np.arange(660.0)
    write_rss(tmp_path, 600e6 + planted * t / 3600 + ar1(rng, 660, 0.9, 2e6))
    trend = judge_trend(parse_slo("memory_growth < 5MB/h"), [], tmp_path, 0.0, 660.0, STAGES, C)
    v = trend.verdict
    assert v.status == "fail" and trend.out.direction == "rising"
    assert v.low <= planted <= v.high, (v.low, v.high)
    assert "+36MB/h" in v.explanation or "MB/h" in v.explanation


def test_no_error_in_any_bucket_is_no_proof_of_a_flat_error_rate() -> None:
    """800 requests, none failed: the per-bucket rates are all 0, but 800 requests only bound the error
    rate below 0.37%, so the slope's interval keeps that much room (a binomial floor on the noise)."""
    records = latency_records(np.random.default_rng(3), 0.0)
    tight = judge_latency(records, "error_rate_trend < 0.01%/h").verdict
    assert tight.status == "inconclusive" and tight.low < 0 < tight.high, tight.explanation
    loose = judge_latency(records, "error_rate_trend < 200%/h").verdict
    assert loose.status == "pass", loose.explanation


def test_too_few_buckets_is_inconclusive_and_says_how_many() -> None:
    rng = np.random.default_rng(1)
    records = [r for r in latency_records(rng, 0.0) if r.t < 60 + 15 * 5]  # 5 buckets of 15 s
    v = judge_latency(records).verdict
    assert v.status == "inconclusive" and "needs 8" in v.explanation


def test_fit_needs_points_and_time() -> None:
    assert fit_trend(np.arange(5.0), np.ones(5), C) is None
    assert fit_trend(np.zeros(10), np.arange(10.0), C) is None
    exact = fit_trend(np.arange(20.0) * 60, 100 + np.arange(20.0), C)  # +1 a minute: +60 an hour
    assert exact is not None and math.isclose(exact.slope, 60.0) and math.isclose(exact.level, 100.0)


@pytest.mark.parametrize(
    ("length_s", "width"), [(30, 1.0), (600, 15.0), (1800, 45.0), (86400, 60.0), (0, 1.0)]
)
def test_bucket_width_adapts_to_the_length(length_s: float, width: float) -> None:
    assert bucket_width(length_s) == width


def test_steady_part_leaves_out_the_warm_up_and_the_ramp_down() -> None:
    stages = (Stage("ramp", "r", 60, 0, 3), Stage("hold", "soak", 600, 3, 3), Stage("ramp", "down", 30, 3, 0))
    assert steady_part(None, stages, 690) == (60.0, 660.0)
    assert steady_part(parse_slo("memory_growth < 1MB/h during soak").window, stages, 690) == (60.0, 660.0)
    assert steady_part(None, stages[:1], 60) == (0.0, 60.0)  # one stage: all of it
    assert steady_part(None, stages, 300) == (60.0, 300.0)  # a run stopped early


def test_target_rss_sums_the_workers_and_the_main_process() -> None:
    assert target_rss({"process_resident_memory_bytes": 1.0}) == 1.0
    both = {
        "process_resident_memory_bytes": 1.0,
        'scenariokit_worker_resident_memory_bytes{worker="0"}': 2.0,
        'scenariokit_worker_resident_memory_bytes{worker="1"}': 4.0,
    }
    assert target_rss(both) == 7.0
    assert target_rss({"scenariokit_requests_total": 3.0}) is None


# --- real soaks -----------------------------------------------------------------------------------------

# 8 s of warm-up (a ramp, then a hold left out by `during soak`): the server's allocator settles first
LEAK_SCENARIO = """\
version: 1
name: leak
target:
  kind: openai-chat
  base_url: embedded
  model: classify
  timeout: 20s
  embedded: {{workers: 1{fault}}}
load:
  curve: ramp(0, 3, 3s) -> hold(5s) as warm -> hold(14s) as soak
  think_time: constant(50ms)
data:
  images: {{source: builtin:text-cards, count: 4}}
requests:
  identify: {{prompt: "Name the main object.", image: "{{images}}", max_tokens: 16}}
slo:
  - memory_growth < 1GB/h during soak
"""
LEAK_BYTES = 100 * 1024  # 1 MiB per 10 requests; whole pages, which is what RSS counts
LEAKED = "scenariokit_worker_leaked_bytes"  # what the server's leak hook holds, per worker, at each scrape


def soak(tmp_path: Path, name: str, fault: str) -> tuple[int, Path, dict]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(LEAK_SCENARIO.format(fault=fault))
    out = tmp_path / name
    code = main(["run", str(path), "--engine", "k6", "--out", str(out), "--quiet"])
    return code, out, json.loads((out / "summary.json").read_text())


def planted_slope(out: Path, summary: dict) -> float:
    """What the leak alone added, as the fit sees it, in bytes per hour: the bytes the server says its
    worker retained (LEAKED), read in the same scrapes as the RSS and put through the same buckets (each
    bucket's mean at its mid-point) and least squares. Why not 100 KiB per request started before each
    mid-point: the RSS is read at the monitor's ticks, once a second over 1 s buckets; the ticks start a
    few hundredths of a second before a bucket's edge and drift later (faster on a busy host), so once
    they cross an edge every later bucket is read about a second earlier than the ones before, and the
    RSS slope is up to 11% below the count's (14 buckets). A busy host read 15.55e9 B/h by the count
    against the RSS bound of 14.62e9. Read at the same instants, the leak and the RSS move together."""
    (trend,) = summary["trends"]
    start, width = trend["start_s"], trend["bucket_s"]
    leaked: dict[int, list[float]] = {}
    for line in (out / "monitor" / "target.jsonl").read_text().splitlines():
        sample = json.loads(line)
        offset = sample["t"] - summary["started_unix"]
        values = [v for k, v in (sample.get("metrics") or {}).items() if k.startswith(LEAKED + "{")]
        if values and start <= offset < trend["end_s"]:
            leaked.setdefault(int((offset - start) // width), []).append(sum(values))
    buckets = [int((mid - start) // width) for mid in trend["t"]]
    assert all(b in leaked for b in buckets), "a bucket with the RSS but without the leaked bytes"
    means = [float(np.mean(leaked[b])) for b in buckets]
    return float(np.polyfit(trend["t"], means, 1)[0]) * 3600


def served_slope(out: Path, summary: dict) -> float:
    """The leak's rate from the other side: 100 KiB per ok request started before each bucket's mid-point,
    fitted over the same mid-points (the load's rate wanders, so this is not quite the mean rate times
    100 KiB), in bytes per hour."""
    (trend,) = summary["trends"]
    starts = np.sort([r.t - summary["started_unix"] for r in load_records(out) if r.ok])
    mids = np.array(trend["t"])
    return float(np.polyfit(mids, LEAK_BYTES * np.searchsorted(starts, mids), 1)[0]) * 3600


def served_tolerance(summary: dict) -> float:
    """How far the leak's slope read at the ticks may be from the requests' count at the mid-points, as a
    share of the rate: a tick lies within its bucket, at most half a bucket from the mid-point, and
    shifting each point's time by d_i moves a least-squares slope by sum(xc_i d_i) / sum(xc_i^2) of the
    rate, at most (width / 2) sum|xc_i| / sum(xc_i^2) (11% over 14 one-second buckets); plus 10% for what
    drifts over the part: a request's latency (its bytes are counted when it answers) and a scrape's
    delay, 1.4 s of drift over 14 s, far more than a busy host adds."""
    (trend,) = summary["trends"]
    xc = np.array(trend["t"]) - np.mean(trend["t"])
    return trend["bucket_s"] / 2 * float(np.abs(xc).sum() / (xc @ xc)) + 0.1


@pytest.mark.engine
def test_a_soak_flags_a_planted_leak_at_its_rate_and_not_without_it(tmp_path: Path) -> None:
    """The same soak without and with leak=100KiB (1 MiB per 10 requests), judged on `memory_growth <
    1GB/h`. Without the leak it passes: a server a few seconds old still grows a little by itself (its
    allocator and caches: -0.7e8 to 3e8 B/h over 14 s here), which the interval may or may not show, but
    nowhere near a leak. With it: a fail, rising, and the leak's own rate (the bytes the server retained,
    read in the same scrapes as the RSS) inside the interval of the difference (the leak run's bounds less
    the clean run's opposite bounds), that rate being 100 KiB a request served."""
    _, _, clean = soak(tmp_path, "clean", "")
    (clean_verdict,) = clean["verdicts"]
    assert clean_verdict["status"] == "pass", clean_verdict["explanation"]
    code, out, leaky = soak(tmp_path, "leak", ', fault: "leak=100KiB"')
    (verdict,) = leaky["verdicts"]
    assert code == 1 and verdict["status"] == "fail" and leaky["trends"][0]["direction"] == "rising"
    planted = planted_slope(out, leaky)
    low, high = verdict["low"] - clean_verdict["high"], verdict["high"] - clean_verdict["low"]
    assert low <= planted <= high, (planted, low, high)
    served = served_slope(out, leaky)
    assert abs(planted - served) <= served_tolerance(leaky) * served, (planted, served)
    assert 'id="plot-trends"' in (out / "report.html").read_text()  # the series and its fitted line


LATENCY_SCENARIO = """\
version: 1
name: decay
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "ramp(0, 4, 2s) -> hold(15s) as soak", think_time: constant(20ms)}}
requests:
  a: {{path: /a}}
slo:
  - p50(latency_trend) < 100%/h
"""


@pytest.mark.engine
@pytest.mark.solo
def test_latency_made_to_grow_is_flagged_with_the_planted_slope_inside(tmp_path: Path) -> None:
    """The loopback server's delay grows by 2 ms a second (from 40 ms). The planted slope is what its
    sleeps achieved (a loaded machine oversleeps), fitted on the requests of the steady part, in seconds
    per hour; the median's bounds in seconds per hour are the relative bounds times the fitted level."""
    path = tmp_path / "decay.yaml"
    with LoopbackServer(delay_s=0.040) as server:
        path.write_text(LATENCY_SCENARIO.format(url=server.url))
        stop = threading.Event()
        started = time.monotonic()

        def grow() -> None:
            while not stop.wait(0.1):
                server.delay_s = 0.040 + 0.002 * (time.monotonic() - started)

        thread = threading.Thread(target=grow, daemon=True)
        thread.start()
        try:
            code = main(["run", str(path), "--engine", "k6", "--out", str(tmp_path / "run"), "--quiet"])
        finally:
            stop.set()
            thread.join()
        served = server.served()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (verdict,) = summary["verdicts"]
    (trend,) = summary["trends"]
    assert code == 1 and verdict["status"] == "fail" and trend["direction"] == "rising"
    steady = [
        s for s in served if trend["start_s"] <= s.started_unix - summary["started_unix"] < trend["end_s"]
    ]
    planted = np.polyfit([s.started_unix for s in steady], [s.slept_s for s in steady], 1)[0] * 3600
    assert 0.9 * 7.2 < planted < 1.1 * 7.2  # 2 ms a second
    low, high = verdict["low"] * trend["level"], verdict["high"] * trend["level"]
    # what the server slept is not all of the latency measured: the client's and the loopback's part (about
    # 1 ms) moves with the machine's load. The interval is for the latency measured, a few hundredths of a
    # second wide here, so the planted slope is held to it give or take 1 ms of such drift over the part
    drift = 0.001 / ((trend["end_s"] - trend["start_s"]) / 3600)
    assert low - drift <= planted <= high + drift, (planted, low, high, drift)
