"""A `Plan` as scenario YAML a person can read: block layout, flow-style bodies, comments naming the
locustfile's lines.

Written by hand rather than by `yaml.dump`, for the comments and the layout; every scalar goes through
`scalar()`, which leaves a string plain only when YAML reads it back as the same string and otherwise
double-quotes it with escapes (so no value can end a line, open a comment or become a number). Strings the
engines send are templates in the DSL, so their braces are doubled (`{` -> `{{`): a locustfile's literal
`{id}` is sent as written, never read as a data reference.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import yaml

from scenariokit import __version__
from scenariokit.compile.diagnostics import Diagnostic
from scenariokit.compile.expr.units import format_duration
from scenariokit.importers.curve import Load
from scenariokit.importers.model import NO_JSON, HttpCall, WaitTime
from scenariokit.importers.plan import Entry, Plan

# Characters a plain scalar may hold here: printable ASCII without YAML's comment, flow, quote, alias,
# tag and directive indicators; whether it then reads back as the same string is asked of PyYAML itself.
PLAIN = re.compile(r"[A-Za-z0-9_/.()<>=+-][ A-Za-z0-9_/.:()<>=+;,%-]*")
MAX_LISTED_WARNINGS = 20


def plain(text: str, in_flow: bool) -> bool:
    """Whether `text` written bare reads back as this string (not a number, boolean, null or date)."""
    if not PLAIN.fullmatch(text) or text != text.strip() or ": " in text or text.endswith(":"):
        return False
    if in_flow and re.search(r"[,\[\]{}]", text):
        return False
    try:
        return yaml.safe_load(f"[{text}]" if in_flow else f"k: {text}") == (
            [text] if in_flow else {"k": text}
        )
    except yaml.YAMLError:
        return False


def scalar(value: Any, in_flow: bool = False) -> str:
    """One YAML scalar on one line that reads back as `value`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text.replace("e", ".0e") if "e" in text and "." not in text else text  # PyYAML needs a dot
    if plain(value, in_flow):
        return value
    return quoted(value)


def quoted(text: str) -> str:
    """A YAML double-quoted string: printable characters as they are, the rest escaped."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and not 0xD800 <= code < 0xE000 and code != 0xFEFF:
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out) + '"'


def flow(value: Any) -> str:
    """A JSON value in YAML flow style on one line; its strings are templates (braces doubled)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar(str(k), True)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return scalar(template(value) if isinstance(value, str) else value, True)


def template(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def comment(text: str) -> str:
    """Comment text that stays one comment: non-printable characters shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def number(value: Fraction | float) -> str:
    if isinstance(value, Fraction) and value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.6f}".rstrip("0").rstrip(".")


def seconds(value: float) -> str:
    """Seconds as the locustfile wrote them (`0.5s`, `2.5s`) when that is exact, else `1m30s`-style."""
    short = f"{value:g}"
    return f"{short}s" if float(short) == value and "e" not in short else format_duration(value)


def think_time(wait: WaitTime | None) -> tuple[str, str]:
    if wait is None:
        return "none", "no wait_time: Locust waits 0 s between a user's tasks"
    if wait.kind == "between":
        return f"between({seconds(wait.low)}, {seconds(wait.high)})", wait.source
    if wait.high == 0:
        return "none", wait.source
    return f"constant({seconds(wait.low)})", wait.source


def request_lines(call: HttpCall, indent: str) -> list[str]:
    lines = [f"{indent}method: {call.method}", f"{indent}path: {scalar(template(call.path))}"]
    if call.json is not NO_JSON:
        lines.append(f"{indent}json: {flow(call.json)}")
    if call.body is not None:
        lines.append(f"{indent}body: {scalar(template(call.body))}")
    if call.headers:
        pairs = ", ".join(f"{scalar(k, True)}: {scalar(template(v), True)}" for k, v in call.headers.items())
        lines.append(f"{indent}headers: {{{pairs}}}")
    if call.timeout_s is not None:
        lines.append(f"{indent}timeout: {format_duration(call.timeout_s)}")
    if call.expect is not None:
        parts = [f"status: [{', '.join(str(c) for c in call.expect.status)}]"] if call.expect.status else []
        if call.expect.contains is not None:
            parts.append(f"contains: {scalar(template(call.expect.contains), True)}")
        note = "  # contains is case-insensitive" if call.expect.contains is not None else ""
        lines.append(f"{indent}expect: {{{', '.join(parts)}}}{note}")
    return lines


def entry_lines(entry: Entry, step_name: re.Pattern[str]) -> list[str]:
    lines = [
        f"  # {comment(entry.comment)}",
        f"  {scalar(entry.key)}:",
        f"    weight: {number(entry.weight)}",
    ]
    if entry.weight == 0:
        lines[0] += "; a scenario has no per-user setup: weight 0, kept but not sent"
    if len(entry.calls) == 1:
        call = entry.calls[0]
        lines[1] += f"  # line {call.line}" + (
            f", Locust name {comment(repr(call.name))}" if call.name else ""
        )
        return lines + request_lines(call, "    ")
    lines.append("    steps:  # sent in order each time the entry is picked; its weight counts once")
    for call in entry.calls:
        lines += step_lines(call, step_name)
    return lines


def step_lines(call: HttpCall, step_name: re.Pattern[str]) -> list[str]:
    """`- name: ...` when Locust's `name=` can be a step's name (the record is `<entry>.<name>`), else
    the step is numbered and the Locust name kept in the comment."""
    named = call.name is not None and step_name.fullmatch(call.name) is not None
    note = f"  # line {call.line}"
    if call.name is not None and not named:
        note += f", Locust name {comment(repr(call.name))}"
    body = request_lines(call, "        ")
    if named:
        return [f"      - name: {call.name}{note}", *body]
    return [f"      - {body[0].strip()}{note}", *body[1:]]


def header(source: str, warnings: Sequence[Diagnostic]) -> list[str]:
    lines = [
        f"# Imported from {comment(source)}",
        f"# by `scenariokit import` (scenariokit {__version__}): the locustfile was read, never run.",
        "# The comments name the lines each part came from.",
    ]
    if warnings:
        lines.append(f"# Not translated ({len(warnings)}; each printed by the import with a hint):")
        lines += [
            f"#   {comment(w.span.__str__())}: {comment(w.message)}" for w in warnings[:MAX_LISTED_WARNINGS]
        ]
        if len(warnings) > MAX_LISTED_WARNINGS:
            lines.append(f"#   ... and {len(warnings) - MAX_LISTED_WARNINGS} more")
    return lines


def scenario_text(
    plan: Plan,
    load: Load,
    name: str,
    base_url: tuple[str, str],
    source: str,
    warnings: Sequence[Diagnostic],
    step_name: re.Pattern[str],
) -> str:
    url, url_note = base_url
    lines = [*header(source, warnings), "version: 1", f"name: {scalar(name)}", "target:", "  kind: http"]
    lines.append(f"  base_url: {scalar(url)}  # {comment(url_note)}")
    lines += ["load:", f"  model: {load.model}", f"  curve: {scalar(load.curve)}  # {comment(load.comment)}"]
    if load.model == "closed":
        think, note = think_time(plan.wait)
        owner = f"{plan.wait_owner}.wait_time = " if plan.wait else ""
        line = f", line {plan.wait.line}" if plan.wait else ""
        lines.append(f"  think_time: {scalar(think)}  # {comment(owner + note + line)}")
    else:
        assert plan.wait is not None
        every = format_duration(plan.wait.low)
        lines.append(f"  # {comment(plan.wait.source)}: a task every {every} per user is an arrival rate")
        lines.append(f"  pre_allocated_users: {load.max_users}")
        lines.append(f"  max_users: {load.max_users}  # at most the Locust users in flight")
    lines.append("requests:")
    for entry in plan.entries:
        lines += entry_lines(entry, step_name)
    lines += [
        "slo:",
        "  # Locust exits 1 when any request fails; this SLO stands in for that (1%, not 0, so that a run's",
        "  # samples can decide it). Write the service's own, e.g. mean(latency) <= 300ms, p99(latency) < 1s",
        "  - error_rate < 1%",
        "engine: locust",
    ]
    return "\n".join(lines) + "\n"
