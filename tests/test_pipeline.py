"""The record pipeline: each batch reaches the store first and then every live sink, in order; a live sink
that raises is dropped and the run's records still reach the Parquet store whole; the abort judge reads
the tracker's counts."""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path

import pytest

from scenariokit.compile.expr import parse_slo
from scenariokit.engines.records import RequestRecord
from scenariokit.results.store import RecordStore, load_records
from scenariokit.run.exporter import LiveExporter
from scenariokit.run.live import LiveView
from scenariokit.run.pipeline import AbortJudge, RecordPipeline, runner_pipeline
from tests.support.ir_examples import closed_chat_scenario

T0 = 1_700_000_000.0


def batch(start: int, size: int, ok: bool = True) -> list[RequestRecord]:
    return [
        RequestRecord(T0 + i * 0.01, "a", "", 200 if ok else 500, ok, None if ok else "http_500", 0.05)
        for i in range(start, start + size)
    ]


class Recorder:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def add(self, records: list[RequestRecord]) -> None:
        self.log.append(f"{self.name}:{len(records)}")

    def close(self) -> None:
        self.log.append(f"{self.name}:closed")


class Broken:
    def __init__(self, on: str) -> None:
        self.on = on

    def add(self, records: list[RequestRecord]) -> None:
        if self.on == "add":
            raise ValueError("a bug in a live sink")

    def close(self) -> None:
        if self.on == "close":
            raise RuntimeError("a bug at close")


def test_sinks_get_each_batch_in_order_store_first() -> None:
    log: list[str] = []
    pipeline = RecordPipeline(Recorder(log, "store"), [Recorder(log, "view"), Recorder(log, "exporter")])
    pipeline.add(batch(0, 3))
    pipeline.close()
    assert log == ["store:3", "view:3", "exporter:3", "store:closed", "view:closed", "exporter:closed"]


@pytest.mark.parametrize("on", ["add", "close"])
def test_a_failing_live_sink_is_dropped_and_every_record_is_stored(
    tmp_path: Path, on: str, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = closed_chat_scenario()
    store = RecordStore(tmp_path)
    exporter = LiveExporter(scenario)
    pipeline, _ = runner_pipeline(scenario, store, LiveView(scenario, quiet=True), exporter)
    pipeline.live.insert(1, Broken(on))  # between the tracker and the view
    for i in range(5):
        pipeline.add(batch(i * 100, 100))
    pipeline.close()
    assert len(load_records(tmp_path)) == 500
    assert [type(s).__name__ for s in pipeline.live] == ["SloTracker", "LiveView", "LiveExporter"]
    assert len(pipeline.failures) == 1 and "Broken" in capsys.readouterr().err
    assert pipeline.live[1].total == 500  # the sinks after it got every batch


def test_a_full_disk_in_the_store_reaches_the_caller_before_any_live_sink() -> None:
    class FullDisk(Recorder):
        def add(self, records: list[RequestRecord]) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    log: list[str] = []
    pipeline = RecordPipeline(FullDisk(log, "store"), [Recorder(log, "view")])
    with pytest.raises(OSError, match="No space"):
        pipeline.add(batch(0, 3))
    assert log == [] and pipeline.failures == []


def test_the_abort_judge_reads_the_trackers_counts() -> None:
    scenario = dataclasses.replace(closed_chat_scenario(), slos=(parse_slo("error_rate < 1%"),))
    exporter = LiveExporter(scenario)
    judge = AbortJudge(scenario, exporter.tracker)
    judge.planned = 1000
    judge.next_check = 0.0  # past the grace period
    pipeline = RecordPipeline(Recorder([], "store"), [exporter.tracker, judge])
    pipeline.add(batch(0, 100) + batch(100, 20, ok=False))  # 20 errors: at best 20 of 1,000
    assert judge.lost == "error_rate < 1%"
