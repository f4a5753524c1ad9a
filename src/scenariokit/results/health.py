"""Trust facts: whether the machine that measured the run can be believed about its latency.

Derived from `generator.json` (the engine's processes' CPU, sampled by run/generator.py) and
`monitor/host.jsonl` (the host's CPU). A saturated load generator, or a host whose CPU is pegged by anything
(the engine, the target on the same host, a noisy neighbour), delays requests on the client side, so the
latency measured then is the machine's as much as the target's. The verdict names each fact as a reason not
to trust the latency; it does not change the exit code (../shared/notes/decisions.md does not say it should).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree as ET

SATURATED_CPU = 0.90  # a share: of the generator's cores, of one core (one process), of the host's cores
SATURATED_FOR_S = 3.0  # in one stretch: a blip (a start-up, a collection) is not a saturated run

GENERATOR_SATURATED = "generator_saturated"
GENERATOR_PROCESS_SATURATED = "generator_process_saturated"
HOST_CPU_PEGGED = "host_cpu_pegged"
GENERATOR_WORKER_LOST = "generator_worker_lost"  # a Locust worker on another machine stopped answering
REASONS = (GENERATOR_SATURATED, GENERATOR_PROCESS_SATURATED, GENERATOR_WORKER_LOST, HOST_CPU_PEGGED)


@dataclass(frozen=True)
class GeneratorSample:
    """One reading of the generator's processes."""

    t: float  # unix time
    share: float  # of the cores the engine may use
    cores: float | None  # cores busy over all its processes (None in files written before format 2)
    count: int | None  # its processes found then
    processes: dict[str, float]  # pid -> share of one core
    runner_cores: float | None = None  # the runner's own process (format 2)
    target_cores: float | None = None  # the embedded target's processes (format 3; None for an external one)


@dataclass(frozen=True)
class TrustFact:
    reason: str  # one of REASONS
    label: str  # a few words, for the headline
    detail: str  # the evidence, for the notes
    seconds: float  # time at or above the threshold


def generator_samples(generator: dict[str, Any]) -> list[GeneratorSample]:
    """The samples of a generator.json; format 1 (`[t, share]` pairs) is read too. Rows that are not
    samples (a damaged file) are skipped."""
    out = []
    for raw in generator.get("samples") or []:
        try:
            out.append(_sample(raw))
        except (TypeError, ValueError, KeyError, AttributeError):
            continue
    return out


def _sample(raw: Any) -> GeneratorSample:
    if isinstance(raw, dict):
        cores, count, runner = raw.get("cores"), raw.get("count"), raw.get("runner_cores")
        return GeneratorSample(
            t=float(raw["t"]),
            share=float(raw["share"]),
            cores=None if cores is None else float(cores),
            count=None if count is None else int(count),
            processes=_shares(raw.get("processes")),
            runner_cores=None if runner is None else float(runner),
            target_cores=_cores(raw.get("target_cores")),
        )
    t, share = raw
    return GeneratorSample(float(t), float(share), None, None, {})


def _cores(raw: Any) -> float | None:
    """A count of busy cores, or None where it is missing or is not one (the sample stays readable)."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _shares(raw: Any) -> dict[str, float]:
    """pid -> share of one core; an entry that is not a pid and a number is left out."""
    out = {}
    for pid, value in (raw or {}).items():
        with suppress(TypeError, ValueError):
            if str(pid).isdigit():
                out[str(pid)] = float(value)
    return out


def number(facts: dict[str, Any], key: str, default: float | None) -> float | None:
    """A figure of generator.json, or the default where it is missing or not a number."""
    try:
        return float(facts[key])
    except (KeyError, TypeError, ValueError):
        return default


def stretches(points: Sequence[tuple[float, bool]]) -> tuple[float, float]:
    """(seconds flagged in all, the longest flagged stretch in seconds), each point standing for one
    sampling interval (the median gap between points): a late poll on a busy host does not shorten it."""
    ordered = sorted(points)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(ordered)]
    spacing = statistics.median(gaps) if gaps else 1.0
    total = longest = 0.0
    start: float | None = None
    for t, flag in ordered:
        if not flag:
            start = None
            continue
        total += spacing
        start = t if start is None else start
        longest = max(longest, t - start + spacing)
    return total, longest


def _sustained(points: Sequence[tuple[float, bool]]) -> float | None:
    """Seconds flagged in all when one stretch lasts SATURATED_FOR_S, else None."""
    total, longest = stretches(points)
    return total if longest >= SATURATED_FOR_S - 1e-9 else None


# --- the generator --------------------------------------------------------------------------------


def _threshold(generator: dict[str, Any]) -> float:
    return number(generator, "threshold", SATURATED_CPU) or SATURATED_CPU


def process_saturated(generator: dict[str, Any], sample: GeneratorSample) -> list[str]:
    """The pids at the threshold of one core, for engines whose processes each use one core."""
    core_limit = number(generator, "process_core_limit", None)
    if core_limit is None:
        return []
    limit = core_limit * _threshold(generator)
    return [pid for pid, share in sample.processes.items() if share >= limit]


def saturated_points(generator: dict[str, Any]) -> list[tuple[float, bool]]:
    """(unix t, saturated) per sample: the processes together, or any one of them at its one core."""
    threshold = _threshold(generator)
    return [
        (s.t, s.share >= threshold or bool(process_saturated(generator, s)))
        for s in generator_samples(generator)
    ]


def _role(generator: dict[str, Any], pid: str, several: bool) -> str:
    if str(generator.get("leader_pid")) != pid:
        return "worker"
    return "lead process" if several else "process"


def process_peaks(generator: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """pid -> its role, its peak share of one core, and the seconds it spent at the threshold of one."""
    samples = generator_samples(generator)
    pids = sorted({pid for s in samples for pid in s.processes}, key=int)
    several = len(pids) > 1
    out = {}
    for pid in pids:
        readings = [(s.t, s.processes[pid]) for s in samples if pid in s.processes]
        flagged = [(s.t, pid in process_saturated(generator, s)) for s in samples]
        out[pid] = {
            "role": _role(generator, pid, several),
            "peak": max(v for _, v in readings),
            "saturated_seconds": stretches(flagged)[0],
        }
    return out


def generator_facts(generator: dict[str, Any]) -> dict[str, Any]:
    """The summary fields of generator.json, from its samples."""
    samples = generator_samples(generator)
    shares = [s.share for s in samples]
    threshold = _threshold(generator)
    saturated_s, _ = stretches([(s.t, s.share >= threshold) for s in samples])
    return {
        "saturated": bool(generator_trust(generator)),
        "saturated_seconds": saturated_s,
        "max_cpu_share": max(shares, default=0.0),
        "mean_cpu_share": statistics.fmean(shares) if shares else 0.0,
        "max_processes": max((s.count or 0 for s in samples), default=0),
        "processes_peak": process_peaks(generator),
        "workers_peak": worker_peaks(generator),
    }


def _workers(generator: dict[str, Any]) -> dict[str, dict[str, Any]]:
    workers = generator.get("workers")
    return {str(k): v for k, v in workers.items() if isinstance(v, dict)} if isinstance(workers, dict) else {}


def _worker_shares(facts: dict[str, Any]) -> list[tuple[float, float]]:
    out = []
    for row in facts.get("samples") or []:
        with suppress(TypeError, ValueError, IndexError):
            out.append((float(row[0]), float(row[1])))
    return out


def worker_peaks(generator: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each remote Locust worker (run --master): its CPU (share of one core, sent by the worker), the
    seconds it spent at the threshold, its clock offset to the master, and when it was lost."""
    threshold = _threshold(generator)
    out = {}
    for worker, facts in _workers(generator).items():
        shares = _worker_shares(facts)
        out[worker] = {
            "peak": max((v for _, v in shares), default=0.0),
            "mean": statistics.fmean(v for _, v in shares) if shares else 0.0,
            "saturated_seconds": stretches([(t, v >= threshold) for t, v in shares])[0],
            "clock_offset_s": facts.get("clock_offset_s"),
            "lost_at": facts.get("lost_at"),
        }
    return out


def worker_trust(generator: dict[str, Any]) -> list[TrustFact]:
    """A remote worker at its one core for a stretch, or one that was lost mid-run: named."""
    threshold = _threshold(generator)
    facts = []
    for worker, facts_of in _workers(generator).items():
        shares = _worker_shares(facts_of)
        seconds = _sustained([(t, v >= threshold) for t, v in shares])
        if seconds is not None:
            detail = (
                f"A Locust worker was saturated: worker {worker} at or above {threshold:.0%} of its one core "
                f"for {seconds:.0f} s (peak {max(v for _, v in shares):.0%}). The users it ran waited on it: "
                "add workers."
            )
            label = f"worker {worker} saturated"
            facts.append(TrustFact(GENERATOR_PROCESS_SATURATED, label, detail, seconds))
        if (lost := facts_of.get("lost_at")) is not None:
            detail = (
                f"A Locust worker was lost: worker {worker} stopped answering the master at "
                f"{float(lost):.0f} (unix s); its records up to its last batch are kept, and its users "
                "were moved to the other workers."
            )
            facts.append(TrustFact(GENERATOR_WORKER_LOST, f"worker {worker} lost", detail, 0.0))
    return facts


def _named(pid: str, peak: dict[str, Any]) -> str:
    return f"{peak['role']} pid {pid} at {peak['peak']:.0%} of one core"


def generator_trust(generator: dict[str, Any]) -> list[TrustFact]:
    """The generator's processes saturated together (a share of its cores), or one of them at its one
    core while the total looks fine (two single-threaded workers on two cores: one at 98%, one idle)."""
    samples = generator_samples(generator)
    threshold = _threshold(generator)
    peaks = process_peaks(generator) if samples else {}
    busiest = sorted(peaks.items(), key=lambda item: -item[1]["peak"])
    total = _sustained([(s.t, s.share >= threshold) for s in samples])
    if total is not None:
        cores = number(generator, "capacity_cores", None)
        of = f"of its {cores:g} core{'s' if cores != 1 else ''}" if cores else "of its capacity"
        named = "; ".join(_named(pid, peak) for pid, peak in busiest[:3])
        detail = (
            f"The load generator was saturated: its processes at or above {threshold:.0%} {of} for "
            f"{total:.0f} s (peak {max(s.share for s in samples):.0%}"
            + (f"; {named}" if named else "")
            + "). Latency measured then includes the generator's own queueing: use more engine processes "
            "or machines."
        )
        return [TrustFact(GENERATOR_SATURATED, "load generator saturated", detail, total)]
    facts = []
    for pid, peak in busiest:
        seconds = _sustained([(s.t, pid in process_saturated(generator, s)) for s in samples])
        if seconds is None:
            continue
        detail = (
            f"A load generator process was saturated: {_named(pid, peak)} (at or above {threshold:.0%} for "
            f"{seconds:.0f} s). One of its processes uses at most one core, so the users it runs waited on "
            "it even though the generator's total share stayed lower: use more engine processes."
        )
        facts.append(
            TrustFact(GENERATOR_PROCESS_SATURATED, f"{peak['role']} pid {pid} saturated", detail, seconds)
        )
    return facts


# --- the host -------------------------------------------------------------------------------------


TARGET_CULPRIT = (
    "mostly the embedded target (it shares this host with the generator: client-side queueing is in "
    "the latency)"
)


@dataclass(frozen=True)
class CpuDivision:
    """Who took a pegged host's CPU, mean percent of all its cores over the pegged seconds."""

    generator: float  # the engine's processes
    runner: float  # scenariokit's own process (poll loop, store, monitor)
    other: float  # the rest: a neighbour, or the target when it runs here and was not sampled
    target: float | None = None  # the embedded target the runner started; None when it was not sampled

    def text(self) -> str:
        head = (
            f"Of the host's CPU then, the load generator's processes took {self.generator:.0f}%, the runner "
            f"(scenariokit itself) {self.runner:.0f}%"
        )
        if self.target is None:
            parts = f" and other processes (the target if it runs here, anything else) {self.other:.0f}%"
        else:
            parts = f", the embedded target {self.target:.0f}% and others {self.other:.0f}%"
        return f"{head}{parts}: {self.culprit()}."

    def culprit(self) -> str:
        """The part that took at least half of what was used, if one did."""
        if self.generator_bound:
            return "mostly the load generator"
        if self.target is not None and self.target >= self.generator + self.runner + self.other:
            return TARGET_CULPRIT
        if self.other >= self.generator + self.runner + (self.target or 0.0):
            return "mostly other processes"
        return "no one part took most of it"

    @property
    def generator_bound(self) -> bool:
        return self.generator >= self.runner + self.other + (self.target or 0.0)


@dataclass(frozen=True)
class HostPegged:
    seconds: float
    mean_percent: float
    division: CpuDivision | None  # None without per-process samples of the generator


def host_pegged(
    host: list[dict[str, Any]], generator: dict[str, Any], window: tuple[float, float] | None = None
) -> HostPegged | None:
    """The host's CPU at or above the threshold (all cores) for a stretch of the window, whoever used it."""
    threshold = 100.0 * SATURATED_CPU
    points = []
    for sample in host:
        try:
            t, cpu = float(sample["t"]), float(sample["cpu_percent"])
        except (KeyError, TypeError, ValueError):
            continue
        if window is None or window[0] <= t <= window[1]:
            points.append((t, cpu))
    seconds = _sustained([(t, cpu >= threshold) for t, cpu in points])
    if seconds is None:
        return None
    pegged = [(t, cpu) for t, cpu in points if cpu >= threshold]
    mean = statistics.fmean(cpu for _, cpu in pegged)
    return HostPegged(seconds, mean, _division(pegged, generator))


def _division(pegged: list[tuple[float, float]], generator: dict[str, Any]) -> CpuDivision | None:
    """The pegged seconds' CPU divided with the generator sample nearest each host sample."""
    samples = [s for s in generator_samples(generator) if s.cores is not None]
    host_cores = number(generator, "host_cores", None) or 0.0
    if not samples or host_cores <= 0:
        return None
    spacing = statistics.median([b.t - a.t for a, b in itertools.pairwise(samples)] or [1.0])
    # the target is named only when every sample carries it (format 3, the embedded target); else it is
    # among the others, as in older files
    with_target = all(s.target_cores is not None for s in samples)
    parts: list[tuple[float, float, float | None, float]] = []  # generator, runner, target, host: percent
    for t, cpu in pegged:
        nearest = min(samples, key=lambda s: abs(s.t - t))
        if abs(nearest.t - t) <= 1.5 * spacing:
            # the host and the processes are read at slightly different moments: each part is capped by
            # what is left of the host's figure, so the parts never add up to more than it
            gen = min(cpu, 100.0 * (nearest.cores or 0.0) / host_cores)
            runner = min(cpu - gen, 100.0 * (nearest.runner_cores or 0.0) / host_cores)
            target = None
            if with_target and nearest.target_cores is not None:
                target = min(cpu - gen - runner, 100.0 * nearest.target_cores / host_cores)
            parts.append((gen, runner, target, cpu))
    if not parts:
        return None
    return CpuDivision(
        generator=statistics.fmean(p[0] for p in parts),
        runner=statistics.fmean(p[1] for p in parts),
        other=statistics.fmean(p[3] - p[0] - p[1] - (p[2] or 0.0) for p in parts),
        target=statistics.fmean(p[2] or 0.0 for p in parts) if with_target else None,
    )


def host_trust(pegged: HostPegged) -> TrustFact:
    threshold = 100.0 * SATURATED_CPU
    who = (
        pegged.division.text()
        if pegged.division is not None
        else "Which processes took it is not known (no per-process samples of the generator then)."
    )
    detail = (
        f"Host CPU pegged: {pegged.seconds:.0f} s at or above {threshold:.0f}% of all cores (mean "
        f"{pegged.mean_percent:.0f}% then). Requests wait for a core on the client side too, so the latency "
        f"measured then is not the target's alone. {who}"
    )
    label = f"host CPU pegged ({pegged.seconds:.0f} s at >= {threshold:.0f}%)"
    return TrustFact(HOST_CPU_PEGGED, label, detail, pegged.seconds)


def host_bound_generator(pegged: HostPegged) -> TrustFact | None:
    """The generator is saturated too when it took most of a pegged host: below its own cores, but it
    could get no more (on one host with the target, the usual way a generator runs out)."""
    division = pegged.division
    if division is None or not division.generator_bound:
        return None
    detail = (
        f"The load generator was saturated: it took {division.generator:.0f}% of a host pegged for "
        f"{pegged.seconds:.0f} s, so it could get no more CPU although its processes stayed below their own "
        "cores. Latency measured then includes the generator's own queueing: run the engine on another "
        "host, or the target elsewhere."
    )
    return TrustFact(GENERATOR_SATURATED, "load generator saturated (host-bound)", detail, pegged.seconds)


def trust_facts(
    generator: dict[str, Any], host: list[dict[str, Any]], window: tuple[float, float] | None = None
) -> list[TrustFact]:
    """Every reason not to trust the run's latency, generator first."""
    facts = generator_trust(generator) + worker_trust(generator)
    pegged = host_pegged(host, generator, window)
    if pegged is None:
        return facts
    if not any(f.reason == GENERATOR_SATURATED for f in facts) and (bound := host_bound_generator(pegged)):
        facts.append(bound)
    return [*facts, host_trust(pegged)]


def caveat(facts: Sequence[Any]) -> str:
    """The headline's words for the facts (TrustFact or its summary model): '' when there are none."""
    if not facts:
        return ""
    return "latency not trustworthy: " + "; ".join(f.label for f in facts)


def junit_trust(suite: ET.Element, facts: Sequence[Any], classname: str) -> None:
    """The facts (TrustFact or its summary model) in a JUnit testsuite, where CI pages show them without
    failing the build (the exit code does not change either): the caveat and each detail as properties of
    the suite, one skipped testcase per reason (listed by GitHub's, GitLab's and Jenkins' test reports, its
    message the label, its system-out the evidence), and the same words in the suite's system-out."""
    if not facts:
        return
    properties = ET.Element("properties")  # a suite's properties come before its testcases
    ET.SubElement(properties, "property", name="trust", value=caveat(facts))
    for fact in facts:
        ET.SubElement(properties, "property", name=f"trust.{fact.reason}", value=fact.detail)
    suite.insert(0, properties)
    for fact in facts:
        case = ET.SubElement(suite, "testcase", classname=f"{classname}.trust", name=f"trust: {fact.reason}")
        ET.SubElement(case, "skipped", message=f"{caveat([fact])}")
        ET.SubElement(case, "system-out").text = fact.detail
    for count in ("tests", "skipped"):
        suite.set(count, str(int(suite.get(count) or 0) + len(facts)))
    ET.SubElement(suite, "system-out").text = "\n".join([caveat(facts), *(f.detail for f in facts)])
