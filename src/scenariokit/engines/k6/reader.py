"""k6's records: a VU's requests in batches of numbers, and the open model's dropped iterations."""

from __future__ import annotations

import base64
import ctypes
import errno
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from scenariokit.engines.records import RecordLinesReader, RequestRecord, decode_json, raw_rotate_bytes

# k6's runtime writes a VU's requests in batches, each a line
#   {"outcomes": [[name, stage, status, ok, error, code, message], ...], "f64": "<base64>"}
# where `f64` is base64 of little-endian float64s, four per request: start (unix ms), its outcome (an
# index into `outcomes`, the VU's table of the fields requests share), latency and time to first byte
# (ms, k6's timings.duration and .waiting). `code` and `message` (k6's error_code and error, the message
# cleaned) are there only on a failure without a response: a table row of its own per code, holding the
# first message seen, so the table stays small and a success costs what it did. A script written out for
# its scenario (engines/k6/lean.py) writes one request a line, its numbers as JSON: `"n": [t, 0, ...]`.
BATCH_PREFIX = b'{"outcomes":'


class K6RecordReader(RecordLinesReader):
    """k6's records (`records-k6.jsonl`), and its dropped iterations: k6 counts an open model's arrivals
    that found no free VU in its built-in `dropped_iterations` counter, which VUs cannot see. While k6
    runs, its REST API (`api`, host:port) is asked for the count at each poll, and each increase is dated
    at that poll (so at most a poll interval late); once k6 has written `k6-summary.json` its count is the
    total, and what the API had not shown yet is dated at the last poll that reached k6."""

    def __init__(self, raw_dir: Path, api: str | None = None) -> None:
        super().__init__(raw_dir)
        # `run --processes N`: N local instances, each with its API (comma-separated) and summary file
        # (engines/k6/instances.py); their dropped iterations add up
        self.apis = api.split(",") if api else []
        several = (raw_dir / "k6-instances.json").exists()
        self.summary_paths = (
            [raw_dir / f"k6-summary.{i}.json" for i in range(len(self.apis))]
            if several
            else [raw_dir / "k6-summary.json"]
        )
        self._final = False
        self._last_seen: float | None = None
        self._client: httpx.Client | None = None  # one for the run
        self.records_path = raw_dir / "records-k6.jsonl"
        self.free_every = raw_rotate_bytes()
        self.freed = 0  # bytes at the head of records_path already handed back to the file system

    def release(self) -> None:
        """k6 owns its console file and appends to it (O_APPEND, internal/js/console.go), so it cannot be
        rotated, and truncating it would lose what k6 writes between the last read and the truncation.
        Instead the bytes already read and stored are deallocated in place (a hole punched at the head,
        the file's size kept): k6 writes on at the end, the reader's offset stays valid, and the disk
        holds at most `free_every` bytes plus what is not stored yet. Done in whole steps of
        `free_every`, so a short run keeps its file as it was."""
        super().release()
        tail = self.tails.get(self.records_path)
        if tail is None or self.free_error is not None:
            return
        block = os.statvfs(self.records_path).f_bsize if self.records_path.exists() else 4096
        upto = tail.offset // block * block  # whole blocks: none of the unread bytes is zeroed
        if upto - self.freed < self.free_every:
            return
        try:
            punch_hole(self.records_path, upto)
        except OSError as exc:
            self.free_error = f"{exc.strerror or exc}: raw/records-k6.jsonl grows for the whole run"
            return
        self.freed = upto

    def engine_line(self, line: bytes) -> list[RequestRecord] | None:
        """A k6 VU's batch of requests (see BATCH_PREFIX); a malformed batch is skipped whole."""
        if not line.startswith(BATCH_PREFIX):
            return None
        try:
            batch = decode_json(line.decode("utf-8"))
            outcomes = [_outcome(*row) for row in batch["outcomes"]]
            numbers = batch_numbers(batch)
            if numbers.size % 4:
                raise ValueError("a batch's numbers come four per request")
            rows = numbers.reshape(-1, 4)
            indices = rows[:, 1].astype(np.int64)
            if indices.size and (indices.min() < 0 or not np.array_equal(indices, rows[:, 1])):
                raise IndexError("an outcome index below zero or not whole")
            starts, latencies, ttfbs = (rows[:, column] / 1000 for column in (0, 2, 3))
            make = RequestRecord._make
            return [
                make((t, *outcomes[o][0], latency, None, ttfb, None, None, None, 0, None, *outcomes[o][1]))
                for t, o, latency, ttfb in zip(
                    starts.tolist(), indices.tolist(), latencies.tolist(), ttfbs.tolist(), strict=True
                )
            ]
        except (ValueError, TypeError, KeyError, IndexError):  # binascii.Error and UnicodeDecodeError too
            self.skipped += 1
            return []

    def poll(self) -> list[RequestRecord]:
        records = super().poll()
        if not self._final:
            self._poll_dropped()
        return records

    def _poll_dropped(self) -> None:
        total = self._summary_dropped()
        if total is not None:
            self._final = True
            if self._client is not None:
                self._client.close()
        else:
            total = self._api_dropped()
        if total is not None and total > self.dropped:
            at = self._last_seen if self._last_seen is not None else time.time()
            self.dropped_times.extend([at] * (total - self.dropped))
            self.dropped = total

    def _summary_dropped(self) -> int | None:
        """The total from k6's end-of-test summaries (one per local instance); None until k6 has written
        every one whole."""
        if not self.summary_paths:
            return None
        total = 0
        for path in self.summary_paths:
            try:
                metrics = json.loads(path.read_text())["metrics"]
            except (OSError, ValueError, KeyError, TypeError):
                return None
            dropped = metrics.get("dropped_iterations") if isinstance(metrics, dict) else None
            total += int(dropped.get("count", 0)) if isinstance(dropped, dict) else 0
        return total

    def _api_dropped(self) -> int | None:
        """The count so far over the instances' REST APIs; None when one of them does not answer."""
        if not self.apis:
            return None
        counts = [self._api_count(api) for api in self.apis]
        return None if None in counts else sum(c or 0 for c in counts)

    def _api_count(self, api: str) -> int | None:
        """One instance's count so far (404 until its first drop); None when it does not answer."""
        if self._client is None:
            self._client = httpx.Client(timeout=0.5, trust_env=False, verify=False)  # plain HTTP on loopback
        try:
            response = self._client.get(f"http://{api}/v1/metrics/dropped_iterations")
        except httpx.HTTPError:
            return None
        self._last_seen = time.time()
        if response.status_code == 404:
            return 0
        try:
            return int(response.json()["data"]["attributes"]["sample"]["count"])
        except (ValueError, KeyError, TypeError):
            return None


def batch_numbers(batch: dict[str, Any]) -> np.ndarray:
    """A batch's numbers: base64 of float64s (`f64`, the runtime's batches) or a JSON array (`n`, the
    written-out script's one-record lines, engines/k6/lean.py). ValueError or TypeError when malformed."""
    if "f64" in batch:
        return np.frombuffer(base64.b64decode(batch["f64"], validate=True), dtype="<f8")
    numbers = batch["n"]
    if not isinstance(numbers, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in numbers
    ):
        raise TypeError("a batch's numbers are a list of numbers")
    return np.asarray(numbers, dtype="<f8")


def _outcome(
    name: Any, stage: Any, status: Any, ok: Any, error: Any, code: Any = None, message: Any = None
) -> tuple[tuple[str, str, int, bool, str | None], tuple[str | None, str | None]]:
    """A row of a batch's outcome table: the fields a record has before its latency, and those after
    its users (TypeError or ValueError when malformed)."""
    head = (str(name), str(stage or ""), int(status), bool(ok), None if error is None else str(error))
    return head, (None if code is None else str(code), None if message is None else str(message))


_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


def punch_hole(path: Path, length: int) -> None:
    """Deallocates the first `length` bytes of a file, its size unchanged (Linux fallocate(2) with
    FALLOC_FL_PUNCH_HOLE: ext4, xfs, btrfs, tmpfs); reads of that range return zeros. OSError where the
    platform or the file system cannot (EOPNOTSUPP)."""
    try:
        fallocate = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError) as exc:  # not Linux's C library
        raise OSError(errno.EOPNOTSUPP, "no fallocate(2) on this platform") from exc
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fd = os.open(path, os.O_WRONLY)
    try:
        if fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, 0, length) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    finally:
        os.close(fd)
