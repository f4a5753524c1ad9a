"""Stage 1: YAML text -> plain Python data plus a map from every path to its source span.

PyYAML's composer gives nodes with marks; we build the data ourselves so that every mapping key and value
keeps its position, duplicate keys become errors (PyYAML silently keeps the last one), and a quoted scalar
remembers where its text starts so expression errors can point inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scenariokit.compile.diagnostics import Diagnostic, DiagnosticBag, ScenarioError, Span

# A path into the document: mapping keys and sequence indexes, as pydantic reports them in `loc`.
Path_ = tuple[str | int, ...]
# Deeper mappings and lists are refused: every later stage walks values recursively (pydantic gives up at
# about 260 levels, CPython's parser at 200 nested brackets in a generated locustfile, PyYAML's composer at
# several hundred).
MAX_DEPTH = 100


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


def parse_file(path: Path, display_name: str | None = None) -> Document:
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([Diagnostic(Span(name, 0, 0), "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError([Diagnostic(Span(name, 1, 1), f"not UTF-8 text: {exc.reason}")]) from None
    return parse_text(text, name)


def parse_text(text: str, file: str) -> Document:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise ScenarioError([_yaml_error(exc, file)]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([Diagnostic(Span(file, 1, 1), f"invalid YAML: {exc}")]) from None
    except RecursionError:  # PyYAML composes nodes recursively; its parser's events say where
        raise ScenarioError([_too_deep(_first_too_deep(text, file))]) from None
    finally:
        loader.dispose()
    source = SourceMap(file)
    bag = DiagnosticBag()
    if node is None:
        bag.error(Span(file, 1, 1), "the scenario is empty", "start with `version: 1` and a `name:`")
        bag.raise_if_errors()
    data = _Builder(loader, source, bag).build(node, ())
    bag.raise_if_errors()
    return Document(data, source, text)


def _too_deep(span: Span) -> Diagnostic:
    return Diagnostic(
        span, f"nested more than {MAX_DEPTH} levels deep", "flatten the structure; no scenario needs this"
    )


def _first_too_deep(text: str, file: str) -> Span:
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return Span(file, event.start_mark.line + 1, event.start_mark.column + 1)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return Span(file, 1, 1)


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

    def build(self, node: yaml.Node, path: Path_) -> Any:
        span = _span(node, self.source.file)
        self.source.values[path] = span
        if isinstance(node, yaml.CollectionNode) and len(path) >= MAX_DEPTH:
            self.bag.items.append(_too_deep(span))
            return None
        if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_COLLECTION_TAGS:
            self.source.tags[path] = node.tag.replace(_YAML_TAG_PREFIX, "!!")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
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
