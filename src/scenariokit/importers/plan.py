"""User classes -> one scenario's parts: the weighted entries, one think time, one target.

A scenario holds one mix of requests and one think time; Locust may run several user classes, each with
its own. Each class's tasks enter the mix in proportion to the class's share of users: `fixed_count` users
first (their share of the `-u` users), the rest split by `weight`, as Locust spawns them. With every class
thinking alike, a share of users is the same share of tasks. Where classes differ (think time, host) the
class with the largest share decides, and the others get a warning.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

from scenariokit.compile.diagnostics import DiagnosticBag, Span
from scenariokit.compile.limits import STEP_NAME_PATTERN
from scenariokit.importers.model import HttpCall, UserClass, WaitTime

MAX_SCALED_DENOMINATOR = 10_000  # weights scaled to whole numbers when that keeps them this small


@dataclass
class Entry:
    key: str
    weight: Fraction
    calls: list[HttpCall]
    comment: str


@dataclass
class Plan:
    entries: list[Entry] = field(default_factory=list)
    wait: WaitTime | None = None
    wait_owner: str = ""
    host: str | None = None
    host_line: int | None = None
    classes: int = 0


def class_shares(
    users: list[UserClass], total_users: int, bag: DiagnosticBag, file: str
) -> dict[str, Fraction]:
    """Each class's share of the users: fixed counts first, the remainder by weight."""
    fixed = {u.name: Fraction(min(u.fixed_count, total_users), total_users) for u in users if u.fixed_count}
    left = max(Fraction(0), 1 - sum(fixed.values()))
    weighted = [u for u in users if not u.fixed_count]
    total_weight = sum((u.weight for u in weighted), Fraction(0))
    shares = dict(fixed)
    for user in weighted:
        shares[user.name] = left * user.weight / total_weight if total_weight else Fraction(0)
    for user in users:
        if user.fixed_count:
            bag.warning(
                Span(file, user.line, 1),
                f"`{user.name}`: fixed_count {user.fixed_count} of {total_users} users is taken as its share "
                f"of the tasks ({float(shares[user.name]):.0%})",
                "a scenario has one mix, not user classes; pass -u to set the total",
            )
    return shares


def build_plan(users: list[UserClass], total_users: int, bag: DiagnosticBag, file: str) -> Plan:
    users = [u for u in users if u.tasks or u.on_start]
    shares = (
        class_shares(users, total_users, bag, file)
        if len(users) > 1
        else {u.name: Fraction(1) for u in users}
    )
    plan = Plan(classes=len(users))
    taken: set[str] = set()
    for user in users:
        task_total = sum((t.weight for t in user.tasks), Fraction(0))
        for task in user.tasks:
            weight = task.weight if len(users) == 1 else shares[user.name] * task.weight / (task_total or 1)
            key = _key(task.calls, task.name, user.name, taken, len(users) > 1)
            comment = f"{user.name}.{task.name} ({task.origin}), line {task.line}"
            plan.entries.append(Entry(key, weight, task.calls, comment))
        if user.on_start:
            key = _key(user.on_start, "on_start", user.name, taken, len(users) > 1)
            comment = f"{user.name}.on_start, line {user.on_start[0].line}: runs once per user in Locust"
            plan.entries.append(Entry(key, Fraction(0), user.on_start, comment))
    _scale_weights(plan.entries)
    _choose_wait_and_host(plan, users, shares, bag, file)
    return plan


def _key(calls: list[HttpCall], task: str, user: str, taken: set[str], prefixed: bool) -> str:
    """The entry's name: Locust's `name=` of a lone request when it can be one, else the task's name
    (prefixed with the class when several classes could share it); unique."""
    named = calls[0].name if len(calls) == 1 else None
    base = (
        named
        if named and re.fullmatch(STEP_NAME_PATTERN, named)
        else (f"{user}_{task}" if prefixed else task)
    )
    key, n = base, 2
    while key in taken:
        key, n = f"{base}-{n}", n + 1
    taken.add(key)
    return key


def _scale_weights(entries: list[Entry]) -> None:
    """Whole-number weights when the fractions allow it (1/6 and 1/2 -> 1 and 3), else 6 decimals."""
    weights = [e.weight for e in entries if e.weight]
    if not weights:
        return
    denominator = math.lcm(*(w.denominator for w in weights))
    if denominator > MAX_SCALED_DENOMINATOR:
        for entry in entries:
            entry.weight = Fraction(round(entry.weight, 6))
        return
    numerators = [int(w * denominator) for w in weights]
    divisor = math.gcd(*numerators) if denominator > 1 else 1
    for entry in entries:
        entry.weight = entry.weight * denominator / divisor


def _choose_wait_and_host(
    plan: Plan, users: list[UserClass], shares: dict[str, Fraction], bag: DiagnosticBag, file: str
) -> None:
    if not users:
        return
    main = max(users, key=lambda u: shares[u.name])  # the first of equals: max keeps the first
    plan.wait, plan.wait_owner, plan.host = main.wait, main.name, main.host
    plan.host_line = main.line if main.host else None
    for user in users:
        if user is main or not shares[user.name]:
            continue
        if _wait_key(user.wait) != _wait_key(main.wait):
            line = user.wait.line if user.wait else user.line
            bag.warning(
                Span(file, line, 1),
                f"`{user.name}` waits otherwise than `{main.name}`: the scenario has one think time, "
                f"`{main.name}`'s",
                "split the classes into one scenario each to keep both",
            )
        if user.host and user.host != main.host:
            bag.warning(
                Span(file, user.line, 1), f"`{user.name}`'s host {user.host!r} is not used (one target)"
            )


def _wait_key(wait: WaitTime | None) -> tuple[str, float, float] | None:
    return None if wait is None else (wait.kind, wait.low, wait.high)
