"""Create a rule folder: `python -m perftune.engine.scaffold PFT213 my-rule-name`.

A rule is one folder; adding one touches nothing else. This writes rules/pft213_my_rule_name/:

  rule.py        docstring with every required section, and a pure `check(ctx)`
  fixtures.py    FIXTURES: builders of the folder's fixture traces (`bad` and `clean`)
  fix.py         TRANSFORMERS: the libcst rewrites at the finding's line (with --fix)
  bad.py/good.py the slow pattern and its rewrite (documentation; fixture frames point here)
  expected.json  the full findings snapshot, blessed from the fixtures
  bad.json.gz, clean.json.gz   written from fixtures.py

Then: fill in the docstring, check() and the builders, rewrite the traces with
`python -m perftune.engine.fixtures pft213`, bless the snapshot with
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft213`, plant the problem in a
sample with `# perftune: expect[PFT213]`, add a CHANGELOG line.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from perftune._resources import rules_dir
from perftune.engine.fixtures import write_fixtures
from perftune.engine.rule import CATEGORIES

_CODE = re.compile(r"^PFT(\d)(\d{2})$")
_SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

RULE_TEMPLATE = '''"""{code} {slug}: one line saying what this rule finds.

## What it detects
Which events in the trace (op names, runtime calls, annotations) and under which condition.

## Why is it slow?
What the hardware or the runtime does that costs time, and how much it can cost.

## Example
```python
# the slow pattern, as a user writes it
```

## Use instead
```python
# the fix
```

## Options
None yet.
"""

from __future__ import annotations

from collections.abc import Iterator

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding


class {cls}(Rule):
    code = "{code}"
    name = "{slug}"
    status = "preview"  # "stable" once its fixtures and a sample show it works

    def check(self, ctx: Context) -> Iterator[Finding]:
        # Pure: read ctx.trace and the context's facts (ctx.host, ctx.fact(...), ctx.peaks,
        # ctx.phase_times, ctx.location_of(...)); open no file; yield findings.
        return iter(())
'''

FIXTURES_TEMPLATE = '''"""Fixture traces of {code}: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines users
read. After changing a builder: `python -m perftune.engine.fixtures {prefix}`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k {prefix}`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import Fixture, compute, steps
from perftune.engine.testing import TraceBuilder


def bad(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        with b.frame("bad.py", 1, "train_step"):
            compute(b)  # replace with the ops and runtime calls of the slow pattern
    return steps(TraceBuilder(device=gpu), body)


def clean(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        with b.frame("good.py", 1, "train_step"):
            compute(b)
    return steps(TraceBuilder(device=gpu), body)


FIXTURES: dict[str, Fixture] = {{
    "bad": lambda: bad(True),
    "clean": lambda: clean(True),
}}
'''

FIX_TEMPLATE = '''"""The rewrite of rule {code}: libcst transformers tried in order at the finding's line.

Each takes (source, line, params) and returns a `Rewrite` (the new module text and whether the
change is safe) or None when the pattern is not there. Shared helpers (parse, positions,
keyword edits) are in perftune.engine.rewrite. Never execute user code here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perftune.engine.rewrite import Rewrite


def rewrite(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    return None  # e.g. perftune.engine.rewrite.keyword_rewrite(source, line, ...)


TRANSFORMERS = (rewrite,)
'''


def class_name(slug: str) -> str:
    return "".join(part.capitalize() for part in slug.split("-"))


def scaffold(code: str, slug: str, root: Path | None = None, with_fix: bool = False) -> Path:
    """Create the folder for rule `code` named `slug` (with a fix.py when `with_fix`); returns
    it. Raises ValueError."""
    code = code.upper()
    m = _CODE.match(code)
    if m is None:
        raise ValueError(f"rule code {code!r} must be PFT + three digits (e.g. PFT213)")
    if m.group(1) not in CATEGORIES:
        raise ValueError(f"{code}: the hundreds digit is the category, one of "
                         + ", ".join(f"{k}xx {v}" for k, v in CATEGORIES.items()))
    if not _SLUG.match(slug):
        raise ValueError(f"rule name {slug!r} must be lower-case words joined by dashes")
    base = root or rules_dir()
    taken = sorted(base.glob(f"{code.lower()}_*"))
    if taken:
        raise ValueError(f"{code} is already used by {taken[0]} (codes are never reused)")
    folder = base / f"{code.lower()}_{slug.replace('-', '_')}"
    folder.mkdir(parents=True)
    (folder / "rule.py").write_text(RULE_TEMPLATE.format(code=code, slug=slug, cls=class_name(slug)),
                                    encoding="utf-8")
    (folder / "bad.py").write_text("# The slow pattern (documentation, printed by `perftune rule`).\n",
                                   encoding="utf-8")
    (folder / "good.py").write_text("# The rewrite (documentation, printed by `perftune rule`).\n",
                                    encoding="utf-8")
    (folder / "fixtures.py").write_text(FIXTURES_TEMPLATE.format(code=code, prefix=code.lower()),
                                        encoding="utf-8")
    if with_fix:
        (folder / "fix.py").write_text(FIX_TEMPLATE.format(code=code), encoding="utf-8")
    (folder / "expected.json").write_text("{}\n", encoding="utf-8")
    write_fixtures(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perftune.engine.scaffold",
                                     description="Create a new rule folder in rules/.")
    parser.add_argument("code", help="rule code, e.g. PFT213")
    parser.add_argument("slug", help="rule name, lower-case-with-dashes, e.g. cpu-bound-collate")
    parser.add_argument("--root", type=Path, default=None, help="rules folder (default: the catalogue)")
    parser.add_argument("--fix", action="store_true", help="also write fix.py (a libcst rewrite)")
    args = parser.parse_args(argv)
    try:
        folder = scaffold(args.code, args.slug, args.root, with_fix=args.fix)
    except (ValueError, OSError) as exc:
        print(f"scaffold: error: {exc}", file=sys.stderr)
        return 2
    print(f"created {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
