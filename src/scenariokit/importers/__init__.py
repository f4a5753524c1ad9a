"""Front ends beside `compile/`: other tools' test files -> scenario YAML (`scenariokit import`).

`locust` reads a locustfile's syntax tree (never imports or runs it), `plan` merges its user classes into
one mix, `curve` turns Locust's -u/-r/-t into a load curve, `emit` writes readable YAML with comments naming
the source lines, `output` writes it safely. Only `cli.py` imports this package; it imports `compile/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from scenariokit.compile.diagnostics import Diagnostic, DiagnosticBag, ScenarioError, Span
from scenariokit.compile.limits import HEADER_VALUE_FORBIDDEN, STEP_NAME_PATTERN
from scenariokit.importers.curve import LoadOptions, load_curve, parse_options
from scenariokit.importers.emit import scenario_text
from scenariokit.importers.locust import LocustReader
from scenariokit.importers.plan import Plan, build_plan
from scenariokit.importers.source import read_source

__all__ = ["Imported", "LoadOptions", "import_locustfile"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Imported:
    text: str  # the scenario's YAML
    warnings: tuple[Diagnostic, ...]
    entries: int
    flows: int
    classes: int


def import_locustfile(path: Path, display: str, options: LoadOptions) -> Imported:
    """The scenario for the locustfile at `path` (shown as `display`). Raises ScenarioError (exit 2) for a
    file that is not Python, bad options, or nothing to translate; everything else is a warning."""
    numbers = parse_options(options)
    _check_host(options.host)
    source = read_source(path, display)
    reader = LocustReader(source)
    users = reader.read()
    bag = DiagnosticBag(list(reader.warnings))
    plan = build_plan(users, numbers.users, bag, display)
    if not plan.entries:
        problem = Diagnostic(
            Span(display, 1, 1),
            "no HttpUser or FastHttpUser class with a task whose requests could be translated",
            "a user class subclasses HttpUser and sends self.client.get/post/... with a literal path",
        )
        raise ScenarioError([*bag.warnings, problem])
    pacing = plan.wait.low if plan.wait is not None and plan.wait.kind == "pacing" else None
    load = load_curve(options, pacing)
    warnings = tuple(sorted(bag.warnings, key=lambda d: (d.span.line, d.span.column, d.message)))
    text = scenario_text(
        plan,
        load,
        scenario_name(path),
        base_url(plan, options),
        display,
        warnings,
        re.compile(STEP_NAME_PATTERN),
    )
    flows = sum(1 for e in plan.entries if len(e.calls) > 1)
    return Imported(text, warnings, len(plan.entries), flows, plan.classes)


def scenario_name(path: Path) -> str:
    """The file's stem as a scenario name (letters, digits, `.`, `_`, `-`, at most 100)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).lstrip("._-")[:100]
    return name if NAME_PATTERN.fullmatch(name) else "imported"


def base_url(plan: Plan, options: LoadOptions) -> tuple[str, str]:
    if options.host:
        return options.host.rstrip("/"), "--host"
    if plan.host:
        return plan.host.rstrip("/"), f"host, line {plan.host_line}"
    return "embedded", "no host in the locustfile and no --host: the bundled server; set your service's URL"


def _check_host(host: str | None) -> None:
    if host is not None and (
        not re.match(r"https?://[^/\s]", host) or re.search(HEADER_VALUE_FORBIDDEN, host)
    ):
        hint = "e.g. --host http://127.0.0.1:8000"
        raise ScenarioError(
            [Diagnostic(Span("--host", 1, 1), f"--host {host!r} is not an http(s) URL", hint)]
        )
