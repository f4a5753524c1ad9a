"""One normalized per-request record, and incremental readers for each engine's raw output.

Readers are polled while the engine runs: each poll returns only the complete lines written since the
last one (a partial last line waits for the next poll), so a crash loses at most the engine's unflushed
buffer. A garbled line (a crash mid-write) is skipped and counted, never fatal.

Raw files stay bounded (docs/results-format.md, `raw/`): a runtime that rotates its files
(`records-<id>-<seq>.jsonl`, a new one every `raw_rotate_bytes()`) has a file deleted once the reader
has read it whole (its successor existed before the read) and the store has those records in a Parquet
part (`release`, called by the store after each part it writes). Until then every record is in a raw
file or a part, so a runner killed at any point loses nothing the engine had written.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from scenariokit.engines.outcomes import taxonomy


class RequestRecord(NamedTuple):
    """One request. A named tuple, not a dataclass: the runner makes tens of thousands a second while the
    engine runs beside it on the same cores, and a tuple is built (and turned into columns) faster
    (docs/performance.md)."""

    t: float  # start, unix seconds
    name: str
    stage: str
    status: int  # 0 when no response arrived
    ok: bool
    error: str | None
    latency: float  # seconds, request sent -> last byte
    intended: float | None = None  # open model: when the request should have started
    ttfb: float | None = None
    ttft: float | None = None
    itl: tuple[float, ...] | None = None
    tokens: int | None = None
    bytes: int = 0
    users: float | None = None
    # a failure without a response: the engine's own reason (engines/outcomes.py). `code` is k6's
    # error_code or the Python exception's class name, on every such record; `message` the engine's
    # message, cleaned, on the first record of its (request, kind, code) in a process or VU, else None
    code: str | None = None
    message: str | None = None

    @property
    def end(self) -> float:
        return self.t + self.latency

    @property
    def corrected_latency(self) -> float:
        """Latency from the intended start (coordinated omission corrected); plain latency if closed."""
        return self.end - self.intended if self.intended is not None else self.latency

    @property
    def tpot(self) -> float | None:
        """vLLM's definition: (e2e - TTFT) / (output tokens - 1)."""
        if self.ttft is None or not self.tokens or self.tokens < 2:
            return None
        return (self.latency - self.ttft) / (self.tokens - 1)

    @property
    def error_kind(self) -> str | None:
        """The error as results group it (engines/outcomes.py): connection_refused, connection_reset,
        timeout, http_4xx:<code>, http_5xx:<code>, wrong_answer, bad_stream, other."""
        return taxonomy(self.error)


RAW_ROTATE_ENV = "SCENARIOKIT_RAW_ROTATE_BYTES"
RAW_ROTATE_BYTES = 16 << 20  # about 2 minutes of Locust's records at 1,000 requests/s (docs/performance.md)
ROTATED = re.compile(r"records-(?P<id>.+)-(?P<seq>\d+)\.jsonl")  # a rotating runtime's file names


def raw_rotate_bytes(environ: Mapping[str, str] = os.environ) -> int:
    """How much a raw file holds before the runtime starts the next one (the reader frees k6's file in
    steps of it): RAW_ROTATE_BYTES, or the environment's SCENARIOKIT_RAW_ROTATE_BYTES (a test sets a
    few KB). Read by the runner and passed to the engine, so the two agree."""
    try:
        value = int(environ.get(RAW_ROTATE_ENV, "") or RAW_ROTATE_BYTES)
    except ValueError:
        return RAW_ROTATE_BYTES
    return value if value > 0 else RAW_ROTATE_BYTES


def rotated_key(path: Path) -> tuple[str, int] | None:
    """(runtime id, sequence number) of a rotating runtime's file, None for any other name."""
    match = ROTATED.fullmatch(path.name)
    return (match["id"], int(match["seq"])) if match else None


class _LineTail:
    """Complete new lines appended to one file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.key = rotated_key(path)

    def new_data(self) -> bytes:
        """The complete new lines as one block, each ending in a newline (empty when there are none)."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return b""
        end = data.rfind(b"\n")
        if end < 0:
            return b""
        self.offset += end + 1
        return data[: end + 1]

    def new_lines(self) -> list[bytes]:
        return [line for line in self.new_data().split(b"\n") if line.strip()]


decode_json = json.JSONDecoder().decode  # on str: skips json.loads' encoding detection, per line


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _decode_array(line: bytes) -> list[Any] | None:
    try:
        value = decode_json(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, list) else None


class RecordLinesReader:
    """Reads the `records-*.jsonl` files the engines' runtimes write (one per generator process): a JSON
    array per request in RECORD_FIELDS order, the marker objects every runtime writes, and whatever an
    engine's subclass reads in `engine_line` (k6's batches)."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = results_dir
        self.tails: dict[Path, _LineTail] = {}
        self.skipped = 0
        self.dropped = 0
        self.dropped_times: list[float] = []
        self.started_unix: float | None = None  # the engine's test start, from its marker line
        self.read_whole: list[Path] = []  # rotated files read to their end, deleted by `release`
        self.retired: set[Path] = set()  # files read whole: never tailed again
        self.free_error: str | None = None  # why raw bytes could not be freed (reader.json)
        # Locust workers on other machines, as the master wrote them (the runtime's distribution
        # section): id -> clock offset and round trip, CPU samples [t, share of one core], lost at
        self.workers: dict[str, dict[str, Any]] = {}

    def poll(self) -> list[RequestRecord]:
        paths = sorted(p for p in self.results_dir.glob("records-*.jsonl") if p not in self.retired)
        for path in paths:
            self.tails.setdefault(path, _LineTail(path))
        # listed before the reads: a file whose successor exists now was complete when it is read below
        last = _last_sequences(paths)
        records: list[RequestRecord] = []
        for tail in list(self.tails.values()):
            records += self._read(tail)
            if tail.key is not None and tail.key[1] < last.get(tail.key[0], 0):
                self.read_whole.append(tail.path)
                self.retired.add(tail.path)
                del self.tails[tail.path]
        return records

    def release(self) -> None:
        """Every record read so far is durably stored (the store calls this after writing a part): the
        rotated files read whole can go."""
        for path in self.read_whole:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # a read-only folder: the file stays, the run goes on
                self.free_error = f"{path.name}: {exc.strerror or exc}"
        self.read_whole = []

    def _read(self, tail: _LineTail) -> list[RequestRecord]:
        lines = tail.new_lines()
        requests = [line for line in lines if line[:1] == b"["]  # RECORD_FIELDS order
        records = self._requests(requests)
        for line in lines:
            if line[:1] == b"[":
                continue
            engine_records = self.engine_line(line)
            if engine_records is not None:
                records += engine_records
            elif not self._marker(_decode(line)):
                self.skipped += 1
        return records

    def engine_line(self, line: bytes) -> list[RequestRecord] | None:
        """An engine's own line format (k6's batches): its records, or None when the line is not one."""
        return None

    def _requests(self, lines: list[bytes]) -> list[RequestRecord]:
        """The requests of a poll's array lines. At thousands of lines a second the runner shares the
        cores with the engine, so the lines are decoded as one JSON array and turned into records in one
        pass; only a block with a garbled line (a crash mid-write) is read again line by line."""
        if not lines:
            return []
        try:
            rows = decode_json("[" + b",".join(lines).decode("utf-8") + "]")
            if len(rows) == len(lines):  # else garbled lines joined into other JSON: read them one by one
                return [_fields_record(*row) for row in rows]
        except (ValueError, TypeError):  # UnicodeDecodeError is a ValueError
            pass
        records = []
        for line in lines:
            values = _decode_array(line)
            record = None if values is None else _array_record(values)
            if record is None:
                self.skipped += 1
            else:
                records.append(record)
        return records

    def _marker(self, raw: dict[str, Any] | None) -> bool:
        """Reads a marker line (test start, dropped arrivals); False when the line is not a valid one."""
        if raw is None:
            return False
        try:
            if "test_start" in raw:
                start = float(raw["test_start"])
                self.started_unix = min(start, self.started_unix or start)
                return True
            if "dropped" in raw:
                count, at = int(raw["dropped"]), float(raw["t"])
                self.dropped += count
                self.dropped_times.extend([at] * count)
                return True
            return self._worker_marker(raw)
        except (KeyError, TypeError, ValueError):
            return False
        return False

    def _worker_marker(self, raw: dict[str, Any]) -> bool:
        """A remote Locust worker's clock offset, CPU share or loss, as its master wrote them."""
        if "worker_clock" in raw:
            worker = self._worker(raw["worker_clock"])
            worker["clock_offset_s"] = float(raw["offset_s"])
            worker["clock_rtt_s"] = None if raw.get("rtt_s") is None else float(raw["rtt_s"])
            worker["clock_pings"] = int(raw.get("pings") or 0)
            return True
        if "worker_cpu" in raw:
            share = raw["worker_cpu"]
            if share is not None:
                self._worker(raw["worker"])["samples"].append([float(raw["t"]), float(share)])
            return True
        if "worker_lost" in raw:
            self._worker(raw["worker_lost"])["lost_at"] = float(raw["t"])
            return True
        if "worker_mismatch" in raw:  # its compiled script was not the master's
            self._worker(raw["worker_mismatch"])["other_script"] = str(raw["script"])
            return True
        return False

    def _worker(self, worker: Any) -> dict[str, Any]:
        return self.workers.setdefault(str(worker), {"samples": [], "lost_at": None})


def _last_sequences(paths: list[Path]) -> dict[str, int]:
    """The newest file's sequence number of each rotating runtime (process)."""
    last: dict[str, int] = {}
    for path in paths:
        if (key := rotated_key(path)) is not None:
            last[key[0]] = max(last.get(key[0], 0), key[1])
    return last


RECORD_FIELDS = (
    "t",
    "intended",
    "name",
    "stage",
    "status",
    "ok",
    "error",
    "latency",
    "ttfb",
    "ttft",
    "itl",
    "tokens",
    "bytes",
    "users",
    "code",
    "message",
)  # fmt: skip  -- the runtimes' record fields; a test keeps the three in step. A runtime writes the
#   last two only on a failure without a response: a success's line ends at `users`


def _fields_record(
    t: Any,
    intended: Any,
    name: Any,
    stage: Any,
    status: Any,
    ok: Any,
    error: Any,
    latency: Any,
    ttfb: Any,
    ttft: Any,
    itl: Any,
    tokens: Any,
    nbytes: Any,
    users: Any,
    code: Any = None,
    message: Any = None,
) -> RequestRecord:
    """A record from its fields in RECORD_FIELDS order, the last two optional (TypeError or ValueError
    when malformed)."""
    return RequestRecord(
        float(t), str(name), str(stage or ""), int(status), bool(ok), error, float(latency), intended,
        ttfb, ttft, tuple(itl) if itl is not None else None, tokens, int(nbytes or 0), users,
        None if code is None else str(code), None if message is None else str(message),
    )  # fmt: skip


def _array_record(values: list[Any]) -> RequestRecord | None:
    try:
        return _fields_record(*values)
    except (TypeError, ValueError):
        return None
