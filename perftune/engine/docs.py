"""Rule documentation: split a rule's docstring into sections and check them.

A rule's docstring may start with a one-line summary ("PFT201 sync-in-step: ..."), then has
`## ` sections. Required, in this order: What it detects, Why is it slow?, Example, Use
instead. Optional: Evidence, Options, Known problems, References. `perftune rule PFTnnn`
renders the same text, so what the catalogue test accepts is what users read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REQUIRED = ("What it detects", "Why is it slow?", "Example", "Use instead")
OPTIONAL = ("Evidence", "Options", "Known problems", "References")
_HEADING = re.compile(r"^##\s+(.+?)\s*$")
_FENCE = re.compile(r"^```")


@dataclass(frozen=True)
class RuleDoc:
    summary: str
    sections: dict[str, str]  # title → body (markdown), in docstring order


def parse(doc: str) -> RuleDoc:
    """Summary line and sections of a (cleandoc'ed) rule docstring."""
    lines = doc.strip("\n").splitlines()
    summary_lines: list[str] = []
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_fence = False
    for line in lines:
        if _FENCE.match(line.strip()):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(line)
        if m is not None:
            current = sections.setdefault(m.group(1), [])
            continue
        if current is None:
            summary_lines.append(line)
        else:
            current.append(line)
    summary = " ".join(s.strip() for s in summary_lines if s.strip())
    return RuleDoc(summary=summary, sections={k: "\n".join(v).strip() for k, v in sections.items()})


def summary_of(doc: str) -> str:
    """One line describing the rule: the summary line, else the first sentence it detects."""
    parsed = parse(doc)
    text = parsed.summary or parsed.sections.get("What it detects", "")
    text = " ".join(text.split())
    if parsed.summary and ":" in text:
        text = text.split(":", 1)[1].strip()
    return text.split(". ")[0].rstrip(".")


def problems(doc: str) -> list[str]:
    """Everything wrong with a rule docstring ([] when it is fine)."""
    out: list[str] = []
    if not doc.strip():
        return ["the rule has no docstring"]
    parsed = parse(doc)
    titles = list(parsed.sections)
    for title in REQUIRED:
        if title not in parsed.sections:
            out.append(f"missing section '## {title}'")
        elif not parsed.sections[title]:
            out.append(f"section '## {title}' is empty")
    for title in titles:
        if title not in REQUIRED and title not in OPTIONAL:
            out.append(f"unknown section '## {title}' (allowed: {', '.join(REQUIRED + OPTIONAL)})")
    present = [t for t in titles if t in REQUIRED]
    if present != [t for t in REQUIRED if t in present]:
        out.append(f"sections out of order: {present} (expected {list(REQUIRED)})")
    for title in ("Example", "Use instead"):
        body = parsed.sections.get(title, "")
        if body and "```" not in body:
            out.append(f"section '## {title}' needs a code block")
    if doc.count("```") % 2:
        out.append("unbalanced ``` code fences")
    return out


def markdown(code: str, name: str, doc: str, *, category: str, status: str, severity: str,
             options: dict[str, object], bad: str | None, good: str | None) -> str:
    """The page `perftune rule CODE` prints: header, the docstring sections, bad/good code."""
    parsed = parse(doc)
    parts = [f"# {code} {name}", "", f"*{category} · {status} · default severity {severity}*", ""]
    if parsed.summary:
        summary = parsed.summary.split(":", 1)[1].strip() if ":" in parsed.summary else parsed.summary
        parts += [summary, ""]
    for title, body in parsed.sections.items():
        parts += [f"## {title}", "", body, ""]
    if options and "Options" not in parsed.sections:
        parts += ["## Options", ""]
        parts += [f"- `{k}` = `{v!r}`" for k, v in options.items()]
        parts += [""]
    if bad:
        parts += ["## Bad (bad.py)", "", "```python", bad.rstrip(), "```", ""]
    if good:
        parts += ["## Good (good.py)", "", "```python", good.rstrip(), "```", ""]
    if options:
        parts += ["Configure in pyproject.toml:", "", "```toml", f"[tool.perftune.rules.{code}]"]
        parts += [f"{k} = {_toml(v)}" for k, v in options.items()]
        parts += ["```", ""]
    return "\n".join(parts)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)
