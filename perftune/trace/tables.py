"""Per-trace derived tables, computed once per owner and passed explicitly.

A table is a pure function `fn(trace, tables=None)`; it asks `tables` for the other tables it
needs, so within one `Tables` each is computed once. Whoever holds the `Tables` decides how
long the results live: the analysis context (perftune.engine.context) owns one per run, a
summary or a report makes its own; nothing is cached at module level or on the trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from perftune.trace.model import Trace

T = TypeVar("T")
Table = Callable[[Trace, "Tables | None"], T]


class Tables:
    """The tables of one trace computed so far (see the module docstring)."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self._values: dict[Callable[..., Any], Any] = {}

    def __call__(self, table: Callable[[Trace, Tables | None], T]) -> T:
        if table not in self._values:
            self._values[table] = table(self.trace, self)
        value: T = self._values[table]
        return value

    @staticmethod
    def of(trace: Trace, tables: Tables | None) -> Tables:
        """`tables` when given (and for this trace), else a fresh one for this call."""
        return tables if tables is not None and tables.trace is trace else Tables(trace)
