"""The fault scheduler without an engine: real subprocesses for `exec`, the real proxy in front of a
loopback HTTP server, and faults.jsonl read back through results/faults.py."""

from __future__ import annotations

import http.server
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from scenariokit.compile.ir import Fault
from scenariokit.results.faults import read_fault_events
from scenariokit.run.faultproxy import FaultProxy
from scenariokit.run.faults import (
    EXEC_LOG_BYTES,
    FaultFailed,
    FaultScheduler,
    FaultTargets,
    ServerFaults,
    run_exec,
)


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def schedule(
    run_dir: Path, faults: list[Fault], targets: FaultTargets, run_s: float, origin: float | None = None
) -> None:
    """Runs the scheduler for `run_s` seconds from `origin` (now by default), then stops it."""
    start = time.time() if origin is None else origin
    with FaultScheduler(faults, run_dir, targets, lambda: start, seed=1):
        time.sleep(run_s)


def test_a_network_fault_is_applied_on_time_and_lifted(tmp_path: Path, upstream: str) -> None:
    port = int(upstream.rsplit(":", 1)[1])
    proxy = FaultProxy([("127.0.0.1", port)])
    proxy_port = proxy.start()
    seen: list[tuple[float, float]] = []
    stop = threading.Event()

    def user() -> None:
        while not stop.is_set():
            sent = time.time()
            httpx.get(f"http://127.0.0.1:{proxy_port}/", timeout=5)
            seen.append((sent, time.time() - sent))

    thread = threading.Thread(target=user)
    thread.start()
    try:
        fault = Fault(
            "slow", "latency", (0.3,), 0.6, {"delay_s": 0.2, "jitter_s": 0.0, "recovery_hold_s": 5.0}
        )
        schedule(tmp_path, [fault], FaultTargets(None, proxy, upstream), 1.5)
    finally:
        stop.set()
        thread.join()
    proxy_hits = {"slow": proxy.counts()["fault:slow"]}
    for _ in range(3):
        httpx.get(f"http://127.0.0.1:{proxy_port}/", timeout=5)
    proxy_hits["after"] = proxy.counts()["fault:slow"]
    proxy.stop()
    (event,) = read_fault_events(tmp_path)
    assert event.outcome == "ok" and not event.cut_short and event.params["delay_s"] == 0.2
    assert 0.6 <= event.end - event.start < 0.8
    slow = [latency for sent, latency in seen if event.start + 0.05 < sent < event.end - 0.25]
    assert slow and min(slow) >= 0.19  # each response in the window held 200 ms
    hits = proxy_hits["slow"]
    assert hits >= len(slow) and proxy_hits["after"] == hits, "lifted: nothing delayed after the end"


def test_a_fault_active_at_the_end_is_lifted_and_cut_short(tmp_path: Path, upstream: str) -> None:
    port = int(upstream.rsplit(":", 1)[1])
    proxy = FaultProxy([("127.0.0.1", port)])
    proxy_port = proxy.start()
    try:
        fault = Fault("outage", "reset", (0.1,), 60.0, {"share": 1.0})
        schedule(tmp_path, [fault], FaultTargets(None, proxy, upstream), 0.5)
        assert httpx.get(f"http://127.0.0.1:{proxy_port}/", timeout=5).status_code == 200  # lifted
    finally:
        proxy.stop()
    (event,) = read_fault_events(tmp_path)
    assert event.cut_short and event.outcome == "ok" and event.end - event.start < 1.0


def test_a_fault_that_cannot_apply_is_an_error_event_not_a_crash(tmp_path: Path) -> None:
    faults = [
        Fault("net", "latency", (0.0,), 1.0, {"delay_s": 0.1, "jitter_s": 0.0}),  # no proxy
        Fault("kill", "kill-target", (0.0,), 0.0, {"signal": "SIGKILL", "instance": "random", "exec": ()}),
        Fault("errs", "server-errors", (0.0,), 1.0, {"share": 0.5}),  # no admin endpoint answers
    ]
    targets = FaultTargets(None, None, "http://127.0.0.1:9")
    targets_with_admin = ServerFaults(lambda: ["http://127.0.0.1:9"], None)
    scheduler = FaultScheduler(faults, tmp_path, targets, lambda: time.time(), seed=0)
    scheduler.server = targets_with_admin
    with scheduler:
        time.sleep(0.5)
    events = {e.name: e for e in read_fault_events(tmp_path)}
    assert events["net"].outcome == "error: no proxy runs in front of the target"
    assert events["kill"].outcome.startswith("error: the runner did not start this target")
    assert events["errs"].outcome.startswith("error: the admin endpoint http://127.0.0.1:9 did not answer")


def test_faults_wait_for_the_engines_start(tmp_path: Path, upstream: str) -> None:
    known: list[float] = []
    fault = Fault("late", "reset", (0.2,), 0.2, {"share": 0.5})
    port = int(upstream.rsplit(":", 1)[1])
    proxy = FaultProxy([("127.0.0.1", port)])
    proxy.start()
    try:
        with FaultScheduler(
            [fault], tmp_path, FaultTargets(None, proxy, upstream), lambda: (known or [None])[0]
        ):
            time.sleep(0.3)
            assert read_fault_events(tmp_path) == []  # no engine start yet: nothing applied
            known.append(time.time())
            time.sleep(0.8)
    finally:
        proxy.stop()
    (event,) = read_fault_events(tmp_path)
    assert abs(event.start - (known[0] + 0.2)) < 0.1


def test_server_faults_are_sent_as_one_state() -> None:
    faults = ServerFaults(lambda: [], "leak=1KB,latency=50ms")
    faults.active = {
        "slow": Fault("slow", "server-latency", (0.0,), 1.0, {"delay_s": 0.3}),
        "errs": Fault("errs", "server-errors", (0.0,), 1.0, {"share": 0.2}),
        "stall": Fault("stall", "stall-worker", (0.0,), 1.0, {}),
    }
    assert faults.state() == {"leak": "1KB", "latency": "0.3s", "error_rate": 0.2, "stall_worker": True}
    faults.active.pop("slow")
    assert faults.state()["latency"] == "50ms"  # the scenario's own option stays under the faults


# --- exec: a user's command, never through a shell, bounded in time and output --------------------


def test_exec_passes_arguments_as_text_and_keeps_its_output(tmp_path: Path) -> None:
    marker = tmp_path / "injected"
    argv = [sys.executable, "-c", "import sys; print(sys.argv[1:])", f"x; touch {marker}", "$(id)"]
    facts = run_exec(argv, tmp_path / "faults" / "k-0.log", 10, threading.Event())
    assert facts["returncode"] == 0 and not marker.exists()
    assert f"'x; touch {marker}', '$(id)'" in (tmp_path / "faults" / "k-0.log").read_text()


def test_exec_output_is_bounded(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", f"import sys; sys.stdout.write('y' * {3 * EXEC_LOG_BYTES})"]
    facts = run_exec(argv, tmp_path / "big.log", 20, threading.Event())
    assert (tmp_path / "big.log").stat().st_size == EXEC_LOG_BYTES
    assert facts["output_dropped_bytes"] == 2 * EXEC_LOG_BYTES


@pytest.mark.solo  # times a kill
def test_exec_past_its_time_is_killed_with_its_group(tmp_path: Path) -> None:
    child = tmp_path / "child.pid"
    script = f"import subprocess, time; p = subprocess.Popen(['sleep', '60']); open('{child}', 'w').write(str(p.pid)); time.sleep(60)"  # noqa: E501
    started = time.monotonic()
    with pytest.raises(FaultFailed, match="ran past"):
        run_exec([sys.executable, "-c", script], tmp_path / "slow.log", 1.0, threading.Event())
    assert time.monotonic() - started < 5
    pid = int(child.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["/no/such/program"], "could not run"),
        ([sys.executable, "-c", "raise SystemExit(3)"], "exited with code 3"),
    ],
)
def test_exec_that_fails_says_why(tmp_path: Path, argv: list[str], why: str) -> None:
    with pytest.raises(FaultFailed, match=why):
        run_exec(argv, tmp_path / "x.log", 10, threading.Event())


def test_an_exec_fault_waits_for_the_target_to_answer_again(tmp_path: Path, upstream: str) -> None:
    argv = (sys.executable, "-c", "print('restarted')")
    fault = Fault(
        "bounce", "kill-target", (0.1,), 0.2, {"signal": "SIGKILL", "instance": "random", "exec": argv}
    )
    schedule(tmp_path, [fault], FaultTargets(None, None, upstream), 1.0)
    (event,) = read_fault_events(tmp_path)
    assert event.outcome == "ok" and event.detail["log"] == "faults/bounce-0.log"
    assert event.ready is not None and event.ready >= event.end + 0.2
    assert (tmp_path / "faults" / "bounce-0.log").read_text() == "restarted\n"
