"""The HTTP API: vLLM's OpenAI-compatible endpoints and a classic REST recognition API on the same models.

Admission is bounded: at most `max_in_flight` requests run, at most `max_queue` wait; past that a request
gets 429 with Retry-After at once, never a hang. Every request has a budget from its arrival that covers its
time in the queue, and work is abandoned when the client leaves. The work per request is bounded before
anything is read whole: the body (413), an image fetched from an allowed host (size and time), an image's
pixels (from its header). Bad input gets a 4xx with an OpenAI-shaped error body and never reaches a model;
a failing upstream image host is 502/504. `/metrics` uses vLLM's metric names, plus `scenariokit_` ones for
the worker pool (restarts, liveness) and failures by reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import random
import time
import traceback
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from scenariokit.compile.cards import text_cards
from scenariokit_server.engine import (
    MAX_IMAGE_BYTES,
    MAX_PIXELS,
    BadImage,
    ModelFailed,
    ModelPool,
    PoolEvents,
    TextLine,
    Worker,
    WorkerDied,
    check_image,
)

# read the text; what the image shows (an ImageNet class); is it safe (sfw) or not (nsfw)
SERVED_MODELS = ("ocr", "classify", "moderation")
LABEL_MODELS = frozenset({"classify", "moderation"})  # models that answer with labels, best first
MAX_BODY_BYTES = 16 * 1024 * 1024  # a 10 MB image in base64 (13.4 MB) and its JSON fit
MAX_FAULT_LATENCY_S = 60.0
MAX_FAULT_LEAK_BYTES = 64 << 20  # per request; a worker's total is capped too (engine.MAX_LEAK_TOTAL_BYTES)
BYTE_UNITS = (("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("kb", 1e3), ("mb", 1e6), ("gb", 1e9))
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)


@dataclass
class Fault:
    """Chaos hook, off by default: added latency before the model, a share of requests failing 500, and a
    planted leak (bytes each request leaves behind in the model worker that served it, for soak tests)."""

    latency_s: float = 0.0
    error_rate: float = 0.0
    leak_bytes: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    @classmethod
    def parse(cls, text: str | None) -> Fault:
        fault = cls()
        for part in filter(None, (text or "").split(",")):
            key, _, value = part.partition("=")
            if key.strip() == "latency":
                fault.latency_s = _seconds(value.strip())
            elif key.strip() == "error_rate":
                fault.error_rate = float(value.strip().rstrip("%")) / (100 if "%" in value else 1)
            elif key.strip() == "leak":
                fault.leak_bytes = _bytes(value.strip())
            else:
                raise ValueError(f"unknown fault `{key}`: use latency=200ms, error_rate=0.1 or leak=100KB")
        if not 0 <= fault.latency_s <= MAX_FAULT_LATENCY_S:  # also refuses nan and inf
            raise ValueError(f"latency must be from 0 to {MAX_FAULT_LATENCY_S:g}s")
        if not 0 <= fault.error_rate <= 1:
            raise ValueError("error_rate must be from 0 to 1 (or 0% to 100%)")
        if not 0 <= fault.leak_bytes <= MAX_FAULT_LEAK_BYTES:
            raise ValueError(f"leak must be from 0 to {MAX_FAULT_LEAK_BYTES >> 20}MiB per request")
        return fault


def _bytes(text: str) -> int:
    """`1048576`, `100KB`, `1MiB` (decimal and binary units; `B` alone is bytes) as whole bytes."""
    lowered, scale = text.lower(), 1
    for unit, unit_scale in BYTE_UNITS:
        if lowered.endswith(unit):
            lowered, scale = lowered[: -len(unit)], unit_scale
            break
    else:
        lowered = lowered.removesuffix("b")
    value = float(lowered) * scale
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a number of bytes")
    return int(value)


def _seconds(text: str) -> float:
    for unit, scale in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)


@dataclass
class Settings:
    workers: int = 2
    max_in_flight: int = 2
    max_queue: int = 8
    request_timeout_s: float = 30.0
    fault: Fault = field(default_factory=Fault)
    allowed_url_hosts: tuple[str, ...] = ()
    admin: bool = False
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout_s: float = 10.0  # the whole body must arrive in this time: a slow sender is cut off
    max_pixels: int = MAX_PIXELS
    image_fetch_bytes: int = MAX_IMAGE_BYTES
    image_fetch_timeout_s: float = 5.0
    # False (--no-warm-up): /health is 200 before the models load; they load on first use
    warm_up: bool = True


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "BadRequestError",
        param: str | None = None,
        headers: dict[str, str] | None = None,
        reason: str = "bad_request",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.headers = status, message, kind, param, headers
        self.reason = reason  # the failure counter's label: a short, fixed vocabulary

    def response(self) -> JSONResponse:
        body = {
            "error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r, label = self.registry, ["model_name"]
        ProcessCollector(registry=r)
        self.running = Gauge(
            "vllm:num_requests_running", "Requests being processed by a model.", label, registry=r
        )
        self.waiting = Gauge(
            "vllm:num_requests_waiting", "Requests waiting for a model worker.", label, registry=r
        )
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time to first token.",
            label,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "End-to-end request latency.",
            label,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "vllm:inter_token_latency_seconds",
            "Gap between streamed tokens.",
            label,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "vllm:request_queue_time_seconds",
            "Time waiting for a worker.",
            label,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "vllm:request_inference_time_seconds",
            "Model time per request.",
            label,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prompt tokens processed.", label, registry=r)
        self.generation_tokens = Counter("vllm:generation_tokens", "Tokens generated.", label, registry=r)
        self.success = Counter(
            "vllm:request_success", "Finished requests.", [*label, "finished_reason"], registry=r
        )
        self.rejected = Counter(
            "model_server_rejected", "Requests refused by admission control.", ["reason"], registry=r
        )
        self.errors = Counter(
            "model_server_errors", "Requests answered with an error.", ["status"], registry=r
        )
        self.failures = Counter(
            "scenariokit_request_failures",
            "Requests that failed, by model (empty before the model is known), reason and HTTP status.",
            [*label, "reason", "status"],
            registry=r,
        )
        self.worker_restarts = Counter(
            "scenariokit_worker_restarts",
            "Model worker processes started to replace one that died (each worker holds every model).",
            ["worker"],
            registry=r,
        )
        self.worker_up = Gauge(
            "scenariokit_worker_up",
            "1 while a model worker has its models loaded and is alive.",
            ["worker"],
            registry=r,
        )
        self.worker_pid = Gauge(
            "scenariokit_worker_pid", "The process id of each model worker.", ["worker"], registry=r
        )
        self.worker_rss = Gauge(
            "scenariokit_worker_resident_memory_bytes",
            "Resident memory of each model worker process (which holds the models), read at each scrape.",
            ["worker"],
            registry=r,
        )
        self.worker_leaked = Gauge(
            "scenariokit_worker_leaked_bytes",
            "Bytes the leak fault hook has retained in each model worker (0 without it), at each scrape.",
            ["worker"],
            registry=r,
        )

    def read_worker_rss(self, workers: list[Worker]) -> None:
        """Sets each live worker's RSS and leaked bytes in the same scrape; a worker between death and
        restart keeps no stale value."""
        for worker in workers:
            rss = process_rss(worker.pid) if worker.pid is not None else None
            if rss is not None:
                self.worker_rss.labels(str(worker.index)).set(rss)
                self.worker_leaked.labels(str(worker.index)).set(worker.leaked_bytes)
            else:
                for gauge in (self.worker_rss, self.worker_leaked):
                    with contextlib.suppress(KeyError):  # never set, or already removed
                        gauge.remove(str(worker.index))

    def pool_events(self) -> PoolEvents:
        def up(worker: Worker) -> None:
            self.worker_up.labels(str(worker.index)).set(1)
            self.worker_pid.labels(str(worker.index)).set(worker.pid or 0)

        return PoolEvents(
            on_up=up,
            on_down=lambda worker: self.worker_up.labels(str(worker.index)).set(0),
            on_restart=lambda worker: self.worker_restarts.labels(str(worker.index)).inc(),
        )


def process_rss(pid: int) -> int | None:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


class Admission:
    """At most `max_in_flight` running and `max_queue` waiting; anything more is refused at once.

    The per-model gauges move by inc/dec inside try/finally, so a request that fails, times out or is
    cancelled in any phase leaves them where it found them. (They were once set from a count shared by all
    models, so a model's gauge kept the last value it was set to: an idle server showed a phantom queue.)"""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.semaphore = asyncio.Semaphore(settings.max_in_flight)
        self.capacity = settings.max_in_flight + settings.max_queue
        self.admitted = 0
        self.metrics = metrics

    @contextlib.asynccontextmanager
    async def slot(self, model: str) -> AsyncIterator[float]:
        """Yields the seconds spent queued. The caller's deadline (asyncio.timeout) covers the wait."""
        if self.admitted >= self.capacity:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(
                429,
                "the server is at capacity; retry later",
                "RateLimitError",
                headers={"Retry-After": "1"},
                reason="queue_full",
            )
        self.admitted += 1
        try:
            waiting, queued = self.metrics.waiting.labels(model), time.perf_counter()
            waiting.inc()
            try:
                await self.semaphore.acquire()
            finally:
                waiting.dec()
            try:
                self.metrics.queue.labels(model).observe(time.perf_counter() - queued)
                with self.metrics.running.labels(model).track_inprogress():
                    yield time.perf_counter() - queued
            finally:
                self.semaphore.release()
        finally:
            self.admitted -= 1


# --- input ----------------------------------------------------------------------------------------


def refuse_body(status: int, message: str, reason: str) -> ApiError:
    # Connection: close, so uvicorn drops the rest of a body it never read instead of parsing it as the
    # next request on the connection
    kind = "RequestTooLargeError" if status == 413 else "RequestTimeoutError"
    return ApiError(status, message, kind, headers={"Connection": "close"}, reason=reason)


async def read_body(request: Request, settings: Settings) -> bytes:
    """The body, refused with 413 before it is read whole: a Content-Length over the cap at once, and a
    chunked body as soon as the bytes counted so far pass it. The whole body must arrive within
    `body_timeout_s` (408), so a client that trickles it cannot hold a connection and its buffer."""
    cap = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length is not a number", reason="bad_request")
        if int(declared) > cap:
            raise refuse_body(
                413, f"the body is {int(declared):,} bytes; the limit is {cap:,}", "body_too_large"
            )
    chunks, size = [], 0
    try:
        async with asyncio.timeout(settings.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise refuse_body(413, f"the body passed the limit of {cap:,} bytes", "body_too_large")
                chunks.append(chunk)
    except TimeoutError:
        message = f"the body did not arrive within {settings.body_timeout_s:g}s"
        raise refuse_body(408, message, "body_timeout") from None
    except ClientDisconnect:
        raise ApiError(499, "the client closed the connection", reason="client_gone") from None
    return b"".join(chunks)


async def json_body(request: Request, settings: Settings) -> dict[str, Any]:
    raw = await read_body(request, settings)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON", reason="bad_json") from None
    except RecursionError:  # the C scanner's own depth guard, reached by [[[[...]]]] a few KB long
        raise ApiError(400, "the request body is nested too deeply", reason="bad_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def decode_base64(text: Any, param: str) -> bytes:
    if not isinstance(text, str):
        raise ApiError(400, f"`{param}` must be a base64 string", param=param)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"`{param}` is not valid base64", param=param) from None


async def image_from_url(url: Any, settings: Settings, param: str) -> bytes:
    if not isinstance(url, str):
        raise ApiError(400, f"`{param}` must be a string URL", param=param)
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if not header.startswith("data:image/") or not header.endswith(";base64"):
            raise ApiError(400, "only `data:image/...;base64,` URLs are accepted", param=param)
        return decode_base64(payload, param)
    if url_allowed(url, settings.allowed_url_hosts):
        return await fetch_image(url, settings, param)
    raise ApiError(
        400,
        "image URLs must be data: URLs (this server fetches http(s) only from hosts allowed at start-up)",
        param=param,
    )


def url_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    """An http(s) URL whose host is allowed: an entry `host` allows any port of it, `host:port` that
    port only (the runner allows its own image server's port on 127.0.0.1 and nothing else). Decided
    from the URL's text, before any connection."""
    try:
        parsed = urlparse(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:  # a port that is not a number, or out of range
        return False
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    return parsed.hostname in allowed or f"{parsed.hostname}:{port}" in allowed


async def fetch_image(url: str, settings: Settings, param: str) -> bytes:
    """GET an image from an allowed host, streamed and stopped at `image_fetch_bytes` and at
    `image_fetch_timeout_s` for the whole transfer (httpx's own timeouts are per read, which a host that
    drips a byte a second never trips). Redirects are not followed: they could lead off the allowed hosts."""
    cap, limit_s = settings.image_fetch_bytes, settings.image_fetch_timeout_s
    chunks, size = [], 0
    try:
        async with (
            asyncio.timeout(limit_s),
            httpx.AsyncClient(timeout=limit_s) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise ApiError(
                    502,
                    f"the image host answered HTTP {response.status_code}",
                    "BadGatewayError",
                    param=param,
                    reason="image_host",
                )
            # decoded bytes: a gzip bomb meets the cap too
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    raise ApiError(
                        400,
                        f"the image at the URL is over {cap:,} bytes",
                        param=param,
                        reason="bad_image",
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            504,
            f"the image host did not send the image within {limit_s:g}s",
            "GatewayTimeoutError",
            param=param,
            reason="image_host",
        ) from None
    except httpx.TimeoutException:
        raise ApiError(
            504, "the image host timed out", "GatewayTimeoutError", param=param, reason="image_host"
        ) from None
    except httpx.HTTPError as exc:
        raise ApiError(
            502,
            f"the image host could not be reached ({type(exc).__name__})",
            "BadGatewayError",
            param=param,
            reason="image_host",
        ) from None
    return b"".join(chunks)


async def image_of(body: dict[str, Any], settings: Settings) -> bytes:
    """A REST body's image: `image_url` (a data: URL, or http(s) from an allowed host) or `image_base64`.
    An empty URL and a body with neither field are 400 before anything is fetched."""
    if "image_url" in body:
        if body["image_url"] == "":
            raise ApiError(400, "`image_url` is empty", param="image_url")
        return await image_from_url(body["image_url"], settings, "image_url")
    if "image_base64" in body:
        return decode_base64(body["image_base64"], "image_base64")
    raise ApiError(400, "give `image_url` or `image_base64`", param="image_url")


def checked(data: bytes, param: str, settings: Settings) -> bytes:
    try:
        check_image(data, settings.max_pixels)
    except BadImage as exc:
        raise ApiError(400, str(exc), param=param, reason="bad_image") from None
    return data


def include_usage_of(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise ApiError(400, "`stream_options` must be an object", param="stream_options")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise ApiError(400, "`stream_options.include_usage` must be true or false", param="stream_options")
    return include


async def until_disconnected(request: Request) -> None:
    """Returns when the client closes the connection. Only after the body is read: uvicorn's receive
    then blocks until `http.disconnect`."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def chat_image_url(body: dict[str, Any]) -> tuple[Any, int]:
    """The image URL of a chat request and the words of its text parts (prompt tokens)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` must be a non-empty list", param="messages")
    url, words = None, 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "content" not in message:
            raise ApiError(
                400, f"messages[{i}] must be an object with `role` and `content`", param="messages"
            )
        content = message["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise ApiError(
                400, f"messages[{i}].content must be a string or a list of parts", param="messages"
            )
        for part in parts:
            if not isinstance(part, dict):
                raise ApiError(
                    400, f"messages[{i}] has a content part that is not an object", param="messages"
                )
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                words += len(part["text"].split())
            elif part.get("type") == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
    if url is None:
        raise ApiError(400, "the request has no image: add an `image_url` content part", param="messages")
    return url, words + 1  # an image counts as one prompt token here


def answer_of(model: str, lines: list[TextLine]) -> str:
    """The chat answer: the text read (ocr), or the most likely label (classify, moderation)."""
    if model in LABEL_MODELS:
        return lines[0].text if lines else ""
    return " ".join(line.text for line in lines)


# --- the app --------------------------------------------------------------------------------------


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.admission = Admission(settings, self.metrics)
        self.pool: ModelPool | None = None
        self.ready = False
        self.warmup_s: list[float] = []

    async def start(self) -> None:
        self.pool = ModelPool(
            self.settings.workers,
            text_cards(1)[0].png,
            max_pixels=self.settings.max_pixels,
            events=self.metrics.pool_events(),
            warm=self.settings.warm_up,
        )
        self.warmup_s = await self.pool.start()
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        if self.pool is not None:
            self.pool.close()

    def deadline(self) -> float:
        """The request's budget, on the event loop's clock, from now (its arrival)."""
        return asyncio.get_running_loop().time() + self.settings.request_timeout_s

    async def recognize(
        self, request: Request, model: str, data: bytes, deadline: float
    ) -> tuple[list[TextLine], float]:
        """The model call, abandoned when the client leaves: a request still queued never reaches a model,
        and its slot and gauges are released (a call already in a worker finishes there: a process cannot
        be interrupted mid-inference, and its worker is freed when it answers)."""
        work = asyncio.ensure_future(self._admitted(model, data, deadline))
        gone = asyncio.ensure_future(until_disconnected(request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not work.done():
                work.cancel()
        if work.done() and not work.cancelled():
            return work.result()
        with contextlib.suppress(asyncio.CancelledError):
            await work  # let its finally blocks release the slot before the answer
        raise ApiError(499, "the client closed the connection", reason="client_gone")

    async def _admitted(self, model: str, data: bytes, deadline: float) -> tuple[list[TextLine], float]:
        """Admission, fault hook and the model call, all within the request's deadline, with metrics."""
        assert self.pool is not None
        reached_model = False
        try:
            async with asyncio.timeout_at(deadline), self.admission.slot(model):
                fault = self.settings.fault
                if fault.latency_s:
                    await asyncio.sleep(fault.latency_s)
                if fault.error_rate and fault.rng.random() < fault.error_rate:
                    raise ApiError(
                        500, "injected fault (--fault error_rate)", "InternalServerError", reason="fault"
                    )
                reached_model = True
                lines, model_s = await self.pool.run(model, data, fault.leak_bytes)
        except TimeoutError:
            where = "in the model" if reached_model else "waiting for a model worker"
            raise ApiError(
                503,
                f"the request passed its budget of {self.settings.request_timeout_s:g}s {where}",
                "ServiceUnavailableError",
                headers={"Retry-After": "1"},
                reason="timeout",
            ) from None
        except BadImage as exc:
            raise ApiError(400, str(exc), param="image", reason="bad_image") from None
        except WorkerDied as exc:
            raise ApiError(
                503, str(exc), "ServiceUnavailableError", headers={"Retry-After": "1"}, reason="worker_died"
            ) from None
        except ModelFailed as exc:
            raise ApiError(
                500, f"the model failed: {exc}", "InternalServerError", reason="model_error"
            ) from None
        self.metrics.inference.labels(model).observe(model_s)
        return lines, model_s

    def model_of(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if not isinstance(model, str):
            raise ApiError(400, "`model` must be a string", param="model")
        if model not in SERVED_MODELS:
            raise ApiError(
                404,
                f"The model `{model}` does not exist.",
                "NotFoundError",
                param="model",
                reason="not_found",
            )
        return model

    async def chat(self, request: Request) -> Response:
        started, deadline = time.perf_counter(), self.deadline()
        body = await json_body(request, self.settings)
        model = self.model_of(body)
        request.state.model = model
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise ApiError(400, "`max_tokens` must be a positive integer", param="max_tokens")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(400, "`stream` must be true or false", param="stream")
        include_usage = include_usage_of(body)
        url, prompt_tokens = chat_image_url(body)
        data = checked(await image_from_url(url, self.settings, "messages"), "messages", self.settings)
        lines, _ = await self.recognize(request, model, data, deadline)
        words = answer_of(model, lines).split()
        finish = "length" if max_tokens is not None and len(words) > max_tokens else "stop"
        tokens = words[:max_tokens] if max_tokens is not None else words
        self.metrics.prompt_tokens.labels(model).inc(prompt_tokens)
        self.metrics.generation_tokens.labels(model).inc(len(tokens))
        self.metrics.success.labels(model, finish).inc()
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        if stream:
            return StreamingResponse(
                self._stream(ident, model, tokens, finish, usage, include_usage, started),
                media_type="text/event-stream",
            )
        elapsed = time.perf_counter() - started
        self.metrics.ttft.labels(model).observe(elapsed)
        self.metrics.e2e.labels(model).observe(elapsed)
        return JSONResponse(
            {
                "id": ident,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": " ".join(tokens)},
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
            }
        )

    async def _stream(
        self,
        ident: str,
        model: str,
        tokens: list[str],
        finish: str,
        usage: dict[str, int],
        include_usage: bool,
        started: float,
    ) -> AsyncIterator[bytes]:
        """SSE chunks as vLLM sends them. The model reads the whole image at once, so every token is ready
        when the first is: TTFT equals the model time and the gaps between tokens are only the transport's."""

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            payload = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        yield chunk({"role": "assistant", "content": ""})
        last = None
        for i, token in enumerate(tokens):
            yield chunk({"content": token if i == 0 else " " + token})
            now = time.perf_counter()
            if last is None:
                self.metrics.ttft.labels(model).observe(now - started)
            else:
                self.metrics.itl.labels(model).observe(now - last)
            last = now
        yield chunk({}, finish)
        if include_usage:
            payload = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [],
                "usage": usage,
            }
            yield b"data: " + json.dumps(payload).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
        self.metrics.e2e.labels(model).observe(time.perf_counter() - started)

    async def rest_ocr(self, request: Request) -> Response:
        started, deadline = time.perf_counter(), self.deadline()
        request.state.model = "ocr"
        body = await json_body(request, self.settings)
        data = checked(await image_of(body, self.settings), "image", self.settings)
        lines, model_s = await self.recognize(request, "ocr", data, deadline)
        self.metrics.e2e.labels("ocr").observe(time.perf_counter() - started)
        self.metrics.success.labels("ocr", "stop").inc()
        return JSONResponse(
            {
                "model": "ocr",
                "text": " ".join(line.text for line in lines),
                "lines": [
                    {"text": line.text, "box": line.box, "confidence": line.confidence} for line in lines
                ],
                "model_ms": round(model_s * 1000, 3),
            }
        )

    async def rest_identify(self, request: Request) -> Response:
        """What the image shows: ImageNet labels (top 5) with scores at or above `threshold`."""
        return await self.rest_labels(request, "classify")

    async def rest_moderate(self, request: Request) -> Response:
        """Is the image safe: open_nsfw's `sfw` and `nsfw` scores at or above `threshold`."""
        return await self.rest_labels(request, "moderation")

    async def rest_labels(self, request: Request, model: str) -> Response:
        started, deadline = time.perf_counter(), self.deadline()
        request.state.model = model
        body = await json_body(request, self.settings)
        threshold = body.get("threshold", 0.5)
        if not isinstance(threshold, int | float) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
            raise ApiError(400, "`threshold` must be a number from 0 to 1", param="threshold")
        data = checked(await image_of(body, self.settings), "image", self.settings)
        lines, model_s = await self.recognize(request, model, data, deadline)
        self.metrics.e2e.labels(model).observe(time.perf_counter() - started)
        self.metrics.success.labels(model, "stop").inc()
        labels = [
            {"label": line.text, "score": line.confidence} for line in lines if line.confidence >= threshold
        ]
        return JSONResponse({"model": model, "labels": labels, "model_ms": round(model_s * 1000, 3)})

    async def admin_fault(self, request: Request) -> Response:
        if not self.settings.admin:
            raise ApiError(
                404, "the admin API is off: start with --admin", "NotFoundError", reason="not_found"
            )
        body = await json_body(request, self.settings)
        # the body is the whole fault state: what it leaves out is off (a stalled worker is resumed)
        stall = body.pop("stall_worker", False)
        if not isinstance(stall, bool):
            raise ApiError(400, "stall_worker must be true or false", param="stall_worker")
        try:
            self.settings.fault = Fault.parse(",".join(f"{k}={v}" for k, v in body.items()))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        fault = self.settings.fault
        stalled = self.pool.stall(stall) if self.pool is not None else None
        return JSONResponse(
            {
                "latency_s": fault.latency_s,
                "error_rate": fault.error_rate,
                "leak_bytes": fault.leak_bytes,
                "stalled_worker_pid": stalled,
            }
        )


def build_app(settings: Settings) -> Starlette:
    server = Server(settings)

    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            if not server.ready:
                return ApiError(
                    503, "the server is starting", "ServiceUnavailableError", headers={"Retry-After": "1"}
                ).response()
            try:
                return await handler(request)
            except ApiError as exc:
                return failed(request, exc)
            except Exception as exc:  # a bug: still an OpenAI-shaped answer, counted, and logged
                traceback.print_exc()
                error = ApiError(500, f"internal error ({type(exc).__name__})", "InternalServerError")
                return failed(request, error, reason="internal")

        return endpoint

    def failed(request: Request, exc: ApiError, reason: str | None = None) -> Response:
        model = getattr(request.state, "model", "")
        server.metrics.errors.labels(str(exc.status)).inc()
        server.metrics.failures.labels(model, reason or exc.reason, str(exc.status)).inc()
        return exc.response()

    async def health(request: Request) -> Response:
        """200 only when the server has started and every model worker is up; a worker that died makes it
        503 until its replacement has loaded its models. The body names each worker (pid, up, restarts),
        for a supervisor."""
        pool = server.pool
        healthy = server.ready and pool is not None and pool.healthy
        status = "ok" if healthy else "starting" if not server.ready else "degraded"
        return JSONResponse(
            {
                "status": status,
                "warmup_s": server.warmup_s,
                "workers": pool.status() if pool is not None else [],
            },
            status_code=200 if healthy else 503,
        )

    async def models(request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": m,
                        "object": "model",
                        "created": 0,
                        "owned_by": "scenariokit",
                        "root": m,
                        "parent": None,
                    }
                    for m in SERVED_MODELS
                ],
            }
        )

    async def metrics(request: Request) -> Response:
        if server.pool is not None:
            server.metrics.read_worker_rss(server.pool.slots)
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.start()
        try:
            yield
        finally:
            server.stop()

    async def http_error(request: Request, exc: Exception) -> Response:
        """Starlette's own 404 and 405, in the OpenAI error format like every other error."""
        assert isinstance(exc, HTTPException)
        kind = {404: "NotFoundError", 405: "MethodNotAllowedError"}.get(exc.status_code, "BadRequestError")
        reason = "not_found" if exc.status_code == 404 else "bad_request"
        return failed(
            request, ApiError(exc.status_code, str(exc.detail), kind, headers=exc.headers, reason=reason)
        )

    app = Starlette(
        exception_handlers={HTTPException: http_error},
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/metrics", metrics),
            Route("/v1/chat/completions", guarded(server.chat), methods=["POST"]),
            Route("/api/v1/ocr", guarded(server.rest_ocr), methods=["POST"]),
            Route("/api/v1/identify", guarded(server.rest_identify), methods=["POST"]),
            Route("/api/v1/moderate", guarded(server.rest_moderate), methods=["POST"]),
            # the reference guide's paths (docs/model-server.md): the same handlers, limits and errors
            Route("/api/ocr", guarded(server.rest_ocr), methods=["POST"]),
            Route("/api/identify", guarded(server.rest_identify), methods=["POST"]),
            Route("/admin/fault", guarded(server.admin_fault), methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.server = server
    return app
