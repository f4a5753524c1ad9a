"""`python -m scenariokit_server` / `scenariokit serve`: run the embedded target on loopback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import uvicorn

from scenariokit_server.app import MAX_BODY_BYTES, Fault, Settings, build_app
from scenariokit_server.engine import MAX_IMAGE_BYTES, MAX_PIXELS
from scenariokit_server.protocol import with_head_deadline


def port_number(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0 to 65535)")
    return port


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of 1 or more")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def parse_args(argv: Sequence[str] | None, prog: str = "scenariokit_server") -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=8000, help="TCP port (default 8000; 0: any)")
    parser.add_argument(
        "--workers", type=positive, default=cores, help=f"model worker processes (default {cores})"
    )
    parser.add_argument("--max-in-flight", type=int, help="requests processed at once (default: workers)")
    parser.add_argument("--max-queue", type=int, help="requests allowed to wait (default: 4 x workers)")
    parser.add_argument(
        "--request-timeout",
        type=seconds,
        default=30.0,
        help="seconds per request from its arrival, time in the queue included (default 30; 503 past it)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=positive,
        default=MAX_BODY_BYTES,
        help=f"request body limit, refused with 413 before it is read whole (default {MAX_BODY_BYTES:,})",
    )
    parser.add_argument(
        "--body-timeout",
        type=seconds,
        default=10.0,
        help="seconds for a whole request body to arrive (default 10; 408 past it)",
    )
    parser.add_argument(
        "--head-timeout",
        type=seconds,
        default=10.0,
        help="seconds for a request's line and headers to arrive, from connect or the last answer "
        "(default 10; the connection is closed past it)",
    )
    parser.add_argument(
        "--max-pixels",
        type=positive,
        default=MAX_PIXELS,
        help=f"pixels per image, read from its header before decoding (default {MAX_PIXELS:,})",
    )
    parser.add_argument(
        "--image-fetch-bytes",
        type=positive,
        default=MAX_IMAGE_BYTES,
        help=f"bytes of an image fetched from an allowed host (default {MAX_IMAGE_BYTES:,})",
    )
    parser.add_argument(
        "--image-fetch-timeout",
        type=seconds,
        default=5.0,
        help="seconds for a whole image fetch from an allowed host (default 5; 504 past it)",
    )
    parser.add_argument(
        "--max-connections",
        type=positive,
        default=256,
        help="open connections and requests at once; more get 503 from uvicorn (default 256)",
    )
    parser.add_argument(
        "--keep-alive-timeout",
        type=seconds,
        default=5.0,
        help="seconds an idle keep-alive connection stays open (default 5)",
    )
    parser.add_argument(
        "--fault",
        help="chaos hook, e.g. latency=200ms,error_rate=0.1,leak=100KB (off by default; leak: bytes each "
        "request leaves in its model worker, at most 64MiB a request and 1GiB a worker)",
    )
    parser.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="cold start: /health turns 200 once the workers run, before they load their models, which "
        "load on first use (the first requests pay for it)",
    )
    parser.add_argument(
        "--allow-url-host",
        action="append",
        default=[],
        help="a host whose http(s) image URLs may be fetched: HOST (any port) or HOST:PORT (that port "
        "only); repeatable",
    )
    parser.add_argument("--admin", action="store_true", help="enable POST /admin/fault")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, prog: str = "scenariokit_server") -> int:
    args = parse_args(argv, prog)
    try:
        fault = Fault.parse(args.fault)
    except ValueError as exc:
        print(f"{prog}: error: --fault: {exc}", file=sys.stderr)
        return 2  # invalid input (exit codes: scenariokit.exitcodes, not imported in the server)
    settings = Settings(
        workers=args.workers,
        max_in_flight=args.max_in_flight or args.workers,
        max_queue=args.max_queue if args.max_queue is not None else 4 * args.workers,
        request_timeout_s=args.request_timeout,
        fault=fault,
        allowed_url_hosts=tuple(args.allow_url_host),
        admin=args.admin,
        max_body_bytes=args.max_body_bytes,
        body_timeout_s=args.body_timeout,
        max_pixels=args.max_pixels,
        image_fetch_bytes=args.image_fetch_bytes,
        image_fetch_timeout_s=args.image_fetch_timeout,
        warm_up=args.warm_up,
    )
    # uvicorn stops accepting on SIGTERM and lets in-flight requests finish before the lifespan ends
    try:
        uvicorn.run(
            build_app(settings),
            host=args.host,
            port=args.port,
            log_level="warning",
            http=with_head_deadline(args.head_timeout),
            limit_concurrency=args.max_connections,
            timeout_keep_alive=args.keep_alive_timeout,
            timeout_graceful_shutdown=30,
        )
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind or start: a run error, not a breach
        return 3 if exc.code else 0
    return 0
