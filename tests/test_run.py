"""`scenariokit run` end to end on loopback: verdicts, exit codes, crashes, and `report`.

The target is the small loopback server (a fixed delay), so these runs take seconds; the embedded model
server's own end-to-end run is in tests/test_model_server.py.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.results.store import load_records
from tests.support.loopback import LoopbackServer

pytestmark = pytest.mark.engine

SCENARIO = """\
version: 1
name: loop
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "ramp(0, 4, 1s) -> hold(4s) as steady", think_time: constant(20ms)}}
requests:
  a: {{weight: 3, path: /a}}
  b: {{weight: 1, path: /b, method: POST, json: {{x: 1}}}}
slo:
{slos}
"""
GOOD = ["p99(latency) < 2s", "error_rate < 1%", "p95(latency) < 2s during steady"]


def write(tmp_path: Path, url: str, slos: list[str]) -> Path:
    path = tmp_path / "loop.yaml"
    path.write_text(SCENARIO.format(url=url, slos="\n".join(f"  - {s}" for s in slos)))
    return path


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize("engine", ["locust", "k6"])
def test_passing_run_exits_0_and_keeps_every_record(tmp_path: Path, engine: str) -> None:
    with LoopbackServer(delay_s=0.01) as server:
        code = main(
            [
                "run",
                str(write(tmp_path, server.url, GOOD)),
                "--engine",
                engine,
                "--out",
                str(tmp_path / "run"),
                "--quiet",
            ]
        )
        served = server.total()
    assert code == 0
    s = summary(tmp_path / "run")
    assert s["verdict"] == "pass" and s["exit_reason"] == "completed"
    assert [v["status"] for v in s["verdicts"]] == ["pass", "pass", "pass"]
    records = load_records(tmp_path / "run")
    # users stopped at the end leave their request in flight, unrecorded (Locust's own count agrees with
    # ours); the server may also count a request the client retried on a connection it had closed
    assert 0 <= served - len(records) <= 8
    assert s["overall"]["requests"] == len(records)
    for name in ("summary.md", "junit.xml", "run.json", "scenario.yaml", "monitor/host.jsonl"):
        assert (tmp_path / "run" / name).is_file(), name


@pytest.mark.parametrize("engine", ["locust", "k6"])
def test_impossible_slo_exits_1_and_says_by_how_much(
    tmp_path: Path, engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with LoopbackServer(delay_s=0.01) as server:
        code = main(
            [
                "run",
                str(write(tmp_path, server.url, [*GOOD, "p50(latency) < 1ms for a"])),
                "--engine",
                engine,
                "--out",
                str(tmp_path / "run"),
                "--quiet",
            ]
        )
    assert code == 1
    failed = [v for v in summary(tmp_path / "run")["verdicts"] if v["status"] == "fail"]
    assert [v["slo"] for v in failed] == ["p50(latency) < 1ms for a"]
    assert (
        failed[0]["margin"] < 0
        and "samples at or over 1ms; the share is at least" in failed[0]["explanation"]
    )
    junit = (tmp_path / "run" / "junit.xml").read_text()
    assert 'failures="1"' in junit and "SLOBreached" in junit


def test_target_down_at_start_is_exit_3(tmp_path: Path) -> None:
    code = main(
        ["run", str(write(tmp_path, "http://127.0.0.1:9", GOOD)), "--out", str(tmp_path / "run"), "--quiet"]
    )
    assert code == 3
    s = summary(tmp_path / "run")
    assert s["exit_reason"] == "target_down" and "not reachable" in s["exit_detail"]


def test_engine_killed_mid_run_keeps_records_and_exits_3(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"

    def kill_engine_when_records_arrive() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any((run_dir / "records").glob("part-*.parquet")):
                break
            time.sleep(0.2)
        import psutil

        for proc in psutil.Process().children(recursive=True):
            if "locust" in " ".join(proc.cmdline()):
                os.kill(proc.pid, signal.SIGKILL)

    with LoopbackServer(delay_s=0.01) as server:
        path = write(tmp_path, server.url, GOOD)
        path.write_text(path.read_text().replace("hold(4s)", "hold(20s)"))
        killer = threading.Thread(target=kill_engine_when_records_arrive)
        killer.start()
        started = time.monotonic()
        code = main(["run", str(path), "--out", str(run_dir), "--quiet"])
        killer.join()
    assert code == 3
    assert time.monotonic() - started < 20  # nothing waited for the full curve
    s = summary(run_dir)
    assert s["exit_reason"] == "engine_crashed" and "exited with code" in s["exit_detail"]
    assert s["overall"]["requests"] == len(load_records(run_dir)) > 0


def test_report_rebuilds_the_same_summary(tmp_path: Path) -> None:
    with LoopbackServer(delay_s=0.01) as server:
        assert (
            main(["run", str(write(tmp_path, server.url, GOOD)), "--out", str(tmp_path / "run"), "--quiet"])
            == 0
        )
    first = (tmp_path / "run" / "summary.json").read_text()
    assert main(["report", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "summary.json").read_text() == first


def test_abort_on_fail_stops_once_an_slo_is_certainly_lost(tmp_path: Path) -> None:
    with LoopbackServer(status_by_path={"/a": 500}) as server:
        path = write(tmp_path, server.url, ["error_rate < 1%"])
        path.write_text(path.read_text().replace("hold(4s)", "hold(40s)"))
        started = time.monotonic()
        code = main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet", "--abort-on-fail"])
    assert code == 1
    assert time.monotonic() - started < 30  # the 41 s curve was cut short after the 10 s grace period
    s = summary(tmp_path / "run")
    assert s["exit_reason"] == "aborted" and "error_rate < 1%" in s["exit_detail"]
    assert s["verdicts"][0]["status"] == "fail"
