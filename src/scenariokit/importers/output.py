"""Writing the imported scenario: never over the locustfile, never through a link, over a file only with
`--force`, and all at once (a temporary file in the same folder, then a rename), so an interrupted import
leaves the old file or the new one, not half of one."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from scenariokit.compile.diagnostics import Diagnostic, ScenarioError, Span

CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _refuse(message: str, hint: str | None = None) -> ScenarioError:
    return ScenarioError([Diagnostic(Span("-o", 1, 1), message, hint)])


def check_output(out: Path, source: Path, force: bool) -> None:
    """Why `out` may not be written (a ScenarioError, exit 2), checked before anything is read or written."""
    if CONTROL.search(str(out)):
        raise _refuse(f"{str(out)!r} holds a control character", "name the output file plainly")
    if out.exists() and out.resolve() == source.resolve():  # also through `..` or a link
        raise _refuse(f"{out} is the locustfile itself", "write the scenario to a file of its own")
    if out.is_dir():
        raise _refuse(f"{out} is a folder", "give a file name, e.g. -o scenario.yaml")
    if not out.parent.is_dir():
        raise _refuse(f"the folder {out.parent} does not exist", "create it first")
    if (out.exists() or out.is_symlink()) and not force:
        raise _refuse(f"{out} exists", "add --force to replace it")


def write_output(out: Path, text: str) -> None:
    """Replaces `out` atomically; a link at `out` is replaced by the file, its target left alone."""
    handle, temp = tempfile.mkstemp(dir=out.parent, prefix=".scenariokit-import-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, out)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
