"""The k6 script written out for its scenario (engines/k6/lean.py): where it is used, and what it sends,
judges and records, run under node with k6's modules replaced by recording stand-ins (tests/support/
k6_node.py). What it costs per VU is benchmarks/bench_scale.py's; that it runs on k6 against a real server,
tests/test_engines.py's and the wire tests'."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario
from tests.support.engines import NODE, needs_node
from tests.support.k6_node import records, run_lean

ROOT = Path(__file__).resolve().parents[1]


def compiled(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return compile_scenario(load_scenario(path).scenario, "k6")


REST = """\
version: 1
name: lean
target: {{kind: http, base_url: "http://127.0.0.1:1/", headers: {{Authorization: "Bearer s3cr3t-token"}}}}
load: {{{load}}}
requests:
  identify: {{weight: 3, method: POST, path: /api/identify, json: {{image_url: "x"}}}}
  missing: {{method: GET, path: /nope, expect: {{status: [404]}}}}
"""


@pytest.mark.parametrize(
    ("load", "written_out"),
    [
        ('curve: "ramp(0, 2, 1s)", think_time: "uniform(0.5s, 2.5s)"', True),
        ('model: open, curve: "ramp(1, 5, 2s)"', True),
        ('curve: "ramp(0, 2, 1s)"', False),  # back to back: the runtime's batched records
    ],
)
def test_the_script_is_written_out_where_each_record_is_written_at_once(
    tmp_path: Path, load: str, written_out: bool
) -> None:
    script = compiled(tmp_path, REST.format(load=load))
    assert ("scenariokit-runtime.js" not in script.files) == written_out
    assert ("./scenariokit-runtime.js" in script.files[script.entry]) != written_out


@needs_node
def test_it_sends_judges_and_records_each_request(tmp_path: Path) -> None:
    script = compiled(tmp_path, REST.format(load='curve: "ramp(0, 2, 1s)", think_time: "constant(1s)"'))
    ran = run_lean(script.files, script.entry, 200, {"SCENARIOKIT_RECORDS": "console"}, {"status": 404})
    lines = records(ran["lines"])
    assert lines[0] == {"test_start": ran["start"] / 1000} and all("outcomes" in line for line in lines[1:])
    by_name: dict[str, list[dict[str, Any]]] = {}
    for call, line in zip(ran["calls"], lines[1:], strict=True):
        by_name.setdefault(line["outcomes"][0][0], []).append({"call": call, **line})
    identify, missing = by_name["identify"], by_name["missing"]
    assert 150 - 25 < len(identify) < 150 + 25  # weights 3:1 over 200 picks (seeded: the same every run)
    first = identify[0]
    assert first["call"] == {
        "method": "POST",
        "url": "http://127.0.0.1:1/api/identify",  # the base URL's trailing slash is dropped
        "body": '{"image_url":"x"}',
        "params": {"headers": {"Authorization": "Bearer s3cr3t-token", "Content-Type": "application/json"}},
    }
    assert missing[0]["call"]["method"] == "GET" and missing[0]["call"]["body"] is None
    # a 404 is what `missing` expects and not what `identify` does (any 2xx)
    assert {tuple(r["outcomes"][0][2:]) for r in missing} == {(404, True, None)}
    assert {tuple(r["outcomes"][0][2:]) for r in identify} == {(404, False, "http_404")}
    # started within the 1 s ramp, on setup's clock
    assert all(r["n"][1:] == [0, 1.5, 1.25] and r["outcomes"][0][1] == "ramp" for r in lines[1:])
    assert all(0 <= r["n"][0] - ran["start"] < 1000 for r in lines[1:])


@needs_node
def test_a_failure_without_a_response_is_named_and_its_message_cleaned_once(tmp_path: Path) -> None:
    script = compiled(tmp_path, REST.format(load='curve: "ramp(0, 2, 1s)", think_time: "constant(1s)"'))
    message = "dial: connection refused\r\nBearer s3cr3t-token " + "x" * 300
    refused = {"status": 0, "error_code": 1212, "error": message}
    ran = run_lean(script.files, script.entry, 20, {"SCENARIOKIT_RECORDS": "console"}, refused)
    outcomes = [line["outcomes"][0] for line in records(ran["lines"]) if "outcomes" in line]
    assert len(outcomes) == 20
    for _name, _stage, status, ok, error, code, text in outcomes:
        assert (status, ok, error, code) == (0, False, "connection_refused", 1212)
        assert "s3cr3t" not in text and "\r" not in text and "[redacted]" in text
        assert len(text) == 200 and text.endswith("\u2026")


@needs_node
def test_a_stock_run_sends_the_points_its_thresholds_read(tmp_path: Path) -> None:
    text = (
        REST.format(load='curve: "ramp(0, 2, 1s)", think_time: "constant(1s)"') + "slo: [error_rate < 1%]\n"
    )
    script = compiled(tmp_path, text)
    source = script.files[script.entry]
    assert 'new Rate("sk_ok")' in source and "sk_latency" not in source.split("export const options")[1]
    ran = run_lean(script.files, script.entry, 5)
    assert ran["lines"] == [] and len(ran["calls"]) == 5  # no records without SCENARIOKIT_RECORDS


# --- the built-ins a VU makes ----------------------------------------------------------------------------

# The code a VU runs on a successful request and at init, with the helpers a failure or an answer needs cut
# out: it must use no built-in a stock script does not (each costs every VU several KiB; see the script).
_ONLY_WHEN_NEEDED = re.compile(
    r"^const (failure|answerError|chatAnswer|normalizeText|points) = .*?^};\n", re.MULTILINE | re.DOTALL
)
_BUILTINS = re.compile(r"\b(String|Number|RegExp|Array|Object|Set|Map)\b\s*[.(]|/[^/\n*]+/[gimsuy]*[,;.)]")


@pytest.mark.parametrize("name", ["recognition-api-fleet", "million-users", "steady-soak", "open-arrivals"])
def test_the_common_path_makes_no_built_in_a_stock_script_would_not(name: str) -> None:
    script = compile_scenario(load_scenario(ROOT / f"scenarios/{name}.yaml").scenario, "k6")
    code = _ONLY_WHEN_NEEDED.sub("", script.files[script.entry])
    code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', code)  # string literals hold data, not calls
    code = re.sub(r"//.*", "", code)  # nor do comments
    assert "scenariokit-runtime.js" not in script.files
    assert _BUILTINS.findall(code) == []


# --- the expected text, compared as the runtime compares it ---------------------------------------------

WHITESPACE = " \t\n\v\f\r\u00a0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000\ufeff\u0085\u180e"


@needs_node
@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.sampled_from([*WHITESPACE, "a", "B", "\u00c9", "\U0001f600", "\u0130"])),
        min_size=1,
        max_size=20,
    )
)
def test_normalize_text_is_the_runtimes_regular_expression(texts: list[str]) -> None:
    script = compile_scenario(load_scenario(ROOT / "scenarios/smoke.yaml").scenario, "k6")
    source = script.files[script.entry]
    helper = source[
        source.index("const WHITESPACE") : source.index("};", source.index("const normalizeText")) + 2
    ]
    program = helper + (
        f"\nconst texts = {json.dumps(texts)};\n"
        "process.stdout.write(JSON.stringify(texts.map((t) => [normalizeText(t),"
        ' String(t).toLowerCase().replace(/\\s+/g, " ").trim()])));\n'
    )
    assert NODE is not None
    ran = subprocess.run(
        [NODE, "--input-type=module"], input=program, capture_output=True, text=True, check=True
    )
    for ours, runtime in json.loads(ran.stdout):
        assert ours == runtime
