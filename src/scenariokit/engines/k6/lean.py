"""The k6 script written out for its scenario: each request's send, judging and record as code.

k6 runs every VU in its own JavaScript runtime, which evaluates the whole script: each function a VU
keeps, each object, each extra module and each built-in it first uses (RegExp the costliest) costs it
memory, while code that is never run costs next to nothing (the program is compiled once). The generic
runtime (scenariokit-runtime.js) keeps ~80 functions and a table of prepared objects per request in every
VU. This script keeps what a hand-written one would: constants, a handful of arrow functions, each
request's code inline in the default function (docs/performance.md, "Where a k6 VU's memory goes", and
"Per-user cost at scale" for the ratios to a stock script).

It is used where each request's record is written at once: a closed model with think time, or an open
model; both are where thousands of VUs come from. A closed model without think time (a few VUs sending
back to back, where the rate matters and the runtime's batched records pay) keeps the runtime.

Every value from the scenario reaches the script as a JSON literal (`js_literal`): data, never code. The
records are the runtime's format with the numbers as JSON (`"n"`, see engines/k6/reader.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scenariokit.compile.ir import (
    DataRef,
    EnvRef,
    JsonTemplate,
    RequestTemplate,
    Scenario,
    Task,
    Template,
    Text,
    templates_in,
)
from scenariokit.engines.k6.js import comment_safe, js_key, js_literal, number
from scenariokit.engines.outcomes import FAILURES


def uses_lean_script(scenario: Scenario) -> bool:
    """Whether the scenario's k6 script is written out (this module) rather than the runtime's tables:
    every record is written at once (think time, or an open model), so nothing is batched."""
    load = scenario.load
    return load.model == "open" or load.think_time.kind != "none"


# --- expressions ------------------------------------------------------------------------------------


def text_expr(value: Text | None, rows: dict[str, str]) -> str:
    """A JS expression for a string: a literal, or a template's parts joined as the runtime's `render`
    joins them (an unset environment variable adds nothing; a data field is added as it is)."""
    if value is None:
        return "null"
    if not isinstance(value, Template):
        return js_literal(value)
    pieces: list[str] = []
    for part in value.parts:
        if isinstance(part, DataRef):
            pieces.append(f"{rows[part.dataset]}[{js_literal(part.field)}]")
        elif isinstance(part, EnvRef):
            pieces.append(f'(__ENV[{js_literal(part.name)}] ?? "")')
        else:
            pieces.append(js_literal(part.text))
    if not pieces or not pieces[0].startswith('"'):
        pieces.insert(0, '""')  # the join is a string even where it starts with a data field
    return " + ".join(pieces)


def json_expr(value: JsonTemplate, rows: dict[str, str]) -> str:
    """A JS expression for a JSON body's tree, templates rendered (JSON.stringify makes it the body)."""
    if isinstance(value, Template):
        return text_expr(value, rows)
    if next(templates_in(value), None) is None:
        return js_literal(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{js_key(key)}: {json_expr(item, rows)}" for key, item in value.items()) + "}"
    assert isinstance(value, list)
    return "[" + ", ".join(json_expr(item, rows) for item in value) + "]"


def env_names(request: RequestTemplate) -> list[str]:
    """The environment variables its templates read (their values never appear in a record)."""
    return list(dict.fromkeys(p.name for t in request.templates for p in t.parts if isinstance(p, EnvRef)))


# --- requests -----------------------------------------------------------------------------------------

NAMED_CALLS = {"GET": "get", "HEAD": "head", "POST": "post", "PUT": "put", "PATCH": "patch"}
NAMED_CALLS |= {"DELETE": "del", "OPTIONS": "options"}


@dataclass
class LeanRequest:
    """One request's constants (evaluated once per VU at init) and its send (inside the default
    function), as JS lines."""

    request: RequestTemplate
    constants: list[str]
    send: list[str]


def _params(request: RequestTemplate, headers: str | None, callbacks: bool) -> str | None:
    """The params object's JS, only the keys that differ from the script's defaults (k6 converts params
    on every request: docs/performance.md, settings table)."""
    entries: list[str] = []
    if headers is not None:
        entries.append(f"headers: {headers}")
    if request.chat or request.expect.contains is not None:
        entries.append('responseType: "text"')
    if request.timeout_s != 60:
        entries.append(f"timeout: {round(request.timeout_s * 1000)}")
    if isinstance(request.path, Template) and request.path.datasets:
        entries.append(f"tags: {{ name: {js_literal(request.name)} }}")  # one time series, not one per record
    plain = "{ " + ", ".join(entries) + " }" if entries else None
    if not callbacks:
        return plain
    # k6's own http_req_failed, for a stock run's summary only: with records, no callback to convert
    stock = "{ " + ", ".join([*entries, f"responseCallback: {_callback(request)}"]) + " }"
    return f"(RECORDS ? {plain or 'null'} : {stock})"


def _callback(request: RequestTemplate) -> str:
    statuses = list(request.expect.status)
    if statuses:
        return f"http.expectedStatuses({', '.join(str(s) for s in statuses)})"
    return "http.expectedStatuses({ min: 200, max: 299 })"


def _call(request: RequestTemplate, url: str, body: str | None, params: str | None) -> str:
    """The k6 call: the named function with no argument the request lacks; a GET or HEAD with a body
    through http.request."""
    bodiless = request.method in ("GET", "HEAD")
    if bodiless and body is not None:
        return f"http.request({js_literal(request.method)}, {url}, {body}, {params or 'null'})"
    name = NAMED_CALLS.get(request.method)
    if name is None:
        return f"http.request({js_literal(request.method)}, {url}, {body or 'null'}, {params or 'null'})"
    args = [url] if bodiless else [url, body or "null"]
    if params is not None:
        args.append(params)
    return f"http.{name}({', '.join(args)})"


def lean_request(
    index: int, request: RequestTemplate, rows: dict[str, str], callbacks: bool, judged_script: bool
) -> LeanRequest:
    """Constants and send for one request; `rows` names the JS variable holding each data set's record
    drawn for this request (or its flow); `judged_script`: the script's `done` reads answers (some
    request of the scenario does)."""
    fixed = not request.datasets  # nothing drawn per request: rendered once per VU at init
    i = index
    constants: list[str] = []
    url = f"BASE + {text_expr(request.path, rows)}"
    body: str | None = None
    if request.json_body is not None:
        body = f"JSON.stringify({json_expr(request.json_body, rows)})"
    elif request.text_body is not None:
        body = text_expr(request.text_body, rows)
    headers = (
        "{ "
        + ", ".join(f"{js_key(name)}: {text_expr(value, rows)}" for name, value in request.headers)
        + " }"
        if request.headers
        else None
    )
    contains = request.expect.contains
    contains_expr = None if contains is None else f"normalizeText({text_expr(contains, rows)})"
    send = [f"// {_comment(request)}", "{"]
    if headers is not None:
        if any(t.datasets for _, value in request.headers for t in templates_in(value)):
            send.append(f"  const headers = {headers};")  # rendered per request
            headers = "headers"
        else:
            constants.append(f"const HEADERS_{i} = {headers};")  # no data record: the same every time
            headers = f"HEADERS_{i}"
    if fixed:
        constants.append(f"const URL_{i} = {url};")
        url = f"URL_{i}"
        if body is not None:
            constants.append(f"const BODY_{i} = {body};")
            body = f"BODY_{i}"
        if contains_expr is not None:
            constants.append(f"const CONTAINS_{i} = {contains_expr};")
            contains_expr = f"CONTAINS_{i}"
    params = _params(request, headers, callbacks)
    if params is not None and headers == "headers":
        send.append(f"  const params = {params};")
        params = "params"
    elif params is not None:
        constants.append(f"const PARAMS_{i} = {params};")  # nothing in it is rendered per request
        params = f"PARAMS_{i}"
    statuses = list(request.expect.status)
    expected = "null"  # any 2xx
    if statuses:  # a test, not an array: Array's methods are a built-in a VU would make (see the script)
        test = " || ".join(f"status === {s}" for s in statuses)
        constants.append(f"const EXPECT_{i} = (status) => {test};")
        expected = f"EXPECT_{i}"
    send.append("  const t0 = Date.now();")
    send.append(f"  const res = {_call(request, url, body, params)};")
    args = [str(i), "t0", "res", expected]
    if judged_script:
        args += [js_literal(request.chat), js_literal(request.stream), contains_expr or "null"]
    names = env_names(request)  # what a failure's message must not quote, with the header values
    if names:
        secrets = ", ".join(f'__ENV[{js_literal(n)}] ?? ""' for n in names)
        constants.append(f"const SECRETS_{i} = [{secrets}];")
    args.append(f"SECRETS_{i}" if names else "null")
    args.append("null" if headers is None else headers)
    send.append(f"  done({', '.join(args)});")
    send.append("}")
    if constants:
        constants.insert(0, f"// {_comment(request)}")
    return LeanRequest(request, constants, send)


def _comment(request: RequestTemplate) -> str:
    path = request.path if isinstance(request.path, str) else "(rendered per request)"
    return comment_safe(f"{request.name}: {request.method} {path}")


# --- the mix ---------------------------------------------------------------------------------------------


def _rows(names: tuple[str, ...], dataset_index: dict[str, int]) -> tuple[list[str], dict[str, str]]:
    """Lines drawing one record of each named data set, in order (the runtime's `row`), and the
    variable holding each."""
    lines = [f"const r{dataset_index[name]} = draw(DATA_{dataset_index[name]});" for name in names]
    return lines, {name: f"r{dataset_index[name]}" for name in names}


def task_lines(
    task: Task, first_index: int, dataset_index: dict[str, int], callbacks: bool, judged: bool
) -> tuple[list[str], list[LeanRequest]]:
    """A mix entry's code: its data records drawn once (shared by a flow's steps), then each step's send
    in order."""
    draws, rows = _rows(task.datasets, dataset_index)
    made = [lean_request(first_index + k, step, rows, callbacks, judged) for k, step in enumerate(task.steps)]
    lines = list(draws)
    for request in made:
        lines += request.send
    return lines, made


def reads_answers(scenario: Scenario) -> bool:
    return any(r.chat or r.expect.contains is not None for r in scenario.requests)


def mix_lines(scenario: Scenario, callbacks: bool) -> tuple[list[str], list[LeanRequest]]:
    """The default function's body before think time: one entry drawn by weight (no draw for one entry,
    as the runtime), its code."""
    dataset_index = {d.name: i for i, d in enumerate(scenario.datasets)}
    blocks: list[list[str]] = []
    requests: list[LeanRequest] = []
    cumulative: list[float] = []
    total = 0.0
    judged = reads_answers(scenario)
    for task in scenario.mix:
        lines, made = task_lines(task, len(requests), dataset_index, callbacks, judged)
        requests += made
        total += max(0.0, task.weight)
        cumulative.append(total)
        blocks.append(lines)
    if len(blocks) == 1:
        return blocks[0], requests
    out = [f"const x = random() * {number(total)};"]
    for k, lines in enumerate(blocks):
        test = f"if (x < {number(cumulative[k])}) {{"
        out.append("} else {" if k == len(blocks) - 1 else test if k == 0 else "} else " + test)
        out += [f"  {line}" for line in lines]
    out.append("}")
    return out, requests


def think_expr(scenario: Scenario) -> str | None:
    """Seconds of think time drawn from the scenario's distribution, as the runtime's `thinkTime` draws
    them (None: no think time, or an open model)."""
    think = scenario.load.think_time
    if scenario.load.model != "closed" or think.kind == "none":
        return None
    p = {key: number(value) for key, value in think.params}
    if think.kind == "constant":
        return number(max(0.0, think.param("value")))
    if think.kind == "uniform":
        return f"Math.max(0, {p['low']} + ({p['high']} - {p['low']}) * random())"
    if think.kind == "exponential":
        return f"Math.max(0, -{p['mean']} * Math.log(1 - random()))"
    if think.kind == "normal":
        return f"normalThink({p['mean']}, {p['sd']})"
    raise ValueError(f"no think time of kind {think.kind!r}")


def failure_rows() -> list[str]:
    return [js_literal([f.kind, list(f.k6_codes), list(f.fragments)]) for f in FAILURES]


# emit flag -> the metric the thresholds read, its JS variable, kind, and how a point is added
METRICS = {
    "latency": ('"sk_latency"', "skLatency", "Trend", True, "skLatency.add(timings.duration, tags)"),
    "ok": ('"sk_ok"', "skOk", "Rate", False, 'skOk.add(error === "", tags)'),
    "successes": (
        '"sk_successes"',
        "skSuccesses",
        "Counter",
        False,
        'if (error === "") skSuccesses.add(1, tags)',
    ),
    "ttfb": ('"sk_ttfb"', "skTtfb", "Trend", True, "skTtfb.add(timings.waiting, tags)"),
}


def metric_entries(emit: dict[str, bool]) -> list[dict[str, Any]]:
    """The metrics a stock `k6 run` sends: only those a threshold reads (each costs k6 a sample)."""
    entries = []
    for flag, (name, var, kind, time, add) in METRICS.items():
        if emit.get(flag):
            entries.append({"name": name, "var": var, "kind": kind, "time": time, "add": add})
    return entries


def lean_context(scenario: Scenario, emit: dict[str, bool]) -> dict[str, Any]:
    """What lean.k6.js.j2 needs beyond the shared header, options and thresholds."""
    statuses = {tuple(r.expect.status) for r in scenario.requests}
    callbacks = len(statuses) > 1  # else one callback for all (http.setResponseCallback)
    body, requests = mix_lines(scenario, callbacks)
    windows = [s for s in scenario.load.table.stages if s.end_s > s.start_s]
    return {
        "body": body,
        "constants": [line for r in requests for line in r.constants],
        "names": [js_literal(js_literal(r.request.name)) for r in requests],
        "tag_names": [js_literal(r.request.name) for r in requests],
        "common_callback": None if callbacks or not scenario.requests else _callback(scenario.requests[0]),
        "stage_ends": [number(s.end_s) for s in windows],
        "stage_labels": [js_literal(js_literal(s.label)) for s in windows],
        "stage_tags": [js_literal([s.label, s.kind]) for s in windows],
        "chat": any(r.chat for r in scenario.requests),
        "contains": any(r.expect.contains is not None for r in scenario.requests),
        "judged": reads_answers(scenario),
        "metrics": metric_entries(emit),
        "sequential": any(d.pick == "sequential" for d in scenario.datasets),
        "think": think_expr(scenario),
        "normal_think": scenario.load.think_time.kind == "normal",
        "failures": failure_rows(),
        "datasets": [
            {
                "name": js_literal(d.name),
                "file": js_literal(f"./data/{d.name}.json"),
                "sequential": js_literal(d.pick == "sequential"),
                "split": js_literal(d.split == "workers"),
            }
            for d in scenario.datasets
        ],
    }
