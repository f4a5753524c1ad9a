"""Chaos: the embedded server killed mid-run through the one target supervisor, and one of two instances
killed behind the runner's round-robin proxy.

The run's folder is kept in a module-scoped fixture (`kill_run`) so that more checks on the same run
(recovery_time, the report's fault band) can be added without paying for another run.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from scenariokit.cli import main
from scenariokit.compile.ir import Fault
from scenariokit.engines.records import RequestRecord
from scenariokit.results.faults import FaultEvent, read_fault_events
from scenariokit.results.report import NOT_OVER_TIME
from scenariokit.results.runfolder import RunFolder
from scenariokit.run.faultproxy import FaultProxy
from scenariokit.run.faults import FaultScheduler, FaultTargets
from scenariokit.run.target import TargetConfig, TargetSupervisor, read_starts

pytestmark = pytest.mark.engine

KILL_AT_S, DOWN_S = 5.0, 1.0
SCENARIO = f"""\
version: 1
name: chaos-kill-test
target:
  kind: openai-chat
  base_url: embedded
  model: classify
  timeout: 5s
  embedded: {{workers: 1, instances: 1}}
load:
  curve: ramp(0, 3, 1s) -> hold(20s) as steady
  think_time: constant(100ms)
data:
  images: {{source: builtin:text-cards, count: 2}}
requests:
  identify: {{prompt: "Name the main object.", image: "{{images}}", max_tokens: 8}}
faults:
  - {{name: outage, kind: kill-target, at: {KILL_AT_S:g}s, duration: {DOWN_S:g}s,
     recovery: {{hold: 2s, p95: 3x}}}}
slo:
  - error_rate < 100%
  - recovery_time(outage) < 1ms
  - recovery_time(outage) < 1m
"""
# Failures a dead server leaves (Locust's names): refused or reset by the proxy once no upstream answers,
# or a connection closed before its response (the in-flight request at the kill)
CONNECTION_CODES = {"ConnectionRefusedError", "ConnectionResetError", "HTTPConnectionClosed"}
# A request that failed at the kill was sent before it: on a loaded 2-core host, up to this much before
MARGIN_S = 2.0
READY_LEAD_S = 0.5  # how much before the supervisor's probe saw the restarted server ready it may answer
# The fault's recovery band: back after 2 s in a row without errors and with a p95 within 3x the steady one
# (+10 ms): a loaded host once kept the restarted server's first answers over 1.5x for the rest of the run


@dataclass(frozen=True)
class KillRun:
    code: int
    folder: Path
    meta: Any
    records: list[RequestRecord]
    event: FaultEvent
    proxy: dict[str, Any]


@pytest.fixture(scope="module")
def kill_run(tmp_path_factory: pytest.TempPathFactory) -> KillRun:
    root = tmp_path_factory.mktemp("chaos-kill")
    path = root / "chaos.yaml"
    path.write_text(SCENARIO)
    folder = root / "run"
    code = main(["run", str(path), "--engine", "locust", "--out", str(folder), "--quiet"])
    run = RunFolder(folder)
    records = sorted(run.all_records(), key=lambda r: r.t)
    (event,) = read_fault_events(folder)
    proxy = json.loads((folder / "faults" / "proxy.json").read_text())["counts"]
    return KillRun(code, folder, run.meta, records, event, proxy)


@pytest.mark.solo  # times a kill and a restart
def test_the_run_goes_on_through_the_kill(kill_run: KillRun) -> None:
    assert kill_run.code != 3 and kill_run.meta.exit_reason == "completed", kill_run.meta.exit_detail
    assert [f.name for f in kill_run.meta.faults] == ["outage"]  # run.json has the plan
    served_after = [r for r in kill_run.records if r.ok and r.t > (kill_run.event.ready or 1e18)]
    assert len(served_after) >= 10, "the load went on and the restarted server served it"


@pytest.mark.solo
def test_the_server_comes_back_on_the_same_port(kill_run: KillRun) -> None:
    start, restart = read_starts(kill_run.folder)
    assert (start.kind, restart.kind) == ("start", "restart") and restart.ok
    assert restart.port == start.port and restart.pid != start.pid
    event = kill_run.event
    assert event.outcome == "ok" and not event.cut_short and event.detail["port"] == start.port
    assert event.detail["pid"] == start.pid and event.detail["restart_pid"] == restart.pid
    planned = kill_run.meta.engine_started_unix + KILL_AT_S
    assert abs(event.start - planned) < 1.0, "the kill came on schedule, on the engine's clock"
    assert DOWN_S <= event.end - event.start < DOWN_S + 0.5
    assert restart.time_to_ready_s is not None and event.ready == pytest.approx(
        restart.t + restart.time_to_ready_s
    )


@pytest.mark.solo
def test_connection_errors_fall_in_the_outage_and_nowhere_else(kill_run: KillRun) -> None:
    event = kill_run.event
    assert event.ready is not None
    failed = [r for r in kill_run.records if not r.ok]
    assert failed, "requests sent while the server was down must fail"
    assert {r.code for r in failed} <= CONNECTION_CODES, {r.code for r in failed}
    outside = [r for r in failed if not event.start - MARGIN_S <= r.t <= event.ready]
    assert outside == [], [(r.t - event.start, r.code) for r in outside]
    inside = [r for r in kill_run.records if event.start + 0.1 < r.t < event.end]
    assert inside and not any(r.ok for r in inside), "nothing is served while the only server is down"


@pytest.mark.solo
def test_no_record_is_lost_against_the_proxys_count(kill_run: KillRun) -> None:
    """Every request the proxy received is a record (through the outage too: with no upstream to take a
    connection, the proxy resets it only once its request has arrived and been counted), and every response
    it passed on is a record with its status."""
    counts, records = kill_run.proxy, kill_run.records
    answered = sum(1 for r in records if r.status)
    assert answered == counts["responses"]
    assert len(records) == counts["requests"], (len(records), counts)
    assert sum(1 for r in records if not r.status) == counts["requests"] - counts["responses"]


@pytest.mark.solo
def test_no_process_is_left_behind(kill_run: KillRun) -> None:
    start, restart = read_starts(kill_run.folder)
    groups = {start.pid, restart.pid}  # each led a process group: the server and its model workers
    deadline = time.monotonic() + 5  # a process SIGKILLed at the end may take a moment to be gone
    while (left := in_groups(groups)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], left
    assert psutil.Process().children(recursive=True) == []


def in_groups(groups: set[int]) -> list[str]:
    """Live processes (not zombies waiting for init to reap them) in the given process groups."""
    found = []
    for process in psutil.process_iter(["pid", "status", "cmdline"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) in groups and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(f"{process.pid} {' '.join(process.info['cmdline'] or [])[:80]}")
    return found


@pytest.mark.solo
def test_the_report_shows_the_outage_band_and_its_errors(kill_run: KillRun) -> None:
    summary = RunFolder(kill_run.folder).summary()
    (row,) = summary.faults
    event = kill_run.event
    inside = [r for r in kill_run.records if event.start <= r.t < event.end]
    assert row.errors == sum(not r.ok for r in inside) > 0 and row.requests == len(inside)
    html = (kill_run.folder / "report.html").read_text()
    plots = {chunk.split('"', 2)[1]: chunk for chunk in html.split("Plotly.newPlot(")[1:]}
    over_time = [name for name in plots if name.removeprefix("plot-") not in NOT_OVER_TIME]
    assert {"plot-load", "plot-latency", "plot-errors"} <= set(over_time)
    assert all("fault: outage" in plots[name] for name in over_time), over_time
    table = html.split('<section id="faults">')[1].split("</section>")[0]
    assert f'<td class="num">{row.errors:,}' in table


@pytest.mark.solo  # the recovery follows the restart's own time to ready
def test_recovery_time_lies_between_the_time_to_ready_and_two_seconds_more(kill_run: KillRun) -> None:
    _, restart = read_starts(kill_run.folder)
    summary = RunFolder(kill_run.folder).summary()
    (row,) = summary.faults
    ready_s = restart.time_to_ready_s
    assert ready_s is not None and row.recovered and row.recovery_s is not None, row
    # The supervisor's ready is its /health probe's answer; the engine's requests may be answered a moment
    # before that probe returns (0.07 s earlier on a run on a loaded 2-core host): READY_LEAD_S below it
    first_ok = min(r.t for r in kill_run.records if r.ok and r.t > kill_run.event.end)
    assert first_ok - kill_run.event.end >= ready_s - READY_LEAD_S, "served before the restart was ready?"
    assert ready_s - READY_LEAD_S <= row.recovery_s <= ready_s + 2, (ready_s, row.recovery_s)
    statuses = {v.slo: v.status for v in summary.verdicts}
    assert (
        statuses["recovery_time(outage) < 1ms"] == "fail" and statuses["recovery_time(outage) < 1m"] == "pass"
    )
    assert row.slos == {"recovery_time(outage) < 1ms": "fail", "recovery_time(outage) < 1m": "pass"}


# --- two instances behind the proxy: one killed at random, the other keeps serving -------------------


@pytest.fixture
def two_instances(tmp_path: Path) -> Iterator[tuple[TargetSupervisor, FaultProxy]]:
    (tmp_path / "logs").mkdir()
    config = TargetConfig(None, "warm", (("workers", 1),), instances=2)
    with TargetSupervisor(config, tmp_path) as supervisor:
        supervisor.start()
        proxy = FaultProxy([("127.0.0.1", port) for port in supervisor.ports], seed=1)
        port = proxy.start()
        try:
            yield supervisor, proxy, port  # type: ignore[misc]
        finally:
            proxy.stop()


@pytest.mark.solo
def test_one_of_two_instances_killed_at_random_the_other_keeps_serving(
    two_instances: Any, tmp_path: Path
) -> None:
    supervisor, proxy, port = two_instances
    pids = [instance.handle.pid for instance in supervisor.instances]
    fault = Fault("lose-one", "kill-target", (0.5,), 2.0, {"signal": "SIGKILL", "instance": "random"})
    statuses: list[tuple[float, int]] = []
    stop = threading.Event()

    def user() -> None:  # a new connection each request: the proxy's round robin spreads them
        while not stop.is_set():
            try:
                code = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code
            except httpx.TransportError:
                code = 0
            statuses.append((time.time(), code))
            time.sleep(0.02)

    thread = threading.Thread(target=user)
    origin = time.time()
    thread.start()
    try:
        with FaultScheduler([fault], tmp_path, FaultTargets(supervisor, proxy, supervisor.base_url),
                            lambda: origin, seed=3):  # fmt: skip
            deadline = time.monotonic() + 60
            while not read_fault_events(tmp_path) and time.monotonic() < deadline:
                time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    (event,) = read_fault_events(tmp_path)
    killed = event.detail["instance"]
    assert event.outcome == "ok" and event.ready is not None and killed in (0, 1)
    survivor = supervisor.instances[1 - killed]
    assert survivor.handle.pid == pids[1 - killed], "the other instance was never touched"
    assert supervisor.instances[killed].handle.pid != pids[killed]  # restarted
    window = [code for t, code in statuses if event.start + 0.1 < t < event.end]
    assert len(window) >= 10 and window.count(200) == len(window), window
    assert proxy.counts()["upstream_refused"] >= 1, "the dead instance was tried and skipped"
    assert not supervisor.exited()
