"""What the importer understood of a locustfile: user classes, their tasks, and each task's requests.

Plain data between the reader (`locust.py`, which walks the syntax tree) and the writer (`emit.py`, which
writes YAML). Every item keeps the locustfile line it came from, so the scenario's comments can name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

# A request body that was not given (None is a JSON value: `json=None` sends no body, as requests does).
NO_JSON: Any = object()


@dataclass(frozen=True)
class Expect:
    """A `catch_response` check: the status codes that pass, or text the body must hold."""

    status: tuple[int, ...] = ()
    contains: str | None = None


@dataclass(frozen=True)
class HttpCall:
    """One `self.client.<method>(...)` with literal arguments."""

    line: int
    method: str
    path: str
    json: Any = NO_JSON
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    name: str | None = None  # Locust's `name=`, the statistics' name
    timeout_s: float | None = None
    expect: Expect | None = None
    notes: tuple[str, ...] = ()  # what the YAML comment beside it should say


@dataclass(frozen=True)
class WaitTime:
    """`between(low, high)`, `constant(value)`; pacing: `constant_pacing(s)` or `constant_throughput(n)`
    as the interval between a user's task starts."""

    kind: str  # "between", "constant", "pacing"
    low: float
    high: float
    line: int
    source: str  # as written in the locustfile, for the comment


@dataclass
class Task:
    """A task: its requests run in order each time a user picks it (several make a flow)."""

    name: str
    line: int
    weight: Fraction
    calls: list[HttpCall]
    origin: str  # "@task(3)", "tasks = {...}" ...


@dataclass
class UserClass:
    name: str
    line: int
    weight: Fraction = Fraction(1)
    fixed_count: int | None = None
    wait: WaitTime | None = None
    host: str | None = None
    tasks: list[Task] = field(default_factory=list)
    on_start: list[HttpCall] = field(default_factory=list)
