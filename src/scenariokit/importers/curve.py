"""Locust's command line (`-u/--users`, `-r/--spawn-rate`, `-t/--run-time`) as a scenario's load curve.

Locust starts users at the spawn rate up to the user count, then holds them until the run time is up,
counted from the start (the ramp included): `-u 10000 -r 100 -t 10m` is `ramp(0, 10000, 100/s) ->
hold(8m20s)`. A run time shorter than the ramp ends it midway. Without `-t` Locust runs until stopped; a
scenario needs an end, so the import holds for DEFAULT_HOLD_S after the ramp and says so.

With `constant_pacing(s)` / `constant_throughput(n)` each user starts a task every s seconds (n a second)
whatever the latency: that is an arrival rate, so the scenario is an open model whose rate is users / s,
ramped and held the same way, with at most the Locust user count in flight (`max_users`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from scenariokit.compile.diagnostics import Diagnostic, ScenarioError, Span
from scenariokit.compile.expr.units import format_duration
from scenariokit.compile.limits import MAX_RUN_S, MAX_USERS

DEFAULT_HOLD_S = 60.0
LOCUST_TIMESPAN = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


@dataclass(frozen=True)
class LoadOptions:
    """The Locust command-line options the import takes, as typed (None: not given)."""

    users: str | None = None
    spawn_rate: str | None = None
    run_time: str | None = None
    host: str | None = None


@dataclass(frozen=True)
class Load:
    model: str  # "closed" or "open"
    curve: str
    comment: str  # the options it came from, for the YAML comment
    max_users: int | None = None
    defaulted_hold: bool = False


@dataclass(frozen=True)
class Numbers:
    users: int
    spawn_rate: float
    run_time_s: float | None


def parse_options(options: LoadOptions) -> Numbers:
    """Checks -u/-r/-t as Locust reads them; every problem at once, positioned at the flag (exit 2)."""
    problems: list[Diagnostic] = []

    def bad(flag: str, text: str, hint: str) -> None:
        problems.append(Diagnostic(Span(flag, 1, 1), f"{flag} {text!r} is not valid", hint))

    users, rate, run_time = 1, 1.0, None
    if options.users is not None:
        if options.users.isdigit() and 1 <= int(options.users) <= MAX_USERS:
            users = int(options.users)
        else:
            bad("--users", options.users, f"a whole number of users, 1 to {MAX_USERS}")
    if options.spawn_rate is not None:
        try:
            rate = float(options.spawn_rate)
        except ValueError:
            rate = math.nan
        if not 0 < rate <= MAX_USERS:  # also NaN and inf
            bad(
                "--spawn-rate",
                options.spawn_rate,
                f"users started per second, above 0 and at most {MAX_USERS}",
            )
    if options.run_time is not None:
        run_time = run_time_seconds(options.run_time)
        if run_time is None or not 1 <= run_time <= MAX_RUN_S:
            bad(
                "--run-time", options.run_time, "Locust's form: 10m, 1h30m, 300s or 300 (seconds); 1s to 168h"
            )
    if problems:
        raise ScenarioError(problems)
    return Numbers(users, rate, run_time)


def run_time_seconds(text: str) -> float | None:
    """Locust's `--run-time` (parse_timespan): `20`, `30s`, `10m`, `1h30m`; None when it is not one."""
    text = text.strip()
    if text.isdigit():
        return float(text)
    match = LOCUST_TIMESPAN.match(text)
    if not match or not any(match.groups()):
        return None
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def load_curve(options: LoadOptions, pacing_s: float | None) -> Load:
    """The curve for the options; `pacing_s` (a task every so many seconds per user) makes it open."""
    n = parse_options(options)
    written = " ".join(
        f"{flag} {value}"
        for flag, value in (("-u", options.users), ("-r", options.spawn_rate), ("-t", options.run_time))
        if value is not None
    )
    comment = f"from {written}" if written else "Locust's defaults: 1 user at 1/s"
    per_user = 1.0 if pacing_s is None else 1 / pacing_s
    level, speed = n.users * per_user, n.spawn_rate * per_user
    ramp_s = n.users / n.spawn_rate
    if n.run_time_s is not None and n.run_time_s <= ramp_s:
        curve = f"ramp(0, {_level(speed * n.run_time_s, pacing_s)}, {format_duration(n.run_time_s)})"
    else:
        hold_s = DEFAULT_HOLD_S if n.run_time_s is None else n.run_time_s - ramp_s
        ramp = f"ramp(0, {_level(level, pacing_s)}, {_number(speed)}/s)"
        curve = ramp + (f" -> hold({format_duration(hold_s)})" if hold_s >= 1e-3 else "")
    if n.run_time_s is None:
        comment += f"; no -t: held {format_duration(DEFAULT_HOLD_S)} after the ramp"
    model = "closed" if pacing_s is None else "open"
    return Load(model, curve, comment, None if pacing_s is None else n.users, n.run_time_s is None)


def _level(value: float, pacing_s: float | None) -> str:
    return _number(value) if pacing_s is None else f"{_number(value)}/s"


def _number(value: float) -> str:
    """`100`, `0.5`, `33.333333`: readable, never in exponent form."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"
