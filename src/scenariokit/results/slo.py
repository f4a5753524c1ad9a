"""Judge SLOs against a run's records: a verdict per SLO with its value, its confidence bounds and the rule.

A verdict is pass, fail, inconclusive or not_measured (the engine cannot measure the metric, e.g. time to
first token on an engine that reads whole responses). Verdicts are decided on exact one-sided bounds at a
confidence c (../shared/notes/decisions.md, results/confidence.py), never on a point estimate alone:

- a percentile SLO `pP(m) < L` by the share of samples on the wrong side of L (at or over L for `<`, over
  for `<=`, at or under for `>`, under for `>=`), which the SLO allows up to 1 - P/100 (P/100 for `>`
  and `>=`): fail when the share's lower bound (Clopper-Pearson) exceeds that, pass when its upper bound
  is below it, inconclusive otherwise. The point value stays the exact nearest-rank percentile;
- error_rate by the same bounds on errors of requests, success_rate (its mirror) on the ok requests;
  throughput by Garwood's exact Poisson bounds on the ok count over the window's length, goodput likewise
  on the good count (a request is good when it succeeded and its own value met every latency SLO covering
  it: no `for`, or `for` its name, and its start inside the SLO's window); a mean by Student's t;
- min and max by the observed samples, exactly (they say nothing about samples not taken),
  dropped_iterations, a count, exactly; max(throughput), the best mean ok rate over 10 consecutive whole
  seconds inside the window, exactly, as the observed fact it is; and recovery_time(<fault>) per occurrence
  of the fault (results/recovery.py), exactly, the worst occurrence deciding.

The overall verdict (`overall`) is fail when any SLO fails, inconclusive when none fails but some could
not be decided, and pass otherwise; an SLO the engine cannot measure leaves it as it is.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from scenariokit.compile.expr import format_duration
from scenariokit.compile.ir import TIME_METRICS, Slo
from scenariokit.engines import engines_measuring, get_engine
from scenariokit.results.confidence import (
    DEFAULT_CONFIDENCE,
    mean_bounds,
    poisson_bounds,
    quantile_bounds,
    share_bounds,
    smallest_n,
)
from scenariokit.results.metrics import (
    NO_FAULTS,
    TIME_METRIC_VALUES,
    FaultSpans,
    RunData,
    merged,
    sample_stats,
    window_intervals,
)
from scenariokit.results.recovery import SUSTAIN_S, best_sustained, seconds_inside

if TYPE_CHECKING:
    from scenariokit.compile.ir import Stage
    from scenariokit.engines.records import RequestRecord
    from scenariokit.results.recovery import Recovery

Status = Literal["pass", "fail", "inconclusive", "not_measured"]
Decision = Literal["pass", "fail", "inconclusive"]
LEGACY_STATUSES = {"no_data": "inconclusive"}  # run folders written before verdicts had bounds


@dataclass(frozen=True)
class Verdict:
    slo: str
    metric: str
    status: Status
    value: float | None  # the point value: exact nearest-rank percentile, mean, rate, count
    threshold: float
    unit: str
    samples: int  # n
    margin: float | None  # positive: room left; negative: by how much it is missed
    margin_percent: float | None
    explanation: str
    confidence: float = DEFAULT_CONFIDENCE
    rule: str = ""  # how this SLO is decided, one sentence
    k: int | None = None  # the count the bounds are on: samples beyond the limit, errors, ok requests
    low: float | None = None  # the bounded quantity's lower bound, in `unit` (each one-sided at confidence)
    high: float | None = None
    # percentile SLOs: the share of samples beyond the limit (what decides), its bounds and what is allowed
    share: float | None = None
    share_low: float | None = None
    share_high: float | None = None
    allowed_share: float | None = None


@dataclass(frozen=True)
class Judgement:
    """What one rule decided: the status, its bounds and the words for it."""

    status: Decision
    explanation: str
    rule: str
    k: int | None = None
    low: float | None = None
    high: float | None = None
    share: float | None = None
    share_low: float | None = None
    share_high: float | None = None
    allowed_share: float | None = None


def unit_of(metric: str) -> str:
    return {
        "error_rate": "ratio",
        "success_rate": "ratio",
        "throughput": "1/s",
        "goodput": "1/s",
        "dropped_iterations": "count",
        "latency_trend": "ratio/h",  # soak trends (results/trend.py): relative growth per hour
        "throughput_trend": "ratio/h",
        "error_rate_trend": "ratio/h",  # error-rate points per hour
        "memory_growth": "B/h",
    }.get(metric, "s")


def show(value: float, unit: str) -> str:
    if unit == "s":
        return format_duration(value) if value >= 0.001 else f"{value * 1e6:.0f}us"
    if unit == "ratio":
        return f"{value:.3%}"
    if unit == "1/s":
        return f"{value:.2f}/s"
    if unit == "ratio/h":  # no exponents: +3,250%/h, +12.5%/h, +0.0123%/h
        return f"{value * 100:+,.0f}%/h" if abs(value) >= 1 else f"{value * 100:+.3g}%/h"
    if unit == "B/h":
        scale, prefix = next((u for u in ((1e9, "G"), (1e6, "M"), (1e3, "k")) if abs(value) >= u[0]), (1, ""))
        return f"{value / scale:+.3g}{prefix}B/h" if abs(value) < 1e12 else f"{value / 1e9:+,.0f}GB/h"
    return f"{value:g}"


def pct(share: float) -> str:
    """A share in as few digits as tell it apart: 1%, 7.22%, 96.5%."""
    return f"{share * 100:.3g}%"


def level(c: float) -> str:
    return f"{c * 100:.4g}%"


def decide(op: str, threshold: float, low: float, high: float) -> Decision:
    """Pass when even the worst bound holds the SLO, fail when even the best bound breaks it."""
    worst, best = (high, low) if op in ("<", "<=") else (low, high)
    if _holds(op, worst, threshold):
        return "pass"
    if not _holds(op, best, threshold):
        return "fail"
    return "inconclusive"


def _holds(op: str, value: float, threshold: float) -> bool:
    return {
        "<": value < threshold,
        "<=": value <= threshold,
        ">": value > threshold,
        ">=": value >= threshold,
    }[op]


def decide_share(low: float, high: float, allowed: float) -> Decision:
    """A share of samples beyond a limit, against the share the SLO allows."""
    if low > allowed:
        return "fail"
    if high < allowed:
        return "pass"
    return "inconclusive"


# --- percentiles: the share of samples beyond the limit ---------------------------------------------

# op -> (which samples are on the wrong side of the limit, words for that side); vectorized: a million
# samples are counted in milliseconds
WRONG_SIDE: dict[str, tuple[Callable[[np.ndarray, float], np.ndarray], str]] = {
    "<": (lambda v, limit: v >= limit, "at or over"),
    "<=": (lambda v, limit: v > limit, "over"),
    ">": (lambda v, limit: v <= limit, "at or under"),
    ">=": (lambda v, limit: v < limit, "under"),
}


def allowed_share(op: str, percentile: float) -> float:
    """`pP < L` allows 1 - P/100 of the samples at or over L; `pP > L` allows P/100 at or under it."""
    share = 1 - percentile / 100 if op in ("<", "<=") else percentile / 100
    return round(share, 12)  # 1 - 0.99 is 0.010000000000000009


def beyond_limit(slo: Slo, values: np.ndarray) -> int:
    """How many samples are on the SLO's wrong side of its limit (exact: the values, not buckets)."""
    return int(np.count_nonzero(WRONG_SIDE[slo.op][0](values, slo.threshold)))


def judge_percentile(
    slo: Slo, k: int, n: int, q_low: float | None, q_high: float | None, c: float, unit: str
) -> Judgement:
    """k of n samples beyond the limit decide; (q_low, q_high) are the percentile's own bounds, shown."""
    percentile = slo.percentile or 50.0
    side = WRONG_SIDE[slo.op][1]
    allowed = allowed_share(slo.op, percentile)
    low, high = share_bounds(k, n, c)
    status = decide_share(low, high, allowed)
    limit, stat = show(slo.threshold, unit), slo.statistic
    rule = (
        f"the share of samples {side} {limit} decides, against the {pct(allowed)} {stat} allows: fail "
        f"when its {level(c)} lower bound is above, pass when its {level(c)} upper bound is below"
    )
    counted = f"{k:,} of {n:,} samples {side} {limit}"
    if status == "fail":
        words = f"fail: {counted}; the share is at least {pct(low)} ({level(c)} lower bound) and {stat} "
        words += f"allows {pct(allowed)}"
    elif status == "pass":
        words = f"pass: {counted}; the share is at most {pct(high)} ({level(c)} upper bound), below the "
        words += f"{pct(allowed)} {stat} allows"
    else:
        words = (
            f"inconclusive: {counted}; the share is between {pct(low)} and {pct(high)} ({level(c)} bounds) "
            f"and {stat} allows {pct(allowed)}; " + share_hint(k, n, c, allowed, side)
        )
    return Judgement(status, words, rule, k, q_low, q_high, k / n, low, high, allowed)


def share_hint(k: int, n: int, c: float, allowed: float, side: str) -> str:
    """How many samples would decide, where computable: at the share observed so far."""
    observed = k / n
    if observed == allowed:
        return "the share observed is the allowance itself: no number of samples at this share decides"

    def decided(size: int) -> bool:
        low, high = share_bounds(round(observed * size), size, c)
        return decide_share(low, high, allowed) != "inconclusive"

    needed = smallest_n(decided, n + 1)
    if needed is None:
        return "no reachable number of samples at this share decides"
    outcome = "pass" if observed < allowed else "fail"
    if k == 0:
        return f"{needed:,} samples with none {side} would pass at {level(c)}"
    return f"about {needed:,} samples at the share observed ({pct(observed)}) would {outcome} at {level(c)}"


# --- the observed extremes, means, rates, counts ------------------------------------------------------


def judge_extreme(slo: Slo, value: float, n: int, unit: str) -> Judgement:
    """min, max (and p100): facts of the samples taken, judged exactly; later samples may differ."""
    name = "maximum" if slo.statistic in ("max", "p100") else "minimum"
    holds = slo.holds(value)
    rule = f"the observed {name} decides, exactly (it bounds nothing about samples not taken)"
    limit = show(slo.threshold, unit)
    words = (
        f"{'pass' if holds else 'fail'}: the observed {name} of {n:,} samples is {show(value, unit)}, "
        f"{'within' if holds else 'beyond'} the {slo.op} {limit} limit"
    )
    return Judgement("pass" if holds else "fail", words, rule, None, value, value)


def judge_mean(slo: Slo, n: int, mean: float, stdev: float, c: float, unit: str) -> Judgement:
    rule = (
        f"Student's t bounds of the mean at {level(c)} decide: pass when the worse bound holds "
        f"{slo.op} {show(slo.threshold, unit)}, fail when the better one breaks it"
    )
    bounds = mean_bounds(n, mean, stdev, c)
    if bounds is None:
        return Judgement("inconclusive", f"inconclusive: {n} sample; a mean needs 2 to bound", rule)
    low, high = bounds
    status = decide(slo.op, slo.threshold, low, high)
    words = (
        f"{status}: the mean of {n:,} samples is {show(mean, unit)}, between {show(low, unit)} and "
        f"{show(high, unit)} ({level(c)} bounds), against {slo.op} {show(slo.threshold, unit)}"
    )
    if status == "inconclusive":
        words += "; " + mean_hint(slo, n, mean, stdev, c)
    return Judgement(status, words, rule, None, low, high)


def mean_hint(slo: Slo, n: int, mean: float, stdev: float, c: float) -> str:
    gap = abs(mean - slo.threshold)
    if gap == 0:
        return "the mean is at the limit itself: no number of samples decides"

    def decided(size: int) -> bool:
        bounds = mean_bounds(size, mean, stdev, c)
        return bounds is not None and decide(slo.op, slo.threshold, *bounds) != "inconclusive"

    needed = smallest_n(decided, n + 1)
    return (
        "no reachable number of samples decides"
        if needed is None
        else (f"about {needed:,} samples with this mean and spread would decide at {level(c)}")
    )


def judge_rate(slo: Slo, k: int, n: int, c: float) -> Judgement:
    """error_rate or success_rate: Clopper-Pearson bounds on the share of the `k` requests (errors, or ok
    ones) of `n`."""
    low, high = share_bounds(k, n, c)
    status = decide(slo.op, slo.threshold, low, high)
    limit = show(slo.threshold, "ratio")
    errors = slo.metric == "error_rate"
    rule = (
        f"Clopper-Pearson bounds of the {'error' if errors else 'success'} rate at {level(c)} decide: pass "
        f"when the worse bound holds {slo.op} {limit}, fail when the better one breaks it"
    )
    words = (
        f"{status}: {k:,} {'errors' if errors else 'ok'} of {n:,} requests; the rate is between {pct(low)} "
        f"and {pct(high)} ({level(c)} bounds), against {slo.op} {limit}"
    )
    if status == "inconclusive" and errors:  # the hint counts errors: a success rate gets none
        words += "; " + rate_hint(slo, k, n, c)
    return Judgement(status, words, rule, k, low, high)


def rate_hint(slo: Slo, errors: int, n: int, c: float) -> str:
    observed = errors / n

    def decided(size: int) -> bool:
        low, high = share_bounds(round(observed * size), size, c)
        return decide(slo.op, slo.threshold, low, high) != "inconclusive"

    if observed == slo.threshold:
        return "the rate observed is the limit itself: no number of requests decides"
    needed = smallest_n(decided, n + 1)
    if needed is None:
        return "no reachable number of requests decides"
    if errors == 0:
        return f"{needed:,} requests with no error would decide at {level(c)}"
    return f"about {needed:,} requests at the rate observed ({pct(observed)}) would decide at {level(c)}"


GOODPUT_WORDS = "good requests (ok, and each within every latency SLO covering it)"


def judge_throughput(slo: Slo, ok: int, length: float, c: float) -> Judgement:
    what = "good" if slo.metric == "goodput" else "ok"
    low_count, high_count = poisson_bounds(ok, c)
    low, high = low_count / length, high_count / length
    status = decide(slo.op, slo.threshold, low, high)
    limit = show(slo.threshold, "1/s")
    rule = (
        f"Garwood's exact Poisson bounds of the {what} count over the window ({length:g} s) at {level(c)} "
        f"decide: pass when the worse bound holds {slo.op} {limit}, fail when the better one breaks it"
    )
    counted = GOODPUT_WORDS if what == "good" else "ok requests"
    words = (
        f"{status}: {ok:,} {counted} in {length:g} s; the rate is between {show(low, '1/s')} and "
        f"{show(high, '1/s')} ({level(c)} bounds), against {slo.op} {limit}"
    )
    if status == "inconclusive" and ok > 0:
        rate = ok / length

        def decided(count: int) -> bool:
            a, b = poisson_bounds(count, c)
            return decide(slo.op, slo.threshold, a * rate / count, b * rate / count) != "inconclusive"

        needed = None if rate == slo.threshold else smallest_n(decided, ok + 1)
        if needed is None:
            words += "; the rate observed is the limit itself (or too near it): no window length decides"
        else:
            words += f"; at this rate, a window of about {needed / rate:.0f} s would decide at {level(c)}"
    return Judgement(status, words, rule, ok, low, high)


def judge_sustained(slo: Slo, best: float, first: int, seconds: int) -> Judgement:
    """max(throughput): the best 10 s of the run, an observed fact judged exactly."""
    holds = slo.holds(best)
    rule = (
        f"the best mean ok rate over {SUSTAIN_S} consecutive whole seconds inside the window (of the "
        "observed per-second counts) decides, exactly: an observed fact, like a maximum"
    )
    words = (
        f"{'pass' if holds else 'fail'}: the best {SUSTAIN_S} s (seconds {first}–{first + SUSTAIN_S} of "
        f"{seconds:,} whole seconds in the window) averaged {show(best, '1/s')}, "
        f"{'within' if holds else 'beyond'} the {slo.op} {show(slo.threshold, '1/s')} limit"
    )
    return Judgement("pass" if holds else "fail", words, rule, None, best, best)


def judge_dropped(slo: Slo, dropped: int) -> Judgement:
    holds = slo.holds(dropped)
    words = f"{'pass' if holds else 'fail'}: {dropped:,} arrivals dropped, against {slo.op} {slo.threshold:g}"
    return Judgement("pass" if holds else "fail", words, "a count, judged exactly", dropped, dropped, dropped)


# --- one SLO -----------------------------------------------------------------------------------------


def measurable_by(engine: str, metric: str) -> bool:
    """What the engine's capability table says (an engine no longer registered measured what it recorded)."""
    try:
        return metric not in get_engine(engine).capabilities.unmeasurable
    except KeyError:
        return True


@dataclass(frozen=True)
class Facts:
    """What an SLO is decided on, whether counted from a run's records (`facts_of`) or kept batch by batch
    by a tracker (results/tracker.py): both go through `decide_facts`, so the rule is written once.

    `samples` is n: a time metric's values, the requests (error_rate), the ok requests (throughput),
    requests and drops (dropped_iterations). `k` is the count the bounds are on: samples beyond the
    limit, errors, ok requests, drops. `value` is the point value (None: nothing to judge on)."""

    value: float | None
    samples: int
    k: int = 0
    stdev: float = math.nan  # a mean's spread
    q_low: float | None = None  # a percentile's own order-statistic bounds (shown, not deciding)
    q_high: float | None = None
    length: float = 0.0  # throughput and goodput: the window's measured length, seconds
    first_s: int | None = None  # max(throughput): the first second of the best run of seconds


@dataclass(frozen=True)
class GoodputRule:
    """Which requests count towards goodput: ok, and each of its own values within every latency SLO
    that covers it (no `for`, or `for` its name; its start inside the SLO's window). The DistServe and
    guidellm definition; a request without a value of a metric (no TTFT on k6) is not held to it."""

    # each latency SLO with its window as sorted disjoint starts and ends (metrics.merged)
    covering: tuple[tuple[Slo, np.ndarray, np.ndarray], ...]

    @classmethod
    def of(
        cls, slos: Sequence[Slo], stages: tuple[Stage, ...], faults: FaultSpans = NO_FAULTS
    ) -> GoodputRule:
        latency = [s for s in slos if s.metric in TIME_METRICS]
        return cls(tuple((s, *merged(window_intervals(s.window, stages, math.inf, faults))) for s in latency))

    def good(self, r: RequestRecord, offset: float) -> bool:
        if not r.ok or not self.covering:  # with no latency SLO, goodput is the ok rate
            return r.ok
        for slo, starts, ends in self.covering:
            if slo.requests and r.name not in slo.requests:
                continue
            at = bisect.bisect_right(starts, offset) - 1  # in the window: a bisection, as metrics.inside
            if at < 0 or offset >= ends[at]:
                continue
            if not all(slo.holds(v) for v in TIME_METRIC_VALUES[slo.metric](r)):
                return False
        return True


def is_sustained(slo: Slo) -> bool:
    return slo.metric == "throughput" and slo.statistic == "max"


def sustained_facts(ok_per_second: np.ndarray, inside: np.ndarray) -> Facts:
    """max(throughput)'s facts from the per-second ok counts of the run's whole seconds."""
    found = best_sustained(ok_per_second, inside)
    seconds = int(inside.sum())
    if found is None:
        return Facts(None, seconds)
    return Facts(found[0], seconds, first_s=found[1])


def facts_of(slo: Slo, data: RunData, c: float, every: Sequence[Slo] = ()) -> Facts:
    """The SLO's facts over its requests and window of a run's records (`every`: the scenario's SLOs,
    whose latency ones say which requests are good for goodput)."""
    records, length = data.select(slo.requests, slo.window)
    if is_sustained(slo):
        whole = math.floor(data.duration_s)
        counts = np.zeros(whole, dtype=np.int64)
        for r in records:
            second = math.floor(data.offset(r.t))
            if r.ok and 0 <= second < whole:
                counts[second] += 1
        intervals = window_intervals(slo.window, data.stages, data.duration_s, data.faults)
        return sustained_facts(counts, seconds_inside(whole, intervals))
    if slo.metric in TIME_METRICS:
        values = [v for r in records for v in TIME_METRIC_VALUES[slo.metric](r)]
        dist = sample_stats(values, [slo.percentile] if slo.percentile else [])
        if dist.count == 0:
            return Facts(None, 0)
        if is_extreme(slo):
            return Facts(dist.min if slo.statistic == "min" else dist.max, dist.count)
        samples = np.asarray(values, dtype=float)
        if slo.percentile is None:
            # numpy's float arithmetic: statistics.stdev works in exact fractions, seconds for a million
            stdev = float(np.std(samples, ddof=1)) if dist.count >= 2 else math.nan
            return Facts(dist.mean, dist.count, stdev=stdev)
        q_low, q_high = quantile_bounds(samples, slo.percentile / 100, c)
        value = dist.statistic(slo.statistic or "mean")
        return Facts(value, dist.count, beyond_limit(slo, samples), q_low=q_low, q_high=q_high)
    if slo.metric == "error_rate":
        errors = sum(1 for r in records if not r.ok)
        return Facts(errors / len(records) if records else None, len(records), errors)
    if slo.metric == "success_rate":
        ok = sum(1 for r in records if r.ok)
        return Facts(ok / len(records) if records else None, len(records), ok)
    if slo.metric == "throughput":
        ok = sum(1 for r in records if r.ok)
        return Facts(ok / length if length > 0 else None, ok, ok, length=length)
    if slo.metric == "goodput":
        rule = GoodputRule.of(every, data.stages, data.faults)
        good = sum(1 for r in records if rule.good(r, data.offset(r.t)))
        return Facts(good / length if length > 0 else None, good, good, length=length)
    dropped = data.dropped_in(slo.window)
    return Facts(float(dropped), len(records) + dropped, dropped)


def is_extreme(slo: Slo) -> bool:
    """min, max and p100 are judged on the observed extreme."""
    return slo.statistic in ("min", "max") or (slo.percentile or 0) >= 100


def decide_facts(slo: Slo, facts: Facts, c: float) -> Judgement | None:
    """The one decision rule per kind of SLO (None when there is nothing to judge on)."""
    unit = unit_of(slo.metric)
    if facts.value is None or (facts.samples == 0 and slo.metric not in ("throughput", "goodput")):
        return None
    if is_sustained(slo):
        return judge_sustained(slo, facts.value, facts.first_s or 0, facts.samples)
    if slo.metric in TIME_METRICS:
        if is_extreme(slo):
            return judge_extreme(slo, facts.value, facts.samples, unit)
        if slo.percentile is None:
            return judge_mean(slo, facts.samples, facts.value, facts.stdev, c, unit)
        return judge_percentile(slo, facts.k, facts.samples, facts.q_low, facts.q_high, c, unit)
    if slo.metric in ("error_rate", "success_rate"):
        return judge_rate(slo, facts.k, facts.samples, c)
    if slo.metric in ("throughput", "goodput"):
        return judge_throughput(slo, facts.k, facts.length, c)
    return judge_dropped(slo, facts.k)


def measure(
    slo: Slo, data: RunData, c: float, every: Sequence[Slo] = ()
) -> tuple[float | None, int, Judgement | None]:
    """The SLO's point value over its requests and window, the samples behind it, and the judgement
    (None when there is nothing to judge on)."""
    facts = facts_of(slo, data, c, every)
    return facts.value, facts.samples, decide_facts(slo, facts, c)


def judge_one(
    slo: Slo,
    data: RunData,
    engine: str,
    confidence: float = DEFAULT_CONFIDENCE,
    every: Sequence[Slo] = (),
) -> Verdict:
    if slo.metric == "recovery_time":
        from scenariokit.results.metrics import timeline
        from scenariokit.results.recovery import recoveries

        found = [o for o in data.occurrences if o.name == slo.subject]
        return judge_recovery(slo, list(recoveries(found, timeline(data)).values()), confidence)
    facts = facts_of(slo, data, confidence, every)
    return unmeasured(slo, engine, confidence) or verdict_of(slo, facts, confidence)


def judge_recovery(slo: Slo, found: Sequence[Recovery], confidence: float = DEFAULT_CONFIDENCE) -> Verdict:
    """recovery_time(<fault>): each occurrence's recovery, an observed fact, judged exactly; the worst
    occurrence decides (one never recovered by the run's end fails)."""
    unit = "s"
    policy = found[0].occurrence.policy.text() if found else "no occurrence"
    rule = (
        "each occurrence's recovery time, from the fault's end to the first of the held seconds back within "
        f"the band, decides exactly (an observed fact per occurrence; the worst decides): {policy}"
    )

    def verdict(status: Status, value: float | None, words: str, at_least: bool = False) -> Verdict:
        """`at_least`: not recovered by the run's end: the value is only a lower bound, with no margin."""
        margin = None if value is None or at_least else slo.threshold - value
        percent = None if margin is None or not slo.threshold else margin / slo.threshold * 100
        low, high = (value, None if at_least else value) if value is not None else (None, None)
        return Verdict(slo.text, slo.metric, status, value, slo.threshold, unit, len(found), margin, percent,
                       words, confidence, rule, None, low, high)  # fmt: skip

    if not found:
        return verdict("inconclusive", None, f"inconclusive: the fault `{slo.subject}` never took effect")
    lost = [r for r in found if r.seconds is None and r.steady_error_rate is not None]
    if lost:
        worst = max(lost, key=lambda r: r.run_left_s)
        words = f"fail: not recovered by the end of the run ({worst.run_left_s:.0f}s after the fault)"
        if len(found) > 1:
            words += f", occurrence {worst.occurrence.index + 1} of {len(found)}"
        return verdict("fail", worst.run_left_s, words, at_least=True)
    if any(r.steady_error_rate is None for r in found):
        why = "no whole second before the fault to take a steady state from (it starts with the run)"
        return verdict("inconclusive", None, f"inconclusive: {why}")
    worst = max(found, key=lambda r: r.seconds or 0.0)
    value = worst.seconds or 0.0
    holds = slo.holds(value)
    took = show(value, unit) if value else "at once (0s)"
    words = (
        f"{'pass' if holds else 'fail'}: recovered {took} after the fault ended, "
        f"{'within' if holds else 'beyond'} the {slo.op} {show(slo.threshold, unit)} limit"
    )
    if len(found) > 1:
        words += f" (the worst of {len(found)} occurrences: #{worst.occurrence.index + 1})"
    return verdict("pass" if holds else "fail", value, words)


def unmeasured(slo: Slo, engine: str, confidence: float = DEFAULT_CONFIDENCE) -> Verdict | None:
    """The not_measured verdict of an SLO the engine cannot measure; None when it can."""
    if measurable_by(engine, slo.metric):
        return None
    why = f"{engine} cannot measure {slo.metric}: run with " + " or ".join(
        f"--engine {name}" for name in engines_measuring(slo.metric)
    )
    unit = unit_of(slo.metric)
    return Verdict(
        slo.text, slo.metric, "not_measured", None, slo.threshold, unit, 0, None, None, why, confidence
    )


def verdict_of(slo: Slo, facts: Facts, confidence: float = DEFAULT_CONFIDENCE) -> Verdict:
    """The verdict on facts however they were gathered (the engine's capability checked before)."""
    unit = unit_of(slo.metric)
    value, samples, judgement = facts.value, facts.samples, decide_facts(slo, facts, confidence)
    if value is None or judgement is None:
        why = f"inconclusive: no sample to judge {slo.statistic or slo.metric} on"
        return Verdict(
            slo.text, slo.metric, "inconclusive", value, slo.threshold, unit, samples, None, None, why,
            confidence, "nothing measured",
        )  # fmt: skip
    margin = (slo.threshold - value) if slo.op in ("<", "<=") else (value - slo.threshold)
    percent = margin / slo.threshold * 100 if slo.threshold else None
    explanation = judgement.explanation
    if judgement.share is not None:  # the bounds are on the share: the percentile's own value beside them
        explanation += f"; {slo.statistic} is {show(value, unit)}"
    return Verdict(
        slo.text,
        slo.metric,
        judgement.status,
        value,
        slo.threshold,
        unit,
        samples,
        margin,
        percent,
        explanation,
        confidence,
        judgement.rule,
        judgement.k,
        judgement.low,
        judgement.high,
        judgement.share,
        judgement.share_low,
        judgement.share_high,
        judgement.allowed_share,
    )


def judge(
    slos: tuple[Slo, ...], data: RunData, engine: str, confidence: float = DEFAULT_CONFIDENCE
) -> list[Verdict]:
    return [judge_one(slo, data, engine, confidence, slos) for slo in slos]


def overall(verdicts: list[Verdict], measured: bool = True) -> Literal["pass", "fail", "inconclusive"]:
    """pass, fail or inconclusive. An SLO the engine cannot measure is said so in its verdict and does not
    make the run inconclusive (../shared/notes/decisions.md); one its bounds cannot decide does, and so does
    a run that measured nothing."""
    if any(v.status == "fail" for v in verdicts):
        return "fail"
    if not measured or any(v.status == "inconclusive" for v in verdicts):
        return "inconclusive"
    return "pass"


def certainly_lost(
    slo: Slo, data: RunData, planned_requests: float, confidence: float = DEFAULT_CONFIDENCE
) -> bool:
    """True once more requests cannot rescue an error-rate SLO (used by --abort-on-fail): even if every
    request still planned succeeds, the final verdict would be a fail (the bounds' lower end still
    breaks the limit). One pass over the records, as before; the bound itself costs O(1)."""
    if slo.metric != "error_rate" or slo.window is not None or slo.op not in ("<", "<="):
        return False
    records, _ = data.select(slo.requests)
    errors = sum(1 for r in records if not r.ok)
    return lost_on_counts(slo, errors, len(records), planned_requests, confidence)


def lost_on_counts(
    slo: Slo, errors: int, requests: int, planned_requests: float, confidence: float = DEFAULT_CONFIDENCE
) -> bool:
    """`certainly_lost` on counts (the live tracker keeps them): O(1)."""
    if slo.metric != "error_rate" or slo.window is not None or slo.op not in ("<", "<="):
        return False
    best_n = max(math.ceil(planned_requests), requests, 1)  # every remaining request succeeds
    low, high = share_bounds(errors, best_n, confidence)
    return decide(slo.op, slo.threshold, low, high) == "fail"
