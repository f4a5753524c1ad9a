"""The generated scripts run on the stock engines against a real loopback server, a few seconds each.

Requests must arrive in the declared weights (within a binomial bound, not a fixed percentage), the
records must follow the runner's contract, and the open model must send what the curve integrates to.
"""

from __future__ import annotations

import base64
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

from scenariokit.compile.ir import NO_THINK_TIME, Scenario, Slo, Stage
from scenariokit.engines import get_engine
from scenariokit.engines.base import LaunchPlan
from scenariokit.engines.k6.driver import k6_binary
from scenariokit.engines.k6.reader import K6RecordReader
from scenariokit.engines.records import RECORD_FIELDS
from tests.support.ir_examples import closed_chat_scenario, open_rest_scenario
from tests.support.loopback import LoopbackServer

pytestmark = pytest.mark.engine
ENV = {**os.environ, "API_KEY": "sekret-from-env"}


def short_closed(url: str) -> Scenario:
    s = closed_chat_scenario(url)
    stages = (Stage("ramp", "ramp", 1.0, 0, 6), Stage("hold", "hold", 4.0, 6, 6))
    return dataclasses.replace(s, load=dataclasses.replace(s.load, stages=stages))


def run_locust(scenario: Scenario, out: Path) -> list[dict[str, Any]]:
    entry = get_engine("locust").compile(scenario).write(out)
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
    return [dict(zip(RECORD_FIELDS, line, strict=True)) for line in lines if isinstance(line, list)]


def run_k6(scenario: Scenario, out: Path) -> tuple[K6RecordReader, list[dict[str, Any]]]:
    """Runs the script as the runner's driver launches k6 (its argv and environment: records through the
    console, no thresholds); the reader (for its dropped iterations) and the records as dicts."""
    entry = get_engine("k6").compile(scenario).write(out / "script")
    raw = out / "raw"
    raw.mkdir()
    plan = LaunchPlan(entry, scenario.default_base_url, raw, 30, open_model=scenario.load.model == "open")
    launch = get_engine("k6").launch(plan)
    result = subprocess.run(
        launch.argv, env={**ENV, **launch.env}, cwd=entry.parent, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:]
    lines = [json.loads(line) for line in (raw / "records-k6.jsonl").read_text().splitlines()]
    kinds = Counter(tuple(line) for line in lines)  # a test start per VU, then batches of requests
    assert set(kinds) == {("test_start",), ("outcomes", "f64")} and kinds[("test_start",)] <= 64
    reader = K6RecordReader(raw, launch.api)
    records = reader.poll()
    numbers = sum(len(base64.b64decode(line["f64"])) // 8 for line in lines if "f64" in line)
    assert len(records) == numbers // 4 and reader.skipped == 0
    return reader, [record._asdict() for record in records]


def run_k6_stock(scenario: Scenario, out: Path) -> int:
    """A stock `k6 run` of the script, as a user would run it: its exit code (99 when a threshold fails)."""
    entry = get_engine("k6").compile(scenario).write(out)
    result = subprocess.run(
        [k6_binary(), "run", "--quiet", "--no-color", "--no-usage-report", str(entry)],
        env=ENV,
        cwd=out,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert b'"test_start"' not in result.stdout + result.stderr  # records only for the runner
    return result.returncode


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
    assert all(set(r) == set(RECORD_FIELDS) for r in records)
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


def test_k6_closed_model_weights_records_and_checks(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        _, records = run_k6(short_closed(server.url), tmp_path)
        auth = {headers.get("Authorization") for _, _, headers in server.bodies}
        sent = server.total()
    assert len(records) == sent > 100  # a finished run loses no record, batched or not
    assert_weights(Counter(r["name"] for r in records), {"identify": 3, "ocr": 1, "empty-image": 0.1})
    assert {r["stage"] for r in records} <= {"ramp", "hold"}
    bad = [r for r in records if r["name"] == "empty-image"]
    assert all(r["ok"] and r["error"] is None and r["status"] == 400 for r in bad)
    ocr = Counter((r["ok"], r["error"]) for r in records if r["name"] == "ocr")
    assert set(ocr) == {(True, None), (False, "wrong_answer")}
    assert all(0 <= r["ttfb"] <= r["latency"] for r in records)
    assert auth == {"Bearer sekret-from-env"}


def test_k6_records_survive_every_vu_stop(tmp_path: Path) -> None:
    """Ramps down, drops instantly and ends, with no think time (so VUs batch their records): VUs that k6
    stops must have written what they held."""
    with LoopbackServer() as server:
        s = closed_chat_scenario(server.url)
        stages = (
            Stage("ramp", "up", 1.0, 0, 8),
            Stage("ramp", "down", 1.5, 8, 2),
            Stage("spike", "jump", 0.0, 2, 6),
            Stage("hold", "high", 1.0, 6, 6),
            Stage("spike", "drop", 0.0, 6, 1),
            Stage("hold", "low", 1.0, 1, 1),
        )
        load = dataclasses.replace(s.load, stages=stages, think_time=NO_THINK_TIME)
        scenario = dataclasses.replace(s, load=load, slos=())
        _, records = run_k6(scenario, tmp_path)
        sent = server.total()
    assert len(records) == sent > 1000
    assert {r["stage"] for r in records} == {"up", "down", "high", "low"}


def test_k6_exit_code_follows_its_thresholds(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        base = open_rest_scenario(server.url)
        generous = dataclasses.replace(base, slos=(Slo("p99(latency) < 5s", "latency", "p99", "<", 5.0),))
        impossible = dataclasses.replace(base, slos=(Slo("p99(latency) < 1us", "latency", "p99", "<", 1e-6),))
        assert run_k6_stock(generous, tmp_path / "generous") == 0
        assert run_k6_stock(impossible, tmp_path / "impossible") == 99
        # the wrong answers break `error_rate < 0.5%`
        assert run_k6_stock(short_closed(server.url), tmp_path / "closed") == 99


def test_k6_open_model_sends_what_the_curve_integrates_to(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        scenario = open_rest_scenario(server.url)
        reader, records = run_k6(scenario, tmp_path)
    assert len(records) + reader.dropped == pytest.approx(scenario.load.level_integral(), abs=2)
    assert len(reader.dropped_times) == reader.dropped
    assert_weights(Counter(r["name"] for r in records), {"identify": 3, "ocr": 1, "health": 1})
