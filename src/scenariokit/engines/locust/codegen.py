"""The Locust backend: a locustfile that reads like one written by hand, plus its runtime helper.

One FastHttpUser with one `@task(weight)` method per request, a `wait_time`, and a LoadTestShape that
follows the curve. Every value from the scenario reaches the script through `repr()` (Python literals),
never as pasted text; identifiers are derived from names by sanitizing them; comments hold no user text
that could end a line.
"""

from __future__ import annotations

import keyword
import pprint
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from scenariokit.compile.ir import (
    DataRef,
    Distribution,
    EnvRef,
    JsonTemplate,
    RequestTemplate,
    Scenario,
    Template,
    integer_weights,
)
from scenariokit.engines.base import CompiledScript, dataset_files, header_lines
from scenariokit.engines.outcomes import FAILURES

RUNTIME = "scenariokit_locust_runtime.py"
TEMPLATE = "locustfile.py.j2"
# Names a task method must not take: FastHttpUser's attributes (listed, not imported: importing locust
# would monkey-patch this process with gevent), plus what the generated class itself uses.
_USER_ATTRIBUTES = [
    "abstract",
    "client",
    "client_pool",
    "concurrency",
    "connection_timeout",
    "context",
    "default_headers",
    "environment",
    "fixed_count",
    "fullname",
    "greenlet",
    "group",
    "host",
    "insecure",
    "json",
    "max_redirects",
    "max_retries",
    "max_wait",
    "min_wait",
    "network_timeout",
    "on_start",
    "on_stop",
    "proxy_host",
    "proxy_port",
    "rest",
    "rest_",
    "run",
    "ssl_context_factory",
    "start",
    "stop",
    "tasks",
    "wait",
    "wait_function",
    "wait_time",
    "weight",
]
_RESERVED = frozenset(_USER_ATTRIBUTES) | {"sk", "task", "SCENARIO"}
_RESERVED_CONSTS = frozenset({"SCENARIO"})


def comment_safe(text: str) -> str:
    """Text for a `#` comment: no character that could end the line or the comment."""
    return "".join(c if c.isprintable() else "?" for c in text)


def python_identifier(name: str, taken: set[str], reserved: frozenset[str] = frozenset()) -> str:
    ident = re.sub(r"[^0-9A-Za-z_]", "_", name) or "_"
    if ident[0].isdigit():
        ident = "_" + ident
    if keyword.iskeyword(ident) or ident in reserved or ident.startswith("__"):
        ident = "req_" + ident.lstrip("_")
    candidate, n = ident, 2
    while candidate in taken:
        candidate, n = f"{ident}_{n}", n + 1
    taken.add(candidate)
    return candidate


def class_name(name: str, suffix: str) -> str:
    words = re.findall(r"[0-9A-Za-z]+", name)
    base = "".join(w[:1].upper() + w[1:] for w in words) or "Scenario"
    if base[0].isdigit():
        base = "S" + base
    return base + suffix


def literal(value: Any, indent: int = 4) -> str:
    """A Python literal for a JSON-like value, wrapped readably; repr() keeps every string as data."""
    text = pprint.pformat(value, width=100, sort_dicts=False)
    return text.replace("\n", "\n" + " " * indent)


def template_data(template: Template) -> tuple[Any, ...]:
    """A template as the runtime's `render` reads it: a tuple of literal text, ("data", set, field) and
    ("env", NAME) parts."""
    parts: list[Any] = []
    for part in template.parts:
        if isinstance(part, DataRef):
            parts.append(("data", part.dataset, part.field))
        elif isinstance(part, EnvRef):
            parts.append(("env", part.name))
        else:
            parts.append(part.text)
    return tuple(parts)


def as_data(value: JsonTemplate) -> Any:
    """A text or JSON value with each template as its parts tuple (JSON itself has no tuples)."""
    if isinstance(value, Template):
        return template_data(value)
    if isinstance(value, dict):
        return {key: as_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_data(item) for item in value]
    return value


def wait_time_code(think: Distribution) -> tuple[str, str]:
    """(the `from locust import ...` name, the wait_time expression)."""
    match think.kind:
        case "none":
            return "constant", "constant(0)"
        case "constant":
            return "constant", f"constant({think.param('value')!r})"
        case "uniform":
            return "between", f"between({think.param('low')!r}, {think.param('high')!r})"
        case "exponential":
            return "constant", f"sk.exponential_wait({think.param('mean')!r})"
        case "normal":
            return "constant", f"sk.normal_wait({think.param('mean')!r}, {think.param('sd')!r})"
    raise AssertionError(think.kind)


@dataclass(frozen=True)
class RequestView:
    """A request's constant: `CONST = sk.Request(fields...)`."""

    const: str
    fields: list[str]


@dataclass(frozen=True)
class TaskView:
    """A `@task(weight)` method sending one request, or a flow's steps in order (`sk.send(A, B, ...)`)."""

    method: str
    weight: int
    flow: bool
    call: str  # the arguments of `self.sk.send(...)`


def request_fields(request: RequestTemplate) -> list[str]:
    fields = [f"name={request.name!r}", f"method={request.method!r}", f"path={as_data(request.path)!r}"]
    if request.headers:
        headers = {name: as_data(value) for name, value in request.headers}
        fields.append(f"headers={literal(headers, 4 + len('headers='))}")
    if request.json_body is not None:
        fields.append(f"json={literal(as_data(request.json_body), 4 + len('json='))}")
    if request.text_body is not None:
        fields.append(f"body={as_data(request.text_body)!r}")
    if request.datasets:
        fields.append(f"datasets={request.datasets!r}")
    if request.chat:
        fields.append("chat=True")
    if request.stream:
        fields.append("stream=True")
    if request.expect.status:
        fields.append(f"expect_status={request.expect.status!r}")
    if request.expect.contains is not None:
        fields.append(f"expect_contains={as_data(request.expect.contains)!r}")
    fields.append(f"timeout={request.timeout_s!r}")
    return fields


def compile_locust(scenario: Scenario, files_dir: Path) -> CompiledScript:
    """The locustfile, its runtime helper and data files. Locust's runtime measures every metric the DSL
    has (TTFT and ITL included), so there is nothing to report."""
    entry = f"{scenario.name}.locust.py"
    env = Environment(
        loader=FileSystemLoader(files_dir),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    script = env.get_template(TEMPLATE).render(template_context(scenario, entry))
    runtime = (files_dir / RUNTIME).read_text(encoding="utf-8")
    files = {entry: script, RUNTIME: runtime, **dataset_files(scenario)}
    return CompiledScript("locust", entry, files)


def task_views(scenario: Scenario, open_arg: str) -> tuple[list[RequestView], list[TaskView]]:
    """A constant per request (every step of a flow included) and a task method per entry of the mix.
    A task of one request keeps the names it always had: its method from its name, its constant the
    method's upper case; a step's constant comes from its record name (`<entry>.<step>`)."""
    methods: set[str] = set()
    consts: set[str] = set()
    weights = integer_weights([task.weight for task in scenario.mix])
    requests: list[RequestView] = []
    tasks: list[TaskView] = []
    for task, weight in zip(scenario.mix, weights, strict=True):
        method = python_identifier(task.name, methods, _RESERVED)
        names: list[str] = []
        for step in task.steps:
            base = method if not task.is_flow else python_identifier(step.name, set(), _RESERVED)
            names.append(python_identifier(base.upper(), consts, _RESERVED_CONSTS))
            requests.append(RequestView(names[-1], request_fields(step)))
        if len(names) == 1:
            call = f"{names[0]}{open_arg}"
        else:  # one argument a line: a flow of many steps stays readable
            args = [*names, *([open_arg.removeprefix(", ")] if open_arg else [])]
            call = "".join(f"\n            {arg}," for arg in args) + "\n        "
        tasks.append(TaskView(method, weight, task.is_flow, call))
    return requests, tasks


def template_context(scenario: Scenario, entry: str) -> dict[str, Any]:
    load = scenario.load
    wait_import, wait_time = wait_time_code(load.think_time)
    open_model = load.model == "open"
    requests, tasks = task_views(scenario, ", open_model=True" if open_model else "")
    unit = "requests/s" if open_model else "users"
    return {
        "header": [comment_safe(line) for line in header_lines(scenario)],
        "entry": comment_safe(entry),
        "locust_imports": ", ".join(
            sorted({"FastHttpUser", "LoadTestShape", "task", "constant" if open_model else wait_import})
        ),
        "name": repr(scenario.name),
        "base_url": repr(scenario.default_base_url),
        "datasets": repr([d.name for d in scenario.datasets]),
        "seed": repr(scenario.seed),
        "max_users": repr(load.max_users),
        "stages": [
            f"{w.label!r}, {w.kind!r}, start_s={w.start_s!r}, end_s={w.end_s!r}, "
            f"start={w.start!r}, end={w.end!r}"
            for w in load.table.stages
        ],
        "failures": [repr((f.kind, f.exceptions, f.fragments)) for f in FAILURES],
        "requests": requests,
        "tasks": tasks,
        "templated": any(r.templates for r in scenario.requests),
        "user_class": class_name(scenario.name, "User"),
        "shape_class": class_name(scenario.name, "Shape"),
        "shape_doc": f"{load.model.capitalize()} model: {len(load.stages)} stages over "
        f"{load.duration_s:g}s, peak {load.peak:g} {unit}.",
        "wait_time": "constant(0)" if open_model else wait_time,
        "open_model": open_model,
        "timeout": repr(max((r.timeout_s for r in scenario.requests), default=60.0)),
    }
