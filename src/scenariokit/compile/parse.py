"""Stage 1: YAML text -> plain Python data plus a map from every path to its source span.

PyYAML's composer gives nodes with marks; we build the data ourselves so that every mapping key and value
keeps its position, duplicate keys become errors (PyYAML silently keeps the last one), and a quoted scalar
remembers where its text starts so expression errors can point inside it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scenariokit.compile.diagnostics import Diagnostic, DiagnosticBag, ScenarioError, Span
from scenariokit.compile.limits import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES

# A path into the document: mapping keys and sequence indexes, as pydantic reports them in `loc`.
Path_ = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Where each value (and each mapping key) came from."""

    file: str
    values: dict[Path_, Span] = field(default_factory=dict)
    keys: dict[Path_, Span] = field(default_factory=dict)
    # Span of the first character of a scalar's *text* (inside quotes for quoted scalars).
    text_starts: dict[Path_, Span] = field(default_factory=dict)
    # What the built data no longer shows, for the checks of values sent as JSON: the tag of a mapping or
    # list that has one (`!!set {a, b}` is built as a mapping), and each key that was not text as written
    # (`1`, `null`), under the path its text form (`"1"`, `"None"`) gives.
    tags: dict[Path_, str] = field(default_factory=dict)
    non_text_keys: dict[Path_, tuple[str, Any]] = field(default_factory=dict)

    def value(self, path: Path_) -> Span:
        """The span of the value at `path`, or of its nearest ancestor that has one."""
        for i in range(len(path), -1, -1):
            span = self.values.get(path[:i])
            if span is not None:
                return span
        return Span(self.file, 1, 1)

    def key(self, path: Path_) -> Span:
        return self.keys.get(path) or self.value(path)

    def text(self, path: Path_) -> Span:
        return self.text_starts.get(path) or self.value(path)


@dataclass
class Document:
    data: Any
    source: SourceMap
    text: str


class _Limit(Exception):
    """A bound of `limits` crossed: building stops at once (going on is what costs time and memory)."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def parse_file(path: Path, display_name: str | None = None) -> Document:
    name = display_name or str(path)
    data = _read_limited(path, name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError([_not_utf8(data, exc, name)]) from None
    return parse_text(text, name)


def _not_utf8(data: bytes, exc: UnicodeDecodeError, name: str) -> Diagnostic:
    line_start = data.rfind(b"\n", 0, exc.start) + 1
    column = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
    return Diagnostic(
        Span(name, data.count(b"\n", 0, exc.start) + 1, column),
        f"not UTF-8 text: byte 0x{data[exc.start]:02x} ({exc.reason})",
        "save the file as UTF-8",
    )


def _read_limited(path: Path, name: str) -> bytes:
    """The file's bytes, if it is a regular file of at most MAX_FILE_BYTES. A FIFO or device is refused
    before it is opened (reading one could block or never end), and again after (it may have been swapped)."""

    def refuse(message: str, hint: str | None = None) -> ScenarioError:
        return ScenarioError([Diagnostic(Span(name, 0, 0), message, hint)])

    try:
        _check_file_type(os.stat(path).st_mode, refuse)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise refuse("file not found") from None
    except OSError as exc:
        raise refuse(f"cannot read the file: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        _check_file_type(os.fstat(fd).st_mode, refuse)
        data = handle.read(MAX_FILE_BYTES + 1)  # the size stat gives may be a lie (/proc reports 0)
    if len(data) > MAX_FILE_BYTES:
        raise refuse(
            f"the file is larger than {MAX_FILE_BYTES / 2**20:g} MiB", "a scenario is a short YAML file"
        )
    return data


def _check_file_type(mode: int, refuse: Any) -> None:
    if stat.S_ISDIR(mode):
        raise refuse("this is a folder, not a scenario file", "name a .yaml file")
    if not stat.S_ISREG(mode):
        raise refuse("not a regular file (a device, pipe or socket)", "name a .yaml file")


def parse_text(text: str, file: str) -> Document:
    try:
        loader = _Loader(text, file)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, other controls)
        raise ScenarioError([_reader_error(exc, text, file)]) from None
    try:
        node = loader.get_single_node()
    except _Limit as exc:
        raise ScenarioError([exc.diagnostic]) from None
    except yaml.MarkedYAMLError as exc:
        raise ScenarioError([_yaml_error(exc, file)]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([Diagnostic(Span(file, 1, 1), f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    source = SourceMap(file)
    bag = DiagnosticBag()
    if node is None:
        bag.error(Span(file, 1, 1), "the scenario is empty", "start with `version: 1` and a `name:`")
        bag.raise_if_errors()
    try:
        data = _Builder(loader, source, bag).build(node, ())
    except _Limit as exc:
        raise ScenarioError([exc.diagnostic]) from None
    bag.raise_if_errors()
    return Document(data, source, text)


def _reader_error(exc: yaml.reader.ReaderError, text: str, file: str) -> Diagnostic:
    position = exc.position
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    code = exc.character if isinstance(exc.character, int) else 0
    return Diagnostic(
        Span(file, line, column),
        f"invalid YAML: the character U+{code:04X} is not allowed in a YAML file",
        'remove it; in a double-quoted string it may be written as an escape, e.g. "\\x07"',
    )


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, composing at most MAX_NODES values (aliases included) nested at most MAX_DEPTH
    deep: past either it stops where the bound was crossed, before a huge document costs time and memory."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file = file
        self.composed = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        mark = self.peek_event().start_mark
        span = Span(self.file, mark.line + 1, mark.column + 1)
        self.composed += 1
        if self.composed > MAX_NODES:
            raise _Limit(_too_many(span))
        if self.depth >= MAX_DEPTH and self.check_event(yaml.CollectionStartEvent):
            raise _Limit(_too_deep(span))
        self.depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1


def _too_many(span: Span) -> Diagnostic:
    return Diagnostic(
        span,
        f"the scenario holds more than {MAX_NODES} values (each use of an alias counts)",
        "no scenario needs this many; an alias that refers to aliases multiplies (a billion laughs)",
    )


def _too_deep(span: Span) -> Diagnostic:
    return Diagnostic(
        span, f"nested more than {MAX_DEPTH} levels deep", "flatten the structure; no scenario needs this"
    )


def _yaml_error(exc: yaml.MarkedYAMLError, file: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or "invalid YAML"
    context = ""
    if exc.context:
        started = exc.context_mark
        where = f" started at line {started.line + 1}, column {started.column + 1}" if started else ""
        context = f" ({exc.context}{where})"
    hint = None
    if "found character '\\t'" in problem:
        hint = "YAML does not allow tabs for indentation: use spaces"
    elif "mapping values are not allowed" in problem:
        hint = "a value containing `: ` must be quoted, or a key is missing its indentation"
    elif "could not find expected ':'" in problem:
        hint = "each line in a mapping needs `key: value`"
    return Diagnostic(Span(file, line, column), f"invalid YAML: {problem}{context}", hint)


_INVALID = object()  # a scalar that could not be constructed (already reported)
_YAML_TAG_PREFIX = "tag:yaml.org,2002:"
_PLAIN_COLLECTION_TAGS = frozenset({_YAML_TAG_PREFIX + "map", _YAML_TAG_PREFIX + "seq"})


def _span(node: yaml.Node, file: str) -> Span:
    start, end = node.start_mark, node.end_mark
    return Span(file, start.line + 1, start.column + 1, end.line + 1, end.column + 1)


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, source: SourceMap, bag: DiagnosticBag) -> None:
        self.loader = loader
        self.source = source
        self.bag = bag
        self.built = 0  # values built, an alias's each time it is used
        self.open: set[int] = set()  # the collections being built: an alias to one of them is a cycle
        self.merged: dict[int, int] = {}  # a mapping's pairs once its merges are flattened

    def build(self, node: yaml.Node, path: Path_) -> Any:
        span = _span(node, self.source.file)
        self.built += 1
        if self.built > MAX_NODES:
            raise _Limit(_too_many(span))
        self.source.values[path] = span
        if isinstance(node, yaml.CollectionNode) and len(path) >= MAX_DEPTH:
            self.bag.items.append(_too_deep(span))
            return None
        if id(node) in self.open:
            self.bag.error(
                span,
                "an alias here refers to the mapping or list that contains it",
                "a value cannot contain itself: copy what you need instead",
            )
            return None
        if isinstance(node, yaml.CollectionNode):
            self.open.add(id(node))
            try:
                return self._collection(node, path)
            finally:
                self.open.discard(id(node))
        return self._scalar(node, path, span)

    def _collection(self, node: yaml.CollectionNode, path: Path_) -> Any:
        if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_COLLECTION_TAGS:
            self.source.tags[path] = node.tag.replace(_YAML_TAG_PREFIX, "!!")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]

    def _scalar(self, node: yaml.Node, path: Path_, span: Span) -> Any:
        assert isinstance(node, yaml.ScalarNode)
        if node.style in ("'", '"'):
            self.source.text_starts[path] = Span(span.file, span.line, span.column + 1)
        else:
            self.source.text_starts[path] = span
        value = self._construct(node, span, "value")
        return None if value is _INVALID else value

    def _construct(self, node: yaml.ScalarNode, span: Span, what: str) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:  # a tag PyYAML's safe loader has no constructor for
            hint = f"remove the tag `{node.tag}`" if node.tag.startswith("!") else None
            self.bag.error(span, f"invalid {what}: {exc.problem or exc}", hint)
        except yaml.YAMLError as exc:
            self.bag.error(span, f"invalid {what}: {exc}")
        return _INVALID

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        if self._merged_size(node, 0) > MAX_NODES:  # merges of merges double at each level
            raise _Limit(_too_many(_span(node, self.source.file)))
        try:
            self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = (
                Span(self.source.file, mark.line + 1, mark.column + 1)
                if mark
                else _span(node, self.source.file)
            )
            self.bag.error(where, f"invalid merge: {exc.problem}", "`<<:` merges a mapping: `<<: *anchor`")
            return result
        first_seen: dict[Any, Span] = {}
        for key_node, value_node in node.value:
            key_span = _span(key_node, self.source.file)
            if not isinstance(key_node, yaml.ScalarNode):
                self.bag.error(key_span, "mapping keys must be plain names")
                continue
            written = self._construct(key_node, key_span, "key")
            if written is _INVALID:
                continue
            key = written if isinstance(written, str) else str(written)
            if not isinstance(written, str):
                self.source.non_text_keys[(*path, key)] = (key_node.value, written)
            if key in first_seen:
                self.bag.error(
                    key_span,
                    f"duplicate key `{key}` (first defined at line {first_seen[key].line})",
                    "YAML keeps only the last one silently; we refuse: remove or rename one",
                )
                continue
            first_seen[key] = key_span
            self.source.keys[(*path, key)] = key_span
            result[key] = self.build(value_node, (*path, key))
        return result

    def _merged_size(self, node: yaml.MappingNode, depth: int) -> int:
        """How many pairs flattening the merges of `node` makes, counted without making them."""
        if depth > MAX_DEPTH:
            raise _Limit(_too_deep(_span(node, self.source.file)))
        if id(node) in self.merged:
            return self.merged[id(node)]
        self.merged[id(node)] = 0  # a merge that leads back here adds nothing, as PyYAML flattens it
        size = 0
        for key_node, value_node in node.value:
            if key_node.tag != _YAML_TAG_PREFIX + "merge":
                size += 1
                continue
            merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for sub in merged:
                if isinstance(sub, yaml.MappingNode):
                    size += self._merged_size(sub, depth + 1)
        self.merged[id(node)] = size
        return size
