"""Benchmark: a run folder's disk use, measured on real runs, against what `scenariokit plan` predicts.

    python benchmarks/bench_disk_use.py [--engines locust k6] [--rate 500] [--seconds 20] [--rotate BYTES]

Each engine runs an open model at `--rate` requests/s for `--seconds` through `scenariokit run` against
the loopback server (tests/support/loopback.py; a GET answered at once), the raw folder sampled every
20 ms. Per engine it prints:

- Parquet bytes per record: `records/` over the records stored, and the part overhead (the same records
  rewritten in parts of 100 and of 10,000 rows: the difference per extra part), the figures behind
  PARQUET_BYTES_PER_RECORD and PARQUET_BYTES_PER_PART (results/store.py);
- the raw folder's peak (the most its record files held at once: sizes, or allocated blocks where less)
  against what was written, and the bound `disk_estimate` allows;
- the monitor's bytes per second of run (MONITOR_BYTES_PER_S in run/disk_use.py);
- at the end, Parquet bytes per inter-token gap of a streamed answer (ITL_BYTES_PER_GAP);
- the run folder's size against `disk_estimate`'s total for the same plan.

Only 127.0.0.1 is sent to; each run is bounded by `--seconds` plus start-up.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the loopback server lives with the tests

from scenariokit.cli import main as scenariokit_main
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines.records import RequestRecord
from scenariokit.results.store import RecordStore, load_records
from scenariokit.run.disk_use import disk_estimate
from tests.support.loopback import LoopbackServer

SCENARIO = """\
version: 1
name: disk-use
engine: {engine}
target: {{kind: http, base_url: "{url}"}}
load: {{model: open, curve: "hold({rate}, {seconds}s)", expected_latency: 20ms}}
requests:
  a: {{weight: 3, path: /a}}
  b: {{weight: 1, path: /b}}
"""


def folder_bytes(folder: Path, pattern: str = "**/*") -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.glob(pattern) if p.is_file())


def part_overhead(run_dir: Path) -> tuple[float, float]:
    """(bytes per record, bytes per part): the run's records rewritten in parts of 100 and 10,000 rows."""
    records = load_records(run_dir)
    sizes = {}
    for rows in (100, 10_000):
        with tempfile.TemporaryDirectory() as tmp:
            store = RecordStore(Path(tmp))
            for i in range(0, len(records), rows):
                store.pending = list(records[i : i + rows])
                store.flush()
            sizes[rows] = (store.parts, sum(p.stat().st_size for p in (Path(tmp) / "records").glob("*")))
    (small_parts, small), (big_parts, big) = sizes[100], sizes[10_000]
    per_part = (small - big) / max(small_parts - big_parts, 1)
    return (big - big_parts * per_part) / len(records), per_part


def gap_bytes(records: int = 20_000) -> None:
    """Parquet bytes per inter-token gap (ITL_BYTES_PER_GAP): synthetic streamed records with 16 and 64
    log-normal gaps each, against the same records with none."""
    rng = random.Random(1)

    def size(gaps: int) -> int:
        rows = [
            RequestRecord(
                1.8e9 + i * 0.0137 + rng.random() * 0.01,
                "m",
                "hold",
                200,
                True,
                None,
                rng.lognormvariate(-1, 0.5),
                None,
                0.01,
                0.2,
                tuple(rng.lognormvariate(-4, 0.3) for _ in range(gaps)) if gaps else None,
                gaps + 1,
                512,
                8.0,
            )
            for i in range(records)
        ]
        with tempfile.TemporaryDirectory() as tmp:
            store = RecordStore(Path(tmp))
            store.pending = rows
            store.flush()
            return sum(p.stat().st_size for p in (Path(tmp) / "records").glob("*.parquet"))

    base = size(0)
    for gaps in (16, 64):
        print(f"streamed answers, {gaps} gaps: {(size(gaps) - base) / records / gaps:.1f} bytes a gap")


def sample_raw(raw: Path, seen: dict[str, int], stop: threading.Event) -> None:
    sizes: dict[str, int] = {}
    while not stop.wait(0.02):
        held = 0
        for path in raw.glob("records-*.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                held += min(stat.st_size, stat.st_blocks * 512)
                sizes[path.name] = max(sizes.get(path.name, 0), stat.st_size)
        seen["peak"] = max(seen["peak"], held)
        seen["written"] = sum(sizes.values())


def run_one(engine: str, rate: int, seconds: int, tmp: Path) -> None:
    run_dir = tmp / engine
    (run_dir / "raw").mkdir(parents=True)
    seen = {"peak": 0, "written": 0}
    stop = threading.Event()
    with LoopbackServer() as server:
        path = tmp / f"{engine}.yaml"
        path.write_text(SCENARIO.format(engine=engine, url=server.url, rate=rate, seconds=seconds))
        thread = threading.Thread(target=sample_raw, args=(run_dir / "raw", seen, stop), daemon=True)
        thread.start()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = scenariokit_main(["run", str(path), "--out", str(run_dir), "--quiet", "--force"])
        stop.set()
        thread.join()
        sent = server.count("/a") + server.count("/b")  # the runner's own probes go elsewhere
    estimate = disk_estimate(load_scenario(path).scenario, processes=1)
    records = len(load_records(run_dir))
    parquet = sum(p.stat().st_size for p in (run_dir / "records").glob("part-*.parquet"))
    parts = len(list((run_dir / "records").glob("part-*.parquet")))
    per_record, per_part = part_overhead(run_dir)
    monitor = folder_bytes(run_dir / "monitor")
    dropped = json.loads((run_dir / "raw" / "reader.json").read_text())["dropped"]
    print(f"{engine}: exit {code}, {records:,} records in {parts} parts, {parquet:,} Parquet bytes")
    print(
        f"  requests: {sent:,} served, {records:,} stored + {dropped:,} dropped of {rate * seconds:,} planned"
    )
    print(
        f"  Parquet: {parquet / records:.1f} bytes/record as written; "
        f"refit {per_record:.1f} + {per_part:,.0f}/part"
    )
    print(
        f"  raw: peak {seen['peak']:,} bytes of {seen['written']:,} written; "
        f"bound {estimate.raw_bound_bytes:,.0f}"
    )
    print(f"  monitor: {monitor:,} bytes, {monitor / seconds:,.0f}/s of run")
    print(f"  folder {folder_bytes(run_dir):,} bytes on disk; estimate {estimate.total_bytes:,.0f} in total")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engines", nargs="+", default=["locust", "k6"])
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rotate", type=int, help="SCENARIOKIT_RAW_ROTATE_BYTES for the runs")
    args = parser.parse_args()
    if args.rotate:
        os.environ["SCENARIOKIT_RAW_ROTATE_BYTES"] = str(args.rotate)
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines:
            run_one(engine, args.rate, args.seconds, Path(tmp))
    gap_bytes()


if __name__ == "__main__":
    main()
