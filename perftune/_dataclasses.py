"""`lazy_dataclass`: a dataclass whose methods are generated when its first instance is made.

Python 3.11 builds every dataclass's `__init__`, `__repr__`, `__eq__`, `__hash__` and, for
frozen ones, `__setattr__` / `__delattr__` from source text, compiled once per class when the
class statement runs: about 0.5 ms per class. `perftune analyze` imports ~75 of them before
reading a trace, and a single-trace analysis never makes an instance of some 30 (multi-rank
results, compiled regions, Python frames, call sites, op costs...): deferring those took 12 % off
the instructions of analysing a 2 KB trace (992 M -> 873 M, benchmarks/analyze_end_to_end.md).

A class decorated with `lazy_dataclass` is processed by `dataclasses.dataclass` (with the same
options) the first time an instance is created or unpickled, or a subclass is defined; from
then on it is that dataclass, identical to one processed at once.

What the class cannot do before its first instance: be inspected as a class
(`dataclasses.fields(cls)`, `cls.__dataclass_fields__`, `msgspec.convert(data, cls)`). Use it
only for classes read through their instances; `materialise(cls)` processes one at once.
Type checkers see `dataclasses.dataclass` itself.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Any

__all__ = ["lazy_dataclass", "materialise"]

_LOCK = threading.Lock()
_PENDING = "__perftune_lazy_dataclass__"
# Where a class is first used: an instance made, unpickled (no __init__ call), a subclass defined.
_HOOKS = ("__init__", "__setstate__", "__init_subclass__")

if TYPE_CHECKING:
    from dataclasses import dataclass as lazy_dataclass
else:

    def lazy_dataclass(cls: type | None = None, /, **options: Any) -> Any:
        """`dataclasses.dataclass(cls, **options)`, done on the first instance (see above)."""
        if options.get("slots"):
            raise TypeError("lazy_dataclass: slots=True makes a new class; use dataclass")

        def wrap(cls: type) -> type:
            if cls.__bases__ != (object,) or any(name in cls.__dict__ for name in _HOOKS):
                raise TypeError(f"lazy_dataclass: {cls.__qualname__} must be a plain class "
                                f"(no bases, none of {', '.join(_HOOKS)})")
            setattr(cls, _PENDING, options)

            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                materialise(cls)
                cls.__init__(self, *args, **kwargs)

            def __setstate__(self: Any, state: Any) -> None:  # unpickling (no __init__ call)
                materialise(cls)
                _set_state(self, state)

            def __init_subclass__(sub: type, **kwargs: Any) -> None:
                materialise(cls)
                super(cls, sub).__init_subclass__(**kwargs)

            cls.__init__ = __init__
            cls.__setstate__ = __setstate__
            cls.__init_subclass__ = classmethod(__init_subclass__)
            return cls

        return wrap if cls is None else wrap(cls)


def _set_state(obj: Any, state: Any) -> None:
    """What pickle does with a plain object's state: `__dict__` (and slot) values."""
    slots = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    if state:
        obj.__dict__.update(state)
    for key, value in (slots or {}).items():
        object.__setattr__(obj, key, value)


def materialise(cls: type) -> type:
    """Process a `lazy_dataclass` now (no-op for one already processed or a plain class)."""
    with _LOCK:
        options = cls.__dict__.get(_PENDING)
        if options is None:
            return cls
        for name in (*_HOOKS, _PENDING):
            delattr(cls, name)
        processed: type = dataclasses.dataclass(cls, **options)
    assert processed is cls
    return cls
