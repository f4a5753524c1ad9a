"""Function-call syntax shared by curves and distributions: `name(arg, name=value, [list])`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lark import Token
from lark.tree import Meta
from lark.visitors import v_args

from scenariokit.compile.diagnostics import did_you_mean
from scenariokit.compile.expr._parsing import ValueTransformer
from scenariokit.compile.expr.units import Quantity


@dataclass(frozen=True)
class Named:
    name: str
    value: Quantity
    start: int
    end: int


@dataclass(frozen=True)
class ListArg:
    items: tuple[Quantity, ...]
    start: int
    end: int


Arg = Quantity | Named | ListArg


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Arg, ...]
    start: int
    end: int

    @property
    def name_end(self) -> int:
        return self.start + len(self.name)

    @property
    def positional(self) -> list[Quantity | ListArg]:
        return [a for a in self.args if not isinstance(a, Named)]

    @property
    def named(self) -> list[Named]:
        return [a for a in self.args if isinstance(a, Named)]


class CallTransformer(ValueTransformer):
    """Builds `Call`s from the `calls.lark` rules; the languages check the arguments."""

    @v_args(meta=True)
    def named(self, meta: Meta, children: list[Any]) -> Named:
        name, value = children
        return Named(str(name), value, meta.start_pos, meta.end_pos)

    @v_args(meta=True)
    def list(self, meta: Meta, children: list[Quantity | None]) -> ListArg:
        return ListArg(tuple(c for c in children if c is not None), meta.start_pos, meta.end_pos)

    @v_args(meta=True)
    def call(self, meta: Meta, children: list[Any]) -> Call:
        name: Token = children[0]
        return Call(str(name), tuple(c for c in children[1:] if c is not None), meta.start_pos, meta.end_pos)

    # -- argument checks -------------------------------------------------------------------------------

    def unknown_function(self, call: Call, known: list[str], what: str) -> Exception:
        hint = did_you_mean(call.name, known) or f"{what}s: {', '.join(known)}"
        return self.error(f"unknown {what} `{call.name}`", call.start, call.name_end, hint)

    def check_named(self, call: Call, allowed: tuple[str, ...], usage: str) -> dict[str, Named]:
        found: dict[str, Named] = {}
        for arg in call.named:
            if arg.name not in allowed:
                hint = did_you_mean(arg.name, allowed) or f"write {usage}"
                raise self.error(
                    f"{call.name} has no argument `{arg.name}`", arg.start, arg.start + len(arg.name), hint
                )
            if arg.name in found:
                raise self.error(f"`{arg.name}` is given twice", arg.start, arg.end)
            found[arg.name] = arg
        return found

    def no_lists(self, call: Call, args: list[Quantity | ListArg]) -> list[Quantity]:
        for arg in args:
            if isinstance(arg, ListArg):
                raise self.error(
                    f"{call.name} takes no list of values",
                    arg.start,
                    arg.end,
                    "only steps takes a list: steps([1, 2, 4, 8], 20s)",
                )
        return [a for a in args if isinstance(a, Quantity)]

    def too_many(self, call: Call, extra: Arg, usage: str) -> Exception:
        return self.error(f"too many arguments for {call.name}", extra.start, extra.end, f"write {usage}")
