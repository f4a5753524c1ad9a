"""Compact, crash-safe storage of per-request records: Parquet part files in `<run>/records/`.

Each part (`part-00001.parquet`, ...) is a complete Parquet file, written to a hidden temporary name,
fsynced and renamed when it is closed, every `part_seconds` or `part_rows` records: a part appears whole or
not at all, so a crash loses at most the open part's rows (which the engine's raw line files in `raw/`
still hold). Columnar, dictionary-encoded and zstd-compressed: docs/results-format.md has measured sizes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from scenariokit.records import RequestRecord

PART_SECONDS = 5.0
PART_ROWS = 100_000
PART_GLOB = "part-*.parquet"
SCHEMA = pa.schema(
    [
        ("t", pa.float64()),
        ("name", pa.string()),
        ("stage", pa.string()),
        ("status", pa.int16()),
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
    ]
)
FIELDS = tuple(f.name for f in fields(RequestRecord))
assert tuple(SCHEMA.names) == FIELDS, "the Parquet schema must follow RequestRecord"


class RecordStore:
    """Appends records to the run folder; call `close()` (or use it as a context manager) at the end."""

    def __init__(self, run_dir: Path, part_seconds: float = PART_SECONDS, part_rows: int = PART_ROWS) -> None:
        self.dir = Path(run_dir) / "records"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.part_seconds = part_seconds
        self.part_rows = part_rows
        self.pending: list[RequestRecord] = []
        self.parts = _last_part_number(self.dir)  # a reopened store continues the numbering
        self.written = 0
        self.opened = time.monotonic()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def append(self, records: Iterable[RequestRecord]) -> None:
        self.pending.extend(records)
        while len(self.pending) >= self.part_rows:
            self._write(self.pending[: self.part_rows])
            self.pending = self.pending[self.part_rows :]
        if self.pending and time.monotonic() - self.opened >= self.part_seconds:
            self.flush()

    def flush(self) -> None:
        """Close the open part now (if it holds any record)."""
        if self.pending:
            self._write(self.pending)
            self.pending = []
        self.opened = time.monotonic()

    def close(self) -> None:
        self.flush()

    def _write(self, records: list[RequestRecord]) -> None:
        self.parts += 1
        final = self.dir / f"part-{self.parts:05d}.parquet"
        tmp = self.dir / f".{final.name}.tmp"
        pq.write_table(to_table(records), tmp, compression="zstd")
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(final)
        self.written += len(records)
        self.opened = time.monotonic()


def _last_part_number(directory: Path) -> int:
    numbers = [int(p.stem.removeprefix("part-")) for p in directory.glob(PART_GLOB)]
    return max(numbers, default=0)


def to_table(records: list[RequestRecord]) -> pa.Table:
    columns = {name: [getattr(r, name) for r in records] for name in FIELDS}
    columns["itl"] = [None if v is None else list(v) for v in columns["itl"]]
    return pa.table(columns, schema=SCHEMA)


def iter_records(run_dir: Path) -> Iterator[RequestRecord]:
    """Every stored record, part by part in write order (memory: one part at a time)."""
    for part in sorted((Path(run_dir) / "records").glob(PART_GLOB)):
        for batch in pq.ParquetFile(part).iter_batches(batch_size=65_536):
            for row in batch.to_pylist():
                itl = row["itl"]
                row["itl"] = None if itl is None else tuple(itl)
                yield RequestRecord(**row)


def load_records(run_dir: Path) -> list[RequestRecord]:
    return list(iter_records(run_dir))
