"""Benchmark: the runner's CPU per request record while an engine runs (reading, storing, live outputs).

    python benchmarks/bench_reader.py [--records 200000] [--per-poll 15000] [--repeats 3]

The runner shares the load generator's cores with the engine, so what it spends per record is taken from
the engine's rate (bench_collection.py measures that end to end; this isolates the runner's part). It
writes synthetic records for a fast endpoint (one request name, latencies around 1 ms) in each engine's raw
format, `--per-poll` at a time, and after each write does what `run_engine` does per poll: the reader's
poll, the record pipeline (run/pipeline.py: Parquet store, SLO tracker, live view, live metrics exporter),
then `gc.freeze()`. It prints the CPU
time (process time) per record, median of `--repeats`:

- Locust lines: one JSON array per request (RECORD_FIELDS order), as the Locust runtime writes them;
- k6 batches: one line per VU batch of 256 requests, four float64s each (start, outcome, latency, ttfb),
  in base64;
- each also without the `gc.freeze()` after each poll (the collector walks all records kept so far).
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import random
import statistics
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines.k6.reader import K6RecordReader
from scenariokit.engines.records import RecordLinesReader
from scenariokit.results.store import RecordStore
from scenariokit.run.exporter import LiveExporter
from scenariokit.run.live import LiveView
from scenariokit.run.orchestrate import RunOptions, apply_overrides
from scenariokit.run.pipeline import runner_pipeline

T0 = 1.8e9
SCENARIO = """\
version: 1
name: bench-reader
target: {kind: http, base_url: "http://127.0.0.1:9", timeout: 10s}
load: {curve: "hold(32, 8s)", think_time: none}
requests:
  ping: {method: GET, path: /ping}
"""


def locust_lines(n: int, rng: random.Random) -> list[bytes]:
    lines = []
    for i in range(n):
        latency = rng.lognormvariate(-7, 0.3)
        fields = [T0 + i * 3e-5, None, "ping", "hold", 200, True, None, latency, latency / 2]
        lines.append(json.dumps([*fields, None, None, None, 3, 32.0]).encode() + b"\n")
    return lines


def k6_lines(n: int, rng: random.Random, batch: int = 256) -> list[bytes]:
    lines = []
    for first in range(0, n, batch):
        numbers: list[float] = []
        for i in range(first, min(n, first + batch)):
            latency = round(rng.lognormvariate(-0.3, 0.3), 6)  # ms, as k6 gives them
            numbers += [int(T0 * 1000) + i // 30, 0, latency, round(latency / 2, 6)]
        f64 = base64.b64encode(struct.pack(f"<{len(numbers)}d", *numbers)).decode()
        batch_line = {"outcomes": [["ping", "hold", 200, True, None]], "f64": f64}
        lines.append(json.dumps(batch_line, separators=(",", ":")).encode() + b"\n")
    return lines


def run_once(lines: list[bytes], per_poll: int, records_per_line: int, k6: bool, freeze: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-reader-") as name:
        work = Path(name)
        source = work / "scenario.yaml"
        source.write_text(SCENARIO)
        scenario = apply_overrides(load_scenario(source).scenario, RunOptions(quiet=True))
        raw = work / "raw"
        raw.mkdir()
        reader = K6RecordReader(raw) if k6 else RecordLinesReader(raw)
        store, view, exporter = RecordStore(work), LiveView(scenario, quiet=True), LiveExporter(scenario)
        pipeline, _ = runner_pipeline(scenario, store, view, exporter)  # as run_engine builds it
        step = max(1, per_poll // records_per_line)
        seen = 0
        began = time.process_time()
        with (raw / ("records-k6.jsonl" if k6 else "records-1.jsonl")).open("wb") as out:
            for i in range(0, len(lines), step):
                out.write(b"".join(lines[i : i + step]))
                out.flush()
                records = reader.poll()
                pipeline.add(records)
                exporter.tick(reader.started_unix)
                seen += len(records)
                if freeze:
                    gc.freeze()
        pipeline.close()
        spent = time.process_time() - began
        gc.unfreeze()
        assert seen == view.total and reader.skipped == 0
        return spent / seen * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--per-poll", type=int, default=15_000, help="records per poll (30k/s x 0.5 s)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(1)
    formats: dict[str, tuple[Callable[[], list[bytes]], int, bool]] = {
        "Locust lines": (lambda: locust_lines(args.records, rng), 1, False),
        "k6 batches": (lambda: k6_lines(args.records, rng), 256, True),
    }
    print(f"{args.records:,} records, {args.per_poll:,} per poll, median of {args.repeats}")
    print(f"{'format':<14} {'us/record, gc.freeze()':>24} {'without freeze':>16} {'ratio':>7}")
    for label, (make, per_line, k6) in formats.items():
        lines = make()
        frozen = statistics.median(
            run_once(lines, args.per_poll, per_line, k6, True) for _ in range(args.repeats)
        )
        walked = statistics.median(
            run_once(lines, args.per_poll, per_line, k6, False) for _ in range(args.repeats)
        )
        print(f"{label:<14} {frozen:>24.2f} {walked:>16.2f} {frozen / walked:>7.2f}")


if __name__ == "__main__":
    main()
