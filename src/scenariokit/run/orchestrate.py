"""Stage: run a scenario on a stock engine, keep every measurement, judge the SLOs.

The orchestrator compiles the scenario into the run folder, starts the target (the embedded server when
`base_url: embedded`), starts the engine as a subprocess, and polls the engine's record stream into
crash-safe Parquet parts while it watches the engine, the target and the generator's own CPU. Whatever
ends the run (completion, a crash, Ctrl-C, an SLO certainly lost), the summary is written from what was
measured, with an honest reason.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import platform
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from scenariokit import __version__
from scenariokit.compile.ir import Scenario
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario, get_engine
from scenariokit.engines.base import Engine, LaunchPlan
from scenariokit.engines.records import RequestRecord
from scenariokit.exitcodes import ExitCode
from scenariokit.results.store import RecordStore
from scenariokit.run.exporter import LiveExporter
from scenariokit.run.live import LiveView
from scenariokit.run.monitor import Monitor

POLL_INTERVAL_S = 0.5
ENGINE_GRACE_S = 30.0  # time past the curve's end before the engine is stopped by force
SATURATED_CPU = 0.90  # share of the cores the engine can use (Engine.cpu_capacity)
SATURATED_FOR_S = 3


@dataclass(frozen=True)
class RunOptions:
    engine: str | None = None
    out: Path | None = None
    duration_s: float | None = None
    users: float | None = None
    rate: float | None = None
    base_url: str | None = None
    quiet: bool = False
    abort_on_fail: bool = False
    strict: bool = False
    # "builtin" or "prometheus" (also run a Prometheus server scraping target and runner); None: the
    # scenario's `monitoring:` section decides
    monitor: str | None = None
    processes: int = 1  # generator processes, for engines that run several (Capabilities.worker_processes)
    data_root: Path | None = None  # data sets read only inside it (default: the scenario's folder)


@dataclass
class GeneratorHealth:
    """The load generator's own CPU, sampled once a second: a saturated generator measures itself."""

    samples: list[tuple[float, float]] = field(default_factory=list)  # (unix t, share of capacity)
    saturated_since: float | None = None
    saturated_s: float = 0.0

    def add(self, t: float, share: float) -> None:
        self.samples.append((t, share))
        if share >= SATURATED_CPU:
            self.saturated_s += 1.0
            self.saturated_since = self.saturated_since or t
        else:
            self.saturated_since = None

    @property
    def saturated(self) -> bool:
        return self.saturated_s >= SATURATED_FOR_S

    def as_dict(self) -> dict[str, Any]:
        shares = [s for _, s in self.samples]
        return {
            "saturated": self.saturated,
            "saturated_seconds": self.saturated_s,
            "max_cpu_share": max(shares, default=0.0),
            "mean_cpu_share": sum(shares) / len(shares) if shares else 0.0,
            "threshold": SATURATED_CPU,
        }


# --- overrides ------------------------------------------------------------------------------------


def apply_overrides(scenario: Scenario, options: RunOptions) -> Scenario:
    """--duration stretches or shrinks every stage; --users/--rate rescale the curve to a new peak."""
    load = scenario.load
    stages = load.stages
    if options.duration_s is not None and load.duration_s > 0:
        factor = options.duration_s / load.duration_s
        stages = tuple(dataclasses.replace(s, duration_s=s.duration_s * factor) for s in stages)
    peak = options.users if load.model == "closed" else options.rate
    if peak is not None and load.peak > 0:
        scale = peak / load.peak
        rounding = round if load.model == "closed" else float
        stages = tuple(
            dataclasses.replace(s, start=rounding(s.start * scale), end=rounding(s.end * scale))
            for s in stages
        )
        if load.model == "open":
            load = dataclasses.replace(
                load,
                pre_allocated_users=max(1, round(load.pre_allocated_users * scale)),
                max_users=max(1, round(load.max_users * scale)),
            )
    load = dataclasses.replace(load, stages=stages)
    target = scenario.target
    if options.base_url:
        target = dataclasses.replace(target, base_url=options.base_url.rstrip("/"))
    return dataclasses.replace(scenario, load=load, target=target, engine=options.engine or scenario.engine)


# --- the run folder -------------------------------------------------------------------------------


def make_run_dir(scenario: Scenario, out: Path | None) -> Path:
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{scenario.name}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("script", "raw", "logs"):
        (out / sub).mkdir(exist_ok=True)
    return out.resolve()  # the engine runs in the script's folder: its paths must not be relative


def git_commit(path: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(path.parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def write_run_metadata(
    run_dir: Path, scenario: Scenario, source: Path, engine: Engine, base_url: str, started: float
) -> dict[str, Any]:
    shutil.copyfile(source, run_dir / "scenario.yaml")
    meta = {
        "scenariokit_version": __version__,
        "scenario_name": scenario.name,
        "slos": [slo.text for slo in scenario.slos],
        "scenario_path": scenario.source_path,
        "scenario_sha256": scenario.source_sha256,
        "git_commit": git_commit(source.resolve()),
        "engine": scenario.engine,
        "engine_version": engine.version(),
        "base_url": base_url,
        "embedded_target": scenario.target.is_embedded,
        "started_unix": started,
        "planned_duration_s": scenario.load.duration_s,
        "load_model": scenario.load.model,
        "stages": [dataclasses.asdict(s) | {"span": None} for s in scenario.load.stages],
        "host": {
            "hostname": platform.node(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
    }
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta


# --- target ---------------------------------------------------------------------------------------


@contextmanager
def target_for(scenario: Scenario, run_dir: Path) -> Iterator[tuple[str, Any]]:
    """Yields (base_url, handle-or-None): starts the embedded server when the scenario asks for it."""
    if not scenario.target.is_embedded:
        yield scenario.target.base_url, None
        return
    from scenariokit_server.launcher import start_server

    options: dict[str, Any] = dict(scenario.target.embedded_options)
    handle = start_server(0, log_path=run_dir / "logs" / "model-server.log", **options)
    try:
        yield handle.base_url, handle
    finally:
        handle.stop()


def target_is_up(base_url: str) -> str | None:
    """None when the target answers HTTP at all (any status); else the reason."""
    try:
        httpx.get(base_url + "/", timeout=5.0)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# --- the engine loop ------------------------------------------------------------------------------


@dataclass
class RunState:
    started_unix: float
    records: int = 0
    exit_reason: str = "completed"
    detail: str = ""
    engine_returncode: int | None = None
    engine_started_unix: float | None = None


def process_cpu_share(process: psutil.Process, capacity_cores: int) -> float:
    """CPU of the engine's process tree, as a share of the cores it can use."""
    total = 0.0
    with suppress(psutil.Error):
        for proc in [process, *process.children(recursive=True)]:
            with suppress(psutil.Error):
                total += proc.cpu_percent(None)
    return total / (100.0 * capacity_cores)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)  # both engines stop cleanly and write what they have
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            process.kill()
        process.wait(5)


def run_engine(
    scenario: Scenario,
    engine: Engine,
    script: Path,
    base_url: str,
    run_dir: Path,
    target_handle: Any,
    options: RunOptions,
    view: LiveView,
    exporter: LiveExporter,
) -> RunState:
    raw_dir = run_dir / "raw"
    max_run_s = scenario.load.duration_s + ENGINE_GRACE_S
    plan = LaunchPlan(script, base_url, raw_dir, max_run_s, options.processes, scenario.load.model == "open")
    launch = engine.launch(plan)
    state = RunState(started_unix=time.time())
    reader = engine.reader(raw_dir, launch)
    capacity = engine.cpu_capacity(options.processes)
    store = RecordStore(run_dir)
    health = GeneratorHealth()
    log = (run_dir / "logs" / f"{engine.name}.log").open("wb")
    process = subprocess.Popen(
        launch.argv, env=launch.env, stdout=log, stderr=subprocess.STDOUT, cwd=script.parent
    )
    ps_process = psutil.Process(process.pid)
    process_cpu_share(ps_process, capacity)  # prime psutil's counters
    last_health = time.monotonic()
    judge = AbortJudge(scenario) if options.abort_on_fail else None
    try:
        while True:
            records = reader.poll()
            store.append(records)
            state.records += len(records)
            view.add(records)
            exporter.add(records)
            exporter.tick(view.all_records, reader.started_unix)
            now = time.monotonic()
            if now - last_health >= 1.0:
                health.add(time.time(), process_cpu_share(ps_process, capacity))
                last_health = now
            view.refresh(time.time() - state.started_unix)
            if process.poll() is not None:
                break
            if target_handle is not None and target_handle.process.poll() is not None:
                state.exit_reason, state.detail = "target_down", "the embedded target exited during the run"
                break
            if time.time() - state.started_unix > max_run_s + 10:
                state.exit_reason, state.detail = "engine_hung", f"the engine ran past {max_run_s:.0f}s"
                break
            if judge is not None and (lost := judge.lost(view.all_records)):
                state.exit_reason, state.detail = "aborted", f"SLO certainly lost: {lost}"
                break
            # the records kept so far leave the cyclic collector's walks, which would otherwise go over
            # all of them again and again as they pile up (docs/performance.md, settings in the code)
            gc.freeze()
            time.sleep(POLL_INTERVAL_S)
    except KeyboardInterrupt:
        state.exit_reason, state.detail = "interrupted", "stopped by Ctrl-C"
    finally:
        gc.unfreeze()
        stop_process(process)
        state.engine_returncode = process.returncode
        final = reader.poll()
        store.append(final)
        state.records += len(final)
        view.add(final)
        store.close()
        log.close()
    if state.exit_reason == "completed" and not engine.ended_cleanly(process.returncode):
        state.exit_reason = "engine_crashed"
        state.detail = f"{engine.name} exited with code {process.returncode}; see logs/{engine.name}.log"
    state.engine_started_unix = reader.started_unix or state.started_unix
    reader_facts = {
        "skipped_lines": reader.skipped,
        "dropped": reader.dropped,
        "dropped_times": reader.dropped_times,
        "started_unix": reader.started_unix,
    }
    (run_dir / "raw" / "reader.json").write_text(json.dumps(reader_facts) + "\n")
    (run_dir / "generator.json").write_text(json.dumps(health.as_dict() | {"samples": health.samples}) + "\n")
    return state


class AbortJudge:
    """--abort-on-fail: after a grace period, stop once an SLO can no longer be met. Each check walks all
    records so far, so checks come every EVERY_S, or less often as the run grows (CPU_SHARE)."""

    GRACE_S = 10.0
    EVERY_S = 2.0
    CPU_SHARE = 0.05

    def __init__(self, scenario: Scenario) -> None:
        from scenariokit.compile.plan import make_plan

        self.scenario = scenario
        self.planned = sum(make_plan(scenario).expected_requests.values())
        self.started = time.monotonic()
        self.next_check = self.started + self.GRACE_S

    def lost(self, records: list[RequestRecord]) -> str | None:
        from scenariokit.results.metrics import RunData
        from scenariokit.results.slo import certainly_lost

        now = time.monotonic()
        if now < self.next_check or not records:
            return None
        data = RunData(records, min(r.t for r in records), time.time(), self.scenario.load.stages)
        lost = [slo.text for slo in self.scenario.slos if certainly_lost(slo, data, self.planned)]
        self.next_check = now + max(self.EVERY_S, (time.monotonic() - now) / self.CPU_SHARE)
        return "; ".join(lost) if lost else None


# --- entry point ----------------------------------------------------------------------------------


def run_scenario(path: Path, options: RunOptions) -> int:
    loaded = load_scenario(path, options.data_root)
    scenario = apply_overrides(loaded.scenario, options)
    if uses_prometheus(scenario, options) and shutil.which("prometheus") is None:
        print(
            "error: Prometheus monitoring (--monitor prometheus or `monitoring: {prometheus: true}`) needs "
            "the `prometheus` server on PATH (apt-get install prometheus)"
        )
        return ExitCode.RUN_ERROR
    engine = get_engine(scenario.engine)
    if options.processes > 1 and not engine.capabilities.worker_processes:
        print(f"error: --processes does not apply to {engine.name}: it runs its load in one process")
        return ExitCode.INVALID_SCENARIO
    run_dir = make_run_dir(scenario, options.out)
    script = compile_scenario(scenario, scenario.engine).write(run_dir / "script")
    started = time.time()
    view = LiveView(scenario, quiet=options.quiet)
    with target_for(scenario, run_dir) as (base_url, handle):
        meta = write_run_metadata(run_dir, scenario, path, engine, base_url, started)
        meta["engine_processes"] = options.processes
        if (reason := target_is_up(base_url)) is not None:
            state = RunState(
                started_unix=started,
                exit_reason="target_down",
                detail=f"target {base_url} is not reachable at start: {reason}",
            )
        else:
            state = monitored_run(scenario, engine, script, base_url, run_dir, handle, options, view, meta)
    return finish(run_dir, meta, state, options, view)


def uses_prometheus(scenario: Scenario, options: RunOptions) -> bool:
    """--monitor on the command line wins over the scenario's `monitoring:` section."""
    if options.monitor is not None:
        return options.monitor == "prometheus"
    return scenario.monitoring.prometheus


def monitored_run(
    scenario: Scenario,
    engine: Engine,
    script: Path,
    base_url: str,
    run_dir: Path,
    handle: Any,
    options: RunOptions,
    view: LiveView,
    meta: dict[str, Any],
) -> RunState:
    """The engine run inside the watchers: host/target sampler, live metrics endpoint, and Prometheus
    when asked for."""
    from scenariokit.run.prometheus import PrometheusServer

    exporter = LiveExporter(scenario)
    with ExitStack() as stack:
        meta["live_metrics_url"] = exporter.start()
        stack.callback(exporter.stop)
        interval_s = scenario.monitoring.interval_s
        if uses_prometheus(scenario, options):
            meta["prometheus_url"] = stack.enter_context(
                PrometheusServer(run_dir, base_url, meta["live_metrics_url"], interval_s)
            ).url
        stack.enter_context(view)
        stack.enter_context(Monitor(run_dir, base_url, interval_s))
        return run_engine(scenario, engine, script, base_url, run_dir, handle, options, view, exporter)


def finish(run_dir: Path, meta: dict[str, Any], state: RunState, options: RunOptions, view: LiveView) -> int:
    from scenariokit.results.report import write_reports
    from scenariokit.results.summary import rebuild_summary

    meta |= {
        "ended_unix": time.time(),
        "exit_reason": state.exit_reason,
        "exit_detail": state.detail,
        "engine_returncode": state.engine_returncode,
        "engine_started_unix": state.engine_started_unix,  # stage windows are measured from here
    }
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    summary = rebuild_summary(run_dir, strict=options.strict)
    problems = write_reports(run_dir, summary)
    view.print_verdict(summary, run_dir, problems)
    return summary.exit_code  # the summary maps crashes and a dead target to exit code 3
