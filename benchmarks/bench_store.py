"""Benchmark: bytes per stored request record, write and read speed of the Parquet record store.

    python benchmarks/bench_store.py [--records 200000]

Writes synthetic records (three request names, three stages, log-normal latencies, two inter-token gaps)
in batches as a run would, then reads them back; prints bytes/record and the size of a 1-hour run.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from scenariokit.engines.records import RequestRecord
from scenariokit.results.store import RecordStore, load_records


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    n = parser.parse_args().records
    rng = random.Random(1)
    records = [
        RequestRecord(
            t=1.8e9 + i * 0.001,
            name=rng.choice(["identify", "ocr", "empty-image"]),
            stage=rng.choice(["ramp", "hold", "flash-sale"]),
            status=200,
            ok=True,
            error=None,
            latency=rng.lognormvariate(-1, 0.5),
            ttfb=0.01,
            ttft=0.2,
            itl=(0.01, 0.012),
            tokens=3,
            bytes=512,
            users=16.0,
        )
        for i in range(n)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        store = RecordStore(run_dir)
        started = time.perf_counter()
        for i in range(0, n, 5000):
            store.append(records[i : i + 5000])
        store.close()
        write_s = time.perf_counter() - started
        size = sum(p.stat().st_size for p in (run_dir / "records").glob("*.parquet"))
        started = time.perf_counter()
        assert len(load_records(run_dir)) == n
        read_s = time.perf_counter() - started
    per_record = size / n
    header = ("records", "bytes/rec", "write rec/s", "read s", "1h @1k/s", "1h @10k/s")
    print("{:>10} {:>10} {:>12} {:>7} {:>9} {:>10}".format(*header))
    print(
        f"{n:>10,} {per_record:>10.1f} {n / write_s:>12,.0f} {read_s:>7.1f} "
        f"{per_record * 3.6e6 / 1e6:>7.0f}MB {per_record * 3.6e7 / 1e9:>8.2f}GB"
    )


if __name__ == "__main__":
    main()
