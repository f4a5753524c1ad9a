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


@dataclass
class SourceMap:
    """Where each value (and each mapping key) came from."""

    file: str
    values: dict[Path_, Span] = field(default_factory=dict)
    keys: dict[Path_, Span] = field(default_factory=dict)
    # Span of the first character of a scalar's *text* (inside quotes for quoted scalars).
    text_starts: dict[Path_, Span] = field(default_factory=dict)

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
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        if node.style in ("'", '"'):
            self.source.text_starts[path] = Span(span.file, span.line, span.column + 1)
        else:
            self.source.text_starts[path] = span
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.bag.error(span, f"invalid value: {exc}")
            return None

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        result: dict[Any, Any] = {}
        first_seen: dict[Any, Span] = {}
        for key_node, value_node in node.value:
            key_span = _span(key_node, self.source.file)
            if not isinstance(key_node, yaml.ScalarNode):
                self.bag.error(key_span, "mapping keys must be plain names")
                continue
            key = self.loader.construct_object(key_node)
            if not isinstance(key, str):
                key = str(key)
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
