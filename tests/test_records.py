"""Record readers: incremental polling, partial and garbled lines, the k6 ttfb join, the error taxonomy."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scenariokit.records import (
    K6_LATENCY_LINE,
    LOCUST_RECORD_FIELDS,
    K6RecordReader,
    LocustRecordReader,
    RequestRecord,
)


def locust_fields(t: float, name: str = "a", **extra: object) -> dict[str, object]:
    raw = {"t": t, "intended": None, "name": name, "stage": "ramp", "status": 200, "ok": True, "error": None}
    raw |= {"latency": 0.1, "ttfb": 0.01, "ttft": None, "itl": None, "tokens": None, "bytes": 10, "users": 5}
    return raw | extra


def locust_line(t: float, name: str = "a", **extra: object) -> str:
    """The runtime's line: a JSON array in RECORD_FIELDS order."""
    return json.dumps(list(locust_fields(t, name, **extra).values())) + "\n"


def test_locust_reads_object_lines_of_older_runtimes(tmp_path: Path) -> None:
    append(tmp_path / "records-1.jsonl", json.dumps(locust_fields(1.0, itl=[0.5], tokens=2)) + "\n")
    (record,) = LocustRecordReader(tmp_path).poll()
    assert record.t == 1.0 and record.itl == (0.5,) and record.tokens == 2


def test_reader_and_runtime_agree_on_the_record_fields() -> None:
    runtime = (
        Path(__file__).parent.parent / "backends" / "locust" / "scenariokit_locust_runtime.py"
    ).read_text()
    (assignment,) = [
        node
        for node in ast.parse(runtime).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "RECORD_FIELDS"
    ]
    assert ast.literal_eval(assignment.value) == LOCUST_RECORD_FIELDS == tuple(locust_fields(0.0))


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def test_locust_poll_returns_only_new_complete_lines(tmp_path: Path) -> None:
    reader = LocustRecordReader(tmp_path)
    assert reader.poll() == []  # no file yet
    path = tmp_path / "records-11.jsonl"
    append(path, locust_line(1.0) + locust_line(2.0))
    assert [r.t for r in reader.poll()] == [1.0, 2.0]
    assert reader.poll() == []
    line = locust_line(3.0)
    append(path, line[:20])  # the engine is mid-write
    assert reader.poll() == []
    append(path, line[20:])
    assert [r.t for r in reader.poll()] == [3.0]


def test_locust_reads_every_process_file_and_its_markers(tmp_path: Path) -> None:
    append(tmp_path / "records-1.jsonl", '{"test_start": 100.5}\n' + locust_line(101.0))
    append(tmp_path / "records-2.jsonl", '{"test_start": 100.0}\n{"dropped": 2, "t": 101.5, "stage": "x"}\n')
    reader = LocustRecordReader(tmp_path)
    assert len(reader.poll()) == 1
    assert reader.started_unix == 100.0 and reader.dropped == 2 and reader.dropped_times == [101.5, 101.5]
    append(tmp_path / "records-3.jsonl", locust_line(102.0))  # a process that appears later
    assert [r.t for r in reader.poll()] == [102.0]


def test_locust_garbled_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "records-1.jsonl"
    crashed = locust_line(1.0)[:30]  # a crashed process, then a restart appending to the same file
    append(path, crashed + locust_line(2.0) + "\n" + b"\xff\xfe".decode("latin-1") + "\n")
    append(path, locust_line(3.0, latency="x") + locust_line(4.0, itl=[0.01, 0.02], tokens=3) + "[1]\n")
    append(path, '{"dropped": 1}\n{"t": 5.0}\n')  # a marker and a record missing their fields
    records = LocustRecordReader(tmp_path)
    got = records.poll()
    assert [r.t for r in got] == [4.0] and got[0].itl == (0.01, 0.02)
    assert records.skipped == 6  # merged line, bad bytes, bad latency, non-object, two incomplete


def k6_point(metric: str, value: float, time: str, ttfb: float | None = None, **tags: str) -> str:
    data: dict[str, object] = {"time": time, "value": value, "tags": tags}
    if ttfb is not None:
        data["metadata"] = {"ttfb": str(ttfb)}  # k6 writes metadata values as strings
    return json.dumps({"type": "Point", "metric": metric, "data": data}) + "\n"


T0 = datetime(2026, 11, 25, 2, 30, tzinfo=UTC).timestamp()
TAGS = {"name": "identify", "stage": "ramp", "status": "200", "error": ""}


def test_k6_reads_one_point_per_request_with_its_ttfb(tmp_path: Path) -> None:
    path = tmp_path / "k6.json"
    append(path, json.dumps({"type": "Metric", "metric": "sk_latency", "data": {"type": "trend"}}) + "\n")
    append(path, k6_point("vus", 1, "2026-11-25T02:30:00Z"))
    append(path, k6_point("sk_latency", 12.5, "2026-11-25T02:30:01.000001Z", 5.0, **TAGS))
    append(path, k6_point("sk_ttfb", 5.0, "2026-11-25T02:30:01.000002Z", **TAGS))  # a threshold's: unread
    append(path, k6_point("sk_latency", 20.0, "2026-11-25T02:30:02.5Z", 19.0, **TAGS | {"error": "http_503"}))
    append(path, k6_point("dropped_iterations", 2, "2026-11-25T02:30:03Z"))
    reader = K6RecordReader(path)
    first, second = reader.poll()
    assert first.ttfb == pytest.approx(0.005) and first.latency == pytest.approx(0.0125) and first.ok
    assert first.t == pytest.approx(T0 + 1.000001 - 0.0125, abs=1e-6)
    assert second.ttfb == pytest.approx(0.019) and not second.ok and second.error_kind == "http_5xx:503"
    assert reader.dropped == 2 and len(reader.dropped_times) == 2 and reader.started_unix == T0


def test_k6_point_without_ttfb_metadata_has_no_ttfb(tmp_path: Path) -> None:
    path = tmp_path / "k6.json"
    append(path, k6_point("sk_latency", 10.0, "2026-11-25T02:30:01Z", **TAGS))
    (record,) = K6RecordReader(path).poll()
    assert record.ttfb is None and record.latency == pytest.approx(0.01)


def k6_line(metric: str, value: float, time: str, tags: dict[str, str], **metadata: str) -> str:
    """A point exactly as k6's JSON output writes it: compact, `metric` first."""
    data: dict[str, object] = {"time": time, "value": value, "tags": tags}
    if metadata:
        data["metadata"] = metadata
    return json.dumps({"metric": metric, "type": "Point", "data": data}, separators=(",", ":")) + "\n"


def test_k6_lines_as_k6_writes_them_read_as_decoding_them_would(tmp_path: Path) -> None:
    points = [
        ("http_req_duration", 1.0, "2026-11-25T02:30:01.5Z", {"status": "200"}, {}),
        ("sk_latency", 12.5, "2026-11-25T02:30:01.000001Z", TAGS, {"ttfb": "5"}),
        ("sk_latency", 20.0, "2026-11-25T02:30:02Z", TAGS | {"error": "http_503", "status": "503"}, {}),
        ("sk_latency", 3.0, "2026-11-25T04:30:02.25+02:00", TAGS, {"ttfb": "1.25"}),  # not UTC
        ("sk_latency", 4.0, "2026-11-25T02:30:03.5Z", TAGS | {"name": 'say "hi" {x}'}, {"ttfb": "2"}),
        ("sk_latency", 5.0, "2026-11-25T02:30:04.123456789Z", TAGS | {"stage": "spike"}, {"ttfb": "1e-3"}),
        ("vus", 1, "2026-11-25T02:30:00Z", {}, {}),
    ]
    as_k6 = "".join(k6_line(m, v, at, tags, **meta) for m, v, at, tags, meta in points)
    declared = json.dumps({"type": "Metric", "data": {"name": "sk_latency"}, "metric": "sk_latency"}) + "\n"
    decoded = K6RecordReader(tmp_path / "decoded.json")
    read = K6RecordReader(tmp_path / "k6.json")
    expected, got = [], []
    for block in (as_k6, declared + as_k6):  # k6's lines alone, then with a line of another kind
        append(decoded.tail.path, "".join(k6_point(m, v, at, **tags) for m, v, at, tags, _ in points[:1]))
        for m, v, at, tags, meta in points[1:]:
            data = {"time": at, "value": v, "tags": tags} | ({"metadata": meta} if meta else {})
            append(decoded.tail.path, json.dumps({"type": "Point", "metric": m, "data": data}) + "\n")
        append(read.tail.path, block)
        expected += decoded.poll()
        got += read.poll()
    assert got == expected and len(got) == 10 and read.skipped == decoded.skipped == 0
    assert got[3].name == 'say "hi" {x}' and got[2].t == pytest.approx(T0 + 2.25 - 0.003)
    # three of them read without json.loads, the non-UTC time and the braces in a tag decoded
    assert sum(K6_LATENCY_LINE.fullmatch(line.encode()) is not None for line in as_k6.splitlines()) == 3
    assert read.started_unix == decoded.started_unix == T0


def test_k6_partial_and_garbled_lines(tmp_path: Path) -> None:
    path = tmp_path / "k6.json"
    line = k6_point("sk_latency", 10.0, "2026-11-25T02:30:01Z", 4.0, **TAGS)
    append(path, '{"type":"Point","metric":"sk_lat\n' + line[:25])
    reader = K6RecordReader(path)
    assert reader.poll() == [] and reader.skipped == 1
    append(path, line[25:] + k6_point("sk_latency", "x", "2026-11-25T02:30:01Z", 4.0, **TAGS))  # type: ignore[arg-type]
    assert len(reader.poll()) == 1 and reader.skipped == 2


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (None, 200, None),
        ("http_404", 404, "http_4xx:404"),
        ("http_503", 503, "http_5xx:503"),
        ("connection_refused", 0, "connection_refused"),
        ("timeout", 0, "timeout"),
        ("wrong_answer", 200, "wrong_answer"),
        ("bad_stream", 200, "bad_stream"),
        ("other:SSLError", 0, "other"),
        ("other", 0, "other"),
        ("something_new", 0, "other"),
        ("http_302", 302, "other"),
    ],
)
def test_error_taxonomy(error: str | None, status: int, kind: str | None) -> None:
    record = RequestRecord(0.0, "a", "s", status, error is None, error, 0.1)
    assert record.error_kind == kind


def test_k6_scenario_start_marker_beats_the_late_vus_point(tmp_path: Path) -> None:
    # k6 writes its first `vus` point about a second in; the runtime's marker holds the real start
    path = tmp_path / "k6.json"
    append(path, k6_point("vus", 1, "2026-11-25T02:30:01Z"))
    append(path, k6_point("sk_since_start", 50.0, "2026-11-25T02:30:00.3Z"))  # first VU: 50 ms in
    append(path, k6_point("sk_since_start", 151.0, "2026-11-25T02:30:00.4Z"))  # a later VU
    reader = K6RecordReader(path)
    assert reader.poll() == [] and reader.started_unix == pytest.approx(T0 + 0.249, abs=1e-4)
