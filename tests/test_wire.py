"""What reaches the wire: every example scenario, on both engines, against a recorder on loopback.

The "before" of moving request semantics (templates, header merging, Content-Type, bodies) from the engines'
runtimes into the compiler: each (scenario, engine) runs through the real CLI for 2 s against
tests/support/wire.py, and the set of distinct canonical requests it sent must equal the one stored in
tests/golden_wire/<scenario>.<engine>.json. Regenerate after an intended change with
`UPDATE_GOLDEN=1 python -m pytest tests/test_wire.py` and review the diff like code.

The comparison is set equality, and it is deterministic: the canonical form leaves out what differs between
runs (the port, the body's length, the engine's user agent and connection handling; the data-set record a
user drew becomes `<data:SET.FIELD>`), and a run is repeated against the same recorder, at most MAX_RUNS
times, until every request with a weight has been sent (so a rare request, such as holiday-spike's
`empty-image` at weight 0.1, is never left out by chance). Anything else is kept, so a changed method, path,
query, header name or value, header added or removed, Content-Type, body key or value, or an image sent in
another encoding, adds or removes an element of the set and fails the test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from scenariokit.cli import main
from tests.support.wire import DataValues, WireRecorder, canonical_request

ROOT = Path(__file__).resolve().parents[1]
# beside tests/golden, not in it: tests/test_golden.py requires every entry there to be a generated script
GOLDEN = ROOT / "tests" / "golden_wire"
EXAMPLES = sorted((ROOT / "scenarios").glob("*.yaml"))
ENGINES = ("locust", "k6")
API_KEY = "wire-test-api-key"  # a fixed fake secret for `${env:API_KEY}`: it is recorded in the goldens
MAX_RUNS = 5  # a bound on the repeats; one run nearly always sends every request (see LOAD)
# Error kinds whose request may never have reached the recorder, so it does not count as sent.
NOT_DELIVERED = ("connection_refused", "connection_reset", "timeout")

# Load per scenario: enough users that a 2 s run sends each request of a mix with high probability, since
# `--duration` shrinks the curve but not the think time. holiday-spike's `empty-image` (weight 0.1 of 4.1,
# 1 request in 41) is the rarest. Locust draws tasks afresh each run: ~120 requests a run (holiday-spike at
# 100 users; production, whose users think 1.5 s at a third of the peak most of the curve, at 300) miss it
# in ~5% of runs, all MAX_RUNS in ~1e-6. k6 draws from a seeded generator per VU, so each run sends nearly
# the same requests: `empty-image` 2 to 10 times at these sizes.
LOAD: dict[str, list[str]] = {
    "bad-requests": ["--users", "40"],  # 7 requests of weight 1 in 13: Locust ~90 requests, k6 ~160
    "chaos-kill": ["--users", "3"],  # its kill cannot act on the recorder (an error event): the same wire
    "chaos-network": ["--users", "3"],  # its faults act in the proxy, before the recorder: the same wire
    "cold-start": ["--users", "3"],
    "holiday-spike": ["--users", "100"],
    "holiday-spike-production": ["--users", "300"],
    "knee-sweep": ["--users", "2"],  # no think time: two users already send hundreds of requests
    "million-users": ["--users", "30"],  # 1.5 s think: 30 users send ~40 requests of a 3:1 mix in 2 s
    "open-arrivals": ["--rate", "10/s"],
    "recognition-api": ["--users", "30"],
    "recognition-api-fleet": ["--users", "30"],
    "smoke": ["--users", "4"],
    "steady-soak": ["--users", "4"],
}

# Target and request headers whose names differ only in case. Locust's runtime merges the two as Python
# dicts (case-sensitive), then its HTTP client (geventhttpclient) keeps one header per name in any case, the
# last one set, so the request's `authorization` replaces the target's `Authorization` as in k6's runtime
# (which merges case-insensitively). The second request sets its own Content-Type spelled neither as
# Locust's FastHttpSession checks before adding `Content-Type: application/json` to a JSON body
# ("Content-Type", "content-type"), so on Locust the added one replaces it; k6 sends the request's own.
HEADER_MERGE = """\
version: 1
name: header-merge
target:
  kind: http
  base_url: http://127.0.0.1:9
  headers: {Authorization: "Bearer ${env:API_KEY}", X-Target: target}
load: {curve: "ramp(0, 4, 1s) -> hold(2s)", think_time: constant(100ms)}
requests:
  own-auth: {path: /own-auth, headers: {authorization: Bearer request-token}}
  own-content-type:
    method: POST
    path: /own-content-type
    json: {x: 1}
    headers: {Content-type: application/vnd.api+json}
  target-only: {path: /target-only}
slo:
  - error_rate < 100%
"""
HEADER_MERGE_NAMES = frozenset({"authorization", "content-type", "x-target"})  # what the scenario sets


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("API_KEY", API_KEY)


def weighted_requests(path: Path) -> set[str]:
    """The requests a run may send: those with a weight (default 1) above 0."""
    requests = yaml.safe_load(path.read_text(encoding="utf-8"))["requests"]
    weighted = {name: spec for name, spec in requests.items() if float(spec.get("weight", 1)) > 0}
    # a flow's records are its steps', named `<entry>.<step name or 1-based position>`
    return {
        f"{name}.{step.get('name') or i}" if "steps" in spec else name
        for name, spec in weighted.items()
        for i, step in enumerate(spec.get("steps") or [{}], start=1)
    }


def delivered(run_dir: Path) -> set[str]:
    """The request names that reached the target in a run, from its summary."""
    by_request = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["by_request"]
    return {
        name
        for name, row in by_request.items()
        if row["requests"] - sum(row["errors_by_kind"].get(kind, 0) for kind in NOT_DELIVERED) > 0
    }


def record(
    path: Path, engine: str, load: list[str], tmp_path: Path, record_property: Callable[[str, object], None]
) -> list[dict[str, Any]]:
    """Runs the scenario until each of its requests has been sent; the distinct canonical requests seen."""
    script = tmp_path / "script"
    assert main(["compile", str(path), "--engine", engine, "-o", str(script)]) == 0
    expected = weighted_requests(path)
    sent: set[str] = set()
    runs = 0
    with WireRecorder(DataValues.from_script_dir(script)) as recorder:
        while runs < MAX_RUNS and expected - sent:
            run_dir = tmp_path / f"run-{runs}"
            runs += 1
            argv = ["run", str(path), "--engine", engine, "--base-url", recorder.url, "--duration", "2s"]
            code = main([*argv, *load, "--out", str(run_dir), "--quiet"])
            # an SLO may well fail against the recorder (1); invalid input (2) or a run error (3) may not
            assert code not in (2, 3), f"run {runs} of {path.name} on {engine} exited {code}"
            sent |= delivered(run_dir)
        recording = recorder.recording()
    record_property("runs", runs)  # in --junitxml: how close LOAD sizes come to MAX_RUNS
    assert sent >= expected, f"{sorted(expected - sent)} never sent in {MAX_RUNS} runs"
    assert recorder.overflow == 0, "more distinct requests than any scenario has: is a value not canonical?"
    return recording


def golden_file(name: str, engine: str) -> Path:
    return GOLDEN / f"{name}.{engine}.json"


def check_golden(name: str, engine: str, recording: list[dict[str, Any]]) -> None:
    text = json.dumps({"scenario": name, "engine": engine, "requests": recording}, indent=2, sort_keys=True)
    golden = golden_file(name, engine)
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text + "\n", encoding="utf-8", newline="\n")
    assert golden.exists(), f"no golden file {golden}: run with UPDATE_GOLDEN=1"
    stored = json.loads(golden.read_text(encoding="utf-8"))["requests"]
    now = {json.dumps(r, sort_keys=True) for r in recording}
    before = {json.dumps(r, sort_keys=True) for r in stored}
    added, missing = sorted(now - before), sorted(before - now)
    assert (added, missing) == ([], []), f"{golden.name}: the wire changed (sent now, no longer sent)"


@pytest.mark.engine
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_requests_on_the_wire_match_the_recording(
    path: Path, engine: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    recording = record(path, engine, LOAD[path.stem], tmp_path, record_property)
    check_golden(path.stem, engine, recording)


@pytest.mark.engine
@pytest.mark.parametrize("engine", ENGINES)
def test_header_merge_on_the_wire_matches_the_recording(
    engine: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    path = tmp_path / "header-merge.yaml"
    path.write_text(HEADER_MERGE, encoding="utf-8")
    recording = record(path, engine, ["--users", "4"], tmp_path, record_property)
    check_golden("header-merge", engine, recording)


def test_every_example_has_a_load() -> None:
    assert set(LOAD) == {p.stem for p in EXAMPLES}


def scenario_headers(engine: str, names: frozenset[str]) -> dict[str, list[list[str]]]:
    """Per path of the header-merge fixture, the named headers as the engine sent them (its recording)."""
    stored = json.loads(golden_file("header-merge", engine).read_text(encoding="utf-8"))["requests"]
    return {r["path"]: [h for h in r["headers"] if h[0] in names] for r in stored}


def test_both_engines_let_a_request_header_replace_the_target_header_in_any_case() -> None:
    names = frozenset({"authorization", "x-target"})
    assert scenario_headers("locust", names) == scenario_headers("k6", names)


def test_both_engines_send_the_same_headers() -> None:
    assert scenario_headers("locust", HEADER_MERGE_NAMES) == scenario_headers("k6", HEADER_MERGE_NAMES)


def test_every_recording_has_a_scenario() -> None:
    names = [p.stem for p in EXAMPLES] + ["header-merge"]
    assert {p.name for p in GOLDEN.iterdir()} == {f"{n}.{e}.json" for n in names for e in ENGINES}


# The canonical form, without an engine: the record drawn does not show, every part of a request does.


def card_record(i: int, data: str, text: str) -> dict[str, str]:
    url = f"data:image/png;base64,{data}"
    return {"id": str(i), "mime": "image/png", "base64": data, "data_url": url, "text": text}


CARDS = {"images": [card_record(0, "QUJDREVGR0g=", "KEEP LEFT"), card_record(1, "SUpLTE1OT1A=", "THANK YOU")]}
HEADERS = [("Host", "127.0.0.1:1"), ("User-Agent", "k6"), ("Authorization", "Bearer a")]
HEADERS += [("Content-Type", "application/json"), ("Content-Length", "99")]
BASE: dict[str, Any] = {
    "method": "POST",
    "path": "/v1/chat/completions?x=1",
    "headers": HEADERS,
    "body": {"model": "ocr", "messages": [{"role": "user", "content": [{"url": "{card}"}]}]},
}


def canonical(card: int = 0, **change: Any) -> dict[str, Any]:
    request = {**BASE, **change}
    body = request["body"]
    if isinstance(body, dict):
        body = json.dumps(body).replace("{card}", CARDS["images"][card]["data_url"]).encode()
    return canonical_request(request["method"], request["path"], request["headers"], body, DataValues(CARDS))


def test_the_record_drawn_and_volatile_headers_do_not_show() -> None:
    first = canonical(0)
    assert first == canonical(1)
    assert first["body"]["json"]["messages"][0]["content"][0]["url"] == "<data:images.data_url>"
    assert first["headers"] == [["authorization", "Bearer a"], ["content-type", "application/json"]]
    assert canonical(0, headers=[*BASE["headers"][:3], ("Host", "127.0.0.1:2"), ("User-Agent", "x")]) == (
        canonical(0, headers=BASE["headers"][:3])
    )


@pytest.mark.parametrize(
    "change",
    [
        {"method": "PUT"},
        {"path": "/v1/chat/completions?x=2"},
        {"path": "/v1/chat/completions"},
        {"headers": [*BASE["headers"][:2], ("Authorization", "Bearer b"), *BASE["headers"][3:]]},
        {"headers": [h for h in BASE["headers"] if h[0] != "Authorization"]},
        {"headers": [*BASE["headers"], ("X-Extra", "1")]},
        {"headers": [*BASE["headers"], ("Authorization", "Bearer a")]},  # sent twice
        {"headers": [*BASE["headers"][:3], ("Content-Type", "text/plain"), *BASE["headers"][4:]]},
        {"body": {**BASE["body"], "stream": True}},
        {"body": {**BASE["body"], "model": "classify"}},
        {
            "body": {"model": "ocr", "messages": [{"role": "user", "content": [{"url": "{card}x"}]}]}
        },  # not a card
        {"body": b"{not json"},
    ],
)
def test_every_part_of_a_request_shows(change: dict[str, Any]) -> None:
    assert canonical(**change) != canonical()


def test_the_recorder_answers_as_a_chat_server() -> None:
    with WireRecorder(DataValues(CARDS)) as recorder:
        image = CARDS["images"][1]["data_url"]
        chat = {"model": "ocr", "messages": [{"role": "user", "content": [{"image_url": {"url": image}}]}]}
        whole = httpx.post(f"{recorder.url}/v1/chat/completions", json=chat, timeout=5)
        assert whole.json()["choices"][0]["message"]["content"] == "THANK YOU"
        streamed = httpx.post(f"{recorder.url}/v1/chat/completions", json={**chat, "stream": True}, timeout=5)
        events = [line for line in streamed.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        words = [json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-2]]
        assert "".join(words) == "THANK YOU"
        assert (
            httpx.post(f"{recorder.url}/v1/chat/completions", json={"messages": []}, timeout=5).status_code
            == 400
        )
        assert httpx.get(f"{recorder.url}/api/x?y=1", timeout=5).json() == {"ok": True}
        # httpx's own GET / and GET /metrics are taken for the runner's probes and not recorded
        httpx.get(f"{recorder.url}/metrics", timeout=5)
    assert recorder.received == 4 and recorder.probes == 1
    assert [(r["method"], r["path"]) for r in recorder.recording()] == [
        ("GET", "/api/x?y=1"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/chat/completions"),
    ]
