"""SLO expressions -> `ir.Slo`.

    slo        = measure comparison threshold [for NAME {, NAME}] [during window]   (clauses in any order)
    measure    = STATISTIC(TIME_METRIC) | GAUGE_STAT(gpu_util) | GAUGE_STAT(gpu_memory)
               | error_rate | success_rate | throughput | max(throughput)
               | goodput | dropped_iterations | recovery_time(FAULT)
               | STATISTIC(latency_trend) | error_rate_trend | throughput_trend | memory_growth
    STATISTIC  = p<N> (0 < N <= 100, e.g. p50, p99, p99.9) | median | mean (or avg) | min | max
    TIME_METRIC= latency | ttfb | ttft | itl | tpot
    GAUGE_STAT = max | min | mean (or avg): the target's GPUs as sampled (`dcgm` monitoring targets), judged
                 as the observed fact over the samples in the window; `for` names a dcgm target, a GPU
                 UUID or `<target>-gpu<N>`: `max(gpu_memory) < 95%`, `mean(gpu_util) >= 70% for dcgm-1`
    comparison = < | <= | > | >=
    window     = during NAME                a stage label or kind, or a fault: `during spike`, `during kill`
               | during [DURATION] .. [DURATION]  seconds from the start: `during 1m..2m30s`, `during 5m..`
               | after NAME [for DURATION]  from each end of the stage or fault to its next start or the
                                            run's end; `for 30s`: only the first 30 s of each

The threshold's unit must fit the metric: a duration for time metrics (`500ms`), a percentage or a
fraction for error_rate (`0.5%`, `0.005`), a rate for throughput (`50/s`), a count for
dropped_iterations (`0`); a growth per hour (or day) for the soak metrics, fitted over the run's steady
part (results/trend.py): `p95(latency_trend) < 10%/h` (the per-bucket p95's slope relative to its level at
the start), `throughput_trend > -5%/h`, `error_rate_trend < 0.1%/h` (points of error rate per hour) and
`memory_growth < 5MB/h` (the target's RSS). `success_rate > 99.5%` mirrors error_rate; `goodput >= 40/s`
is the rate of requests that succeeded and met every latency SLO covering them; `max(throughput) >= 5000/s`
the best sustained ok rate (results/slo.py says over what); `recovery_time(kill) < 10s` a duration per
occurrence of the fault `kill` (results/recovery.py), over all requests, so it takes no `for` or window.
`==`, `=` and `!=` are refused with a fix (`dropped_iterations <= 0`): an SLO is a bound, and an equality
on a measured float never holds reliably. Request names after `for`, and stage and fault names after
`during`, `after` and in `recovery_time(...)`, are not checked here; the caller knows which exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, cast

from lark import Token
from lark.tree import Meta
from lark.visitors import v_args

from scenariokit.compile.diagnostics import UNKNOWN_SPAN, Span, did_you_mean
from scenariokit.compile.expr import _parsing
from scenariokit.compile.expr._parsing import ValueTransformer, whole
from scenariokit.compile.expr.errors import guarded
from scenariokit.compile.expr.quantity import fraction
from scenariokit.compile.expr.units import KIND_NAMES, Quantity
from scenariokit.compile.ir import FLEET_METRICS, TIME_METRICS, TREND_METRICS, Slo, SloMetric, Window

METRICS: tuple[str, ...] = (
    "latency",
    "ttfb",
    "ttft",
    "itl",
    "tpot",
    "error_rate",
    "throughput",
    "dropped_iterations",
    "latency_trend",
    "error_rate_trend",
    "throughput_trend",
    "memory_growth",
    "success_rate",
    "goodput",
    "recovery_time",
    "gpu_util",
    "gpu_memory",
)
# metrics that take a statistic: the time metrics, the trend of a latency percentile, the GPU gauges
_WITH_STATISTIC = TIME_METRICS | {"latency_trend"} | FLEET_METRICS
# a sampled gauge has no per-request samples to take a percentile of: its extremes and mean only
_GAUGE_STATISTICS = ("max", "min", "mean")
STATISTICS: tuple[str, ...] = ("p50", "p90", "p95", "p99", "p99.9", "median", "mean", "min", "max")
_NAMED_STATISTICS = {"median": "median", "mean": "mean", "avg": "mean", "min": "min", "max": "max"}
_PERCENTILE = re.compile(r"p(\d+(?:\.\d+)?)")
OPERATORS = ("<", "<=", ">", ">=")
_EXAMPLE = "p99(latency) < 500ms"

_EXAMPLES: _parsing.Examples = [
    (
        ("an SLO starts with a metric: p99(latency) < 500ms, error_rate < 1%", None),
        ["< 1s", "1s < 1s", "(", ")", ",", "..", "1 < 2"],
    ),
    (
        ("expected a comparison: <, <=, >, >=", f"e.g. {_EXAMPLE}"),
        [
            "latency 1s",
            "p99(latency) 1s",
            "p99(latency)",
            "latency",
            "p99(latency) for a",
            "latency for a",
            "p99(latency) x",
            "latency x",
            "p99(latency) (",
            "p99(latency) )",
            "latency )",
            "latency ..",
            "latency ,",
            "p99(latency) ,",
            "p99(latency) ..",
            "p99(latency) during x",
            "latency during x",
        ],
    ),
    (
        ("expected a threshold after the comparison", f"e.g. {_EXAMPLE}"),
        [
            "latency <",
            "latency < for a",
            "latency < <",
            "latency < x",
            "latency < (",
            "latency < ,",
            "latency < during x",
            "latency < ..",
        ],
    ),
    (
        ("missing `)`", f"e.g. {_EXAMPLE}"),
        [
            "p99(latency",
            "p99(latency < 1s",
            "p99(latency 1s",
            "p99(latency latency",
            "p99(latency (",
            "p99(latency ,",
        ],
    ),
    (
        ("expected a metric name: p99(latency)", "metrics: " + ", ".join(sorted(TIME_METRICS))),
        ["p99(", "p99()", "p99(1s)", "p99(<", "p99((", "p99(,"],
    ),
    (
        (
            "{token} is out of place: after the threshold come `for <requests>` and `during <window>`",
            "e.g. p95(latency) < 1s for identify during spike",
        ),
        [
            "latency < 1s x",
            "latency < 1s 2s",
            "latency < 1s ,",
            "latency < 1s (",
            "latency < 1s <",
            "latency < 1s ..",
            "latency < 1s during x y",
            "latency < 1s during 1m..2m x",
            "latency < 1s during ..1m x",
            "latency < 1s during x (",
            "latency < 1s during 1m.. x",
        ],
    ),
    (
        ("`for` needs request names: for identify, ocr", None),
        [
            "latency < 1s for",
            "latency < 1s for ,",
            "latency < 1s for (",
        ],
    ),
    (
        ("a request name is missing after `,`", "e.g. for identify, ocr"),
        [
            "latency < 1s for a,",
            "latency < 1s for a, during x",
            "latency < 1s for a, ,",
            "latency < 1s for a, 1s",
        ],
    ),
    (
        ("missing `,` before {token}", "e.g. for identify, ocr"),
        ["latency < 1s for a b", "latency < 1s for a 1s"],
    ),
    (
        ("`during` needs a stage or fault name or a time range: during spike, during 1m..2m", None),
        [
            "latency < 1s during",
            "latency < 1s during ,",
            "latency < 1s during (",
            "latency < 1s during <",
        ],
    ),
    (
        ("`after` needs a stage or fault name: after kill, after kill for 30s", None),
        [
            "latency < 1s after",
            "latency < 1s after ,",
            "latency < 1s after (",
            "latency < 1s after 1s",
            "latency < 1s after <",
            "latency < 1s after ..",
        ],
    ),
    (
        (
            "{token} is out of place: after the threshold come `for <requests>`, `during <window>` and "
            "`after <window> [for <duration>]`",
            "e.g. error_rate < 1% after kill for 30s",
        ),
        [
            "latency < 1s after x y",
            "latency < 1s after x (",
            "latency < 1s after x ..",
            "latency < 1s after x,",
        ],
    ),
    (
        ("a time window is written start..end: during 1m..2m30s", None),
        [
            "latency < 1s during 1m",
            "latency < 1s during 1m 2m",
            "latency < 1s during 1m for a",
            "latency < 1s during 1m during x",
            "latency < 1s during 1m,",
        ],
    ),
]


@dataclass(frozen=True)
class _Measure:
    metric: SloMetric
    statistic: str | None
    subject: str | None = None  # recovery_time(<fault>)


@dataclass(frozen=True)
class _Clause:
    kind: str  # "for" | "during" | "after" | "length" (the `for 30s` of an `after` window)
    start: int
    end: int
    requests: tuple[str, ...] = ()
    window: Window | None = None
    length_s: float | None = None


class _SloTransformer(ValueTransformer):
    def start(self, children: list[Slo]) -> Slo:
        return children[0]

    # -- the measured value ------------------------------------------------------------------------------

    def _metric(self, token: Token) -> SloMetric:
        name = str(token)
        if name not in METRICS:
            start = token.start_pos or 0
            hint = did_you_mean(name, METRICS) or f"metrics: {', '.join(METRICS)}"
            raise self.error(f"unknown metric `{name}`", start, start + len(name), hint)
        return cast(SloMetric, name)

    def statistic(self, children: list[Token]) -> _Measure:
        stat, metric_token = children
        start = stat.start_pos or 0
        if str(stat) == "recovery_time":  # its argument is a fault's name, checked by the caller
            return _Measure("recovery_time", None, subject=str(metric_token))
        metric = self._metric(metric_token)
        if metric == "throughput" and str(stat) == "max":
            return _Measure("throughput", "max")
        if metric not in _WITH_STATISTIC:
            best = ", or max(throughput) >= 50/s for the best 10 s" if metric == "throughput" else ""
            raise self.error(
                f"{metric} takes no statistic" + (" but max" if metric == "throughput" else ""),
                start,
                metric_token.end_pos,
                f"write {metric} {_example_bound(metric)}{best}",
            )
        name = str(stat)
        if metric in FLEET_METRICS and _NAMED_STATISTICS.get(name) not in _GAUGE_STATISTICS:
            raise self.error(
                f"{metric} is a sampled gauge: it takes max, min or mean, not `{name}`",
                start,
                start + len(name),
                f"e.g. max({metric}) < 90% or mean({metric}) >= 70%",
            )
        match = _PERCENTILE.fullmatch(name)
        if match:
            whole_part, _, frac = match.group(1).partition(".")
            number = str(int(whole_part)) + ("." + frac.rstrip("0") if frac.rstrip("0") else "")
            if not 0 < float(number) <= 100:
                raise self.error(
                    f"`{name}`: a percentile is above 0 and at most 100",
                    start,
                    start + len(name),
                    "e.g. p50, p95, p99, p99.9",
                )
            return _Measure(metric, f"p{number}")
        if name in _NAMED_STATISTICS:
            return _Measure(metric, _NAMED_STATISTICS[name])
        hint = (
            did_you_mean(name, STATISTICS)
            or "statistics: p50, p95, p99, p99.9 (any p<N>), median, mean, min, max"
        )
        raise self.error(f"unknown statistic `{name}`", start, start + len(name), hint)

    def bare_metric(self, children: list[Token]) -> _Measure:
        (token,) = children
        name, start = str(token), token.start_pos or 0
        if name not in METRICS and (_PERCENTILE.fullmatch(name) or name in _NAMED_STATISTICS):
            raise self.error(
                f"`{name}` of what? name the metric",
                start,
                start + len(name),
                f"e.g. {name}(latency) < 500ms",
            )
        metric = self._metric(token)
        if metric == "recovery_time":
            raise self.error(
                "recovery_time needs the fault it recovers from",
                start,
                start + len(name),
                "e.g. recovery_time(kill) < 10s",
            )
        if metric in _WITH_STATISTIC:
            raise self.error(
                f"{metric} needs a statistic",
                start,
                start + len(name),
                f"e.g. max({metric}) < 90% or mean({metric}) >= 70%"
                if metric in FLEET_METRICS
                else f"e.g. p99({metric}), median({metric}) or mean({metric})",
            )
        return _Measure(metric, None)

    # -- clauses -----------------------------------------------------------------------------------------

    @v_args(meta=True)
    def requests(self, meta: Meta, children: list[Token]) -> _Clause:
        names: list[str] = []
        for token in children:
            if str(token) in names:
                start = token.start_pos or 0
                raise self.error(f"`{token}` is listed twice", start, start + len(token))
            names.append(str(token))
        return _Clause("for", meta.start_pos, meta.end_pos, requests=tuple(names))

    @v_args(meta=True)
    def stage_window(self, meta: Meta, children: list[Token]) -> _Clause:
        (label,) = children
        return _Clause("during", meta.start_pos, meta.end_pos, window=Window(stage=str(label)))

    @v_args(meta=True)
    def after_window(self, meta: Meta, children: list[Token]) -> _Clause:
        (name,) = children
        return _Clause("after", meta.start_pos, meta.end_pos, window=Window(stage=str(name), after=True))

    @v_args(meta=True)
    def window_length(self, meta: Meta, children: list[Quantity]) -> _Clause:
        (q,) = children
        length = self.duration(q, "an `after` window's length")
        if length <= 0:
            raise self.error(f"`{q.text}`: a window lasts more than 0 s", q.start, q.end, "e.g. for 30s")
        return _Clause("length", meta.start_pos, meta.end_pos, length_s=length)

    @v_args(meta=True)
    def time_window(self, meta: Meta, children: list[Any]) -> _Clause:
        low, dots, high = children
        if low is None and high is None:
            raise self.error(
                "a time window needs a start, an end or both",
                dots.start_pos,
                dots.end_pos,
                "e.g. during 1m..2m30s, during 5m.. (to the end)",
            )
        start_s = self.duration(low, "a window's start") if low is not None else 0.0
        end_s = self.duration(high, "a window's end") if high is not None else None
        if end_s is not None and end_s <= start_s:
            raise self.error(
                "this window ends before it starts",
                meta.start_pos,
                meta.end_pos,
                "write the earlier time first: during 1m..2m",
            )
        return _Clause("during", meta.start_pos, meta.end_pos, window=Window(start_s=start_s, end_s=end_s))

    # -- the whole SLO -----------------------------------------------------------------------------------

    def slo(self, children: list[Any]) -> Slo:
        measure, op_token, threshold, *clauses = children
        op = self._operator(measure, op_token)
        value = self._threshold(measure.metric, threshold)
        clauses = self._lengths_joined(clauses)
        requests: tuple[str, ...] = ()
        window: Window | None = None
        seen: set[str] = set()
        for clause in clauses:
            key = "during" if clause.kind == "after" else clause.kind  # one window per SLO
            if key in seen:
                words = "a window" if key == "during" else f"`{clause.kind}`"
                raise self.error(
                    f"{words} is given twice",
                    clause.start,
                    clause.end,
                    "for: list every request once (for a, b); during or after: one window per SLO",
                )
            seen.add(key)
            requests = clause.requests or requests
            window = clause.window or window
            self._check_scope(measure, clause)
        start, end = whole(self.text)
        return Slo(
            text=self.text.strip(),
            metric=measure.metric,
            statistic=measure.statistic,
            op=op,
            threshold=value,
            requests=requests,
            window=window,
            span=self.at(start, end),
            subject=measure.subject,
        )

    def _lengths_joined(self, clauses: list[_Clause]) -> list[_Clause]:
        """`after X` followed by `for 30s` is one window; a length anywhere else is an error."""
        out: list[_Clause] = []
        for clause in clauses:
            if clause.kind != "length":
                out.append(clause)
                continue
            before = out[-1] if out else None
            if before is None or before.kind != "after" or before.window is None or before.window.length_s:
                raise self.error(
                    "a length bounds an `after` window: write it right after the window",
                    clause.start,
                    clause.end,
                    "e.g. error_rate < 1% after kill for 30s (for with names lists requests)",
                )
            window = replace(before.window, length_s=clause.length_s)
            out[-1] = _Clause("after", before.start, clause.end, window=window)
        return out

    def _check_scope(self, measure: _Measure, clause: _Clause) -> None:
        """Metrics that no request name or window can narrow."""
        if clause.kind == "for" and measure.metric == "memory_growth":
            raise self.error(
                "memory_growth is the target's, not a request's",
                clause.start,
                clause.end,
                "remove `for ...`: the target's RSS grows with every request it serves",
            )
        if measure.metric == "recovery_time":
            raise self.error(
                "recovery_time is measured over all requests, from each end of its fault",
                clause.start,
                clause.end,
                f"remove `{clause.kind} ...`: e.g. recovery_time({measure.subject}) < 10s",
            )

    def _operator(self, measure: _Measure, token: Token) -> Any:
        op, start = str(token), token.start_pos or 0
        if op in OPERATORS:
            return op
        if op in ("=<", "=>"):
            fix = op[::-1]
            raise self.error(f"`{op}` is not a comparison; write `{fix}`", start, start + len(op))
        hint = (
            "an SLO is a bound; for 'none at all' write dropped_iterations <= 0"
            if measure.metric == "dropped_iterations"
            else f"an SLO is a bound, e.g. {_example(measure)}"
        )
        raise self.error(f"`{op}` is not supported: use <, <=, > or >=", start, start + len(op), hint)

    def _threshold(self, metric: SloMetric, q: Quantity) -> float:
        mismatch = f"{metric} is {_NATURE[metric]}, not {KIND_NAMES[q.kind]}"
        if metric in TREND_METRICS:
            return self._growth(metric, q, mismatch)
        if q.kind in ("percent_growth", "byte_growth"):
            trend = {"error_rate": "error_rate_trend", "throughput": "throughput_trend"}.get(metric)
            trend = trend or "p95(latency_trend)"  # the one time metric with a trend
            raise self.error(mismatch, q.start, q.end, f"for a growth per hour write {trend} < {q.text}")
        if metric in TIME_METRICS:
            if q.kind == "duration":
                return q.value
            n = q.number_text
            fix = f"{n}ms" if q.kind == "number" and float(n) >= 10 else f"{n}s"
            message = f"{metric} is a time: `{q.text}` needs a unit" if q.kind == "number" else mismatch
            raise self.error(message, q.start, q.end, f"{metric} is a time: write {fix}")
        if metric in FLEET_METRICS:
            if q.kind in ("percent", "number"):
                return fraction(self, q, "a share of the GPU")
            raise self.error(mismatch, q.start, q.end, f"write e.g. max({metric}) < 90% (or 0.9)")
        if metric in ("error_rate", "success_rate"):
            if q.kind in ("percent", "number"):
                return fraction(self, q, "an error rate" if metric == "error_rate" else "a success rate")
            bound = "< 0.5% (or 0.005)" if metric == "error_rate" else "> 99.5% (or 0.995)"
            raise self.error(mismatch, q.start, q.end, f"write e.g. {metric} {bound}")
        if metric == "recovery_time":
            if q.kind == "duration":
                return q.value
            fix = f"{q.number_text}s" if q.kind == "number" else "10s"
            raise self.error(mismatch, q.start, q.end, f"recovery_time is a time: write {fix}")
        if metric in ("throughput", "goodput"):
            if q.kind == "rate":
                return q.value
            hint = f"{metric} is a rate: write {q.number_text}/s" if q.kind == "number" else "write e.g. 50/s"
            raise self.error(mismatch, q.start, q.end, hint)
        if q.kind != "number":
            raise self.error(mismatch, q.start, q.end, "write e.g. dropped_iterations <= 0")
        if q.value != int(q.value):
            raise self.error(f"{metric} is a count: `{q.text}` is not a whole number", q.start, q.end)
        return q.value

    def _growth(self, metric: SloMetric, q: Quantity, mismatch: str) -> float:
        """A soak metric's limit: a growth per hour (stored per hour: 10%/h -> 0.1, 5MB/h -> 5e6)."""
        want = "byte_growth" if metric == "memory_growth" else "percent_growth"
        example = "5MB/h" if metric == "memory_growth" else "10%/h"
        if q.kind != want:
            raise self.error(mismatch, q.start, q.end, f"{metric} is a growth per hour: write e.g. {example}")
        # only throughput may be asked not to fall faster than a rate (`throughput_trend > -5%/h`)
        if q.value < 0 and metric != "throughput_trend":
            raise self.error(
                f"`{q.text}` is negative: {metric} limits growth, and a limit below 0 asks it to shrink",
                q.start,
                q.end,
                f"write e.g. {metric} < {example}",
            )
        return q.value


_NATURE: dict[str, str] = {
    **{m: "a time" for m in TIME_METRICS},
    "error_rate": "a fraction",
    "success_rate": "a fraction",
    "throughput": "a rate",
    "goodput": "a rate",
    "recovery_time": "a time",
    "dropped_iterations": "a count",
    "latency_trend": "a relative growth per hour",
    "error_rate_trend": "a growth per hour",
    "throughput_trend": "a relative growth per hour",
    "memory_growth": "a growth in bytes per hour",
    "gpu_util": "a share (of the GPU's time busy)",
    "gpu_memory": "a share (of the GPU's framebuffer)",
}


def _example_bound(metric: str) -> str:
    return {
        "error_rate": "< 1%",
        "success_rate": "> 99%",
        "throughput": ">= 50/s",
        "goodput": ">= 40/s",
        "recovery_time": "< 10s",
        "dropped_iterations": "<= 0",
        "error_rate_trend": "< 0.1%/h",
        "throughput_trend": "> -5%/h",
        "memory_growth": "< 5MB/h",
    }.get(metric, "< 500ms")


def _example(measure: _Measure) -> str:
    if measure.statistic:
        return f"{measure.statistic}({measure.metric}) < 500ms"
    return f"{measure.metric} {_example_bound(measure.metric)}"


@guarded
def parse_slo(text: str, span: Span = UNKNOWN_SPAN) -> Slo:
    """An SLO expression -> `Slo` (see the module docstring for the grammar)."""
    empty = ("empty SLO", f"e.g. {_EXAMPLE}")
    slo: Slo = _parsing.parse("slo", text, span, _SloTransformer(text, span), _EXAMPLES, empty)
    return slo
