"""A secret never reaches a file: a header reads it with `${env:API_KEY}`, each engine sends it (it may be on
the wire), and no file of the run folder (logs, raw records, summaries, report, script, run.json) holds it,
as written or base64-encoded. A request the HTTP client refuses before sending is a record of its kind, not
a traceback in the engine's log (whose message would quote the header's value)."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.results.store import load_records
from tests.support.loopback import LoopbackServer

SECRET = "sk-live-canary-5f0c1e9b7d"
SCENARIO = """\
version: 1
name: secrets
target: {{kind: http, base_url: "{url}", headers: {{X-Api-Key: "${{env:API_KEY}}"}}}}
load: {{curve: "hold(2, 2s)", think_time: constant(100ms)}}
requests:
  a: {{path: /a}}
"""
# How the secret is set, and whether the engine's HTTP client sends it: a character beyond Latin-1 makes
# Locust's client (geventhttpclient) raise while it writes the headers, with the value in its message;
# Go's client (k6) sends the UTF-8 bytes.
CASES = {
    "as-is": (SECRET, {"locust": True, "k6": True}),
    "not-latin-1": (SECRET + "\u20ac", {"locust": False, "k6": True}),
}


@pytest.mark.engine
@pytest.mark.parametrize("engine", ["locust", "k6"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_secret_in_a_header_is_in_no_file_of_the_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    engine: str,
    case: str,
) -> None:
    value, sent = CASES[case]
    monkeypatch.setenv("API_KEY", value)
    with LoopbackServer() as server:
        scenario = tmp_path / "secrets.yaml"
        scenario.write_text(SCENARIO.format(url=server.url))
        run_dir = tmp_path / "run"
        code = main(["run", str(scenario), "--engine", engine, "--out", str(run_dir), "--quiet"])
        on_the_wire = [headers for path, _, headers in server.bodies if path == "/a"]  # not the probe
    output = capsys.readouterr()

    assert code in (0, 1, 4), output.err[-2000:]  # judged: never a run error
    records = load_records(run_dir)
    assert records, "every request tried is a record"
    if sent[engine]:
        assert on_the_wire and all(SECRET in h.get("X-Api-Key", "") for h in on_the_wire)
        assert all(r.ok for r in records)
    else:  # refused by the client before sending: an error record of its kind, nothing on the wire
        assert not on_the_wire
        assert {r.error_kind for r in records} == {"other"}, {r.error_kind for r in records}
        # the client's message quotes the header's value: kept with the value redacted
        assert {r.code for r in records} == {"ValueError"}
        assert any(r.message and "[redacted]" in r.message for r in records), {r.message for r in records}
    for path, text in run_files(run_dir):
        assert not reveals(text), f"{path} holds the secret"
        if path.name.endswith(".log"):
            assert "Traceback" not in text, f"{path}: {text[-2000:]}"
    assert not reveals(output.out) and not reveals(output.err)


TIMED_OUT = """\
version: 1
name: secrets
target: {{kind: http, base_url: "{url}", timeout: 300ms}}
load: {{curve: "hold(1, 2s)"}}
requests:
  a: {{path: "/a?key=${{env:API_KEY}}"}}
"""


@pytest.mark.engine
@pytest.mark.parametrize("engine", ["locust", "k6"])
def test_a_secret_in_a_failures_message_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    """An engine's message for a failure may quote the request (Locust's timeout names the URL, with a
    query that holds a secret): the record keeps the message with the secret redacted."""
    monkeypatch.setenv("API_KEY", SECRET)
    with LoopbackServer(delay_s=1.0) as server:
        scenario = tmp_path / "secrets.yaml"
        scenario.write_text(TIMED_OUT.format(url=server.url))
        run_dir = tmp_path / "run"
        code = main(["run", str(scenario), "--engine", engine, "--out", str(run_dir), "--quiet"])
    output = capsys.readouterr()
    assert code in (0, 1, 4), output.err[-2000:]
    records = load_records(run_dir)
    assert records and {r.error_kind for r in records} == {"timeout"}
    assert any(r.message for r in records)
    if engine == "locust":  # its message names the URL: the secret in it is redacted
        assert any("[redacted]" in (r.message or "") for r in records), {r.message for r in records}
    for path, text in run_files(run_dir):
        assert not reveals(text), f"{path} holds the secret"
    assert not reveals(output.out) and not reveals(output.err)


@pytest.mark.engine  # `run` (it stops before the engine starts)
def test_an_env_value_with_a_line_break_stops_the_run_before_anything_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("API_KEY", SECRET + "\n")  # as `$(cat key.txt)` would not, but a .env file can
    with LoopbackServer() as server:
        scenario = tmp_path / "secrets.yaml"
        scenario.write_text(SCENARIO.format(url=server.url))
        code = main(["run", str(scenario), "--out", str(tmp_path / "run")])
        assert server.total() == 0
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(
        r"secrets\.yaml:3:\d+: error: the environment variable API_KEY holds LF \(U\+000A\)", err
    )
    assert not reveals(err)
    assert not (tmp_path / "run").exists(), "refused before the run folder is claimed"


# --- helpers ---------------------------------------------------------------------------------------


def run_files(run_dir: Path) -> list[tuple[Path, str]]:
    """Every regular file of the run folder, as text (Parquet parts too: a string column is stored
    plainly in their pages here)."""
    return [(p, p.read_bytes().decode("utf-8", "replace")) for p in sorted(run_dir.rglob("*")) if p.is_file()]


_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def reveals(text: str) -> bool:
    """The secret as written, or inside any base64 run."""
    if SECRET in text:
        return True
    for run in _BASE64_RUN.findall(text):
        for start in range(4):  # the secret may start at any byte of the encoded text
            chunk = run[start:]
            try:
                decoded = base64.b64decode(chunk + "=" * (-len(chunk) % 4))
            except (binascii.Error, ValueError):
                continue
            if SECRET.encode() in decoded:
                return True
    return False
