"""Benchmark: what the fault proxy (run/faultproxy.py) costs with no fault active.

    python benchmarks/bench_faultproxy.py [--seconds 8] [--users 16] [--repeats 3] [--engines locust,k6]

Each engine (stock Locust FastHttpUser and stock k6, the scripts of bench_collection.py: closed model,
`--users` users, no think time, one GET per iteration) loads a fast loopback target (nginx with one
worker when on PATH, else bench_collection's asyncio server) twice per repeat: directly, and through a
FaultProxy started in this process on its own thread (as the runner starts it) with no fault set. The two
trials of a repeat run back to back, their order alternating, and the repeat's ratio is proxied req/s over
direct req/s (paired: a machine whose speed drifts between repeats moves a ratio less than the rates).
The table gives each trial and the median ratio per engine; the target is >= 0.9 (issue 18). Beside it
the proxy's own counts for the last trial (requests it framed, responses it completed) and the CPU its
thread spent per request.

`--reference` adds a third trial per repeat through nginx itself as a reverse proxy (one worker, upstream
keep-alive): what any proxy in C costs on the same host, so that a ratio below the target can be read as
the proxy's own cost or as the host's (every proxied request costs a second loopback hop both ways, and
an engine that already uses every core loses whatever CPU the proxy takes).

`--pin` runs the engine and the target on CPU 0 only and the proxy (FaultProxy's thread, or the reference
nginx) on CPU 1, in every trial: the proxy then has a core of its own, as on a load host with cores to
spare, and the ratio measures what the extra hop costs the engine rather than the CPU the two share.
Only 127.0.0.1 is ever sent to.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_collection import STOCK, endpoint  # the stock engine trials, the fast target

from scenariokit.ports import free_port
from scenariokit.run.faultproxy import FaultProxy
from scenariokit.run.nginx import NginxConfig, NginxServer

TARGET = 0.9


def trial(engine: str, work: Path, url: str, users: int, seconds: int) -> float:
    work.mkdir(parents=True)
    count, span = STOCK[engine](work, url, users, seconds)
    return count / span


def thread_cpu_s(native_id: int) -> float:
    """User + system CPU seconds of one thread of this process."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PROXY_CPUS: set[int] | None = None  # --pin: the proxy's CPUs


def proxied(engine: str, work: Path, url: str, users: int, seconds: int) -> tuple[float, dict[str, int]]:
    """(req/s through a FaultProxy with no fault, its counts plus `cpu_us_per_request`)."""
    parts = urlsplit(url)
    with FaultProxy([(parts.hostname or "127.0.0.1", parts.port or 80)]) as proxy:
        thread = next(t for t in threading.enumerate() if t.name == "scenariokit-faultproxy")
        assert thread.native_id is not None
        if PROXY_CPUS is not None:
            os.sched_setaffinity(thread.native_id, PROXY_CPUS)  # a thread id: that thread alone
        before = thread_cpu_s(thread.native_id)
        rate = trial(engine, work, f"http://127.0.0.1:{proxy.port}", users, seconds)
        counts = proxy.counts()
        spent = thread_cpu_s(thread.native_id) - before
        counts["cpu_us_per_request"] = round(1e6 * spent / max(1, counts["requests"]))
        return rate, counts


@contextlib.contextmanager
def nginx_proxy(tmp: Path, url: str) -> Iterator[str]:
    """nginx as a reverse proxy in front of `url` (one worker, upstream keep-alive): the reference trial's
    front, on the proxy's CPUs under --pin."""
    # keepalive_requests at nginx's own default, as the reference has always been measured
    config = NginxConfig(free_port(), upstream=urlsplit(url).netloc, keepalive_requests=1000)
    pin = ["taskset", "-c", ",".join(map(str, sorted(PROXY_CPUS)))] if PROXY_CPUS is not None else []
    prefix = Path(tempfile.mkdtemp(prefix="nginx-proxy-", dir=tmp))
    with NginxServer(config, prefix, wrap=pin) as server:
        yield server.url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", default="locust,k6")
    parser.add_argument("--reference", action="store_true", help="also through nginx as a reverse proxy")
    parser.add_argument("--pin", action="store_true", help="engine and target on CPU 0, the proxy on CPU 1")
    args = parser.parse_args()
    if args.pin:
        global PROXY_CPUS
        PROXY_CPUS = {1}
        os.sched_setaffinity(0, {0})  # this thread: the engine and the target it starts inherit CPU 0
    engines = [name.strip() for name in args.engines.split(",") if name.strip()]
    variants = ["direct", "proxied"] + (["nginx-proxy"] if args.reference else [])
    verdict = 0
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-faultproxy-")))
        url, kind = stack.enter_context(endpoint(tmp))
        reference = stack.enter_context(nginx_proxy(tmp, url)) if args.reference else ""
        print(
            f"target: {kind} at {url}; {args.users} users, {args.seconds} s a trial, {args.repeats} repeats"
        )
        pinned = "engine and target on CPU 0, proxy on CPU 1" if args.pin else "not pinned"
        print(f"{os.cpu_count()} CPUs, {pinned}")
        print(f"{'engine':<7} {'rep':>3} " + " ".join(f"{v + ' req/s':>17}" for v in variants) + "   ratios")
        for engine in engines:
            ratios: dict[str, list[float]] = {v: [] for v in variants[1:]}
            counts: dict[str, int] = {}
            for repeat in range(args.repeats):
                rates: dict[str, float] = {}
                shift = repeat % len(variants)  # each repeat starts with another variant
                for variant in variants[shift:] + variants[:shift]:
                    work = tmp / engine / str(repeat) / variant
                    if variant == "proxied":
                        rates[variant], counts = proxied(engine, work, url, args.users, args.seconds)
                    else:
                        base = reference if variant == "nginx-proxy" else url
                        rates[variant] = trial(engine, work, base, args.users, args.seconds)
                for variant in ratios:
                    ratios[variant].append(rates[variant] / rates["direct"])
                row = " ".join(f"{rates[v]:>17,.0f}" for v in variants)
                print(f"{engine:<7} {repeat:>3} {row}   " + " ".join(f"{r[-1]:.3f}" for r in ratios.values()))
            median = statistics.median(ratios["proxied"])
            ok = median >= TARGET
            verdict |= not ok
            line = f"{engine:<7} FaultProxy/direct median paired ratio {median:.3f} (target >= {TARGET}): "
            line += "ok" if ok else "MISSED"
            if args.reference:
                line += f"; nginx-proxy/direct {statistics.median(ratios['nginx-proxy']):.3f}"
            print(line)
            print(
                f"{'':<7} last trial: the proxy counted {counts.get('requests', 0):,} requests, "
                f"{counts.get('responses', 0):,} responses, {counts.get('connections', 0)} connections; "
                f"its thread spent {counts.get('cpu_us_per_request', 0)} us of CPU per request"
            )
    return verdict


if __name__ == "__main__":
    raise SystemExit(main())
