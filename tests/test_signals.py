"""SIGTERM and SIGINT to `scenariokit run`: the engine, the embedded server and every process they started
stop, the summaries are written from what was measured, the run is marked interrupted, and the exit code is
3. The process table is read to prove that no orphan survives.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from scenariokit.results.store import load_records
from scenariokit.run.orchestrate import Interrupted, SignalGuard
from tests.support.loopback import LoopbackServer

LOOP = """\
version: 1
name: sig
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "hold(2, 30s)", think_time: constant(20ms)}}
requests:
  a: {{path: /a}}
slo:
  - error_rate < 1%
"""
EMBEDDED = """\
version: 1
name: sig-embedded
target: {kind: openai-chat, base_url: embedded, model: moderation, embedded: {workers: 1}}
load: {curve: "hold(1, 30s)", think_time: constant(100ms)}
data:
  images: builtin:text-cards
requests:
  m: {prompt: "Is it safe?", image: "{images}", max_tokens: 4}
slo:
  - error_rate < 1%
"""
BOUND_S = 30.0  # every wait below gives up after this


class Tree:
    """Every process seen below `root` while it runs, sampled in a thread: once the root exits its
    orphans would have a new parent, so the parent chain is recorded while it still holds."""

    def __init__(self, root: int) -> None:
        self.root = psutil.Process(root)
        self.seen: dict[int, psutil.Process] = {}
        self.cmdlines: dict[int, str] = {}  # as each process was first seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            try:
                children = self.root.children(recursive=True)
            except psutil.Error:
                return
            for child in children:
                if child.pid not in self.seen:
                    self.seen[child.pid] = child
                    with contextlib.suppress(psutil.Error):
                        self.cmdlines[child.pid] = " ".join(child.cmdline())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def saw(self, word: str) -> bool:
        return any(word in line for line in list(self.cmdlines.values()))


def running(process: psutil.Process) -> bool:
    """Alive and not a zombie (an exited orphan stays a zombie where PID 1 does not reap)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def survivors(tree: Tree, mentions: str) -> list[str]:
    """Processes left from the tree, or anywhere whose command line names the run folder."""
    left = [p for p in tree.seen.values() if running(p)]
    for process in psutil.process_iter(["cmdline"]):
        named = mentions in " ".join(process.info["cmdline"] or [])
        if named and process.pid != os.getpid() and running(process) and process not in left:
            left.append(process)
    out = []
    for process in left:
        try:
            out.append(f"{process.pid}: {' '.join(process.cmdline())}")
        except psutil.Error:
            continue
    return out


def until(condition: Callable[[], bool], what: str, bound_s: float = BOUND_S) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def start_run(scenario: Path, run_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "scenariokit",
        "run",
        str(scenario),
        "--out",
        str(run_dir),
        "--quiet",
        *extra,
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finished(process: subprocess.Popen[bytes], tree: Tree) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=BOUND_S)
    finally:
        if process.poll() is None:
            process.kill()
        tree.stop()
    return process.returncode, output.decode(errors="replace")


def records_arrived(run_dir: Path) -> bool:
    return any(f.stat().st_size > 0 for f in (run_dir / "raw").glob("records-*.jsonl"))


def assert_interrupted_summary(run_dir: Path, signame: str, phase: str) -> dict:
    for name in ("summary.json", "summary.md", "junit.xml", "report.html"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["exit_reason"] == "interrupted" and summary["exit_code"] == 3
    assert summary["exit_detail"] == f"stopped by {signame} {phase}"
    assert (run_dir / "summary.md").read_text().startswith("# ")
    assert "ERROR (interrupted" in (run_dir / "summary.md").read_text().splitlines()[0]
    assert 'type="interrupted"' in (run_dir / "junit.xml").read_text()
    return summary


@pytest.mark.engine
def test_sigterm_mid_run_stops_every_process_and_keeps_what_was_measured(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with LoopbackServer() as server:
        scenario = tmp_path / "sig.yaml"
        scenario.write_text(LOOP.format(url=server.url))
        started = time.monotonic()
        process = start_run(scenario, run_dir, "--processes", "2")  # Locust's master forks two workers
        tree = Tree(process.pid)
        try:
            until(lambda: records_arrived(run_dir) or process.poll() is not None, "the first records")
            until(lambda: len(tree.seen) >= 3 or process.poll() is not None, "the engine's workers")
            process.send_signal(signal.SIGTERM)
        finally:
            code, output = finished(process, tree)
        sent = server.total()
    assert code == 3, output
    assert time.monotonic() - started < 25  # the 30 s curve was cut short
    assert "verdict: error (interrupted)" in output and "verdict: pass" not in output
    assert survivors(tree, str(run_dir)) == []
    assert tree.saw("locust")
    summary = assert_interrupted_summary(run_dir, "SIGTERM", "during the run")
    assert 0 < summary["overall"]["requests"] == len(load_records(run_dir)) <= sent


@pytest.mark.engine
def test_sigint_during_the_embedded_targets_start_up_stops_it_and_its_workers(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    scenario = tmp_path / "embedded.yaml"
    scenario.write_text(EMBEDDED)
    process = start_run(scenario, run_dir)
    tree = Tree(process.pid)
    try:
        # the server has spawned its model worker, which is still loading: start-up is under way
        until(
            lambda: tree.saw("spawn_main") or process.poll() is not None,
            "the model server's worker",
        )
        assert not (run_dir / "raw" / "reader.json").exists()  # no engine has run
        process.send_signal(signal.SIGINT)
    finally:
        code, output = finished(process, tree)
    assert code == 3, output
    assert survivors(tree, str(run_dir)) == []
    assert tree.saw("scenariokit_server")
    summary = assert_interrupted_summary(run_dir, "SIGINT", "during start-up")
    assert summary["overall"]["requests"] == 0
    assert "no engine" not in output and "Traceback" not in output


# --- the guard on its own (in this process: the signal is sent to the test itself) ---------------------


def test_a_signal_is_noted_with_where_the_run_was_and_raised_only_where_the_run_looks() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with SignalGuard() as guard:
        guard.check()  # nothing yet
        guard.phase = "during the run"
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # not interrupted: a read or a write in progress finishes
        guard.phase = "while the run stopped"
        os.kill(os.getpid(), signal.SIGINT)  # later signals do not cut the clean-up short
        time.sleep(0.05)
        with pytest.raises(Interrupted):
            guard.check()
    assert guard.received == "SIGTERM" and guard.detail() == "stopped by SIGTERM during the run"
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handlers are back
