"""Record readers: incremental polling, partial and garbled lines, k6's dropped iterations, error kinds."""

from __future__ import annotations

import ast
import base64
import http.server
import json
import struct
import threading
import time
from pathlib import Path

import pytest

from scenariokit.engines.k6.reader import K6RecordReader
from scenariokit.engines.records import RECORD_FIELDS, RecordLinesReader, RequestRecord


def locust_fields(t: float, name: str = "a", **extra: object) -> dict[str, object]:
    raw = {"t": t, "intended": None, "name": name, "stage": "ramp", "status": 200, "ok": True, "error": None}
    raw |= {"latency": 0.1, "ttfb": 0.01, "ttft": None, "itl": None, "tokens": None, "bytes": 10, "users": 5}
    raw |= {"code": None, "message": None}
    return raw | extra


def locust_line(t: float, name: str = "a", **extra: object) -> str:
    """The runtime's line: a JSON array in RECORD_FIELDS order."""
    return json.dumps(list(locust_fields(t, name, **extra).values())) + "\n"


def test_an_object_line_that_is_no_marker_is_skipped_and_counted(tmp_path: Path) -> None:
    append(tmp_path / "records-1.jsonl", json.dumps(locust_fields(1.0, itl=[0.5], tokens=2)) + "\n")
    append(tmp_path / "records-1.jsonl", locust_line(2.0, itl=[0.5], tokens=2))
    reader = RecordLinesReader(tmp_path)
    (record,) = reader.poll()
    assert record.t == 2.0 and record.itl == (0.5,) and record.tokens == 2 and reader.skipped == 1


def test_reader_and_runtime_agree_on_the_record_fields() -> None:
    runtime = (
        Path(__file__).parent.parent / "src/scenariokit/engines/locust/files/scenariokit_locust_runtime.py"
    ).read_text()
    (assignment,) = [
        node
        for node in ast.parse(runtime).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "RECORD_FIELDS"
    ]
    assert ast.literal_eval(assignment.value) == RECORD_FIELDS == tuple(locust_fields(0.0))


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def test_locust_poll_returns_only_new_complete_lines(tmp_path: Path) -> None:
    reader = RecordLinesReader(tmp_path)
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
    reader = RecordLinesReader(tmp_path)
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
    records = RecordLinesReader(tmp_path)
    got = records.poll()
    assert [r.t for r in got] == [4.0] and got[0].itl == (0.01, 0.02)
    assert records.skipped == 6  # merged line, bad bytes, bad latency, non-object, two incomplete


def k6_batch(outcomes: list[list[object]], *records: tuple[float, ...], f64: str | None = None) -> str:
    """The k6 runtime's line: a VU's outcome table, then four numbers per request (ms), as base64 of
    little-endian float64s (or `f64` as given)."""
    numbers = [x for r in records for x in r]
    encoded = base64.b64encode(struct.pack(f"<{len(numbers)}d", *numbers)).decode() if f64 is None else f64
    return json.dumps({"outcomes": outcomes, "f64": encoded}) + "\n"


OK_HOLD = ["ocr", "hold", 200, True, None]
TIMEOUT_SPIKE = ["ocr", "spike", 0, False, "timeout"]


def test_k6_batches_expand_into_records(tmp_path: Path) -> None:
    path = tmp_path / "records-k6.jsonl"
    append(path, '{"test_start":100.25}\n' + k6_batch([OK_HOLD], (100_500, 0, 12.5, 3.25)))
    append(path, '{"test_start":100.25}\n' + k6_batch([OK_HOLD, TIMEOUT_SPIKE], (100_750, 1, 10_000, 0)))
    reader = K6RecordReader(tmp_path)
    first, second = reader.poll()
    assert first == RequestRecord(100.5, "ocr", "hold", 200, True, None, 0.0125, ttfb=0.00325)
    assert second == RequestRecord(100.75, "ocr", "spike", 0, False, "timeout", 10.0, ttfb=0.0)
    assert reader.started_unix == 100.25 and reader.skipped == 0
    assert reader.dropped == 0 and reader.dropped_times == []  # no API, no summary yet


def test_k6_failures_carry_the_engines_code_and_message(tmp_path: Path) -> None:
    """A failure without a response has a row of its own per code, with the first message seen."""
    refused = ["ocr", "hold", 0, False, "connection_refused", 1212, "dial: connection refused"]
    path = tmp_path / "records-k6.jsonl"
    append(path, k6_batch([OK_HOLD, refused], (1_000, 1, 2, 0), (1_100, 0, 2, 1), (1_200, 1, 3, 0)))
    first, ok, again = K6RecordReader(tmp_path).poll()
    assert first == again._replace(t=1.0, latency=0.002)
    assert (first.error_kind, first.code, first.message) == (
        "connection_refused",
        "1212",
        "dial: connection refused",
    )
    assert (ok.code, ok.message) == (None, None)


def test_locust_failures_carry_the_engines_code_and_message(tmp_path: Path) -> None:
    """A success's array ends at users; a failure the client raised adds its class and message."""
    failed = locust_fields(1.0, status=0, ok=False, error="timeout", code="RetriesExceeded", message="t/o")
    append(tmp_path / "records-1.jsonl", json.dumps(list(failed.values())) + "\n")
    success = list(locust_fields(2.0).values())[:-2]  # as the runtime writes it
    append(tmp_path / "records-1.jsonl", json.dumps(success) + "\n")
    failure, ok = RecordLinesReader(tmp_path).poll()
    assert (failure.error_kind, failure.code, failure.message) == ("timeout", "RetriesExceeded", "t/o")
    assert ok.ok and (ok.code, ok.message) == (None, None)


def test_k6_malformed_batches_are_skipped_whole_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "records-k6.jsonl"
    append(path, k6_batch([OK_HOLD], (1_000, 0, 1, 1), (2_000, 0, 1)))  # not four numbers a request
    append(path, k6_batch([OK_HOLD], (1_000, 1, 1, 1)))  # an outcome it does not have
    append(path, k6_batch([OK_HOLD], (1_000, -1, 1, 1)))  # a negative index would pick the last
    append(path, k6_batch([OK_HOLD], (1_000, 0.5, 1, 1)))  # an index that is not whole
    append(path, k6_batch([OK_HOLD], f64="AAAA*AAAAAA="))  # not base64
    append(path, k6_batch([["ocr", "hold", 200]], (1_000, 0, 1, 1)))  # an outcome missing fields
    append(path, k6_batch([OK_HOLD], (1_000, 0, 1, 1))[:40] + "\n")  # cut short
    append(path, k6_batch([OK_HOLD], (3_000, 0, 1, 1)))
    reader = K6RecordReader(tmp_path)
    assert [r.t for r in reader.poll()] == [3.0] and reader.skipped == 7


class FakeK6Api:
    """k6's REST API answer for /v1/metrics/dropped_iterations (404 until the first drop), on loopback."""

    def __init__(self) -> None:
        self.count: int | None = None
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                assert self.path == "/v1/metrics/dropped_iterations"
                if api.count is None:
                    self.send_error(404)
                    return
                sample = {"count": api.count, "rate": 1.0}
                attributes = {"type": "counter", "sample": sample}
                body = {"data": {"id": "dropped_iterations", "attributes": attributes}}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_k6_dropped_iterations_from_the_api_then_the_summary(tmp_path: Path) -> None:
    api = FakeK6Api()
    try:
        reader = K6RecordReader(tmp_path, api.address)
        before = time.time()
        reader.poll()
        assert reader.dropped == 0  # 404: none dropped yet
        api.count = 3
        reader.poll()
        seen = time.time()
        assert reader.dropped == 3 and len(reader.dropped_times) == 3
        assert all(before <= t <= seen for t in reader.dropped_times)  # dated at the poll
    finally:
        api.stop()
    reader.poll()  # k6 has exited: no answer, no summary yet
    assert reader.dropped == 3
    summary = {"metrics": {"dropped_iterations": {"count": 5, "rate": 1.0}, "http_reqs": {"count": 9}}}
    (tmp_path / "k6-summary.json").write_text(json.dumps(summary))
    reader.poll()
    # the two the API had not shown are dated at the last poll that reached k6
    assert reader.dropped == 5 and reader.dropped_times[3:] == [reader.dropped_times[2]] * 2
    (tmp_path / "k6-summary.json").write_text(json.dumps(summary | {"metrics": {}}))
    reader.poll()
    assert reader.dropped == 5  # the summary's count is final


def test_k6_summary_without_drops_and_a_partial_summary(tmp_path: Path) -> None:
    reader = K6RecordReader(tmp_path)
    (tmp_path / "k6-summary.json").write_text('{"metrics": {"http_re')  # k6 mid-write
    reader.poll()
    assert reader.dropped == 0
    (tmp_path / "k6-summary.json").write_text('{"metrics": {"http_reqs": {"count": 4}}}')
    reader.poll()
    assert reader.dropped == 0 and reader.dropped_times == []


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


def test_parquet_parts_from_before_code_and_message_still_load(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scenariokit.results.store import SCHEMA, RecordStore, load_records

    store = RecordStore(tmp_path)
    failure = RequestRecord(1.0, "a", "", 0, False, "timeout", 0.3, code="1050", message="request timeout")
    store.append([failure])
    store.close()
    old_schema = pa.schema([f for f in SCHEMA if f.name not in ("code", "message")])
    fields = {"t": 3.0, "name": "b", "stage": "", "status": 200, "ok": True, "latency": 0.1, "bytes": 0}
    columns = {f.name: [fields.get(f.name)] for f in old_schema}
    pq.write_table(pa.table(columns, schema=old_schema), tmp_path / "records" / "part-00000.parquet")
    old, new = load_records(tmp_path)
    assert old == RequestRecord(3.0, "b", "", 200, True, None, 0.1)  # code and message: None
    assert new == failure
