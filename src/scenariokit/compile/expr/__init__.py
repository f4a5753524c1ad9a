"""The small expression languages inside YAML values, each parsed to IR values.

=================  =========================================  ==========================================
language           example                                    result
=================  =========================================  ==========================================
duration           `500ms`, `1m30s`, `250us`                  seconds (float)
rate               `50/s`, `3000/m`, `10/min`, `100/h`         per second (float)
fraction           `0.5%`, `0.005`                            fraction (float, 0..1)
bandwidth          `100KB/s`, `1MiB/s`                        bytes per second (float)
load curve         `ramp(0, 200, 1m) -> hold(3m) as steady`   `tuple[ir.Stage, ...]`
think time         `uniform(0.5s, 2.5s)`, `none`, `1s`        `ir.Distribution`
SLO                `p95(ttft) < 300ms for identify`           `ir.Slo`
abort rule         `error_rate > 20% over 10s`                `ir.AbortRule`
template           `Bearer ${env:API_KEY}`, `{images.text}`   `list[LiteralText | DataRef | EnvRef]`
=================  =========================================  ==========================================

Every parser takes the value's text and the `Span` of its first character in the file (inside the quotes
for a quoted scalar) and raises `ExprError` (never anything else) whose diagnostic points at the offending
token inside the value. The grammars are `grammars/*.lark`, one LALR parser each, built once; see
`curve.py` for curve labels and `slo.py` for the SLO grammar.
"""

from scenariokit.compile.expr.abort import parse_abort
from scenariokit.compile.expr.curve import parse_curve
from scenariokit.compile.expr.distribution import parse_distribution
from scenariokit.compile.expr.errors import ExprError
from scenariokit.compile.expr.quantity import parse_byte_rate, parse_duration, parse_fraction, parse_rate
from scenariokit.compile.expr.slo import parse_slo
from scenariokit.compile.expr.template import DataRef, EnvRef, LiteralText, TemplatePart, parse_template
from scenariokit.compile.expr.units import format_duration, format_rate

__all__ = [
    "DataRef",
    "EnvRef",
    "ExprError",
    "LiteralText",
    "TemplatePart",
    "format_duration",
    "format_rate",
    "parse_abort",
    "parse_byte_rate",
    "parse_curve",
    "parse_distribution",
    "parse_duration",
    "parse_fraction",
    "parse_rate",
    "parse_slo",
    "parse_template",
]
