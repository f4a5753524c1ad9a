"""Flows: a request entry with `steps:` (several requests a user sends in order for one pick of the mix).

The compiler's rows (names, clashes, what a flow may hold, SLO scopes, the plan) run without an engine. The
engine rows run each stock engine against a recording server on loopback that notes which connection
every request came on and in which order: a flow's steps must arrive back to back on one connection, a
failed first step must not stop the second, and the weight must pick the flow once (binomial bounds).
"""

from __future__ import annotations

import ast
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.compile.diagnostics import ScenarioError
from scenariokit.compile.ir import Scenario
from scenariokit.compile.pipeline import load_scenario
from scenariokit.compile.plan import make_plan
from scenariokit.engines import compile_scenario
from tests.support.engines import assert_weights, needs_k6, needs_node, node_check, run_k6, run_locust

HEAD = """\
version: 1
name: flows
target: {kind: http, base_url: "http://127.0.0.1:9"}
load: {curve: "hold(2, 3s)"}
requests:
"""
# the guide's error-case task, as W1's importer writes it
GUIDE_FLOW = """\
  identify: {weight: 3, method: POST, path: /api/identify, json: {image_url: x}}
  test_error_cases:
    weight: 1
    steps:
      - name: empty_url
        method: POST
        path: /api/identify
        json: {image_url: ""}
        expect: {status: [400, 422]}
      - method: POST
        path: /api/identify
        json: {wrong_field: test}
        expect: {status: [400, 422]}
"""


def scenario_at(tmp_path: Path, requests: str, extra: str = "", head: str = HEAD) -> Path:
    path = tmp_path / "flows.yaml"
    path.write_text(head + requests + extra, encoding="utf-8")
    return path


def load(tmp_path: Path, requests: str, extra: str = "", head: str = HEAD) -> Scenario:
    return load_scenario(scenario_at(tmp_path, requests, extra, head)).scenario


# --- the compiler ---------------------------------------------------------------------------------


def test_a_flow_lowers_to_one_task_whose_steps_are_named_entry_dot_step(tmp_path: Path) -> None:
    scenario = load(tmp_path, GUIDE_FLOW)
    assert [(t.name, t.weight, [s.name for s in t.steps]) for t in scenario.mix] == [
        ("identify", 3, ["identify"]),
        ("test_error_cases", 1, ["test_error_cases.empty_url", "test_error_cases.2"]),
    ]
    assert [r.name for r in scenario.requests] == [
        "identify",
        "test_error_cases.empty_url",
        "test_error_cases.2",
    ]
    flow = scenario.mix[1]
    assert flow.is_flow and not scenario.mix[0].is_flow
    assert [(s.flow, s.weight, s.expect.status, s.json_body) for s in flow.steps] == [
        ("test_error_cases", 1, (400, 422), {"image_url": ""}),
        ("test_error_cases", 1, (400, 422), {"wrong_field": "test"}),
    ]


def test_an_slo_for_a_flow_scopes_every_step_and_for_a_step_one(tmp_path: Path) -> None:
    slos = "slo:\n  - p99(latency) < 1s for test_error_cases\n"
    slos += "  - error_rate < 1% for test_error_cases.empty_url\n"
    scenario = load(tmp_path, GUIDE_FLOW, slos)
    assert [s.requests for s in scenario.slos] == [
        ("test_error_cases.empty_url", "test_error_cases.2"),
        ("test_error_cases.empty_url",),
    ]


def test_an_slo_for_a_flow_and_for_its_steps_by_name_is_the_same_slo(tmp_path: Path) -> None:
    slos = (
        "slo:\n  - p99(latency) < 1s for test_error_cases\n"
        "  - p99(latency) < 1s for test_error_cases.2, test_error_cases.empty_url\n"
    )
    with pytest.raises(ScenarioError, match="repeats SLO #1"):
        load(tmp_path, GUIDE_FLOW, slos)


def test_the_plan_counts_a_flow_once_per_pick_and_each_step_once_in_it(tmp_path: Path) -> None:
    # 2 users x 3 s = 6 user-seconds; a pick sends 1 request (3 in 4) or 2 (1 in 4): 1.25 s a pick at 1 s
    # each, so 4.8 picks: identify 3.6, each step 1.2
    plan = make_plan(load(tmp_path, GUIDE_FLOW))
    assert plan.expected_requests == pytest.approx(
        {"identify": 3.6, "test_error_cases.empty_url": 1.2, "test_error_cases.2": 1.2}
    )
    assert plan.requests_per_pick == 1.25


def test_an_open_pool_is_sized_for_the_steps_an_arrival_sends(tmp_path: Path) -> None:
    head = HEAD.replace('load: {curve: "hold(2, 3s)"}', 'load: {model: open, curve: "hold(10, 3s)"}')
    single = load(tmp_path, "  a: {path: /a}\n", head=head).load
    flow = load(tmp_path, "  a: {steps: [{path: /a}, {path: /b}, {path: /c}]}\n", head=head).load
    assert flow.pre_allocated_users == 3 * single.pre_allocated_users  # 10/s x 1 s x 3 requests, x 1.2


STEPS_51 = "  f:\n    steps:\n" + "".join(f"      - {{path: /a{i}}}\n" for i in range(51))
# YAML that parses (a `{}` is one value) but holds 10,000 steps: refused by the model's bound, quickly
STEPS_10000 = "  f:\n    steps: [" + ", ".join(["{}"] * 10_000) + "]\n"

# (id, requests section, line, column, message fragment, hint fragment or None); requests start on line 6
BROKEN: list[tuple[str, str, int, int, str, str | None]] = [
    ("no-steps", "  f: {steps: []}\n", 6, 14, "at least 1 item", "single request needs no `steps:`"),
    ("51-steps", STEPS_51, 8, 7, "longer than 50 items", None),
    ("10000-steps", STEPS_10000, 7, 12, "longer than 50 items", None),
    ("steps-not-a-list", "  f: {steps: /a}\n", 6, 14, "must be a list", None),
    (
        "weight-on-a-step",
        "  f: {steps: [{path: /a, weight: 2}]}\n",
        6,
        26,
        "unknown key `weight`",
        "on the entry",
    ),
    (
        "nested-steps",
        "  f: {steps: [{path: /a, steps: [{path: /b}]}]}\n",
        6,
        26,
        "unknown key `steps`",
        "flows do not nest",
    ),
    (
        "request-field-on-a-flow",
        "  f: {path: /x, steps: [{path: /a}]}\n",
        6,
        7,
        "`path` belongs in a step",
        "a flow holds only `weight` and `steps`",
    ),
    (
        "same-step-name",
        "  f: {steps: [{name: a, path: /a}, {name: a, path: /b}]}\n",
        6,
        43,
        "two steps named `a`",
        "its own `name`",
    ),
    (
        "name-clashes-with-a-position",
        "  f: {steps: [{path: /a}, {name: '1', path: /b}]}\n",
        6,
        35,
        "two steps named `1`",
        "named by its position",
    ),
    (
        "record-name-clash",
        "  f.a: {path: /z}\n  f: {steps: [{name: a, path: /a}]}\n",
        7,
        15,
        "step `f.a` has the name of the request `f.a`",
        "rename",
    ),
    (
        "dot-in-step-name",
        "  f: {steps: [{name: a.b, path: /a}]}\n",
        6,
        22,
        "should match pattern",
        "single `-`",
    ),
    ("space-in-step-name", "  f: {steps: [{name: a b, path: /a}]}\n", 6, 22, "should match pattern", None),
    (
        "step-without-path",
        "  f: {steps: [{path: /a}, {method: GET}]}\n",
        6,
        27,
        "request `f.2` needs a `path`",
        None,
    ),
    (
        "slo-for-an-unknown-step",
        GUIDE_FLOW + "slo:\n  - error_rate < 1% for test_error_cases.3\n",
        20,
        5,
        "no request is called `test_error_cases.3`",
        "did you mean",
    ),
]


@pytest.mark.parametrize(
    ("case", "requests", "line", "column", "fragment", "hint"), BROKEN, ids=[c[0] for c in BROKEN]
)
def test_a_broken_flow_is_reported_where_it_is_written(
    tmp_path: Path, case: str, requests: str, line: int, column: int, fragment: str, hint: str | None
) -> None:
    path = scenario_at(tmp_path, requests)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    found = [d for d in info.value.diagnostics if fragment in d.message]
    assert found, [d.message for d in info.value.diagnostics]
    assert (found[0].span.line, found[0].span.column) == (line, column), found[0].message
    if hint is not None:
        assert found[0].hint is not None and hint in found[0].hint, found[0].hint
    assert main(["validate", str(path)]) == 2


# --- what each engine is given ----------------------------------------------------------------------


def test_the_locustfile_sends_a_flows_steps_in_one_task(tmp_path: Path) -> None:
    script = compile_scenario(load(tmp_path, GUIDE_FLOW), "locust")
    text = script.files[script.entry]
    assert "    @task(1)\n    def test_error_cases(self) -> None:\n" in text
    assert (
        "self.sk.send(\n            TEST_ERROR_CASES_EMPTY_URL,\n            TEST_ERROR_CASES_2,\n        )"
        in text
    )
    assert "    @task(3)\n    def identify(self) -> None:\n        self.sk.send(IDENTIFY)\n" in text
    ast.parse(text)


@needs_node
def test_the_k6_script_names_each_steps_flow(tmp_path: Path) -> None:
    script = compile_scenario(load(tmp_path, GUIDE_FLOW), "k6")
    text = script.files[script.entry]
    assert (
        text.count('flow: "test_error_cases"') == 2 and "flow: " not in text.split('name: "identify"')[1][:40]
    )
    assert node_check(text).returncode == 0


def test_k6_waits_at_the_end_for_a_whole_flow(tmp_path: Path) -> None:
    steps = "  f: {steps: [{path: /a, timeout: 30s}, {path: /b, timeout: 30s}, {path: /c, timeout: 30s}]}\n"
    script = compile_scenario(load(tmp_path, steps), "k6")
    assert 'gracefulStop: "1m32s"' in script.files[script.entry]  # the three timeouts one after the other


# --- both engines against a recording server -------------------------------------------------------


class ConnectionRecorder:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 that notes (connection, path) for every request in the
    order they arrive; /flow/first answers 500, anything else 200."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[int, str]] = []
        lock = threading.Lock()
        arrivals = self.arrivals

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a user's requests share its connection

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    arrivals.append((self.client_address[1], self.path))
                body = b'{"ok": true}'
                self.send_response(500 if self.path == "/flow/first" else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def by_connection(self) -> dict[int, list[str]]:
        sequences: dict[int, list[str]] = {}
        for port, path in self.arrivals:
            sequences.setdefault(port, []).append(path)
        return sequences


@pytest.fixture
def recorder() -> Iterator[ConnectionRecorder]:
    server = ConnectionRecorder()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


FLOW = ["/flow/first", "/flow/second", "/flow/third"]
# one request of weight 3 and a flow of 3 steps of weight 1: a pick is the flow 1 time in 4. A weight
# counted per step (3 of 6) or steps drawn apart would show in the bounds or in the order.
MIX = """\
  single: {weight: 3, path: /single}
  checkout:
    weight: 1
    steps:
      - {name: first, method: POST, path: /flow/first, json: {cart: 1}}
      - {path: /flow/second}
      - {path: /flow/third}
"""


def flows_on(sequence: list[str]) -> int:
    """The flows in one connection's requests: every step must follow the one before it on the same
    connection with nothing between them, and every flow must be whole (the run's end waits for it)."""
    flows, i = 0, 0
    while i < len(sequence):
        if sequence[i] == "/single":
            i += 1
            continue
        assert sequence[i : i + len(FLOW)] == FLOW, sequence[i : i + len(FLOW) + 1]
        flows, i = flows + 1, i + len(FLOW)
    return flows


def run_engine(engine: str, scenario: Scenario, out: Path) -> list[dict[str, object]]:
    """Each engine as the runner runs it: Locust lets a user finish its task at the end (the driver's
    --stop-timeout), k6 lets an iteration finish (gracefulStop), so no flow is cut short."""
    if engine == "locust":
        return run_locust(scenario, out, stop_timeout_s=5).records
    return run_k6(scenario, out)[1]


ENGINES = ["locust", pytest.param("k6", marks=needs_k6)]


@pytest.mark.engine
@pytest.mark.parametrize("engine", ENGINES)
def test_each_flow_runs_its_steps_in_order_on_one_connection(
    engine: str, recorder: ConnectionRecorder, tmp_path: Path
) -> None:
    head = HEAD.replace("http://127.0.0.1:9", recorder.url).replace("hold(2, 3s)", "hold(4, 3s)")
    records = run_engine(engine, load(tmp_path, MIX, head=head), tmp_path)
    sequences = recorder.by_connection()
    flows = sum(flows_on(sequence) for sequence in sequences.values())
    singles = sum(sequence.count("/single") for sequence in sequences.values())
    assert flows >= 30, (flows, singles)
    assert_weights(Counter(single=singles, checkout=flows), {"single": 3, "checkout": 1})
    # the first step fails its expectation (500, not 2xx) and the second is still sent and judged apart
    outcomes = Counter((r["name"], r["ok"], r["error"]) for r in records)
    assert set(outcomes) == {
        ("single", True, None),
        ("checkout.first", False, "http_500"),
        ("checkout.2", True, None),
        ("checkout.3", True, None),
    }
    # every step the server answered has its record, under the step's name
    seen = Counter(path for _, path in recorder.arrivals)
    names = Counter(str(r["name"]) for r in records)
    assert [names["checkout.first"], names["checkout.2"], names["checkout.3"]] == [flows] * 3
    assert [seen[path] for path in FLOW] == [flows] * 3 and names["single"] == singles


@pytest.mark.engine
@pytest.mark.parametrize("engine", ENGINES)
def test_an_open_arrival_runs_the_whole_flow_and_is_late_once(
    engine: str, recorder: ConnectionRecorder, tmp_path: Path
) -> None:
    head = HEAD.replace("http://127.0.0.1:9", recorder.url)
    head = head.replace('load: {curve: "hold(2, 3s)"}', 'load: {model: open, curve: "hold(20, 3s)"}')
    records = run_engine(engine, load(tmp_path, MIX.replace("weight: 3", "weight: 0"), head=head), tmp_path)
    firsts = [r for r in records if r["name"] == "checkout.first"]
    laters = [r for r in records if r["name"] in ("checkout.2", "checkout.3")]
    # 60 arrivals planned (20/s for 3 s): each sends the three steps, not one step each
    assert 57 <= len(firsts) <= 60, len(firsts)
    assert len(laters) == 2 * len(firsts)
    assert sum(flows_on(s) for s in recorder.by_connection().values()) == len(firsts)
    if engine == "locust":  # k6's records carry no intended start (k6 schedules the arrivals itself)
        # the arrival's intended start is the first step's; a later step starts when the one before ends
        assert all(r["intended"] is not None for r in firsts)
        assert all(r["intended"] is None for r in laters)


def test_both_engines_put_the_guides_flow_on_the_wire_alike() -> None:
    """The wire recordings of scenarios/recognition-api.yaml (tests/test_wire.py): its error-case flow's two
    steps, as each engine sent them, are the same requests."""
    root = Path(__file__).resolve().parents[1]
    scenario = load_scenario(root / "scenarios" / "recognition-api.yaml").scenario
    (flow,) = [task for task in scenario.mix if task.is_flow]
    bodies = [step.json_body for step in flow.steps]
    recorded = {}
    for engine in ("locust", "k6"):
        golden = json.loads((root / "tests" / "golden_wire" / f"recognition-api.{engine}.json").read_text())
        sent = [r for r in golden["requests"] if r["body"].get("json") in bodies]
        recorded[engine] = sorted(json.dumps(r, sort_keys=True) for r in sent)
    assert len(recorded["k6"]) == len(bodies) and recorded["locust"] == recorded["k6"]
