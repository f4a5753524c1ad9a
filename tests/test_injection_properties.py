"""Property: whole JSON values written in YAML reach both engines' scripts as the same data, never as code.

A scenario is written as YAML (by PyYAML's own dumper) with hostile values: nested JSON bodies (`json` and
`raw.json`) of every JSON type, big integers, unicode keys and strings with quotes, backslashes, `</script>`,
`${...}`, `{{ }}`, `%s`, U+2028/U+2029 and NUL, in header names and values, and as request names. It goes
through the whole front end and each engine's compiler; then each script is loaded by its own language (the
locustfile imported by Python, the k6 script run under node) and must hold exactly the values of the IR.
Strings that are templates (body and header values, the expected text) are written with their braces escaped
(`{{`, `}}`: the DSL's only escape), so the IR holds them as plain text, the text first drawn; each runtime's
rendering must give it back. Each request's headers are the target's and its own, merged by the compiler.
"""

from __future__ import annotations

import ast
import base64
import copy
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scenariokit.compile.diagnostics import ScenarioError
from scenariokit.compile.ir import Scenario, merge_headers
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario
from tests.support.engines import needs_node
from tests.support.k6_node import node_output, run_lean
from tests.support.k6_node import records as lean_records
from tests.test_backend_k6 import runnable

ROOT = Path(__file__).resolve().parents[1]
K6_RUNTIME = ROOT / "src/scenariokit/engines/k6/files/scenariokit-runtime.js"

PIECES = [
    *"aZ 0'\"\\{}$%#<>/`\n\r\t\x00",
    "${",
    "${env:HOME}",
    "{{",
    "}}",
    "{images}",
    "%s",
    "</script>",
    "<!--",
    "*/",
    '"""',
    "\u2028",
    "\u2029",
    "é",
    "😀",
    "\ufeff",
]
TEXT = st.one_of(st.lists(st.sampled_from(PIECES), max_size=8).map("".join), st.text(max_size=6))
NAMES = TEXT.filter(bool)
# Header names are HTTP tokens and values hold no control character (both refused at compile time, see
# tests/test_hostile_inputs.py); what is left is still hostile to the generated code.
HEADER_NAMES = st.text("!#$%&'*+-.^_`|~09azAZ", min_size=1, max_size=8) | st.sampled_from(
    ["__proto__", "constructor", "Content-Type", "authorization"]
)
HEADER_VALUES = TEXT.filter(lambda text: not any(ord(c) < 0x20 or ord(c) == 0x7F for c in text))
# Keys that mean something to YAML (`<<`, `null`, `1`), to Python or to JavaScript objects.
SPECIAL_KEYS = ["<<", "=", "null", "true", "1", "~", "", "constructor", "toString", "__class__"]
BIG_INTEGERS = [2**53 + 1, -(2**63), 2**64 + 1, 10**40]


def json_values(integers: st.SearchStrategy[int], keys: list[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), integers, st.floats(allow_nan=False, allow_infinity=False), TEXT
    )
    key = TEXT | st.sampled_from(keys)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key, inner, max_size=4),
        max_leaves=16,
    )


# Python carries any integer. k6 reads numbers as JavaScript doubles, so its compiler refuses an integer
# it would round (tested below); `__proto__` keys are written as computed keys, sent as written.
PYTHON_JSON = json_values(st.integers() | st.sampled_from(BIG_INTEGERS), [*SPECIAL_KEYS, "__proto__"])
K6_JSON = json_values(st.integers(-(2**53) + 1, 2**53 - 1), [*SPECIAL_KEYS, "__proto__"])


@st.composite
def scenarios(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> dict[str, Any]:
    """A scenario (as YAML data, templates unescaped) with a REST request and a raw one, each with a JSON
    body and headers; the target has headers too."""
    names = draw(st.lists(NAMES, min_size=2, max_size=2, unique=True))
    headers = st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=2)
    return {
        "version": 1,
        "name": "inject",
        "target": {"kind": "http", "base_url": "http://127.0.0.1:1", "headers": draw(headers)},
        "load": {"curve": "ramp(0, 1, 1s)"},
        "requests": {
            names[0]: {
                "path": "/rest",
                "json": draw(values),
                "headers": draw(headers),
                "expect": {"contains": draw(TEXT)},
            },
            names[1]: {
                "raw": {
                    "method": "PUT",
                    "path": "/raw",
                    "json": draw(st.dictionaries(TEXT, values, max_size=3)),
                    "headers": draw(headers),
                }
            },
        },
    }


def with_body(body: Any) -> dict[str, Any]:
    """A scenario whose REST request sends `body` and nothing else hostile."""
    return {
        "version": 1,
        "name": "inject",
        "target": {"kind": "http", "base_url": "http://127.0.0.1:1", "headers": {}},
        "load": {"curve": "ramp(0, 1, 1s)"},
        "requests": {
            "r": {"path": "/rest", "json": body, "headers": {}, "expect": {"contains": ""}},
            "s": {"raw": {"method": "PUT", "path": "/raw", "json": {}, "headers": {}}},
        },
    }


def escape(text: str) -> str:
    """A template whose rendering is `text`: every brace doubled (`${` becomes `${{`, a literal `${`)."""
    return text.replace("{", "{{").replace("}", "}}")


def escape_values(value: Any) -> Any:
    """A JSON value with its strings escaped as templates; keys are sent as written, never rendered."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, list):
        return [escape_values(v) for v in value]
    if isinstance(value, dict):
        return {k: escape_values(v) for k, v in value.items()}
    return value


def as_written(spec: dict[str, Any]) -> dict[str, Any]:
    """The scenario as it goes into the YAML file: every template value escaped."""
    written = copy.deepcopy(spec)
    written["target"]["headers"] = escape_values(spec["target"]["headers"])
    for request in written["requests"].values():
        form = request.get("raw", request)
        form["json"] = escape_values(form["json"])
        form["headers"] = escape_values(form["headers"])
        if "expect" in request:
            request["expect"]["contains"] = escape(request["expect"]["contains"])
    return written


def expected_requests(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """What each request must send once its templates are rendered: the values first drawn, its headers
    merged with the target's (a JSON body adds a Content-Type)."""
    target = spec["target"]["headers"].items()
    expected = []
    for request in spec["requests"].values():
        form = request.get("raw", request)
        headers = merge_headers(target, form["headers"].items(), json_body=form["json"] is not None)
        contains = request.get("expect", {}).get("contains")
        expected.append({"headers": dict(headers), "json": form["json"], "contains": contains})
    return expected


def front_end(spec: dict[str, Any], folder: Path) -> Scenario:
    path = folder / "inject.yaml"
    path.write_text(yaml.safe_dump(as_written(spec), allow_unicode=False, sort_keys=False), encoding="utf-8")
    return load_scenario(path).scenario


def decimals(value: Any) -> Any:
    """A JSON value with its numbers as decimals, to compare them as JSON numbers: JavaScript writes the
    float 5.668777286814039e+16 as 56687772868140390, the same decimal (and the same double)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return Decimal(repr(value))
    if isinstance(value, list):
        return [decimals(v) for v in value]
    return {k: decimals(v) for k, v in value.items()}


# --- Locust: the locustfile imported by Python ------------------------------------------------------

# A worker that imports each locustfile it is sent (Locust and gevent loaded once, out of this process) and
# prints what its request constants and scenario hold, and what the runtime renders from them.
_LOCUST_WORKER = r"""
import json, runpy, sys
for line in sys.stdin:
    folder, entry = json.loads(line)
    sys.path.insert(0, folder)
    import scenariokit_locust_runtime as sk
    names = runpy.run_path(f"{folder}/{entry}")
    sys.path.remove(folder)
    requests = [v for v in names.values() if isinstance(v, sk.Request)]
    print("RESULT " + json.dumps({
        "requests": [
            {"name": r.name, "headers": r.headers, "json": r.json, "contains": r.expect_contains,
             "rendered": {"headers": sk.render_json(r.headers, {}), "json": sk.render_json(r.json, {}),
                          "contains": sk.render_text(r.expect_contains, {})}}
            for r in requests
        ],
    }), flush=True)
"""


class LocustLoader:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _LOCUST_WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def load(self, folder: Path, entry: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps([str(folder), entry]) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith("RESULT "):
                result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
                return result
        raise AssertionError(f"the locustfile did not load (exit {self.process.wait()})")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def locust_loader() -> Iterator[LocustLoader]:
    loader = LocustLoader()
    yield loader
    loader.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenarios(PYTHON_JSON))
@example(with_body({"__proto__": {"admin": True}, "id": 2**63 + 1, "n": [10**40, -(2**64)]}))
def test_json_values_stay_data_in_the_locustfile(locust_loader: LocustLoader, spec: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scenario = front_end(spec, folder)
        script = compile_scenario(scenario, "locust")
        script.write(folder / "build")
        loaded = locust_loader.load(folder / "build", script.entry)
    assert (
        [r["name"] for r in loaded["requests"]] == [r.name for r in scenario.requests] == [*spec["requests"]]
    )
    for got, ir, expected in zip(loaded["requests"], scenario.requests, expected_requests(spec), strict=True):
        # as the script holds them: the IR's values (plain text: every brace was escaped) ...
        assert (got["headers"], got["json"], got["contains"]) == (
            dict(ir.headers),
            ir.json_body,
            ir.expect.contains,
        )
        # ... and as the runtime sends them: the values first drawn
        assert got["rendered"] == expected


# --- k6: the script's data and the runtime's rendering under node -----------------------------------


def node_lines(program: str) -> list[Any]:
    """What a node program prints, one JSON value a line."""
    # "\n" only: JSON.stringify leaves U+2028 unescaped, and str.splitlines() would split there
    return [json.loads(line) for line in node_output(program).split("\n") if line]


def runtime_module() -> str:
    """The k6 runtime as a module node can import: each k6 import replaced by an empty stand-in (none is
    called here)."""
    stubs, body = ["const __ENV = {};"], []
    for line in K6_RUNTIME.read_text(encoding="utf-8").splitlines():
        match = re.match(r"import (?:\{(.*)\}|(\w+)) from ", line)
        if match:
            stubs += [f"class {name.strip()} {{}}" for name in (match.group(1) or match.group(2)).split(",")]
        else:
            body.append(line)
    source = "\n".join([*stubs, *body])
    return "data:text/javascript;base64," + base64.b64encode(source.encode()).decode()


# Run after the script (see `runnable`): what its values become once the runtime renders them as
# `Runner.render` does before sending (no data set: an empty row), the body through JSON.stringify.
_K6_RENDER = """
const rt = await import(RUNTIME);
console.log(JSON.stringify({
  requests: __runner.requests.map((r) => ({
    headers: rt.renderJson(r.headers, {}),
    body: r.json === null ? null : JSON.stringify(rt.renderJson(r.json, {})),
    contains: rt.renderJson(r.expectContains, {}),
  })),
}));
"""


def check_k6(spec: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scenario = front_end(spec, Path(tmp))
    script = compile_scenario(scenario, "k6")
    render = _K6_RENDER.replace("RUNTIME", json.dumps(runtime_module()))
    loaded, rendered = node_lines(runnable(script.files[script.entry]) + render)
    assert [r["name"] for r in loaded["requests"]] == [*spec["requests"]]
    for got, ir in zip(loaded["requests"], scenario.requests, strict=True):
        assert (got["headers"], decimals(got["json"]), got["expectContains"]) == (
            dict(ir.headers),
            decimals(ir.json_body),
            ir.expect.contains,
        )
    for got, expected in zip(rendered["requests"], expected_requests(spec), strict=True):
        sent = None if got["body"] is None else json.loads(got["body"])
        assert decimals(sent) == decimals(expected["json"])
        assert (got["headers"], got["contains"]) == (expected["headers"], expected["contains"])
    check_k6_written_out(spec)


def check_k6_written_out(spec: dict[str, Any]) -> None:
    """The same requests with think time: the script written out for the scenario (engines/k6/lean.py),
    run under node, sends the values first drawn, and the REST request's expected text, answered with
    itself, passes (so it reached the script as written)."""
    spec = {**spec, "load": {**spec["load"], "think_time": "constant(0.1s)"}}
    with tempfile.TemporaryDirectory() as tmp:
        scenario = front_end(spec, Path(tmp))
    script = compile_scenario(scenario, "k6")
    contains = expected_requests(spec)[0]["contains"]
    answer = {"status": 200, "body": contains}
    ran = run_lean(script.files, script.entry, 40, env={"SCENARIOKIT_RECORDS": "console"}, response=answer)
    written = [r for r in lean_records(ran["lines"]) if "outcomes" in r]
    sent = {}
    for call, record in zip(ran["calls"], written, strict=True):
        sent.setdefault(record["outcomes"][0][0], (call, record["outcomes"][0]))
    assert set(sent) == set(spec["requests"])
    for name, expected in zip(spec["requests"], expected_requests(spec), strict=True):
        call, outcome = sent[name]
        sent_body = None if call["body"] is None else json.loads(call["body"])  # `json: null`: no body
        assert decimals(sent_body) == decimals(expected["json"])
        assert (call["params"] or {}).get("headers", {}) == expected["headers"]  # none: no params at all
        assert outcome[3] is True, outcome  # ok: the expected text was found in itself


@needs_node
@settings(max_examples=30, deadline=None)
@given(scenarios(K6_JSON))
def test_json_values_stay_data_in_the_k6_script(spec: dict[str, Any]) -> None:
    check_k6(spec)


def test_k6_refuses_an_integer_it_would_round_at_the_request() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scenario = front_end(with_body({"id": 2**63 + 1}), Path(tmp))
    with pytest.raises(ScenarioError) as info:
        compile_scenario(scenario, "k6")
    (error,) = info.value.diagnostics
    assert "would send 9223372036854775809 rounded" in error.message and error.hint
    assert error.span == scenario.requests[0].span
    compile_scenario(scenario, "locust")  # Python's integers are exact


@needs_node
def test_k6_sends_a_proto_key_as_written() -> None:
    check_k6(with_body({"__proto__": {"admin": True}, "id": 1}))
    check_k6(with_body({"a": [{"__proto__": "{{x}}"}], "__proto__": "y"}))


# --- flows: an entry's hostile name reaches both scripts as data, its steps in order --------------------


@st.composite
def flow_scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A request and a flow of 1-3 steps (named or by position), both entries with hostile names; a step's
    own name is an identifier (the model refuses anything else)."""
    # a request named like one of the flow's records is refused (tests/test_flows.py): not drawn here
    names = draw(st.lists(NAMES, min_size=2, max_size=2, unique=True).filter(lambda n: "." not in n[0]))
    labels = draw(st.lists(st.sampled_from(["", "a", "b-c", "_1"]), min_size=1, max_size=3, unique=True))
    steps = [
        {**({"name": label} if label else {}), "path": f"/s{i}", "json": {escape(draw(TEXT)): 1}}
        for i, label in enumerate(labels)
    ]
    return {
        "version": 1,
        "name": "inject",
        "target": {"kind": "http", "base_url": "http://127.0.0.1:1"},
        "load": {"curve": "ramp(0, 1, 1s)"},
        "requests": {names[0]: {"path": "/single"}, names[1]: {"weight": 2, "steps": steps}},
    }


def flow_front_end(spec: dict[str, Any], folder: Path) -> Scenario:
    path = folder / "flow.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=False, sort_keys=False), encoding="utf-8")
    return load_scenario(path).scenario


def locust_tasks(source: str) -> list[tuple[int, list[str]]]:
    """(weight, request names) of each `@task` method of a locustfile, read from its syntax tree."""
    tree = ast.parse(source)
    names = {
        node.targets[0].id: ast.literal_eval(next(k.value for k in node.value.keywords if k.arg == "name"))
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Call) and getattr(node.value.func, "attr", "") == "Request"
    }  # fmt: skip
    tasks = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            (decorator,) = node.decorator_list
            assert isinstance(decorator, ast.Call)
            weight = ast.literal_eval(decorator.args[0])
            (call,) = [
                n for n in ast.walk(node) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "send"
            ]
            tasks.append((weight, [names[arg.id] for arg in call.args if isinstance(arg, ast.Name)]))
    return tasks


def record_names(spec: dict[str, Any]) -> list[str]:
    single, flow = spec["requests"]
    return [single] + [
        f"{flow}.{s.get('name') or i + 1}" for i, s in enumerate(spec["requests"][flow]["steps"])
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flow_scenarios())
def test_a_flows_name_and_steps_stay_data_in_the_locustfile(
    locust_loader: LocustLoader, spec: dict[str, Any]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script = compile_scenario(flow_front_end(spec, folder), "locust")
        script.write(folder / "build")
        loaded = locust_loader.load(folder / "build", script.entry)  # imported: it is Python, values data
    names = record_names(spec)
    assert [r["name"] for r in loaded["requests"]] == names
    assert locust_tasks(script.files[script.entry]) == [(1, names[:1]), (2, names[1:])]


# What the runtime makes of the script's requests: the mix's entries, as indices into the requests.
_K6_TASKS = """
const rt = await import(RUNTIME);
console.log(JSON.stringify(rt.tasksOf(__runner.requests.map((spec) => ({ spec })))));
"""


@needs_node
@settings(max_examples=25, deadline=None)
@given(flow_scenarios())
def test_a_flows_name_and_steps_stay_data_in_the_k6_script(spec: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scenario = flow_front_end(spec, Path(tmp))
    script = compile_scenario(scenario, "k6")
    program = runnable(script.files[script.entry]) + _K6_TASKS.replace(
        "RUNTIME", json.dumps(runtime_module())
    )
    loaded, tasks = node_lines(program)
    flow = list(spec["requests"])[1]
    assert [(r["name"], r.get("flow")) for r in loaded["requests"]] == [
        (name, None if i == 0 else flow) for i, name in enumerate(record_names(spec))
    ]
    steps = len(spec["requests"][flow]["steps"])
    assert [(t["steps"], t["cumulative"]) for t in tasks] == [([0], 1), (list(range(1, steps + 1)), 3)]
