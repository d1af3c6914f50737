"""Rule-folder checks and findings snapshots (used by the catalogue test).

Every rule folder holds fixture traces (`*.json` / `*.json.gz`, small, captured with
torch.profiler or built by the folder's `fixtures.py` with `perftune.engine.testing`) and
`expected.json`: for each fixture, the full findings the rule must produce — code, location
(file name, line, function, source line), message, severity, count, evidence, estimated
saving, op chain and the suggestion with its diff. Fixtures run in a fixed context (source
read from the rule folder only, no machine peaks, no run-directory facts), so the snapshot is
the same on every machine. `PERFTUNE_BLESS=1` rewrites the snapshots from the current results.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perftune.documents import CompilationDocument
from perftune.engine.rule import Rule
from perftune.engine.types import Finding

EXPECTED = "expected.json"
BLESS_ENV = "PERFTUNE_BLESS"


def blessing() -> bool:
    return os.environ.get(BLESS_ENV, "") not in ("", "0", "false", "no")


def fixtures(folder: Path) -> list[Path]:
    """The fixture traces of a rule folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name != EXPECTED
                  and (p.name.endswith(".json") or p.name.endswith(".json.gz")))


_DIFF_HEADER = re.compile(r"^(---|\+\+\+) ([ab])/(?:.*/)?([^/\n]+)$", re.M)


def snapshot(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """Everything a finding says, as JSON (file paths reduced to their names)."""
    rows = []
    for f in findings:
        d = f.to_dict()
        location = d.pop("location")
        location["file"] = Path(location["file"]).name if location["file"] else None
        suggestion = d["suggestion"]
        if suggestion.get("diff"):
            suggestion["diff"] = _DIFF_HEADER.sub(r"\1 \2/\3", suggestion["diff"])
        rows.append({"code": d.pop("code"), **location, **d})
    rows = json.loads(json.dumps(rows))
    return sorted(rows, key=lambda r: (r["code"], r["file"] or "", r["line"] or 0, r["function"] or "",
                                       r["message"]))


def run_fixture(rule: type[Rule], path: Path) -> list[Finding]:
    """Run one rule (with its default options) on one fixture trace, in a fixed context."""
    from perftune.engine.context import Context
    from perftune.engine.registry import run_rules
    from perftune.trace import load

    ctx = Context.build(load(path), [path.parent], run_facts=False, machine_source=lambda: None)
    ctx.compilation = fixture_compilation(path)
    return run_rules(ctx, [rule()], strict=True)


# A fixture trace of a compilation rule (PFT7xx) carries the run's compilation.json under this
# top-level key (a capture writes it next to the trace; a fixture is one file). Trace loaders
# ignore unknown top-level keys.
FIXTURE_COMPILATION_KEY = "perftuneCompilation"


def fixture_compilation(path: Path) -> CompilationDocument | None:
    """The compilation document a fixture trace carries, if any."""
    import gzip

    import msgspec

    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    data = json.loads(raw)
    found = data.get(FIXTURE_COMPILATION_KEY) if isinstance(data, dict) else None
    return None if found is None else msgspec.convert(found, CompilationDocument)


def read_expected(folder: Path) -> dict[str, list[dict[str, Any]]]:
    path = folder / EXPECTED
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of fixture name → findings")
    return {str(k): list(v) for k, v in data.items()}


def write_expected(folder: Path, data: dict[str, list[dict[str, Any]]]) -> Path:
    path = folder / EXPECTED
    path.write_text(json.dumps(dict(sorted(data.items())), indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


def folder_problems(folder: Path, rule: type[Rule]) -> list[str]:
    """What a rule folder lacks: documentation sections, examples, fixtures, snapshot."""
    from perftune.engine.docs import problems

    out = [f"docstring: {p}" for p in problems(rule.doc())]
    for name in ("rule.py", "bad.py", "good.py"):
        if not (folder / name).is_file():
            out.append(f"missing {name}")
    for name in ("bad.py", "good.py"):
        path = folder / name
        if path.is_file() and not path.read_text(encoding="utf-8").strip():
            out.append(f"{name} is empty")
    if not fixtures(folder):
        out.append("no fixture traces (*.json.gz): capture one or build one with "
                   "perftune.engine.testing.TraceBuilder")
    if not rule.name or rule.name != rule.name.lower() or " " in rule.name:
        out.append(f"rule name {rule.name!r} should be lower-case-with-dashes")
    return out
