"""summary.json against the checked-in schema, junit.xml structure, summary.md, and rebuild from the store."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import jsonschema
import pytest

from scenariokit.engines.records import RequestRecord
from scenariokit.results.store import RecordStore, load_records
from scenariokit.results.summary import rebuild_summary, summary_schema_text, write_summary

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schemas" / "summary.schema.json"
T0 = 1_700_000_000.0
SLOS = ["p95(latency) < 500ms", "error_rate < 1%", "p99.9(latency) < 1s", "p95(ttft) < 1s for a"]


def make_run(run_dir: Path, engine: str = "locust", exit_reason: str = "completed") -> list[RequestRecord]:
    records = [
        RequestRecord(T0 + i * 0.05, "ab"[i % 2], "ramp", 200 if i % 25 else 503, i % 25 != 0,
                      None if i % 25 else "http_503", 0.1 + (i % 7) * 0.05, ttfb=0.01)
        for i in range(400)
    ]  # fmt: skip
    store = RecordStore(run_dir)
    store.append(records[:150])
    store.flush()  # two parts, each a complete Parquet file
    store.append(records[150:])
    store.close()
    meta = {
        "scenario_name": "demo", "scenario_path": "scenarios/demo.yaml", "scenario_sha256": "ab" * 32,
        "git_commit": None, "engine": engine, "engine_version": f"{engine} 1.0", "base_url": "http://x",
        "started_unix": T0 - 1, "engine_started_unix": T0, "ended_unix": T0 + 20, "load_model": "closed",
        "stages": [{"kind": "ramp", "label": "ramp", "duration_s": 20.0, "start": 0, "end": 5}],
        "slos": SLOS, "exit_reason": exit_reason, "exit_detail": "",
    }  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(meta))
    return records


def test_checked_in_schema_is_in_sync_with_the_model() -> None:
    assert SCHEMA.read_text() == summary_schema_text(), (
        "schemas/summary.schema.json is stale: "
        "regenerate it from scenariokit.results.summary.summary_schema_text()"
    )


def test_store_round_trips_records_in_several_parts(tmp_path: Path) -> None:
    records = make_run(tmp_path)
    assert len(list((tmp_path / "records").glob("part-*.parquet"))) == 2
    assert load_records(tmp_path) == records


@pytest.mark.parametrize("engine", ["locust", "k6"])
def test_summary_files_are_valid_and_complete(tmp_path: Path, engine: str) -> None:
    make_run(tmp_path, engine)
    summary = rebuild_summary(tmp_path)
    write_summary(tmp_path, summary)
    document = json.loads((tmp_path / "summary.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(document)
    statuses = [v["status"] for v in document["verdicts"]]
    ttft = "not_measured" if engine == "k6" else "inconclusive"
    assert statuses == ["pass", "fail", "inconclusive", ttft] and document["verdict"] == "fail"
    errors = document["verdicts"][1]  # 16 errors of 400: the rate's bounds, the count and the rule
    assert (errors["samples"], errors["k"], errors["confidence"]) == (400, 16, 0.95)
    assert 0.01 < errors["low"] < 0.04 < errors["high"] and "Clopper-Pearson" in errors["rule"]
    p95 = document["verdicts"][0]  # 0 of 400 over 500ms; p95 allows 5%
    assert (p95["k"], p95["share_low"], p95["allowed_share"]) == (0, 0.0, 0.05) and p95["share_high"] < 0.05
    assert document["exit_code"] == 1 and document["overall"]["requests"] == 400
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# demo: FAIL")
    for slo in SLOS:
        assert f"`{slo}`" in md
    assert "| `error_rate < 1%` | fail | 0.04 ratio | [0.02" in md  # the interval beside the value
    assert (
        "| 0.4 s | [0.4, 0.4] s (0.95) | 0/400: [0.000%, 0.746%], 5% allowed |" in md
        and "Rule: the share of samples at or over" in md
    )
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None and suite.get("tests") == "4" and suite.get("failures") == "1"
    assert suite.get("skipped") == "2"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == SLOS
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message", "").startswith("fail: 16 errors of 400 requests")
    properties = {p.get("name"): p.get("value") for p in cases[1].iter("property")}
    assert properties["k"] == "16" and properties["samples"] == "400" and properties["confidence"] == "0.95"
    assert properties["interval"].startswith("[0.02") and "Clopper-Pearson" in properties["rule"]


def test_rebuild_from_the_store_gives_the_same_summary(tmp_path: Path) -> None:
    make_run(tmp_path)
    write_summary(tmp_path, rebuild_summary(tmp_path))
    first = {name: (tmp_path / name).read_text() for name in ("summary.json", "summary.md", "junit.xml")}
    write_summary(tmp_path, rebuild_summary(tmp_path))
    assert {name: (tmp_path / name).read_text() for name in first} == first


def test_a_crashed_engine_is_a_run_error_in_junit(tmp_path: Path) -> None:
    make_run(tmp_path, exit_reason="engine_crashed")
    summary = rebuild_summary(tmp_path)
    assert summary.exit_code == 3
    write_summary(tmp_path, summary)
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert root.find(".//testcase[@name='run']/error") is not None
