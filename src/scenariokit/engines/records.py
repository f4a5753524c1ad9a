"""One normalized per-request record, and incremental readers for each engine's raw output.

Readers are polled while the engine runs: each poll returns only the complete lines written since the
last one (a partial last line waits for the next poll), so a crash loses at most the engine's unflushed
buffer. A garbled line (a crash mid-write) is skipped and counted, never fatal.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np


class RequestRecord(NamedTuple):
    """One request. A named tuple, not a dataclass: the runner makes tens of thousands a second while the
    engine runs beside it on the same cores, and a tuple is built (and turned into columns) several times
    faster."""

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
        """The error taxonomy: connection_refused, connection_reset, timeout, http_4xx:<code>,
        http_5xx:<code>, wrong_answer, bad_stream, other. A name outside the contract is `other`."""
        if self.error is None:
            return None
        code = self.error.removeprefix("http_")
        if self.error.startswith("http_") and len(code) == 3 and code[0] in "45" and code.isdigit():
            return f"http_{code[0]}xx:{code}"
        return self.error if self.error in ERROR_KINDS else "other"


ERROR_KINDS = frozenset({"connection_refused", "connection_reset", "timeout", "wrong_answer", "bad_stream"})


class _LineTail:
    """Complete new lines appended to one file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

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


_DECODE = json.JSONDecoder().decode  # on str: skips json.loads' encoding detection, per line


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _decode_array(line: bytes) -> list[Any] | None:
    try:
        value = _DECODE(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, list) else None


class RecordLinesReader:
    """Reads the `records-*.jsonl` files the engines' runtimes write: one per Locust process
    (`records-<pid>.jsonl`: a JSON array per request in RECORD_FIELDS order), one for k6
    (`records-k6.jsonl`, its console output: a batch line per write, see BATCH_PREFIX), and the marker
    objects both write."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = results_dir
        self.tails: dict[Path, _LineTail] = {}
        self.skipped = 0
        self.dropped = 0
        self.dropped_times: list[float] = []
        self.started_unix: float | None = None  # the engine's test start, from its marker line

    def poll(self) -> list[RequestRecord]:
        for path in sorted(self.results_dir.glob("records-*.jsonl")):
            self.tails.setdefault(path, _LineTail(path))
        records: list[RequestRecord] = []
        for tail in self.tails.values():
            lines = tail.new_lines()
            requests = [line for line in lines if line[:1] == b"["]  # RECORD_FIELDS order
            records += self._requests(requests)
            for line in lines:
                if line.startswith(BATCH_PREFIX):
                    records += self._batch(line)
                elif line[:1] != b"[":  # a marker, or a request as an object (older runtimes)
                    raw = _decode(line)
                    record = None if raw is None else self._line(raw)
                    if isinstance(record, RequestRecord):
                        records.append(record)
                    elif record is None:
                        self.skipped += 1
        return records

    def _requests(self, lines: list[bytes]) -> list[RequestRecord]:
        """The requests of a poll's array lines. At thousands of lines a second the runner shares the
        cores with the engine, so the lines are decoded as one JSON array and turned into records in one
        pass; only a block with a garbled line (a crash mid-write) is read again line by line."""
        if not lines:
            return []
        try:
            rows = _DECODE("[" + b",".join(lines).decode("utf-8") + "]")
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

    def _batch(self, line: bytes) -> list[RequestRecord]:
        """A k6 VU's batch of requests (see BATCH_PREFIX); a malformed batch is skipped whole."""
        try:
            batch = _DECODE(line.decode("utf-8"))
            outcomes = [
                (str(name), str(stage or ""), int(status), bool(ok), None if error is None else str(error))
                for name, stage, status, ok, error in batch["outcomes"]
            ]
            numbers = np.frombuffer(base64.b64decode(batch["f64"], validate=True), dtype="<f8")
            if numbers.size % 4:
                raise ValueError("a batch's numbers come four per request")
            rows = numbers.reshape(-1, 4)
            indices = rows[:, 1].astype(np.int64)
            if indices.size and (indices.min() < 0 or not np.array_equal(indices, rows[:, 1])):
                raise IndexError("an outcome index below zero or not whole")
            starts, latencies, ttfbs = (rows[:, column] / 1000 for column in (0, 2, 3))
            make = RequestRecord._make
            return [
                make((t, *outcomes[o], latency, None, ttfb, None, None, None, 0, None))
                for t, o, latency, ttfb in zip(
                    starts.tolist(), indices.tolist(), latencies.tolist(), ttfbs.tolist(), strict=True
                )
            ]
        except (ValueError, TypeError, KeyError, IndexError):  # binascii.Error and UnicodeDecodeError too
            self.skipped += 1
            return []

    def _line(self, raw: dict[str, Any]) -> RequestRecord | bool | None:
        """A record, True for a marker line (test start, dropped arrivals), None when malformed."""
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
        except (KeyError, TypeError, ValueError):
            return None
        return _object_record(raw)


# k6's runtime writes a VU's requests in batches, each a line
#   {"outcomes": [[name, stage, status, ok, error], ...], "f64": "<base64>"}
# where `f64` is base64 of little-endian float64s, four per request: start (unix ms), its outcome (an
# index into `outcomes`, the VU's table of the fields requests share), latency and time to first byte
# (ms, k6's timings.duration and .waiting).
BATCH_PREFIX = b'{"outcomes":'

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
)  # fmt: skip  -- the runtimes' record fields; a test keeps the three in step


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
) -> RequestRecord:
    """A record from its fields in RECORD_FIELDS order (TypeError or ValueError when malformed)."""
    return RequestRecord(
        float(t), str(name), str(stage or ""), int(status), bool(ok), error, float(latency), intended,
        ttfb, ttft, tuple(itl) if itl is not None else None, tokens, int(nbytes or 0), users,
    )  # fmt: skip


def _array_record(values: list[Any]) -> RequestRecord | None:
    try:
        return _fields_record(*values)
    except (TypeError, ValueError):
        return None


def _object_record(raw: dict[str, Any]) -> RequestRecord | None:
    try:
        return RequestRecord(
            t=float(raw["t"]),
            name=str(raw["name"]),
            stage=str(raw.get("stage") or ""),
            status=int(raw["status"]),
            ok=bool(raw["ok"]),
            error=raw.get("error"),
            latency=float(raw["latency"]),
            intended=raw.get("intended"),
            ttfb=raw.get("ttfb"),
            ttft=raw.get("ttft"),
            itl=tuple(raw["itl"]) if raw.get("itl") is not None else None,
            tokens=raw.get("tokens"),
            bytes=int(raw.get("bytes") or 0),
            users=raw.get("users"),
        )
    except (KeyError, TypeError, ValueError):
        return None


class K6RecordReader(RecordLinesReader):
    """k6's records (`records-k6.jsonl`), and its dropped iterations: k6 counts an open model's arrivals
    that found no free VU in its built-in `dropped_iterations` counter, which VUs cannot see. While k6
    runs, its REST API (`api`, host:port) is asked for the count at each poll, and each increase is dated
    at that poll (so at most a poll interval late); once k6 has written `k6-summary.json` its count is the
    total, and what the API had not shown yet is dated at the last poll that reached k6."""

    def __init__(self, raw_dir: Path, api: str | None = None) -> None:
        super().__init__(raw_dir)
        self.api = api
        self.summary_path = raw_dir / "k6-summary.json"
        self._final = False
        self._last_seen: float | None = None
        self._client: httpx.Client | None = None  # one for the run

    def poll(self) -> list[RequestRecord]:
        records = super().poll()
        if not self._final:
            self._poll_dropped()
        return records

    def _poll_dropped(self) -> None:
        total = self._summary_dropped()
        if total is not None:
            self._final = True
            if self._client is not None:
                self._client.close()
        else:
            total = self._api_dropped()
        if total is not None and total > self.dropped:
            at = self._last_seen if self._last_seen is not None else time.time()
            self.dropped_times.extend([at] * (total - self.dropped))
            self.dropped = total

    def _summary_dropped(self) -> int | None:
        """The total from k6's end-of-test summary; None until k6 has written it whole."""
        try:
            metrics = json.loads(self.summary_path.read_text())["metrics"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        dropped = metrics.get("dropped_iterations") if isinstance(metrics, dict) else None
        return int(dropped.get("count", 0)) if isinstance(dropped, dict) else 0

    def _api_dropped(self) -> int | None:
        """The count so far from k6's REST API (404 until the first drop); None when k6 does not answer."""
        if self.api is None:
            return None
        if self._client is None:
            self._client = httpx.Client(timeout=0.5, trust_env=False, verify=False)  # plain HTTP on loopback
        try:
            response = self._client.get(f"http://{self.api}/v1/metrics/dropped_iterations")
        except httpx.HTTPError:
            return None
        self._last_seen = time.time()
        if response.status_code == 404:
            return 0
        try:
            return int(response.json()["data"]["attributes"]["sample"]["count"])
        except (ValueError, KeyError, TypeError):
            return None
