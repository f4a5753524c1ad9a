"""A run's summary: `summary.json` (schema: schemas/summary.schema.json), `summary.md` and `junit.xml`.

Everything is rebuilt from the run folder (run.json + stored records), so `scenariokit report RUN_DIR`
gives the same summary as the run that wrote it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from pydantic import BaseModel, Field, field_validator

from scenariokit.compile.ir import TIME_METRICS
from scenariokit.engines.records import RequestRecord
from scenariokit.exitcodes import ExitCode
from scenariokit.results.analysis import Analysis, analyse, level_groups
from scenariokit.results.autoscaling import AutoscalingOut, autoscaling_of
from scenariokit.results.autoscaling import markdown_lines as autoscaling_markdown
from scenariokit.results.coldstart import TargetStartsOut, target_starts
from scenariokit.results.coldstart import markdown_lines as target_starts_markdown
from scenariokit.results.confidence import DEFAULT_CONFIDENCE
from scenariokit.results.faults import read_fault_events
from scenariokit.results.fleet import FleetOut, fleet_out, gpu_sources, is_fleet, judge_gpu, read_fleet
from scenariokit.results.fleet import markdown_lines as fleet_markdown
from scenariokit.results.health import REASONS, TrustFact, caveat, junit_trust, trust_facts
from scenariokit.results.inflight import connection_counts, peak_connections
from scenariokit.results.metrics import (
    RunData,
    SampleStats,
)
from scenariokit.results.recovery import Occurrence, Recovery, occurrences, recoveries
from scenariokit.results.runfolder import RunFolder, RunMeta
from scenariokit.results.slo import LEGACY_STATUSES, Verdict, overall, show
from scenariokit.results.stream import FaultTotals, StreamedRun, stream_run
from scenariokit.results.trend import TrendOut, is_trend, judge_trend

EXIT_REASONS = (
    "completed",
    "engine_crashed",
    "engine_hung",
    "target_down",
    "aborted",
    "interrupted",
    "disk_full",
    "running",  # a checkpoint taken while the run went on (run/checkpoint.py)
)
# reasons that keep a run from being judged as planned: exit 3 whatever the SLOs say of what was measured
RUN_ERRORS = ("engine_crashed", "engine_hung", "target_down", "interrupted", "disk_full")


class DistributionOut(BaseModel):
    count: int
    min: float | None
    mean: float | None
    max: float | None
    percentiles: dict[str, float]


class ErrorReasonOut(BaseModel):
    """The engine's own reasons for one error kind's failures without a response."""

    codes: dict[str, int] = Field(
        description="records per engine code (k6's error_code, or Locust's exception class), most first"
    )
    messages: dict[str, str] = Field(
        description="a sample message per code: cleaned, at most 200 characters, secrets redacted"
    )


class RowOut(BaseModel):
    requests: int
    ok: int
    errors: int
    error_rate: float | None
    throughput: float | None
    latency: DistributionOut
    errors_by_kind: dict[str, int]
    error_reasons: dict[str, ErrorReasonOut] = Field(default_factory=dict)
    peak_in_flight: int | None = Field(
        None,
        description="the most requests in flight at once (sent, not yet answered), counted from the records "
        "at instants 1 ms apart (further apart for runs over 250 s): never more than the true peak, which "
        "it may miss by a peak shorter than that",
    )
    peak_connections: int | None = Field(
        None,
        description="the most TCP connections the engine's processes held open (ESTABLISHED) to the target "
        "at once, counted by the OS once a second; None for a request's row (connections are shared) and "
        "where the OS does not list them",
    )


class StageOut(RowOut):
    label: str
    kind: str
    start_s: float
    end_s: float
    level: tuple[float, float]


class VerdictOut(BaseModel):
    """One SLO's verdict: its point value, the bounds that decided it at `confidence`, and the rule."""

    slo: str
    metric: str
    status: str = Field(description="pass, fail, inconclusive or not_measured")
    value: float | None
    threshold: float
    unit: str
    samples: int = Field(description="n: the samples (or requests) the verdict is judged on")
    margin: float | None
    margin_percent: float | None
    explanation: str
    confidence: float = Field(DEFAULT_CONFIDENCE, description="of each one-sided bound")
    rule: str = Field("", description="how this SLO is decided, in one sentence")
    k: int | None = Field(
        None, description="the count bounded: samples beyond the limit, errors, ok requests, dropped arrivals"
    )
    low: float | None = Field(
        None, description="lower bound of the value, in `unit` (the observed value if exact)"
    )
    high: float | None = Field(None, description="upper bound of the value, in `unit`; null: none at this n")
    share: float | None = Field(None, description="percentile SLOs: k / samples, the share beyond the limit")
    share_low: float | None = Field(
        None, description="percentile SLOs: the share's lower bound (decides fail)"
    )
    share_high: float | None = Field(
        None, description="percentile SLOs: the share's upper bound (decides pass)"
    )
    allowed_share: float | None = Field(
        None, description="percentile SLOs: the share beyond the limit allowed"
    )

    @field_validator("status")
    @classmethod
    def _legacy_status(cls, status: str) -> str:
        return LEGACY_STATUSES.get(status, status)  # `no_data` in summaries written before the bounds


class LevelOut(BaseModel):
    level: float
    seconds: int
    requests: int
    throughput: float
    error_rate: float
    achieved_concurrency: float
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None = None
    peak_in_flight: int = 0
    peak_connections: int | None = None


class SaturationFitOut(BaseModel):
    """Throughput = min(slope x level, capacity), least squares; p_value: F test against no saturation."""

    slope: float
    capacity: float
    knee_level: float
    r_squared: float
    p_value: float


class KneeOut(BaseModel):
    found: bool
    level: float | None
    throughput: float | None
    peak_throughput: float | None
    explanation: str
    fit: SaturationFitOut | None = None
    between: tuple[float, float] | None = None  # no knee placed; the top level is in distress


class SignalOut(BaseModel):
    component: str
    at_s: float
    level: float
    detail: str


class AnalysisOut(BaseModel):
    """Capacity read from the data: levels, the knee, distress signals (earliest first), suggestions."""

    unit: str
    levels: list[LevelOut]
    knee: KneeOut
    signals: list[SignalOut]
    suggestions: list[str]
    target_note: str = ""  # said once when the target has no Prometheus /metrics (not scraped)

    @classmethod
    def of(cls, a: Analysis) -> AnalysisOut:
        return cls(
            unit=a.unit,
            levels=[LevelOut(**asdict(lv)) for lv in a.levels],
            knee=KneeOut(**asdict(a.knee)),
            signals=[SignalOut(**asdict(s)) for s in a.signals],
            suggestions=a.suggestions,
            target_note=a.target_note,
        )


class FaultOut(BaseModel):
    """One occurrence of one fault (faults.jsonl), what the requests met during it, and its recovery."""

    name: str
    kind: str
    occurrence: int = Field(description="0, 1, ... for a fault that recurs")
    start_s: float = Field(description="seconds from the run's start: the fault took effect")
    end_s: float = Field(description="seconds from the run's start: the fault was lifted")
    ready_s: float | None = Field(None, description="kill-target: the target answered ready again")
    cut_short: bool = Field(False, description="the run ended while the fault was active")
    requests: int = Field(description="requests started during the fault")
    errors: int
    errors_by_kind: dict[str, int]
    lost: int = Field(description="requests started during the fault and never answered (no response)")
    outage_requests: int = Field(
        0,
        description="kill-target: requests started from the kill until the target answered again (ready_s); "
        "others: = requests",
    )
    outage_errors: int = Field(0, description="errors among outage_requests")
    outage_lost: int = Field(0, description="outage_requests never answered (no response)")
    recovery_s: float | None = Field(
        None,
        description="seconds from the fault's end until the run was back in its band; null: not recovered",
    )
    recovered: bool | None = Field(None, description="null: no steady state before the fault to compare to")
    slos: dict[str, str] = Field(
        default_factory=dict,
        description="status of each SLO scoped to this fault (during, after, recovery_time), by its text",
    )


class GoodputOut(BaseModel):
    """Requests per second that succeeded and met every latency SLO covering them (DistServe's goodput)."""

    value: float | None = Field(description="good requests per second over the run")
    good: int
    requests: int
    latency_slos: list[str] = Field(description="the latency SLOs a request must meet to count")


class TrustOut(BaseModel):
    """A reason not to trust the run's latency (results/health.py); it does not change the exit code."""

    reason: str = Field(description="One of: " + ", ".join(REASONS))
    label: str = Field(description="a few words, as in the headline")
    detail: str
    seconds: float = Field(description="time at or above the threshold")


class Summary(BaseModel):
    """The machine-readable result of one run."""

    schema_version: int = 1
    scenario: str
    scenario_path: str
    scenario_sha256: str
    git_commit: str | None
    engine: str
    engine_version: str
    base_url: str
    started_unix: float
    ended_unix: float
    duration_s: float
    exit_reason: str = Field(description="One of: " + ", ".join(EXIT_REASONS))
    exit_detail: str
    verdict: str = Field(description="pass, fail or inconclusive")
    exit_code: int
    verdicts: list[VerdictOut]
    overall: RowOut
    time_metrics: dict[str, DistributionOut]
    by_request: dict[str, RowOut]
    by_stage: list[StageOut]
    dropped_iterations: int
    generator: dict[str, Any]
    trust: list[TrustOut] = Field(
        default_factory=list,
        description="reasons not to trust the latency: a saturated generator, a pegged host",
    )
    analysis: AnalysisOut
    notes: list[str]
    target_starts: TargetStartsOut | None = Field(
        None, description="the target the runner started: each start timed, and the first requests' penalty"
    )
    trends: list[TrendOut] = Field(
        default_factory=list, description="soak SLOs: each one's per-bucket series and fitted slope"
    )
    faults: list[FaultOut] = Field(
        default_factory=list, description="each fault occurrence the run carried out (faults.jsonl), in order"
    )
    goodput: GoodputOut | None = Field(None, description="requests that met every latency SLO, per second")
    fleet: FleetOut | None = Field(
        None, description="monitoring.targets by role: per-GPU, per-node and per-vLLM peaks"
    )
    autoscaling: AutoscalingOut | None = Field(
        None, description="`monitoring.instances`: ready instances over time and time-to-scale"
    )

    def verdict_lines(self) -> list[str]:
        return [f"{v.status.upper():12} {v.slo}: {v.explanation}" for v in self.verdicts] + self.notes

    def headline(self) -> str:
        """The verdict in words, and whether its latency can be trusted (a saturated generator, a pegged
        host: the `trust` facts)."""
        words = caveat(self.trust)
        return self._verdict_words() + (f" — {words}" if words else "")

    def _verdict_words(self) -> str:
        """The verdict in words, true to the exit code: a run that did not finish is never a pass."""
        if self.exit_code == ExitCode.RUN_ERROR:
            return (
                f"error ({self.exit_reason}) — {self.overall.requests:,} requests measured, "
                f"SLOs judged on them: {self.verdict}"
            )
        if self.exit_reason == "aborted" and self.verdict != "fail":  # abort_when held: exit 1
            return f"fail (aborted by its abort_when rule) — SLOs judged on what was measured: {self.verdict}"
        if self.verdict != "inconclusive":
            return self.verdict
        unjudged = [v.slo for v in self.verdicts if v.status == "inconclusive"]
        level = f"{self.verdicts[0].confidence:.4g}" if self.verdicts else ""
        why = (
            f"too few samples for {', '.join(unjudged)} (bounds at {level} confidence)"
            if self.overall.requests and unjudged
            else "nothing measured"
        )
        if self.exit_code == ExitCode.OK:
            return f"inconclusive — {why} (allowed by --allow-inconclusive)"
        if self.exit_code == ExitCode.SLO_BREACHED:
            return f"inconclusive — {why} (a failure under --strict)"
        return f"inconclusive — {why}"


def _dist(d: SampleStats) -> DistributionOut:
    def clean(x: float) -> float | None:
        return None if x is None or math.isnan(x) else x

    return DistributionOut(
        count=d.count, min=clean(d.min), mean=clean(d.mean), max=clean(d.max), percentiles=d.percentiles
    )


def _row(values: dict[str, Any]) -> dict[str, Any]:
    return values | {"latency": _dist(values["latency"])}


def exit_code_of(
    reason: str, verdict: str, strict: bool = False, allow_inconclusive: bool = False
) -> ExitCode:
    """One meaning per code: 3 the run did not finish, 1 a breach, 4 nothing to judge on, 0 a pass."""
    if reason in RUN_ERRORS:
        return ExitCode.RUN_ERROR
    if verdict == "fail" or reason == "aborted":  # decisions.md: the run's own abort rule is a breach
        return ExitCode.SLO_BREACHED
    if verdict == "inconclusive":
        if strict:
            return ExitCode.SLO_BREACHED
        return ExitCode.OK if allow_inconclusive else ExitCode.INCONCLUSIVE
    return ExitCode.OK


def rebuild_summary(
    run: Path | RunFolder,
    strict: bool = False,
    allow_inconclusive: bool = False,
    confidence: float | None = None,
) -> Summary:
    """`confidence` re-judges at another level than the run's (run.json), e.g. `report --confidence`.
    Raises NotARun or CorruptRun (results/runfolder.py) for a folder whose run.json is missing or wrong."""
    folder = run if isinstance(run, RunFolder) else RunFolder(run)
    run_dir, meta = folder.path, folder.meta
    stages = tuple(meta.stages)
    reader = folder.reader_facts
    started = meta.clock_start
    ended = folder.last_end()
    dropped = [float(t) for t in reader.get("dropped_times", [])]
    slos = tuple(meta.slos)  # IR values with their spans: nothing is re-parsed
    level = confidence if confidence is not None else meta.confidence
    # the records are streamed a batch at a time (results/stream.py): memory does not grow with the run
    plain = tuple(s for s in slos if not is_trend(s) and not is_fleet(s))
    groups = level_groups(stages, max(0.0, ended - started))
    found = occurrences(read_fault_events(run_dir), started, meta.faults)
    streamed = stream_run(run_dir, plain, stages, meta.engine, started, ended, dropped, level, groups, found)
    data = RunData([], started, ended, stages, dropped, found)  # the run's clock, stages and faults
    # soak slopes (results/trend.py): one streamed pass each, holding one bucket's values at a time
    trends = {
        i: judge_trend(slo, _all_records(folder), run_dir, started, data.duration_s, stages, level)
        for i, slo in enumerate(slos)
        if is_trend(slo)
    }
    # the GPU gauges (results/fleet.py): observed facts over the monitor's samples
    gpus, gpu_source = gpu_sources(run_dir, started) if any(is_fleet(s) for s in slos) else ([], "")
    after = {i: t.verdict for i, t in trends.items()} | {
        i: judge_gpu(slo, gpus, data, gpu_source, level) for i, slo in enumerate(slos) if is_fleet(slo)
    }
    judged_now = list(streamed.verdicts)
    verdicts = [after[i] if i in after else judged_now.pop(0) for i in range(len(slos))]
    verdict = overall(verdicts, streamed.records > 0)
    generator = folder.generator
    host = folder.samples("host.jsonl")
    trust = trust_facts(generator, host, (started, ended))  # judged on the engine's window only
    notes = _notes(meta, reader, trust, streamed.records)
    exit_code = exit_code_of(meta.exit_reason, verdict, strict, allow_inconclusive)
    overall_row = streamed.overall
    connections = connection_counts(generator)  # the engine's open connections (run/connections.py)
    fleet = read_fleet(run_dir, started)
    analysis = analyse(
        data,
        meta.load_model,
        folder.samples("target.jsonl"),
        host,
        folder.samples("gpu.jsonl"),
        generator,
        streamed.seconds,
        fleet,
    )
    return Summary(
        scenario=meta.scenario_name,
        scenario_path=meta.scenario_path,
        scenario_sha256=meta.scenario_sha256,
        git_commit=meta.git_commit,
        engine=meta.engine,
        engine_version=meta.engine_version,
        base_url=meta.base_url,
        started_unix=started,
        ended_unix=ended,
        duration_s=data.duration_s,
        exit_reason=meta.exit_reason,
        exit_detail=meta.exit_detail,
        verdict=verdict,
        exit_code=int(exit_code),
        verdicts=[VerdictOut(**asdict(v)) for v in verdicts],
        overall=RowOut(
            **_row(overall_row),
            peak_in_flight=streamed.peaks.overall,
            peak_connections=peak_connections(connections, started),
        ),
        time_metrics={name: _dist(stats) for name, stats in streamed.time_metrics.items()},
        by_request={
            name: RowOut(**_row(row), peak_in_flight=streamed.peaks.by_request.get(name))
            for name, row in streamed.by_request.items()
        },
        by_stage=[
            StageOut(
                **_row(row),
                peak_in_flight=peak,
                peak_connections=peak_connections(connections, started, row["start_s"], row["end_s"]),
            )
            for row, peak in zip(
                streamed.by_stage, streamed.peaks.by_stage or [None] * len(streamed.by_stage), strict=True
            )
        ],
        dropped_iterations=len(data.dropped_times),
        generator=generator,
        trust=[TrustOut(**asdict(fact)) for fact in trust],
        analysis=AnalysisOut.of(analysis),
        notes=notes,
        target_starts=target_starts(run_dir, _all_records(folder)),
        trends=[t.out for t in trends.values()],
        faults=fault_rows(found, streamed, verdicts, slos),
        goodput=goodput_of(streamed, plain, data.duration_s),
        fleet=fleet_out(fleet),
        autoscaling=autoscaling_of(
            run_dir, started, stages, meta.load_model, streamed.seconds.timeline, knee_of(analysis, streamed)
        ),
    )


def knee_of(analysis: Analysis, streamed: StreamedRun) -> tuple[float | None, float | None, list[int]]:
    """What time-to-scale measures one instance's capacity from: the knee's ok/s, level and seconds."""
    knee = analysis.knee
    if not knee.found or knee.level is None:
        return None, None, []
    return knee.throughput, knee.level, streamed.seconds.groups.get(knee.level, [])


def fault_rows(
    found: list[Occurrence], streamed: StreamedRun, verdicts: list[Verdict], slos: tuple[Any, ...]
) -> list[FaultOut]:
    """The fault table: one row per occurrence, with the verdicts of the SLOs scoped to its fault."""
    recovered = recoveries(found, streamed.seconds.timeline)
    rows = []
    for o, totals, outage in zip(found, streamed.faults, streamed.outages, strict=True):
        scoped = {
            v.slo: v.status
            for slo, v in zip(slos, verdicts, strict=True)
            if slo.subject == o.name or (slo.window is not None and slo.window.stage == o.name)
        }
        row = _fault_row(o, totals, recovered[o.name, o.index], scoped)
        rows.append(row.model_copy(update={"outage_requests": outage.requests, "outage_errors": outage.errors,
                                           "outage_lost": outage.lost}))  # fmt: skip
    return rows


def _fault_row(o: Occurrence, totals: FaultTotals, recovery: Recovery, scoped: dict[str, str]) -> FaultOut:
    return FaultOut(
        name=o.name,
        kind=o.kind,
        occurrence=o.index,
        start_s=o.start_s,
        end_s=o.end_s,
        ready_s=o.ready_s,
        cut_short=o.cut_short,
        requests=totals.requests,
        errors=totals.errors,
        errors_by_kind=dict(totals.kinds.most_common()),
        lost=totals.lost,
        recovery_s=recovery.seconds,
        recovered=None if recovery.steady_error_rate is None else recovery.seconds is not None,
        slos=scoped,
    )


def goodput_of(streamed: StreamedRun, slos: tuple[Any, ...], duration_s: float) -> GoodputOut:
    return GoodputOut(
        value=streamed.good / duration_s if duration_s > 0 else None,
        good=streamed.good,
        requests=streamed.records,
        latency_slos=[s.text for s in slos if s.metric in TIME_METRICS],
    )


def _all_records(folder: RunFolder) -> Iterator[RequestRecord]:
    """The stored records, read only if iterated (a run whose target the runner did not start never is)."""
    for batch in folder.records():
        yield from batch


def _notes(meta: RunMeta, reader: dict[str, Any], trust: list[TrustFact], records: int) -> list[str]:
    notes = []
    reason = meta.exit_reason
    if reason != "completed":
        notes.append(f"The run did not complete: {reason}. {meta.exit_detail}".strip())
    notes += [fact.detail for fact in trust]  # a saturated generator, a pegged host
    if reader.get("skipped_lines"):
        notes.append(
            f"{reader['skipped_lines']} unreadable record lines were skipped (an engine crash mid-write)."
        )
    if not records:
        notes.append("No request was measured.")
    return notes


# --- writers --------------------------------------------------------------------------------------


def write_summary(run_dir: Path, summary: Summary) -> None:
    write_atomic(run_dir / "summary.json", summary.model_dump_json(indent=2) + "\n")
    write_atomic(run_dir / "summary.md", markdown(summary))
    write_atomic(run_dir / "junit.xml", junit_xml(summary))


def write_atomic(path: Path, text: str) -> None:
    """A temporary file renamed over `path`: a kill mid-write leaves the previous file whole (a soak's
    checkpoint, run/checkpoint.py)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x * 1000:.1f}"


def markdown(s: Summary) -> str:
    icon = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}[s.verdict]
    if s.exit_code == ExitCode.RUN_ERROR:
        icon = f"ERROR ({s.exit_reason}; SLOs on what was measured: {icon})"
    elif s.exit_reason == "aborted" and s.verdict != "fail":
        icon = f"FAIL (aborted by its abort_when rule; SLOs on what was measured: {icon})"
    words = caveat(s.trust)
    lines = [
        f"# {s.scenario}: {icon}" + (f" ({words})" if words else ""),
        "",
        f"{s.engine_version} against {s.base_url}, {s.duration_s:.1f} s, {s.overall.requests:,} requests "
        f"({s.exit_reason}). Scenario `{s.scenario_path}` sha256 `{s.scenario_sha256[:12]}`"
        + (f", commit `{s.git_commit[:12]}`." if s.git_commit else "."),
        "",
    ]
    lines += [f"> {note}" for note in s.notes] + ([""] if s.notes else [])
    lines += [
        "## SLOs: result vs requirement",
        "",
        "| SLO | status | measured | interval | share beyond limit | samples | margin |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in s.verdicts:
        measured = "—" if v.value is None else _measured(v)
        margin = "—" if v.margin_percent is None else f"{v.margin_percent:+.0f}%"
        lines.append(
            f"| `{v.slo}` | {v.status} | {measured} | {interval_text(v)} | {share_text(v)} | "
            f"{v.samples:,} | {margin} |"
        )
    lines += [
        "",
        *[f"- `{v.slo}`: {v.explanation}. Rule: {v.rule or '—'}." for v in s.verdicts],
        "",
        "## Requests",
        "",
        "| request | sent | errors | error rate | ok/s | mean ms | p50 ms | p95 ms | p99 ms | max ms "
        "| peak in flight | peak connections |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in {**s.by_request, "all": s.overall}.items():
        p = row.latency.percentiles
        rate = "—" if row.error_rate is None else f"{row.error_rate:.2%}"
        ok_rate = "—" if row.throughput is None else f"{row.throughput:.2f}"
        lines.append(
            f"| {name} | {row.requests:,} | {row.errors:,} | {rate} | {ok_rate} | {_ms(row.latency.mean)} "
            f"| {_ms(p.get('p50'))} | {_ms(p.get('p95'))} | {_ms(p.get('p99'))} | {_ms(row.latency.max)} "
            f"| {_count(row.peak_in_flight)} | {_count(row.peak_connections)} |"
        )
    lines += [
        "",
        "## Stages",
        "",
        "| stage | window s | level | sent | ok/s | error rate | mean ms | p95 ms | peak in flight "
        "| peak connections |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for st in s.by_stage:
        rate = "—" if st.error_rate is None else f"{st.error_rate:.2%}"
        ok_rate = "—" if st.throughput is None else f"{st.throughput:.2f}"
        lines.append(
            f"| {st.label} | {st.start_s:g}–{st.end_s:g} | {st.level[0]:g}→{st.level[1]:g} | "
            f"{st.requests:,} | {ok_rate} | {rate} | {_ms(st.latency.mean)} | "
            f"{_ms(st.latency.percentiles.get('p95'))} | {_count(st.peak_in_flight)} | "
            f"{_count(st.peak_connections)} |"
        )
    lines += [
        "",
        "Mean and percentiles are of every request's latency; peak in flight is the most requests sent and "
        "not yet answered at once, counted from the records; peak connections the most TCP connections "
        "the engine held open to the target, counted by the OS once a second, for all requests together "
        "(docs/results-format.md).",
    ]
    errors: dict[str, int] = s.overall.errors_by_kind
    if errors:
        lines += [
            "",
            "## Errors",
            "",
            "| kind | count | engine code | sample message |",
            "|---|---|---|---|",
            *[_error_row(k, n, s.overall.error_reasons.get(k)) for k, n in errors.items()],
        ]
    streamed = {k: v for k, v in s.time_metrics.items() if k in ("ttft", "itl", "tpot") and v.count}
    if streamed:
        lines += [
            "",
            "## Streaming",
            "",
            "| metric | samples | p50 ms | p95 ms | p99 ms |",
            "|---|---|---|---|---|",
        ]
        for name, d in streamed.items():
            lines.append(
                f"| {name} | {d.count:,} | {_ms(d.percentiles.get('p50'))} | "
                f"{_ms(d.percentiles.get('p95'))} | {_ms(d.percentiles.get('p99'))} |"
            )
    if s.dropped_iterations:
        lines += ["", f"Dropped arrivals (no free user): {s.dropped_iterations:,}."]
    lines += goodput_markdown(s.goodput) + faults_markdown(s.faults)
    lines += capacity_markdown(s.analysis) + autoscaling_markdown(s.autoscaling)
    lines += fleet_markdown(s.fleet)
    lines += target_starts_markdown(s.target_starts) if s.target_starts is not None else []
    return "\n".join(lines) + "\n"


def goodput_markdown(g: GoodputOut | None) -> list[str]:
    if g is None or g.value is None or not g.latency_slos:  # without a latency SLO it is the ok rate
        return []
    slos = ", ".join(f"`{text}`" for text in g.latency_slos)
    return ["", f"Goodput: {g.value:.2f}/s ({g.good:,} of {g.requests:,} requests ok and within {slos})."]


def faults_markdown(faults: list[FaultOut]) -> list[str]:
    """The fault table: when each occurrence acted, what the requests met, and the recovery."""
    if not faults:
        return []
    lines = [
        "",
        "## Faults",
        "",
        "| fault | kind | start s | end s | requests | errors | lost | recovery | SLOs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in faults:
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in f.errors_by_kind.items())
        errors = f"{f.errors:,}" + (f" ({kinds})" if kinds else "")
        if f.ready_s is not None:  # kill-target: the outage lasts until the target answers again
            errors += f"; {f.outage_errors:,} of {f.outage_requests:,} until ready at {f.ready_s:.1f} s"
        slos = "; ".join(f"`{text}` {status}" for text, status in f.slos.items()) or "—"
        name = f.name + (f" #{f.occurrence + 1}" if f.occurrence else "")
        end = f"{f.end_s:.1f}" + (" (cut short)" if f.cut_short else "")
        lines.append(
            f"| {name} | {f.kind} | {f.start_s:.1f} | {end} | {f.requests:,} | {errors} | {f.lost:,} | "
            f"{recovery_text(f)} | {slos} |"
        )
    return lines


def recovery_text(f: FaultOut) -> str:
    if f.recovered is None:
        return "— (no steady state before it)"
    if f.recovery_s is None:
        return "not recovered by the end of the run"
    return f"{f.recovery_s:.0f} s"


GROWTH_UNITS = ("ratio/h", "B/h")  # soak trends (results/trend.py): shown as %/h and MB/h, not raw numbers


def _measured(v: VerdictOut) -> str:
    return (
        show(v.value, v.unit) if v.unit in GROWTH_UNITS and v.value is not None else f"{v.value:.6g} {v.unit}"
    )


def _bound(x: float | None) -> str:
    return "?" if x is None else f"{x:.4g}"


def interval_text(v: VerdictOut) -> str:
    """The value's bounds in its unit (each one-sided at the verdict's confidence), `?` where the samples
    give none (the p99 of 100 samples has no upper bound at 95%)."""
    if v.low is None and v.high is None:
        return "—"
    if v.low == v.high and v.share is None:  # min, max, a count: facts of the samples, no bound
        return "exact"
    if v.unit in GROWTH_UNITS and v.low is not None and v.high is not None:
        return f"[{show(v.low, v.unit)}, {show(v.high, v.unit)}] ({v.confidence:.4g})"
    return f"[{_bound(v.low)}, {_bound(v.high)}] {v.unit} ({v.confidence:.4g})"


def share_text(v: VerdictOut) -> str:
    if v.share_low is None or v.share_high is None or v.allowed_share is None:
        return "—"
    allowed = f"{v.allowed_share * 100:.3g}%"
    return f"{v.k:,}/{v.samples:,}: [{v.share_low:.3%}, {v.share_high:.3%}], {allowed} allowed"


def _error_row(kind: str, count: int, reason: ErrorReasonOut | None) -> str:
    """A kind's row: its engine codes with their counts, and the most common code's sample message (a
    message is the engine's text: `|` and backticks escaped so that it stays in its cell)."""
    if reason is None or not reason.codes:
        return f"| {kind} | {count:,} | — | — |"
    codes = ", ".join(f"{code} ({n:,})" for code, n in reason.codes.items())
    message = next((reason.messages[c] for c in reason.codes if c in reason.messages), "")
    cell = message.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`") or "—"
    return f"| {kind} | {count:,} | {codes} | {cell} |"


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def capacity_markdown(a: AnalysisOut) -> list[str]:
    lines = ["", "## Capacity", ""]
    if a.levels:
        lines += [
            f"| {a.unit} | seconds | ok/s | in flight | peak in flight | peak connections | error rate "
            "| mean ms | p50 ms | p95 ms | p99 ms |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for lv in a.levels:
            lines.append(
                f"| {lv.level:g} | {lv.seconds} | {lv.throughput:.2f} | {lv.achieved_concurrency:.1f} | "
                f"{lv.peak_in_flight:,} | {_count(lv.peak_connections)} | {lv.error_rate:.1%} | "
                f"{_ms(lv.mean)} | {_ms(lv.p50)} | "
                f"{_ms(lv.p95)} | {_ms(lv.p99)} |"
            )
        lines += ["", "In flight: the mean (Little's law); the latencies are of the ok requests."]
        lines.append("")
    lines.append(f"**Knee:** {a.knee.explanation}.")
    if a.target_note:
        lines += ["", f"Not scraped: {a.target_note}."]
    if a.signals:
        lines += ["", "**First sign of distress:** " + _signal_text(a.signals[0], a.unit), ""]
        lines += [f"- {_signal_text(sig, a.unit)}" for sig in a.signals[1:]]
    else:
        lines += ["", "No component showed sustained distress."]
    if a.suggestions:
        lines += ["", "## Suggestions", "", *[f"- {text}" for text in a.suggestions]]
    return lines


def _signal_text(sig: SignalOut, unit: str) -> str:
    return f"{sig.component} at {sig.at_s:.0f} s ({sig.level:g} {unit}): {sig.detail}"


def junit_xml(s: Summary) -> str:
    failures = sum(1 for v in s.verdicts if v.status == "fail")
    skipped = sum(1 for v in s.verdicts if v.status in ("inconclusive", "not_measured"))
    errors = 1 if s.exit_code == ExitCode.RUN_ERROR else 0
    suite = ET.Element(
        "testsuite",
        name=f"scenariokit.{s.scenario}",
        tests=str(len(s.verdicts) + errors),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=f"{s.duration_s:.3f}",
    )
    for v in s.verdicts:
        case = ET.SubElement(suite, "testcase", classname=f"scenariokit.{s.scenario}", name=v.slo)
        verdict_properties(case, v)
        if v.status == "fail":
            ET.SubElement(case, "failure", message=v.explanation, type="SLOBreached").text = v.explanation
        elif v.status != "pass":
            ET.SubElement(case, "skipped", message=v.explanation)
    if errors:
        case = ET.SubElement(suite, "testcase", classname=f"scenariokit.{s.scenario}", name="run")
        ET.SubElement(case, "error", message=s.exit_detail, type=s.exit_reason)
    junit_trust(suite, s.trust, f"scenariokit.{s.scenario}")  # shown, never a failure
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def verdict_properties(case: ET.Element, v: VerdictOut) -> None:
    """The verdict's figures as JUnit properties, for CI systems that show them beside the test."""
    properties = ET.SubElement(case, "properties")
    figures = {
        "status": v.status,
        "value": v.value,
        "unit": v.unit,
        "interval": interval_text(v),
        "samples": v.samples,
        "k": v.k,
        "share_low": v.share_low,
        "share_high": v.share_high,
        "allowed_share": v.allowed_share,
        "confidence": v.confidence,
        "rule": v.rule,
    }
    for name, value in figures.items():
        if value is not None:
            ET.SubElement(properties, "property", name=name, value=str(value))


def summary_schema_text() -> str:
    return json.dumps(Summary.model_json_schema(), indent=2, sort_keys=True) + "\n"
