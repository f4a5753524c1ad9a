"""Benchmark: what each choice in the written-out k6 script costs at scale, one change at a time (issue 17).

    python benchmarks/bench_k6_variants.py [--users 10000] [--hold 20] [--repeats 1]

bench_scale.py's load (the seed's shape, nginx on loopback) run by stock k6 and by the script scenariokit
compiles for it, as the driver launches it, and by copies of that script with one change each: a built-in a
VU would make (String's prototype by the base URL's trailing-slash loop, k6/execution for the scenario's
start, String() and Number() at init), or one the script makes that it could do without (Date.now, the
records), or a lower GOGC. Each variant is an edit of the generated text that must apply (else the script
changed and the variant is stale). Memory and rate as bench_scale.py measures them; the variants run in
order, the order reversed each repeat; the median of the repeats is printed with the ratio to stock.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench_scale import SPAWN_RATE, Trial, k6_runs, nginx, raise_file_limit, trial

# label -> (edits of the compiled script as (old, new), extra environment)
VARIANTS: dict[str, tuple[list[tuple[str, str]], dict[str, str]]] = {
    "as compiled": ([], {}),
    "+ trailing-slash loop (String's prototype)": (
        [
            ("const BASE = ", "let BASE = "),
            ("\nconst SEED", '\nwhile (BASE.endsWith("/")) BASE = BASE.slice(0, -1);\nconst SEED'),
        ],
        {},
    ),
    "+ k6/execution for the start": (
        [
            ('import http from "k6/http";', 'import http from "k6/http";\nimport exec from "k6/execution";'),
            ("  startMs = start;", "  if (startMs < 0) startMs = exec.scenario.startTime;"),
        ],
        {},
    ),
    "+ String() and Number() at init": (
        [("+(__ENV.SCENARIOKIT_SEED || 0) || 0", "+String(Number(__ENV.SCENARIOKIT_SEED || 0)) || 0")],
        {},
    ),
    "- Date.now() (records dated 0)": ([("Date.now()", "0")], {}),
    "- records": ([], {"SCENARIOKIT_RECORDS": ""}),
    "GOGC=80": ([], {"GOGC": "80"}),
}


def variant_scripts(
    work: Path, url: str, users: int, hold: int
) -> dict[str, tuple[list[str], dict[str, str]]]:
    runs = k6_runs(work, url, users, hold)
    argv, env = runs["scenariokit"]
    compiled = Path(next(arg for arg in argv if arg.endswith(".k6.js")))
    source = compiled.read_text(encoding="utf-8")
    out = {"stock": runs["stock"]}
    for i, (label, (edits, extra)) in enumerate(VARIANTS.items()):
        text = source
        for old, new in edits:
            if old not in text:
                sys.exit(f"variant {label!r} is stale: {old!r} is not in the compiled script")
            text = text.replace(old, new)
        path = compiled.with_name(f"variant{i}.k6.js")
        path.write_text(text, encoding="utf-8")
        out[label] = ([str(path) if a == str(compiled) else a for a in argv], {**env, **extra})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--hold", type=int, default=20, help="seconds at the full user count")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    raise_file_limit()
    results: dict[str, list[Trial]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-k6-variants-") as name:
        work = Path(name)
        with nginx(work, args.users) as url:
            runs = variant_scripts(work, url, args.users, args.hold)
            for repeat in range(args.repeats):
                order = list(runs) if repeat % 2 == 0 else list(runs)[::-1]
                for label in order:
                    argv, env = runs[label]
                    (work / "raw-k6").mkdir(exist_ok=True)
                    got = trial(argv, env, work, url, args.hold, work / f"trial-{repeat}.log")
                    (work / "raw-k6" / "records-k6.jsonl").unlink(missing_ok=True)
                    results.setdefault(label, []).append(got)
                    print(
                        f"  {label:<44} {got.peak_rss / 2**20:7.0f} MiB {got.rate:8,.0f} req/s",
                        file=sys.stderr,
                    )
    stock_rss = statistics.median(t.peak_rss for t in results["stock"])
    stock_rate = statistics.median(t.rate for t in results["stock"])
    print(f"\nk6, {args.users} VUs (ramp at {SPAWN_RATE}/s, hold {args.hold} s), median of {args.repeats}")
    print(f"{'variant':<44} {'MiB':>7} {'vs stock':>9} {'req/s':>8} {'vs stock':>9}")
    for label, trials in results.items():
        rss = statistics.median(t.peak_rss for t in trials)
        rate = statistics.median(t.rate for t in trials)
        print(
            f"{label:<44} {rss / 2**20:7,.0f} {rss / stock_rss:8.2f}x {rate:8,.0f} {rate / stock_rate:8.2f}x"
        )


if __name__ == "__main__":
    main()
