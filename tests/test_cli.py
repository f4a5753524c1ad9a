"""The command line: validate, compile, plan, schema, and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scenariokit.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_validate_all_examples(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scenarios").glob("*.yaml"))
    assert main(["validate", *files]) == 0
    assert capsys.readouterr().out.count("ok: ") == len(files)


@pytest.mark.parametrize("engine", ["locust", "k6"])
def test_compile_writes_script_runtime_and_data(engine: str, tmp_path: Path) -> None:
    assert main(["compile", "scenarios/holiday-spike.yaml", "--engine", engine, "-o", str(tmp_path)]) == 0
    names = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    suffix = ".locust.py" if engine == "locust" else ".k6.js"
    assert f"holiday-spike{suffix}" in names
    assert "data/images.json" in names


def test_compile_is_deterministic(tmp_path: Path) -> None:
    for out in ("a", "b"):
        assert main(["compile", "scenarios/holiday-spike.yaml", "-o", str(tmp_path / out)]) == 0
    a = {p.name: p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    b = {p.name: p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert a == b


def test_missing_file_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "scenarios/no-such-file.yaml"]) == 2
    assert "file not found" in capsys.readouterr().err


def test_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "ScenarioSpec"
    assert "requests" in schema["required"]


def test_console_script_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scenariokit", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "scenariokit" in result.stdout


def test_diagnostics_print_a_scenarios_text_as_written_not_as_markup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "markup.yaml"
    path.write_text(
        'version: 1\nname: x\ntarget: {kind: http, base_url: "http://127.0.0.1:9"}\n'
        'load: {curve: "hold(1, 1s)"}\nrequests:\n  a: {path: /a, json: {"[/x]": 2024-01-01, "[bold]y": 1}}\n'
    )
    assert main(["validate", str(path)]) == 2
    assert "`requests.a.json.[/x]` is a date" in capsys.readouterr().err
