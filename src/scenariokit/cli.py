"""The `scenariokit` command line. Each subcommand is a small function over the pipeline modules."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from scenariokit import __version__
from scenariokit.compile.diagnostics import Diagnostic, ScenarioError, Span
from scenariokit.compile.expr import ExprError
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario, engine_names
from scenariokit.exitcodes import ExitCode

if TYPE_CHECKING:
    from scenariokit.results.compare import Thresholds

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def print_diagnostics(diagnostics: Sequence[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        colour = "red" if diagnostic.severity.value == "error" else "yellow"
        # a scenario's own text (keys, values) is in the message: shown as written, never read as markup
        err.print(f"[{colour}]{escape(diagnostic.render())}[/]", markup=True, highlight=False)


def cmd_validate(args: argparse.Namespace) -> int:
    code = ExitCode.OK
    for file in args.files:
        try:
            loaded = load_scenario(Path(file), data_root(args))
        except ScenarioError as exc:
            print_diagnostics(exc.diagnostics)
            code = ExitCode.INVALID_SCENARIO
            continue
        print_diagnostics(loaded.warnings)
        s = loaded.scenario
        out.print(
            f"ok: {s.source_path}: {len(s.requests)} requests, {len(s.slos)} SLOs, "
            f"{s.load.duration_s:g}s of {s.load.model}-model load"
        )
    return code


def cmd_compile(args: argparse.Namespace) -> int:
    loaded = load_scenario(Path(args.file), data_root(args))
    print_diagnostics(loaded.warnings)
    if args.deploy:
        return compile_deploy(loaded.scenario, args)
    engine = args.engine or loaded.scenario.engine
    script = compile_scenario(loaded.scenario, engine)
    print_diagnostics(script.diagnostics)
    entry = script.write(Path(args.out))
    out.print(f"wrote {entry} ({engine}; {len(script.files)} files in {args.out})")
    return ExitCode.OK


def cmd_plan(args: argparse.Namespace) -> int:
    from scenariokit.compile.plan import render_plan
    from scenariokit.run.disk_use import describe, disk_estimate

    loaded = load_scenario(Path(args.file), data_root(args))
    print_diagnostics(loaded.warnings)
    render_plan(loaded.scenario, out)
    for line in describe(disk_estimate(loaded.scenario, args.processes), loaded.scenario):
        out.print(f"  {line}", highlight=False)
    if args.capacity:
        from scenariokit.run.capacity import render_capacity

        for line in render_capacity(capacity_from_flags(loaded.scenario, args)):
            out.print(line, highlight=False)
    return ExitCode.OK


def calibration_flag(args: argparse.Namespace) -> Any:
    """The calibration `--calibration FILE` names, else this machine's stored one; exit 2 without one."""
    from scenariokit.run.calibrate import CalibrationError, calibration_path, load_calibration

    path = Path(args.calibration) if args.calibration else calibration_path()
    if not path.exists():
        raise _usage(
            f"no calibration at {path}", "run `scenariokit calibrate` first, or pass --calibration FILE"
        )
    try:
        calibration, warnings = load_calibration(path)
    except CalibrationError as exc:
        raise _usage(str(exc), "run `scenariokit calibrate` again") from None
    for warning in warnings:
        err.print(f"[yellow]warning: {escape(warning)}[/]")
    return calibration


def capacity_from_flags(scenario: Any, args: argparse.Namespace) -> Any:
    """The capacity plan on machines of this one's size, or of --machine-cores / --machine-memory."""
    import psutil

    from scenariokit.run.capacity import Machine, capacity_plan

    cores = args.machine_cores or os.cpu_count() or 1
    memory = memory_flag(args.machine_memory) if args.machine_memory else psutil.virtual_memory().total
    return capacity_plan(scenario, calibration_flag(args), Machine(cores, memory))


def memory_flag(text: str) -> int:
    """`64GiB`, `512MB`: bytes (the byte units of the SLO language), 1 MiB to 1 PiB."""
    import re

    from scenariokit.compile.expr.units import BYTE_UNITS

    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]+)", text.strip())
    value = float(match[1]) * BYTE_UNITS[match[2]] if match and match[2] in BYTE_UNITS else 0.0
    if not 2**20 <= value <= 2**50:
        raise _usage(f"--machine-memory {text!r} is not a memory size", "e.g. 64GiB or 512MB, 1MiB to 1PiB")
    return int(value)


def compile_deploy(scenario: Any, args: argparse.Namespace) -> int:
    """`compile --deploy kubernetes`: manifests with the capacity plan's worker count per engine, or
    --workers for both."""
    from scenariokit.deploy.kubernetes import kubernetes_manifests

    if args.workers:
        workers = {"k6": args.workers, "locust": args.workers}
    else:
        plan = capacity_from_flags(scenario, args)
        workers = {layout.engine: layout.workers for layout in plan.layouts}
        missing = sorted({"k6", "locust"} - set(workers))
        if missing:
            raise _usage(f"the calibration has no figures for {', '.join(missing)}", "pass --workers N")
    manifests = kubernetes_manifests(scenario, workers, args.base_url, args.runner_image)
    for path in manifests.write(Path(args.out)):
        out.print(f"wrote {path}")
    out.print(f"workers: k6 parallelism {workers['k6']}, Locust worker replicas {workers['locust']}")
    return ExitCode.OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    from scenariokit.run.calibrate import MAX_SECONDS, calibrate, calibration_path

    if not 1 <= args.seconds <= MAX_SECONDS:
        raise _usage(f"--seconds {args.seconds:g} is out of range", f"1 to {MAX_SECONDS:g} seconds a run")
    engines = engine_names() if args.engine == "all" else [args.engine]
    calibration = calibrate(engines, args.seconds)
    path = Path(args.out) if args.out else calibration_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(calibration.as_json(), encoding="utf-8")
    for cost in calibration.engines.values():
        out.print(
            f"{cost.engine} ({cost.version}): {cost.requests_per_core_s:,.0f} requests/s a core; memory "
            f"{cost.memory_base_bytes / 2**20:,.1f} MiB + {cost.memory_per_user_bytes / 2**10:,.1f} KiB "
            "a user"
        )
    out.print(f"wrote {path}")
    return ExitCode.OK


def cmd_collect(args: argparse.Namespace) -> int:
    from scenariokit.results.confidence import DEFAULT_CONFIDENCE
    from scenariokit.run.collect import collect
    from scenariokit.run.orchestrate import RunOptions

    confidence = confidence_flag(args)
    options = RunOptions(
        engine=args.engine,
        base_url=args.base_url,
        quiet=args.quiet,
        strict=args.strict,
        data_root=Path(args.data_root) if args.data_root else None,
        force=args.force,
        allow_inconclusive=args.allow_inconclusive,
        confidence=DEFAULT_CONFIDENCE if confidence is None else confidence,
    )
    return collect(Path(args.file), Path(args.raw_dir), Path(args.out) if args.out else None, options)


def _usage(message: str, hint: str) -> ScenarioError:
    return ScenarioError([Diagnostic(Span("<command line>", 0, 0), message, hint)])


def cmd_schema(args: argparse.Namespace) -> int:
    from scenariokit.compile.schema import scenario_schema_text

    sys.stdout.write(scenario_schema_text())
    return ExitCode.OK


def run_overrides(args: argparse.Namespace) -> tuple[float | None, int | None, float | None]:
    """--duration, --users and --rate, each in the range the compiler allows a scenario (limits.py):
    a run of 0 s or 1e20 users is refused with exit 2 before anything is sent. A diagnostic's position is
    the flag (`--users:1:1`), with columns inside its value."""
    from scenariokit.compile.expr import parse_duration, parse_rate
    from scenariokit.compile.limits import MAX_RATE, MAX_RUN_S, MAX_USERS, MIN_RUN_S

    problems: list[Diagnostic] = []

    def bounded(flag: str, text: str | None, parse: Any, high: float, hint: str, low: float = 0.0) -> Any:
        if text is None:
            return None
        span = Span(flag, 1, 1)
        try:
            value = parse(text, span)
        except ExprError as exc:
            problems.append(exc.diagnostic)
            return None
        if not low <= value <= high:  # also NaN
            problems.append(Diagnostic(span, f"{flag} {text} is out of range", hint))
        return value

    duration_s = bounded(
        "--duration", args.duration, parse_duration, MAX_RUN_S, "use 1s to 168h (a week)", low=MIN_RUN_S
    )
    users = bounded("--users", args.users, _whole_number, MAX_USERS, f"use 0 to {MAX_USERS} users")
    rate = bounded("--rate", args.rate, parse_rate, MAX_RATE, f"use 0/s to {MAX_RATE:g}/s")
    if problems:
        raise ScenarioError(problems)
    return duration_s, None if users is None else int(users), rate


def _whole_number(text: str, span: Span) -> float:
    """A count of users as typed: `1e20`, `inf` and `2.5` are named instead of argparse's usage error."""
    try:
        value = float(text)
    except ValueError:
        raise ExprError(f"--users {text} is not a number", span, "e.g. --users 20") from None
    if math.isfinite(value) and value != int(value):
        raise ExprError(f"--users {text} is not a whole number", span, "e.g. --users 20")
    return value  # inf and nan are refused by the range check


def confidence_flag(args: argparse.Namespace) -> float | None:
    """--confidence as typed: a number from 0.5 up to (not including) 1, else exit 2 naming the flag.
    `1` would make every bound the whole range (nothing ever decided), `1e400` reads as inf, `nan` as
    nothing at all."""
    from scenariokit.results.confidence import MIN_CONFIDENCE

    text = args.confidence
    if text is None:
        return None
    span = Span("--confidence", 1, 1)
    hint = "e.g. --confidence 0.95 (0.5 <= c < 1)"
    try:
        value = float(text)
    except ValueError:
        raise ScenarioError([Diagnostic(span, f"--confidence {text} is not a number", hint)]) from None
    if not MIN_CONFIDENCE <= value < 1:  # also NaN and inf
        raise ScenarioError([Diagnostic(span, f"--confidence {text} is out of range", hint)])
    return value


def checkpoint_flag(args: argparse.Namespace) -> float:
    """--checkpoint as typed: a duration up to a week (`0s`: no checkpoints), else exit 2 naming the flag."""
    from scenariokit.compile.expr import parse_duration
    from scenariokit.compile.limits import MAX_RUN_S
    from scenariokit.run.checkpoint import DEFAULT_EVERY_S

    if args.checkpoint is None:
        return DEFAULT_EVERY_S
    span = Span("--checkpoint", 1, 1)
    try:
        value = float(parse_duration(args.checkpoint, span))
    except ExprError as exc:
        raise ScenarioError([exc.diagnostic]) from None
    if not 0 <= value <= MAX_RUN_S:
        hint = "e.g. --checkpoint 10m (0s: none)"
        raise ScenarioError([Diagnostic(span, f"--checkpoint {args.checkpoint} is out of range", hint)])
    return value


def port_flag(text: str) -> int:
    """A TCP port to listen on: 1 to 65535 (argparse names the flag and exits 2 otherwise)."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1 to 65535)")
    return int(text)


def cmd_run(args: argparse.Namespace) -> int:
    from scenariokit.results.confidence import DEFAULT_CONFIDENCE
    from scenariokit.run.orchestrate import RunOptions, run_scenario

    duration_s, users, rate = run_overrides(args)
    confidence = confidence_flag(args)
    options = RunOptions(
        engine=args.engine,
        out=Path(args.out) if args.out else None,
        duration_s=duration_s,
        users=users,
        rate=rate,
        base_url=args.base_url,
        quiet=args.quiet,
        abort_on_fail=args.abort_on_fail,
        strict=args.strict,
        monitor=args.monitor,
        processes=args.processes,
        data_root=data_root(args),
        force=args.force,
        allow_inconclusive=args.allow_inconclusive,
        confidence=DEFAULT_CONFIDENCE if confidence is None else confidence,
        allow_exec=args.allow_exec,
        checkpoint_s=checkpoint_flag(args),
        web_port=args.web_port if args.web else None,
        baseline=Path(args.baseline) if args.baseline else None,
        metrics_listen=args.metrics_listen,
        master_bind=master_flag(args),
        expect_workers=args.expect_workers or 0,
        launcher=args.launcher,
    )
    return run_scenario(Path(args.file), options)


def master_flag(args: argparse.Namespace) -> tuple[str, int] | None:
    """`--master [--master-bind HOST:PORT] --expect-workers N`: where Locust's master listens for workers
    on other machines (default: every address, Locust's port 5557); None without --master. The flags
    that need each other are refused (exit 2) without it."""
    if not args.master:
        if args.master_bind is not None or args.expect_workers:
            raise ScenarioError(
                [
                    Diagnostic(
                        Span("<command line>", 0, 0),
                        "--master-bind and --expect-workers need --master",
                        "e.g. --master --expect-workers 2",
                    )
                ]
            )
        return None
    if not args.expect_workers:
        raise ScenarioError(
            [
                Diagnostic(
                    Span("<command line>", 0, 0),
                    "--master needs --expect-workers N",
                    "the workers the load waits for, e.g. --expect-workers 2",
                )
            ]
        )
    return args.master_bind or ("0.0.0.0", 5557)


def cmd_worker(args: argparse.Namespace) -> int:
    from scenariokit.engines.locust.worker import run_worker

    workdir = Path(args.dir) if args.dir else None
    return run_worker(Path(args.file), args.master, workdir, args.processes, data_root(args))


def cmd_report(args: argparse.Namespace) -> int:
    from scenariokit.results.compare import check_run
    from scenariokit.results.report import write_reports
    from scenariokit.results.runfolder import CorruptRun, NotARun

    run_dir = Path(args.run_dir)
    confidence = confidence_flag(args)  # None: the run's own (run.json)
    try:
        summary = check_run(run_dir).summary(args.strict, args.allow_inconclusive, confidence)
    except NotARun as exc:
        return fail(f"error: {exc}", ExitCode.INVALID_SCENARIO)
    except CorruptRun as exc:
        return fail(f"error: {exc}", ExitCode.RUN_ERROR)
    except (KeyError, TypeError, ValueError, OSError) as exc:  # a run.json or part damaged past the checks
        return fail(f"error: {run_dir} could not be read: {type(exc).__name__}: {exc}", ExitCode.RUN_ERROR)
    for problem in write_reports(run_dir, summary):
        err.print(problem, markup=False)
    out.print((run_dir / "summary.md").read_text(), markup=False)
    out.print(f"verdict: {summary.headline()}", markup=False)
    out.print(f"report: {run_dir / 'report.html'}", markup=False)
    return summary.exit_code


def fail(message: str, code: ExitCode) -> int:
    err.print(message, markup=False, highlight=False)
    return code


def listen_flag(text: str) -> tuple[str, int]:
    from scenariokit.run.exporter import parse_listen

    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of 1 or more")
    return value


def _share(text: str) -> float:
    """`10%` or `0.1` -> 0.1."""
    text = text.strip()
    return float(text.rstrip("%")) / 100 if text.endswith("%") else float(text)


def thresholds_flag(args: argparse.Namespace) -> Thresholds | None:
    from scenariokit.results.compare import Thresholds

    try:
        return Thresholds(
            latency=_share(args.latency_threshold),
            error_rate=_share(args.error_threshold),
            throughput=_share(args.throughput_threshold),
            alpha=args.alpha,
        )
    except ValueError as exc:
        err.print(f"error: bad threshold: {exc} (use e.g. 10% or 0.1)")
        return None


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.markdown import Markdown

    from scenariokit.results.baseline import BadBaseline
    from scenariokit.results.compare import compare_runs, markdown
    from scenariokit.results.runfolder import CorruptRun, NotARun

    if len(args.runs) < 2:
        return fail("error: compare needs two or more runs (or baselines)", ExitCode.INVALID_SCENARIO)
    if (thresholds := thresholds_flag(args)) is None:
        return ExitCode.INVALID_SCENARIO
    paths = [Path(p) for p in args.runs]
    html = args.out if args.out and args.out.endswith((".html", ".htm")) else None
    try:
        if len(paths) == 2 and not html and all((p / "run.json").is_file() for p in paths):
            comparison = compare_runs(paths[0], paths[1], thresholds)  # two runs: as it always was
            text, body, regressions = markdown(comparison), comparison.as_json(), comparison.regressions
            measured = next(
                d.samples for d in comparison.diffs if d.metric == "error_rate" and d.scope == "all"
            )
            unmeasured = [str(p) for p, n in zip(paths, measured, strict=True) if n == 0]
        else:
            text, body, regressions, unmeasured = compare_matrix(paths, thresholds, html)
    except NotARun as exc:
        return fail(f"error: {exc}", ExitCode.INVALID_SCENARIO)
    except (CorruptRun, BadBaseline) as exc:
        return fail(f"error: {exc}", ExitCode.RUN_ERROR)
    if args.out and not html:
        Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(body + "\n")
    out.print(Markdown(text))
    if regressions:
        return ExitCode.SLO_BREACHED
    if unmeasured:  # a run without a request: no difference can be tested
        return fail(
            "inconclusive: a run measured no request, so nothing could be compared", ExitCode.INCONCLUSIVE
        )
    return ExitCode.OK


def compare_matrix(
    paths: list[Path], thresholds: Thresholds, html: str | None
) -> tuple[str, str, list[object], list[str]]:
    """Two or more runs or baselines, each against the first, Holm-corrected (results/matrix.py)."""
    from scenariokit.results.matrix import compare_many, markdown
    from scenariokit.results.pages import write_compare_page

    matrix = compare_many(paths, thresholds)
    if html:
        write_compare_page(matrix, Path(html))
        out.print(f"page: {html}", markup=False, highlight=False)
    return markdown(matrix), matrix.as_json(), list(matrix.regressions), matrix.unmeasured


def cmd_baseline(args: argparse.Namespace) -> int:
    from scenariokit.results.baseline import UnsafeName, save_baseline
    from scenariokit.results.runfolder import CorruptRun, NotARun

    try:
        path, digest = save_baseline(Path(args.run), Path(args.dir))
    except (NotARun, UnsafeName) as exc:
        return fail(f"error: {exc}; nothing was written", ExitCode.INVALID_SCENARIO)
    except CorruptRun as exc:
        return fail(f"error: {exc}; nothing was written", ExitCode.RUN_ERROR)
    requests = digest.scopes["all"].requests
    size = path.stat().st_size
    out.print(f"saved {path} ({size:,} bytes; {requests:,} requests)", markup=False, highlight=False)
    return ExitCode.OK


def cmd_trend(args: argparse.Namespace) -> int:
    from scenariokit.results.baseline import BadBaseline, load_any
    from scenariokit.results.pages import write_trend_page
    from scenariokit.results.runfolder import CorruptRun, NotARun

    try:
        digests = [load_any(Path(p)) for p in args.inputs]
    except NotARun as exc:
        return fail(f"error: {exc}", ExitCode.INVALID_SCENARIO)
    except (CorruptRun, BadBaseline) as exc:
        return fail(f"error: {exc}", ExitCode.RUN_ERROR)
    page = write_trend_page(digests, Path(args.out))
    out.print(f"trend: {page} ({len(digests)} runs)", markup=False, highlight=False)
    return ExitCode.OK


def cmd_import(args: argparse.Namespace) -> int:
    """A locustfile read as a syntax tree (never run) -> scenario YAML; warnings for what was left out."""
    from scenariokit.compile.pipeline import display_path
    from scenariokit.importers import LoadOptions, import_locustfile
    from scenariokit.importers.output import check_output, write_output

    source, target = Path(args.locustfile), Path(args.out)
    check_output(target, source, args.force)
    options = LoadOptions(args.users, args.spawn_rate, args.run_time, args.host)
    imported = import_locustfile(source, display_path(source), options)
    print_diagnostics(imported.warnings)
    write_output(target, imported.text)
    flows = f" ({imported.flows} with several requests in order)" if imported.flows else ""
    requests = _plural(imported.entries, "request") + flows
    classes = _plural(imported.classes, "user class", "user classes")
    warned = _plural(len(imported.warnings), "warning")
    out.print(
        f"wrote {display_path(target)}: {requests} from {classes}, {warned}",
        markup=False,
        highlight=False,
    )
    try:  # the importer's own check: what it wrote must load as a scenario
        load_scenario(target)
    except ScenarioError as exc:
        print_diagnostics(exc.diagnostics)
        return fail(f"error: {display_path(target)} does not validate (see above)", ExitCode.INVALID_SCENARIO)
    out.print(f"next: scenariokit validate {display_path(target)}", markup=False, highlight=False)
    return ExitCode.OK


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def cmd_serve(args: argparse.Namespace) -> int:
    from scenariokit_server.cli import main as serve_main

    return serve_main(args.server_args, prog="scenariokit serve")


def add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root",
        metavar="DIR",
        help="data sets may read files anywhere inside DIR (default: only inside the scenario's folder)",
    )


def data_root(args: argparse.Namespace) -> Path | None:
    return Path(args.data_root) if args.data_root else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scenariokit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"scenariokit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check scenario files and report every problem")
    p.add_argument("files", nargs="+", metavar="FILE")
    add_data_root(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("compile", help="write a Locust or k6 script for a scenario")
    p.add_argument("file", metavar="FILE")
    add_data_root(p)
    p.add_argument("--engine", choices=engine_names(), help="override the scenario's `engine`")
    p.add_argument("-o", "--out", default="build", help="output folder (default: build)")
    p.add_argument(
        "--deploy",
        choices=["kubernetes"],
        help="write manifests instead: a k6-operator TestRun and Locust master/worker Deployments with the "
        "compiled scenario in ConfigMaps (docs/kubernetes.md)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        help="--deploy: k6 runners and Locust workers (default: plan --capacity's)",
    )
    p.add_argument("--base-url", help="--deploy: the target's URL as the cluster reaches it")
    p.add_argument(
        "--runner-image",
        metavar="IMAGE",
        help="--deploy: an image with scenariokit installed; the Locust master is then `scenariokit run "
        "--master`, which writes one judged run folder (docs/kubernetes.md)",
    )
    add_capacity_flags(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("plan", help="dry run: show the load curve, durations, expected requests, disk use")
    p.add_argument("file", metavar="FILE")
    add_data_root(p)
    p.add_argument("--processes", type=positive_int, default=1, help="Locust worker processes, as for `run`")
    p.add_argument(
        "--capacity",
        action="store_true",
        help="the generator cores, machines, memory and workers each engine needs at the peak, from "
        "`scenariokit calibrate`'s figures",
    )
    add_capacity_flags(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "calibrate", help="measure this machine's requests/s a core and memory a user, per engine"
    )
    p.add_argument("--engine", choices=[*engine_names(), "all"], default="all")
    p.add_argument("--seconds", type=float, default=10.0, help="each measured run's hold (default 10)")
    p.add_argument(
        "-o", "--out", help="where to store it (default: $XDG_CACHE_HOME/scenariokit/calibration.json)"
    )
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("run", help="run a scenario: start the engine, measure, judge the SLOs")
    p.add_argument("file", metavar="FILE")
    add_data_root(p)
    p.add_argument("--engine", choices=engine_names(), help="override the scenario's `engine`")
    p.add_argument("--out", help="run folder, new or empty (default: runs/<name>-<time>); see --force")
    p.add_argument("--duration", help="stretch or shrink the curve to this total, e.g. 30s")
    p.add_argument("--users", help="closed model: rescale the curve to this peak of users")
    p.add_argument("--rate", help="open model: rescale the curve to this peak rate, e.g. 20/s")
    p.add_argument("--base-url", help="override the target's base_url")
    p.add_argument("--quiet", action="store_true", help="no live progress, only the verdict")
    p.add_argument("--abort-on-fail", action="store_true", help="stop early once an SLO is certainly lost")
    p.add_argument(
        "--web",
        action="store_true",
        help="run the engine with its own web UI on 127.0.0.1 (Locust's UI; k6's web dashboard) while the "
        "run starts by itself and records as usual",
    )
    p.add_argument(
        "--web-port", type=port_flag, default=8089, help="the web UI's port (default 8089, Locust's)"
    )
    add_inconclusive_flags(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="--out may hold a previous run: delete it first (never a folder a run is writing into)",
    )
    p.add_argument(
        "--checkpoint",
        metavar="DURATION",
        help="rewrite summary.json and summary.md this often while the run goes, so that a long run killed "
        "midway keeps a summary (default 10m; 0s: never)",
    )
    p.add_argument(
        "--allow-exec",
        action="store_true",
        help="let the scenario run programs (target.start_command); without it such a run stops before "
        "any load (exit 2)",
    )
    p.add_argument(
        "--processes",
        type=positive_int,
        default=1,
        help="Locust: run a master and this many worker processes, one core each (k6 already uses every "
        "core)",
    )
    p.add_argument(
        "--monitor",
        choices=["builtin", "prometheus"],
        help="builtin: sample /metrics and the host into the run folder (always on); prometheus: also run "
        "Debian's Prometheus on loopback, scraping the target and scenariokit's live endpoint "
        "(default: the scenario's `monitoring:` section)",
    )
    p.add_argument(
        "--metrics-listen",
        type=listen_flag,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="where the live /metrics endpoint listens (default: loopback, a free port); the compose stack "
        "in monitoring/ scrapes port 9646 of the Docker host: e.g. 0.0.0.0:9646 (docs/monitoring.md)",
    )
    p.add_argument(
        "--baseline",
        nargs="?",
        const="baselines",
        metavar="DIR",
        help="compare the run with DIR/<scenario>/baseline.json (default DIR: baselines); exit 1 on a "
        "significant regression, else the run's own exit code",
    )
    p.add_argument(
        "--master",
        action="store_true",
        help="Locust: be the master of workers on other machines (`scenariokit worker`), which send their "
        "records here; needs --expect-workers (docs/distributed.md)",
    )
    p.add_argument(
        "--master-bind",
        type=listen_flag,
        metavar="HOST:PORT",
        help="where the master listens for workers (default 0.0.0.0:5557)",
    )
    p.add_argument("--expect-workers", type=positive_int, metavar="N", help="the workers the load waits for")
    p.add_argument(
        "--launcher",
        metavar="PREFIX",
        help="k6 with --processes N: run instance i behind this command prefix, `{i}` its index (e.g. "
        "'ssh gen{i}'); its records come back on its standard output (docs/distributed.md)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "collect",
        help="judge records written elsewhere (a deployed run's raw records) as one run folder",
    )
    p.add_argument("file", metavar="FILE", help="the scenario that was run")
    p.add_argument(
        "raw_dir", metavar="RAW_DIR", help="a folder of records-*.jsonl files (docs/kubernetes.md)"
    )
    add_data_root(p)
    p.add_argument(
        "--engine", choices=engine_names(), help="the engine that wrote them (default: the scenario's)"
    )
    p.add_argument("--out", help="run folder, new or empty (default: runs/<name>-<time>); see --force")
    p.add_argument("--force", action="store_true", help="--out may hold a previous run: delete it first")
    p.add_argument("--base-url", help="the target's URL as the run used it (run.json)")
    p.add_argument("--quiet", action="store_true", help="only the verdict")
    add_inconclusive_flags(p)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("worker", help="Locust: join a master (`run --master`) from this machine as a worker")
    p.add_argument("file", metavar="FILE", help="the scenario the master runs (compiled here)")
    add_data_root(p)
    p.add_argument("--master", type=listen_flag, required=True, metavar="HOST:PORT", help="the master")
    p.add_argument("--processes", type=positive_int, default=1, help="worker processes on this machine")
    p.add_argument("--dir", help="the folder the scenario is compiled into (default: a new temporary one)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("report", help="rebuild a run's summary from its stored records")
    p.add_argument("run_dir", metavar="RUN_DIR")
    add_inconclusive_flags(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "compare",
        help="compare runs (or baselines) with the first, a matrix for three or more; exit 1 on a regression",
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folders or baselines (baseline.json); the first is the base",
    )
    p.add_argument("--latency-threshold", default="10%", help="flag a percentile this much slower (10%%)")
    p.add_argument("--error-threshold", default="0.5%", help="flag an error rate this much higher (0.5%%)")
    p.add_argument("--throughput-threshold", default="10%", help="flag throughput this much lower (10%%)")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level of the tests (0.01)")
    p.add_argument(
        "-o",
        "--out",
        help="also write the comparison to this file: an HTML page with plots (.html), else Markdown",
    )
    p.add_argument("--json", help="also write the comparison as JSON to this file")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("baseline", help="keep a run's digest as the baseline of its scenario")
    baseline_sub = p.add_subparsers(dest="baseline_command", required=True)
    q = baseline_sub.add_parser(
        "save",
        help="store RUN's histograms, counts and verdicts in DIR/<scenario>/baseline.json (small, for git)",
    )
    q.add_argument("run", metavar="RUN")
    q.add_argument("--dir", default="baselines", help="the baselines folder (default: baselines)")
    q.set_defaults(func=cmd_baseline)

    p = sub.add_parser(
        "trend", help="p95, error rate and throughput across runs and baselines, as one HTML page"
    )
    p.add_argument("inputs", nargs="+", metavar="RUN_OR_BASELINE")
    p.add_argument("-o", "--out", default="trend.html", help="the page to write (default: trend.html)")
    p.set_defaults(func=cmd_trend)

    p = sub.add_parser(
        "import", help="write a scenario from a locustfile (read as text, never run); Locust's -u/-r/-t"
    )
    p.add_argument("locustfile", metavar="LOCUSTFILE")
    p.add_argument("-o", "--out", required=True, help="the scenario file to write, e.g. scenario.yaml")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("-H", "--host", help="the target's base URL, as Locust's --host (default: the file's)")
    p.add_argument("-u", "--users", help="peak number of users, as Locust's -u (default 1)")
    p.add_argument("-r", "--spawn-rate", help="users started per second, as Locust's -r (default 1)")
    p.add_argument("-t", "--run-time", help="total run time, as Locust's -t: 10m, 1h30m, 300s")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("schema", help="print the JSON Schema of the scenario DSL")
    p.set_defaults(func=cmd_schema)

    # its arguments (--help included) go to scenariokit_server's own parser: see parse()
    p = sub.add_parser(
        "serve", help="run the embedded model server (arguments go to scenariokit_server)", add_help=False
    )
    p.set_defaults(func=cmd_serve, server_args=[])
    return parser


def add_capacity_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--calibration",
        metavar="FILE",
        help="`scenariokit calibrate`'s output (default: this machine's, in $XDG_CACHE_HOME/scenariokit)",
    )
    p.add_argument(
        "--machine-cores", type=positive_int, help="a generator machine's cores (default: this one's)"
    )
    p.add_argument("--machine-memory", help="a generator machine's memory, e.g. 64GiB (default: this one's)")


def add_inconclusive_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--confidence",
        metavar="C",
        help="confidence of each bound an SLO is judged by, 0.5 <= C < 1 (run: 0.95, stored in run.json; "
        "report: the run's)",
    )
    either = p.add_mutually_exclusive_group()
    either.add_argument(
        "--strict",
        action="store_true",
        help="an inconclusive SLO (its bounds do not decide) fails the run (1)",
    )
    either.add_argument(
        "--allow-inconclusive",
        action="store_true",
        help="exit 0 instead of 4 when nothing was measured or an SLO had too few samples to judge",
    )


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """`serve` passes every argument on (argparse's REMAINDER refuses ones that look like options)."""
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        args.server_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    try:
        return int(args.func(args))
    except ScenarioError as exc:
        print_diagnostics(exc.diagnostics)
        return ExitCode.INVALID_SCENARIO
    except ExprError as exc:  # a bad value on the command line, e.g. --duration 30
        print_diagnostics([exc.diagnostic])
        return ExitCode.INVALID_SCENARIO
    except KeyboardInterrupt:
        err.print("interrupted")
        return ExitCode.RUN_ERROR
    except Exception as exc:  # a crash is a run error with one line, never a traceback's exit 1
        if os.environ.get("SCENARIOKIT_TRACEBACK"):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        return fail(
            f"error: {args.command} crashed: {type(exc).__name__}: {first} "
            "(SCENARIOKIT_TRACEBACK=1 shows where)",
            ExitCode.RUN_ERROR,
        )
