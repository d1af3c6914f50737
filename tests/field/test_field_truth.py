"""The field corpus: realistic training scripts, each profiled once, judged by its own markers.

Every script in tests/field carries its truth in comments (`expect[...]`, `not[...]`,
`file-expect[...]`, `file-not[...]`; see benchmarks/rules_accuracy.py). Each is profiled once
with `perftune profile` (one real CPU run per script, in parallel across xdist workers) and the
whole catalogue runs on its trace. A finding at a `not[...]` line fails the test; an expected
finding that is missing fails it too, unless it is listed in KNOWN_MISSES with the reason and
the area that owns the fix (then the test is an expected failure, strict: it must start passing
when the fix lands, and the entry be removed).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
FIELD = Path(__file__).resolve().parent


def _accuracy_module():
    name = "perftune_bench_rules_accuracy"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "rules_accuracy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


acc = _accuracy_module()
SCRIPTS = acc.scripts(FIELD)

# (script, code, line or None for file-level) -> (owner, reason). Only for expectations whose
# fix belongs to another helper's area; a `not[...]` violation is never listed here.
KNOWN_MISSES: dict[tuple[str, str, int | None], tuple[str, str]] = {}


@pytest.fixture(scope="session")
def field_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the corpus runs go: PERFTUNE_FIELD_RUNS (kept and reused between sessions, like
    the benchmark's --reuse) or a fresh folder of this session."""
    env = os.environ.get("PERFTUNE_FIELD_RUNS")
    return Path(env) if env else tmp_path_factory.mktemp("field-runs")


def test_the_corpus_is_what_the_issue_asks_for() -> None:
    assert len(SCRIPTS) >= 15
    readme = (FIELD / "README.md").read_text(encoding="utf-8")
    for script in SCRIPTS:
        assert f"`{script.name}`" in readme, f"{script.name} is not described in tests/field/README.md"


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_findings_agree_with_the_scripts_truth(script: Path, field_runs: Path) -> None:
    reuse = bool(os.environ.get("PERFTUNE_FIELD_RUNS"))
    result = acc.run_script(script, field_runs, reuse)
    report = "\n".join(acc.describe(result))
    assert result.error is None, report
    assert not result.violations, f"findings at lines marked not[...]:\n{report}"
    missing = {(code, line) for code, line in result.missed if (script.name, code, line) not in KNOWN_MISSES}
    missing |= {(code, None) for code in result.file_missed if (script.name, code, None) not in KNOWN_MISSES}
    assert not missing, f"expected findings not reported: {sorted(missing, key=str)}\n{report}"
    known = [(c, ln) for c, ln in sorted(result.missed) if (script.name, c, ln) in KNOWN_MISSES]
    known += [(c, None) for c in sorted(result.file_missed) if (script.name, c, None) in KNOWN_MISSES]
    if known:
        owners = {KNOWN_MISSES[(script.name, c, ln)] for c, ln in known}
        pytest.xfail("; ".join(f"{owner}: {reason}" for owner, reason in sorted(owners)))
