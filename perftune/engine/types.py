"""Finding, Location and Suggestion: what a rule reports (DESIGN.md, Finding contract)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from perftune import documents


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls(text.lower())
        except ValueError:
            raise ValueError(f"unknown severity {text!r} (use info, warning or error)") from None


class Applicability(str, Enum):
    SAFE = "safe"            # semantics-preserving, can be applied mechanically
    UNSAFE = "unsafe"        # mechanical, but may change results; review it
    DISPLAY_ONLY = "display-only"  # advice shown to a person, not applied


@dataclass(frozen=True)
class Location:
    file: str | None = None
    line: int | None = None
    function: str | None = None
    source: str | None = None  # the text of the line, read from the file when it exists

    def __str__(self) -> str:
        if self.file is None:
            # no python stack: the record_function region it ran in, when known
            return self.function or "<trace>"
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass(frozen=True)
class Suggestion:
    title: str
    applicability: Applicability = Applicability.DISPLAY_ONLY
    diff: str | None = None          # unified diff against the user's file
    before: str | None = None        # snippet form when no diff can be made
    after: str | None = None
    knobs: dict[str, list[Any]] = field(default_factory=dict)  # tuner search space


@dataclass(frozen=True)
class Finding:
    code: str
    name: str
    message: str
    severity: Severity
    location: Location
    suggestion: Suggestion
    evidence: dict[str, Any] = field(default_factory=dict)
    est_saving_ms_per_step: float = 0.0
    count: int = 1                   # occurrences merged into this finding
    op_chain: tuple[str, ...] = ()
    latent: bool = False             # a hazard on a CPU-only trace, not a measured stall
    rank: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = self.severity.value
        d["suggestion"]["applicability"] = self.suggestion.applicability.value
        d["op_chain"] = list(self.op_chain)
        return d

    def document(self) -> documents.Finding:
        """The finding as findings.json holds it."""
        loc, sug = self.location, self.suggestion
        return documents.Finding(
            code=self.code, name=self.name, message=self.message,
            severity=self.severity.value,  # type: ignore[arg-type]
            location=documents.Location(file=loc.file, line=loc.line, function=loc.function,
                                        source=loc.source),
            suggestion=documents.Suggestion(
                title=sug.title, applicability=sug.applicability.value,  # type: ignore[arg-type]
                diff=sug.diff, before=sug.before, after=sug.after,
                knobs={k: list(v) for k, v in sug.knobs.items()}),
            evidence=dict(self.evidence), est_saving_ms_per_step=self.est_saving_ms_per_step,
            count=self.count, op_chain=list(self.op_chain), latent=self.latent, rank=self.rank)

    @staticmethod
    def from_document(doc: documents.Finding) -> Finding:
        """A finding read back from findings.json."""
        loc, sug = doc.location, doc.suggestion
        return Finding(
            code=doc.code, name=doc.name, message=doc.message, severity=Severity(doc.severity),
            location=Location(file=loc.file, line=loc.line, function=loc.function,
                              source=loc.source),
            suggestion=Suggestion(title=sug.title, applicability=Applicability(sug.applicability),
                                  diff=sug.diff, before=sug.before, after=sug.after,
                                  knobs=dict(sug.knobs)),
            evidence=dict(doc.evidence), est_saving_ms_per_step=float(doc.est_saving_ms_per_step),
            count=doc.count, op_chain=tuple(doc.op_chain), latent=doc.latent, rank=doc.rank)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Finding:
        sug = dict(d.get("suggestion") or {})
        sug["applicability"] = Applicability(sug.get("applicability", "display-only"))
        return Finding(
            code=d["code"], name=d["name"], message=d["message"],
            severity=Severity(d["severity"]), location=Location(**(d.get("location") or {})),
            suggestion=Suggestion(**sug), evidence=dict(d.get("evidence") or {}),
            est_saving_ms_per_step=float(d.get("est_saving_ms_per_step") or 0.0),
            count=int(d.get("count", 1)), op_chain=tuple(d.get("op_chain") or ()),
            latent=bool(d.get("latent", False)), rank=d.get("rank"),
        )
