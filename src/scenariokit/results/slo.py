"""Judge SLOs against a run's records: a verdict per SLO with its value, margin and evidence.

A verdict is pass, fail, no_data (too few samples to say: a p99 needs at least 100) or not_measured (the
engine cannot measure the metric, e.g. time to first token on an engine that reads whole responses). The
overall verdict is fail when any SLO fails, inconclusive when none fails but some could not be judged, and
pass otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scenariokit.compile.expr import format_duration
from scenariokit.compile.ir import TIME_METRICS, Slo
from scenariokit.engines import engines_measuring, get_engine
from scenariokit.results.metrics import TIME_METRIC_VALUES, RunData, sample_stats

Status = Literal["pass", "fail", "no_data", "not_measured"]


@dataclass(frozen=True)
class Verdict:
    slo: str
    metric: str
    status: Status
    value: float | None
    threshold: float
    unit: str
    samples: int
    margin: float | None  # positive: room left; negative: by how much it is missed
    margin_percent: float | None
    explanation: str


def unit_of(metric: str) -> str:
    return {"error_rate": "ratio", "throughput": "1/s", "dropped_iterations": "count"}.get(metric, "s")


def show(value: float, unit: str) -> str:
    if unit == "s":
        return format_duration(value) if value >= 0.001 else f"{value * 1e6:.0f}us"
    if unit == "ratio":
        return f"{value:.3%}"
    if unit == "1/s":
        return f"{value:.2f}/s"
    return f"{value:g}"


def min_samples(slo: Slo) -> int:
    percentile = slo.percentile
    if percentile is None or percentile >= 100:
        return 1
    return math.ceil(1 / (1 - percentile / 100) - 1e-9)


def measure(slo: Slo, data: RunData) -> tuple[float | None, int]:
    """The SLO's measured value over its requests and window, and the samples behind it."""
    records, length = data.select(slo.requests, slo.window)
    if slo.metric in TIME_METRICS:
        values = [v for r in records for v in TIME_METRIC_VALUES[slo.metric](r)]
        dist = sample_stats(values, [slo.percentile] if slo.percentile else [])
        if dist.count == 0:
            return None, 0
        return dist.statistic(slo.statistic or "mean"), dist.count
    if slo.metric == "error_rate":
        errors = sum(1 for r in records if not r.ok)
        return (errors / len(records) if records else None), len(records)
    if slo.metric == "throughput":
        ok = sum(1 for r in records if r.ok)
        return (ok / length if length > 0 else None), ok
    dropped = data.dropped_in(slo.window)
    return float(dropped), len(records) + dropped


def measurable_by(engine: str, metric: str) -> bool:
    """What the engine's capability table says (an engine no longer registered measured what it recorded)."""
    try:
        return metric not in get_engine(engine).capabilities.unmeasurable
    except KeyError:
        return True


def judge_one(slo: Slo, data: RunData, engine: str) -> Verdict:
    unit = unit_of(slo.metric)
    if not measurable_by(engine, slo.metric):
        return Verdict(
            slo.text,
            slo.metric,
            "not_measured",
            None,
            slo.threshold,
            unit,
            0,
            None,
            None,
            f"{engine} cannot measure {slo.metric}: run with "
            + " or ".join(f"--engine {name}" for name in engines_measuring(slo.metric)),
        )
    value, samples = measure(slo, data)
    needed = min_samples(slo)
    if value is None or samples < needed:
        return Verdict(
            slo.text,
            slo.metric,
            "no_data",
            value,
            slo.threshold,
            unit,
            samples,
            None,
            None,
            f"not enough data: {samples} samples, {needed} needed to judge {slo.statistic or slo.metric}",
        )
    holds = slo.holds(value)
    margin = (slo.threshold - value) if slo.op in ("<", "<=") else (value - slo.threshold)
    percent = margin / slo.threshold * 100 if slo.threshold else None
    what = f"{slo.statistic} {slo.metric}" if slo.statistic else slo.metric.replace("_", " ")
    gap = show(abs(margin), unit) + (f" ({abs(percent):.0f}%)" if percent is not None else "")
    relation = f"{gap} inside" if holds else f"{gap} {'over' if slo.op in ('<', '<=') else 'under'}"
    explanation = (
        f"{what} {show(value, unit)} is {relation} the {show(slo.threshold, unit)} limit, "
        f"from {samples:,} samples"
    )
    return Verdict(
        slo.text,
        slo.metric,
        "pass" if holds else "fail",
        value,
        slo.threshold,
        unit,
        samples,
        margin,
        percent,
        explanation,
    )


def judge(slos: tuple[Slo, ...], data: RunData, engine: str) -> list[Verdict]:
    return [judge_one(slo, data, engine) for slo in slos]


def overall(verdicts: list[Verdict]) -> Literal["pass", "fail", "inconclusive"]:
    if any(v.status == "fail" for v in verdicts):
        return "fail"
    if any(v.status in ("no_data", "not_measured") for v in verdicts):
        return "inconclusive"
    return "pass"


def certainly_lost(slo: Slo, data: RunData, planned_requests: float) -> bool:
    """True once more requests cannot rescue an error-rate SLO (used by --abort-on-fail)."""
    if slo.metric != "error_rate" or slo.window is not None or slo.op not in ("<", "<="):
        return False
    records, _ = data.select(slo.requests)
    errors = sum(1 for r in records if not r.ok)
    best_case = errors / max(planned_requests, len(records), 1)  # every remaining request succeeds
    return not slo.holds(best_case)
