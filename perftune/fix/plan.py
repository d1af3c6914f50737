"""From findings to rewrite candidates: which diffs to try, on which files, and which combine.

A candidate is one mechanical change: the engine's diff from a finding, checked against the
file as it is now, with its path made relative to the project root. Findings without a diff,
whose file cannot be found or lies outside the project, or whose diff no longer fits are kept
as skipped with the reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from perftune.engine.types import Applicability, Finding
from perftune.fix import regen
from perftune.fix.apply import Change, StaleDiffError, conflicts, locate, splice
from perftune.fix.diffs import (
    DiffError,
    FileDiff,
    parse_unified_diff,
    render_file_diff,
    render_patch,
    with_path,
)
from perftune.fix.workspace import Project


@dataclass(frozen=True)
class Candidate:
    """One rewrite to measure."""

    id: str
    codes: tuple[str, ...]
    title: str
    applicability: str
    file: str  # relative to the project root, POSIX
    line: int | None
    function: str | None
    source: str | None
    diffs: tuple[FileDiff, ...]
    changes: Mapping[str, tuple[Change, ...]]  # per file, against the planned originals
    est_saving_ms_per_step: float = 0.0
    latent: bool = False

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self.changes)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    @property
    def label(self) -> str:
        return f"{'+'.join(self.codes)} {self.where}"


@dataclass(frozen=True)
class Skipped:
    code: str
    where: str
    reason: str


@dataclass(frozen=True)
class Plan:
    project: Project
    script: str  # relative to the root
    candidates: tuple[Candidate, ...]
    skipped: tuple[Skipped, ...]
    originals: Mapping[str, str] = field(default_factory=dict)  # planned text of touched files

    def by_id(self, ids: Iterable[str]) -> list[Candidate]:
        wanted = set(ids)
        return [c for c in self.candidates if c.id in wanted]

    def texts(self, ids: Iterable[str]) -> dict[str, str]:
        """The touched files with the chosen rewrites applied together."""
        chosen = self.by_id(ids)
        out: dict[str, str] = {}
        for rel in sorted({f for c in chosen for f in c.files}):
            changes = [ch for c in chosen for ch in c.changes.get(rel, ())]
            out[rel] = splice(self.originals[rel], changes)
        return out

    def patch(self, ids: Iterable[str]) -> str:
        """The unified diff of the chosen rewrites together: what is shown, saved as fix.patch
        and, with --apply, written (apply_patch applies exactly this text)."""
        texts = self.texts(ids)
        return render_patch((rel, self.originals[rel], texts[rel]) for rel in sorted(texts))

    def digest(self, rel: str) -> str:
        return hashlib.sha256(self.originals[rel].encode("utf-8")).hexdigest()


def compatible_set(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates, in the order given, that apply together: each is kept unless its
    changed lines overlap one already kept."""
    kept: list[Candidate] = []
    for cand in candidates:
        if all(not _clash(cand, other) for other in kept):
            kept.append(cand)
    return kept


def _clash(a: Candidate, b: Candidate) -> bool:
    return any(conflicts(a.changes[f], b.changes[f]) for f in a.changes if f in b.changes)


def conflicts_of(candidate: Candidate, others: Iterable[Candidate]) -> list[str]:
    return [o.id for o in others if o.id != candidate.id and _clash(candidate, o)]


def resolve_source(file: str | None, roots: Sequence[Path]) -> Path | None:
    """A finding's file as an existing path: absolute, or below one of `roots`."""
    if not file or file.startswith("<"):
        return None
    path = Path(file)
    tries = [path] if path.is_absolute() else [root / path for root in roots]
    for candidate in tries:
        try:
            if candidate.is_file():
                return candidate.resolve()
        except OSError:
            continue
    return None


@dataclass
class _Builder:
    project: Project
    roots: Sequence[Path]
    regenerate: bool = False  # findings from a run dir: remake each rewrite, use no recorded diff
    originals: dict[str, str] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def text(self, rel: str) -> str:
        if rel not in self.originals:
            self.originals[rel] = (self.project.root / rel).read_text(encoding="utf-8")
        return self.originals[rel]

    def skip(self, finding: Finding, reason: str) -> None:
        loc = finding.location
        self.skipped.append(Skipped(finding.code, str(loc), reason))

    def add(self, finding: Finding) -> None:
        loc = finding.location
        sug = finding.suggestion
        path = resolve_source(loc.file, self.roots)
        if path is None:
            if sug.diff or sug.applicability != Applicability.DISPLAY_ONLY:
                self.skip(finding, f"source file {loc.file!r} not found")
            else:
                self.skip(finding, "no mechanical rewrite (advice only)")
            return
        if not sug.diff or sug.applicability == Applicability.DISPLAY_ONLY:
            self.skip(finding, "no mechanical rewrite (advice only)")
            return
        rel = self.project.relative(path)
        if rel is None:
            self.skip(finding, f"{path} is outside the project {self.project.root}")
            return
        if self.regenerate:
            self.add_regenerated(finding, rel)
            return
        try:
            parsed = parse_unified_diff(sug.diff, f"{finding.code} diff")
        except DiffError as exc:
            self.skip(finding, f"unreadable diff: {exc}")
            return
        if len(parsed) != 1:
            # Engine rewrites edit the finding's own file; a diff spanning files is not theirs.
            self.skip(finding, "the diff touches more than the finding's file")
            return
        diff = with_path(parsed[0], rel)
        try:
            changes = locate(diff, self.text(rel), rel)
        except StaleDiffError as exc:
            self.skip(finding, f"stale diff: {exc}")
            return
        except (OSError, UnicodeDecodeError) as exc:
            self.skip(finding, f"cannot read {rel}: {exc}")
            return
        self.keep(finding, rel, diff, changes, sug.title, sug.applicability.value)

    def keep(self, finding: Finding, rel: str, diff: FileDiff, changes: tuple[Change, ...],
             title: str, applicability: str, line: int | None = None) -> None:
        loc = finding.location
        for existing in self.candidates:
            if existing.changes == {rel: changes}:
                # Two rules suggesting the same change (PFT208 and PFT209 on one copy).
                if finding.code not in existing.codes:
                    index = self.candidates.index(existing)
                    self.candidates[index] = _merged(existing, finding)
                return
        self.candidates.append(Candidate(
            id=f"r{len(self.candidates) + 1}", codes=(finding.code,),
            title=title, applicability=applicability,
            file=rel, line=line if line is not None else loc.line, function=loc.function,
            source=loc.source, diffs=(diff,), changes={rel: changes},
            est_saving_ms_per_step=finding.est_saving_ms_per_step, latent=finding.latent))

    def add_regenerated(self, finding: Finding, finding_rel: str) -> None:
        """The rule's rewrite made again on the current text, at the finding's line or else at
        a line the recorded diff points to (its content is never used)."""
        loc = finding.location
        sites = [(finding_rel, loc.line)] if loc.line is not None else []
        for site in regen.recorded_sites(finding.suggestion.diff):
            path = resolve_source(site.file, self.roots)
            rel = self.project.relative(path) if path is not None else None
            if rel is not None and (rel, site.line) not in sites:
                sites.append((rel, site.line))
        for rel, line in sites:
            try:
                text = self.text(rel)
            except (OSError, UnicodeDecodeError) as exc:
                self.skip(finding, f"cannot read {rel}: {exc}")
                return
            made = regen.regenerate(finding.code, text, line)
            if made is None:
                continue
            patch = render_file_diff(rel, text, made.code)
            (diff,) = parse_unified_diff(patch, f"{finding.code} rewrite")
            changes = locate(diff, text, rel)
            title = made.note or finding.suggestion.title
            self.keep(finding, rel, diff, changes, title, made.applicability.value, line)
            return
        where = f"{finding_rel}:{loc.line}" if loc.line is not None else finding_rel
        self.skip(finding, f"the current source no longer matches: {finding.code}'s rewrite "
                  f"does not apply at {where} any more (the recorded diff is never used)")


def _merged(existing: Candidate, finding: Finding) -> Candidate:
    from dataclasses import replace

    return replace(existing, codes=(*existing.codes, finding.code),
                   est_saving_ms_per_step=max(existing.est_saving_ms_per_step,
                                              finding.est_saving_ms_per_step))


def _selected(code: str, select: Sequence[str]) -> bool:
    return not select or any(code.upper().startswith(s.upper()) for s in select)


def make_plan(findings: Iterable[Finding], project: Project, script: Path,
              roots: Sequence[Path], select: Sequence[str] = (), *,
              regenerate: bool = False) -> Plan:
    """Candidates from `findings` (best estimated saving first).

    With `regenerate` (findings read from a run directory) every rewrite is made again by the
    engine on the current source, and the findings' own diffs serve only as locations."""
    script_rel = project.relative(script)
    if script_rel is None:
        raise DiffError(f"{script} is outside its project {project.root}")
    builder = _Builder(project, [*roots, project.root], regenerate)
    ordered = sorted(findings, key=lambda f: -f.est_saving_ms_per_step)
    for finding in ordered:
        if _selected(finding.code, select):
            builder.add(finding)
    return Plan(project=project, script=script_rel, candidates=tuple(builder.candidates),
                skipped=tuple(builder.skipped), originals=dict(builder.originals))
