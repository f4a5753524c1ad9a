"""Benchmark: the embedded server under abuse (issue 15): memory under oversized bodies, time to refuse a
decompression bomb, time from a killed worker to /health 503 and back to 200.

    python benchmarks/bench_server_limits.py

Memory is the HTTP process's peak RSS (VmHWM in /proc/PID/status) with one worker, after four concurrent
100 MB bodies, first announced by Content-Length, then chunked (read until the 16 MiB cap). Run it against
an older checkout (PYTHONPATH=<old>/src) for the figure before the cap.
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import signal
import struct
import time
import zlib
from collections.abc import Iterator

import httpx

from scenariokit_server.launcher import ServerHandle, start_server

BODY_MB = 100


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def chunked() -> Iterator[bytes]:
    for _ in range(BODY_MB):
        yield b" " * 2**20


def send(base_url: str, mode: str) -> str:
    content = chunked() if mode == "chunked" else b" " * (BODY_MB * 2**20)
    try:
        return str(httpx.post(f"{base_url}/api/v1/ocr", content=content, timeout=60).status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__


def memory() -> None:
    with start_server(workers=1) as server:
        print(f"idle: peak RSS {peak_rss_mb(server.pid):.1f} MB")
        for mode in ("content-length", "chunked"):
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(send, [server.base_url] * 4, [mode] * 4))
            print(f"4 x {BODY_MB} MB, {mode}: {answers}, peak RSS {peak_rss_mb(server.pid):.1f} MB")


def bomb() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 40_000, 40_000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 40_001 * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def refuse_bomb(server: ServerHandle) -> None:
    data = bomb()
    body = {"image_base64": base64.b64encode(data).decode()}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        times, status = [], 0
        for _ in range(5):
            started = time.perf_counter()
            status = client.post("/api/v1/ocr", json=body).status_code
            times.append(time.perf_counter() - started)
    print(f"bomb ({len(data)} bytes, 40,000 x 40,000): {status}, max of 5 {max(times) * 1000:.1f} ms")


def kill_a_worker(server: ServerHandle) -> None:
    pid = httpx.get(f"{server.base_url}/health").json()["workers"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    started, unhealthy_s = time.perf_counter(), None
    while time.perf_counter() - started < 120:
        status = httpx.get(f"{server.base_url}/health").status_code
        if status == 503 and unhealthy_s is None:
            unhealthy_s = time.perf_counter() - started
        if status == 200 and unhealthy_s is not None:
            healthy_s = time.perf_counter() - started
            print(f"killed worker: /health 503 after {unhealthy_s:.3f} s, 200 after {healthy_s:.2f} s")
            return
        time.sleep(0.05)
    print("killed worker: /health did not recover within 120 s")


def main() -> None:
    memory()
    with start_server(workers=2) as server:
        refuse_bomb(server)
        for _ in range(2):
            kill_a_worker(server)


if __name__ == "__main__":
    main()
