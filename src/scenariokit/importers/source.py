"""Reading a locustfile as text and as a syntax tree, never as a program.

The file may come from anyone (a pull request, a colleague's laptop): it is read with a size cap, checked
for being text, decoded as Python decodes source (UTF-8, or the encoding its coding cookie names) and
parsed with `ast.parse`, which builds a tree and runs nothing. Every refusal is a positioned error (exit 2).
"""

from __future__ import annotations

import ast
import codecs
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

from scenariokit.compile.diagnostics import Diagnostic, ScenarioError, Span

# Far above a real locustfile (hundreds of lines); keeps a hostile file's parse quick and bounded.
MAX_LOCUSTFILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Source:
    """A parsed locustfile: its name as shown, its lines (for columns) and its tree."""

    name: str
    lines: tuple[str, ...]
    tree: ast.Module

    def span(self, node: ast.AST) -> Span:
        """The node's 1-based line and column; ast counts columns in UTF-8 bytes, a reader in characters."""
        line = getattr(node, "lineno", 1)
        offset = getattr(node, "col_offset", 0)
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        column = len(text.encode("utf-8")[:offset].decode("utf-8", "replace")) + 1
        return Span(self.name, line, column)


def refuse(name: str, message: str, hint: str | None = None, line: int = 1, column: int = 1) -> ScenarioError:
    return ScenarioError([Diagnostic(Span(name, line, column), message, hint)])


def read_source(path: Path, name: str) -> Source:
    """The locustfile at `path` parsed, or a ScenarioError saying why it cannot be read as Python."""
    data = _read_bytes(path, name)
    text = _decode(data, name)
    try:
        tree = ast.parse(text, filename=name)
    except SyntaxError as exc:  # IndentationError too ("too many levels of indentation")
        column = max(exc.offset or 1, 1)
        raise refuse(
            name, f"not valid Python: {exc.msg}", "fix the locustfile", exc.lineno or 1, column
        ) from None
    except (RecursionError, MemoryError):  # an expression nested past what CPython's parser can hold
        raise refuse(name, "nested too deeply for Python's parser", "is this a locustfile?") from None
    return Source(name, tuple(text.splitlines()), tree)


def _read_bytes(path: Path, name: str) -> bytes:
    if not path.is_file():  # a folder, a FIFO or a device would block or never end
        raise refuse(name, "no such file" if not path.exists() else "not a regular file", "give a locustfile")
    with path.open("rb") as handle:
        data = handle.read(MAX_LOCUSTFILE_BYTES + 1)
    if len(data) > MAX_LOCUSTFILE_BYTES:
        raise refuse(name, f"larger than {MAX_LOCUSTFILE_BYTES // 1024} KiB", "is this a locustfile?")
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise refuse(name, "holds a NUL byte: a binary file, not Python source", "give a locustfile", line)
    return data


def _decode(data: bytes, name: str) -> str:
    """As Python reads source: a BOM or coding cookie names the encoding, else UTF-8."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        if "unknown encoding" in str(exc.msg):  # the cookie names a codec Python lacks
            raise refuse(name, f"cannot be decoded: {exc.msg}", "save it as UTF-8") from None
        encoding = "utf-8"  # bytes in the first two lines that are not UTF-8: positioned below
    try:
        return codecs.decode(data, encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        hint = "save it as UTF-8 (or name its encoding in a `# -*- coding: ... -*-` line)"
        raise refuse(
            name, f"not {encoding} text (byte 0x{data[exc.start]:02x})", hint, line, column
        ) from None
