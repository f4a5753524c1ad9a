"""Checkpoints (run/checkpoint.py): a run killed by SIGKILL midway keeps the summary of what it measured,
written atomically while it went."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from scenariokit.cli import main
from scenariokit.results.store import load_records
from scenariokit.run.checkpoint import RUNNING, Checkpoint
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
    broken = Checkpoint(tmp_path / "missing", 10)  # no run.json: the rebuild fails
    assert not broken.tick(now=broken.next - 1)  # not yet due
    assert not broken.tick(now=broken.next) and broken.failed
    assert "checkpoints stop" in capsys.readouterr().err
    assert not broken.tick(now=1e12)  # said once, never retried


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
