"""Nothing is eval'ed: no `eval` or `exec` call in perftune or its benchmarks, but the one that
runs the user's own script as `__main__` (what `python train.py` does)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The capture child runs the analysed script itself: the program the user asked to profile,
# not text taken from a trace or a document.
ALLOWED = {("perftune/capture/child/script.py", "exec")}


def _calls(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [(node.func.id, node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("eval", "exec")]


def test_nothing_is_evaluated() -> None:
    found = []
    for folder in ("perftune", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found += [f"{rel}:{line} {name}()" for name, line in _calls(path)
                      if (rel, name) not in ALLOWED]
    assert not found, found


def test_the_check_sees_a_call(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("x = eval('1 + 1')\nmodel.eval()\n")
    assert _calls(sample) == [("eval", 1)]  # the builtin, not a method named eval
