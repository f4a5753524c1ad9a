"""Autoscaling observation: ready target instances over time and time-to-scale (`monitoring.instances`).

Read from the run folder: `monitor/instances.json` (where the count came from, and the scenario's
capacity, band and hold) and `monitor/instances.jsonl` (the samples, unix seconds on the records' clock:
run/instances.py). With the per-second view of the records:

- ready(s): the last sample taken at or before the middle of second s (None before the first one);
- offered(s): the intended rate of an open model's curve at the middle of second s (what the generator was
  asked to send, whether or not it kept up); in a closed model the requests sent in s, which a target that
  queues holds down, so there time-to-scale reads low: an open model is the honest way to test scaling;
- ok(s): the ok responses of the requests started in s;
- capacity(s) = capacity_per_instance x ready(s): `capacity_per_instance` as declared, else measured: the
  run's knee (results/analysis.py: the throughput where more load stopped adding any) divided by the
  instances ready in the knee level's seconds (their median). Which one is used is stated.

An episode starts in the first second whose offered rate exceeds the capacity present; it ends when
throughput has caught up: the first of `hold` seconds in a row in which the capacity present covers the
offered rate and ok/s is within `band` below it. time-to-scale = its end - its start (whole seconds, as the
records are counted). An episode whose end the run never saw has no time-to-scale (null), and the summary's
headline figure is the longest episode that did catch up.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from scenariokit.compile.ir import Stage, StageTable
from scenariokit.results.store import read_samples

MAX_POINTS = 5_000  # change points kept in summary.json: a count that flaps every second for a day is cut


class InstancePoint(BaseModel):
    t_s: float = Field(description="seconds from the run's start (the stage clock)")
    ready: int | None = Field(description="ready instances from then on; null: the count could not be read")


class ScaleEpisode(BaseModel):
    """One time the offered load exceeded the capacity present, until throughput caught up."""

    start_s: int = Field(description="the first second whose offered rate exceeded the capacity present")
    offered: float = Field(description="the offered rate (req/s) in that second")
    ready_at_start: int
    capacity_at_start: float = Field(description="capacity_per_instance x ready_at_start (ok/s)")
    scaled_s: float | None = Field(
        None, description="when the ready count first rose above ready_at_start (a sample's time)"
    )
    caught_up_s: int | None = Field(
        None,
        description="the first of `hold` seconds in a row with capacity covering the offered rate and "
        "ok/s within the band below it; null: not before the run ended",
    )
    ready_at_end: int | None = None
    cause: Literal["scaled", "load fell", "not caught up"] = Field(
        description="scaled: more instances were ready when it caught up; load fell: the instances at its "
        "start sufficed again"
    )
    time_to_scale_s: float | None = Field(None, description="caught_up_s - start_s")


class AutoscalingOut(BaseModel):
    """Ready instances over time and time-to-scale (results/autoscaling.py states the rules)."""

    source: str = Field(description="query (PromQL) or targets (monitoring.targets of a role answering)")
    query: str | None = None
    role: str | None = None
    prometheus_url: str | None = None
    capacity_per_instance: float | None = Field(description="ok/s one instance serves; null: unknown")
    capacity_source: Literal["declared", "knee"] | None
    capacity_note: str = Field(description="where the capacity comes from, in words")
    offered_source: Literal["intended", "sent"] = Field(
        description="intended: the open model's curve; sent: the requests a closed model sent"
    )
    band: float
    hold_s: float
    instances: list[InstancePoint] = Field(description="the ready count each time it changed")
    truncated: bool = Field(False, description=f"more than {MAX_POINTS:,} changes: the rest left out")
    samples: int
    unread: int = Field(description="samples without a count (Prometheus down, a query error)")
    first_error: str | None = None
    episodes: list[ScaleEpisode]
    time_to_scale_s: float | None = Field(
        None, description="the longest time-to-scale among the episodes that caught up"
    )


def read_spec(run_dir: Path) -> dict[str, Any] | None:
    try:
        spec = json.loads((run_dir / "monitor" / "instances.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return spec if isinstance(spec, dict) else None


def autoscaling_of(
    run_dir: Path,
    started: float,
    stages: Sequence[Stage],
    load_model: str,
    timeline: Sequence[dict[str, Any]],
    knee: tuple[float | None, float | None, list[int]] = (None, None, []),
) -> AutoscalingOut | None:
    """None when the run had no `monitoring.instances`. `knee`: (throughput, level, the level's seconds)
    from the run's knee analysis, or Nones when it placed none."""
    spec = read_spec(run_dir)
    if spec is None:
        return None
    samples = [s for s in read_samples(run_dir, "instances.jsonl") if isinstance(s.get("t"), int | float)]
    samples.sort(key=lambda s: s["t"])
    ready = ready_per_second(samples, started, len(timeline))
    capacity, source, note = capacity_of(spec.get("capacity_per_instance"), knee, ready)
    offered = offered_per_second(stages, load_model, timeline)
    ok = [int(row.get("ok") or 0) for row in timeline]
    band, hold_s = float(spec.get("band", 0.1)), float(spec.get("hold_s", 3.0))
    episodes = (
        scale_episodes(offered, ok, ready, capacity, band, hold_s, samples, started) if capacity else []
    )
    points, truncated = change_points(samples, started)
    errors = [s.get("error") for s in samples if s.get("ready") is None]
    caught = [e.time_to_scale_s for e in episodes if e.time_to_scale_s is not None]
    return AutoscalingOut(
        source=str(spec.get("source", "query")),
        query=spec.get("query"),
        role=spec.get("role"),
        prometheus_url=spec.get("prometheus_url"),
        capacity_per_instance=capacity,
        capacity_source=source,
        capacity_note=note,
        offered_source="intended" if load_model == "open" else "sent",
        band=band,
        hold_s=hold_s,
        instances=points,
        truncated=truncated,
        samples=len(samples),
        unread=len(errors),
        first_error=next((str(e) for e in errors if e), None),
        episodes=episodes,
        time_to_scale_s=max(caught) if caught else None,
    )


def ready_per_second(samples: Sequence[dict[str, Any]], started: float, seconds: int) -> list[int | None]:
    """Per second of the run: the last sample at or before its middle (a sample without a count counts as
    unknown until the next one)."""
    out: list[int | None] = []
    i, current = 0, None
    for s in range(seconds):
        middle = started + s + 0.5
        while i < len(samples) and samples[i]["t"] <= middle:
            value = samples[i].get("ready")
            current = int(value) if isinstance(value, int | float) and math.isfinite(value) else None
            i += 1
        out.append(current)
    return out


def offered_per_second(
    stages: Sequence[Stage], load_model: str, timeline: Sequence[dict[str, Any]]
) -> list[float]:
    if load_model != "open":
        return [float(row.get("sent") or 0) for row in timeline]
    table = StageTable.of(tuple(stages))
    return [table.level_at(s + 0.5) for s in range(len(timeline))]


def capacity_of(
    declared: float | None,
    knee: tuple[float | None, float | None, list[int]],
    ready: Sequence[int | None],
) -> tuple[float | None, Literal["declared", "knee"] | None, str]:
    """One instance's capacity in ok/s, where it comes from, and a sentence saying so."""
    if declared is not None:
        return float(declared), "declared", f"declared: capacity_per_instance {declared:g}/s"
    throughput, level, seconds = knee
    if throughput is None or level is None:
        return (
            None,
            None,
            (
                "unknown: the run placed no knee to measure one instance's capacity from; declare "
                "`monitoring.instances.capacity_per_instance` (e.g. 50/s) to get time-to-scale"
            ),
        )
    present = [r for i in seconds if i < len(ready) and (r := ready[i])]
    if not present:
        return None, None, f"unknown: no ready count was read at the knee ({level:g}); declare one"
    count = statistics.median(present)
    return (
        throughput / count,
        "knee",
        f"measured: the knee's {throughput:.2f} ok/s at {level:g} with {count:g} instance(s) ready",
    )


def scale_episodes(
    offered: Sequence[float],
    ok: Sequence[int],
    ready: Sequence[int | None],
    capacity: float,
    band: float,
    hold_s: float,
    samples: Sequence[dict[str, Any]],
    started: float,
) -> list[ScaleEpisode]:
    hold = max(1, math.ceil(hold_s - 1e-9))
    episodes: list[ScaleEpisode] = []
    s = 0
    while s < len(offered):
        present = ready[s]
        if present is None or offered[s] <= capacity * present:
            s += 1
            continue
        caught = _caught_up(offered, ok, ready, capacity, band, hold, s)
        episodes.append(_episode(s, caught, offered, ready, capacity, samples, started))
        if caught is None:
            break
        s = caught + hold
    return episodes


def _caught_up(
    offered: Sequence[float],
    ok: Sequence[int],
    ready: Sequence[int | None],
    capacity: float,
    band: float,
    hold: int,
    start: int,
) -> int | None:
    """The first second of `hold` in a row, from `start`, with the capacity present covering the offered
    rate and ok/s within the band below it."""
    run = 0
    for s in range(start, len(offered)):
        present = ready[s]
        covered = present is not None and offered[s] <= capacity * present
        run = run + 1 if covered and ok[s] >= (1 - band) * offered[s] else 0
        if run >= hold:
            return s - hold + 1
    return None


def _episode(
    start: int,
    caught: int | None,
    offered: Sequence[float],
    ready: Sequence[int | None],
    capacity: float,
    samples: Sequence[dict[str, Any]],
    started: float,
) -> ScaleEpisode:
    at_start = ready[start] or 0
    end = caught if caught is not None else len(offered)
    rose = next(
        (
            s["t"] - started
            for s in samples
            if start <= s["t"] - started < end + 1 and (s.get("ready") or 0) > at_start
        ),
        None,
    )
    at_end = ready[caught] if caught is not None else ready[-1]
    cause = "not caught up" if caught is None else "scaled" if (at_end or 0) > at_start else "load fell"
    return ScaleEpisode(
        start_s=start,
        offered=offered[start],
        ready_at_start=at_start,
        capacity_at_start=capacity * at_start,
        scaled_s=round(rose, 3) if rose is not None else None,
        caught_up_s=caught,
        ready_at_end=at_end,
        cause=cause,
        time_to_scale_s=float(caught - start) if caught is not None else None,
    )


def change_points(samples: Sequence[dict[str, Any]], started: float) -> tuple[list[InstancePoint], bool]:
    """The ready count each time it changed (the first sample always), relative to the run's start."""
    points: list[InstancePoint] = []
    last: object = object()
    for s in samples:
        value = s.get("ready")
        ready = int(value) if isinstance(value, int | float) and math.isfinite(value) else None
        if ready != last:
            if len(points) >= MAX_POINTS:
                return points, True
            points.append(InstancePoint(t_s=round(s["t"] - started, 3), ready=ready))
            last = ready
    return points, False


def markdown_lines(a: AutoscalingOut | None) -> list[str]:
    """summary.md's section."""
    if a is None:
        return []
    where = f"`{a.query}`" if a.source == "query" else f"the `{a.role}` targets answering"
    counts = ", ".join(f"{p.ready if p.ready is not None else '?'} at {p.t_s:.1f}s" for p in a.instances[:12])
    lines = ["", "## Autoscaling", "", f"Ready instances ({where}): {counts or 'none read'}."]
    lines.append(f"Capacity per instance: {a.capacity_note}.")
    if a.unread:
        lines.append(f"{a.unread} of {a.samples} samples had no count: {a.first_error}")
    for e in a.episodes:
        tts = f"{e.time_to_scale_s:g} s" if e.time_to_scale_s is not None else "not caught up by the end"
        lines.append(
            f"- from {e.start_s} s ({e.offered:.1f} req/s offered > {e.capacity_at_start:.1f} ok/s with "
            f"{e.ready_at_start} ready): time to scale {tts} ({e.cause})"
        )
    if a.capacity_per_instance is not None and not a.episodes:
        lines.append("The offered load never exceeded the capacity present.")
    return lines
