"""perftune._dataclasses.lazy_dataclass: the same dataclass, generated on first use."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perftune._dataclasses import lazy_dataclass, materialise

ROOT = Path(__file__).resolve().parents[1]
PENDING = "__perftune_lazy_dataclass__"


@dataclasses.dataclass(frozen=True)
class Eager:
    name: str
    count: int = 0
    tags: tuple[str, ...] = ()
    extra: list[int] = dataclasses.field(default_factory=list, compare=False)


@lazy_dataclass(frozen=True)
class Lazy:
    name: str
    count: int = 0
    tags: tuple[str, ...] = ()
    extra: list[int] = dataclasses.field(default_factory=list, compare=False)


@lazy_dataclass
class Mutable:
    value: float
    seen: list[str] = dataclasses.field(default_factory=list)


def _fields(cls: type) -> list[tuple[object, ...]]:
    return [(f.name, f.type, f.default, f.default_factory, f.compare, f.init)
            for f in dataclasses.fields(cls)]


def test_behaves_as_the_dataclass_once_used() -> None:
    a, b = Lazy("x", 2, ("t",), [1]), Lazy("x", 2, ("t",), [9])
    e = Eager("x", 2, ("t",), [1])
    assert repr(a) == repr(e).replace("Eager", "Lazy")
    assert a == b and hash(a) == hash(b) and a != Lazy("y")
    assert Lazy("z").extra == [] and Lazy("z").extra is not Lazy("z").extra
    assert _fields(Lazy) == _fields(Eager)
    assert getattr(Lazy, "__dataclass_params__").frozen  # noqa: B009
    assert Lazy.__match_args__ == Eager.__match_args__
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.count = 3  # type: ignore[misc]
    assert dataclasses.replace(a, count=5) == Lazy("x", 5, ("t",))
    assert dataclasses.asdict(a) == {"name": "x", "count": 2, "tags": ("t",), "extra": [1]}
    assert copy.deepcopy(a) == a and pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(TypeError):
        Lazy()  # type: ignore[call-arg]
    m = Mutable(1.5)
    m.value = 2.0
    assert m == Mutable(2.0) and Mutable.__hash__ is None


def test_nothing_is_generated_before_the_first_instance() -> None:
    @lazy_dataclass(frozen=True)
    class Unused:
        x: int

    assert PENDING in Unused.__dict__ and "__dataclass_fields__" not in Unused.__dict__
    assert not dataclasses.is_dataclass(Unused)
    assert materialise(Unused) is Unused and dataclasses.is_dataclass(Unused)
    assert materialise(Unused) is Unused and Unused(3).x == 3  # once only
    assert materialise(Eager) is Eager


def test_a_subclass_sees_the_fields() -> None:
    @lazy_dataclass(frozen=True)
    class Base:
        x: int

    @dataclasses.dataclass(frozen=True)
    class Child(Base):
        y: int = 1

    assert Child(2) == Child(2, 1) and [f.name for f in dataclasses.fields(Child)] == ["x", "y"]


def test_refuses_what_it_cannot_defer() -> None:
    with pytest.raises(TypeError, match="slots"):
        lazy_dataclass(slots=True)

    class Base:
        pass

    with pytest.raises(TypeError, match="plain class"):
        lazy_dataclass(type("WithBase", (Base,), {"__annotations__": {"x": "int"}}))


def test_unpickled_in_a_process_that_made_no_instance(tmp_path: Path) -> None:
    """A rank worker's results reach the parent by pickle, which calls no __init__."""
    from perftune.trace.multirank import Straggler

    fields = {f.name: f.type for f in dataclasses.fields(materialise(Straggler))}
    values = {name: (1.5 if "float" in str(kind) else 1 if "int" in str(kind) else "r0")
              for name, kind in fields.items()}
    straggler = Straggler(**values)  # type: ignore[arg-type]
    blob = tmp_path / "s.pickle"
    blob.write_bytes(pickle.dumps(straggler))
    script = textwrap.dedent(f"""
        import dataclasses, pickle
        from perftune.trace.multirank import Straggler
        assert "__dataclass_fields__" not in Straggler.__dict__
        s = pickle.loads(open({str(blob)!r}, "rb").read())
        print(repr(s))
        assert dataclasses.is_dataclass(s) and s == pickle.loads(pickle.dumps(s))
        assert hash(s) == hash(dataclasses.replace(s))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == repr(straggler)


def test_analysis_imports_leave_them_pending_and_each_processes() -> None:
    """Importing the analyze command and its rules creates no instance of a lazy class (the
    point of them); each then processes into the frozen dataclass its decorator asked for."""
    script = textwrap.dedent("""
        import dataclasses, sys
        import perftune.cli.analyze
        from perftune.engine.registry import rule_classes
        from perftune._dataclasses import materialise
        rule_classes()
        lazy = {c for m in list(sys.modules.values()) if m and m.__name__.startswith("perftune")
                for c in vars(m).values() if isinstance(c, type) and c.__module__ == m.__name__
                and "__perftune_lazy_dataclass__" in c.__dict__}
        print(len(lazy))
        for c in lazy:
            materialise(c)
            assert dataclasses.is_dataclass(c) and c.__dataclass_params__.frozen, c
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert int(out) >= 30
