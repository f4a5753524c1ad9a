"""The pieces of a distributed run that need no engine (issue 17): k6's execution segments and launcher
words, the instances' exit code, the master's worker markers as the reader takes them (hostile ones
included), the verdict's words for a saturated or lost worker, and `split: workers` shares."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from scenariokit.engines.k6.instances import launcher_prefix, segment_flags, worst
from scenariokit.engines.records import RecordLinesReader
from scenariokit.results.health import GENERATOR_WORKER_LOST, trust_facts, worker_peaks
from scenariokit.run.generator import every_worker_lost

RUNTIME = Path(__file__).resolve().parents[1] / "src/scenariokit/engines/locust/files"


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_segments_cover_the_plan_once(count: int) -> None:
    cuts = []
    for index in range(count):
        flags = segment_flags(index, count)
        start, end = (Fraction(x) for x in flags[1].split(":"))
        cuts.append((start, end))
        assert flags[3] == ",".join(str(Fraction(k, count)) for k in range(count + 1))
    assert cuts[0][0] == 0 and cuts[-1][1] == 1
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cuts))  # no gap, no overlap


@pytest.mark.parametrize(
    ("launcher", "index", "words"),
    [
        ("ssh gen{n}", 0, ["ssh", "gen1"]),
        ("ip netns exec ns{i}", 2, ["ip", "netns", "exec", "ns2"]),
        ("sh -c '{x} {n}'", 1, ["sh", "-c", "{x} 2"]),  # other braces stay as they are
        ("ssh 'gen {i}'", 0, ["ssh", "gen 0"]),
    ],
)
def test_launcher_words(launcher: str, index: int, words: list[str]) -> None:
    assert launcher_prefix(launcher, index) == words


@pytest.mark.parametrize(
    ("codes", "code"), [([0, 0], 0), ([0, 99], 99), ([99, 1], 1), ([137, 0, 2], 137), ([], 0)]
)
def test_the_instances_exit_code_is_the_worst(codes: list[int], code: int) -> None:
    assert worst(codes) == code


def markers(tmp_path: Path, lines: list[object]) -> RecordLinesReader:
    raw = tmp_path / "raw"
    raw.mkdir()
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (raw / "records-wvm_1-1.jsonl").write_text(text)
    reader = RecordLinesReader(raw)
    reader.poll()
    return reader


def test_the_reader_keeps_each_workers_clock_cpu_and_loss(tmp_path: Path) -> None:
    reader = markers(
        tmp_path,
        [
            {"worker_clock": "vm_1", "offset_s": 40.0, "rtt_s": 0.001, "pings": 8},
            {"worker_cpu": 0.5, "t": 100.0, "worker": "vm_1"},
            {"worker_cpu": 0.25, "t": 101.0, "worker": "vm_1"},
            {"worker_lost": "vm_1", "t": 102.0},
            {"worker_mismatch": "vm_1", "t": 103.0, "script": "ab12"},
        ],
    )
    worker = reader.workers["vm_1"]
    assert worker == {
        "samples": [[100.0, 0.5], [101.0, 0.25]],
        "lost_at": 102.0,
        "other_script": "ab12",
        "clock_offset_s": 40.0,
        "clock_rtt_s": 0.001,
        "clock_pings": 8,
    }
    assert reader.skipped == 0


@pytest.mark.parametrize(
    "line",
    [
        {"worker_clock": "vm_1"},  # no offset
        {"worker_clock": "vm_1", "offset_s": "soon"},
        {"worker_cpu": "high", "t": 1.0, "worker": "w"},
        {"worker_cpu": 0.5, "t": None, "worker": "w"},
        {"worker_lost": "w", "t": "later"},
        {"worker_mismatch": "w"},  # no script
        {"garbled": "'a string row'"},  # what the master writes for a worker's row that is not an array
        {"test_start": "x"},
    ],
)
def test_a_garbled_worker_marker_is_skipped_and_counted(tmp_path: Path, line: dict[str, object]) -> None:
    reader = markers(tmp_path, [line])
    assert reader.skipped == 1
    assert reader.started_unix is None


def generator(workers: dict[str, dict[str, object]]) -> dict[str, object]:
    return {"samples": [], "threshold": 0.9, "workers": workers}


def test_a_saturated_and_a_lost_worker_are_named_in_the_verdict() -> None:
    busy = {"samples": [[t, 0.97] for t in range(10)], "lost_at": None, "clock_offset_s": 0.0}
    gone = {"samples": [[0, 0.3]], "lost_at": 5.0, "clock_offset_s": 1.5}
    facts = trust_facts(generator({"busy": busy, "gone": gone}), [])
    labels = {f.label: f.reason for f in facts}
    assert labels == {
        "worker busy saturated": "generator_process_saturated",
        "worker gone lost": GENERATOR_WORKER_LOST,
    }
    peaks = worker_peaks(generator({"busy": busy, "gone": gone}))
    assert peaks["busy"]["peak"] == 0.97 and peaks["busy"]["saturated_seconds"] == 10.0
    assert peaks["gone"]["clock_offset_s"] == 1.5 and peaks["gone"]["lost_at"] == 5.0


def test_a_worker_at_ease_is_no_reason_and_hostile_samples_are_ignored() -> None:
    calm = {"samples": [[0, 0.2], ["x", 0.99], [1], None, [2, 0.3]], "lost_at": None}
    assert trust_facts(generator({"calm": calm}), []) == []
    assert trust_facts({"samples": [], "workers": "not a map"}, []) == []
    assert worker_peaks(generator({"calm": calm}))["calm"]["peak"] == 0.3


@pytest.mark.parametrize(
    ("lost", "expected"),
    [({}, ""), ({"a": None, "b": 3.0}, ""), ({"a": 1.0, "b": 3.0}, "a, b")],
)
def test_exit_3_only_when_every_worker_is_lost(lost: dict[str, float | None], expected: str) -> None:
    assert every_worker_lost({k: {"lost_at": v} for k, v in lost.items()}) == expected


SHARES = [
    (8, "workers", 0, 2, [0, 2, 4, 6]),
    (8, "workers", 1, 2, [1, 3, 5, 7]),
    (7, "workers", 2, 3, [2, 5]),
    (8, None, 1, 2, list(range(8))),  # not split: every generator uses every row
    (8, "workers", 0, 1, list(range(8))),  # one generator
    (2, "workers", 2, 3, [0, 1]),  # fewer rows than generators: all of them, never none
]
PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import scenariokit_locust_runtime as sk
out = []
for rows, split, index, count in json.loads(sys.argv[2]):
    data = sk.DataSet("ids", "sequential", [{"id": str(i)} for i in range(rows)], split)
    out.append([int(r["id"]) for r in data.share(index, count)])
print(json.dumps(out))
"""


def test_split_workers_shares() -> None:
    """The runtime's DataSet.share, in a process of its own (importing Locust patches the standard
    library with gevent)."""
    cases = json.dumps([row[:4] for row in SHARES])
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(RUNTIME), cases], capture_output=True, text=True, check=True
    )
    assert json.loads(probe.stdout) == [row[4] for row in SHARES]
