"""`python -m scenariokit_server` / `scenariokit serve`: run the embedded target on loopback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import uvicorn

from scenariokit_server.app import Fault, Settings, build_app


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
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--fault", help="chaos hook, e.g. latency=200ms,error_rate=0.1 (off by default)")
    parser.add_argument(
        "--allow-url-host",
        action="append",
        default=[],
        help="a host whose http(s) image URLs may be fetched (repeatable)",
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
    )
    # uvicorn stops accepting on SIGTERM and lets in-flight requests finish before the lifespan ends
    try:
        uvicorn.run(
            build_app(settings),
            host=args.host,
            port=args.port,
            log_level="warning",
            timeout_graceful_shutdown=30,
        )
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind or start: a run error, not a breach
        return 3 if exc.code else 0
    return 0
