"""Every test that starts a load engine carries the `engine` marker (pyproject.toml), so that
`pytest -m "not engine"` runs no Locust and no k6.

Found from the sources, not by running the tests: a test starts an engine when its body, its decorators,
a fixture it asks for, or a function it names (in its module, in conftest.py, or imported from tests/),
directly or through further such functions, does one of these:

- calls `run_scenario` or `monitored_run` (scenariokit.run.orchestrate);
- writes the argument list of `scenariokit run`: a list or tuple literal that starts with "run", has "run"
  right after "scenariokit", or has both "run" and "--out" (the run folder), as `main([...])` or a
  subprocess takes it;
- writes an engine's command line: "-m", "locust"; or a list that starts with "locust", "k6", or a name or
  call naming k6 (`K6`, `k6_binary()`);
- starts a process on an engine launch's `argv` (`subprocess.run(launch.argv, ...)`).

The detector is checked on small modules of its own below, so that a change which blinds it fails here.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ENTRY_CALLS = frozenset({"run_scenario", "monitored_run"})
SUBPROCESS_CALLS = frozenset({"run", "Popen", "call", "check_call", "check_output"})
K6_COMMANDS = frozenset({"run", "inspect", "archive", "cloud"})
Function = ast.FunctionDef | ast.AsyncFunctionDef


def marks_engine(node: ast.AST) -> bool:
    """Whether an expression holds `pytest.mark.engine` (alone, in a list, or in pytest.param's marks)."""
    return any(
        isinstance(sub, ast.Attribute)
        and sub.attr == "engine"
        and isinstance(sub.value, ast.Attribute)
        and sub.value.attr == "mark"
        for sub in ast.walk(node)
    )


def _strings(node: ast.List | ast.Tuple) -> list[str | None]:
    return [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else None for e in node.elts]


def _names_k6(node: ast.List | ast.Tuple) -> bool:
    """A command line that starts with a name or call naming k6 (`K6`, `k6_binary()`), then a word."""
    if len(node.elts) < 2 or isinstance(node.elts[0], ast.Constant) or _strings(node)[1] is None:
        return False
    first = ast.unparse(node.elts[0]).lower()
    return "k6" in first and "engine" not in first


def starts_engine_here(node: ast.AST) -> bool:
    """Whether a node, itself and not through the functions it names, starts an engine (the rules above)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            name = getattr(func, "id", None) or getattr(func, "attr", "")
            if name in ENTRY_CALLS:
                return True
            if name in SUBPROCESS_CALLS and any(
                isinstance(a, ast.Attribute) and a.attr == "argv"
                for arg in [*sub.args, *(k.value for k in sub.keywords)]
                for a in ast.walk(arg)
            ):
                return True
        if isinstance(sub, ast.List) and sub.elts:  # a command line (not a parametrize table's tuple)
            words = _strings(sub)
            pairs = list(itertools.pairwise(words))
            second = words[1] if len(words) > 1 else ""
            flags = any(w is not None and w.startswith("-") for w in words[1:])
            if words[0] == "run" and (flags or second is None or second.endswith((".yaml", ".yml"))):
                return True  # main(["run", str(path), ...]): not ["run", "results"]
            if (
                ("scenariokit", "run") in pairs
                or ("-m", "locust") in pairs
                or ("run" in words and "--out" in words)
            ):
                return True
            if words[0] == "locust" and second is not None and second.startswith("-"):
                return True  # not ["locust", "k6"]
            if (words[0] == "k6" and second in K6_COMMANDS) or _names_k6(sub):
                return True
    return False


@dataclass
class Module:
    name: str  # dotted, as imported: tests.test_run, tests.support.engines
    path: Path
    tree: ast.Module
    functions: dict[str, Function] = field(default_factory=dict)  # module level, by name
    fixtures: set[str] = field(default_factory=set)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # local name -> (module, name)
    marked_names: set[str] = field(default_factory=set)  # module-level names bound to an engine mark

    @classmethod
    def parse(cls, name: str, path: Path, source: str) -> Module:
        module = cls(name, path, ast.parse(source, filename=str(path)))
        for node in module.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                module.functions[node.name] = node
                if any("fixture" in ast.unparse(d) for d in node.decorator_list):
                    module.fixtures.add(node.name)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests"):
                for alias in node.names:
                    module.imports[alias.asname or alias.name] = (node.module, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("tests.") and alias.asname:
                        module.imports[alias.asname] = (alias.name, None)
            elif isinstance(node, ast.Assign | ast.AnnAssign) and marks_engine(node):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                module.marked_names |= {t.id for t in targets if isinstance(t, ast.Name)}
        return module

    def tests(self) -> Iterator[tuple[str, Function, bool]]:
        """(test id, function, whether a mark on the module, its class or itself makes it an engine test)."""
        module_marked = "pytestmark" in self.marked_names
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
                yield node.name, node, module_marked or self._decorated(node.decorator_list)
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                class_marked = module_marked or self._decorated(node.decorator_list)
                class_marked |= any(
                    isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)
                    and marks_engine(n.value)
                    for n in node.body
                )
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name[:4] == "test":
                        marked = class_marked or self._decorated(item.decorator_list)
                        yield f"{node.name}::{item.name}", item, marked

    def _decorated(self, decorators: list[ast.expr]) -> bool:
        return any(
            marks_engine(d) or (isinstance(d, ast.Name) and d.id in self.marked_names) for d in decorators
        )


class Suite:
    """The test modules and what they import from tests/, with which of their functions start an engine."""

    def __init__(self, sources: dict[str, tuple[Path, str]]) -> None:
        self.modules = {name: Module.parse(name, path, text) for name, (path, text) in sources.items()}
        self._starts: dict[tuple[str, str], bool] = {}

    @classmethod
    def of_folder(cls, folder: Path = TESTS, extra: dict[str, str] | None = None) -> Suite:
        sources = {}
        # the test modules, conftest.py and the support package (not the golden scripts, nor data)
        for path in sorted([*folder.glob("*.py"), *(folder / "support").rglob("*.py")]):
            parts = path.relative_to(folder.parent).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            sources[".".join(parts)] = (path, path.read_text(encoding="utf-8"))
        for name, text in (extra or {}).items():
            sources[name] = (folder / (name.rsplit(".", 1)[-1] + ".py"), text)
        return cls(sources)

    def resolve(self, module: Module, name: str) -> tuple[Module, str] | None:
        if name in module.functions:
            return module, name
        imported = module.imports.get(name)
        if imported is not None and imported[1] is not None and imported[0] in self.modules:
            return self.resolve(self.modules[imported[0]], imported[1])
        return None

    def _named(self, module: Module, node: ast.AST) -> Iterator[tuple[Module, str]]:
        """The functions a node names: plain names, and attributes of an imported tests module."""
        for sub in ast.walk(node):
            found = None
            if isinstance(sub, ast.Name):
                found = self.resolve(module, sub.id)
            elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                imported = module.imports.get(sub.value.id)
                dotted = imported and (imported[0] if imported[1] is None else f"{imported[0]}.{imported[1]}")
                if dotted in self.modules:
                    found = self.resolve(self.modules[dotted], sub.attr)
            if found is not None:
                yield found

    def _fixtures(self, module: Module, function: Function) -> Iterator[tuple[Module, str]]:
        conftests = [m for n, m in self.modules.items() if n.endswith("conftest")]
        for arg in function.args.args + function.args.kwonlyargs:
            for owner in (module, *conftests):
                found = self.resolve(owner, arg.arg)
                if found is not None and found[1] in found[0].fixtures:
                    yield found
                    break

    def starts_engine(self, module: Module, function: Function) -> bool:
        key = (module.name, function.name)
        if key not in self._starts:
            self._starts[key] = False  # a cycle adds nothing
            parts: list[ast.AST] = [*function.body, *function.decorator_list, function.args]
            reached = [f for part in parts for f in self._named(module, part)]
            reached += list(self._fixtures(module, function))
            self._starts[key] = any(starts_engine_here(p) for p in parts) or any(
                self.starts_engine(owner, owner.functions[name]) for owner, name in reached
            )
        return self._starts[key]

    def unmarked(self, prefix: str = "tests.test_") -> list[str]:
        """Tests (path::name) that start an engine without the marker."""
        found = []
        for name, module in sorted(self.modules.items()):
            if not name.startswith(prefix):
                continue
            for test_id, function, marked in module.tests():
                if not marked and self.starts_engine(module, function):
                    found.append(f"{module.path.relative_to(TESTS.parent).as_posix()}::{test_id}")
        return found

    def engine_tests(self, module_name: str) -> set[str]:
        module = self.modules[module_name]
        return {test_id for test_id, function, _ in module.tests() if self.starts_engine(module, function)}


def test_every_test_that_starts_an_engine_is_marked() -> None:
    unmarked = Suite.of_folder().unmarked()
    assert unmarked == [], "add @pytest.mark.engine (or a module pytestmark) to:\n" + "\n".join(unmarked)


# --- the detector sees what it must ---------------------------------------------------------------

FAKE = """
import subprocess, sys
import pytest
from scenariokit.cli import main
from scenariokit.run.orchestrate import run_scenario
from tests.support.engines import K6, run_locust
from tests.support import engines

engine_only = pytest.mark.engine

def helper(path):
    return main(["run", str(path), "--quiet"])

@pytest.fixture
def finished_run(tmp_path):
    return helper(tmp_path)

def test_cli_run_through_a_helper(tmp_path): helper(tmp_path)
def test_cli_run_through_a_fixture(finished_run): pass
def test_cli_run_from_parts(tmp_path):
    argv = ["run", str(tmp_path)]
    main([*argv, "--out", str(tmp_path)])
def test_cli_run_in_a_child(tmp_path):
    subprocess.run([sys.executable, "-m", "scenariokit", "run", str(tmp_path)])
def test_cli_run_by_code(tmp_path):
    subprocess.Popen([sys.executable, "-c", "...", "run", str(tmp_path), "--out", str(tmp_path)])
def test_runner(tmp_path): run_scenario(tmp_path, None)
def test_locust(tmp_path): subprocess.run([sys.executable, "-m", "locust", "-f", "x.py"])
def test_k6(tmp_path): subprocess.run([K6, "inspect", "x.js"])
def test_launch(tmp_path, launch): subprocess.run(launch.argv, env=launch.env)
def test_support_helper(tmp_path): run_locust(None, tmp_path)
def test_support_module(tmp_path): engines.run_k6_stock(None, tmp_path)

@engine_only
def test_marked_by_name(tmp_path): helper(tmp_path)
@pytest.mark.engine
def test_marked(tmp_path): helper(tmp_path)

def test_compile_only(tmp_path): main(["compile", "x.yaml", "--engine", "k6", "-o", str(tmp_path)])
def test_node_only(tmp_path): subprocess.run(["node", "--check", "x.js"])
def test_validate_in_a_child(): subprocess.run([sys.executable, "-m", "scenariokit", "validate", "x.yaml"])
@pytest.mark.parametrize("engine", ["locust", "k6"])
@pytest.mark.parametrize("layer", ["run", "results"])
def test_tables_of_names(engine, layer): assert engine in ("k6", "locust") and layer in ["run", "results"]
"""


def test_the_detector_finds_each_way_of_starting_an_engine() -> None:
    suite = Suite.of_folder(extra={"tests.test_fake_markers": FAKE})
    starters = {
        "test_cli_run_through_a_helper",
        "test_cli_run_through_a_fixture",
        "test_cli_run_from_parts",
        "test_cli_run_in_a_child",
        "test_cli_run_by_code",
        "test_runner",
        "test_locust",
        "test_k6",
        "test_launch",
        "test_support_helper",
        "test_support_module",
    }
    assert suite.engine_tests("tests.test_fake_markers") == starters | {"test_marked_by_name", "test_marked"}
    assert {u.rsplit("::", 1)[1] for u in suite.unmarked("tests.test_fake_markers")} == starters


def test_the_detector_finds_the_engine_tests_of_this_suite() -> None:
    suite = Suite.of_folder()
    engines = suite.engine_tests("tests.test_engines")
    assert engines == {test_id for test_id, _, _ in suite.modules["tests.test_engines"].tests()}
    assert len(engines) >= 8
    assert "test_real_run_report_renders_in_headless_chromium" in suite.engine_tests("tests.test_report")
    backend = suite.engine_tests("tests.test_backend_k6")
    assert backend == {"test_k6_inspect_accepts_script_and_options"}  # the rest only compiles and parses
