"""`scenariokit collect FILE RAW_DIR --out RUN`: one judged run folder from records that were written
elsewhere: the raw records a deployed run leaves behind (a stock Locust master's `records-w*.jsonl`, the
k6-operator runners' logs saved as `records-k6.<i>.jsonl`; docs/kubernetes.md).

The records go through the engine's own reader into the run folder's store, exactly as a run's do, and the
summary and report are written by the same code; run.json says where they came from. What only a live
run sees (the host and target monitor, the generators' CPU) is absent, and the verdict says nothing of it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import get_engine
from scenariokit.engines.base import EngineLaunch, RecordReader
from scenariokit.exitcodes import ExitCode
from scenariokit.results.report import write_reports
from scenariokit.results.runfolder import RunMeta, write_run_meta
from scenariokit.results.store import RecordStore
from scenariokit.results.summary import rebuild_summary
from scenariokit.run.live import LiveView
from scenariokit.run.orchestrate import (
    RunFolderError,
    RunOptions,
    RunState,
    claim_run_dir,
    write_run_metadata,
)

# the records' files, as the runtimes and the runner's k6 leader name them
PATTERNS = ("records-*.jsonl",)
MAX_FILES = 100_000  # a folder of more is not a run's raw output


def raw_files(raw_in: Path) -> list[Path]:
    """The record files directly in `raw_in`; links are skipped (a copied folder holds plain files, and a
    link could name any file on this machine)."""
    files = sorted({p for pattern in PATTERNS for p in raw_in.glob(pattern)})
    return [p for p in files if p.is_file() and not p.is_symlink()][: MAX_FILES + 1]


def collect(source: Path, raw_in: Path, out: Path | None, options: RunOptions) -> int:
    loaded = load_scenario(source, options.data_root)
    scenario = loaded.scenario
    engine = get_engine(options.engine or scenario.engine)
    files = raw_files(raw_in)
    if not raw_in.is_dir() or not files or len(files) > MAX_FILES:
        print(f"error: {raw_in} holds no records-*.jsonl files (or too many to be a run's)", file=sys.stderr)
        return ExitCode.INVALID_SCENARIO
    try:
        run_dir, lock = claim_run_dir(scenario, out, options.force)
    except RunFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.INVALID_SCENARIO
    try:
        for path in files:
            shutil.copyfile(path, run_dir / "raw" / path.name)
        base_url = options.base_url or scenario.target.base_url
        meta = write_run_metadata(run_dir, scenario, source, engine, base_url, started=0.0)
        state, ended = _store(run_dir, engine.reader(run_dir / "raw", EngineLaunch([], {})))
        meta.started_unix = state.started_unix
        state.detail = f"collected from {raw_in}"
        return _judge(run_dir, meta, state, ended, options, LiveView(scenario, quiet=options.quiet))
    finally:
        os.close(lock)


def _judge(
    run_dir: Path, meta: RunMeta, state: RunState, ended: float, options: RunOptions, view: LiveView
) -> int:
    """As a run's end (orchestrate.write_results), with the run's end the last record's, not now: rates
    are per second of the run."""
    meta.ended_unix = ended
    meta.exit_reason, meta.exit_detail = state.exit_reason, state.detail
    meta.engine_returncode = state.engine_returncode
    meta.engine_started_unix = state.engine_started_unix
    write_run_meta(run_dir, meta)
    summary = rebuild_summary(run_dir, strict=options.strict, allow_inconclusive=options.allow_inconclusive)
    view.print_verdict(summary, run_dir, write_reports(run_dir, summary))
    return summary.exit_code


def _store(run_dir: Path, reader: RecordReader) -> tuple[RunState, float]:
    """Every record the reader finds, into the run folder's store; the run's start is the runtime's own
    test_start marker (else the first record's), its end the last answer's."""
    store = RecordStore(run_dir)
    first, last = float("inf"), 0.0
    count = 0
    while batch := reader.poll():
        store.append(batch)
        count += len(batch)
        first = min(first, *(r.t for r in batch))
        last = max(last, *(r.t + r.latency for r in batch))
    store.flush()
    started = reader.started_unix or (first if count else 0.0)
    state = RunState(started_unix=started)
    state.records = count
    state.engine_started_unix = started
    state.engine_returncode = 0
    return state, max(last, started)
