"""The doc-section validator, the `perftune rule` page, and the rule scaffold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from perftune.engine import docs
from perftune.engine.catalogue import folder_problems, run_fixture
from perftune.engine.registry import _load_module
from perftune.engine.rule import Rule
from perftune.engine.scaffold import scaffold

GOOD = """PFT299 demo: something.

## What it detects
X.

## Why is it slow?
Y.

## Example
```python
bad()
```

## Use instead
```python
good()
```

## Options
`k` (default 1).
"""


def test_a_complete_docstring_has_no_problems() -> None:
    assert docs.problems(GOOD) == []
    parsed = docs.parse(GOOD)
    assert parsed.summary == "PFT299 demo: something."
    assert list(parsed.sections) == ["What it detects", "Why is it slow?", "Example", "Use instead", "Options"]
    assert docs.summary_of(GOOD) == "something"


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda d: d.replace("## Why is it slow?\nY.\n", ""), "missing section '## Why is it slow?'"),
    (lambda d: d.replace("X.", ""), "section '## What it detects' is empty"),
    (lambda d: d.replace("## Options", "## Notes"), "unknown section '## Notes'"),
    (lambda d: d.replace("```python\nbad()\n```", "bad()"), "section '## Example' needs a code block"),
    (lambda d: d.replace("## Example", "## Tmp").replace("## Use instead", "## Example")
     .replace("## Tmp", "## Use instead"), "sections out of order"),
])
def test_the_validator_names_each_problem(edit, problem: str) -> None:  # type: ignore[no-untyped-def]
    found = docs.problems(edit(GOOD))
    assert any(p.startswith(problem) for p in found), found


def test_headings_inside_code_blocks_are_not_sections() -> None:
    text = GOOD.replace("bad()", "# ## Use instead\nbad()")
    assert docs.problems(text) == []


def test_markdown_page_has_examples_and_config() -> None:
    page = docs.markdown("PFT299", "demo", GOOD, category="host-device sync", status="preview",
                         severity="warning", options={"k": 1, "flag": True}, bad="x = 1\n", good="x = 2\n")
    assert page.startswith("# PFT299 demo")
    assert "## Bad (bad.py)\n\n```python\nx = 1\n```" in page
    assert "[tool.perftune.rules.PFT299]\nk = 1\nflag = true" in page


def test_scaffold_creates_a_loadable_documented_rule(tmp_path: Path) -> None:
    folder = scaffold("PFT213", "cpu-bound-collate", root=tmp_path)
    assert folder.name == "pft213_cpu_bound_collate"
    # one folder holds the whole rule: docs + check, fixture builders and their traces, snapshot
    assert {p.name for p in folder.iterdir()} == {"rule.py", "bad.py", "good.py", "expected.json",
                                                 "fixtures.py", "bad.json.gz", "clean.json.gz"}
    module = _load_module(folder / "rule.py")
    rule = module.CpuBoundCollate
    assert issubclass(rule, Rule) and rule.code == "PFT213" and rule.status == "preview"
    assert docs.problems(rule.doc()) == []
    assert folder_problems(folder, rule) == []
    for fixture in ("bad.json.gz", "clean.json.gz"):
        assert run_fixture(rule, folder / fixture) == []  # check(ctx) is a stub until written


def test_scaffold_with_fix_writes_the_rewrite_module(tmp_path: Path) -> None:
    from perftune.engine.registry import load_rule_file

    folder = scaffold("PFT214", "slow-thing", root=tmp_path, with_fix=True)
    fix = load_rule_file(folder / "fix.py")
    assert [fn("x = 1\n", 1, {}) for fn in fix.TRANSFORMERS] == [None]


@pytest.mark.parametrize(("code", "slug", "message"), [
    ("PFT2", "x", "PFT \\+ three digits"),
    ("PFT813", "x", "category"),  # 7 became "compilation" (issue 18)
    ("PFT213", "Bad Name", "lower-case"),
])
def test_scaffold_rejects_bad_codes_and_names(tmp_path: Path, code: str, slug: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scaffold(code, slug, root=tmp_path)


def test_scaffold_never_reuses_a_code(tmp_path: Path) -> None:
    scaffold("PFT213", "first", root=tmp_path)
    with pytest.raises(ValueError, match="already used"):
        scaffold("pft213", "second", root=tmp_path)


def test_scaffold_module_runs_as_a_script(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "perftune.engine.scaffold", "PFT214", "demo-rule",
                         "--root", str(tmp_path)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and (tmp_path / "pft214_demo_rule" / "rule.py").is_file()
    again = subprocess.run([sys.executable, "-m", "perftune.engine.scaffold", "PFT214", "demo-rule",
                            "--root", str(tmp_path)], capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "already used" in again.stderr
