"""Locust on several cores: `scenariokit run --processes N` runs Locust's master and N worker processes.

Each worker writes its own records file; in an open model each sends every N-th arrival, so the
intended rate is kept, not multiplied.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.engines import get_engine
from scenariokit.engines.base import LaunchPlan
from tests.support.loopback import LoopbackServer
from tests.test_engines import assert_weights

pytestmark = [pytest.mark.engine, pytest.mark.slow]

CLOSED = """\
version: 1
name: closed-processes
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "hold(8, 3s)", think_time: none}}
requests:
  a: {{weight: 3, path: /a}}
  b: {{weight: 1, path: /b}}
"""

OPEN = """\
version: 1
name: open-processes
target: {{kind: http, base_url: "{url}"}}
load: {{model: open, curve: "hold(40, 4s)", expected_latency: 20ms}}
requests:
  a: {{path: /a}}
"""


def run(tmp_path: Path, text: str, *extra: str) -> tuple[int, dict[str, object], Path]:
    with LoopbackServer(delay_s=0.01) as server:
        path = tmp_path / "scenario.yaml"
        path.write_text(text.format(url=server.url))
        code = main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet", *extra])
    summary = tmp_path / "run" / "summary.json"
    return code, json.loads(summary.read_text()) if summary.exists() else {}, tmp_path / "run"


def worker_files_with_requests(run_dir: Path) -> int:
    files = (run_dir / "raw").glob("records-*.jsonl")
    return sum(any(line.startswith("[") for line in f.read_text().splitlines()) for f in files)


def test_two_worker_processes_share_a_closed_model(tmp_path: Path) -> None:
    code, summary, run_dir = run(tmp_path, CLOSED, "--processes", "2")
    assert code == 0
    assert worker_files_with_requests(run_dir) == 2  # both workers sent and recorded; the master did not
    by_request = summary["by_request"]
    assert isinstance(by_request, dict)
    assert_weights(Counter({n: row["requests"] for n, row in by_request.items()}), {"a": 3, "b": 1})
    assert json.loads((run_dir / "run.json").read_text())["engine_processes"] == 2


def test_open_model_arrivals_are_split_not_repeated(tmp_path: Path) -> None:
    code, summary, run_dir = run(tmp_path, OPEN, "--processes", "2")
    assert code == 0 and worker_files_with_requests(run_dir) == 2
    by_request = summary["by_request"]
    assert isinstance(by_request, dict)
    # 40/s for 4 s in all, each arrival sent once, not once per worker (on a loaded machine one may be
    # dropped as over 1 s late, or still unsent when the shape ends the test)
    sent, dropped = by_request["a"]["requests"], summary["dropped_iterations"]
    assert 155 <= sent + dropped <= 160 and sent >= 150, (sent, dropped)
    intended = [
        json.loads(line)[1]
        for f in (run_dir / "raw").glob("records-*.jsonl")
        for line in f.read_text().splitlines()
        if line.startswith("[")
    ]
    assert len(set(intended)) == len(intended) == sent


def test_processes_are_for_locust_only(tmp_path: Path) -> None:
    code, _, _ = run(tmp_path, CLOSED, "--processes", "2", "--engine", "k6")
    assert code == 2


def test_the_driver_asks_locust_for_its_processes(tmp_path: Path) -> None:
    launch = get_engine("locust").launch(
        LaunchPlan(tmp_path / "x.py", "http://127.0.0.1:1", tmp_path, 10, processes=3)
    )
    assert launch.argv[-2:] == ["--processes", "3"] and launch.env["SCENARIOKIT_WORKERS"] == "3"
    single = get_engine("locust").launch(LaunchPlan(tmp_path / "x.py", "http://127.0.0.1:1", tmp_path, 10))
    assert "--processes" not in single.argv and "SCENARIOKIT_WORKERS" not in single.env
