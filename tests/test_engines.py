"""The generated scripts run on the stock engines against a real loopback server, a few seconds each.

Requests must arrive in the declared weights (within binomial and chi-square bounds, not a fixed
percentage), the records must follow the runner's contract, the open model must send what the curve
integrates to, and a stock `k6 run` must tag its points and exit as its thresholds say. The helpers that run
the engines are in tests/support/engines.py.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from scenariokit.compile.ir import NO_THINK_TIME, DataRef, LiteralText, Slo, Stage, Target, Template
from scenariokit.engines.records import RECORD_FIELDS
from tests.support.engines import (
    ENV,
    assert_weights,
    needs_k6,
    open_scenario,
    run_k6,
    run_k6_stock,
    run_locust,
    short_closed,
    short_closed_with_spike,
)
from tests.support.ir_examples import closed_chat_scenario, open_rest_scenario
from tests.support.loopback import LoopbackServer

pytestmark = pytest.mark.engine


# --- Locust ---------------------------------------------------------------------------------------


def test_locust_closed_model_weights_records_and_checks(tmp_path: Path) -> None:
    with LoopbackServer(chunk_delay_s=0.005) as server:
        run = run_locust(short_closed(server.url), tmp_path)
        records = run.records
        auth = {headers.get("Authorization") for _, _, headers in server.bodies}
        # users stopped at the end may leave one request each in flight, unrecorded
        assert 0 <= server.total() - len(records) <= 6 and len(records) > 100
    assert run.dropped == []  # only an open model drops arrivals
    assert_weights(Counter(r["name"] for r in records), {"identify": 3, "ocr": 1, "empty-image": 0.1})
    assert all(set(r) == set(RECORD_FIELDS) for r in records)
    streamed = [r for r in records if r["name"] == "identify"]
    assert streamed and all(
        r["ok"] and r["ttft"] is not None and len(r["itl"]) == 2 and r["tokens"] == 3 for r in streamed
    )
    assert all(r["ttfb"] <= r["ttft"] <= r["latency"] for r in streamed)
    bad = [r for r in records if r["name"] == "empty-image"]
    assert bad and all(r["ok"] and r["status"] == 400 for r in bad)  # about 13 expected: none is 6e-6
    # the loopback answers "HOLIDAY SALE 2026": right for that card, wrong_answer for the other one
    ocr = Counter((r["ok"], r["error"]) for r in records if r["name"] == "ocr")
    assert set(ocr) == {(True, None), (False, "wrong_answer")}
    assert auth == {"Bearer sekret-from-env"}
    # each record is labelled with the stage its start falls in (the ramp is the first second). Locust
    # polls its load shape once a second, so the users of a 1 s ramp from 0 start as it ends: the "ramp"
    # label is usually absent, and this checks the labelling, not that Locust followed the ramp.
    assert all(r["stage"] == ("ramp" if r["t"] - run.started < 1.0 else "hold") for r in records)


def test_locust_open_model_sends_what_the_curve_integrates_to(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        scenario = open_rest_scenario(server.url)
        run = run_locust(scenario, tmp_path)
    sent = run.records  # an arrival no user could start in time is a `dropped` line, not a record
    assert len(sent) + run.dropped_count == pytest.approx(scenario.load.level_integral(), abs=2)  # 105
    assert all(r["intended"] is not None and r["t"] - r["intended"] < 0.5 for r in sent)
    assert all(d["stage"] in {"ramp", "hold"} for d in run.dropped)
    assert_weights(Counter(r["name"] for r in sent), {"identify": 3, "ocr": 1, "health": 1})


# --- k6 as the runner launches it -----------------------------------------------------------------


@needs_k6
def test_k6_closed_model_weights_records_and_checks(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        _, records = run_k6(short_closed(server.url), tmp_path)
        auth = {headers.get("Authorization") for _, _, headers in server.bodies}
        sent = server.total()
    assert len(records) == sent > 100  # a finished run loses no record, batched or not
    assert_weights(Counter(r["name"] for r in records), {"identify": 3, "ocr": 1, "empty-image": 0.1})
    assert {r["stage"] for r in records} == {"ramp", "hold"}
    bad = [r for r in records if r["name"] == "empty-image"]
    assert bad and all(r["ok"] and r["error"] is None and r["status"] == 400 for r in bad)
    ocr = Counter((r["ok"], r["error"]) for r in records if r["name"] == "ocr")
    assert set(ocr) == {(True, None), (False, "wrong_answer")}
    assert all(0 <= r["ttfb"] <= r["latency"] for r in records)
    assert auth == {"Bearer sekret-from-env"}


@needs_k6
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


@needs_k6
def test_k6_open_model_sends_what_the_curve_integrates_to(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        scenario = open_rest_scenario(server.url)
        reader, records = run_k6(scenario, tmp_path)
    assert len(records) + reader.dropped == pytest.approx(scenario.load.level_integral(), abs=2)
    assert len(reader.dropped_times) == reader.dropped
    assert_weights(Counter(r["name"] for r in records), {"identify": 3, "ocr": 1, "health": 1})


# --- stock `k6 run`, as a user runs the script ----------------------------------------------------


@needs_k6
def test_k6_run_closed_model_weights_tags_and_checks(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        code, points = run_k6_stock(short_closed_with_spike(server.url), tmp_path)
        auth = {headers.get("Authorization") for _, _, headers in server.bodies}
        sent = server.total()
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        by_metric.setdefault(p["metric"], []).append(p["data"])
    latency = by_metric["sk_latency"]
    # sk_ok and sk_successes for the error_rate and throughput thresholds; no ttfb threshold, no sk_ttfb
    assert len(latency) == len(by_metric["sk_ok"]) == sent > 100 and "sk_ttfb" not in by_metric
    assert all({"name", "stage", "stage_kind", "status", "error"} <= set(p["tags"]) for p in latency)
    assert_weights(Counter(p["tags"]["name"] for p in latency), {"identify": 3, "ocr": 1, "empty-image": 0.1})
    assert {p["tags"]["stage"] for p in latency} == {"ramp", "hold", "spike"}
    bad = [p["tags"] for p in latency if p["tags"]["name"] == "empty-image"]
    assert bad and all(t["error"] == "" and t["status"] == "400" for t in bad)  # expect: status 400
    streamed = [p["tags"] for p in latency if p["tags"]["name"] == "identify"]
    assert {(t["status"], t["error"]) for t in streamed} == {("200", "")}
    # the loopback answers "HOLIDAY SALE 2026": right for that card, wrong_answer for the other one
    assert {p["tags"]["error"] for p in latency if p["tags"]["name"] == "ocr"} == {"", "wrong_answer"}
    assert auth == {"Bearer sekret-from-env"}
    successes = sum(p["value"] for p in by_metric["sk_successes"])
    assert successes == sum(p["value"] for p in by_metric["sk_ok"]) < sent
    assert code == 99  # the wrong answers break `error_rate < 0.5%`


@needs_k6
def test_k6_exit_code_follows_its_thresholds(tmp_path: Path) -> None:
    """0 when every threshold holds, 99 when one fails (a closed model's failing error_rate: the test
    above)."""
    with LoopbackServer() as server:
        base = open_scenario(Stage("hold", "hold", 1.5, 20, 20), target=Target("http", server.url))
        generous = dataclasses.replace(
            base,
            slos=(
                Slo("p99(latency) < 5s", "latency", "p99", "<", 5.0),
                Slo("p99(latency) < 5s for identify", "latency", "p99", "<", 5.0, requests=("identify",)),
                Slo("error_rate < 1%", "error_rate", None, "<", 0.01),
            ),
        )
        impossible = dataclasses.replace(base, slos=(Slo("p99(latency) < 1us", "latency", "p99", "<", 1e-6),))
        assert run_k6_stock(generous, tmp_path / "generous")[0] == 0
        assert run_k6_stock(impossible, tmp_path / "impossible")[0] == 99


@needs_k6
def test_k6_run_open_model_rate_and_sub_one_per_second(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        scenario = dataclasses.replace(
            open_scenario(Stage("ramp", "ramp", 2.0, 5, 20), Stage("hold", "hold", 2.0, 20, 20)),
            target=Target("http", "http://127.0.0.1:9"),  # overridden below
        )
        identify, ocr, health = scenario.requests  # health's URL from a data set (below)
        card = Template((LiteralText("/health?card="), DataRef("images", "data_url")))
        health = dataclasses.replace(health, path=card)
        scenario = dataclasses.replace(scenario, requests=(identify, ocr, health))
        env = {**ENV, "SCENARIOKIT_BASE_URL": server.url}
        _, points = run_k6_stock(scenario, tmp_path / "open", env)
        slow = dataclasses.replace(
            scenario, load=dataclasses.replace(scenario.load, stages=(Stage("hold", "hold", 5.0, 0.5, 0.5),))
        )
        _, slow_points = run_k6_stock(slow, tmp_path / "slow", env)
    sent = sum(1 for p in points if p["metric"] == "sk_latency")
    dropped = sum(p["data"]["value"] for p in points if p["metric"] == "dropped_iterations")
    assert sent + dropped == pytest.approx(scenario.load.level_integral(), abs=2)  # 65 arrivals
    assert dropped == 0
    assert {p["data"]["tags"]["error"] for p in points if p["metric"] == "sk_latency"} == {""}
    # k6's own samples: named by their URL (stock k6's default system tags), or by the request where the
    # URL comes from a data set (one time series, not one per card); no tag of the runtime's besides
    http_names = {p["data"]["tags"]["name"] for p in points if p["metric"] == "http_req_duration"}
    assert http_names == {f"{server.url}/api/v1/identify", f"{server.url}/api/v1/ocr", "health"}
    assert not any("stage" in p["data"]["tags"] for p in points if p["metric"].startswith("http_req"))
    # no error_rate, throughput or ttfb threshold: the runtime sends none of their points
    assert not {"sk_ok", "sk_successes", "sk_ttfb"} & {p["metric"] for p in points}
    # 0.5/s for 5 s: k6 starts them at 2 s and 4 s
    assert sum(1 for p in slow_points if p["metric"] == "sk_latency") == 2
