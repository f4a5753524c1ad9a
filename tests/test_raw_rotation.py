"""Raw files that do not grow without end (issue 16): the engine's raw records are freed once they are in a
Parquet part, so a run of any length keeps a bounded `raw/` folder, and no record is lost on the way.

Locust's runtime rotates its files (`records-<pid>-<seq>.jsonl`) and the reader deletes a file it has read
whole once the store has written a part; k6 appends to one console file (O_APPEND), whose head the reader
deallocates in place (a punched hole). A rotation size of a few KB (SCENARIOKIT_RAW_ROTATE_BYTES) and parts
every 0.5 s make both happen many times in a few seconds.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.compile.ir import Scenario
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines.k6 import reader as k6_reader
from scenariokit.engines.k6.reader import K6RecordReader, punch_hole
from scenariokit.engines.records import (
    RAW_ROTATE_BYTES,
    RECORD_FIELDS,
    RecordLinesReader,
    raw_rotate_bytes,
    rotated_key,
)
from scenariokit.results import store
from scenariokit.results.store import (
    PARQUET_BYTES_PER_PART,
    PARQUET_BYTES_PER_RECORD,
    RecordStore,
    load_records,
)
from scenariokit.run.disk_use import disk_estimate
from tests.support.engines import needs_k6
from tests.support.loopback import LoopbackServer
from tests.test_signals import Tree, running, until

ROTATE = 4096


def line(t: float) -> str:
    row = [t, None, "a", "hold", 200, True, None, 0.01, 0.005, None, None, None, 10, 1.0]
    assert len(row) == len(RECORD_FIELDS) - 2  # a success's array ends at users
    return json.dumps(row) + "\n"


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


# --- the reader and the store, on files written by hand ----------------------------------------------


def test_a_rotated_file_goes_only_once_read_whole_and_stored(tmp_path: Path) -> None:
    first, second = tmp_path / "records-7-1.jsonl", tmp_path / "records-7-2.jsonl"
    append(first, line(1.0) + line(2.0))
    reader = RecordLinesReader(tmp_path)
    assert len(reader.poll()) == 2
    reader.release()
    assert first.exists()  # no successor yet: the runtime may still append to it
    append(first, line(3.0))  # its last flush, then the runtime moves on
    append(second, line(4.0))
    records = reader.poll()
    assert sorted(r.t for r in records) == [3.0, 4.0]  # the rest of the first file, then the second
    assert first.exists()  # read whole, but not stored yet
    reader.release()
    assert not first.exists() and second.exists()
    assert reader.poll() == [] and reader.skipped == 0


def test_only_a_rotating_runtimes_files_are_ever_deleted(tmp_path: Path) -> None:
    names = ["records-1.jsonl", "records-k6.jsonl", "records-x-y.jsonl", "records-1-2.json"]
    for name in names:
        append(tmp_path / name, line(1.0))
    append(tmp_path / "records-5-9.jsonl", line(1.0))  # a gap in the numbers: 9 is still the newest
    reader = RecordLinesReader(tmp_path)
    reader.poll()
    reader.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names, "records-5-9.jsonl"])


def test_the_store_frees_raw_files_only_after_a_part_is_written(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    reader = RecordLinesReader(raw)
    parts = RecordStore(tmp_path, on_durable=reader.release)
    for seq in range(1, 4):
        append(raw / f"records-3-{seq}.jsonl", line(float(seq)))
    parts.pending.extend(reader.poll())  # what `append` does before a part is due
    assert len(list(raw.iterdir())) == 3
    parts.flush()
    assert [p.name for p in raw.iterdir()] == ["records-3-3.jsonl"]
    assert [r.t for r in load_records(tmp_path)] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("4096", 4096), ("", RAW_ROTATE_BYTES), ("0", RAW_ROTATE_BYTES), ("-5", RAW_ROTATE_BYTES),
     ("1e3", RAW_ROTATE_BYTES), ("lots", RAW_ROTATE_BYTES), ("9" * 40, int("9" * 40))],
)  # fmt: skip
def test_the_rotation_size_from_the_environment(value: str, expected: int) -> None:
    assert raw_rotate_bytes({"SCENARIOKIT_RAW_ROTATE_BYTES": value}) == expected


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def test_a_punched_head_frees_its_blocks_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 8192 + b"tail\n")
    os.sync()
    before = allocated(path)
    punch_hole(path, 8192)
    assert path.stat().st_size == 8197 and allocated(path) <= before - 8192
    assert path.read_bytes() == b"\0" * 8192 + b"tail\n"


def test_the_k6_reader_frees_its_file_in_steps_of_the_rotation_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCENARIOKIT_RAW_ROTATE_BYTES", str(ROTATE))
    path = tmp_path / "records-k6.jsonl"
    reader = K6RecordReader(tmp_path)
    append(path, '{"test_start": 1.0}\n')
    reader.poll()
    reader.release()
    assert reader.freed == 0  # less than a step read: the file is kept as it was
    for i in range(200):
        append(path, line(float(i)))
    assert len(reader.poll()) == 200
    size = path.stat().st_size
    reader.release()
    assert reader.free_error is None and reader.freed == size // 4096 * 4096
    assert allocated(path) <= size - reader.freed + 4096 and path.stat().st_size == size
    append(path, line(300.0))
    assert [r.t for r in reader.poll()] == [300.0] and reader.skipped == 0


def test_a_file_system_without_holes_keeps_k6_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: Path, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setenv("SCENARIOKIT_RAW_ROTATE_BYTES", str(ROTATE))
    monkeypatch.setattr(k6_reader, "punch_hole", refuse)
    path = tmp_path / "records-k6.jsonl"
    reader = K6RecordReader(tmp_path)
    for i in range(200):
        append(path, line(float(i)))
    assert len(reader.poll()) == 200
    reader.release()
    assert reader.free_error is not None and "raw/records-k6.jsonl grows" in reader.free_error
    append(path, line(300.0))
    assert [r.t for r in reader.poll()] == [300.0]  # reading goes on; the file is whole
    assert path.read_text().count("\n") == 201


# --- real engines: the raw folder stays bounded while every record lands in Parquet -------------------

OPEN = """\
version: 1
name: rotation
engine: {engine}
target: {{kind: http, base_url: "{url}"}}
load: {{model: open, curve: "hold({rate}, {seconds}s)", expected_latency: 20ms}}
requests:
  a: {{path: /a}}
"""


@contextmanager
def raw_peak(raw: Path) -> Iterator[dict[str, int]]:
    """Sampled every 20 ms: the most disk the raw record files held at once (`peak`: their sizes, or their
    allocated blocks where that is less, as in k6's punched file), how many files there were, and how
    much they were written (`written`: each file's largest size seen)."""
    seen = {"peak": 0, "files": 0, "written": 0}
    sizes: dict[str, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            held = 0
            for path in raw.glob("records-*.jsonl"):
                try:
                    stat = path.stat()
                except FileNotFoundError:  # deleted between the listing and the stat
                    continue
                held += min(stat.st_size, stat.st_blocks * 512)
                sizes[path.name] = max(sizes.get(path.name, 0), stat.st_size)
            seen["peak"] = max(seen["peak"], held)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()
        seen["files"], seen["written"] = len(sizes), sum(sizes.values())


def run_rotating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, rate: int, seconds: int):
    monkeypatch.setenv("SCENARIOKIT_RAW_ROTATE_BYTES", str(ROTATE))
    monkeypatch.setattr(store, "PART_SECONDS", 0.5)  # parts, and so frees, twice a second
    run_dir = tmp_path / "run"
    (run_dir / "raw").mkdir(parents=True)
    with LoopbackServer() as server:
        path = tmp_path / "scenario.yaml"
        path.write_text(OPEN.format(engine=engine, url=server.url, rate=rate, seconds=seconds))
        with raw_peak(run_dir / "raw") as seen:
            code = main(["run", str(path), "--out", str(run_dir), "--quiet", "--force"])
        sent = server.count("/a")  # the runner's own probes of the target go elsewhere
    summary = json.loads((run_dir / "summary.json").read_text())
    reader = json.loads((run_dir / "raw" / "reader.json").read_text())
    assert_within_the_estimate(load_scenario(path).scenario, run_dir, seen["peak"])
    return code, summary, reader, seen, sent, run_dir


def assert_within_the_estimate(scenario: Scenario, run_dir: Path, raw_peak: int) -> None:
    """The disk-use constants hold on a real run folder: the Parquet parts take no more than `plan`
    estimates for their records and parts, and not under half of it (the constants are not padding);
    the raw folder's peak stays within the estimate's bound."""
    parts = list((run_dir / "records").glob("part-*.parquet"))
    stored = sum(p.stat().st_size for p in parts)
    estimated = len(load_records(run_dir)) * PARQUET_BYTES_PER_RECORD + len(parts) * PARQUET_BYTES_PER_PART
    print(f"parquet: {stored} bytes in {len(parts)} parts, estimated {estimated}")
    assert estimated / 2 < stored <= estimated
    assert raw_peak <= disk_estimate(scenario).raw_bound_bytes


@pytest.mark.engine
def test_locust_rotates_and_the_raw_folder_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, summary, reader, seen, sent, run_dir = run_rotating(tmp_path, monkeypatch, "locust", 250, 8)
    print(f"locust raw: {seen}, {len(load_records(run_dir))} records")
    assert code == 0, summary.get("exit_detail")
    stored = load_records(run_dir)
    assert reader["skipped_lines"] == 0 and reader["raw_free_error"] is None
    # every request that reached the server is in Parquet, bar those in flight when Locust stopped
    assert 0 <= sent - len(stored) <= 6 and len(stored) > 1000
    assert len(stored) + reader["dropped"] == pytest.approx(2000, abs=5)  # the curve's 250/s x 8 s
    assert seen["files"] >= 12  # a file per flush (2 a second): each flush passes 4 KB
    # the folder holds about a second of records (a flush, a poll, a part), not the run's 8 seconds
    assert seen["peak"] < seen["written"] / 2, seen
    left = [p.name for p in (run_dir / "raw").glob("records-*.jsonl")]
    assert len(left) <= 2, left  # the files still being written when the run ended (master, worker)


@pytest.mark.engine
@needs_k6
def test_k6_console_file_is_freed_in_place_with_no_record_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, summary, reader, seen, sent, run_dir = run_rotating(tmp_path, monkeypatch, "k6", 400, 6)
    raw = run_dir / "raw" / "records-k6.jsonl"
    print(f"k6 raw: {seen}, allocated at the end {allocated(raw)}")
    assert code == 0, summary.get("exit_detail")
    stored = load_records(run_dir)
    assert reader["skipped_lines"] == 0 and reader["raw_free_error"] is None
    assert len(stored) == sent > 2000  # k6 writes every request it sent before it exits
    assert seen["written"] == raw.stat().st_size  # k6 appended at the end all along: no gap, no overlap
    assert seen["peak"] < seen["written"] / 2, seen  # the file grew, its blocks did not


CLOSED = """\
version: 1
name: rotation-crash
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "hold(2, 30s)", think_time: constant(20ms)}}
requests:
  a: {{path: /a}}
"""


def raw_requests(raw: Path) -> set[tuple[float, float]]:
    """(start, latency) of every request line still in the raw files."""
    rows = (json.loads(text) for p in raw.glob("records-*.jsonl") for text in p.read_text().splitlines())
    return {(float(row[0]), float(row[7])) for row in rows if isinstance(row, list)}


def freed(run_dir: Path) -> bool:
    """A part was written and a raw file deleted (the oldest left is not the first)."""
    return any((run_dir / "records").glob("part-*.parquet")) and oldest_sequence(run_dir / "raw") > 1


def oldest_sequence(raw: Path) -> int:
    keys = [rotated_key(p) for p in raw.glob("records-*.jsonl")]
    return min((key[1] for key in keys if key is not None), default=0)


@pytest.mark.engine
@pytest.mark.solo  # its kill lands mid-part by the clock: the other worker's load must not shift it
def test_a_runner_killed_mid_run_leaves_every_record_in_parquet_or_raw(tmp_path: Path) -> None:
    """SIGKILL to the runner after raw files were freed: each request the target saw is in a Parquet part
    or a raw file still on disk (the engine is then stopped with SIGINT, as the runner would stop it, so
    it writes what it holds)."""
    run_dir, raw = tmp_path / "run", tmp_path / "run" / "raw"
    with LoopbackServer() as server:
        scenario = tmp_path / "crash.yaml"
        scenario.write_text(CLOSED.format(url=server.url))
        env = {**os.environ, "SCENARIOKIT_RAW_ROTATE_BYTES": str(ROTATE)}
        process = subprocess.Popen(
            [sys.executable, "-m", "scenariokit", "run", str(scenario), "--out", str(run_dir), "--quiet"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        tree = Tree(process.pid)
        try:
            until(lambda: freed(run_dir) or process.poll() is not None, "a part and a freed raw file")
            time.sleep(store.PART_SECONDS / 2)  # mid-part: records read since the part are only in raw
            process.kill()
            process.wait(10)
            engine = [pid for pid, line in tree.cmdlines.items() if "locust" in line]
            for pid in engine:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(os.getpgid(pid), signal.SIGINT)  # as the runner stops it
            until(lambda: not any(running(tree.seen[pid]) for pid in engine), "the engine to stop")
        finally:
            tree.stop()
            if process.poll() is None:
                process.kill()
        sent = server.count("/a")
    stored = {(r.t, r.latency) for r in load_records(run_dir)}
    kept = raw_requests(raw)
    assert stored and oldest_sequence(raw) > 1
    assert 0 <= sent - len(stored | kept) <= 4, (sent, len(stored), len(kept))  # bar those in flight
