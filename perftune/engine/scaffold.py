"""Create a rule folder: `python -m perftune.engine.scaffold PFT213 my-rule-name`.

Writes rules/pft213_my_rule_name/ with a rule.py whose docstring has every required section,
bad.py and good.py placeholders and an empty expected.json. Then: fill in the docstring and
check(), add fixture traces, bless the snapshot with
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft213`, plant the problem in a
sample with `# perftune: expect[PFT213]`, add a CHANGELOG line.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from perftune._resources import rules_dir
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


def class_name(slug: str) -> str:
    return "".join(part.capitalize() for part in slug.split("-"))


def scaffold(code: str, slug: str, root: Path | None = None) -> Path:
    """Create the folder for rule `code` named `slug`; returns it. Raises ValueError."""
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
    (folder / "expected.json").write_text("{}\n", encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perftune.engine.scaffold",
                                     description="Create a new rule folder in rules/.")
    parser.add_argument("code", help="rule code, e.g. PFT213")
    parser.add_argument("slug", help="rule name, lower-case-with-dashes, e.g. cpu-bound-collate")
    parser.add_argument("--root", type=Path, default=None, help="rules folder (default: the catalogue)")
    args = parser.parse_args(argv)
    try:
        folder = scaffold(args.code, args.slug, args.root)
    except (ValueError, OSError) as exc:
        print(f"scaffold: error: {exc}", file=sys.stderr)
        return 2
    print(f"created {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
