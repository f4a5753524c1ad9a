"""A fault-injecting TCP proxy on loopback, HTTP/1.1-aware, with a round-robin front over several upstreams.

The runner puts it between the engine and the target when a scenario has a network fault (the engine's
base URL is rewritten to it; the monitor keeps scraping the real target), and as the "simple load balancer"
in front of several embedded instances. It runs its own asyncio loop on its own daemon thread, so the
runner's poll loop and the fault scheduler call it from plain threads:

    proxy = FaultProxy([("127.0.0.1", 8000), ("127.0.0.1", 8001)], seed=7)
    port = proxy.start()
    proxy.set_fault("slow-net", "latency", {"delay_s": 0.2, "jitter_s": 0.02})
    ...
    proxy.clear_fault("slow-net")
    proxy.counts()  # {"connections": ..., "requests": ..., "responses": ..., "fault:slow-net": ..., ...}
    proxy.stop()

Libraries checked (PyPI only; no toxiproxy server binary can be installed here):
- `faulty` 0.2.1 (asyncio TCP chaos proxy): its middlewares act on each read chunk, with no notion of a
  request or a response, so "200 ms once per response" or "a share of requests reset" cannot be said with
  it; it has no RST (SO_LINGER 0), no hang, no upstream list, module-global `random` (no seed), leaves the
  other direction's task running when one ends, and pulls in typer. Its shape (a pipeline per direction)
  is kept here; its code is not used.
- `toxiproxy-python`, `chaostoolkit-toxiproxy`: clients of a toxiproxy server, which is not available.
- Chaos Toolkit's model (an experiment = steady-state hypothesis, method of actions and probes, rollbacks):
  it maps onto the scenario (SLOs are the hypothesis, `faults:` the actions, the proxy's counts a probe,
  `clear_fault` the rollback); running its engine would add a second scheduler beside the runner's.

Fault kinds and their parameters (the `faults:` section lowers to these exact keys; shares are 0..1):
- `latency` {delay_s, jitter_s}: added once per response, before its first byte: the response is held
  until delay + U(-jitter, +jitter) (clamped at 0) after its first byte reached the proxy. Uniform, as
  netem's `delay D J` without a distribution table. Pipelined responses each get their own delay, not a sum.
- `bandwidth` {bytes_per_s}: one token bucket per direction shared by all connections (a link's capacity,
  as `tc tbf` on an interface), released in slices of 20 ms of the rate. Several caps: the tightest applies.
- `reset` {share}: per request, drawn at its first byte: the request never reaches the upstream, and once it
  has arrived whole the client connection is closed with RST (SO_LINGER 0); acting then keeps the client
  reading when the RST lands (one landing between a client's writes is reported to its next write, and its
  read then sees a plain EOF). Counted per request, not per connection: with kept-alive connections a
  per-connection share would be diluted by the requests each connection carries.
- `drop` {share}: per request, the same way, with a FIN and no response; what the client sends after is
  read and discarded until it closes.
- `hang` {share}: per request: the request is held by the proxy, the connection open and silent, until the
  client gives up (closes: the connection is closed) or the fault is cleared (then the held request and
  whatever followed it are forwarded, as a healed link's retransmissions would deliver them).
- `packet-loss` {share, stall_s}: as the client sees it. Each chunk (one read, up to 64 KiB, either way)
  is "lost" with the share and then delivered stall_s later, its retransmission lost again with the same
  share and delayed twice as long (exponential backoff, as TCP's RTO), at most 6 times; later bytes of that
  connection wait behind it (in-order delivery). Real loss differs: it hits packets (about 1.5 KiB, or 64
  KiB on loopback), most losses are repaired by fast retransmit within a round trip rather than an RTO,
  and the congestion window shrinks, so throughput collapses more than these stalls alone make it.

Faults with different names compose: latencies add; each request draws reset, then drop, then hang for
every active fault of those kinds, and the first hit acts; each packet-loss fault draws independently.

HTTP/1.1 awareness: request and response boundaries are found from the request line, the headers,
Content-Length or chunked bodies (with trailers), HEAD / 204 / 304 / 1xx responses and bodies read until
close. Anything else (a head over 64 KiB, a request line that is not one, an invalid Content-Length, an
Upgrade or CONNECT tunnel) makes the rest of that connection an opaque stream: forwarded as it is, its
start counted as one request for the per-request faults. Bytes are forwarded as they arrive; the framing is
only read, never rewritten.

Round-robin front: each new client connection goes to the next upstream; one that refuses (or does not
accept within connect_timeout_s) is skipped for the next one; when all refuse, the client's connection is
reset at once. A closed or reset upstream connection is mirrored to the client (FIN as FIN, RST as RST).

Bounded: at most max_connections client connections (more are reset at once), at most MAX_QUEUE bytes
queued per direction and connection (reading pauses beyond), a connection with no traffic either way for
idle_timeout_s is closed, stop() returns within its timeout. With no fault active each chunk goes straight
to the other side's transport: the cost is the framing scan (benchmarks/bench_faultproxy.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import resource
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

NETWORK_FAULT_KINDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # kind: (required keys, optional keys)
    "latency": (frozenset({"delay_s"}), frozenset({"jitter_s"})),
    "bandwidth": (frozenset({"bytes_per_s"}), frozenset()),
    "reset": (frozenset({"share"}), frozenset()),
    "drop": (frozenset({"share"}), frozenset()),
    "hang": (frozenset({"share"}), frozenset()),
    "packet-loss": (frozenset({"share", "stall_s"}), frozenset()),
}
REQUEST_KINDS = ("reset", "drop", "hang")  # drawn per request, in this order
READ_LIMIT = 64 * 1024  # one read; also a chunk for packet-loss
MAX_HEAD = 64 * 1024  # a head (or chunk-size line, trailer) longer than this makes the connection opaque
MAX_QUEUE = 1024 * 1024  # bytes queued per direction and connection before the source's reading pauses
MAX_RETRANSMITS = 6  # packet-loss: a chunk is delivered after at most this many lost retransmissions
PACE_SLICE_S = 0.02  # bandwidth: bytes are released in slices of this much of the rate
IDLE_SWEEP_S = 1.0
COUNT_KEYS = (
    "connections",  # client connections accepted
    "active",  # client connections open now
    "requests",  # requests (or opaque streams) that started on a client connection
    "responses",  # final responses completed upstream -> client
    "opaque_streams",  # connections that turned opaque
    "upstream_refused",  # upstream connection attempts refused or timed out
    "no_upstream",  # client connections reset because every upstream refused
    "over_limit",  # client connections reset because max_connections were open
    "idle_closed",  # connections closed after idle_timeout_s without traffic
    "bytes_up",  # client -> upstream, forwarded
    "bytes_down",  # upstream -> client, forwarded
)


class _Opaque(Exception):
    """The stream is not HTTP/1.1 the framer can follow."""


@dataclass(frozen=True)
class _Fault:
    name: str
    kind: str
    params: dict[str, float]


@dataclass(frozen=True)
class _Active:
    """The faults in force, shaped for the hot path; replaced whole (one reference swap) on every change,
    so the loop thread always reads a consistent set without a lock."""

    faults: tuple[_Fault, ...] = ()
    latency: tuple[_Fault, ...] = ()
    per_request: tuple[_Fault, ...] = ()  # reset, drop, hang in REQUEST_KINDS order
    losses: tuple[_Fault, ...] = ()
    rate: float = 0.0  # bytes/s of the tightest bandwidth cap, 0: none
    bandwidth: tuple[_Fault, ...] = ()
    slow: bool = False  # every chunk must go through the writer (paced, or possibly stalled)


def _active_of(faults: tuple[_Fault, ...]) -> _Active:
    bandwidth = tuple(f for f in faults if f.kind == "bandwidth")
    return _Active(
        faults=faults,
        latency=tuple(f for f in faults if f.kind == "latency"),
        per_request=tuple(f for kind in REQUEST_KINDS for f in faults if f.kind == kind),
        losses=tuple(f for f in faults if f.kind == "packet-loss"),
        rate=min((f.params["bytes_per_s"] for f in bandwidth), default=0.0),
        bandwidth=bandwidth,
        slow=bool(bandwidth) or any(f.kind == "packet-loss" for f in faults),
    )


def check_fault(kind: str, params: Mapping[str, Any]) -> dict[str, float]:
    """The parameters as floats, or ValueError saying what is wrong (unknown kind or key, a share outside
    0..1, a negative or non-finite time, a zero rate)."""
    if kind not in NETWORK_FAULT_KINDS:
        raise ValueError(f"unknown network fault kind {kind!r} (known: {', '.join(NETWORK_FAULT_KINDS)})")
    required, optional = NETWORK_FAULT_KINDS[kind]
    missing, unknown = required - set(params), set(params) - required - optional
    if missing or unknown:
        raise ValueError(f"{kind}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    values: dict[str, float] = {"jitter_s": 0.0} if kind == "latency" else {}
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{kind}.{key} must be a finite number, not {value!r}")
        values[key] = float(value)
    if "share" in values and not 0.0 <= values["share"] <= 1.0:
        raise ValueError(f"{kind}.share must lie in 0..1, not {values['share']}")
    if any(values.get(key, 0.0) < 0 for key in ("delay_s", "jitter_s", "stall_s")):
        raise ValueError(f"{kind}: times must not be negative")
    if kind == "bandwidth" and values["bytes_per_s"] <= 0:
        raise ValueError("bandwidth.bytes_per_s must be positive")
    return values


def default_max_connections() -> int:
    """Client connections the proxy accepts at once: each costs two descriptors; keep 256 for the rest."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(10_000, (soft - 256) // 2))


def _reset(transport: asyncio.BaseTransport | None) -> None:
    """Close with RST: SO_LINGER 0 makes close() drop the connection instead of a FIN."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# -- HTTP/1.1 framing: where each message starts, read and never rewritten ------------------------------

_START, _HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _UNTIL_CLOSE, _OPAQUE = range(8)


def _header_value(lower_head: bytes, name: bytes) -> bytes | None:
    """The one value of a header in a lower-cased head; _Opaque when it appears twice with different
    values (the message's length would be ambiguous)."""
    key = b"\r\n" + name + b":"
    at = lower_head.find(key)
    if at < 0:
        return None
    value = lower_head[at + len(key) : lower_head.find(b"\r\n", at + 2)].strip()
    again = lower_head.find(key, at + 2)
    if again >= 0 and lower_head[again + len(key) : lower_head.find(b"\r\n", again + 2)].strip() != value:
        raise _Opaque
    return value


class _Framer:
    """One direction of one connection: `feed(data)` returns the offsets in data where a new message
    starts and counts completed messages in `completed`. Subclasses read their heads."""

    def __init__(self, methods: deque[bytes]) -> None:
        self.state = _START
        self.buf = bytearray()  # a head, chunk-size line or trailer being collected
        self.left = 0  # body (or chunk data + CRLF) bytes still to pass
        self.completed = 0
        self.methods = methods  # request methods awaiting their responses (HEAD has no body)

    @property
    def opaque(self) -> bool:
        return self.state == _OPAQUE

    def feed(self, data: bytes) -> list[int]:
        starts: list[int] = []
        i, n = 0, len(data)
        try:
            if self.state == _START and n and data[0] not in b"\r\n":
                i = self._whole_head(data, starts)
                if i == n:  # the common case: one whole message (or its head and body start) in one read
                    return starts
            while i < n and self.state not in (_OPAQUE, _UNTIL_CLOSE):
                i = self._step(data, i, n, starts)
        except _Opaque:
            self.state = _OPAQUE
            self.buf.clear()
        return starts

    def _whole_head(self, data: bytes, starts: list[int]) -> int:
        """The fast path of a read that starts a message with its whole head: read the head, pass the body
        bytes that follow (the offset reached); 0 when the head is not whole (the general loop takes it)."""
        end = data.find(b"\r\n\r\n", 0, MAX_HEAD)
        if end < 0:
            return 0
        starts.append(0)
        self.state = _HEAD
        self._on_head(data[: end + 4])
        i = end + 4
        if self.state == _BODY:
            take = min(self.left, len(data) - i)
            self.left -= take
            i += take
            if self.left == 0:
                self._done()
        return i

    def _step(self, data: bytes, i: int, n: int, starts: list[int]) -> int:
        state = self.state
        if state == _START:
            if data[i] in b"\r\n":  # RFC 9112 2.2: empty lines before a request line are ignored
                return i + 1
            starts.append(i)
            self.state = _HEAD
            return i
        if state == _HEAD:
            i, head = self._collect(data, i, b"\r\n\r\n")
            if head is not None:
                self._on_head(head)
            return i
        if state in (_BODY, _CHUNK_DATA):
            take = min(self.left, n - i)
            self.left -= take
            if self.left == 0:
                if state == _BODY:
                    self._done()
                else:
                    self.state = _CHUNK_SIZE
            return i + take
        if state == _CHUNK_SIZE:
            i, line = self._collect(data, i, b"\r\n")
            if line is not None:
                self._on_chunk_size(line)
            return i
        # _TRAILER: buf starts as CRLF, so an empty trailer section ends at the first CRLF too
        i, trailer = self._collect(data, i, b"\r\n\r\n")
        if trailer is not None:
            self._done()
        return i

    def _collect(self, data: bytes, i: int, term: bytes) -> tuple[int, bytes | None]:
        """Gather bytes up to and including `term` (bounded by MAX_HEAD): (next offset, the bytes) or
        (len(data), None) while incomplete."""
        if not self.buf:  # the common case: the whole head is in this read; no copy until found
            end = data.find(term, i, i + MAX_HEAD + len(term))
            if end >= 0:
                return end + len(term), data[i : end + len(term)]
            self.buf += data[i : i + MAX_HEAD + len(term)]
            if len(self.buf) > MAX_HEAD:
                raise _Opaque
            return len(data), None
        old = len(self.buf)
        self.buf += data[i : i + MAX_HEAD + len(term) - old]
        end = self.buf.find(term, max(0, old - len(term) + 1))
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                raise _Opaque
            return len(data), None
        whole = bytes(self.buf[: end + len(term)])
        self.buf.clear()
        return i + end + len(term) - old, whole

    def _on_chunk_size(self, line: bytes) -> None:
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _Opaque from None
        if size < 0:
            raise _Opaque
        if size == 0:
            self.state = _TRAILER
            self.buf += b"\r\n"
        else:
            self.state, self.left = _CHUNK_DATA, size + 2

    def _body(self, lower_head: bytes, until_close: bool) -> None:
        """Set the state for the body a head announces (until_close: what a message without a length
        means: a response's body runs to the close, a request has none)."""
        coding = _header_value(lower_head, b"transfer-encoding")
        if coding is not None:
            if coding.rsplit(b",", 1)[-1].strip() == b"chunked":
                self.state = _CHUNK_SIZE
            elif until_close:
                self.state = _UNTIL_CLOSE
            else:
                raise _Opaque  # a request body with a length no one can tell
            return
        length = _header_value(lower_head, b"content-length")
        if length is None:
            if until_close:
                self.state = _UNTIL_CLOSE
            else:
                self._done()
            return
        if not length.isdigit():
            raise _Opaque
        self.left = int(length)
        if self.left:
            self.state = _BODY
        else:
            self._done()

    def _done(self) -> None:
        self.state = _START
        self.completed += 1

    def eof(self) -> None:
        """The stream ended: a body read until close is complete."""
        if self.state == _UNTIL_CLOSE:
            self._done()

    def _on_head(self, head: bytes) -> None:
        raise NotImplementedError


class _RequestFramer(_Framer):
    def _on_head(self, head: bytes) -> None:
        space = head.find(b" ")
        method = head[:space]
        line = head[: head.find(b"\r\n")]
        if space <= 0 or not (method.isalpha() and method.isupper()) or b" HTTP/1." not in line:
            raise _Opaque
        if method == b"CONNECT":
            raise _Opaque  # a tunnel: no more HTTP/1.1 framing to follow (an Upgrade turns at its 101)
        self.methods.append(method)
        self._body(head.lower(), until_close=False)


class _ResponseFramer(_Framer):
    def _on_head(self, head: bytes) -> None:
        parts = head.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1][:3].isdigit():
            raise _Opaque
        status = int(parts[1][:3])
        if status == 101:
            raise _Opaque
        if status < 200:  # an interim response (100 Continue): the final one follows, same exchange
            self.state = _HEAD
            return
        method = self.methods.popleft() if self.methods else b"GET"
        if method == b"HEAD" or status in (204, 304):
            self._done()
        else:
            self._body(head.lower(), until_close=True)


# -- one direction's writer --------------------------------------------------------------------------


class _Pipe:
    """Bytes one way: written straight to `dest` on the fast path (no fault needs them held), else queued
    with a not-before time and written in order by one task that also paces and stalls them."""

    def __init__(self, link: _Link, down: bool) -> None:
        self.link = link
        self.down = down  # upstream -> client
        self.dest: asyncio.Transport | None = None
        self.queue: deque[tuple[float, bytes | None]] = deque()  # (not before, data | None = EOF)
        self.queued = 0
        self.task: asyncio.Task[None] | None = None
        self.dest_paused = False
        self.wake = asyncio.Event()
        self.eof_sent = False
        self.counts = link.proxy._counts
        self.key = "bytes_down" if down else "bytes_up"
        self.shut = False  # nothing more may be written to dest (its FIN went out, or the request dropped)

    def send(self, data: bytes, not_before: float = 0.0) -> None:
        dest = self.dest
        idle = self.task is None and not_before <= 0.0 and dest is not None and not self.queue
        if idle and not self.link.proxy.active.slow:  # the fast path: straight to the other side
            if not self.shut and not dest.is_closing():
                dest.write(data)  # type: ignore[union-attr]
                self.counts[self.key] += len(data)
            return
        self.queue.append((not_before, data))
        self.queued += len(data)
        if self.queued > MAX_QUEUE:
            self.link.hold_source(self.down, "queue")
        self._kick()

    def send_eof(self) -> None:
        if self.task is None and not self.queue and self.dest is not None:
            self._write_eof()
            return
        self.queue.append((0.0, None))
        self._kick()

    def attach(self, dest: asyncio.Transport) -> None:
        self.dest = dest
        if self.queue:
            self._kick()

    def _kick(self) -> None:
        if self.task is None and self.dest is not None and not self.link.closed:
            self.task = self.link.proxy.spawn(self._drain())

    def _write(self, data: bytes) -> None:
        dest = self.dest
        if dest is None or self.shut or dest.is_closing():
            return  # the other side is gone: what it would have read is dropped, as the kernel would
        dest.write(data)
        self.counts[self.key] += len(data)

    def _write_eof(self) -> None:
        if self.eof_sent:
            return
        self.eof_sent = True
        dest = self.dest
        if dest is not None and not self.shut and not dest.is_closing() and dest.can_write_eof():
            dest.write_eof()
        self.shut = True
        self.link.direction_done()

    async def _drain(self) -> None:
        proxy, loop = self.link.proxy, asyncio.get_running_loop()
        try:
            while self.queue and not self.link.closed:
                not_before, data = self.queue.popleft()
                self.queued -= len(data or b"")
                wait = not_before - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    self._write_eof()
                    continue
                stall = proxy.loss_stall()
                if stall:
                    await asyncio.sleep(stall)
                await self._paced(data)
                if self.queued <= MAX_QUEUE // 2:
                    self.link.release_source(self.down, "queue")
                while self.dest_paused and not self.link.closed:
                    self.wake.clear()
                    await self.wake.wait()
        finally:
            self.task = None

    async def _paced(self, data: bytes) -> None:
        """Write data, no faster than the tightest bandwidth cap (shared by every connection one way)."""
        proxy, loop = self.link.proxy, asyncio.get_running_loop()
        rate = proxy.active.rate
        if rate <= 0:
            self._write(data)
            return
        step = max(1024, int(rate * PACE_SLICE_S))
        for at in range(0, len(data), step):
            piece = data[at : at + step]
            start = max(loop.time(), proxy.free_at[self.down])
            proxy.free_at[self.down] = start + len(piece) / rate
            delay = proxy.free_at[self.down] - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._write(piece)
        proxy.hit(proxy.active.bandwidth, 1)


# -- one client connection and its upstream connection ------------------------------------------------


class _Link:
    def __init__(self, proxy: FaultProxy, client: asyncio.Transport) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: asyncio.Transport | None = None
        methods: deque[bytes] = deque()
        self.requests = _RequestFramer(methods)
        self.responses = _ResponseFramer(methods)
        self.to_upstream = _Pipe(self, down=False)
        self.to_client = _Pipe(self, down=True)
        self.to_client.attach(client)
        self.closed = False
        self.draining = False  # dropped: what the client still sends is discarded until it closes
        self.pending: _Fault | None = None  # a reset or drop waiting for the end of its request
        self.held_by: str | None = None  # the hang fault holding this connection's requests
        self.held: deque[tuple[bytes, bool]] = deque()  # (segment, starts a request) while held
        self.held_bytes = 0
        self.holds: dict[bool, set[str]] = {False: set(), True: set()}  # why each source's reading paused
        self.done_directions = 0
        self.tick = proxy.tick  # the idle sweep's tick of the last traffic either way
        self.connect_task: asyncio.Task[None] | None = None
        self.seen_request = False  # the client has sent the start of a request
        self.refused = False  # every upstream refused: the client is reset once its request is counted

    # flow control: a source's reading is paused while anything holds it
    def refuse(self) -> None:
        """Every upstream refused. A client that has not sent its request yet is reset when it does, so
        that the request is counted: the proxy's request count then equals the engine's records through a
        target's outage (a client that sends nothing goes at the idle sweep)."""
        if self.seen_request:
            self.close(reset_client=True)
        else:
            self.refused = True

    def hold_source(self, down: bool, why: str) -> None:
        source = self.upstream if down else self.client
        if not self.holds[down] and source is not None:
            source.pause_reading()
        self.holds[down].add(why)

    def release_source(self, down: bool, why: str) -> None:
        reasons = self.holds[down]
        if why in reasons:
            reasons.discard(why)
            source = self.upstream if down else self.client
            if not reasons and source is not None and not source.is_closing():
                source.resume_reading()

    # client -> upstream
    def from_client(self, data: bytes) -> None:
        proxy = self.proxy
        self.tick = proxy.tick
        if self.draining or self.closed:
            return
        was_opaque = self.requests.state == _OPAQUE
        starts = self.requests.feed(data)
        self.seen_request = self.seen_request or bool(starts) or was_opaque
        if self.refused:  # no upstream: count what was asked, then reset (the kill test counts on it)
            proxy._counts["requests"] += len(starts)
            self.close(reset_client=True)
            return
        if not was_opaque and self.requests.state == _OPAQUE:
            self._turn_opaque()
        if not proxy.active.per_request and self.held_by is None and self.pending is None:
            proxy._counts["requests"] += len(starts)  # the fast path: nothing to draw per request
            self.to_upstream.send(data)
            return
        if self.pending is not None:  # a request to reset or drop is still arriving: its bytes go nowhere
            if starts or self.requests.state in (_START, _OPAQUE):
                self._act(self.pending)
            return
        segments = _split(data, starts)
        if self.held_by is not None:
            self._hold(segments)
        else:
            self._forward(segments, decided=False)

    def _forward(self, segments: deque[tuple[bytes, bool]], decided: bool) -> None:
        """Send segments upstream, drawing the per-request faults at each request's first byte (`decided`:
        the first one was drawn already: a held request being released)."""
        while segments:
            segment, starts = segments[0]
            if starts and not decided:  # a released request was counted and drawn when it arrived
                self.proxy.count("requests")
                fault = self.proxy.draw_request_fault()
                if fault is not None and not self._apply(fault, segments):
                    return
            decided = False
            segments.popleft()
            self.to_upstream.send(segment)

    def _apply(self, fault: _Fault, segments: deque[tuple[bytes, bool]]) -> bool:
        """Carry out a per-request fault; False when the segments must not be forwarded now."""
        if fault.kind == "hang":
            self.held_by = fault.name
            self.proxy.held.setdefault(fault.name, set()).add(self)
            self._hold(segments)
            return False
        # reset and drop act once the whole request has arrived, so that the client is reading when its
        # connection goes (a reset that lands between a client's writes is reported to its next write,
        # and its read then sees a plain EOF: the error kind would depend on the client's write pattern)
        arrived = any(starts for _, starts in list(segments)[1:]) or self.requests.state in (_START, _OPAQUE)
        segments.clear()  # this request, and whatever follows it, never reaches the upstream
        self.pending = fault
        if arrived:
            self._act(fault)
        return False

    def _act(self, fault: _Fault) -> None:
        if fault.kind == "reset":
            self.close(reset_client=True)
            return
        self.draining = True  # drop: a FIN, then what the client still sends is read and discarded
        self.to_client.queue.clear()
        self.to_client.shut = True
        if self.client.can_write_eof():
            self.client.write_eof()
        if self.upstream is not None:
            self.upstream.close()

    def _hold(self, segments: deque[tuple[bytes, bool]]) -> None:
        for segment in segments:
            self.held.append(segment)
            self.held_bytes += len(segment[0])
        segments.clear()
        if self.held_bytes > MAX_QUEUE:
            self.hold_source(False, "hang")

    def release(self) -> None:
        """The hang fault was cleared: forward what was held, its first request without a new draw."""
        self.held_by = None
        segments, self.held, self.held_bytes = self.held, deque(), 0
        self.release_source(False, "hang")
        if not self.closed:
            self._forward(segments, decided=True)

    def _turn_opaque(self) -> None:
        self.proxy.count("opaque_streams")
        self.responses.state = _OPAQUE  # requests no longer tell where responses end

    def client_eof(self) -> None:
        if self.draining or self.held_by is not None:
            self.close()  # the client gave up on a dropped or held request
            return
        self.to_upstream.send_eof()

    # upstream -> client
    def from_upstream(self, data: bytes) -> None:
        self.tick = self.proxy.tick
        if self.closed or self.draining:
            return
        before = self.responses.completed
        starts = self.responses.feed(data)
        if self.responses.opaque and not self.requests.opaque:
            self.requests.state = _OPAQUE
            self.proxy.count("opaque_streams")
        if self.responses.completed != before:
            self.proxy._counts["responses"] += self.responses.completed - before
        latency = self.proxy.active.latency
        if not latency or not starts:
            self.to_client.send(data)
            return
        for segment, is_start in _split(data, starts):
            not_before = self.proxy.response_delay(latency) if is_start else 0.0
            self.to_client.send(segment, not_before)

    def upstream_eof(self) -> None:
        before = self.responses.completed
        self.responses.eof()
        if self.responses.completed != before:
            self.proxy.count("responses")
        if not self.draining:
            self.to_client.send_eof()

    def direction_done(self) -> None:
        self.done_directions += 1
        if self.done_directions >= 2:
            self.close()

    def close(self, reset_client: bool = False, reset_upstream: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if reset_client:
            _reset(self.client)
        elif not self.client.is_closing():
            self.client.close()
        if self.upstream is not None:
            if reset_upstream:  # mirrored; a reset fault's upstream did nothing wrong: it gets a FIN
                _reset(self.upstream)
            elif not self.upstream.is_closing():
                self.upstream.close()
        for pipe in (self.to_client, self.to_upstream):
            pipe.queue.clear()
            pipe.wake.set()
            if pipe.task is not None:
                pipe.task.cancel()
        if self.connect_task is not None:
            self.connect_task.cancel()
        if self.held_by is not None:
            self.proxy.held.get(self.held_by, set()).discard(self)
        self.proxy.forget(self)


def _split(data: bytes, starts: list[int]) -> deque[tuple[bytes, bool]]:
    """data cut at each start offset: (segment, whether it starts a message)."""
    if not starts:
        return deque([(data, False)])
    segments: deque[tuple[bytes, bool]] = deque()
    if starts[0] > 0:
        segments.append((data[: starts[0]], False))
    for at, end in zip(starts, [*starts[1:], len(data)], strict=True):
        segments.append((data[at:end], True))
    return segments


class _ClientSide(asyncio.Protocol):
    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.link: _Link | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # a stream transport (uvloop's is not a subclass)
        self.link = self.proxy.accept(transport)
        if self.link is not None:
            self.data_received = self.link.from_client  # type: ignore[method-assign]  # one call less a read

    def data_received(self, data: bytes) -> None:
        if self.link is not None:
            self.link.from_client(data)

    def eof_received(self) -> bool:
        if self.link is not None:
            self.link.client_eof()
        return True  # keep writing the responses still coming

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link is not None:
            self.link.close(reset_upstream=exc is not None)

    def pause_writing(self) -> None:
        if self.link is not None:
            self.link.to_client.dest_paused = True
            self.link.hold_source(True, "client-buffer")

    def resume_writing(self) -> None:
        if self.link is not None:
            self.link.to_client.dest_paused = False
            self.link.to_client.wake.set()
            self.link.release_source(True, "client-buffer")


class _UpstreamSide(asyncio.Protocol):
    def __init__(self, link: _Link) -> None:
        self.link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # a stream transport (uvloop's is not a subclass)
        if self.link.closed or self.link.draining:
            transport.abort()  # the client left (or was dropped) while this connection was being made
            return
        self.link.upstream = transport
        if self.link.holds[True]:
            transport.pause_reading()
        self.link.to_upstream.attach(transport)
        self.data_received = self.link.from_upstream  # type: ignore[method-assign]  # one call less a read

    def data_received(self, data: bytes) -> None:
        self.link.from_upstream(data)

    def eof_received(self) -> bool:
        self.link.upstream_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link.upstream is None or self.link.closed:
            return  # never attached (aborted above), or closed by the link
        if exc is not None:
            self.link.close(reset_client=True)  # mirror an upstream reset
        elif not self.link.to_client.eof_sent:
            self.link.upstream_eof()  # closed without a FIN seen (closed by us): finish the client side

    def pause_writing(self) -> None:
        self.link.to_upstream.dest_paused = True
        self.link.hold_source(False, "upstream-buffer")

    def resume_writing(self) -> None:
        self.link.to_upstream.dest_paused = False
        self.link.to_upstream.wake.set()
        self.link.release_source(False, "upstream-buffer")


# -- the proxy ---------------------------------------------------------------------------------------


class FaultProxy:
    """See the module docstring. Thread-safe: set_fault, clear_fault, counts and stop may be called from
    any thread; everything else runs on the proxy's own loop thread."""

    def __init__(
        self,
        upstreams: Sequence[tuple[str, int]],
        listen_host: str = "127.0.0.1",
        seed: int = 0,
        *,
        max_connections: int | None = None,
        connect_timeout_s: float = 2.0,
        idle_timeout_s: float = 300.0,
    ) -> None:
        if not upstreams:
            raise ValueError("FaultProxy needs at least one upstream")
        self.upstreams = [(str(host), int(port)) for host, port in upstreams]
        self.listen_host = listen_host
        self.max_connections = max_connections or default_max_connections()
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.active = _Active()
        self.held: dict[str, set[_Link]] = {}
        self.free_at = {False: 0.0, True: 0.0}  # bandwidth: when each direction's link is free again
        self._rng = random.Random(seed)  # drawn on the loop thread only
        # written by the loop thread only (and fault keys added once by set_fault); counts() copies it in
        # one C-level dict copy under the GIL, so no lock is needed on the hot path
        self._counts: dict[str, int] = dict.fromkeys(COUNT_KEYS, 0)
        self._lock = threading.Lock()  # orders set_fault / clear_fault against each other
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_upstream = 0
        self.tick = 0  # advanced by the idle sweep every IDLE_SWEEP_S
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> int:
        """Listen on a free port of listen_host and forward; returns the port."""
        if self._thread is not None:
            raise RuntimeError("FaultProxy already started")
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="scenariokit-faultproxy", daemon=True)
        self._thread.start()
        if not started.wait(timeout_s) or failure:
            self._thread = None
            raise RuntimeError(f"fault proxy did not start: {failure[0] if failure else 'timed out'}")
        return self.port

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ClientSide(self), self.listen_host, 0, backlog=1024, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.spawn(self._sweep_idle())

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close the listener and every connection (clients get RST), end the loop thread; bounded."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout_s)
        with contextlib.suppress(RuntimeError):  # the loop closed already
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        self._thread = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close(reset_client=True)
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(3):  # aborted transports close their sockets on the next iterations
            await asyncio.sleep(0)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults (any thread) ------------------------------------------------------------------------

    def set_fault(self, name: str, kind: str, params: Mapping[str, Any]) -> None:
        """Start (or change) the named fault; in force for every byte and request after this returns."""
        fault = _Fault(name, kind, check_fault(kind, params))
        with self._lock:
            self._counts.setdefault(f"fault:{name}", 0)
            previous = next((f for f in self.active.faults if f.name == name), None)
            others = tuple(f for f in self.active.faults if f.name != name)
            self.active = _active_of((*others, fault))
        if previous is not None and previous.kind == "hang" and kind != "hang":
            self._call(self._release_held, name)

    def clear_fault(self, name: str) -> None:
        """End the named fault (a no-op when it is not active); a hang fault releases what it held."""
        with self._lock:
            self.active = _active_of(tuple(f for f in self.active.faults if f.name != name))
        self._call(self._release_held, name)

    def _call(self, function: Callable[[str], None], name: str) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(function, name)

    def _release_held(self, name: str) -> None:
        for link in list(self.held.pop(name, ())):
            link.release()

    def counts(self) -> dict[str, int]:
        """A snapshot: COUNT_KEYS, and `fault:<name>` per fault ever set (its hits: responses delayed,
        requests reset, dropped or held, chunks lost, chunks paced)."""
        return dict(self._counts)

    # -- loop-thread helpers --------------------------------------------------------------------------

    def loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def count(self, key: str, n: int = 1) -> None:
        self._counts[key] += n

    def hit(self, faults: tuple[_Fault, ...], n: int) -> None:
        for fault in faults:
            self._counts[f"fault:{fault.name}"] += n

    def draw_request_fault(self) -> _Fault | None:
        for fault in self.active.per_request:
            if self._rng.random() < fault.params["share"]:
                self.hit((fault,), 1)
                return fault
        return None

    def response_delay(self, latency: tuple[_Fault, ...]) -> float:
        """The loop time before which a response's first byte is not forwarded."""
        delay = 0.0
        for fault in latency:
            jitter = fault.params["jitter_s"]
            delay += max(0.0, fault.params["delay_s"] + self._rng.uniform(-jitter, jitter))
        self.hit(latency, 1)
        return self.loop_time() + delay

    def loss_stall(self) -> float:
        """How long one chunk waits for its retransmissions, 0.0 when it is not lost."""
        stall = 0.0
        for fault in self.active.losses:
            share, wait = fault.params["share"], fault.params["stall_s"]
            for _ in range(MAX_RETRANSMITS):
                if self._rng.random() >= share:
                    break
                stall += wait
                wait *= 2
                self.hit((fault,), 1)
        return stall

    def accept(self, client: asyncio.Transport) -> _Link | None:
        self.count("connections")
        if len(self._links) >= self.max_connections:
            self.count("over_limit")
            _reset(client)
            return None
        link = _Link(self, client)
        self._links.add(link)
        self.count("active")
        link.connect_task = self.spawn(self._connect(link))
        return link

    def forget(self, link: _Link) -> None:
        if link in self._links:
            self._links.discard(link)
            self.count("active", -1)

    async def _connect(self, link: _Link) -> None:
        """Round robin from the next upstream; one that refuses is skipped for the one after it."""
        loop = asyncio.get_running_loop()
        first = self._next_upstream
        self._next_upstream = (first + 1) % len(self.upstreams)
        for attempt in range(len(self.upstreams)):
            host, port = self.upstreams[(first + attempt) % len(self.upstreams)]
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: _UpstreamSide(link), host, port),
                    self.connect_timeout_s,
                )
            except (OSError, TimeoutError):
                self.count("upstream_refused")
                continue
            link.connect_task = None
            return
        self.count("no_upstream")
        link.connect_task = None
        link.refuse()

    async def _sweep_idle(self) -> None:
        """Close links without traffic for idle_timeout_s: traffic stamps a link with the current tick
        (an attribute copy on the hot path, not a clock read)."""
        idle_ticks = max(1, math.ceil(self.idle_timeout_s / IDLE_SWEEP_S))
        while True:
            await asyncio.sleep(IDLE_SWEEP_S)
            self.tick += 1
            for link in [link for link in self._links if self.tick - link.tick > idle_ticks]:
                self.count("idle_closed")
                link.close(reset_client=True)
