"""The embedded model server under abuse (issue 15), over real HTTP on loopback against one real server.

A table of hostile requests across the OpenAI and the REST routes, each with the status it must get and a
time limit, after which the server still answers /health and reads a card; bodies refused before they are
read whole; a worker killed mid-request and replaced; a request whose client left never reaching a model;
a request that waited past its budget never reaching a model; gauges back to zero after a mixed burst.

One server (two workers) serves the module, with small limits so the rows stay fast: a 2 MB body cap, 1 s
for a request head, a body and an image fetch to arrive, 1 MB per fetched image. A small HTTP server in a
thread plays the allowed image host (127.0.0.1): a card, a body that never ends, one that drips, a 404.
"""

from __future__ import annotations

import base64
import concurrent.futures
import http.server
import json
import os
import signal
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scenariokit.compile.cards import text_cards
from scenariokit.ports import free_port
from scenariokit_server.app import url_allowed
from scenariokit_server.engine import backoff_s
from scenariokit_server.launcher import ServerHandle, start_server

pytestmark = pytest.mark.engine
CARD = text_cards(2)[1]
BODY_CAP = 2_000_000
REQUEST_TIMEOUT_S = 5.0
SERVER_ARGS = [
    "--admin",
    "--allow-url-host",
    "127.0.0.1",
    "--max-body-bytes",
    str(BODY_CAP),
    "--body-timeout",
    "1",
    "--image-fetch-timeout",
    "1",
    "--image-fetch-bytes",
    "1000000",
    "--request-timeout",
    str(REQUEST_TIMEOUT_S),
    "--head-timeout",
    "1",
    "--keep-alive-timeout",
    "1",
]


# --- images built byte by byte ---------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, idat: bytes) -> bytes:
    """A PNG (8-bit grey) with valid chunk CRCs around whatever IDAT data it is given."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def blank_png(width: int, height: int) -> bytes:
    return png(width, height, zlib.compress((b"\0" + b"\xff" * width) * height, 9))


# 40,000 x 40,000 (1.6 gigapixels) claimed by a file of a few hundred bytes: decoding it would take GBs
BOMB = png(40_000, 40_000, zlib.compress(b"\0" * 40_001 * 4, 9))
CORRUPT = png(64, 64, bytes(range(7, 250)) * 4)  # CRCs valid, the deflate stream is garbage
STRIP = blank_png(1, 100_000)
NO_PIXELS = png(0, 0, zlib.compress(b"", 9))
THIN = blank_png(2, 5000)  # decodes, passes the header checks; OCR cannot resize it (ResizeImgError)


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


def b64(image: bytes) -> str:
    return base64.b64encode(image).decode()


def chat(image_url: str, model: str = "ocr", **extra: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": "Read it."}, {"type": "image_url", "image_url": {"url": image_url}}]
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


# --- the allowed image host ------------------------------------------------------------------------


class ImageHost(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/card.png":
            self.reply(200, CARD.png)
        elif self.path == "/endless.png":  # no Content-Length, never ends: the size cap must stop it
            self.send_response(200)
            self.end_headers()
            self.stream(lambda: b"\0" * 65536, pause_s=0.0)
        elif self.path == "/drip.png":  # a byte every 0.1 s: each read is quick, the whole is not
            self.send_response(200)
            self.end_headers()
            self.stream(lambda: b"\0", pause_s=0.1)
        else:
            self.reply(404, b"no such image")

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, piece: Callable[[], bytes], pause_s: float) -> None:
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                self.wfile.write(piece())
                time.sleep(pause_s)
        except OSError:
            pass  # the model server hung up: that is the point

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ImageHost)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with start_server(workers=2, max_in_flight=2, max_queue=4, extra_args=SERVER_ARGS) as handle:
        yield handle


# --- clients ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


Send = Callable[[ServerHandle, str], Answer]


def post(path: str, body: Any) -> Send:
    def send(server: ServerHandle, host: str) -> Answer:
        payload = body(host) if callable(body) else body
        content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        response = httpx.post(
            server.base_url + path, content=content, headers={"Content-Type": "application/json"}, timeout=30
        )
        return Answer(response.status_code, response.content)

    return send


def get(path: str) -> Send:
    def send(server: ServerHandle, host: str) -> Answer:
        response = httpx.get(server.base_url + path, timeout=30)
        return Answer(response.status_code, response.content)

    return send


def read_answer(sock: socket.socket) -> Answer:
    """One HTTP/1.1 answer read off a raw socket (the server closes the connection after these)."""
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < content_length(data):
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    return Answer(int(head.split()[1]), body)


def content_length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def raw(path: str, headers: str, body: bytes) -> Send:
    """Headers and part of a body over a raw socket, then wait for the answer without sending the rest."""

    def send(server: ServerHandle, host: str) -> Answer:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n\r\n".encode() + body)
            return read_answer(sock)

    return send


def chunked_past_cap(path: str) -> Send:
    """A chunked body that grows past the cap, 64 KB at a time, to exactly one byte over it; the terminating
    chunk is never sent. The server must read every byte sent to see the cap passed, so it closes with
    nothing unread (a close with unread bytes resets the connection, which could lose the answer)."""

    def send(server: ServerHandle, host: str) -> Answer:
        piece, left = 65536, BODY_CAP + 1
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
            while left:
                size = min(piece, left)
                sock.sendall(f"{size:x}\r\n".encode() + b" " * size + b"\r\n")
                left -= size
            return read_answer(sock)

    return send


# --- the table -------------------------------------------------------------------------------------

CHAT, OCR, IDENTIFY, MODERATE = "/v1/chat/completions", "/api/v1/ocr", "/api/v1/identify", "/api/v1/moderate"
GUIDE_OCR, GUIDE_IDENTIFY = "/api/ocr", "/api/identify"
DEEP = b"[" * 100_000 + b"]" * 100_000  # 200 KB: json.loads raises RecursionError
BIG = f"Content-Type: application/json\r\nContent-Length: {64 * 2**20}"  # 64 MB announced, 4 KB sent
SLOW = "Content-Type: application/json\r\nContent-Length: 1000"  # 10 bytes sent, then nothing


@dataclass(frozen=True)
class Row:
    name: str
    send: Send
    status: int
    limit_s: float


ROWS = [
    Row("chat: JSON nested 100,000 deep", post(CHAT, DEEP), 400, 1.0),
    Row(
        "chat: stream_options a string", post(CHAT, chat(data_url(CARD.png), stream_options="yes")), 400, 1.0
    ),
    Row(
        "chat: include_usage not a boolean",
        post(CHAT, chat(data_url(CARD.png), stream=True, stream_options={"include_usage": "x"})),
        400,
        1.0,
    ),
    Row("chat: decompression bomb 40,000 x 40,000", post(CHAT, chat(data_url(BOMB))), 400, 1.0),
    Row("chat: PNG with valid CRCs, corrupt data", post(CHAT, chat(data_url(CORRUPT))), 400, 5.0),
    Row("chat: 1 x 100,000 image", post(CHAT, chat(data_url(STRIP))), 400, 1.0),
    Row("chat: 0 x 0 image", post(CHAT, chat(data_url(NO_PIXELS))), 400, 1.0),
    Row("chat: 2 x 5,000 image OCR cannot resize", post(CHAT, chat(data_url(THIN))), 400, 5.0),
    Row(
        "chat: allowed host, connection refused",
        post(CHAT, chat(f"http://127.0.0.1:{free_port()}/card.png")),
        502,
        2.0,
    ),
    Row("chat: allowed host answers 404", post(CHAT, lambda host: chat(f"{host}/missing.png")), 502, 2.0),
    Row("chat: allowed host sends forever", post(CHAT, lambda host: chat(f"{host}/endless.png")), 400, 3.0),
    Row("chat: allowed host drips", post(CHAT, lambda host: chat(f"{host}/drip.png")), 504, 3.0),
    Row(
        "chat: PPM image (a format not accepted)",
        post(CHAT, chat(data_url(b"P6\n1 1\n255\n\0\0\0"))),
        400,
        1.0,
    ),
    Row("chat: body not UTF-8", post(CHAT, b'{"model": "\xff\xfe"}'), 400, 1.0),
    Row("chat: body JSON null", post(CHAT, b"null"), 400, 1.0),
    Row("chat: 64 MB Content-Length, 4 KB sent", raw(CHAT, BIG, b"{" * 4096), 413, 1.0),
    Row("chat: chunked body growing past the cap", chunked_past_cap(CHAT), 413, 3.0),
    Row("chat: body sent slowly (slowloris)", raw(CHAT, SLOW, b'{"model":"'), 408, 3.0),
    Row("chat: GET", get(CHAT), 405, 1.0),
    Row("models: POST", post("/v1/models", {}), 405, 1.0),
    Row("no such route", get("/v1/nothing"), 404, 1.0),
    Row("ocr: decompression bomb", post(OCR, {"image_base64": b64(BOMB)}), 400, 1.0),
    Row("ocr: corrupt PNG data", post(OCR, {"image_base64": b64(CORRUPT)}), 400, 5.0),
    Row("ocr: JSON nested 100,000 deep", post(OCR, DEEP), 400, 1.0),
    Row("ocr: 64 MB Content-Length, 4 KB sent", raw(OCR, BIG, b"{" * 4096), 413, 1.0),
    Row(
        "identify: allowed host, connection refused",
        post(IDENTIFY, {"image_url": f"http://127.0.0.1:{free_port()}/a.png"}),
        502,
        2.0,
    ),
    Row("identify: image_url a number", post(IDENTIFY, {"image_url": 7}), 400, 1.0),
    Row("moderate: threshold NaN", post(MODERATE, b'{"threshold": NaN, "image_base64": "AA=="}'), 400, 1.0),
    Row("moderate: 0 x 0 image", post(MODERATE, {"image_base64": b64(NO_PIXELS)}), 400, 1.0),
    Row("admin: fault latency infinite", post("/admin/fault", {"latency": "inf"}), 400, 1.0),
    # the reference guide's routes (issue 19): the same handlers, limits and error format
    Row("guide identify: image_url empty", post(GUIDE_IDENTIFY, {"image_url": ""}), 400, 1.0),
    Row("guide identify: wrong field", post(GUIDE_IDENTIFY, {"wrong_field": "test"}), 400, 1.0),
    Row("guide ocr: image_url empty", post(GUIDE_OCR, {"image_url": ""}), 400, 1.0),
    Row("guide ocr: wrong field", post(GUIDE_OCR, {"wrong_field": "test"}), 400, 1.0),
    Row(
        "guide identify: a host not allowed (never contacted)",
        post(GUIDE_IDENTIFY, {"image_url": "https://example.com/test1.jpg"}),
        400,
        0.5,
    ),
    Row("guide ocr: image_url a file URL", post(GUIDE_OCR, {"image_url": "file:///etc/passwd"}), 400, 1.0),
    Row(
        "guide ocr: image_url with a bad port",
        post(GUIDE_OCR, {"image_url": "http://127.0.0.1:99999/a"}),
        400,
        1.0,
    ),
    Row("guide ocr: decompression bomb as base64", post(GUIDE_OCR, {"image_base64": b64(BOMB)}), 400, 1.0),
    Row("guide ocr: image_base64 not base64", post(GUIDE_OCR, {"image_base64": "%%%"}), 400, 1.0),
    Row(
        "guide identify: allowed host drips",
        post(GUIDE_IDENTIFY, lambda host: {"image_url": f"{host}/drip.png"}),
        504,
        3.0,
    ),
    Row(
        "guide ocr: allowed host answers 404",
        post(GUIDE_OCR, lambda host: {"image_url": f"{host}/x.png"}),
        502,
        2.0,
    ),
    Row("guide ocr: JSON nested 100,000 deep", post(GUIDE_OCR, DEEP), 400, 1.0),
    Row("guide identify: 64 MB Content-Length, 4 KB sent", raw(GUIDE_IDENTIFY, BIG, b"{" * 4096), 413, 1.0),
    Row("guide identify: GET", get(GUIDE_IDENTIFY), 405, 1.0),
]


def metric_values(server: ServerHandle) -> dict[str, float]:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    return {
        s.name + json.dumps(s.labels, sort_keys=True): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def metric(server: ServerHandle, name: str, **labels: str) -> float:
    return metric_values(server).get(name + json.dumps(labels, sort_keys=True), 0.0)


def ocr_reads_the_card(server: ServerHandle) -> str:
    response = httpx.post(f"{server.base_url}{OCR}", json={"image_base64": b64(CARD.png)}, timeout=30)
    assert response.status_code == 200, response.text
    return " ".join(response.json()["text"].split())


@pytest.mark.solo  # time limits per row
def test_hostile_requests_get_their_status_in_time_and_the_server_stays_healthy(
    server: ServerHandle, image_host: str
) -> None:
    assert len(ROWS) >= 20
    wrong = []
    for row in ROWS:
        started = time.perf_counter()
        answer = row.send(server, image_host)
        elapsed = time.perf_counter() - started
        try:
            error = json.loads(answer.body)["error"]
            shaped = error["code"] == answer.status and bool(error["message"]) and bool(error["type"])
        except (ValueError, KeyError, TypeError):
            shaped = False
        if answer.status != row.status or elapsed > row.limit_s or not shaped:
            wrong.append(f"{row.name}: {answer.status} in {elapsed:.2f}s: {answer.body[:200]!r}")
    assert wrong == []
    assert httpx.get(f"{server.base_url}/health").status_code == 200
    assert ocr_reads_the_card(server) == CARD.text
    refused = metric(
        server, "scenariokit_request_failures_total", model_name="", reason="body_too_large", status="413"
    )
    assert refused >= 2  # the two chat rows; the OCR row is counted under its model


def test_the_guides_routes_read_a_card_by_url_and_by_base64(server: ServerHandle, image_host: str) -> None:
    """/api/ocr and /api/identify (the reference guide's paths) answer what /api/v1/* answers."""
    by_url = {"image_url": f"{image_host}/card.png"}
    for body in (by_url, {"image_base64": b64(CARD.png)}):
        ocr = httpx.post(server.base_url + GUIDE_OCR, json=body, timeout=30)
        assert ocr.status_code == 200, ocr.text
        assert " ".join(ocr.json()["text"].split()) == CARD.text
        identify = httpx.post(server.base_url + GUIDE_IDENTIFY, json={**body, "threshold": 0}, timeout=30)
        assert identify.status_code == 200, identify.text
        assert identify.json()["model"] == "classify" and len(identify.json()["labels"]) == 5


def test_an_image_url_off_the_allowed_hosts_is_refused_before_any_connection(server: ServerHandle) -> None:
    """`localhost` is not an allowed host (127.0.0.1 is): a listener there must see no connection at all,
    so nothing off the allowed hosts is ever contacted, whatever the body says."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.5)
        url = f"http://localhost:{listener.getsockname()[1]}/card.png"
        for path in (GUIDE_OCR, GUIDE_IDENTIFY, OCR):
            answer = httpx.post(server.base_url + path, json={"image_url": url}, timeout=10)
            assert answer.status_code == 400 and answer.json()["error"]["param"] == "image_url"
        with pytest.raises(TimeoutError):
            listener.accept()


@pytest.mark.parametrize(
    ("url", "allowed", "expected"),
    [
        ("http://127.0.0.1:8090/a.png", ("127.0.0.1:8090",), True),
        ("http://127.0.0.1:8091/a.png", ("127.0.0.1:8090",), False),
        ("http://127.0.0.1/a.png", ("127.0.0.1:8090",), False),
        ("http://127.0.0.1/a.png", ("127.0.0.1:80",), True),
        ("https://127.0.0.1:9/a.png", ("127.0.0.1",), True),
        ("http://127.0.0.1:8090@example.com/a.png", ("127.0.0.1:8090",), False),
        ("http://example.com/a.png", ("127.0.0.1",), False),
        ("ftp://127.0.0.1:8090/a.png", ("127.0.0.1:8090",), False),
        ("http://127.0.0.1:99999/a.png", ("127.0.0.1",), False),
        ("http://[::1:8090/a.png", ("127.0.0.1",), False),
        ("", ("127.0.0.1",), False),
    ],
)
def test_an_allowed_host_may_name_its_port(url: str, allowed: tuple[str, ...], expected: bool) -> None:
    assert url_allowed(url, allowed) is expected


@pytest.mark.solo  # times a budget
def test_a_request_that_waited_past_its_budget_never_reaches_a_model(server: ServerHandle) -> None:
    """Both slots held by requests that sleep in the fault hook (before the model) for 0.55 of the budget:
    the third waits that long in the queue, then sleeps past its budget, and gets 503 without a model."""
    hold_s = 0.55 * REQUEST_TIMEOUT_S
    set_fault(server, latency=f"{hold_s}s")
    body = chat(data_url(CARD.png), model="moderation")
    before = metric(server, "vllm:request_inference_time_seconds_count", model_name="moderation")
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            first = [pool.submit(httpx.post, server.base_url + CHAT, json=body, timeout=30) for _ in range(2)]
            time.sleep(0.3)  # both are in their slots now
            late = pool.submit(httpx.post, server.base_url + CHAT, json=body, timeout=30)
            statuses = [f.result().status_code for f in first]
            response = late.result()
    finally:
        set_fault(server, latency="0s")
    assert statuses == [200, 200]
    assert response.status_code == 503 and "budget" in response.json()["error"]["message"]
    assert response.elapsed.total_seconds() < REQUEST_TIMEOUT_S + 1.0
    after = metric(server, "vllm:request_inference_time_seconds_count", model_name="moderation")
    assert after == before + 2


def set_fault(server: ServerHandle, **fault: str) -> None:
    response = httpx.post(f"{server.base_url}/admin/fault", json=fault, timeout=10)
    assert response.status_code == 200, response.text


def disconnecting_request(server: ServerHandle, body: dict[str, Any], after_s: float) -> None:
    """Send a whole request, then hang up before the answer."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}"
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + payload)
        time.sleep(after_s)


def wait_for_failures(server: ServerHandle, reason: str, count: float, timeout_s: float = 5.0) -> float:
    deadline, seen = time.monotonic() + timeout_s, 0.0
    while time.monotonic() < deadline:
        seen = sum(
            value
            for key, value in metric_values(server).items()
            if key.startswith("scenariokit_request_failures_total") and f'"reason": "{reason}"' in key
        )
        if seen >= count:
            break
        time.sleep(0.05)
    return seen


def test_a_queued_request_whose_client_left_never_reaches_a_model(server: ServerHandle) -> None:
    set_fault(server, latency="1s")  # both slots busy for a second before their model calls
    body = chat(data_url(CARD.png), model="moderation")
    before = metric(server, "vllm:request_inference_time_seconds_count", model_name="moderation")
    gone_before = wait_for_failures(server, "client_gone", 0)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            first = [pool.submit(httpx.post, server.base_url + CHAT, json=body, timeout=30) for _ in range(2)]
            time.sleep(0.3)
            disconnecting_request(server, body, after_s=0.2)  # queued behind them, then gone
            assert [f.result().status_code for f in first] == [200, 200]
    finally:
        set_fault(server, latency="0s")
    assert wait_for_failures(server, "client_gone", gone_before + 1) == gone_before + 1
    time.sleep(0.5)  # had it been admitted, it would have reached its model by now
    assert metric(server, "vllm:request_inference_time_seconds_count", model_name="moderation") == before + 2
    assert gauges(server) == {}


def gauges(server: ServerHandle) -> dict[str, float]:
    """Every running/waiting gauge that is not zero."""
    return {
        key: value
        for key, value in metric_values(server).items()
        if key.startswith(("vllm:num_requests_running", "vllm:num_requests_waiting")) and value != 0
    }


def test_gauges_read_zero_after_a_burst_of_mixed_requests(server: ServerHandle) -> None:
    """OK requests on all three models, bad ones, refusals at capacity and clients that hang up, at once."""
    good = [chat(data_url(CARD.png), model=m) for m in ("ocr", "classify", "moderation", "classify")]
    bad = [chat(data_url(CORRUPT)), chat(data_url(THIN)), chat(data_url(BOMB), model="classify")]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(httpx.post, server.base_url + CHAT, json=b, timeout=30) for b in good + bad]
        futures += [pool.submit(disconnecting_request, server, good[i % 4], 0.05 * i) for i in range(6)]
        results = [f.result() for f in futures]
    statuses = sorted(r.status_code for r in results if r is not None)
    # 503: a request that waited past its 5 s budget, which a loaded CI host can make happen; never a 500
    assert set(statuses) <= {200, 400, 429, 503} and 400 in statuses and 200 in statuses
    time.sleep(1.0)  # idle: every abandoned call has left its worker
    assert gauges(server) == {}
    names = {key.partition("{")[0] for key in metric_values(server)}
    assert {"vllm:num_requests_running", "vllm:num_requests_waiting"} <= names


def test_a_killed_worker_fails_its_request_cleanly_and_is_replaced(server: ServerHandle) -> None:
    workers = httpx.get(f"{server.base_url}/health").json()["workers"]
    assert [w["up"] for w in workers] == [True, True]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(
            httpx.post, server.base_url + OCR, json={"image_base64": b64(CARD.png)}, timeout=30
        )
        time.sleep(0.3)  # in a worker now (OCR takes about half a second)
        for worker in workers:
            os.kill(worker["pid"], signal.SIGKILL)
        response = in_flight.result()
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "ServiceUnavailableError"
    assert response.headers["retry-after"] == "1"
    health = httpx.get(f"{server.base_url}/health")
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    assert (
        httpx.post(server.base_url + OCR, json={"image_base64": b64(CARD.png)}, timeout=30).status_code == 503
    )
    deadline = time.monotonic() + 60
    while httpx.get(f"{server.base_url}/health").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    after = httpx.get(f"{server.base_url}/health").json()
    assert after["status"] == "ok"
    assert [(w["up"], w["restarts"]) for w in after["workers"]] == [(True, 1), (True, 1)]
    assert {w["pid"] for w in after["workers"]}.isdisjoint(w["pid"] for w in workers)
    for index in ("0", "1"):
        assert metric(server, "scenariokit_worker_restarts_total", worker=index) == 1
        assert metric(server, "scenariokit_worker_up", worker=index) == 1
    assert (
        metric(
            server, "scenariokit_request_failures_total", model_name="ocr", reason="worker_died", status="503"
        )
        >= 1
    )
    assert ocr_reads_the_card(server) == CARD.text


@pytest.mark.parametrize(
    ("deaths", "delay_s"), [(0, 0.25), (1, 0.25), (2, 0.5), (3, 1.0), (8, 30.0), (50, 30.0)]
)
def test_a_crash_loop_backs_off(deaths: int, delay_s: float) -> None:
    assert backoff_s(deaths) == delay_s


@pytest.mark.solo  # times a close
@pytest.mark.parametrize(
    "first",
    [b"", b"POST /api/v1/ocr HTTP/1.1\r\nHo", b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"],
    ids=["nothing sent", "half a request head", "idle after one answer"],
)
def test_a_connection_that_sends_no_request_head_is_closed(server: ServerHandle, first: bytes) -> None:
    """--head-timeout 1 (from connect, or from the last answer) and --keep-alive-timeout 1."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(first)
        sock.settimeout(5)
        started, data = time.perf_counter(), b""
        while piece := sock.recv(65536):
            data += piece
        closed_after = time.perf_counter() - started
    assert 0.5 < closed_after < 2.5
    assert data == b"" or data.startswith(b"HTTP/1.1 200")
