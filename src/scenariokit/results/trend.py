"""Soak verdicts: the slope of a series over the run's steady part, with an interval that allows for
autocorrelation, judged against a growth-per-hour limit (`p95(latency_trend) < 10%/h`, `memory_growth <
5MB/h`, `error_rate_trend < 0.1%/h`, `throughput_trend > -5%/h`).

- The series: the records in time buckets of `bucket_width(length)` seconds (about 40 buckets, 1 s to 60 s
  each) over the steady part, one value a bucket: the SLO's percentile of latency (nearest rank), the
  error rate, the ok requests per second; memory_growth: the target's resident memory from the monitor's
  scrapes of its /metrics (`monitor/target.jsonl`): the embedded server's workers
  (`scenariokit_worker_resident_memory_bytes`, summed) plus its main process, or any target's
  `process_resident_memory_bytes`, averaged per bucket; when `monitoring.targets` lists `process`-role
  endpoints (monitor/targets.json), their `process_resident_memory_bytes` summed instead (each averaged per
  bucket, then added), and the verdict's rule names the source. Buckets with fewer than MIN_PER_BUCKET
  samples are left out, so are buckets the window cuts.
- The steady part: the SLO's `during` window; without one, the run without its first stage (the warm-up:
  a ramp from 0, models loading, caches filling) and without a last stage that ramps down to 0.
- The fit: ordinary least squares of value on time. Successive buckets are correlated (a slow minute is
  followed by a slow minute), which makes the textbook OLS interval too narrow; the slope's standard error
  is sqrt(omega / Sxx), omega the residuals' long-run variance by equal-weighted cosines (EWC: Lazarus,
  Lewis, Stock and Watson 2018, "HAR inference: recommendations for practice") with nu = 0.4 n^(2/3)
  cosines, each made orthogonal to the fitted line; the bounds use Student's t on nu degrees of freedom,
  one-sided at the run's confidence each (as every other SLO bound). Flat AR(1) series, 1,000 a case
  (benchmarks/bench_trend.py): called rising in 5.3% (white noise), 5.4% (phi 0.5), 7.9% (phi 0.8) at
  40 buckets, 4.2% at 1,440 buckets (phi 0.5). Strong autocorrelation in few buckets costs a few points of
  false alarms; more buckets, or a longer run, bring it back to the nominal 5%.
- The value: the slope per hour; for latency_trend and throughput_trend relative to the fitted level at
  the steady part's start (`+10%/h`: the p95 grows by a tenth of its starting value each hour), its
  bounds the slope's bounds over that level (the level's own uncertainty is not carried).
- The verdict: pass when the interval's worst end holds the limit, fail when its best end breaks it,
  inconclusive otherwise (`slo.decide`). Whatever the limit, the explanation says "rising" or "falling"
  only when the interval excludes 0.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field
from scipy import stats

from scenariokit.compile.ir import TREND_METRICS, Slo, Stage, Window
from scenariokit.engines.records import RequestRecord
from scenariokit.results.confidence import share_bounds
from scenariokit.results.metrics import TIME_METRIC_VALUES, window_intervals
from scenariokit.results.slo import Verdict, decide, level, show, unit_of

MIN_BUCKETS = 8  # fewer points cannot tell a slope from the noise of a few buckets
TARGET_BUCKETS = 40
MIN_PER_BUCKET = 5  # requests a bucket needs for its percentile or rate to mean anything
RELATIVE = frozenset({"latency_trend", "throughput_trend"})
WORKER_RSS = "scenariokit_worker_resident_memory_bytes"
PROCESS_RSS = "process_resident_memory_bytes"


def bucket_width(length_s: float) -> float:
    """About TARGET_BUCKETS buckets, whole seconds from 1 s to a minute (a day: 1,440 one-minute buckets)."""
    return float(min(60, max(1, round(length_s / TARGET_BUCKETS))))


@dataclass(frozen=True)
class Fit:
    slope: float  # per hour, in the series' unit
    level: float  # the fitted value at the series' first point
    low: float  # the slope's one-sided bounds at the confidence, per hour
    high: float
    n: int  # points (buckets)
    dof: int  # nu: the long-run variance's degrees of freedom


def fit_trend(t_s: np.ndarray, y: np.ndarray, c: float, noise_floor: float = 0.0) -> Fit | None:
    """OLS slope of y on t (seconds) per hour, with an EWC autocorrelation-robust t interval; None when
    there are too few points or no spread in time. `noise_floor`: the least variance a point has, whatever
    the residuals show (an error rate of 0 in every bucket is no proof of a flat 0)."""
    n = len(y)
    if n < MIN_BUCKETS:
        return None
    x = (np.asarray(t_s, float) - t_s[0]) / 3600.0
    xc = x - x.mean()
    sxx = float(xc @ xc)
    if sxx <= 0:
        return None
    slope = float(xc @ y) / sxx
    intercept = float(y.mean()) - slope * float(x.mean())
    residuals = y - intercept - slope * x
    nu = max(2, int(0.4 * n ** (2 / 3)))
    # the lowest cosines, made orthogonal to the fitted constant and line (the residuals have none of
    # either, so a raw first cosine, nearly a line, would see too little of the slow noise) and unit length
    cosines = np.cos(np.pi * np.arange(1, nu + 1)[:, None] * (np.arange(n) + 0.5)[None, :] / n)
    basis, _ = np.linalg.qr(np.column_stack([np.ones(n), xc]))
    cosines -= (cosines @ basis) @ basis.T
    cosines /= np.linalg.norm(cosines, axis=1)[:, None]
    lam = cosines @ residuals
    omega = max(float(lam @ lam) / nu, noise_floor)  # the residuals' long-run variance (2 pi f(0))
    se = math.sqrt(omega / sxx)
    q = float(stats.t.ppf(c, nu))
    return Fit(slope, intercept, slope - q * se, slope + q * se, n, nu)


# --- the steady part and the series ------------------------------------------------------------------


def steady_part(window: Window | None, stages: tuple[Stage, ...], length_s: float) -> tuple[float, float]:
    """[start, end) offsets the trend is fitted over: the warm-up and ramp-down left out (module doc)."""
    if window is not None:
        intervals = window_intervals(window, stages, length_s)
        start, end = min(a for a, _ in intervals), max(b for _, b in intervals)
        return start, min(end, length_s)
    starts = np.cumsum([0.0] + [s.duration_s for s in stages])
    first, last = 0, len(stages)
    if len(stages) > 1:
        first = 1  # the warm-up
    if len(stages) > 2 and stages[-1].kind == "ramp" and stages[-1].end == 0:
        last = len(stages) - 1  # the ramp down
    start = float(starts[first]) if stages else 0.0
    end = float(starts[last]) if stages else length_s
    return start, min(end, length_s)


def bucket_value(metric: str, statistic: str | None, values: list[float], oks: int, width: float) -> float:
    if metric == "error_rate_trend":
        return 1 - oks / len(values)
    if metric == "throughput_trend":
        return oks / width
    arr = np.sort(np.asarray(values, float))
    if statistic in ("mean", None):
        return float(arr.mean())
    if statistic == "min":
        return float(arr[0])
    if statistic == "max":
        return float(arr[-1])
    p = 50.0 if statistic == "median" else float(statistic[1:])
    return float(arr[max(1, math.ceil(p / 100 * len(arr) - 1e-9)) - 1])  # nearest rank, as metrics.py


OPEN_S = 120.0  # records arrive as they complete: a bucket stays open this long after a later start


def request_series(
    slo: Slo, records: Iterable[RequestRecord], origin: float, part: tuple[float, float], width: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bucket mid offsets, one value a bucket, requests a bucket) of the SLO's requests in `part`, in one
    pass. Records come in the order they completed, nearly by start: a bucket is closed (reduced to its
    value) once a record starts OPEN_S after its end, so memory holds about OPEN_S of latencies, not the
    run's. A record later than that for a closed bucket is left out (a request slower than OPEN_S)."""
    start, end = part
    whole = int((end - start) // width)  # buckets the window does not cut
    open_buckets: dict[int, list[float]] = {}
    oks: dict[int, int] = defaultdict(int)
    points: list[tuple[float, float, int]] = []
    closed_below = 0
    read = TIME_METRIC_VALUES["latency"]

    def close(i: int) -> None:
        values, ok = open_buckets.pop(i), oks.pop(i, 0)
        if i < whole and len(values) >= MIN_PER_BUCKET:
            value = bucket_value(slo.metric, slo.statistic, values, ok, width)
            points.append((start + (i + 0.5) * width, value, len(values)))

    for r in records:
        offset = r.t - origin
        if not start <= offset < end or (slo.requests and r.name not in slo.requests):
            continue
        i = int((offset - start) // width)
        if i < closed_below:
            continue
        values = open_buckets.setdefault(i, [])
        if slo.metric == "latency_trend":
            values.extend(read(r))
        else:
            values.append(0.0)  # rates need the count only
        oks[i] += r.ok
        limit = int((offset - start - OPEN_S) // width)
        if limit > closed_below:
            for j in sorted(b for b in open_buckets if b < limit):
                close(j)
            closed_below = limit
    for j in sorted(open_buckets):
        close(j)
    points.sort()
    return (*_arrays([(t, y) for t, y, _ in points]), np.array([n for *_, n in points], float))


def target_rss(metrics: dict[str, float]) -> float | None:
    """The target's resident memory in one scrape: the embedded server's workers summed plus its main
    process, or the process alone (any Prometheus client's default metric); None without either."""
    workers = [v for k, v in metrics.items() if k.startswith(WORKER_RSS + "{")]
    main = metrics.get(PROCESS_RSS)
    if not workers and main is None:
        return None
    return sum(workers) + (main or 0.0)


def process_targets(run_dir: Path) -> list[str]:
    """The `process`-role endpoints of `monitoring.targets` that the monitor listed in the run folder."""
    listing = run_dir / "monitor" / "targets.json"
    try:
        entries = json.loads(listing.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no listed targets, or a listing cut by a crash
        return []
    return [e["name"] for e in entries if isinstance(e, dict) and e.get("role") == "process"]


def memory_source(run_dir: Path) -> tuple[list[Path], str]:
    """Where the target's RSS comes from: the `process`-role targets' summed
    `process_resident_memory_bytes` when the scenario lists any, else the target's own /metrics; and the
    words the verdict's rule says it with."""
    names = process_targets(run_dir)
    if names:
        paths = [run_dir / "monitor" / "targets" / f"{n}.jsonl" for n in names]
        listed = ", ".join(f"monitor/targets/{n}.jsonl" for n in names)
        return paths, f"{PROCESS_RSS} summed over the process targets ({listed})"
    return [run_dir / "monitor" / "target.jsonl"], "the target's RSS (monitor/target.jsonl)"


def _bucket_sums(
    path: Path,
    origin: float,
    part: tuple[float, float],
    width: float,
    rss_of: Callable[[dict[str, float]], float | None],
) -> dict[int, list[float]]:
    """Sum and count of one scrape file's RSS per bucket, read line by line."""
    start, end = part
    sums: dict[int, list[float]] = defaultdict(lambda: [0.0, 0])
    if not path.exists():
        return sums
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                sample = json.loads(line)
            except ValueError:  # a line cut by a crash
                continue
            offset = float(sample.get("t", 0)) - origin
            rss = rss_of(sample.get("metrics") or {})
            if rss is None or not start <= offset < end:
                continue
            bucket = sums[int((offset - start) // width)]
            bucket[0] += rss
            bucket[1] += 1
    return sums


def memory_series(
    run_dir: Path, origin: float, part: tuple[float, float], width: float
) -> tuple[np.ndarray, np.ndarray]:
    """(bucket mid offsets, mean RSS a bucket): the sum over the sources (memory_source) of each one's mean
    in the bucket; a bucket that misses one source is left out, since the sum would drop by its RSS."""
    paths, _ = memory_source(run_dir)
    listed = bool(process_targets(run_dir))
    rss_of: Callable[[dict[str, float]], float | None] = (
        (lambda metrics: metrics.get(PROCESS_RSS)) if listed else target_rss
    )
    per_source = [_bucket_sums(p, origin, part, width, rss_of) for p in paths]
    start, end = part
    whole = int((end - start) // width)
    common = set.intersection(*(set(s) for s in per_source)) if per_source else set()
    points = [
        (start + (i + 0.5) * width, sum(s[i][0] / s[i][1] for s in per_source))
        for i in sorted(common)
        if i < whole
    ]
    return _arrays(points)


def _arrays(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)


# --- the verdict -----------------------------------------------------------------------------------


def binomial_floor(rates: np.ndarray, sizes: np.ndarray, c: float) -> float:
    """The least variance of a bucket's error rate: p(1 - p) / n at the upper bound p of the run's error
    rate (buckets with no error in a run with none still allow a rate below that bound)."""
    if not len(sizes):
        return 0.0
    errors = round(float(rates @ sizes))
    _, p_high = share_bounds(errors, int(sizes.sum()), c)
    return p_high * (1 - p_high) / float(sizes.mean())


class TrendOut(BaseModel):
    """One soak SLO's series and fitted line, for the report's plot and for readers who refit."""

    slo: str
    metric: str
    bucket_s: float = Field(description="each point's bucket width, seconds")
    start_s: float = Field(description="the steady part fitted: offsets from the engine's start")
    end_s: float
    t: list[float] = Field(description="bucket mid-points, seconds from the engine's start")
    y: list[float] = Field(description="one value a bucket: seconds, a fraction, requests/s or bytes")
    slope_per_h: float | None = Field(None, description="the fitted slope per hour, in y's unit")
    level: float | None = Field(None, description="the fitted value at the first bucket")
    dof: int | None = Field(None, description="the EWC variance's degrees of freedom (Student's t)")
    direction: str | None = Field(None, description="rising or falling when the interval excludes 0")


@dataclass(frozen=True)
class Trend:
    verdict: Verdict
    out: TrendOut


def judge_trend(
    slo: Slo,
    records: Iterable[RequestRecord],
    run_dir: Path,
    origin: float,
    length_s: float,
    stages: tuple[Stage, ...],
    c: float,
) -> Trend:
    part = steady_part(slo.window, stages, length_s)
    width = bucket_width(part[1] - part[0])
    source = ""
    if slo.metric == "memory_growth":
        t, y = memory_series(run_dir, origin, part, width)
        source = memory_source(run_dir)[1]
        floor = 0.0
    else:
        t, y, sizes = request_series(slo, records, origin, part, width)
        floor = binomial_floor(y, sizes, c) if slo.metric == "error_rate_trend" else 0.0
    fit = fit_trend(t, y, c, floor)
    out = TrendOut(
        slo=slo.text, metric=slo.metric, bucket_s=width, start_s=part[0], end_s=part[1], t=list(t), y=list(y)
    )
    relative = slo.metric in RELATIVE
    if fit is None or (relative and fit.level <= 0):
        what = f"an RSS series ({source})" if slo.metric == "memory_growth" else "requests"
        why = (
            f"inconclusive: {len(y)} buckets of {width:g}s with {what} in the steady part "
            f"{part[0]:g}s..{part[1]:g}s; a trend needs {MIN_BUCKETS}"
            if fit is None
            else "inconclusive: the fitted level at the start is 0, so no relative growth"
        )
        return Trend(_verdict(slo, "inconclusive", None, None, None, len(y), why, c, ""), out)
    scale = fit.level if relative else 1.0
    value, low, high = fit.slope / scale, fit.low / scale, fit.high / scale
    out = out.model_copy(update={"slope_per_h": fit.slope, "level": fit.level, "dof": fit.dof})
    direction = "rising" if low > 0 else "falling" if high < 0 else None
    out = out.model_copy(update={"direction": direction})
    status = decide(slo.op, slo.threshold, low, high)
    unit = unit_of(slo.metric)
    trend_words = (
        f"{direction} ({show(low, unit)} to {show(high, unit)})"
        if direction
        else (f"no trend shown: {show(low, unit)} to {show(high, unit)} holds 0")
    )
    explanation = f"{status}: slope {show(value, unit)}, {trend_words} at {level(c)} each side"
    rule = (
        f"OLS slope of {len(y)} buckets of {width:g}s over {part[0]:g}s..{part[1]:g}s, "
        f"{'relative to the level at the start, ' if relative else ''}EWC autocorrelation-robust t bounds "
        f"on {fit.dof} df: pass when the worse bound holds the limit, fail when the better one breaks it"
        + (f"; memory from {source}" if source else "")
    )
    return Trend(_verdict(slo, status, value, low, high, fit.n, explanation, c, rule), out)


def _verdict(
    slo: Slo,
    status: str,
    value: float | None,
    low: float | None,
    high: float | None,
    n: int,
    explanation: str,
    c: float,
    rule: str,
) -> Verdict:
    margin = (
        None if value is None else (slo.threshold - value if slo.op in ("<", "<=") else value - slo.threshold)
    )
    percent = margin / abs(slo.threshold) * 100 if margin is not None and slo.threshold else None
    return Verdict(
        slo.text, slo.metric, status, value, slo.threshold, unit_of(slo.metric), n, margin, percent,  # type: ignore[arg-type]
        explanation, c, rule or "a trend needs enough buckets", None, low, high,
    )  # fmt: skip


def is_trend(slo: Slo) -> bool:
    return slo.metric in TREND_METRICS


__all__ = ["Fit", "Trend", "TrendOut", "fit_trend", "is_trend", "judge_trend"]
