"""The echo engine's runtime: sends a plan's requests in weighted turns, one at a time, for the curve's
length (bounded by the time given on the command line), and writes one record line per request."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def main(plan_path: str, max_run_s: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    base_url = os.environ.get("SCENARIOKIT_BASE_URL") or plan["base_url"]
    out = Path(os.environ["SCENARIOKIT_RESULTS_DIR"]) / f"records-{os.getpid()}.jsonl"
    duration = min(sum(stage[1] for stage in plan["stages"]), float(max_run_s))
    turns = [r for r in plan["requests"] for _ in range(max(1, round(r["weight"])))]
    start = time.time()
    with out.open("w") as records:
        records.write(json.dumps({"test_start": start}) + "\n")
        sent = 0
        while time.time() - start < duration and sent < 10_000:
            request = turns[sent % len(turns)]
            records.write(json.dumps(send(base_url, plan["headers"], request, stage_at(plan, start))) + "\n")
            records.flush()
            sent += 1
    return 0


def stage_at(plan: dict, start: float) -> str:
    elapsed = time.time() - start
    for label, duration, *_ in plan["stages"]:
        if elapsed < duration:
            return label
        elapsed -= duration
    return plan["stages"][-1][0]


def send(base_url: str, headers: dict, request: dict, stage: str) -> list:
    began = time.time()
    call = urllib.request.Request(base_url + request["path"], method=request["method"], headers=headers)
    status, error = 0, None
    try:
        with urllib.request.urlopen(call, timeout=10) as response:
            status, size = response.status, len(response.read())
    except urllib.error.HTTPError as exc:
        status, size, error = exc.code, 0, f"http_{exc.code}"
    except OSError:
        size, error = 0, "connection_refused"
    latency = time.time() - began
    ok = error is None and 200 <= status < 300
    # the shared record fields, in RECORD_FIELDS order
    return [began, None, request["name"], stage, status, ok, error, latency, None, None, None, None, size, 1]


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
