"""The k6 backend: a k6 script with scenarios, thresholds and a data-driven request table.

Closed models become a `ramping-vus` scenario, open models a `ramping-arrival-rate` one (with a time unit
that keeps every target an integer, so rates below 1/s work). A zero-length IR stage (an instant jump) is a
k6 stage with `duration: "0s"`: both executors treat it as a jump (ramping-vus adds one step at that
offset; ramping-arrival-rate integrates nothing over it and starts the next stage at the new rate).

SLOs become k6 thresholds, one key per metric and tag filter with all its conditions in source order (k6
silently ignores duplicate keys); stage windows become tag filters, which k6 alone cannot express. What k6
cannot measure (time to first token, inter-token latency) or express (time windows) is reported as a
warning and judged by scenariokit, never dropped silently. Every value from the scenario reaches the
script as a JSON literal (`js_literal`) with `<`, `>`, `&` and line separators escaped; comments hold
only printable ASCII. The runtime (`backends/k6/scenariokit-runtime.js`) documents its records (what the
runner reads) and its metrics (what the script's own thresholds read).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from scenariokit.compile.diagnostics import Diagnostic, Severity
from scenariokit.compile.expr import format_duration
from scenariokit.compile.ir import (
    FLEET_METRICS,
    TREND_METRICS,
    DataRef,
    Distribution,
    EnvRef,
    JsonTemplate,
    LoadProfile,
    RequestTemplate,
    Scenario,
    Slo,
    Template,
    Text,
    templates_in,
)
from scenariokit.engines.base import CompiledScript, dataset_files, header_lines
from scenariokit.engines.k6.js import comment_safe, js_key, js_literal, number
from scenariokit.engines.k6.lean import lean_context, uses_lean_script
from scenariokit.engines.outcomes import FAILURES

RUNTIME = "scenariokit-runtime.js"
TEMPLATE = "script.js.j2"
LEAN_TEMPLATE = "lean.k6.js.j2"
UNMEASURABLE = {"ttft": "time to first token", "itl": "inter-token latency", "tpot": "time per output token"}
TREND_FOR = {"latency": "sk_latency", "ttfb": "sk_ttfb"}
STAT_FOR = {"mean": "avg", "median": "med", "min": "min", "max": "max"}
INVERSE_OP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
# k6 arrival-rate targets are integers per timeUnit: the finest unit first, the last one also for rounding.
TIME_UNITS = (("1s", 1.0), ("1m", 60.0), ("1h", 3600.0))
# Characters k6's threshold-key parser gives meaning to (or trims): such a value cannot be a tag filter.
_K6_KEY_SYNTAX = frozenset("{}:,\"'")
_CONDITION = re.compile(r"(avg|min|max|med|p\([0-9.]+\)|rate|count)(<|<=|>|>=)[0-9.e+-]+")


# JavaScript numbers are doubles: an integer beyond this is sent rounded (Number.MAX_SAFE_INTEGER)
MAX_SAFE_INTEGER = 2**53 - 1


def unsafe_integers(value: Any) -> list[int]:
    """The integers in a JSON body that k6 cannot hold exactly."""
    if isinstance(value, dict):
        return [n for item in value.values() for n in unsafe_integers(item)]
    if isinstance(value, list):
        return [n for item in value for n in unsafe_integers(item)]
    unsafe = isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INTEGER
    return [value] if unsafe else []


def body_diagnostics(scenario: Scenario) -> list[Diagnostic]:
    """What k6 cannot send as written: an error, not a silently rounded number."""
    return [
        Diagnostic(
            request.span,
            f"request `{request.name}`: k6 holds numbers as doubles and would send {numbers[0]} rounded "
            f"(integers beyond {MAX_SAFE_INTEGER:,} are not exact in JavaScript)",
            "write the number as a string, or run with --engine locust",
            Severity.ERROR,
        )
        for request in scenario.requests
        if (numbers := unsafe_integers(request.json_body))
    ]


def tag_safe(value: str) -> bool:
    """Whether k6 can parse `value` as a tag value inside a threshold key like `sk_latency{name:VALUE}`."""
    return (
        bool(value) and value == value.strip() and value.isprintable() and not (_K6_KEY_SYNTAX & set(value))
    )


# --- load -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateUnit:
    unit: str
    seconds: float
    exact: bool
    worst_error: float  # largest relative error of a rounded rate (0 when exact)


def time_unit_for(levels: list[float]) -> RateUnit:
    """The finest k6 timeUnit that makes every rate an integer, else rates rounded per hour."""
    for unit, seconds in TIME_UNITS:
        if all(abs(level * seconds - round(level * seconds)) < 1e-6 for level in levels):
            return RateUnit(unit, seconds, True, 0.0)
    unit, seconds = TIME_UNITS[-1]
    errors = [abs(round(level * seconds) / seconds - level) / level for level in levels if level > 0]
    return RateUnit(unit, seconds, False, max(errors, default=0.0))


# k6 interrupts an iteration still running when gracefulStop (or gracefulRampDown) runs out; a request's
# timeout fires at the same moment at the earliest, so the grace exceeds the longest timeout by this much.
GRACE_MARGIN_S = 2


def graceful_stop(scenario: Scenario) -> str:
    """Long enough for a request in flight at the end to finish or time out and its VU to write its
    records, so none is cut unjudged or unwritten."""
    longest = max((task.timeout_s for task in scenario.mix), default=30.0)  # a flow's steps one by one
    return format_duration(math.ceil(longest) + GRACE_MARGIN_S)


def executor_lines(scenario: Scenario) -> tuple[list[str], list[str]]:
    """The k6 scenario's settings as `key: value` lines, and warnings about rounding."""
    load: LoadProfile = scenario.load
    stages = load.stages
    first = stages[0].start if stages else 0.0
    levels = [first, *(s.end for s in stages)]
    warnings: list[str] = []
    stop = graceful_stop(scenario)
    if load.model == "closed":
        scale = 1.0
        fractional = [level for level in levels if abs(level - round(level)) > 1e-9]
        if fractional:
            warnings.append(
                f"k6 runs whole virtual users: {number(fractional[0])} users was rounded to "
                f"{round(fractional[0])}"
            )
        lines = ['executor: "ramping-vus"', f"startVUs: {round(first)}"]
    else:
        rate = time_unit_for(levels)
        scale = rate.seconds
        if not rate.exact:
            warnings.append(
                f"k6 arrival rates are whole numbers per time unit: rates were rounded to a multiple of "
                f"1/{rate.unit[1:]}, off by up to {rate.worst_error:.3%}"
            )
        pre = max(1, load.pre_allocated_users)
        lines = [
            'executor: "ramping-arrival-rate"',
            f"startRate: {round(first * scale)}",
            f'timeUnit: "{rate.unit}"',
            f"preAllocatedVUs: {pre}",
            f"maxVUs: {max(pre, load.max_users)}",
        ]
    stage_list = ", ".join(
        f'{{ duration: "{format_duration(s.duration_s)}", target: {round(s.end * scale)} }}' for s in stages
    )
    lines.append(f"stages: [{stage_list}]")
    lines.append(f'gracefulStop: "{stop}"')
    if load.model == "closed":
        lines.append(f'gracefulRampDown: "{stop}"')
    return lines, warnings


def think_time_spec(think: Distribution) -> str:
    return js_literal({"kind": think.kind, **dict(think.params)})


# --- thresholds -----------------------------------------------------------------------------------


@dataclass
class Threshold:
    key: str
    conditions: list[str]
    comments: list[str]


def _statistic(slo: Slo) -> str:
    if slo.statistic and slo.statistic.startswith("p"):
        return f"p({slo.statistic[1:]})"
    return STAT_FOR[slo.statistic or "mean"]


def threshold_for(slo: Slo, scenario: Scenario) -> tuple[list[tuple[str, str]], str | None]:
    """[(threshold key, condition)] for one SLO, or why it cannot be a k6 threshold."""
    if slo.metric in TREND_METRICS | FLEET_METRICS:  # a slope over the run, the GPUs' samples: judged after
        return [], None
    if slo.metric in UNMEASURABLE:
        return [], (
            f"k6 reads whole responses and cannot measure {UNMEASURABLE[slo.metric]}; "
            "this SLO will be reported as not measured"
        )
    if slo.metric in ("recovery_time", "goodput", "success_rate") or (slo.metric, slo.statistic) == (
        "throughput",
        "max",
    ):
        return [], None  # per-second, per-request or per-fault figures: scenariokit judges them, no warning
    window = slo.window
    if window is not None and window.stage is None:
        return [], "k6 thresholds hold over the whole test, not a time window; scenariokit judges it"
    stage_names = {s.label for s in scenario.load.stages} | {s.kind for s in scenario.load.stages}
    if window is not None and (window.after or window.stage not in stage_names):
        return [], "k6 cannot filter on a fault's window or an `after` window; scenariokit judges it"
    if slo.metric == "dropped_iterations" and (slo.requests or window is not None):
        return [], "k6 counts dropped iterations for the whole test only; scenariokit judges it"
    if slo.metric == "throughput" and window is not None:
        return [], "a k6 counter's rate is over the whole test, not one stage; scenariokit judges it"
    filters: list[str] = []
    if window is not None and window.stage is not None:
        # `during spike` names a kind (every spike) or, when no stage has that kind, one label.
        kinds = {s.kind for s in scenario.load.stages}
        filters.append(f"{'stage_kind' if window.stage in kinds else 'stage'}:{window.stage}")
        if not tag_safe(window.stage):
            return [], f"k6 cannot filter on a stage named {window.stage!r}; scenariokit judges it"
    bad = [name for name in slo.requests if not tag_safe(name)]
    if bad:
        return [], f"k6 cannot filter on a request named {bad[0]!r}; scenariokit judges it"
    if slo.metric in TREND_FOR:
        metric, condition = TREND_FOR[slo.metric], f"{_statistic(slo)}{slo.op}{number(slo.threshold * 1000)}"
    elif slo.metric == "error_rate":
        # error_rate < x  <=>  success rate > 1 - x (every request is either)
        metric, condition = "sk_ok", f"rate{INVERSE_OP[slo.op]}{number(round(1 - slo.threshold, 12))}"
    elif slo.metric == "throughput":
        metric, condition = "sk_successes", f"rate{slo.op}{number(slo.threshold)}"
    else:  # dropped_iterations
        metric, condition = "dropped_iterations", f"count{slo.op}{number(slo.threshold)}"
    names: list[str | None] = [*slo.requests] or [None]
    keys = []
    for name in names:
        tags = ([f"name:{name}"] if name is not None else []) + filters
        keys.append(f"{metric}{{{','.join(tags)}}}" if tags else metric)
    return [(key, condition) for key in keys], None


def thresholds(scenario: Scenario) -> tuple[list[Threshold], list[Diagnostic]]:
    by_key: dict[str, Threshold] = {}
    diagnostics = []
    for slo in scenario.slos:
        pairs, reason = threshold_for(slo, scenario)
        if reason:
            unmeasurable = slo.metric in UNMEASURABLE
            diagnostics.append(
                Diagnostic(
                    slo.span,
                    f"`{slo.text}`: {reason}",
                    "use --engine locust" if unmeasurable else None,
                    Severity.WARNING,
                )
            )
        for key, condition in pairs:
            entry = by_key.setdefault(key, Threshold(key, [], []))
            if condition not in entry.conditions:
                entry.conditions.append(condition)
            entry.comments.append(f"{comment_safe(slo.text)} -> {condition}")
    return list(by_key.values()), diagnostics


# The runtime's metric points, which exist only for the script's own thresholds: SCENARIO.emit flag ->
# metric (the runner's records are console lines, not points).
THRESHOLD_ONLY_METRICS = {
    "latency": "sk_latency",
    "ok": "sk_ok",
    "successes": "sk_successes",
    "ttfb": "sk_ttfb",
}


def emit_flags(limits: list[Threshold]) -> dict[str, bool]:
    """Which points the runtime sends in a stock `k6 run`: each costs k6 a sample per request, so only
    those a threshold reads."""
    used = {t.key.split("{", 1)[0] for t in limits}
    return {flag: metric in used for flag, metric in THRESHOLD_ONLY_METRICS.items()}


def conditions_literal(threshold: Threshold) -> str:
    """The conditions as a JS array. They hold only our aggregations, operators and numbers (no scenario
    text), so they are written plainly (`"p(99)<500"`, not `"p(99)\\u003c500"`); anything else is refused."""
    for condition in threshold.conditions:
        if not _CONDITION.fullmatch(condition):
            raise ValueError(f"not a k6 threshold condition: {condition!r}")
    return json.dumps(threshold.conditions)


# --- requests -------------------------------------------------------------------------------------


def template_parts(template: Template) -> list[Any]:
    """A template's parts as the runtime's `render` reads them: literal text, {data, field}, {env}."""
    parts: list[Any] = []
    for part in template.parts:
        if isinstance(part, DataRef):
            parts.append({"data": part.dataset, "field": part.field})
        elif isinstance(part, EnvRef):
            parts.append({"env": part.name})
        else:
            parts.append(part.text)
    return parts


def js_text(value: Text | None) -> str:
    """A string as a JS literal, a template as `template([...parts])` (the runtime's constructor)."""
    if isinstance(value, Template):
        return f"template({js_literal(template_parts(value))})"
    return js_literal(value)


def js_json(value: JsonTemplate) -> str:
    """A JSON body as JS: JSON literals, with `template(...)` where a string is a template."""
    if isinstance(value, Template):
        return js_text(value)
    if next(templates_in(value), None) is None:
        return js_literal(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{js_key(key)}: {js_json(item)}" for key, item in value.items()) + "}"
    assert isinstance(value, list)
    return "[" + ", ".join(js_json(item) for item in value) + "]"


def request_lines(request: RequestTemplate) -> list[str]:
    headers = ", ".join(f"{js_key(name)}: {js_text(value)}" for name, value in request.headers)
    flow = [] if request.flow is None else [f"flow: {js_literal(request.flow)}"]
    return [
        f"name: {js_literal(request.name)}",
        *flow,
        f"weight: {number(request.weight)}",
        f"method: {js_literal(request.method)}",
        f"path: {js_text(request.path)}",
        f"headers: {{{headers}}}",
        f"json: {js_json(request.json_body)}",
        f"body: {js_text(request.text_body)}",
        f"datasets: {js_literal(list(request.datasets))}",
        f"chat: {js_literal(request.chat)}",
        f"stream: {js_literal(request.stream)}",
        f"expectStatus: {js_literal(list(request.expect.status))}",
        f"expectContains: {js_text(request.expect.contains)}",
        f"timeout: {number(request.timeout_s)}",
    ]


def _environment(files_dir: Path) -> Environment:
    return Environment(
        loader=FileSystemLoader(files_dir),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def compile_k6(scenario: Scenario, files_dir: Path) -> CompiledScript:
    """The k6 script, its runtime helper and data files, with what k6 cannot express or measure as
    warnings (reported once)."""
    entry = f"{scenario.name}.k6.js"
    executor, rounding = executor_lines(scenario)
    limits, diagnostics = thresholds(scenario)
    load_span = scenario.load.stages[0].span if scenario.load.stages else scenario.load.span
    diagnostics += [Diagnostic(load_span, w, None, Severity.WARNING) for w in rounding]
    diagnostics += body_diagnostics(scenario)
    context = {
        "header": [comment_safe(line) for line in header_lines(scenario)],
        "entry": comment_safe(entry),
        "name": js_literal(scenario.name),
        "base_url": js_literal(scenario.default_base_url),
        "seed": number(scenario.seed),
        "think_time": scenario.load.model == "closed" and scenario.load.think_time.kind != "none",
        "think_time_spec": think_time_spec(scenario.load.think_time),
        "emit": js_literal(emit_flags(limits)),
        "load_model": js_literal(scenario.load.model),
        "stages": [
            js_literal(
                {
                    "label": s.label,
                    "kind": s.kind,
                    "start": s.start_s,
                    "end": s.end_s,
                    "from": s.start,
                    "to": s.end,
                }
            )
            for s in scenario.load.table.stages
        ],
        "failures": [js_literal([f.kind, list(f.k6_codes), list(f.fragments)]) for f in FAILURES],
        "datasets": [
            {
                "key": js_literal(d.name),
                "pick": js_literal(d.pick),
                "split": js_literal(d.split) if d.split else None,
                "file": js_literal(f"./data/{d.name}.json"),
            }
            for d in scenario.datasets
        ],
        "requests": [request_lines(r) for r in scenario.requests],
        "templated": any(r.templates for r in scenario.requests),
        "flows": any(task.is_flow for task in scenario.mix),
        "scenario_key": "load" if scenario.load.model == "closed" else "arrivals",
        "executor": executor,
        "thresholds": [
            {"key": js_literal(t.key), "conditions": conditions_literal(t), "comments": t.comments}
            for t in limits
        ],
    }
    if uses_lean_script(scenario):
        context |= lean_context(scenario, emit_flags(limits))
        context["base_url"] = js_literal(scenario.default_base_url.rstrip("/"))
        script = _environment(files_dir).get_template(LEAN_TEMPLATE).render(context)
        files = {entry: script, **dataset_files(scenario)}
        return CompiledScript("k6", entry, files, tuple(diagnostics))
    script = _environment(files_dir).get_template(TEMPLATE).render(context)
    runtime = (files_dir / RUNTIME).read_text(encoding="utf-8")
    files = {entry: script, RUNTIME: runtime, **dataset_files(scenario)}
    return CompiledScript("k6", entry, files, tuple(diagnostics))
