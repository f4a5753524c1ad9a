"""The k6 backend's code generator: what it emits (valid, deterministic, injection-proof), its thresholds
and warnings, and the launch the driver builds. Nothing here runs a load: the scripts run on real k6 in
tests/test_engines.py (the helpers in tests/support/engines.py); `k6 inspect` below only parses one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenariokit.compile.diagnostics import Severity
from scenariokit.compile.ir import (
    Distribution,
    Expect,
    LoadProfile,
    RequestTemplate,
    Scenario,
    Slo,
    Stage,
    Target,
    Window,
)
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import get_engine
from scenariokit.engines.base import LaunchPlan, peak_users
from scenariokit.engines.k6 import K6Engine
from scenariokit.engines.k6.codegen import (
    comment_safe,
    executor_lines,
    js_literal,
    threshold_for,
    time_unit_for,
)
from scenariokit.engines.k6.driver import K6_GOGC_MAX_USERS
from tests.support.engines import K6, NODE, needs_k6, needs_node, node_check, open_scenario
from tests.support.ir_examples import CARDS, closed_chat_scenario, open_rest_scenario
from tests.support.k6_node import records as k6_node_records
from tests.support.k6_node import run_lean

ROOT = Path(__file__).resolve().parents[1]


# --- literals and comments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["</script><script>alert(1)</script>", "a\u2028b\u2029c", "`${x}`", "*/ x /*", "\x00\n\r", "é€😀", "&&"],
)
def test_js_literal_is_ascii_json_with_no_markup(value: str) -> None:
    text = js_literal(value)
    assert json.loads(text) == value
    assert text.isascii() and text.isprintable()
    assert not set("<>&\u2028\u2029") & set(text)


def test_comment_safe_keeps_one_printable_ascii_line() -> None:
    assert comment_safe("a\nb\u2028c*/é") == "a?b?c*/?"


# --- load -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("levels", "unit", "exact"),
    [
        ([5, 20], "1s", True),
        ([0.5, 2], "1m", True),  # 0.5/s = 30/min
        ([1 / 60, 1], "1m", True),
        ([1 / 3600], "1h", True),
        ([1 / 7], "1h", False),
    ],
)
def test_time_unit_keeps_arrival_targets_integer(levels: list[float], unit: str, exact: bool) -> None:
    rate = time_unit_for(levels)
    assert (rate.unit, rate.exact) == (unit, exact)
    if exact:
        assert all(abs(level * rate.seconds - round(level * rate.seconds)) < 1e-6 for level in levels)
    else:
        assert 0 < rate.worst_error < 0.001


def test_sub_one_per_second_rate_uses_a_minute_unit() -> None:
    lines, warnings = executor_lines(open_scenario(Stage("hold", "hold", 60, 0.5, 0.5)))
    assert 'timeUnit: "1m"' in lines and "startRate: 30" in lines
    assert 'stages: [{ duration: "1m", target: 30 }]' in lines
    assert warnings == []


def test_inexact_rate_is_rounded_with_a_warning_naming_the_error() -> None:
    scenario = open_scenario(Stage("hold", "hold", 60, 1 / 7, 1 / 7))
    lines, _ = executor_lines(scenario)
    assert 'timeUnit: "1h"' in lines and "startRate: 514" in lines
    warnings = [d for d in K6Engine().compile(scenario).diagnostics if "rounded" in d.message]
    assert len(warnings) == 1 and warnings[0].severity is Severity.WARNING
    assert "0.056%" in warnings[0].message  # 514/h = 0.14278/s against 0.14286/s


def test_zero_duration_stages_are_zero_second_k6_stages() -> None:
    lines, _ = executor_lines(closed_chat_scenario())
    assert lines[:2] == ['executor: "ramping-vus"', "startVUs: 0"]
    assert lines[2] == (
        'stages: [{ duration: "2s", target: 4 }, { duration: "3s", target: 4 }, '
        '{ duration: "0s", target: 8 }, { duration: "2s", target: 8 }, '
        '{ duration: "0s", target: 4 }, { duration: "1s", target: 0 }]'
    )


# --- thresholds -----------------------------------------------------------------------------------


def slo(text: str, metric: str, stat: str | None, op: str, value: float, **kw: Any) -> Slo:
    return Slo(text, metric, stat, op, value, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("the_slo", "expected"),
    [
        (slo("p99(latency) < 500ms", "latency", "p99", "<", 0.5), [("sk_latency", "p(99)<500")]),
        (slo("p99.9(latency) <= 2s", "latency", "p99.9", "<=", 2.0), [("sk_latency", "p(99.9)<=2000")]),
        (slo("mean(ttfb) < 20ms", "ttfb", "mean", "<", 0.02), [("sk_ttfb", "avg<20")]),
        (slo("median(latency) < 1s", "latency", "median", "<", 1.0), [("sk_latency", "med<1000")]),
        (
            slo(
                "max(latency) < 1s for identify, ocr",
                "latency",
                "max",
                "<",
                1.0,
                requests=("identify", "ocr"),
            ),
            [("sk_latency{name:identify}", "max<1000"), ("sk_latency{name:ocr}", "max<1000")],
        ),
        (
            slo("p95(latency) < 1s during spike", "latency", "p95", "<", 1.0, window=Window(stage="spike")),
            [("sk_latency{stage_kind:spike}", "p(95)<1000")],
        ),
        (slo("error_rate < 0.5%", "error_rate", None, "<", 0.005), [("sk_ok", "rate>0.995")]),
        (slo("error_rate <= 1%", "error_rate", None, "<=", 0.01), [("sk_ok", "rate>=0.99")]),
        (slo("throughput >= 50/s", "throughput", None, ">=", 50.0), [("sk_successes", "rate>=50")]),
        (
            slo("dropped_iterations <= 0", "dropped_iterations", None, "<=", 0),
            [("dropped_iterations", "count<=0")],
        ),
    ],
)
def test_slo_becomes_threshold(the_slo: Slo, expected: list[tuple[str, str]]) -> None:
    assert threshold_for(the_slo, closed_chat_scenario()) == (expected, None)


@pytest.mark.parametrize(
    "the_slo",
    [
        slo("p95(ttft) < 300ms", "ttft", "p95", "<", 0.3),
        slo("mean(itl) < 50ms", "itl", "mean", "<", 0.05),
        slo("p99(latency) < 2s during 1m..2m", "latency", "p99", "<", 2.0, window=Window(None, 60, 120)),
        slo("throughput >= 5/s during spike", "throughput", None, ">=", 5, window=Window(stage="spike")),
        slo("p99(latency) < 1s for a,b", "latency", "p99", "<", 1.0, requests=("a,b",)),
    ],
)
def test_what_k6_cannot_judge_is_a_warning_not_a_threshold(the_slo: Slo) -> None:
    scenario = dataclasses.replace(closed_chat_scenario(), slos=(the_slo,))
    pairs, reason = threshold_for(the_slo, scenario)
    assert pairs == [] and reason
    (diagnostic,) = K6Engine().compile(scenario).diagnostics
    assert diagnostic.severity is Severity.WARNING and the_slo.text in diagnostic.message
    # the SLO is the scenario's only one, so the thresholds object is empty
    script = K6Engine().compile(scenario).files["chat-mix.k6.js"]
    assert script.count("thresholds: {") == 1
    assert script.split("thresholds: {", 1)[1].split("}", 1)[0].strip() == ""


def test_ttft_warning_says_not_measured_and_points_at_the_slo() -> None:
    scenario = closed_chat_scenario()
    (warning,) = [d for d in K6Engine().compile(scenario).diagnostics if "ttft" in d.message]
    assert "cannot measure time to first token" in warning.message and "not measured" in warning.message
    assert warning.hint == "use --engine locust"
    assert warning.span == scenario.slos[1].span


def test_ttft_warning_prints_once(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "scenariokit", "compile", "scenarios/holiday-spike.yaml", "--engine", "k6"]
    out = subprocess.run(
        [*argv, "-o", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert (out.stdout + out.stderr).count("cannot measure time to first token") == 1


def test_conditions_of_one_key_share_one_list_in_source_order() -> None:
    slos = (
        slo("p99(latency) < 500ms", "latency", "p99", "<", 0.5),
        slo("p50(latency) < 100ms", "latency", "p50", "<", 0.1),
        slo("max(latency) < 2s", "latency", "max", "<", 2.0),
    )
    script = (
        K6Engine().compile(dataclasses.replace(closed_chat_scenario(), slos=slos)).files["chat-mix.k6.js"]
    )
    assert script.count('"sk_latency":') == 1
    assert '"sk_latency": ["p(99)<500", "p(50)<100", "max<2000"],' in script


@pytest.mark.parametrize(
    ("slos", "emit"),
    [
        ((), '{"latency": false, "ok": false, "successes": false, "ttfb": false}'),
        ((slo("mean(ttfb) < 20ms for ocr", "ttfb", "mean", "<", 0.02, requests=("ocr",)),), '"ttfb": true}'),
        ((slo("error_rate < 1%", "error_rate", None, "<", 0.01),), '"ok": true, "successes": false,'),
        ((slo("throughput >= 5/s", "throughput", None, ">=", 5.0),), '"successes": true,'),
    ],
)
def test_runtime_sends_only_the_points_a_threshold_reads(slos: tuple[Slo, ...], emit: str) -> None:
    scenario = dataclasses.replace(closed_chat_scenario(), slos=slos)
    script = K6Engine().compile(batched(scenario)).files["chat-mix.k6.js"]
    line = script.split("\n  emit: ", 1)[1].split("\n", 1)[0]
    assert emit in line
    # the script written out (think time) makes only the metrics those points go to
    written_out = K6Engine().compile(scenario).files["chat-mix.k6.js"]
    made = set(re.findall(r'new (?:Trend|Rate|Counter)\("(sk_\w+)"', written_out))
    flags = json.loads(line.strip().rstrip(","))
    assert made == {f"sk_{flag}" for flag, on in flags.items() if on}


def batched(scenario: Scenario) -> Scenario:
    """The scenario without think time: a closed model's VUs send back to back, which compiles to the
    runtime's tables (batched records) rather than a script written out for the scenario."""
    return dataclasses.replace(
        scenario, load=dataclasses.replace(scenario.load, think_time=Distribution("none"))
    )


# --- the emitted files ----------------------------------------------------------------------------


def test_emits_entry_and_data_written_out() -> None:
    compiled = K6Engine().compile(closed_chat_scenario())
    assert set(compiled.files) == {"chat-mix.k6.js", "data/images.json"}
    script = compiled.files["chat-mix.k6.js"]
    imports = [line for line in script.splitlines() if line.startswith("import ")]
    assert imports and all(' from "k6' in line for line in imports)  # k6's own modules only
    assert "sekret" not in script and '__ENV["API_KEY"]' in script  # env values are read at run time


def test_emits_entry_runtime_and_data() -> None:
    compiled = K6Engine().compile(batched(closed_chat_scenario()))
    assert compiled.entry == "chat-mix.k6.js"
    assert set(compiled.files) == {"chat-mix.k6.js", "scenariokit-runtime.js", "data/images.json"}
    assert (
        compiled.files["scenariokit-runtime.js"]
        == (ROOT / "src/scenariokit/engines/k6/files/scenariokit-runtime.js").read_text()
    )
    script = compiled.files["chat-mix.k6.js"]
    assert 'from "./scenariokit-runtime.js"' in script
    assert "sekret" not in script and '{"env": "API_KEY"}' in script  # env values are read at run time


@needs_node
@pytest.mark.parametrize("make", [closed_chat_scenario, open_rest_scenario])
def test_script_and_runtime_pass_node_check(make: Any) -> None:
    for scenario in (make(), batched(make())):
        compiled = K6Engine().compile(scenario)
        for name in (name for name in compiled.files if name.endswith(".js")):
            result = node_check(compiled.files[name])
            assert result.returncode == 0, (name, result.stderr)


@needs_k6
@pytest.mark.engine  # starts the k6 binary, though only to parse the script
@pytest.mark.parametrize("make", [closed_chat_scenario, open_rest_scenario])
def test_k6_inspect_accepts_script_and_options(make: Any, tmp_path: Path) -> None:
    entry = K6Engine().compile(make()).write(tmp_path)
    result = subprocess.run(
        [K6, "inspect", entry.name], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    options = json.loads(result.stdout)
    (scenario,) = options["scenarios"].values()
    assert scenario["executor"] in {"ramping-vus", "ramping-arrival-rate"}
    assert options["thresholds"]


def test_emit_is_deterministic_across_hash_seeds() -> None:
    code = (
        "import hashlib, json; from scenariokit.engines.k6 import K6Engine;"
        "from tests.support.ir_examples import closed_chat_scenario, open_rest_scenario;"
        "files = [sorted(K6Engine().compile(m()).files.items())"
        " for m in (closed_chat_scenario, open_rest_scenario)];"
        "print(hashlib.sha256(json.dumps(files).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)},
        ).stdout
        for seed in ("0", "4242")
    }
    files = [
        sorted(K6Engine().compile(m()).files.items()) for m in (closed_chat_scenario, open_rest_scenario)
    ]
    assert digests == {hashlib.sha256(json.dumps(files).encode()).hexdigest() + "\n"}


# --- injection: arbitrary strings stay data -------------------------------------------------------

NASTY = st.lists(
    st.one_of(
        st.sampled_from(
            ["'", '"', "\\", "${", "`", "*/", "/*", "\n", "\r", "</script>", "\u2028", "\u2029", "\x00"]
        ),
        st.characters(codec="utf-8"),
    ),
    max_size=10,
).map("".join)


# The generated script with k6's imports replaced by stubs, so node can run it and print its data.
_STUBS = """const __files = [];
class SharedArray { constructor(name, make) { this.name = name; make(); } }
const open = (path) => { __files.push(path); return '{"records": []}'; };
const sleep = () => {};
let __runner = null;
class Runner { constructor(scenario, requests, data) { __runner = { scenario, requests, data }; } }
const __ENV = {};
"""


def runnable(script: str) -> str:
    lines = [line for line in script.splitlines() if not line.startswith("import ")]
    body = "\n".join(lines).replace("export const options", "const options")
    body = body.replace("export default function", "function __default")
    return (
        _STUBS
        + body
        + "\nconsole.log(JSON.stringify({ scenario: __runner.scenario, requests: __runner.requests,"
        " data: Object.keys(__runner.data), files: __files, options }));\n"
    )


@st.composite
def nasty_scenarios(draw: st.DrawFn) -> Scenario:
    name, label, header, path, text, key, source, slo_text = (draw(NASTY) for _ in range(8))
    base = closed_chat_scenario()
    request = RequestTemplate(
        name=name or "r",
        weight=1,
        method="POST",
        path="/" + path,
        headers=(("X-Nasty", header),),
        json_body={key: [text, {"nested": text}], "n": 1},
        expect=Expect(contains=text or None),
    )
    plain = RequestTemplate(name="plain", weight=2, method="POST", path="/p", text_body=text)
    load = LoadProfile(
        model="closed",
        stages=(Stage("ramp", label, 1.0, 0, 2), Stage("spike", label + "!", 0.0, 2, 3)),
        think_time=Distribution("constant", (("value", 0.1),)),
    )
    dataset = dataclasses.replace(CARDS, records=({**CARDS.records[0], "text": text},))
    slos = (
        Slo(slo_text, "latency", "p99", "<", 0.5, requests=(request.name,)),
        Slo(slo_text + "\n2", "error_rate", None, "<", 0.01, window=Window(stage=label)),
    )
    return dataclasses.replace(
        base,
        name=draw(st.sampled_from(["x", "chat-mix"])),
        source_path=source,
        target=Target("http", "http://127.0.0.1:1/" + header, headers=(("Authorization", header),)),
        load=load,
        requests=(request, plain),
        datasets=(dataset,),
        slos=slos,
        description=text,
    )


@needs_node
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nasty_scenarios())
def test_arbitrary_strings_stay_data(scenario: Scenario) -> None:
    check_written_out_script(scenario)  # think time: the script written out for the scenario
    batched = dataclasses.replace(scenario, load=dataclasses.replace(scenario.load, think_time=NO_THINK))
    check_runtime_tables(batched)  # none: the runtime's tables (batched records)


NO_THINK = Distribution("none")


def check_written_out_script(scenario: Scenario) -> None:
    """What the script sends and records under node: exactly the IR's values, whatever they hold."""
    compiled = K6Engine().compile(scenario)
    script = compiled.files[compiled.entry]
    checked = node_check(script)
    assert checked.returncode == 0, checked.stderr
    ran = run_lean(compiled.files, compiled.entry, 30, env={"SCENARIOKIT_RECORDS": "console"})
    base = scenario.target.base_url.rstrip("/")
    written = [r for r in k6_node_records(ran["lines"]) if "outcomes" in r]
    assert len(written) == len(ran["calls"]) == 30  # a record per request, in order
    request, plain = scenario.requests
    sent = {record["outcomes"][0][0]: call for call, record in zip(ran["calls"], written, strict=True)}
    assert set(sent) == {request.name, plain.name}
    nasty = sent[request.name]
    assert nasty["url"] == base + request.path and nasty["params"]["headers"] == dict(request.headers)
    assert json.loads(nasty["body"]) == request.json_body
    assert (sent[plain.name]["url"], sent[plain.name]["body"]) == (base + plain.path, plain.text_body)
    assert {r["outcomes"][0][1] for r in written} <= {s.label for s in scenario.load.stages}
    assert ran["files"] == ["./data/images.json"]
    assert all(isinstance(v, list) for v in ran["options"]["thresholds"].values())


def check_runtime_tables(scenario: Scenario) -> None:
    compiled = K6Engine().compile(scenario)
    script = compiled.files[compiled.entry]
    checked = node_check(script)
    assert checked.returncode == 0, checked.stderr
    ran = subprocess.run(
        [NODE, "--input-type=module"], input=runnable(script), capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    request = scenario.requests[0]
    assert seen["scenario"]["baseUrl"] == scenario.target.base_url
    assert [s["label"] for s in seen["scenario"]["stages"]] == [s.label for s in scenario.load.stages]
    got = seen["requests"][0]
    assert (got["name"], got["path"], got["headers"]) == (request.name, request.path, dict(request.headers))
    assert got["json"] == request.json_body and got["expectContains"] == request.expect.contains
    assert seen["requests"][1]["body"] == scenario.requests[1].text_body
    assert seen["files"] == ["./data/images.json"]
    thresholds = seen["options"]["thresholds"]
    assert all(isinstance(v, list) for v in thresholds.values())
    assert (
        json.loads(compiled.files["data/images.json"])["records"][0]["text"] == scenario.requests[1].text_body
    )


# --- the driver ----------------------------------------------------------------------------------


@needs_k6  # the launch names the k6 binary
def test_k6_runs_with_a_lazier_go_collector_unless_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOGC", raising=False)
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    (tmp_path / "scenariokit-runtime.js").write_text("")  # a batched script's runtime beside it
    env = get_engine("k6").launch(LaunchPlan(tmp_path / "x.k6.js", "http://127.0.0.1:1", tmp_path, 10)).env
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert env["GOGC"] == "400" and int(env["GOMEMLIMIT"]) == int(memory * 0.5)
    monkeypatch.setenv("GOGC", "100")
    assert (
        get_engine("k6")
        .launch(LaunchPlan(tmp_path / "x.k6.js", "http://127.0.0.1:1", tmp_path, 10))
        .env["GOGC"]
        == "100"
    )


@needs_k6  # the launch names the k6 binary
@pytest.mark.parametrize(
    ("load", "gogc"),
    [
        ("curve: 'hold(32, 5s)'", "400"),  # few VUs: a small live heap, the lazier collector pays in rate
        ("curve: 'ramp(0, 500, 5s)'", "400"),  # the boundary: K6_GOGC_MAX_USERS itself
        ("curve: 'ramp(0, 501, 5s) -> ramp(0, 1s)'", None),  # the peak decides, not the last level
        ("curve: 'hold(10000, 5s)'", None),  # 10,000 VUs: 5x their live heap is gigabytes for no rate
        # written out for the scenario (think time, an open model): requests are spaced, Go's default
        ("curve: 'hold(32, 5s)', think_time: 'constant(1s)'", None),
        ("model: open, curve: 'hold(20/s, 5s)'", None),
    ],
)
def test_k6s_lazier_collector_is_kept_for_few_vus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load: str, gogc: str | None
) -> None:
    """GOGC=400 only for a batched script (the runtime's) up to K6_GOGC_MAX_USERS VUs (docs/performance.md,
    "Per-user cost at scale"); GOMEMLIMIT always."""
    monkeypatch.delenv("GOGC", raising=False)
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    source = tmp_path / "s.yaml"
    source.write_text(
        "version: 1\nname: gc\ntarget: {kind: http, base_url: 'http://127.0.0.1:1'}\n"
        f"load: {{{load}}}\nrequests:\n  ping: {{method: GET, path: /}}\n"
    )
    scenario = load_scenario(source).scenario
    users = peak_users(scenario.load)
    entry = get_engine("k6").compile(scenario).write(tmp_path / "script")
    plan = LaunchPlan(entry, "http://127.0.0.1:1", tmp_path, 10, peak_users=users)
    env = get_engine("k6").launch(plan).env
    assert env.get("GOGC") == gogc and "GOMEMLIMIT" in env
    batched = (entry.parent / "scenariokit-runtime.js").exists()
    assert users <= K6_GOGC_MAX_USERS and batched if gogc else users > K6_GOGC_MAX_USERS or not batched


@needs_k6  # the launch names the k6 binary
def test_only_an_open_model_runs_with_k6s_summary_and_rest_api(tmp_path: Path) -> None:
    """k6's metrics engine is there only to count an open model's dropped iterations: a closed model runs
    without it (no summary, no REST API, no port), an open one keeps both, the summary in the legacy mode."""
    closed = get_engine("k6").launch(
        LaunchPlan(tmp_path / "x.k6.js", "http://127.0.0.1:1", tmp_path, 10, open_model=False)
    )
    assert "--no-summary" in closed.argv and "--summary-export" not in closed.argv and closed.api is None
    assert closed.argv[closed.argv.index("--address") + 1] == ""  # no REST API server at all
    opened = get_engine("k6").launch(
        LaunchPlan(tmp_path / "x.k6.js", "http://127.0.0.1:1", tmp_path, 10, open_model=True)
    )
    assert "--no-summary" not in opened.argv and opened.api is not None
    assert opened.argv[opened.argv.index("--summary-mode") + 1] == "legacy"
    assert opened.argv[opened.argv.index("--summary-export") + 1] == str(tmp_path / "k6-summary.json")
    assert opened.argv[opened.argv.index("--address") + 1] == opened.api
