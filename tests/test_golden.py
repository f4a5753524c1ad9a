"""Golden files: the generated script of every example scenario, for each engine, byte for byte.

Regenerate after an intended change with `UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py` and
review the diff like code. Data files are not kept (they are large and covered by their own tests):
only the entry script, whose header carries the source hash.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario
from tests.support.engines import needs_node, node_check

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
EXAMPLES = sorted((ROOT / "scenarios").glob("*.yaml"))
ENGINES = ("locust", "k6")
# listed when collected (test_the_parse_checks_cover_every_golden_file: none of the folder left out)
GOLDEN_LOCUST = sorted(GOLDEN.glob("*.locust.py"))
GOLDEN_K6 = sorted(GOLDEN.glob("*.k6.js"))


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def emitted(path: Path, engine: str) -> tuple[str, str]:
    script = compile_scenario(load_scenario(path.relative_to(ROOT)).scenario, engine)
    return script.entry, script.files[script.entry]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_generated_script_matches_golden_file(path: Path, engine: str) -> None:
    entry, text = emitted(path, engine)
    golden = GOLDEN / entry
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8", newline="\n")
    assert golden.exists(), f"no golden file {golden}: run with UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8"), f"{entry} differs from its golden file"


def test_every_golden_file_has_a_scenario() -> None:
    expected = {emitted(p, e)[0] for p in EXAMPLES for e in ENGINES}
    assert {p.name for p in GOLDEN.iterdir()} == expected


@pytest.mark.parametrize("golden", GOLDEN_LOCUST, ids=[p.name for p in GOLDEN_LOCUST])
def test_golden_locustfile_parses_and_compiles(golden: Path) -> None:
    source = golden.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(golden))
    compile(tree, str(golden), "exec")  # what only the compiler refuses: `return` or `break` out of place


@needs_node
@pytest.mark.parametrize("golden", GOLDEN_K6, ids=[p.name for p in GOLDEN_K6])
def test_golden_k6_script_passes_node_check(golden: Path) -> None:
    result = node_check(golden.read_text(encoding="utf-8"))  # as an ES module: k6 scripts import and export
    assert result.returncode == 0, result.stderr


def test_the_parse_checks_cover_every_golden_file() -> None:
    assert GOLDEN_LOCUST and GOLDEN_K6
    assert {p.name for p in GOLDEN.iterdir()} == {p.name for p in GOLDEN_LOCUST + GOLDEN_K6}


def test_output_does_not_depend_on_hash_seed() -> None:
    code = (
        "import sys, hashlib; from pathlib import Path;"
        "from scenariokit.compile.pipeline import load_scenario;"
        "from scenariokit.engines import compile_scenario;"
        "s = compile_scenario(load_scenario(Path('scenarios/holiday-spike.yaml')).scenario, sys.argv[1]);"
        "print(hashlib.sha256(repr(sorted(s.files.items())).encode()).hexdigest())"
    )
    for engine in ENGINES:
        digests = {
            subprocess.run(
                [sys.executable, "-c", code, engine],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONHASHSEED": seed},
                cwd=ROOT,
            ).stdout
            for seed in ("0", "12345")
        }
        assert len(digests) == 1
