"""The monitoring stack's files (`monitoring/`): where they are, and the recording rules that are every
Grafana panel's query.

One set of files serves two users: `docker compose -f monitoring/compose.yaml up` mounts them, and
`--monitor prometheus` (run/prometheus.py) copies the Prometheus config and its rules into the run folder.
The rules file is generated from the dashboards (`python -m scenariokit.run.stack rules`) so that
`promtool check rules` parses every panel query offline; tests/test_monitoring_stack.py checks the
checked-in file is the generated one.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

# In a wheel, monitoring/ is force-included as scenariokit/_monitoring (pyproject.toml); in a source
# checkout (editable install) it is the repository's own folder.
PACKAGED = Path(__file__).resolve().parents[1] / "_monitoring"
SOURCE = Path(__file__).resolve().parents[3] / "monitoring"
RULES_FILE = "prometheus/rules/dashboards.yml"
RULES_INTERVAL = "5s"  # panels refresh every 5s; evaluating ~30 queries each second would buy nothing
RECORD_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def monitoring_dir() -> Path:
    return PACKAGED if PACKAGED.is_dir() else SOURCE


def dashboards(root: Path | None = None) -> list[Path]:
    return sorted(((root or monitoring_dir()) / "grafana" / "dashboards").glob("*.json"))


def record_name(uid: str, panel_id: int, ref_id: str) -> str:
    """`<dashboard uid>:panel<id>:<refId>`, lower-case: a rule's name leads back to its panel."""
    name = f"{re.sub(r'[^a-zA-Z0-9_]', '_', uid)}:panel{panel_id}:{ref_id}".lower()
    if not RECORD_NAME.match(name):
        raise ValueError(f"dashboard uid {uid!r} gives the invalid rule name {name!r}")
    return name


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(rule name, PromQL) for each query of each panel, rows' nested panels included."""
    out: list[tuple[str, str]] = []
    for panel in dashboard.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                out.append((record_name(dashboard["uid"], inner["id"], target["refId"]), target["expr"]))
    return out


def recording_rules(paths: list[Path]) -> dict[str, Any]:
    groups = []
    for path in paths:
        dashboard = json.loads(path.read_text())
        rules = [{"record": name, "expr": expr} for name, expr in panel_queries(dashboard)]
        groups.append({"name": f"dashboard {dashboard['uid']}", "interval": RULES_INTERVAL, "rules": rules})
    return {"groups": groups}


def rules_text(paths: list[Path] | None = None) -> str:
    header = (
        "# Generated from monitoring/grafana/dashboards/*.json: every panel query as a recording rule, so\n"
        "# that `promtool check rules` parses them offline. Regenerate with\n"
        "#   python -m scenariokit.run.stack rules\n"
    )
    body = yaml.safe_dump(recording_rules(paths or dashboards()), sort_keys=False, width=200)
    return header + body


def main(argv: list[str]) -> int:
    if argv != ["rules"]:
        print("usage: python -m scenariokit.run.stack rules", file=sys.stderr)
        return 2
    target = monitoring_dir() / RULES_FILE
    target.write_text(rules_text())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
