"""Stage: run a scenario on a stock engine, keep every measurement, judge the SLOs.

The orchestrator compiles the scenario into the run folder, starts the target (the embedded server when
`base_url: embedded`), starts the engine as a subprocess, and polls the engine's record stream into
crash-safe Parquet parts while it watches the engine, the target and the generator's own CPU. Whatever
ends the run (completion, a crash, Ctrl-C, an SLO certainly lost), the summary is written from what was
measured, with an honest reason.

Every process the run starts (the engine, the embedded server) leads a process group of its own, and
the run stops the whole group: Locust's forked workers and the server's model workers go with their
leader. SIGINT and SIGTERM are the run's to handle (`SignalGuard`): the first stops the run wherever it
is, the summary is written from what was measured, and the exit code is 3.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import gc
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from scenariokit import __version__
from scenariokit.compile.diagnostics import Diagnostic, ScenarioError, Span
from scenariokit.compile.ir import DATA_URL_ENV, EnvRef, Scenario, Template
from scenariokit.compile.limits import HEADER_VALUE_FORBIDDEN, MAX_USERS
from scenariokit.compile.lower import control_name
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario, get_engine
from scenariokit.engines.base import WORKERS_JOIN_S, Engine, LaunchPlan, peak_users
from scenariokit.exitcodes import ExitCode
from scenariokit.processes import signal_group, wait_group_gone
from scenariokit.results.baseline import BadBaseline, UnsafeName, stored_baseline
from scenariokit.results.confidence import DEFAULT_CONFIDENCE
from scenariokit.results.hardware import with_target
from scenariokit.results.matrix import gate
from scenariokit.results.runfolder import RUN_FORMAT, CorruptRun, HostInfo, NotARun, RunMeta, write_run_meta
from scenariokit.results.store import RecordStore
from scenariokit.run.checkpoint import DEFAULT_EVERY_S as DEFAULT_CHECKPOINT_S
from scenariokit.run.checkpoint import Checkpoint
from scenariokit.run.connections import target_endpoints
from scenariokit.run.disk_use import disk_estimate
from scenariokit.run.exporter import DEFAULT_LISTEN, LiveExporter
from scenariokit.run.faults import ChaosRun, FaultTargets, check_faults, fault_proxy, needs_admin
from scenariokit.run.generator import GeneratorHealth, GeneratorSampler, embedded_target, every_worker_lost
from scenariokit.run.hardware import probe_hardware
from scenariokit.run.images import allowed_host, serving_images
from scenariokit.run.instances import InstanceSampler, InstancesUnavailable, prometheus_for
from scenariokit.run.live import LiveView
from scenariokit.run.monitor import Monitor
from scenariokit.run.pipeline import AbortJudge, AbortWhen, RecordPipeline, abort_rules_sink, runner_pipeline
from scenariokit.run.target import TargetConfig, TargetSupervisor, check_start_command
from scenariokit_server.launcher import ServerStartError

POLL_INTERVAL_S = 0.5
ENGINE_GRACE_S = 30.0  # time past the curve's end before the engine is stopped by force
GROUP_EXIT_S = 5.0  # after an engine's leader exits: its other processes finish writing their records
LOCK_NAME = ".lock"  # in the run folder, held (flock) for the whole run
# Free space the run folder needs: before the run (its script, data sets, logs and summaries are a few MiB),
# and during it, below which the run stops while it can still write its summary.
MIN_FREE_BYTES = 16 << 20
LOW_FREE_BYTES = 2 << 20
RESERVE_BYTES = 4 << 20  # held in the run folder, freed when the disk fills or the run ends
RESERVE_NAME = ".reserve"
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT})


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
    force: bool = False  # --out may hold a previous run: it is deleted first
    allow_inconclusive: bool = False  # exit 0 instead of 4 when nothing could be judged
    confidence: float = DEFAULT_CONFIDENCE  # of each bound an SLO verdict is decided by (run.json)
    allow_exec: bool = False  # the scenario may run programs (target.start_command): decisions.md
    checkpoint_s: float = DEFAULT_CHECKPOINT_S  # summary.json rewritten this often during the run; 0: never
    web_port: int | None = None  # `--web`: the engine's own web UI on 127.0.0.1 at this port
    baseline: Path | None = None  # `--baseline [DIR]`: the baselines folder to gate the run against
    # `--metrics-listen`: where the live exporter serves /metrics (port 0: a free one), run/exporter.py
    metrics_listen: tuple[str, int] = DEFAULT_LISTEN
    # `--master [--master-bind HOST:PORT] --expect-workers N`: Locust workers on other machines join
    # (docs/distributed.md); `--launcher`: k6's instances run behind this command prefix
    master_bind: tuple[str, int] | None = None
    expect_workers: int = 0
    launcher: str | None = None


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
            check_pool(load.max_users, peak)
    load = dataclasses.replace(load, stages=stages)
    faults = scenario.faults
    if options.duration_s is not None and scenario.load.duration_s > 0:  # planned like the stages
        factor = options.duration_s / scenario.load.duration_s
        faults = tuple(dataclasses.replace(f, times=tuple(t * factor for t in f.times)) for f in faults)
    target = scenario.target
    if options.base_url:
        target = dataclasses.replace(target, base_url=options.base_url.rstrip("/"))
    engine = options.engine or scenario.engine
    return dataclasses.replace(scenario, load=load, target=target, engine=engine, faults=faults)


def check_pool(max_users: int, rate: float) -> None:
    """--rate scales the open model's user pool with it: the compiler's bound holds for the result too."""
    if max_users > MAX_USERS:
        raise ScenarioError(
            [
                Diagnostic(
                    Span("--rate", 1, 1),
                    f"--rate {rate:g}/s needs up to {max_users} users; one machine runs at most {MAX_USERS}",
                    "a lower --rate, or a shorter `expected_latency` in the scenario",
                )
            ]
        )


def header_env_problems(scenario: Scenario, environ: Mapping[str, str]) -> list[Diagnostic]:
    """A `${env:NAME}` in a header whose value holds CR, LF or NUL: the compiler refuses those in literal
    values, and the environment is read only now. Each diagnostic names the variable and the control
    character, never the value (it is usually a secret)."""
    problems: dict[str, Diagnostic] = {}
    for request in scenario.requests:
        for header, value in request.headers:
            refs = value.parts if isinstance(value, Template) else ()
            for ref in (p for p in refs if isinstance(p, EnvRef) and p.name not in problems):
                if (bad := re.search(HEADER_VALUE_FORBIDDEN, environ.get(ref.name, ""))) is not None:
                    problems[ref.name] = Diagnostic(
                        ref.span,
                        f"the environment variable {ref.name} holds {control_name(bad.group())}, and the "
                        f"`{header}` header sends it (its value is not shown)",
                        f"set {ref.name} to one line, e.g. strip the newline a key file ends with: "
                        f"{ref.name}=$(tr -d '\\r\\n' < key.txt)",
                    )
    return list(problems.values())


# --- signals --------------------------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """Raised by `SignalGuard.check` to leave a start-up step. A KeyboardInterrupt, so that code which
    already lets Ctrl-C through its clean-up treats SIGTERM the same."""


class SignalGuard:
    """While installed, SIGINT and SIGTERM only take note: which came first (`received`) and where the run
    was (`phase`). The run looks at every wait of its own (start-up, the poll loop) and stops in order.
    Nothing is raised into the middle of a read or a write, so no record already read from the engine is
    lost; the clean-up that follows is bounded, and later signals do not cut it short."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None
        self.phase = "during start-up"
        self.where = ""
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        self.received, self.phase, self.where = None, "during start-up", ""
        with suppress(ValueError):  # not the main thread: signals stay as they are
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _note(self, signum: int, frame: object) -> None:
        if self.received is None:
            self.received, self.where = signal.Signals(signum).name, self.phase

    def check(self) -> None:
        if self.received is not None:
            raise Interrupted(self.received)

    def detail(self) -> str:
        """For run.json. A Ctrl-C without the guard (not the main thread) arrives as KeyboardInterrupt."""
        return f"stopped by {self.received or 'SIGINT'} {self.where or self.phase}"


SIGNALS = SignalGuard()  # signal handlers belong to the process, and so does their guard


def stop_group(process: subprocess.Popen[bytes], first: int = signal.SIGINT, timeout_s: float = 10.0) -> None:
    """Stops a process that leads its own group: `first` to the leader (both engines stop cleanly on
    SIGINT and write what they have), then the rest of the group gets time to finish, then SIGKILL."""
    pgid = process.pid
    if process.poll() is None:
        with suppress(ProcessLookupError):
            process.send_signal(first)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            signal_group(pgid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                process.wait(5)
    if not wait_group_gone(pgid, GROUP_EXIT_S):
        signal_group(pgid, signal.SIGKILL)


# --- the run folder -------------------------------------------------------------------------------

RUN_SUBFOLDERS = ("script", "raw", "logs", "records")


class RunFolderError(Exception):
    """--out may not be used for this run (exit 2; nothing was sent)."""


def default_run_dir(scenario: Scenario) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{scenario.name}-{stamp}"
    for n in range(1, 100):  # two runs started in the same second get folders of their own
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        if not candidate.exists() or not _entries(candidate):
            return candidate
    raise RunFolderError(f"{base}: 99 runs of this name started this second; pass --out")


def _entries(folder: Path) -> list[Path]:
    return [entry for entry in folder.iterdir() if entry.name != LOCK_NAME]


def _locked(lock: Path) -> bool:
    """Whether a run holds the lock now (asked without creating anything)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the descriptor also releases a lock just taken
    return False


def check_run_dir(out: Path, force: bool, locked_by_us: bool = False) -> None:
    """A run folder must be new or empty; --force replaces only what a previous run left."""
    if not out.exists():
        return
    if not out.is_dir():
        raise RunFolderError(f"--out {out} is not a folder")
    if not locked_by_us and _locked(out / LOCK_NAME):
        raise RunFolderError(f"--out {out}: another run is writing into it")
    entries = _entries(out)
    if not entries:
        return
    if not force:
        raise RunFolderError(
            f"--out {out} is not empty: it holds a previous run; choose a new folder, or --force to "
            "replace it"
        )
    if not (out / "run.json").is_file() and any(e.name not in RUN_SUBFOLDERS for e in entries):
        raise RunFolderError(f"--out {out} holds files but no run (no run.json): --force replaces only a run")


def clear_run_dir(out: Path) -> None:
    """Deletes what a previous run left (a link is removed, never followed)."""
    for entry in _entries(out):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def claim_run_dir(scenario: Scenario, out: Path | None, force: bool) -> tuple[Path, int]:
    """The run folder and the descriptor whose lock the run holds until it ends (close it to release):
    checked before anything is written, and again under the lock."""
    out = out if out is not None else default_run_dir(scenario)
    check_run_dir(out, force)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderError(f"--out {out}: another run is writing into it") from None
        check_run_dir(out, force, locked_by_us=True)  # a run may have written here since the first check
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        if force:
            clear_run_dir(out)
        return make_run_dir(scenario, out), fd
    except BaseException:
        os.close(fd)
        raise


def make_run_dir(scenario: Scenario, out: Path | None) -> Path:
    """The folder's layout, unchecked and unlocked (`claim_run_dir` does both; benchmarks use this)."""
    out = out if out is not None else default_run_dir(scenario)
    for sub in RUN_SUBFOLDERS:
        (out / sub).mkdir(parents=True, exist_ok=True)
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
    run_dir: Path,
    scenario: Scenario,
    source: Path,
    engine: Engine,
    base_url: str,
    started: float,
    confidence: float = DEFAULT_CONFIDENCE,
) -> RunMeta:
    shutil.copyfile(source, run_dir / "scenario.yaml")
    meta = RunMeta(
        format=RUN_FORMAT,
        scenariokit_version=__version__,
        scenario_name=scenario.name,
        slos=list(scenario.slos),  # as compiled, with their spans: `report` judges them without re-parsing
        confidence=confidence,  # `scenariokit report` re-judges at this level unless told another
        scenario_path=scenario.source_path,
        scenario_sha256=scenario.source_sha256,
        git_commit=git_commit(source.resolve()),
        engine=scenario.engine,
        engine_version=engine.version(),
        base_url=base_url,
        embedded_target=scenario.target.is_embedded,
        started_unix=started,
        planned_duration_s=scenario.load.duration_s,
        load_model=scenario.load.model,
        stages=list(scenario.load.stages),
        faults=list(scenario.faults),
        host=HostInfo(
            hostname=platform.node(),
            platform=platform.platform(),
            cpus=os.cpu_count(),
            python=platform.python_version(),
        ),
        hardware=probe_hardware(),
    )
    write_run_meta(run_dir, meta)
    return meta


# --- disk -----------------------------------------------------------------------------------------


def disk_problem(run_dir: Path, need: int) -> str | None:
    """Why the run folder cannot take a run, or None: a write probe (a read-only mount refuses it) and
    the free space the file system reports."""
    probe = run_dir / ".write-probe"
    try:
        with probe.open("wb") as handle:
            handle.write(b"\0" * 65536)
            handle.flush()
            os.fsync(handle.fileno())  # a full disk may refuse only here
        probe.unlink()
        free = shutil.disk_usage(run_dir).free
    except OSError as exc:
        with suppress(OSError):
            probe.unlink()
        return f"the run folder {run_dir} cannot be written: {exc.strerror or exc}"
    if free < need:
        return (
            f"{free / 2**20:.1f} MiB free for the run folder {run_dir}; this run needs about "
            f"{need >> 20} MiB (its records, raw files and report: `scenariokit plan` shows the estimate)"
        )
    return None


def hold_reserve(run_dir: Path) -> Path:
    """Space written now (zeros, so that tmpfs and sparse-file systems count it) and freed when the disk
    fills: the last records and the summary then have room, even on a disk another process filled."""
    reserve = run_dir / RESERVE_NAME
    with reserve.open("wb") as handle:
        for _ in range(RESERVE_BYTES >> 20):
            handle.write(bytes(1 << 20))
        os.fsync(handle.fileno())
    return reserve


def free_reserve(state: RunState) -> None:
    if state.reserve is not None:
        with suppress(OSError):
            state.reserve.unlink()
        state.reserve = None


def disk_full(state: RunState, exc: OSError | None) -> None:
    """The run stops on a full or read-only disk (an OSError of those kinds, or space running low)."""
    if exc is not None and exc.errno not in DISK_ERRNOS:
        raise exc
    free_reserve(state)
    if state.exit_reason != "disk_full":
        state.exit_reason = "disk_full"
        why = exc.strerror if exc is not None else f"less than {LOW_FREE_BYTES >> 20} MiB free"
        state.detail = f"the run folder's disk: {why}; the run stopped, what was written is kept"


@contextmanager
def keeping_on(state: RunState) -> Iterator[None]:
    """A write that a full disk refuses marks the run and goes on to the next (what it can write)."""
    try:
        yield
    except OSError as exc:
        disk_full(state, exc)


# --- target ---------------------------------------------------------------------------------------


def target_config(scenario: Scenario, image_origin: str | None = None) -> TargetConfig | None:
    """What the supervisor starts: the embedded server, an external target's start command, or nothing
    (a target that runs already). The embedded server may fetch image URLs from the runner's image server
    (run/images.py) and from nowhere else."""
    target = scenario.target
    if not target.is_embedded and target.start_command is None:
        return None
    return TargetConfig(
        base_url=None if target.is_embedded else target.base_url,
        mode="cold" if target.start == "cold" else "warm",
        embedded_options=target.embedded_options,
        start_command=target.start_command,
        ready_timeout_s=target.ready_timeout_s,
        server_args=(("--allow-url-host", allowed_host(image_origin)) if image_origin else ())
        + (("--admin",) if needs_admin(scenario) else ()),  # server-side faults go through /admin/fault
        instances=target.instances,
    )


@contextmanager
def target_for(
    scenario: Scenario, run_dir: Path, image_origin: str | None = None
) -> Iterator[tuple[str, TargetSupervisor | None]]:
    """Yields (base_url, supervisor-or-None): the supervisor starts (and times) the target when the
    scenario asks for one; at the end it notes the server's own worker restarts and stops it."""
    if (config := target_config(scenario, image_origin)) is None:
        yield scenario.target.base_url, None
        return
    with TargetSupervisor(config, run_dir) as supervisor:
        supervisor.start(cancelled=lambda: SIGNALS.received is not None)
        SIGNALS.check()
        try:
            yield supervisor.base_url, supervisor
        finally:
            supervisor.note_workers()


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
    reserve: Path | None = None  # space held back for the last records and the summary (hold_reserve)
    data_url: str | None = None  # the runner's image server (run/images.py), for `{name.url}`

    def interrupted(self) -> None:
        self.exit_reason, self.detail = "interrupted", SIGNALS.detail()


@dataclass
class EngineRun:
    """What the poll loop works with: the engine's process, its records' way in, the record pipeline
    (run/pipeline.py: store, tracker, live view, exporter, abort judge) and the watchers."""

    process: subprocess.Popen[bytes]
    reader: Any
    store: RecordStore
    pipeline: RecordPipeline
    judge: AbortJudge | None
    view: LiveView
    exporter: LiveExporter
    health: GeneratorHealth
    started: float
    abort_when: AbortWhen | None = None  # the scenario's own abort rules


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
    state: RunState,
    chaos: ChaosRun | None = None,
) -> None:
    raw_dir = run_dir / "raw"
    max_run_s = scenario.load.duration_s + ENGINE_GRACE_S
    if options.master_bind is not None:  # the master waits for its workers before the load starts
        max_run_s += WORKERS_JOIN_S
    engine_url = chaos.engine_url if chaos is not None else base_url  # the fault proxy's, when one runs
    plan = LaunchPlan(
        script,
        engine_url,
        raw_dir,
        max_run_s,
        options.processes,
        scenario.load.model == "open",
        options.web_port,
        master_bind=options.master_bind,
        expect_workers=options.expect_workers,
        launcher=options.launcher,
        peak_users=peak_users(scenario.load),
    )
    launch = engine.launch(plan)
    if state.data_url is not None:  # `{name.url}` of a served data set renders from it
        launch.env[DATA_URL_ENV] = state.data_url
    reader = engine.reader(raw_dir, launch)
    store = RecordStore(run_dir, on_durable=reader.release)  # raw bytes go once their part is on disk
    pipeline, judge = runner_pipeline(
        scenario, store, view, exporter, options.abort_on_fail, options.confidence
    )
    abort_when = abort_rules_sink(pipeline, scenario)
    health: GeneratorHealth | None = None
    process: subprocess.Popen[bytes] | None = None
    # faults are planned from the engine's test start, the clock stage windows use
    scheduler = chaos.scheduler(run_dir, lambda: reader.started_unix) if chaos and chaos.faults else None
    with (run_dir / "logs" / f"{engine.name}.log").open("wb") as log:
        try:
            SIGNALS.check()
            process = subprocess.Popen(
                launch.argv,
                env=launch.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=script.parent,
                start_new_session=True,  # its own group: stopped whole, and out of the terminal's Ctrl-C
            )
            SIGNALS.phase = "during the run"
            if scheduler is not None:
                scheduler.__enter__()
            health = GeneratorHealth(
                process.pid,
                engine.cpu_capacity(options.processes),
                one_core_each=not engine.capabilities.uses_every_core,
                target_pid_now=embedded_target(target_handle),  # sampled beside the generator
                target_endpoints=target_endpoints(engine_url),  # its open connections, counted there too
            )
            run = EngineRun(
                process, reader, store, pipeline, judge, view, exporter, health, time.time(), abort_when
            )
            poll_engine(run, scenario, target_handle, options, state, max_run_s)
        except KeyboardInterrupt:
            state.interrupted()
        except OSError as exc:  # the disk filled: the engine is stopped below, what is stored stays
            disk_full(state, exc)
        finally:
            SIGNALS.phase = "while the run stopped"
            gc.unfreeze()
            if scheduler is not None:  # the run's end: active faults are lifted and written cut short
                scheduler.stop()
            if process is not None:
                stop_group(process)
                state.engine_returncode = process.returncode
            final = reader.poll()
            state.records += len(final)
            with keeping_on(state):
                pipeline.add(final)  # the store first: a live sink's failure cannot cost these records
                pipeline.close()
    if state.exit_reason == "completed" and not engine.ended_cleanly(state.engine_returncode):
        state.exit_reason = "engine_crashed"
        state.detail = f"{engine.name} exited with code {state.engine_returncode}; see logs/{engine.name}.log"
    workers = getattr(reader, "workers", {})  # Locust workers on other machines (run --master)
    if state.exit_reason == "completed" and (lost := every_worker_lost(workers)):
        state.exit_reason = "engine_crashed"  # nothing was left to carry the load: a run error
        state.detail = f"every Locust worker was lost ({lost}); see logs/{engine.name}.log"
    if other := sorted(w for w, facts in workers.items() if facts.get("other_script")):
        state.exit_reason = "engine_crashed"  # two scenarios' requests cannot be judged as one
        state.detail = (
            f"worker {', '.join(other)} compiled another scenario than the master's (or without its "
            "--duration/--users/--rate/--base-url); the run was stopped"
        )
    state.engine_started_unix = reader.started_unix or state.started_unix
    reader_facts = {
        "skipped_lines": reader.skipped,
        "dropped": reader.dropped,
        "dropped_times": reader.dropped_times,
        "started_unix": reader.started_unix,
        "raw_free_error": getattr(reader, "free_error", None),  # why raw files could not be freed
    }
    with keeping_on(state):
        (run_dir / "raw" / "reader.json").write_text(json.dumps(reader_facts) + "\n")
    if health is not None:
        health.workers = workers
        with keeping_on(state):
            (run_dir / "generator.json").write_text(json.dumps(health.as_dict()) + "\n")


def poll_engine(
    run: EngineRun,
    scenario: Scenario,
    target_handle: Any,
    options: RunOptions,
    state: RunState,
    max_run_s: float,
) -> None:
    """Polls the engine's records into the store and the live outputs until the run ends; says why."""
    sampler = GeneratorSampler(run.health)
    sampler.poll(time.monotonic(), time.time())  # primes the processes there are so far
    # a soak killed late keeps the summary of what it measured (run/checkpoint.py)
    checkpoint = Checkpoint(run.store.dir.parent, options.checkpoint_s, run.store.flush)
    try:
        _poll_until_done(run, target_handle, state, max_run_s, sampler, checkpoint)
    finally:  # a checkpoint still running is killed before the final summary, which must win
        checkpoint.stop()


def _poll_until_done(
    run: EngineRun,
    target_handle: Any,
    state: RunState,
    max_run_s: float,
    sampler: GeneratorSampler,
    checkpoint: Checkpoint,
) -> None:
    tracker = run.exporter.tracker
    while True:
        records = run.reader.poll()
        if tracker.origin_unix is None:  # windows are on the engine's clock, once its start is known
            tracker.origin_unix = run.reader.started_unix
        run.pipeline.add(records)
        checkpoint.tick()
        state.records += len(records)
        run.exporter.tick(run.reader.started_unix)
        sampler.poll(time.monotonic(), time.time())
        run.view.refresh(time.time() - run.started)
        if SIGNALS.received is not None:  # checked after the poll: what was read is stored
            state.interrupted()
            return
        if run.process.poll() is not None:
            return
        if shutil.disk_usage(run.store.dir).free < LOW_FREE_BYTES:  # stop while the summary still fits
            disk_full(state, None)
            return
        if target_handle is not None and target_handle.exited():  # a kill through it is deliberate
            state.exit_reason, state.detail = "target_down", "the started target exited during the run"
            return
        if time.time() - run.started > max_run_s + 10:
            state.exit_reason, state.detail = "engine_hung", f"the engine ran past {max_run_s:.0f}s"
            return
        if run.judge is not None and (lost := run.judge.lost):
            state.exit_reason, state.detail = "aborted", f"SLO certainly lost: {lost}"
            return
        if run.abort_when is not None and (held := run.abort_when.held):
            state.exit_reason, state.detail = "aborted", held
            return
        # what survives a poll (the live window, the store's open part) leaves the cyclic collector's
        # walks (docs/performance.md, settings in the code)
        gc.freeze()
        time.sleep(POLL_INTERVAL_S)


# --- entry point ----------------------------------------------------------------------------------


def run_scenario(path: Path, options: RunOptions) -> int:
    with SIGNALS:
        return _run_scenario(path, options)


def _run_scenario(path: Path, options: RunOptions) -> int:
    loaded = load_scenario(path, options.data_root)
    scenario = apply_overrides(loaded.scenario, options)
    if problems := header_env_problems(scenario, os.environ):
        raise ScenarioError(problems)  # exit 2, before the run folder is claimed or anything is sent
    if (refusal := check_start_command(scenario.target.start_command, options.allow_exec)) is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return ExitCode.INVALID_SCENARIO
    if (refusal := check_faults(scenario, scenario.target.base_url, options.allow_exec)) is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return ExitCode.INVALID_SCENARIO
    if (instances := scenario.monitoring.instances) is not None and not uses_prometheus(scenario, options):
        try:  # a query needs a Prometheus: found before the run folder is claimed or anything is sent
            prometheus_for(instances, None)
        except InstancesUnavailable as exc:
            print(f"error: {exc}; nothing was sent", file=sys.stderr)
            return ExitCode.INVALID_SCENARIO
    if uses_prometheus(scenario, options) and shutil.which("prometheus") is None:
        print(
            "error: Prometheus monitoring (--monitor prometheus or `monitoring: {prometheus: true}`) needs "
            "the `prometheus` server on PATH (apt-get install prometheus)"
        )
        return ExitCode.RUN_ERROR
    baseline = None
    if options.baseline is not None:
        try:  # before anything is sent: a missing or unsafe baseline is the command line's fault
            baseline = stored_baseline(options.baseline, scenario.name)
        except (UnsafeName, NotARun) as exc:
            print(f"error: --baseline: {exc}; nothing was sent", file=sys.stderr)
            return ExitCode.INVALID_SCENARIO
    engine = get_engine(scenario.engine)
    if options.web_port is not None and (busy := port_in_use(options.web_port)) is not None:
        print(f"error: --web-port {options.web_port}: {busy}; nothing was sent", file=sys.stderr)
        return ExitCode.INVALID_SCENARIO
    host, port = options.metrics_listen
    if port and (busy := port_in_use(port, host)) is not None:
        print(f"error: --metrics-listen: {busy}; nothing was sent", file=sys.stderr)
        return ExitCode.INVALID_SCENARIO
    if options.processes > 1 and not engine.capabilities.worker_processes:
        print(f"error: --processes does not apply to {engine.name}: it runs its load in one process")
        return ExitCode.INVALID_SCENARIO
    if (refusal := distribution_refusal(engine, options)) is not None:
        print(f"error: {refusal}; nothing was sent", file=sys.stderr)
        return ExitCode.INVALID_SCENARIO
    compiled = compile_scenario(scenario, scenario.engine)
    try:
        run_dir, lock = claim_run_dir(scenario, options.out, options.force)
    except RunFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.INVALID_SCENARIO
    except OSError as exc:  # a read-only or full disk: a run error, found before anything is sent
        print(f"error: the run folder could not be made: {exc}", file=sys.stderr)
        return ExitCode.RUN_ERROR
    try:
        need = MIN_FREE_BYTES + int(disk_estimate(scenario, options.processes).total_bytes)
        if (problem := disk_problem(run_dir, need)) is not None:
            print(f"error: {problem}; nothing was sent", file=sys.stderr)
            return ExitCode.RUN_ERROR
        started = time.time()
        meta = write_run_metadata(
            run_dir, scenario, path, engine, scenario.target.base_url, started, options.confidence
        )
        meta.engine_processes = options.processes
        view = LiveView(scenario, quiet=options.quiet)
        state = RunState(started_unix=started, reserve=hold_reserve(run_dir))
        try:
            script = compiled.write(run_dir / "script")
            measure(scenario, engine, script, run_dir, options, view, meta, state)
        except KeyboardInterrupt:
            state.interrupted()
        except OSError as exc:  # a watcher's write on a full disk: the summary says so
            disk_full(state, exc)
        code = finish(run_dir, meta, state, options, view)
        return code if baseline is None else gate_on_baseline(run_dir, baseline, code)
    finally:
        with suppress(OSError):  # freed by finish; this covers a crash on the way there
            (run_dir / RESERVE_NAME).unlink()
        os.close(lock)  # releases the run folder


def distribution_refusal(engine: Engine, options: RunOptions) -> str | None:
    """Why --master or --launcher cannot be used with this engine and these options, else None."""
    if options.master_bind is not None and not engine.capabilities.remote_workers:
        return f"--master does not apply to {engine.name}: spread it with --processes N [--launcher]"
    if options.master_bind is not None and options.processes > 1:
        return "--master takes its workers from `scenariokit worker`, not --processes"
    if options.launcher is not None and not engine.capabilities.launched_instances:
        return f"--launcher does not apply to {engine.name}: its workers join with `scenariokit worker`"
    if options.launcher is not None and options.processes < 2:
        return "--launcher needs --processes N (2 or more): one instance per launched machine"
    try:
        if options.launcher is not None and not shlex.split(options.launcher):
            return "--launcher is empty: give the command prefix, e.g. 'ssh gen{n}'"
    except ValueError as exc:  # unbalanced quotes
        return f"--launcher {options.launcher!r}: {exc}"
    return None


def measure(
    scenario: Scenario,
    engine: Engine,
    script: Path,
    run_dir: Path,
    options: RunOptions,
    view: LiveView,
    meta: RunMeta,
    state: RunState,
) -> None:
    """Starts the target, checks it answers, and runs the engine against it; `state` says how it ended."""
    SIGNALS.check()
    try:
        with (
            serving_images(scenario, run_dir / "logs") as image_origin,
            target_for(scenario, run_dir, image_origin) as (base_url, handle),
        ):
            state.data_url = image_origin
            meta.base_url = base_url
            if (reason := target_is_up(base_url)) is not None:
                state.exit_reason = "target_down"
                state.detail = f"target {base_url} is not reachable at start: {reason}"
                return
            with fault_proxy(scenario, run_dir, base_url, handle) as (engine_url, proxy):
                chaos = chaos_run(scenario, base_url, engine_url, handle, proxy)
                monitored_run(
                    scenario, engine, script, base_url, run_dir, handle, options, view, meta, state, chaos
                )
    except ServerStartError as exc:  # the supervisor's TargetStartError: it exited, or never became ready
        state.exit_reason, state.detail = "target_down", f"the target did not start: {exc}"


def gate_on_baseline(run_dir: Path, baseline: Path, code: int) -> int:
    """`run --baseline`: exit 1 on a significant regression against the stored baseline, else the run's
    code; the comparison is printed and kept as baseline-compare.md in the run folder."""
    try:
        gated, text = gate(run_dir, baseline, code)
    except (BadBaseline, CorruptRun, NotARun) as exc:
        print(f"error: --baseline: {exc}", file=sys.stderr)
        return ExitCode.RUN_ERROR
    (run_dir / "baseline-compare.md").write_text(text)
    print(text + f"baseline: {baseline} -> exit {gated}")
    return gated


def chaos_run(
    scenario: Scenario, base_url: str, engine_url: str, supervisor: TargetSupervisor | None, proxy: Any
) -> ChaosRun | None:
    """What the engine run needs for the scenario's faults (run/faults.py); None without faults or proxy."""
    if not scenario.faults and proxy is None:
        return None
    targets = FaultTargets(
        supervisor,
        proxy,
        base_url,
        embedded_fault=dict(scenario.target.embedded_options).get("fault"),  # type: ignore[arg-type]
        ready_timeout_s=scenario.target.ready_timeout_s,
    )
    return ChaosRun(engine_url, targets, scenario.faults, scenario.seed)


def port_in_use(port: int, host: str = "127.0.0.1") -> str | None:
    """Why a server (the engine's web UI, the live exporter) could not listen on host:port, or None (asked
    before any load)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            return f"{host}:{port} cannot be used ({exc.strerror or exc})"
    return None


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
    meta: RunMeta | None,
    state: RunState | None = None,
    chaos: ChaosRun | None = None,
) -> RunState:
    """The engine run inside the watchers: host/target sampler, live metrics endpoint, and Prometheus
    when asked for."""
    from scenariokit.run.prometheus import PrometheusServer

    state = state if state is not None else RunState(started_unix=time.time())

    exporter = LiveExporter(scenario, options.confidence, run_dir=run_dir)
    with ExitStack() as stack:
        live_metrics_url = exporter.start(*options.metrics_listen)
        stack.callback(exporter.stop)
        interval_s = scenario.monitoring.interval_s
        prometheus_url = None
        if uses_prometheus(scenario, options):
            prometheus_url = stack.enter_context(
                PrometheusServer(run_dir, base_url, live_metrics_url, interval_s, scenario.monitoring.targets)
            ).url
        if meta is not None:  # None: a benchmark's run without a run folder's metadata
            meta.live_metrics_url, meta.prometheus_url = live_metrics_url, prometheus_url
        stack.enter_context(view)
        stack.enter_context(Monitor(run_dir, base_url, interval_s, scenario.monitoring.targets))
        if (instances := scenario.monitoring.instances) is not None:  # autoscaling: ready instances
            prometheus = prometheus_for(instances, prometheus_url)
            targets = scenario.monitoring.targets
            own = prometheus is not None and prometheus == prometheus_url  # its first scrapes are awaited
            sampler = InstanceSampler(run_dir, instances, prometheus, targets, interval_s, own)
            stack.enter_context(sampler)
        run_engine(scenario, engine, script, base_url, run_dir, handle, options, view, exporter, state, chaos)
    return state


def finish(run_dir: Path, meta: RunMeta, state: RunState, options: RunOptions, view: LiveView) -> int:
    """Writes the summaries and the report. A signal that came while the run stopped, or comes while they
    are written, marks the run interrupted (and then they are written again)."""
    if SIGNALS.received is not None and state.exit_reason != "interrupted":
        state.interrupted()
    SIGNALS.phase = "while the summary was written"
    free_reserve(state)  # the engine and the watchers have stopped: the summary gets the space
    try:
        code = write_results(run_dir, meta, state, options, view)
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        print(
            f"error: the run's summary could not be written ({exc.strerror}); the records measured so far "
            f"are in {run_dir / 'records'} (`scenariokit report {run_dir}` once there is space)",
            file=sys.stderr,
        )
        return ExitCode.RUN_ERROR
    if SIGNALS.received is not None and state.exit_reason != "interrupted":
        state.interrupted()
        code = write_results(run_dir, meta, state, options, view)
    return code


def write_results(run_dir: Path, meta: RunMeta, state: RunState, options: RunOptions, view: LiveView) -> int:
    from scenariokit.results.report import write_reports
    from scenariokit.results.summary import rebuild_summary

    meta.ended_unix = time.time()
    meta.exit_reason, meta.exit_detail = state.exit_reason, state.detail
    meta.engine_returncode = state.engine_returncode
    meta.engine_started_unix = state.engine_started_unix  # stage windows are measured from here
    meta.hardware = with_target(meta.hardware, run_dir, meta.embedded_target)  # from the stored scrapes
    write_run_meta(run_dir, meta)
    summary = rebuild_summary(run_dir, strict=options.strict, allow_inconclusive=options.allow_inconclusive)
    problems = write_reports(run_dir, summary)
    view.print_verdict(summary, run_dir, problems)
    return summary.exit_code  # the summary maps crashes, signals and a dead target to exit code 3
