"""Compact, crash-safe storage of per-request records: Parquet part files in `records/`.

Each part is a complete Parquet file written when it is closed (every PART_SECONDS or PART_ROWS), so a
crash loses at most the open part's rows, which the engine's raw line files in `raw/` still hold: the
reader frees raw bytes only after a part holding their records is on disk (`on_durable`). Columnar and
compressed: see docs/results-format.md for measured sizes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scenariokit.engines.records import RequestRecord

PART_SECONDS = 5.0
PART_ROWS = 100_000
# Disk use (run/disk_use.py): measured on real run folders by benchmarks/bench_disk_use.py and checked on
# one by tests/test_raw_rotation.py (docs/performance.md, "Disk use")
PARQUET_BYTES_PER_RECORD = 26
PARQUET_BYTES_PER_PART = 4_500
SCHEMA = pa.schema(
    [
        ("t", pa.float64()),
        ("name", pa.string()),
        ("stage", pa.string()),
        ("status", pa.int32()),
        ("ok", pa.bool_()),
        ("error", pa.string()),
        ("latency", pa.float64()),
        ("intended", pa.float64()),
        ("ttfb", pa.float64()),
        ("ttft", pa.float64()),
        ("itl", pa.list_(pa.float64())),
        ("tokens", pa.int32()),
        ("bytes", pa.int64()),
        ("users", pa.float64()),
        ("code", pa.string()),  # a failure's engine code: k6's error_code, or Locust's exception class
        ("message", pa.string()),  # its message, on the first record of each (request, kind, code)
    ]
)


class RecordStore:
    """`on_durable` is called after each part is written and synced: every record appended so far is
    then on disk (the reader deletes the raw files it has read whole)."""

    def __init__(self, run_dir: Path, on_durable: Callable[[], None] | None = None) -> None:
        self.on_durable = on_durable
        self.dir = run_dir / "records"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pending: list[RequestRecord] = []
        self.parts = len(list(self.dir.glob("part-*.parquet")))
        self.opened = time.monotonic()

    def append(self, records: list[RequestRecord]) -> None:
        self.pending.extend(records)
        if len(self.pending) >= PART_ROWS or (
            self.pending and time.monotonic() - self.opened >= PART_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.parts += 1
            columns = zip(*self.pending, strict=True)  # the records' fields, column by column
            table = pa.table(dict(zip(RequestRecord._fields, columns, strict=True)), schema=SCHEMA)
            tmp = self.dir / f".part-{self.parts:05d}.parquet.tmp"
            pq.write_table(table, tmp, compression="zstd")
            _sync(tmp)  # on the disk before the raw lines it replaces are freed, even across a power cut
            tmp.rename(self.dir / f"part-{self.parts:05d}.parquet")  # a part appears whole or not at all
            _sync(self.dir)  # and so is its name
            self.pending = []
            if self.on_durable is not None:
                self.on_durable()
        self.opened = time.monotonic()

    def close(self) -> None:
        self.flush()


def _sync(path: Path) -> None:
    """fsync a file or a folder (Linux and macOS open a folder read-only for this)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_records(run_dir: Path) -> list[RequestRecord]:
    records: list[RequestRecord] = []
    for part in sorted((run_dir / "records").glob("part-*.parquet")):
        table = pq.read_table(part)
        present = [f for f in RequestRecord._fields if f in table.column_names]
        columns = table.select(present).to_pydict()
        columns["itl"] = [tuple(v) if v is not None else None for v in columns["itl"]]
        for name in RequestRecord._fields:  # a part written before a field existed (code, message)
            columns.setdefault(name, [None] * table.num_rows)
        ordered = [columns[name] for name in RequestRecord._fields]
        records += map(RequestRecord._make, zip(*ordered, strict=True))
    return records


def read_samples(run_dir: Path, name: str) -> list[dict[str, Any]]:
    """The monitor's samples (`monitor/<name>`, JSON lines), skipping a line cut by a crash."""
    path = run_dir / "monitor" / name
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash
    return out
