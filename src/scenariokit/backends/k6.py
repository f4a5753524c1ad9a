"""The k6 backend: a k6 script with scenarios, thresholds and a data-driven request table.

Closed models become a `ramping-vus` scenario, open models a `ramping-arrival-rate` one (with a time unit
that keeps every target an integer, so rates below 1/s work). SLOs become k6 thresholds, one key per
metric and tag filter with all its conditions (k6 silently ignores duplicate keys); stage windows become tag
filters, which k6 alone cannot express. What k6 cannot measure (time to first token, inter-token latency)
is reported as a warning and judged "not measured", never dropped silently. Every value from the scenario
reaches the script as a JSON literal with `<`, `>`, `&` and line separators escaped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from scenariokit.backends import CompiledScript, dataset_files, engine_files_dir, header_lines, register
from scenariokit.diagnostics import Diagnostic, Severity
from scenariokit.expr import format_duration
from scenariokit.ir import Distribution, LoadProfile, RequestTemplate, Scenario, Slo

RUNTIME = "scenariokit-runtime.js"
UNMEASURABLE = {"ttft": "time to first token", "itl": "inter-token latency", "tpot": "time per output token"}
TREND_FOR = {"latency": "sk_latency", "ttfb": "sk_ttfb"}
STAT_FOR = {"mean": "avg", "median": "med", "min": "min", "max": "max"}
TIME_UNITS = (("1s", 1.0), ("1m", 60.0), ("1h", 3600.0))
# Characters that k6's threshold-key parser gives meaning to: such a name cannot be a tag filter.
_K6_KEY_SYNTAX = set("{}:,")


def js_literal(value: Any) -> str:
    """A JavaScript literal for a JSON value that is safe anywhere in a script (even inside <script>)."""
    text = json.dumps(value, ensure_ascii=True, sort_keys=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def comment_safe(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def number(value: float) -> str:
    return format(value, ".12g")


# --- load -----------------------------------------------------------------------------------------


def time_unit_for(levels: list[float]) -> tuple[str, float, bool]:
    """The coarsest-first k6 timeUnit that makes every rate an integer: (unit, seconds, exact)."""
    for unit, seconds in TIME_UNITS:
        if all(abs(level * seconds - round(level * seconds)) < 1e-6 for level in levels):
            return unit, seconds, True
    return "1h", 3600.0, False


def executor_lines(load: LoadProfile) -> tuple[list[str], list[str]]:
    """The scenario's executor settings as `key: value` lines, and warnings about rounding."""
    stages = load.stages
    first = stages[0].start if stages else 0
    warnings: list[str] = []
    if load.model == "closed":
        lines = ['executor: "ramping-vus"', f"startVUs: {round(first)}"]
        scale = 1.0
    else:
        levels = [first, *(s.end for s in stages)]
        unit, scale, exact = time_unit_for(levels)
        if not exact:
            warnings.append(
                f"k6 arrival rates are whole numbers per time unit: rates were rounded to 1/{unit}"
            )
        lines = [
            'executor: "ramping-arrival-rate"',
            f"startRate: {round(first * scale)}",
            f'timeUnit: "{unit}"',
            f"preAllocatedVUs: {max(1, load.pre_allocated_users)}",
            f"maxVUs: {max(1, load.max_users, load.pre_allocated_users)}",
        ]
    stage_list = ", ".join(
        f'{{ duration: "{format_duration(s.duration_s)}", target: {round(s.end * scale)} }}' for s in stages
    )
    lines.append(f"stages: [{stage_list}]")
    lines += ['gracefulStop: "10s"'] + (['gracefulRampDown: "5s"'] if load.model == "closed" else [])
    return lines, warnings


def think_time_spec(think: Distribution) -> str:
    return js_literal({"kind": think.kind, **dict(think.params)})


# --- thresholds -----------------------------------------------------------------------------------


@dataclass
class Threshold:
    key: str
    conditions: list[str]
    comments: list[str]


def threshold_for(slo: Slo, scenario: Scenario) -> tuple[list[tuple[str, str]], str | None]:
    """[(metric key, condition)] for one SLO, or a reason it cannot be a k6 threshold."""
    if slo.metric in UNMEASURABLE:
        return [], f"k6 reads whole responses and cannot measure {UNMEASURABLE[slo.metric]}"
    if slo.window is not None and slo.window.stage is None:
        return (
            [],
            "k6 thresholds hold over the whole test; scenariokit judges this time window from the records",
        )
    names = list(slo.requests) or [None]
    filters: list[str] = []
    if slo.window is not None and slo.window.stage is not None:
        labels = {s.label for s in scenario.load.stages}
        tag = "stage" if slo.window.stage in labels else "stage_kind"
        filters.append(f"{tag}:{slo.window.stage}")
    bad = [n for n in [*slo.requests, *(f.split(":", 1)[1] for f in filters)] if _K6_KEY_SYNTAX & set(n)]
    if bad:
        return [], f"`{bad[0]}` holds a character k6 cannot put in a threshold key; scenariokit judges it"
    if slo.metric in TREND_FOR:
        metric = TREND_FOR[slo.metric]
        stat = (
            f"p({number(slo.percentile)})"
            if slo.statistic and slo.statistic.startswith("p")
            else (STAT_FOR[slo.statistic or "mean"])
        )
        condition = f"{stat}{slo.op}{number(slo.threshold * 1000)}"
    elif slo.metric == "error_rate":
        inverse = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[slo.op]
        metric, condition = "sk_ok", f"rate{inverse}{number(1 - slo.threshold)}"
    elif slo.metric == "throughput":
        metric, condition = "sk_successes", f"rate{slo.op}{number(slo.threshold)}"
    else:  # dropped_iterations
        metric, condition = "dropped_iterations", f"count{slo.op}{number(slo.threshold)}"
    keys = []
    for name in names:
        tags = ([f"name:{name}"] if name else []) + filters
        keys.append(f"{metric}{{{','.join(tags)}}}" if tags else metric)
    return [(key, condition) for key in keys], None


def thresholds(scenario: Scenario) -> tuple[list[Threshold], list[Diagnostic]]:
    by_key: dict[str, Threshold] = {}
    diagnostics = []
    for slo in scenario.slos:
        pairs, reason = threshold_for(slo, scenario)
        if reason:
            diagnostics.append(
                Diagnostic(
                    slo.span,
                    f"`{slo.text}`: {reason}; this SLO is judged by scenariokit "
                    "only" + (" and will be reported as not measured" if slo.metric in UNMEASURABLE else ""),
                    "use --engine locust to measure it" if slo.metric in UNMEASURABLE else None,
                    Severity.WARNING,
                )
            )
        for key, condition in pairs:
            entry = by_key.setdefault(key, Threshold(key, [], []))
            if condition not in entry.conditions:
                entry.conditions.append(condition)
            entry.comments.append(comment_safe(slo.text))
    return list(by_key.values()), diagnostics


# --- requests -------------------------------------------------------------------------------------


def request_lines(request: RequestTemplate) -> list[str]:
    return [
        f"name: {js_literal(request.name)}",
        f"weight: {number(request.weight)}",
        f"method: {js_literal(request.method)}",
        f"path: {js_literal(request.path)}",
        f"headers: {js_literal(dict(request.headers))}",
        f"json: {js_literal(request.json_body)}",
        f"body: {js_literal(request.text_body)}",
        f"chat: {js_literal(request.chat)}",
        f"stream: {js_literal(request.stream)}",
        f"expectStatus: {js_literal(list(request.expect.status))}",
        f"expectContains: {js_literal(request.expect.contains)}",
        f"timeout: {number(request.timeout_s)}",
    ]


@register("k6")
class K6Backend:
    name = "k6"

    def check(self, scenario: Scenario) -> list[Diagnostic]:
        _, diagnostics = thresholds(scenario)
        return diagnostics

    def emit(self, scenario: Scenario) -> CompiledScript:
        entry = f"{scenario.name}.k6.js"
        env = Environment(
            loader=FileSystemLoader(engine_files_dir("k6")),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        executor, rounding = executor_lines(scenario.load)
        limits, _ = thresholds(scenario)
        context = {
            "header": [comment_safe(line) for line in header_lines(scenario)],
            "entry": comment_safe(entry),
            "name": js_literal(scenario.name),
            "base_url": js_literal(scenario.default_base_url),
            "headers": js_literal(dict(scenario.target.headers)),
            "seed": number(scenario.seed),
            "think_time": scenario.load.model == "closed" and scenario.load.think_time.kind != "none",
            "think_time_spec": think_time_spec(scenario.load.think_time),
            "stages": [
                js_literal({"label": s.label, "kind": s.kind, "duration": s.duration_s})
                for s in scenario.load.stages
            ],
            "datasets": [
                {
                    "key": js_literal(d.name),
                    "default_field": js_literal(d.default_field),
                    "pick": js_literal(d.pick),
                    "file": js_literal(f"./data/{d.name}.json"),
                }
                for d in scenario.datasets
            ],
            "requests": [request_lines(r) for r in scenario.requests],
            "scenario_key": "load" if scenario.load.model == "closed" else "arrivals",
            "executor": executor,
            # conditions are made only of our operators and numbers; keys may hold user names
            "thresholds": [
                {
                    "key": js_literal(t.key),
                    "conditions": json.dumps(t.conditions),
                    "comment": "; ".join(t.comments),
                }
                for t in limits
            ],
        }
        script = env.get_template("script.js.j2").render(context)
        runtime = (engine_files_dir("k6") / RUNTIME).read_text(encoding="utf-8")
        diagnostics = tuple(Diagnostic(scenario.load.span, w, None, Severity.WARNING) for w in rounding)
        return CompiledScript(
            self.name, entry, {entry: script, RUNTIME: runtime, **dataset_files(scenario)}, diagnostics
        )
