"""Benchmark: the runner's memory over a long run, then `scenariokit report` on its run folder.

    python benchmarks/bench_long_run.py [--records 50000000] [--per-poll 1000] [--out DIR] [--no-report]
    python benchmarks/bench_long_run.py --report-only RUN_DIR

Feeds the runner's record pipeline (run/pipeline.py `runner_pipeline`, exactly what `run_engine` builds:
the Parquet store, the SLO tracker, the live view, the live metrics exporter, the abort judge) with
synthetic records whose start times are spread evenly over 24 hours, `--per-poll` a poll, calling
`exporter.tick` and `gc.freeze()` after each poll as the poll loop does. It prints the process's resident
memory (VmRSS) and peak (VmHWM) at 1M, 10M and 50M records (those not above --records) and at the end,
then runs `scenariokit report` on the run folder and prints that process's peak RSS and wall time.

The records are built from a pool of 100,000 (three request names, lognormal latencies from 1 ms to
seconds, 1% errors of two kinds, a streamed request with TTFB), shifted in time: what the pipeline keeps
depends on how many records it saw, never on which.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines.records import RequestRecord
from scenariokit.results.store import RecordStore
from scenariokit.run.exporter import LiveExporter
from scenariokit.run.live import LiveView
from scenariokit.run.orchestrate import RunOptions, apply_overrides, make_run_dir
from scenariokit.run.pipeline import runner_pipeline

T0 = 1.8e9
DAY_S = 86_400.0
CHECKPOINTS = (1_000_000, 10_000_000, 50_000_000)
POOL = 100_000
SCENARIO = """\
version: 1
name: bench-long-run
target: {kind: http, base_url: "http://127.0.0.1:9", timeout: 30s}
load: {curve: "ramp(0, 500, 1h) -> hold(22h) as soak -> ramp(0, 1h) as drain", think_time: none}
requests:
  search: {method: GET, path: /search, weight: 3}
  upload: {method: POST, path: /upload, body: "hello"}
  stream: {method: GET, path: /stream}
slo:
  - p99(latency) < 2s
  - p95(latency) < 500ms for search
  - p99.9(ttfb) < 1s for stream during soak
  - mean(latency) < 300ms during 2h..20h
  - max(latency) < 60s
  - error_rate < 2%
  - error_rate < 5% for upload during soak
  - throughput > 100/s during soak
"""


def memory_mib() -> tuple[float, float]:
    """VmRSS and VmHWM (the peak) of this process, MiB."""
    fields = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def pool(rng: random.Random) -> list[tuple[str, str, int, bool, str | None, float, float | None]]:
    rows = []
    for _ in range(POOL):
        name = rng.choices(["search", "upload", "stream"], [3, 1, 1])[0]
        latency = min(60.0, rng.lognormvariate(-3.5, 1.0))
        failed = rng.random() < 0.01
        error = rng.choice(["http_503", "timeout"]) if failed else None
        status = 0 if error == "timeout" else (503 if failed else 200)
        ttfb = latency * rng.uniform(0.1, 0.5) if name == "stream" else None
        rows.append((name, "soak", status, not failed, error, latency, ttfb))
    return rows


def feed(scenario: object, run_dir: Path, total: int, per_poll: int) -> list[tuple[int, float, float, float]]:
    store = RecordStore(run_dir)
    view, exporter = LiveView(scenario, quiet=True), LiveExporter(scenario)  # type: ignore[arg-type]
    pipeline, _ = runner_pipeline(scenario, store, view, exporter, abort_on_fail=True)  # type: ignore[arg-type]
    exporter.tracker.origin_unix = T0
    rows = pool(random.Random(16))
    step = DAY_S / total
    marks = [c for c in CHECKPOINTS if c < total] + [total]
    table: list[tuple[int, float, float, float]] = []
    began = time.monotonic()
    for first in range(0, total, per_poll):
        count = min(per_poll, total - first)
        batch = [
            RequestRecord(T0 + i * step, *rows[i % POOL][:6], ttfb=rows[i % POOL][6])
            for i in range(first, first + count)
        ]
        pipeline.add(batch)
        exporter.tick(T0)
        gc.freeze()  # as the poll loop does after each poll
        done = first + count
        if done >= marks[0]:
            rss, peak = memory_mib()
            table.append((done, time.monotonic() - began, rss, peak))
            print(f"{done:>12,} records {table[-1][1]:8.1f} s  rss {rss:8.1f} MiB  peak {peak:8.1f} MiB")
            marks.pop(0)
    pipeline.close()
    gc.unfreeze()
    assert not pipeline.failures, pipeline.failures
    return table


def write_run_files(run_dir: Path, scenario: object, source: Path, total: int) -> None:
    """The run.json and reader.json a run writes, for `scenariokit report`."""
    from scenariokit.results.runfolder import RUN_FORMAT, RunMeta, write_run_meta

    load = scenario.load  # type: ignore[attr-defined]
    meta = RunMeta(
        format=RUN_FORMAT,
        scenario_name="bench-long-run",
        scenario_path=str(source),
        scenario_sha256="0" * 64,
        engine="locust",
        started_unix=T0,
        engine_started_unix=T0,
        ended_unix=T0 + DAY_S,
        load_model=load.model,
        slos=list(scenario.slos),  # type: ignore[attr-defined]
        stages=list(load.stages),
    )
    write_run_meta(run_dir, meta)  # as the runner writes it
    (run_dir / "raw" / "reader.json").write_text(json.dumps({"started_unix": T0, "dropped_times": []}) + "\n")
    print(f"records: {total:,} in {len(list((run_dir / 'records').glob('part-*.parquet')))} parts")


def report(run_dir: Path, timeout_s: float) -> None:
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "scenariokit", "report", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    wall = time.monotonic() - began
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    verdict = next((line for line in result.stdout.splitlines() if line.startswith("verdict:")), "")
    print(f"scenariokit report: exit {result.returncode}, {wall:.1f} s, peak rss {peak:.1f} MiB; {verdict}")
    if result.returncode not in (0, 1, 4):
        print(result.stderr[-2000:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=CHECKPOINTS[-1])
    parser.add_argument("--per-poll", type=int, default=1000)
    parser.add_argument("--out", type=Path, help="the run folder (default: a temporary one, deleted)")
    parser.add_argument("--no-report", action="store_true", help="skip `scenariokit report`")
    parser.add_argument("--report-timeout", type=float, default=3600.0)
    parser.add_argument(
        "--report-only", type=Path, metavar="RUN_DIR", help="only `scenariokit report` RUN_DIR"
    )
    args = parser.parse_args()
    if args.report_only:
        report(args.report_only, args.report_timeout)
        return
    with tempfile.TemporaryDirectory() as name:
        work = Path(name)
        source = work / "scenario.yaml"
        source.write_text(SCENARIO)
        scenario = apply_overrides(load_scenario(source).scenario, RunOptions(quiet=True))
        run_dir = make_run_dir(scenario, args.out or work / "run")
        print(f"feeding {args.records:,} records over 24 h, {args.per_poll:,} a poll, into {run_dir}")
        table = feed(scenario, run_dir, args.records, args.per_poll)
        after_first = [peak for done, _, _, peak in table if done >= min(CHECKPOINTS[0], args.records)]
        growth = (after_first[-1] / after_first[0] - 1) * 100 if after_first else math.nan
        print(f"peak growth after the first checkpoint: {growth:+.1f}% (flat: within 10%)")
        write_run_files(run_dir, scenario, source, args.records)
        if not args.no_report:
            report(run_dir, args.report_timeout)


if __name__ == "__main__":
    main()
