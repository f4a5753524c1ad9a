"""One normalized per-request record, and incremental readers for each engine's raw output.

Readers are polled while the engine runs: each poll returns only the complete lines written since the
last one (a partial last line waits for the next poll), so a crash loses at most the engine's unflushed
buffer. A garbled line (a crash mid-write) is skipped and counted, never fatal.
"""

from __future__ import annotations

import json
import math
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
        if self.intended is None:
            return self.latency
        return max(self.latency, self.end - self.intended)  # a request sent early is not faster

    @property
    def schedule_delay(self) -> float | None:
        """Open model: how late the request left (start - intended), never negative."""
        return None if self.intended is None else max(0.0, self.t - self.intended)

    @property
    def tpot(self) -> float | None:
        """vLLM's definition: (e2e - TTFT) / (output tokens - 1)."""
        if self.ttft is None or not self.tokens or self.tokens < 2:
            return None
        return (self.latency - self.ttft) / (self.tokens - 1)

    @property
    def error_kind(self) -> str | None:
        """The error taxonomy (None on success): HTTP errors by class and code, the rest by kind.

        connection_refused, connection_reset, timeout, http_4xx:<code>, http_5xx:<code>, wrong_answer,
        bad_stream, dropped, other. Anything an engine names outside that list is `other`.
        """
        if self.ok and self.error is None:
            return None
        error = self.error or (f"http_{self.status}" if self.status >= 400 else "other")
        code = error.removeprefix("http_")
        if error.startswith("http_") and code.isdigit() and len(code) == 3:
            return f"http_{code[0]}xx:{code}" if code[0] in "45" else "other"
        return error if error in ERROR_KINDS else "other"


ERROR_KINDS = frozenset(
    {"connection_refused", "connection_reset", "timeout", "wrong_answer", "bad_stream", "dropped"}
)


class _LineTail:
    """Complete new lines appended to one file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def new_lines(self) -> list[bytes]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        return [line for line in data[: end + 1].split(b"\n") if line.strip()]


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:  # includes a line cut mid-UTF-8 sequence
        return None
    return value if isinstance(value, dict) else None


def _seconds(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"not a duration: {value!r}")
    return number


def _optional_seconds(value: Any) -> float | None:
    return None if value is None else _seconds(value)


class LocustRecordReader:
    """Reads the `records-<pid>.jsonl` files the Locust runtime writes (one per Locust process).

    Besides request lines, the runtime writes `{"test_start": unix s}` once (kept in `started_unix`, the
    origin of stage windows) and `{"dropped": n, "t": intended unix s, "stage": label}` per arrival no user
    could start (counted in `dropped`, their times in `dropped_times`; never a record: it was not sent).
    """

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)
        self.tails: dict[Path, _LineTail] = {}
        self.skipped = 0
        self.dropped = 0
        self.dropped_times: list[float] = []
        self.started_unix: float | None = None

    def poll(self) -> list[RequestRecord]:
        """Records from the complete lines appended to any records file since the last poll."""
        for path in sorted(self.results_dir.glob("records-*.jsonl")):
            self.tails.setdefault(path, _LineTail(path))
        records = []
        for tail in self.tails.values():
            for line in tail.new_lines():
                record = self._line(line)
                if record is not None:
                    records.append(record)
        return records

    def _line(self, line: bytes) -> RequestRecord | None:
        raw = _decode(line)
        try:
            if raw is not None and "test_start" in raw:
                start = float(raw["test_start"])
                self.started_unix = min(start, self.started_unix or start)
                return None
            if raw is not None and "dropped" in raw:
                count, at = int(raw["dropped"]), float(raw["t"])
                self.dropped += count
                self.dropped_times.extend([at] * count)
                return None
            if raw is not None:
                return locust_record(raw)
        except (KeyError, TypeError, ValueError):
            pass
        self.skipped += 1
        return None


def locust_record(raw: dict[str, Any]) -> RequestRecord:
    """One record from a Locust runtime line; KeyError/TypeError/ValueError when it is malformed."""
    itl = raw.get("itl")
    tokens = raw.get("tokens")
    intended = raw.get("intended")
    users = raw.get("users")
    return RequestRecord(
        t=float(raw["t"]),
        name=str(raw["name"]),
        stage=str(raw.get("stage") or ""),
        status=int(raw["status"]),
        ok=bool(raw["ok"]),
        error=None if raw.get("error") is None else str(raw["error"]),
        latency=_seconds(raw["latency"]),
        intended=None if intended is None else float(intended),
        ttfb=_optional_seconds(raw.get("ttfb")),
        ttft=_optional_seconds(raw.get("ttft")),
        itl=None if itl is None else tuple(_seconds(v) for v in itl),
        tokens=None if tokens is None else int(tokens),
        bytes=int(raw.get("bytes") or 0),
        users=None if users is None else float(users),
    )


def k6_time(text: str) -> float:
    """Unix seconds from k6's RFC 3339 times, keeping the nanoseconds Python's parser would cut."""
    head, _, rest = text.partition(".")
    fraction = "".join(c for c in rest if c.isdigit())
    zone = rest[len(fraction) :] if rest else text[len(head) :]
    stamp = datetime.fromisoformat(head + (zone.replace("Z", "+00:00") or "+00:00"))
    return stamp.timestamp() + (float("0." + fraction) if fraction else 0.0)


def _join_key(data: dict[str, Any]) -> tuple[Any, ...]:
    """What ties a request's sk_ttfb point to its sk_latency point.

    The runtime sets point metadata `request_id` (unique per request); k6 stamps each point when it is
    added, so times differ by microseconds. Without the id, fall back to identical time and tags.
    """
    request_id = (data.get("metadata") or {}).get("request_id")
    if request_id is not None:
        return ("id", str(request_id))
    return ("time", data.get("time"), tuple(sorted((data.get("tags") or {}).items())))


class K6RecordReader:
    """Rebuilds records from the `sk_latency` / `sk_ttfb` points of `k6 run --out json=FILE`.

    One record per sk_latency point: a point's time is when the response was judged, so the request
    started `value` ms earlier; ok means an empty `error` tag. The sk_ttfb point of the same request
    (same `request_id` metadata) gives ttfb; both usually arrive in one flush, in either order. A ttfb
    point that arrives in a later poll than its latency point cannot be attached (the record is already
    out): it is counted in `late_ttfb`. `dropped_iterations` points are arrivals k6 could not start.
    """

    def __init__(self, json_path: Path) -> None:
        self.tail = _LineTail(Path(json_path))
        self.skipped = 0
        self.dropped = 0
        self.dropped_times: list[float] = []
        self.late_ttfb = 0
        self.started_unix: float | None = None  # the earliest `vus` point: k6 samples it from t=0
        self._ttfb: dict[tuple[Any, ...], float] = {}
        self._without_ttfb: set[tuple[Any, ...]] = set()

    def poll(self) -> list[RequestRecord]:
        points = []
        for line in self.tail.new_lines():
            raw = _decode(line)
            if raw is None:
                self.skipped += 1
            elif raw.get("type") == "Point" and isinstance(raw.get("data"), dict):
                points.append((raw.get("metric"), raw["data"]))
        for metric, data in points:
            self._note(metric, data)
        records = []
        for metric, data in points:
            if metric == "sk_latency":
                record = self._record(data)
                if record is None:
                    self.skipped += 1
                else:
                    records.append(record)
        return records

    def _note(self, metric: Any, data: dict[str, Any]) -> None:
        """Everything but sk_latency: ttfb for the join, dropped arrivals, the test's start."""
        try:
            if metric == "sk_ttfb":
                key = _join_key(data)
                if key in self._without_ttfb:
                    self._without_ttfb.discard(key)
                    self.late_ttfb += 1
                else:
                    self._ttfb[key] = _seconds(data["value"]) / 1000
            elif metric == "dropped_iterations":
                count = int(data.get("value") or 0)
                self.dropped += count
                self.dropped_times.extend([k6_time(data["time"])] * count)
            elif metric in ("vus", "vus_max") and "time" in data:
                at = k6_time(data["time"])
                self.started_unix = min(at, self.started_unix or at)
        except (KeyError, TypeError, ValueError):
            self.skipped += 1

    def _record(self, data: dict[str, Any]) -> RequestRecord | None:
        try:
            tags = data.get("tags") or {}
            latency = _seconds(data["value"]) / 1000
            end = k6_time(data["time"])
            error = str(tags.get("error") or "") or None
            key = _join_key(data)
            ttfb = self._ttfb.pop(key, None)
            if ttfb is None:
                self._without_ttfb.add(key)
            return RequestRecord(
                t=end - latency,
                name=str(tags.get("name", "")),
                stage=str(tags.get("stage", "")),
                status=int(tags.get("status") or 0),
                ok=error is None,
                error=error,
                latency=latency,
                ttfb=ttfb,
            )
        except (KeyError, TypeError, ValueError):
            return None
