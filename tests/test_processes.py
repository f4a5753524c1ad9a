"""Locust on several cores: `scenariokit run --processes N` runs Locust's master and N worker processes.

Each worker writes its own records file; in an open model each sends every N-th arrival, so the
intended rate is kept, not multiplied.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
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
OPEN_RATE, OPEN_DURATION_S = 40, 4.0
OPEN_PLANNED = round(OPEN_RATE * OPEN_DURATION_S)
LOST_WITHIN_S = 1.0  # the runtime drops an arrival taken over 1 s late (DROP_AFTER_S)


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
    # local workers share the master's clock and write their own files: no remote workers to report
    assert "workers" not in json.loads((run_dir / "generator.json").read_text())


def test_open_model_arrivals_are_split_not_repeated(tmp_path: Path) -> None:
    code, summary, run_dir = run(tmp_path, OPEN, "--processes", "2")
    assert code == 0 and worker_files_with_requests(run_dir) == 2
    by_request = summary["by_request"]
    assert isinstance(by_request, dict)
    workers = [w for w in map(worker_arrivals, (run_dir / "raw").glob("records-*.jsonl")) if w.slots]
    assert len(workers) == 2
    sent, dropped = by_request["a"]["requests"], summary["dropped_iterations"]
    assert sent == sum(w.sent for w in workers) and dropped == sum(w.dropped for w in workers)
    # Each worker runs the one schedule (arrival k at its own start + k / rate) and takes every other
    # arrival: each slot is a planned one, taken once, by one worker, and the workers' shares are apart.
    for w in workers:
        assert len(set(w.slots)) == len(w.slots), "an arrival sent or dropped twice by one worker"
        assert all(1 <= k <= OPEN_PLANNED for k in w.slots), w.slots
        assert len({k % 2 for k in w.slots}) == 1, "a worker sent arrivals of the other's share"
    assert {w.slots[0] % 2 for w in workers} == {0, 1}, "both workers took the same share"
    assert sent + dropped <= OPEN_PLANNED
    # A loaded machine may start a worker late (its last arrivals are still unsent when the shape ends
    # the test) or drop an arrival over 1 s late, which is counted. It does not lose one in the middle:
    # users take arrivals in order, so only those taken in the last second can be in flight at the end.
    for w in workers:
        taken, last = set(w.slots), max(w.slots)
        assert last / OPEN_RATE >= OPEN_DURATION_S / 2, f"a worker stopped after {last / OPEN_RATE:.2f} s"
        share = range(1 if last % 2 else 2, last + 1, 2)
        lost = [k for k in share if k not in taken and (last - k) / OPEN_RATE > LOST_WITHIN_S]
        assert not lost, f"arrivals neither sent nor dropped: {lost}"


@dataclass
class Arrivals:
    """One Locust process's raw records: the schedule slot of each arrival it sent or dropped."""

    slots: list[int]
    sent: int
    dropped: int


def worker_arrivals(path: Path) -> Arrivals:
    """Record lines are `[t, intended, ...]`, a dropped arrival `{"dropped": 1, "t": intended, ...}`."""
    found = Arrivals([], 0, 0)
    start = None
    for line in path.read_text().splitlines():
        value = json.loads(line)
        if isinstance(value, list):
            intended = value[1]
            found.sent += 1
        elif "test_start" in value:
            start = value["test_start"]
            continue
        elif value.get("dropped"):
            intended = value["t"]
            found.dropped += 1
        else:
            continue
        assert start is not None, "an arrival before the worker's start"
        k = round((intended - start) * OPEN_RATE)
        assert abs(intended - (start + k / OPEN_RATE)) < 1e-6, "an arrival off the schedule"
        found.slots.append(k)
    return found


def test_two_k6_instances_split_an_open_model_not_repeat_it(tmp_path: Path) -> None:
    """k6 with --processes 2: two instances on execution segments 0:1/2 and 1/2:1 send the planned arrivals
    once between them (not twice), each recording into its own file, their dropped iterations added."""
    code, summary, run_dir = run(tmp_path, OPEN, "--processes", "2", "--engine", "k6")
    assert code == 0, summary.get("notes")
    assert sorted(p.name for p in (run_dir / "raw").glob("records-k6.*.jsonl")) == [
        "records-k6.0.jsonl",
        "records-k6.1.jsonl",
    ]
    assert worker_files_with_requests(run_dir) == 0  # k6's lines are batches, not arrays
    batches = [
        sum(line.startswith('{"outcomes"') for line in p.read_text().splitlines())
        for p in (run_dir / "raw").glob("records-k6.*.jsonl")
    ]
    assert all(batches), batches
    overall = summary["overall"]
    assert isinstance(overall, dict)
    dropped = json.loads((run_dir / "raw" / "reader.json").read_text())["dropped"]
    assert abs(overall["requests"] + dropped - OPEN_PLANNED) <= 2  # k6 rounds each segment's share


@pytest.mark.parametrize(
    ("engine", "flags"),
    [
        ("k6", ["--master", "--expect-workers", "2"]),
        ("locust", ["--processes", "2", "--launcher", "ssh gen{n}"]),
        ("k6", ["--launcher", "ssh gen{n}"]),
        ("locust", ["--master-bind", "0.0.0.0:5557"]),
        ("locust", ["--master"]),
        ("k6", ["--processes", "2", "--launcher", "ssh 'gen{n}"]),  # unbalanced quote
        ("k6", ["--processes", "2", "--launcher", "  "]),
    ],
)
def test_distribution_flags_that_do_not_fit_are_refused(
    tmp_path: Path, engine: str, flags: list[str]
) -> None:
    code, summary, _ = run(tmp_path, CLOSED, "--engine", engine, *flags)
    assert code == 2 and not summary  # refused before anything was sent


def test_the_driver_asks_locust_for_its_processes(tmp_path: Path) -> None:
    launch = get_engine("locust").launch(
        LaunchPlan(tmp_path / "x.py", "http://127.0.0.1:1", tmp_path, 10, processes=3)
    )
    assert launch.argv[-2:] == ["--processes", "3"] and launch.env["SCENARIOKIT_WORKERS"] == "3"
    # a master port of its own, for the master and its forked workers alike (not Locust's shared 5557)
    assert launch.env["LOCUST_MASTER_BIND_PORT"] == launch.env["LOCUST_MASTER_NODE_PORT"] != "5557"
    single = get_engine("locust").launch(LaunchPlan(tmp_path / "x.py", "http://127.0.0.1:1", tmp_path, 10))
    assert "--processes" not in single.argv and "SCENARIOKIT_WORKERS" not in single.env
