"""Checkpoints (run/checkpoint.py): a run killed by SIGKILL midway keeps the summary of what it measured,
written atomically while it went."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from scenariokit.cli import main
from scenariokit.results.store import load_records
from scenariokit.run.checkpoint import DELAY_ENV, RUNNING, Checkpoint
from tests.support.loopback import LoopbackServer

SCENARIO = """\
version: 1
name: long
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "ramp(0, 2, 1s) -> hold(30s) as soak", think_time: constant(50ms)}}
requests:
  a: {{path: /a}}
slo:
  - p99(latency) < 2s
  - memory_growth < 5MB/h
"""


@pytest.mark.engine
def test_a_run_killed_midway_keeps_a_checkpoint_summary(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    out = tmp_path / "run"
    with LoopbackServer(delay_s=0.005) as server:
        path.write_text(SCENARIO.format(url=server.url))
        argv = [sys.executable, "-m", "scenariokit", "run", str(path), "--engine", "k6"]
        runner = subprocess.Popen(
            [*argv, "--out", str(out), "--quiet", "--checkpoint", "2s"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and not (out / "summary.md").exists():
                time.sleep(0.2)
            time.sleep(3)  # a second checkpoint replaces the first
            assert runner.poll() is None, "the run ended before it could be killed"
        finally:
            family = [runner, *psutil.Process(runner.pid).children(recursive=True)]
            for process in family:  # the engine runs in its own session: killed by pid, as the runner's
                os.kill(process.pid, signal.SIGKILL)
            runner.wait(10)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_reason"] == RUNNING and summary["notes"][0].startswith("Checkpoint taken")
    assert summary["overall"]["requests"] > 0
    assert summary["overall"]["requests"] <= len(load_records(out))  # the parts it read are all still there
    assert [v["slo"] for v in summary["verdicts"]] == ["p99(latency) < 2s", "memory_growth < 5MB/h"]
    assert "Checkpoint taken" in (out / "summary.md").read_text()
    assert not list(out.glob(".*.tmp"))  # written by rename


def test_checkpoints_keep_their_time_and_never_stop_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    off = Checkpoint(tmp_path, 0)
    assert not off.tick(now=1e12)
    broken = Checkpoint(tmp_path / "missing", 10)  # no run.json: the child's rebuild fails
    assert not broken.tick(now=broken.next - 1)  # not yet due
    assert broken.tick(now=broken.next)  # started, not waited for
    broken.wait(60)
    assert broken.failed and broken.written == 0
    err = capsys.readouterr().err
    assert err.count("checkpoints stop") == 1 and "missing" in err, err  # the child's reason, said once
    assert not broken.tick(now=1e12) and broken.child is None  # never retried


@pytest.mark.engine  # reaches `scenariokit run`, which would start one past the flag checks
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1e400", "unknown unit `e400`"),
        ("10", "needs a unit"),
        ("=-5m", "negative"),
        ("200h", "out of range"),
        ("", "empty duration"),
        ("5MB/h", "unknown unit `MB/h`"),  # a growth is no duration
    ],
)
def test_hostile_checkpoint_flags_are_exit_2_naming_the_flag(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    flag = ["--checkpoint" + value] if value.startswith("=") else ["--checkpoint", value]
    assert main(["run", "scenarios/smoke.yaml", *flag]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and message in err, err


SHORT = (
    SCENARIO.replace("hold(30s)", "hold(4s)")
    .replace("p99(latency)", "p50(latency)")
    .replace("  - memory_growth < 5MB/h\n", "")
)
SLOW_S = 30.0  # each checkpoint child sleeps this long before it writes (DELAY_ENV): far past the run


@dataclass
class SlowRun:
    out: Path
    wall_s: float
    children: set[int]  # the checkpoint children seen while the run went


def _watch_children(seen: set[int], done: threading.Event) -> None:
    me = psutil.Process()
    while not done.is_set():
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "scenariokit.run.checkpoint" in child.cmdline():
                    seen.add(child.pid)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def slow_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlowRun]:
    """One k6 run of ~5 s with a checkpoint every second, each of which would take 30 s."""
    base = tmp_path_factory.mktemp("slow")
    path, out = base / "short.yaml", base / "run"
    seen: set[int] = set()
    done = threading.Event()
    watcher = threading.Thread(target=_watch_children, args=(seen, done), daemon=True)
    os.environ[DELAY_ENV] = str(SLOW_S)
    try:
        with LoopbackServer(delay_s=0.005) as server:
            path.write_text(SHORT.format(url=server.url))
            watcher.start()
            began = time.monotonic()
            code = main(
                ["run", str(path), "--engine", "k6", "--out", str(out), "--quiet", "--checkpoint", "1s"]
            )
            wall_s = time.monotonic() - began
    finally:
        done.set()
        del os.environ[DELAY_ENV]
    watcher.join(5)
    assert code in (0, 4)  # 4: a loaded host's latency may be judged untrustworthy; not the point here
    yield SlowRun(out, wall_s, seen)


@pytest.mark.engine
def test_the_poll_loop_never_waits_and_the_final_summary_wins(slow_run: SlowRun) -> None:
    assert slow_run.children, "no checkpoint child started during the run"
    # a checkpoint on the poll loop's thread (as before) would hold the run for SLOW_S; the loop went on
    assert slow_run.wall_s < SLOW_S - 5, slow_run.wall_s
    assert not any(psutil.pid_exists(pid) for pid in slow_run.children)  # killed before the final summary
    summary = json.loads((slow_run.out / "summary.json").read_text())
    assert summary["exit_reason"] == "completed"
    assert not any(note.startswith("Checkpoint") for note in summary["notes"])  # a quiet host leaves no notes
    assert summary["overall"]["requests"] == len(load_records(slow_run.out)) > 0
    assert not list(slow_run.out.glob(".*.tmp"))


@pytest.mark.engine
@pytest.mark.solo  # times tick()
def test_a_tick_only_flushes_and_starts_and_a_busy_checkpoint_is_skipped(
    slow_run: SlowRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "run"
    shutil.copytree(slow_run.out, folder)
    flushes: list[float] = []
    monkeypatch.setenv(DELAY_ENV, "3")
    checkpoint = Checkpoint(folder, 0.2, lambda: flushes.append(time.monotonic()))
    slowest, started = 0.0, 0
    end = time.monotonic() + 1.5  # a poll loop, while the first checkpoint's child sleeps
    while time.monotonic() < end:
        before = time.monotonic()
        started += checkpoint.tick()
        slowest = max(slowest, time.monotonic() - before)
        time.sleep(0.05)
    child = checkpoint.child
    assert started == 1 and len(flushes) == 1 and child is not None and child.poll() is None
    assert checkpoint.skipped >= 3  # due every 0.2 s, skipped while the first one ran: not queued
    assert slowest < 0.5, slowest  # flush + spawn; the rebuild itself is in the child
    checkpoint.stop()
    assert child.returncode is not None and checkpoint.written == 0
    assert json.loads((folder / "summary.json").read_text())["exit_reason"] == "completed"
    monkeypatch.delenv(DELAY_ENV)
    quick = Checkpoint(folder, 0.01)
    assert quick.tick(now=quick.next)
    quick.wait(60)
    assert quick.written == 1 and not quick.failed
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["exit_reason"] == RUNNING
    assert summary["overall"]["requests"] == len(load_records(folder))


@pytest.mark.engine
@pytest.mark.parametrize("to_group", [False, True], ids=["SIGTERM-runner", "SIGINT-group"])
def test_a_signal_to_the_runner_stops_a_running_checkpoint(tmp_path: Path, to_group: bool) -> None:
    """SIGTERM to the runner, or a terminal's Ctrl-C (SIGINT to its whole process group, the child in it)."""
    path, out = tmp_path / "long.yaml", tmp_path / "run"
    with LoopbackServer(delay_s=0.005) as server:
        path.write_text(SCENARIO.format(url=server.url))
        argv = [sys.executable, "-m", "scenariokit", "run", str(path), "--engine", "k6", "--out", str(out)]
        runner = subprocess.Popen(
            [*argv, "--quiet", "--checkpoint", "1s"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, DELAY_ENV: str(SLOW_S)},
            start_new_session=True,
        )
        try:
            child = _first_checkpoint_child(runner.pid, deadline_s=40)
            if to_group:
                os.killpg(runner.pid, signal.SIGINT)
            else:
                runner.send_signal(signal.SIGTERM)
            _, err = runner.communicate(timeout=30)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait(10)
    assert runner.returncode == 3, err  # interrupted: a run error
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err
    assert json.loads((out / "summary.json").read_text())["exit_reason"] == "interrupted"


def _first_checkpoint_child(pid: int, deadline_s: float) -> psutil.Process:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        for child in psutil.Process(pid).children():
            with contextlib.suppress(psutil.Error):
                if "scenariokit.run.checkpoint" in child.cmdline():
                    return child
        time.sleep(0.1)
    raise AssertionError("no checkpoint child started")
