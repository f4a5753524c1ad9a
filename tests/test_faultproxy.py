"""The fault-injecting proxy (run/faultproxy.py) against a real HTTP/1.1 server on loopback.

The upstream is a small threaded server built on h11 (one thread per connection: pipelining, chunked bodies
both ways, HEAD, a response cut off mid-body), so every row runs real sockets through the real proxy; no
part of the proxy is replaced. Shares are judged with exact binomial tests (scipy), never a fixed tolerance:
a row fails when the observed count is implausible at the 0.1% level for the share that was set.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from types import TracebackType

import h11
import httpx
import pytest
from scipy.stats import binomtest

from scenariokit.run import faultproxy
from scenariokit.run.faultproxy import MAX_HEAD, FaultProxy, check_fault

ALPHA = 0.001  # a share row fails when its count is this improbable under the share that was set


class H11Server:
    """`with H11Server() as server:` answers on 127.0.0.1:server.port. Paths: /chunked (a chunked answer of
    three chunks), /echo (the request body's length), /die (a head promising 1000 bytes, 10 of them, then
    a reset), anything else `ok:<path>`. Counts the requests it answered."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.answered = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> H11Server:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        self._listener.close()
        with self._lock:
            for conn in list(self._open):
                conn.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        peer = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        try:
            while self._one(conn, peer):
                peer.start_next_cycle()
        except (OSError, h11.ProtocolError):
            pass
        finally:
            with self._lock:
                self._open.discard(conn)
            conn.close()

    def _next(self, conn: socket.socket, peer: h11.Connection) -> h11.Event | type[h11.PAUSED] | None:
        while True:
            event = peer.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = conn.recv(65536)
            peer.receive_data(data)
            if not data and peer.their_state is not h11.DONE:
                event = peer.next_event()
                return None if event is h11.NEED_DATA else event

    def _one(self, conn: socket.socket, peer: h11.Connection) -> bool:
        request = self._next(conn, peer)
        if not isinstance(request, h11.Request):
            return False
        length = 0
        while not isinstance(event := self._next(conn, peer), h11.EndOfMessage):
            if not isinstance(event, h11.Data):
                return False
            length += len(event.data)
        path = request.target.decode()
        with self._lock:
            self.answered += 1
        if path == "/die":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if path == "/nocontent":  # a 204 has no body, whatever the framing
            conn.sendall(peer.send(h11.Response(status_code=204, headers=[])) + peer.send(h11.EndOfMessage()))
            return peer.our_state is h11.DONE and peer.their_state is h11.DONE
        if path == "/chunked":
            conn.sendall(peer.send(h11.Response(status_code=200, headers=[("Transfer-Encoding", "chunked")])))
            for part in (b"alpha-", b"beta-", b"gamma"):
                conn.sendall(peer.send(h11.Data(data=part)))
        else:
            body = str(length).encode() if path == "/echo" else f"ok:{path}".encode()
            headers = [("Content-Length", str(len(body)))]
            answer = peer.send(h11.Response(status_code=200, headers=headers))
            if request.method != b"HEAD":
                answer += peer.send(h11.Data(data=body))
            conn.sendall(answer + peer.send(h11.EndOfMessage()))  # one write: one chunk for the proxy
            return peer.our_state is h11.DONE and peer.their_state is h11.DONE
        conn.sendall(peer.send(h11.EndOfMessage()))
        return peer.our_state is h11.DONE and peer.their_state is h11.DONE


@pytest.fixture
def upstream() -> Iterator[H11Server]:
    with H11Server() as server:
        yield server


@pytest.fixture
def proxy(upstream: H11Server) -> Iterator[FaultProxy]:
    with FaultProxy([("127.0.0.1", upstream.port)], seed=1) as started:
        yield started


def url(proxy: FaultProxy, path: str = "/x") -> str:
    return f"http://127.0.0.1:{proxy.port}{path}"


def raw(port: int, payload: bytes, timeout: float = 5.0) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn.sendall(payload)
    return conn


def read_until_closed(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_responses(conn: socket.socket, count: int) -> list[h11.Response]:
    """Read `count` whole responses from a raw client socket (h11 as the client's parser)."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    answers: list[h11.Response] = []
    while len(answers) < count:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(conn.recv(65536))
        elif isinstance(event, h11.Response):
            answers.append(event)
        elif isinstance(event, h11.EndOfMessage) and len(answers) < count:
            client.start_next_cycle()
            client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            client.send(h11.EndOfMessage())
    return answers


def wait_for(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def plausible(hits: int, n: int, share: float) -> bool:
    return binomtest(hits, n, share).pvalue > ALPHA


# -- plain forwarding ------------------------------------------------------------------------------


def test_forwards_requests_and_counts_them(proxy: FaultProxy, upstream: H11Server) -> None:
    with httpx.Client() as client:
        for n in range(30):
            assert client.get(url(proxy, f"/r{n}")).text == f"ok:/r{n}"
        assert client.post(url(proxy, "/echo"), content=b"x" * 100_000).text == "100000"
        assert client.head(url(proxy, "/h")).status_code == 200  # no body after HEAD's Content-Length
        assert client.get(url(proxy, "/chunked")).text == "alpha-beta-gamma"
        assert client.get(url(proxy, "/nocontent")).status_code == 204
        assert client.get(url(proxy, "/after")).text == "ok:/after"  # framing still in step
    counts = proxy.counts()
    assert counts["connections"] == 1 and upstream.connections == 1  # one kept-alive connection
    assert counts["requests"] == counts["responses"] == upstream.answered == 35
    assert counts["opaque_streams"] == 0
    assert wait_for(lambda: proxy.counts()["active"] == 0)


def test_a_body_read_until_close_is_one_response() -> None:
    """HTTP/1.0 style: no length, no chunking; the response ends when the upstream closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it, until the close")

    server = threading.Thread(target=answer, daemon=True)
    server.start()
    with listener, FaultProxy([("127.0.0.1", listener.getsockname()[1])]) as proxy:
        with raw(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") as conn:
            assert read_until_closed(conn).endswith(b"\r\n\r\nall of it, until the close")
        assert wait_for(lambda: proxy.counts()["responses"] == 1)
    server.join(5)


@pytest.mark.solo
def test_an_interim_100_continue_and_its_final_response_are_one_exchange() -> None:
    """A 100 Continue is not a response of its own: one response counted, the latency added once."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)  # the head, with Expect: 100-continue
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            conn.recv(65536)  # the body
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            conn.recv(1)  # until the proxy closes

    server = threading.Thread(target=answer, daemon=True)
    server.start()
    with listener, FaultProxy([("127.0.0.1", listener.getsockname()[1])]) as proxy:
        proxy.set_fault("slow", "latency", {"delay_s": 0.1})
        head = b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
        start = time.perf_counter()
        with raw(proxy.port, head) as conn:
            got = b""
            while b"100 Continue\r\n\r\n" not in got:
                got += conn.recv(65536)
            conn.sendall(b"body")
            while not got.endswith(b"ok"):
                got += conn.recv(65536)
        assert 0.1 <= time.perf_counter() - start < 0.18  # one delay, at the exchange's first byte
        counts = proxy.counts()
        assert counts["requests"] == counts["responses"] == counts["fault:slow"] == 1
    server.join(5)


def test_pipelined_pair_and_chunked_request_body(proxy: FaultProxy) -> None:
    chunked = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    pair = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" + chunked
    with raw(proxy.port, pair) as conn:
        answers = read_responses(conn, 2)
    assert [a.status_code for a in answers] == [200, 200]
    assert proxy.counts()["requests"] == 2
    assert wait_for(lambda: proxy.counts()["responses"] == 2)


def test_a_request_split_byte_by_byte_is_one_request(proxy: FaultProxy) -> None:
    request = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in request:
            conn.sendall(bytes([byte]))
            time.sleep(0.001)
        assert read_responses(conn, 1)[0].status_code == 200
    assert proxy.counts()["requests"] == 1


def test_a_huge_head_is_forwarded_as_an_opaque_stream(proxy: FaultProxy, upstream: H11Server) -> None:
    head = (
        b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + b"a" * (MAX_HEAD + 10) + b"\r\n\r\n"
    )
    with raw(upstream.port, head) as direct:
        expected = read_until_closed(direct)
    with raw(proxy.port, head) as proxied:
        assert read_until_closed(proxied) == expected  # whatever the upstream says, unchanged
    assert expected.startswith(b"HTTP/1.1 200") and expected.endswith(b"ok:/big")
    counts = proxy.counts()
    assert counts["opaque_streams"] == 1 and counts["requests"] == 1


def test_garbage_is_an_opaque_stream(proxy: FaultProxy) -> None:
    with raw(proxy.port, b"\x16\x03\x01 not http at all\r\n\r\n") as conn:
        conn.shutdown(socket.SHUT_WR)
        read_until_closed(conn)
    assert proxy.counts()["opaque_streams"] == 1


def test_an_upstream_dying_mid_response_is_an_error_for_the_client(proxy: FaultProxy) -> None:
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(url(proxy, "/die"), timeout=5)
    assert proxy.counts()["responses"] == 0  # 10 of 1000 bytes is not a response
    assert wait_for(lambda: proxy.counts()["active"] == 0)


def test_a_client_leaving_mid_request_closes_both_sides(proxy: FaultProxy, upstream: H11Server) -> None:
    with raw(proxy.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part"):
        assert wait_for(lambda: upstream.connections == 1)
    assert wait_for(lambda: proxy.counts()["active"] == 0)
    assert upstream.answered == 0


# -- faults ------------------------------------------------------------------------------------------


@pytest.mark.solo
def test_latency_is_added_once_per_response(proxy: FaultProxy) -> None:
    with httpx.Client() as client:
        client.get(url(proxy))
        proxy.set_fault("slow", "latency", {"delay_s": 0.1, "jitter_s": 0.0})
        took = []
        for _ in range(5):
            start = time.perf_counter()
            assert client.get(url(proxy, "/chunked")).text == "alpha-beta-gamma"  # 4 writes, one delay
            took.append(time.perf_counter() - start)
        proxy.set_fault("also", "latency", {"delay_s": 0.05})  # a second latency fault adds
        start = time.perf_counter()
        client.get(url(proxy))
        both = time.perf_counter() - start
        proxy.clear_fault("slow")
        proxy.clear_fault("also")
        start = time.perf_counter()
        client.get(url(proxy))
        after = time.perf_counter() - start
    assert all(0.1 <= t < 0.16 for t in took), took
    assert 0.15 <= both < 0.21 and after < 0.05
    assert proxy.counts()["fault:slow"] == 6


@pytest.mark.solo
def test_pipelined_responses_each_get_their_delay_not_a_sum(proxy: FaultProxy) -> None:
    proxy.set_fault("slow", "latency", {"delay_s": 0.15, "jitter_s": 0.0})
    start = time.perf_counter()
    with raw(proxy.port, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" * 3) as conn:
        read_responses(conn, 3)
    assert 0.15 <= time.perf_counter() - start < 0.28


def test_jitter_is_uniform_within_its_bounds(proxy: FaultProxy) -> None:
    proxy.set_fault("jitter", "latency", {"delay_s": 0.03, "jitter_s": 0.02})
    took = []
    with httpx.Client() as client:
        for _ in range(20):
            start = time.perf_counter()
            client.get(url(proxy))
            took.append(time.perf_counter() - start)
    assert min(took) >= 0.01 and max(took) - min(took) > 0.01  # spread, and never below delay - jitter


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_reset_hits_that_share_of_requests(proxy: FaultProxy, upstream: H11Server, share: float) -> None:
    proxy.set_fault("rst", "reset", {"share": share})
    n, resets = 300, 0
    with httpx.Client() as client:  # keep-alive: a per-connection share would be diluted
        for _ in range(n):
            try:
                client.post(url(proxy, "/echo"), content=b"abc")
            except httpx.ReadError as exc:
                assert "reset" in str(exc).lower()  # RST, not a FIN: the engines name it connection_reset
                resets += 1
    assert plausible(resets, n, share), resets
    assert proxy.counts()["fault:rst"] == resets
    assert upstream.answered == n - resets  # a reset request never reached the upstream


@pytest.mark.parametrize("share", [0.0, 0.4, 1.0])
def test_drop_closes_without_a_response(proxy: FaultProxy, upstream: H11Server, share: float) -> None:
    proxy.set_fault("drop", "drop", {"share": share})
    n, drops = 200, 0
    with httpx.Client() as client:
        for _ in range(n):
            try:
                client.post(url(proxy, "/echo"), content=b"abc")
            except httpx.RemoteProtocolError as exc:
                assert "without sending a response" in str(exc)  # a FIN, not a reset
                drops += 1
    assert plausible(drops, n, share), drops
    assert upstream.answered == n - drops


def test_hang_holds_a_request_until_the_fault_ends(proxy: FaultProxy, upstream: H11Server) -> None:
    proxy.set_fault("stuck", "hang", {"share": 1.0})
    with pytest.raises(httpx.ReadTimeout):  # the client gives up: its connection is closed
        httpx.get(url(proxy, "/gave-up"), timeout=0.2)
    with raw(proxy.port, b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n") as conn:
        conn.settimeout(0.3)
        with pytest.raises(TimeoutError):
            conn.recv(1)  # held: nothing comes back
        proxy.clear_fault("stuck")
        conn.settimeout(5)
        assert read_responses(conn, 1)[0].status_code == 200  # released and forwarded
    assert upstream.answered == 1
    assert proxy.counts()["fault:stuck"] == 2
    assert wait_for(lambda: proxy.counts()["active"] == 0)


@pytest.mark.solo
def test_bandwidth_caps_both_directions(proxy: FaultProxy) -> None:
    proxy.set_fault("thin", "bandwidth", {"bytes_per_s": 1_000_000})
    with httpx.Client() as client:
        start = time.perf_counter()
        assert client.post(url(proxy, "/echo"), content=b"x" * 300_000).text == "300000"
        took = time.perf_counter() - start
    assert 0.28 <= took < 0.6, took  # 300 kB at 1 MB/s
    proxy.clear_fault("thin")
    start = time.perf_counter()
    httpx.post(url(proxy, "/echo"), content=b"x" * 300_000)
    assert time.perf_counter() - start < 0.2


@pytest.mark.solo
def test_packet_loss_stalls_chunks_with_backoff(proxy: FaultProxy) -> None:
    """Each request is one chunk up and one down: it sees no stall with probability (1 - share)^2, and
    every stall is a sum of stall_s * 2^k."""
    share, stall = 0.2, 0.04  # a clean request is one under 32 ms: room for a loaded host
    proxy.set_fault("lossy", "packet-loss", {"share": share, "stall_s": stall})
    clean, n = 0, 80
    with httpx.Client() as client:
        for _ in range(n):
            start = time.perf_counter()
            client.get(url(proxy))
            clean += time.perf_counter() - start < stall * 0.8
    assert plausible(clean, n, (1 - share) ** 2), clean
    assert proxy.counts()["fault:lossy"] >= n * 2 - clean * 2 - n  # at least one loss per stalled request


def test_round_robin_skips_a_refusing_upstream() -> None:
    with H11Server() as first, H11Server() as second:
        gone = socket.create_server(("127.0.0.1", 0))
        dead_port = gone.getsockname()[1]
        gone.close()  # nothing listens there: connections are refused
        upstreams = [("127.0.0.1", first.port), ("127.0.0.1", dead_port), ("127.0.0.1", second.port)]
        with FaultProxy(upstreams) as proxy:
            for _ in range(6):
                assert httpx.get(url(proxy), headers={"Connection": "close"}).status_code == 200
            assert first.connections + second.connections == 6
            assert first.connections >= 2 and second.connections >= 2
            assert proxy.counts()["upstream_refused"] == 2  # the dead one's turns, skipped


def test_every_upstream_refusing_resets_the_client_at_once() -> None:
    gone = socket.create_server(("127.0.0.1", 0))
    dead_port = gone.getsockname()[1]
    gone.close()
    with FaultProxy([("127.0.0.1", dead_port)] * 2) as proxy:
        start = time.perf_counter()
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError)):
            httpx.get(url(proxy), timeout=5)
        assert time.perf_counter() - start < 1.0
        assert proxy.counts()["no_upstream"] == 1
        assert proxy.counts()["requests"] == 1  # counted before the reset: records match the proxy's count


def test_a_client_silent_when_every_upstream_refused_is_reset_when_its_request_comes() -> None:
    gone = socket.create_server(("127.0.0.1", 0))
    dead_port = gone.getsockname()[1]
    gone.close()
    with FaultProxy([("127.0.0.1", dead_port)]) as proxy:
        conn = raw(proxy.port, b"")
        assert wait_for(lambda: proxy.counts()["no_upstream"] == 1)
        assert proxy.counts()["requests"] == 0
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises((ConnectionResetError, ConnectionAbortedError)):
            read_until_closed(conn)
        assert proxy.counts()["requests"] == 1
        conn.close()


def test_connections_past_the_limit_are_reset(upstream: H11Server) -> None:
    with FaultProxy([("127.0.0.1", upstream.port)], max_connections=2) as proxy:
        held = [raw(proxy.port, b"") for _ in range(2)]
        assert wait_for(lambda: proxy.counts()["active"] == 2)
        # the reset may reach the client at its connect, its send or its read, as the two threads race
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        with pytest.raises((ConnectionResetError, BrokenPipeError)), raw(proxy.port, request) as extra:
            extra.recv(1) or extra.recv(1)
        for conn in held:
            conn.close()
        assert proxy.counts()["over_limit"] == 1


def test_faults_switched_from_many_threads_during_traffic(proxy: FaultProxy, upstream: H11Server) -> None:
    """set_fault / clear_fault race each other and the loop; every request still ends in an answer or a
    counted reset, and with everything cleared the proxy forwards plainly."""
    stop = threading.Event()

    def toggle(name: str, kind: str, params: dict[str, float]) -> None:
        while not stop.is_set():
            proxy.set_fault(name, kind, params)
            time.sleep(0.0005)  # spinning threads would hold the GIL and starve the proxy's loop
            proxy.clear_fault(name)

    togglers = [
        threading.Thread(target=toggle, args=(f"f{n}", kind, params))
        for n, (kind, params) in enumerate(
            [
                ("reset", {"share": 0.5}),
                ("latency", {"delay_s": 0.001}),
                ("packet-loss", {"share": 0.2, "stall_s": 0.001}),
            ]
            * 2
        )
    ]
    for thread in togglers:
        thread.start()
    answered = 0
    with httpx.Client() as client:
        for _ in range(150):
            with contextlib.suppress(httpx.ReadError):
                client.post(url(proxy, "/echo"), content=b"abc")
                answered += 1
    stop.set()
    for thread in togglers:
        thread.join()
    resets = sum(v for k, v in proxy.counts().items() if k in ("fault:f0", "fault:f3"))
    assert answered + resets == 150 == proxy.counts()["requests"]
    assert upstream.answered == answered
    assert httpx.get(url(proxy, "/after")).text == "ok:/after"


def test_an_idle_connection_is_closed_after_the_idle_timeout(
    upstream: H11Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faultproxy, "IDLE_SWEEP_S", 0.05)
    with FaultProxy([("127.0.0.1", upstream.port)], idle_timeout_s=0.2) as proxy:
        quiet = raw(proxy.port, b"GET /held HTTP/1.1\r\nHost: x")  # half a head, then nothing
        with quiet, pytest.raises(ConnectionResetError):
            quiet.recv(1) or quiet.recv(1)
        assert proxy.counts()["idle_closed"] == 1


@pytest.mark.parametrize(
    ("kind", "params", "says"),
    [
        ("teleport", {"share": 0.1}, "unknown network fault kind"),
        ("reset", {}, "missing"),
        ("reset", {"share": 0.1, "shares": 0.2}, "unknown"),
        ("reset", {"share": 1.5}, "0..1"),
        ("drop", {"share": -0.1}, "0..1"),
        ("latency", {"delay_s": -1}, "negative"),
        ("latency", {"delay_s": float("nan")}, "finite"),
        ("latency", {"delay_s": True}, "finite"),
        ("packet-loss", {"share": 0.1, "stall_s": "1s"}, "finite"),
        ("bandwidth", {"bytes_per_s": 0}, "positive"),
    ],
)
def test_bad_fault_parameters_are_refused(kind: str, params: dict, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        check_fault(kind, params)


def test_no_upstream_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one upstream"):
        FaultProxy([])


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_stop_with_connections_open_leaves_nothing_behind(upstream: H11Server) -> None:
    threads, fds = threading.active_count(), open_fds()
    proxy = FaultProxy([("127.0.0.1", upstream.port)])
    proxy.start()
    proxy.set_fault("stuck", "hang", {"share": 0.5})
    proxy.set_fault("slow", "latency", {"delay_s": 5.0})
    clients = [raw(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(10)]
    clients.append(raw(proxy.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\npart"))
    assert wait_for(lambda: proxy.counts()["requests"] == 11)
    start = time.perf_counter()
    proxy.stop()
    assert time.perf_counter() - start < 2.0
    for conn in clients:
        with pytest.raises(ConnectionResetError):
            conn.recv(1) or conn.recv(1)
        conn.close()
    assert wait_for(lambda: threading.active_count() <= threads)  # the loop thread, the upstream's
    assert wait_for(lambda: open_fds() <= fds)
