"""The generated scripts run on the stock engines against a real loopback server, a few seconds each.

Requests must arrive in the declared weights (within a binomial bound, not a fixed percentage), the
records must follow the runner's contract, and the open model must send what the curve integrates to.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from scenariokit.backends import get_backend
from scenariokit.drivers import k6_binary
from scenariokit.ir import Scenario, Slo, Stage
from scenariokit.records import LOCUST_RECORD_FIELDS
from tests.support.ir_examples import closed_chat_scenario, open_rest_scenario
from tests.support.loopback import LoopbackServer

pytestmark = pytest.mark.engine
ENV = {**os.environ, "API_KEY": "sekret-from-env"}


def short_closed(url: str) -> Scenario:
    s = closed_chat_scenario(url)
    stages = (Stage("ramp", "ramp", 1.0, 0, 6), Stage("hold", "hold", 4.0, 6, 6))
    return dataclasses.replace(s, load=dataclasses.replace(s.load, stages=stages))


def run_locust(scenario: Scenario, out: Path) -> list[dict[str, Any]]:
    entry = get_backend("locust").emit(scenario).write(out)
    results = out / "results"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(entry),
            "--headless",
            "--only-summary",
            "--run-time",
            "20s",
            "--loglevel",
            "ERROR",
            "--exit-code-on-error",
            "0",
        ],
        env={**ENV, "SCENARIOKIT_RESULTS_DIR": str(results)},
        cwd=out,
        capture_output=True,
        check=True,
        timeout=60,
    )
    lines = [json.loads(line) for f in results.glob("records-*.jsonl") for line in f.read_text().splitlines()]
    markers = [line for line in lines if isinstance(line, dict)]
    assert [list(m) for m in markers] == [["test_start"]]  # the marker stage windows are measured from
    # requests are arrays in the runtime's RECORD_FIELDS order
    return [dict(zip(LOCUST_RECORD_FIELDS, line, strict=True)) for line in lines if isinstance(line, list)]


def run_k6(scenario: Scenario, out: Path) -> tuple[int, list[dict[str, Any]]]:
    entry = get_backend("k6").emit(scenario).write(out)
    result = subprocess.run(
        [k6_binary(), "run", "--quiet", "--no-color", "--out", f"json={out / 'k6.json'}", str(entry)],
        env=ENV,
        cwd=out,
        capture_output=True,
        timeout=60,
        check=False,
    )
    points = [json.loads(line) for line in (out / "k6.json").read_text().splitlines()]
    return result.returncode, [p for p in points if p.get("type") == "Point"]


def assert_weights(counts: Counter[str], weights: dict[str, float]) -> None:
    """Each count within 4.5 standard deviations of its binomial expectation."""
    n = sum(counts.values())
    total = sum(weights.values())
    for name, weight in weights.items():
        p = weight / total
        mean, sd = n * p, math.sqrt(n * p * (1 - p))
        assert abs(counts[name] - mean) <= 4.5 * sd + 1, (name, counts[name], mean, sd, n)


def test_locust_closed_model_weights_records_and_checks(tmp_path: Path) -> None:
    with LoopbackServer(chunk_delay_s=0.005) as server:
        records = run_locust(short_closed(server.url), tmp_path)
        auth = {headers.get("Authorization") for _, _, headers in server.bodies}
        # users stopped at the end may leave one request each in flight, unrecorded
        assert 0 <= server.total() - len(records) <= 6 and len(records) > 100
    assert_weights(Counter(r["name"] for r in records), {"identify": 3, "ocr": 1, "empty-image": 0.1})
    assert all(set(r) == set(LOCUST_RECORD_FIELDS) for r in records)
    streamed = [r for r in records if r["name"] == "identify"]
    assert all(
        r["ok"] and r["ttft"] is not None and len(r["itl"]) == 2 and r["tokens"] == 3 for r in streamed
    )
    assert all(r["ttfb"] <= r["ttft"] <= r["latency"] for r in streamed)
    bad = [r for r in records if r["name"] == "empty-image"]
    assert all(r["ok"] and r["status"] == 400 for r in bad)
    # the loopback answers "HOLIDAY SALE 2026": right for that card, wrong_answer for the other one
    ocr = Counter((r["ok"], r["error"]) for r in records if r["name"] == "ocr")
    assert set(ocr) == {(True, None), (False, "wrong_answer")}
    assert auth == {"Bearer sekret-from-env"}
    assert {r["stage"] for r in records} <= {"ramp", "hold"}


def test_locust_open_model_sends_what_the_curve_integrates_to(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        scenario = open_rest_scenario(server.url)
        records = run_locust(scenario, tmp_path)
    sent = [r for r in records if "dropped" not in r]
    assert len(sent) == pytest.approx(scenario.load.level_integral(), abs=2)  # 105 arrivals
    assert all(r["intended"] is not None and r["t"] - r["intended"] < 0.5 for r in sent)
    assert_weights(Counter(r["name"] for r in sent), {"identify": 3, "ocr": 1, "health": 1})


def test_k6_closed_model_weights_tags_and_checks(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        code, points = run_k6(short_closed(server.url), tmp_path)
        auth = {headers.get("Authorization") for _, _, headers in server.bodies}
        sent = server.total()
    latency = [p["data"] for p in points if p["metric"] == "sk_latency"]
    assert len(latency) == sent > 100
    assert_weights(Counter(p["tags"]["name"] for p in latency), {"identify": 3, "ocr": 1, "empty-image": 0.1})
    assert {p["tags"]["stage"] for p in latency} <= {"ramp", "hold"}
    assert all(
        p["tags"]["error"] == "" and p["tags"]["status"] == "400"
        for p in latency
        if p["tags"]["name"] == "empty-image"
    )
    assert {p["tags"]["error"] for p in latency if p["tags"]["name"] == "ocr"} == {"", "wrong_answer"}
    assert auth == {"Bearer sekret-from-env"}
    assert code == 99  # the wrong answers break `error_rate < 0.5%`: k6's own threshold fails too


def test_k6_exit_code_follows_its_thresholds(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        base = open_rest_scenario(server.url)
        generous = dataclasses.replace(base, slos=(Slo("p99(latency) < 5s", "latency", "p99", "<", 5.0),))
        impossible = dataclasses.replace(base, slos=(Slo("p99(latency) < 1us", "latency", "p99", "<", 1e-6),))
        assert run_k6(generous, tmp_path / "generous")[0] == 0
        assert run_k6(impossible, tmp_path / "impossible")[0] == 99


def test_k6_open_model_sends_what_the_curve_integrates_to(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        scenario = open_rest_scenario(server.url)
        _, points = run_k6(scenario, tmp_path)
    sent = sum(1 for p in points if p["metric"] == "sk_latency")
    dropped = sum(p["data"]["value"] for p in points if p["metric"] == "dropped_iterations")
    assert sent + dropped == pytest.approx(scenario.load.level_integral(), abs=2)
