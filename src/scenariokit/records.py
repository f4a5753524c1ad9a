"""One normalized per-request record, and incremental readers for each engine's raw output.

Readers are polled while the engine runs: each poll returns only the complete lines written since the
last one (a partial last line waits for the next poll), so a crash loses at most the engine's unflushed
buffer. A garbled line (a crash mid-write) is skipped and counted, never fatal.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RequestRecord:
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


class LocustRecordReader:
    """Reads `records-<pid>.jsonl` files written by the Locust runtime (one per Locust process)."""

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
        records = []
        for tail in self.tails.values():
            for line in tail.new_lines():
                if line[:1] == b"[":  # a request (the runtime's RECORD_FIELDS order)
                    values = _decode_array(line)
                    record = None if values is None else _locust_array_record(values)
                else:  # a marker, or a request as an object (older runtimes)
                    raw = _decode(line)
                    record = None if raw is None else self._line(raw)
                if isinstance(record, RequestRecord):
                    records.append(record)
                elif record is None:
                    self.skipped += 1
        return records

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
        return _locust_record(raw)


LOCUST_RECORD_FIELDS = (
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
)  # fmt: skip  -- the runtime's RECORD_FIELDS; a test keeps the two in step


def _locust_array_record(values: list[Any]) -> RequestRecord | None:
    if len(values) != len(LOCUST_RECORD_FIELDS):
        return None
    t, intended, name, stage, status, ok, error, latency, ttfb, ttft, itl, tokens, nbytes, users = values
    try:
        return RequestRecord(
            float(t), str(name), str(stage or ""), int(status), bool(ok), error, float(latency), intended,
            ttfb, ttft, tuple(itl) if itl is not None else None, tokens, int(nbytes or 0), users,
        )  # fmt: skip
    except (TypeError, ValueError):
        return None


def _locust_record(raw: dict[str, Any]) -> RequestRecord | None:
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


@functools.lru_cache(maxsize=256)
def _k6_second(text: bytes) -> float:
    """Unix seconds of a whole UTC second `YYYY-MM-DDTHH:MM:SS` (k6 stamps thousands of points in each)."""
    return datetime.fromisoformat(text.decode() + "+00:00").timestamp()


def _k6_time(text: str) -> float:
    """k6 writes RFC 3339 times with up to nine fraction digits (none on a whole second); Python parses
    microseconds, so the fraction is added apart."""
    match = re.fullmatch(r"([^.]+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    head, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(head + ("+00:00" if zone in (None, "Z") else zone))
    return stamp.timestamp() + (float("0." + fraction) if fraction else 0.0)


# k6 writes about 14 JSON lines per request (every built-in metric); only these are read. Matching the
# metric name before decoding costs a fraction of json.loads on every line (measured: ~190 us/request).
K6_WANTED = re.compile(rb'"metric":\s*"(?:sk_latency|sk_since_start|dropped_iterations|vus|vus_max)"')
# The same lines found in a whole block at once, when every line of it is a point as k6 writes them (its
# JSON output starts each with `{"metric":"`, which JSON text cannot hold inside a string): no per-line
# split and search (k6 writes ~2.4 kB per request; the runner reads them while k6 runs on the same cores).
K6_WANTED_LINE = re.compile(
    rb'\{"metric":"(?:sk_latency|sk_since_start|dropped_iterations|vus|vus_max)"[^\n]*'
)
K6_LINE_START = b'{"metric":"'
# An sk_latency point exactly as k6's JSON output writes it (Go's encoder: fixed key order, no spaces, UTC
# times), with no brace or backslash in its tags and metadata, so that their pairs are plain "key":"value".
# Such a line is read without json.loads (a quarter of the time); any other goes through it.
K6_LATENCY_LINE = re.compile(
    rb'\{"metric":"sk_latency","type":"Point","data":\{"time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z",'
    rb'"value":([-+.0-9eE]+),"tags":\{([^{}\\]*)\}(?:,"metadata":\{([^{}\\]*)\})?\}\}'
)
K6_PAIR = re.compile(rb'"([^"]*)":"([^"]*)"')


class K6RecordReader:
    """Rebuilds records from the `sk_latency` points of `k6 run --out json=FILE`: one point per request,
    its ttfb in the point's metadata (the runtime's metrics contract)."""

    def __init__(self, json_path: Path) -> None:
        self.tail = _LineTail(json_path)
        self.skipped = 0
        self.dropped = 0
        self.dropped_times: list[float] = []
        self._scenario_start: float | None = None  # from the runtime's sk_since_start points
        self._first_vus_point: float | None = None  # fallback: k6 writes its first `vus` point ~1 s in
        self._tag_cache: dict[bytes, tuple[str, str, int, str | None]] = {}

    def poll(self) -> list[RequestRecord]:
        records = []
        for line in self._wanted_lines(self.tail.new_data()):
            match = K6_LATENCY_LINE.fullmatch(line)
            if match is not None:
                record = self._fast_record(match)
                if record is not None:
                    records.append(record)
                    continue
            raw = _decode(line)
            if raw is None:
                self.skipped += 1
                continue
            if raw.get("type") != "Point":
                continue
            metric, data = raw.get("metric"), raw.get("data") or {}
            if metric == "sk_latency":
                record = _k6_record(data)
                if record is None:
                    self.skipped += 1
                else:
                    records.append(record)
            elif metric == "dropped_iterations":
                count = int(data.get("value") or 0)
                self.dropped += count
                self.dropped_times.extend([_k6_time(data["time"])] * count)
            else:
                self._note_start(metric, data)
        return records

    @staticmethod
    def _wanted_lines(data: bytes) -> list[bytes]:
        """The lines of a block that may matter: points of the metrics read, and anything not a point line
        as k6 writes it (metric declarations, garbled lines: decoded, so a garbled one is counted)."""
        # as many line starts as lines, the first at the start: one per line (bar a line with none and a
        # garbled one with two in the same block, which would be read as its second point)
        if data.startswith(K6_LINE_START) and data.count(K6_LINE_START) == data.count(b"\n"):
            return K6_WANTED_LINE.findall(data)
        return [
            line
            for line in data.split(b"\n")
            if line.strip() and not (line.startswith(b'{"metric":') and K6_WANTED.search(line) is None)
        ]

    def _fast_record(self, match: re.Match[bytes]) -> RequestRecord | None:
        """A record from a K6_LATENCY_LINE match; None when its values do not parse (decoded instead)."""
        second, fraction, value, tags, metadata = match.groups()
        try:
            name, stage, status, error = self._tags(tags)
            ttfb = dict(K6_PAIR.findall(metadata)).get(b"ttfb") if metadata else None
            latency = float(value) / 1000
            # k6 stamps a sample when the request ends
            end = _k6_second(second) + (float(fraction) if fraction else 0.0)
            ttfb_s = float(ttfb) / 1000 if ttfb is not None else None
            ok = error is None
            return RequestRecord(end - latency, name, stage, status, ok, error, latency, None, ttfb_s)
        except (TypeError, ValueError):
            return None

    def _tags(self, text: bytes) -> tuple[str, str, int, str | None]:
        """(name, stage, status, error) from a point's tags; a run has few distinct tag sets, so cached."""
        found = self._tag_cache.get(text)
        if found is None:
            if len(self._tag_cache) > 10_000:
                self._tag_cache.clear()
            tags = {key.decode(): value.decode() for key, value in K6_PAIR.findall(text)}
            error = tags.get("error") or None
            found = (tags.get("name", ""), tags.get("stage", ""), int(tags.get("status") or 0), error)
            self._tag_cache[text] = found
        return found

    def _note_start(self, metric: str | None, data: dict[str, Any]) -> None:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            if metric == "sk_since_start":
                at = _k6_time(data["time"]) - float(data["value"]) / 1000
                self._scenario_start = min(at, self._scenario_start or at)
            elif metric in ("vus", "vus_max"):
                at = _k6_time(data["time"])
                self._first_vus_point = min(at, self._first_vus_point or at)

    @property
    def started_unix(self) -> float | None:
        """When the scenario started: the origin of stage windows and of every offset in the report."""
        return self._scenario_start or self._first_vus_point


def _k6_record(data: dict[str, Any]) -> RequestRecord | None:
    try:
        tags = data.get("tags") or {}
        latency = float(data["value"]) / 1000
        ttfb = (data.get("metadata") or {}).get("ttfb")
        # k6 stamps a sample when the request ends
        end = _k6_time(data["time"])
        error = tags.get("error") or None
        return RequestRecord(
            t=end - latency,
            name=tags.get("name", ""),
            stage=tags.get("stage", ""),
            status=int(tags.get("status") or 0),
            ok=error is None,
            error=error,
            latency=latency,
            ttfb=float(ttfb) / 1000 if ttfb is not None else None,
        )
    except (KeyError, TypeError, ValueError):
        return None
