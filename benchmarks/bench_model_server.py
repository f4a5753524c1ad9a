"""Benchmark: OCR throughput through the embedded server's HTTP API vs direct in-process model calls.

    python benchmarks/bench_model_server.py [--seconds 8] [--workers 2]

Baseline: the same model shape the server uses (one onnxruntime thread per process, one process per
worker) called directly, with no HTTP. Then the server under 1, 4, 16 and 64 concurrent clients for a
fixed time each (clients beyond the server's queue get 429s, which are counted, not used for throughput;
the clients wait as long as Retry-After says, as a well-behaved client does).
Prints images/s for both and their ratio, and the p50 latency overhead of HTTP at one client.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import httpx

from scenariokit.compile.cards import text_cards
from scenariokit_server.engine import _init_worker, run_ocr
from scenariokit_server.launcher import start_server

CONCURRENCY = (1, 4, 16, 64)


def direct_throughput(images: list[bytes], workers: int, seconds: float) -> tuple[float, float]:
    """(images/s, p50 seconds of one call) with `workers` processes calling the model directly."""
    with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
        list(pool.map(run_ocr, images[:workers]))  # warm every worker
        single = [pool.submit(run_ocr, images[i % len(images)]).result()[1] for i in range(10)]
        done, started, i = 0, time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            batch = [pool.submit(run_ocr, images[(i + k) % len(images)]) for k in range(workers * 2)]
            for future in batch:
                future.result()
            done += len(batch)
            i += len(batch)
        return done / (time.perf_counter() - started), statistics.median(single)


def http_throughput(url: str, images: list[bytes], clients: int, seconds: float) -> tuple[float, int, float]:
    """(successful images/s, 429 count, p50 latency) with `clients` threads posting back to back."""
    bodies = [{"image_base64": base64.b64encode(img).decode()} for img in images]
    ok, rejected, latencies = 0, 0, []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(index: int) -> None:
        nonlocal ok, rejected
        with httpx.Client(timeout=60) as http:
            i = index
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = http.post(f"{url}/api/v1/ocr", json=bodies[i % len(bodies)])
                status = response.status_code
                with lock:
                    if status == 200:
                        ok += 1
                        latencies.append(time.perf_counter() - started)
                    elif status == 429:
                        rejected += 1
                if status == 429:  # a well-behaved client waits as long as Retry-After says
                    wait = float(response.headers.get("Retry-After", "1"))
                    time.sleep(max(0.0, min(wait, deadline - time.perf_counter())))
                i += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ok / (time.perf_counter() - started), rejected, statistics.median(latencies) if latencies else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    images = [card.png for card in text_cards(8)]
    direct, direct_p50 = direct_throughput(images, args.workers, args.seconds)
    print(f"direct, {args.workers} worker processes: {direct:.2f} images/s, p50 {direct_p50 * 1000:.0f} ms")
    print(f"{'clients':>8} {'HTTP img/s':>11} {'direct img/s':>13} {'ratio':>6} {'429s':>6} {'p50 ms':>7}")
    with start_server(workers=args.workers) as server:
        for clients in CONCURRENCY:
            rate, rejected, p50 = http_throughput(server.base_url, images, clients, args.seconds)
            ratio = rate / direct
            print(
                f"{clients:>8} {rate:>11.2f} {direct:>13.2f} {ratio:>6.2f} {rejected:>6} {p50 * 1000:>7.0f}"
            )
            if clients == 1:
                print(f"{'':>8} HTTP p50 overhead at 1 client: {(p50 - direct_p50) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
