"""The target supervisor (run/target.py) and what it feeds: starts timed into the run folder, kill and restart
on the same port while load goes on, the server's cold mode and planted leak, the first-requests penalty,
and `--allow-exec` for an external target's start command.

Real components only: the embedded server (one worker, cold, so it is up in about a second), real k6, real
processes for start commands.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scenariokit.cli import main
from scenariokit.compile.cards import text_cards
from scenariokit.compile.diagnostics import ScenarioError
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines.records import RequestRecord
from scenariokit.ports import free_port
from scenariokit.results.coldstart import first_requests
from scenariokit.run.target import TargetConfig, TargetStartError, TargetSupervisor

ROOT = Path(__file__).resolve().parents[1]
CARD = base64.b64encode(text_cards(1)[0].png).decode()
MIB = 1 << 20


def identify(base_url: str) -> httpx.Response:
    return httpx.post(f"{base_url}/api/v1/identify", json={"image_base64": CARD}, timeout=30)


def worker_rss(base_url: str, name: str = "scenariokit_worker_resident_memory_bytes") -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=5).text
    return next(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and s.labels == {"worker": "0"}
    )


def starts_file(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "target" / "starts.jsonl").read_text().splitlines()]


# --- the embedded server through the supervisor ---------------------------------------------------


@pytest.fixture
def cold_server(tmp_path: Path) -> Iterator[TargetSupervisor]:
    (tmp_path / "logs").mkdir()
    config = TargetConfig(None, "cold", (("workers", 1), ("fault", "leak=4MiB")))
    with TargetSupervisor(config, tmp_path) as supervisor:
        supervisor.start()
        yield supervisor


@pytest.mark.engine
def test_kill_and_restart_on_the_same_port_while_load_goes_on(cold_server: TargetSupervisor) -> None:
    sup, statuses, stop = cold_server, [], threading.Event()
    first = sup.starts[0]
    assert first.kind == "start" and first.mode == "cold" and first.ok
    assert 0 < first.port_open_s <= first.time_to_ready_s < 30  # type: ignore[operator]

    def load() -> None:  # a user who keeps sending through the kill: refused, then served again
        while not stop.is_set():
            try:
                statuses.append(identify(sup.base_url).status_code)
            except httpx.TransportError:
                statuses.append(0)
            time.sleep(0.02)

    assert identify(sup.base_url).status_code == 200
    port, pid = sup.port, sup.pid
    user = threading.Thread(target=load)
    user.start()
    try:
        sup.kill()
        assert not sup.exited(), "a kill through the supervisor is deliberate, not a target that died"
        again = sup.restart()
        deadline = time.monotonic() + 30
        while statuses[-1:] != [200] and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        user.join()
    assert sup.port == port and sup.pid != pid and again.kind == "restart" and again.time_to_ready_s
    assert 0 in statuses and statuses[-1] == 200  # refused while down, served after the restart
    rows = starts_file(sup.folder.parent)
    assert [r["kind"] for r in rows] == ["start", "restart"] and rows[1]["pid"] == sup.pid
    assert (sup.logs / "model-server.restart-1.log").is_file()
    sup.note_workers()
    workers = json.loads((sup.folder / "workers.jsonl").read_text().splitlines()[-1])["workers"]
    assert workers[0]["up"] and workers[0]["restarts"] == 0
    os.kill(sup.pid, signal.SIGKILL)  # not through the supervisor: the target died, the run must see it
    sup.process.wait(10)  # type: ignore[union-attr]
    assert sup.exited()


@pytest.mark.engine
def test_planted_leak_grows_the_worker_rss_reported_in_metrics(cold_server: TargetSupervisor) -> None:
    """leak=4MiB: each request leaves 4 MiB in the worker. After the models have loaded (the first
    requests), 20 more requests add about 80 MiB to the worker's RSS as /metrics reports it."""
    for _ in range(3):
        assert identify(cold_server.base_url).status_code == 200
    before = worker_rss(cold_server.base_url)
    for _ in range(20):
        assert identify(cold_server.base_url).status_code == 200
    grown = worker_rss(cold_server.base_url) - before
    assert 0.9 * 80 * MIB <= grown <= 1.2 * 80 * MIB, f"grew {grown / MIB:.1f} MiB, planted 80"
    # the server's own count of what it planted (soak tests fit it beside the RSS): exact, 23 answers
    assert worker_rss(cold_server.base_url, "scenariokit_worker_leaked_bytes") == 23 * 4 * MIB


def test_a_leak_beyond_its_cap_is_refused() -> None:
    from scenariokit_server.app import Fault

    assert Fault.parse("leak=1MiB").leak_bytes == MIB and Fault.parse("leak=100KB").leak_bytes == 100_000
    for bad in ("leak=65MiB", "leak=-1", "leak=inf", "leak=nanMB", "leak=lots"):
        with pytest.raises(ValueError):
            Fault.parse(bad)


# --- the first-requests penalty --------------------------------------------------------------------


def records(latencies: list[float], ok: list[bool] | None = None) -> list[RequestRecord]:
    oks = ok or [True] * len(latencies)
    return [
        RequestRecord(float(i), "a", "s", 200 if good else 0, good, None if good else "timeout", lat)
        for i, (lat, good) in enumerate(zip(latencies, oks, strict=True))
    ]


def test_penalty_of_a_cold_start_and_none_of_a_flat_run() -> None:
    flat = [0.1 + 0.001 * (i % 7) for i in range(400)]
    warm = first_requests(records(flat))
    assert warm is not None and warm.n == 50 and warm.steady_samples == 350
    assert warm.ratio_low <= 1.0 <= warm.ratio_high and warm.p_value > 0.05
    cold = first_requests(records([2.0, 1.9, 1.8, *flat[3:]]))  # three requests wait for the models
    assert cold is not None and cold.first_request_s == 2.0 and cold.ratio > 1.5
    assert cold.ratio_low > 1.0 and cold.excess_s == pytest.approx(5.4, abs=0.05)


def test_penalty_says_n_and_counts_errors_and_needs_enough_requests() -> None:
    few = first_requests(records([0.1] * 30))
    assert few is not None and few.n == 15 and few.steady_samples == 15
    assert first_requests(records([0.1] * 9)) is None  # 4 first against 5 steady tells nothing
    mixed = first_requests(records([0.1] * 100, ok=[i not in (0, 3) for i in range(100)]))
    assert mixed is not None and mixed.first_errors == 2


@pytest.mark.engine
def test_cold_start_run_shows_time_to_ready_and_the_penalty(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scenario = str(ROOT / "scenarios" / "cold-start.yaml")
    code = main(["run", scenario, "--engine", "k6", "--duration", "15s", "--out", str(out), "--quiet"])
    assert code == 0
    starts = json.loads((out / "summary.json").read_text())["target_starts"]
    assert starts["mode"] == "cold" and 0 < starts["time_to_ready_s"] < 30
    penalty = starts["first_requests"]
    assert penalty["n"] == 50 and penalty["ratio"] > 1.5, penalty
    assert starts["worker_restarts"] == 0
    assert "## Target starts" in (out / "summary.md").read_text()
    html = (out / "report.html").read_text()
    assert 'id="target-starts"' in html and 'id="first-requests"' in html


# --- an external target's start command ------------------------------------------------------------


def external(tmp_path: Path, command: list[str], port: int, ready_timeout: str = "30s") -> Path:
    path = tmp_path / "external.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            name: external
            target:
              kind: http
              base_url: http://127.0.0.1:{port}
              start_command: {json.dumps(command)}
              ready_timeout: {ready_timeout}
            load: {{curve: "hold(2, 3s)", think_time: constant(50ms)}}
            requests:
              home: {{path: /}}
            slo:
              - error_rate < 5%
            """
        )
    )
    return path


@pytest.mark.engine  # reaches `scenariokit run`, which would start one past the checks
def test_start_command_without_allow_exec_is_exit_2_before_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    scenario = external(tmp_path, command, free_port())
    assert main(["run", str(scenario), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "--allow-exec" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.engine
def test_start_command_with_allow_exec_starts_and_times_the_target(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    out = tmp_path / "run"
    code = main(
        [
            "run",
            str(external(tmp_path, command, port)),
            "--engine",
            "k6",
            "--allow-exec",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    (start,) = starts_file(out)
    assert start["kind"] == "start" and start["mode"] == "warm" and start["time_to_ready_s"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target_starts"]["time_to_ready_s"] == start["time_to_ready_s"]


@pytest.mark.engine  # reaches `scenariokit run`, which would start one past the checks
def test_a_command_that_never_becomes_ready_is_exit_3_with_its_output_kept(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import time; print('still loading', flush=True); time.sleep(60)"]
    out = tmp_path / "run"
    scenario = external(tmp_path, command, free_port(), ready_timeout="1s")
    assert main(["run", str(scenario), "--allow-exec", "--out", str(out), "--quiet"]) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_reason"] == "target_down" and "not ready within 1s" in summary["exit_detail"]
    assert "still loading" in (out / "logs" / "target.log").read_text()
    (start,) = starts_file(out)
    assert not start["ok"] and start["time_to_ready_s"] is None


def test_arguments_are_argv_never_a_shell(tmp_path: Path) -> None:
    """`;`, `$(...)`, CR and LF reach the program as bytes of its arguments: nothing else runs."""
    (tmp_path / "logs").mkdir()
    echoed, pwned = tmp_path / "argv.json", tmp_path / "pwned"
    hostile = [f"x; touch {pwned}", f"$(touch {pwned})", "a\r\nb", "`id`"]
    script = "import json, sys, time; json.dump(sys.argv[2:], open(sys.argv[1], 'w')); time.sleep(60)"
    command = (sys.executable, "-c", script, str(echoed), *hostile)
    config = TargetConfig(f"http://127.0.0.1:{free_port()}", start_command=command, ready_timeout_s=1.0)
    with TargetSupervisor(config, tmp_path) as sup, pytest.raises(TargetStartError, match="not ready"):
        sup.start()
    assert json.loads(echoed.read_text()) == hostile and not pwned.exists()


def test_a_command_that_cannot_run_is_a_start_error(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    config = TargetConfig("http://127.0.0.1:9", start_command=(str(tmp_path / "no-such-program"),))
    with TargetSupervisor(config, tmp_path) as sup, pytest.raises(TargetStartError, match="could not run"):
        sup.start()


GOOD = """\
version: 1
name: t
target:
  kind: http
  base_url: http://127.0.0.1:8080
  start_command: ["serve"]
load: {curve: "hold(2, 5s)"}
requests:
  a: {path: /}
"""


HOSTILE_START = [
    ("not a list", '["serve"]', '"serve --port 8080"', 6, "must be a list"),
    ("empty list", '["serve"]', "[]", 6, "at least 1 item"),
    ("too many args", '["serve"]', json.dumps(["a"] * 257), 6, "longer than 256 items"),
    ("huge arg", '["serve"]', json.dumps(["a" * 5000]), 6, "longer than 4096 characters"),
    ("NUL in an arg", '["serve"]', '["ser\\u0000ve"]', 6, "cannot hold NUL"),
    ("a number", '["serve"]', "[8080]", 6, "must be text"),
    ("with embedded", "http://127.0.0.1:8080", "embedded", 6, "`base_url` is `embedded`"),
    ("cold, not started", '  start_command: ["serve"]', "  start: cold", 6, "needs a target the runner"),
    ("bad start", '  start_command: ["serve"]', "  start: lukewarm", 6, "`lukewarm` is not allowed"),
    (
        "ready timeout",
        '  start_command: ["serve"]',
        '  start_command: ["serve"]\n  ready_timeout: 2h',
        7,
        "out of range",
    ),
]


@pytest.mark.parametrize(
    ("case", "old", "new", "line", "message"), HOSTILE_START, ids=[row[0] for row in HOSTILE_START]
)
def test_hostile_target_start_fields_are_positioned_errors(
    tmp_path: Path, case: str, old: str, new: str, line: int, message: str
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    found = [(d.span.line, d.message) for d in raised.value.diagnostics]
    assert any(ln == line and message in text for ln, text in found), found
