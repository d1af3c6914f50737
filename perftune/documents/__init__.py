"""The run directory's documents as typed msgspec Structs: the one definition of each file.

- `analysis`: summary.json and findings.json, strict (unknown fields are rejected: they are a
  published schema, docs/schemas.md, and CI systems consume them);
- `capture`: steps.json and meta.json, written by the capture stage, which adds fields as it
  grows, so their Structs check the fields perftune reads and keep the rest;
- `stages`: tuning.json, gate.json, fix.json and diff.json, each written by the stage that
  owns it (tune, gate, fix, diff).

Readers decode through these Structs (`perftune.rundir.RunDir.read_*`), so a corrupt or foreign
document is one clear error instead of an AttributeError deep in a renderer; writers encode
them (`RunDir.write_document`, `document_data`).

This package is core: it imports nothing from perftune but itself.
"""

from __future__ import annotations

from typing import Any

import msgspec

from perftune.documents.analysis import (
    SCHEMA_VERSION,
    Breakdown,
    CollectiveTotals,
    CommSource,
    CompilationSection,
    CompileBreak,
    CompiledGraph,
    CompileRecompile,
    Device,
    Efficiency,
    Finding,
    FindingsDocument,
    HostOp,
    Kernel,
    LargestMargin,
    Location,
    MaybeMs,
    Milliseconds,
    Modules,
    ModuleTime,
    MultiRank,
    OpEfficiency,
    PhaseDevice,
    Phases,
    PhaseTime,
    RankStats,
    RankStep,
    RankSteps,
    Roofs,
    RuleCode,
    Skew,
    StepAcrossRanks,
    StepBreakdown,
    StepPhaseTimes,
    StepStats,
    StragglerRank,
    Suggestion,
    Summary,
    Syncs,
)
from perftune.documents.capture import (
    CodeSite,
    CompilationDocument,
    CompileEvent,
    GraphBreak,
    MetaDocument,
    ProvenanceDocument,
    ProvenanceSite,
    StepCompile,
    StepEntry,
    StepsDocument,
)
from perftune.documents.stages import (
    AccuracyGuard,
    CodeChange,
    DiffCategory,
    DiffDocument,
    DiffFinding,
    DiffFindings,
    DiffOp,
    DiffSide,
    DiffSteps,
    FindingRef,
    FixBaseline,
    FixDocument,
    FixLaunch,
    FixLosses,
    FixMeasured,
    FixMemory,
    FixRewrite,
    FixSettings,
    FixSkipped,
    FixSpeed,
    FixTogether,
    GateDocument,
    GateExplanation,
    GateLaunch,
    GateLoad,
    GateLook,
    GateSide,
    LaunchLoadDoc,
    MaybeFloat,
    ProfiledSide,
    Ratio,
    StructuralChange,
    TimeShareChange,
    TuneApply,
    TuneBest,
    TuneConfig,
    TuneConstraints,
    TuneDefault,
    TuneKnob,
    TuneMeasurement,
    TuneObjective,
    TuneRunnerUp,
    TuneScript,
    TuneSpace,
    TuneStats,
    TuneStudy,
    TuneTrial,
    TuneUnmeasured,
    TuningDocument,
    Values,
)


def _builtin(value: Any) -> Any:
    """What the JSON writer makes of a value msgspec does not know: a float or int subclass
    (numpy's float64) as the number, a numpy scalar as its item, anything else (a Path) as
    its text, as `json.dumps(default=str)` does."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    return str(value)


def document_data(document: msgspec.Struct) -> dict[str, Any]:
    """A Struct as the JSON object it is written as (absent fields left out, order kept)."""
    data: dict[str, Any] = msgspec.to_builtins(document, enc_hook=_builtin)
    return data


DOCUMENTS: dict[str, type[msgspec.Struct]] = {
    "summary": Summary, "findings": FindingsDocument, "steps": StepsDocument, "meta": MetaDocument,
    "tuning": TuningDocument, "gate": GateDocument, "fix": FixDocument, "diff": DiffDocument,
    "provenance": ProvenanceDocument, "compilation": CompilationDocument,
}


__all__ = [
    "DOCUMENTS",
    "SCHEMA_VERSION",
    "AccuracyGuard",
    "Breakdown",
    "CodeChange",
    "CodeSite",
    "CollectiveTotals",
    "CommSource",
    "CompilationDocument",
    "CompilationSection",
    "CompileBreak",
    "CompileEvent",
    "CompileRecompile",
    "CompiledGraph",
    "Device",
    "DiffCategory",
    "DiffDocument",
    "DiffFinding",
    "DiffFindings",
    "DiffOp",
    "DiffSide",
    "DiffSteps",
    "Efficiency",
    "Finding",
    "FindingRef",
    "FindingsDocument",
    "FixBaseline",
    "FixDocument",
    "FixLaunch",
    "FixLosses",
    "FixMeasured",
    "FixMemory",
    "FixRewrite",
    "FixSettings",
    "FixSkipped",
    "FixSpeed",
    "FixTogether",
    "GateDocument",
    "GateExplanation",
    "GateLaunch",
    "GateLoad",
    "GateLook",
    "GateSide",
    "GraphBreak",
    "HostOp",
    "Kernel",
    "LargestMargin",
    "LaunchLoadDoc",
    "Location",
    "MaybeFloat",
    "MaybeMs",
    "MetaDocument",
    "Milliseconds",
    "ModuleTime",
    "Modules",
    "MultiRank",
    "OpEfficiency",
    "PhaseDevice",
    "PhaseTime",
    "Phases",
    "ProfiledSide",
    "ProvenanceDocument",
    "ProvenanceSite",
    "RankStats",
    "RankStep",
    "RankSteps",
    "Ratio",
    "Roofs",
    "RuleCode",
    "Skew",
    "StepAcrossRanks",
    "StepBreakdown",
    "StepCompile",
    "StepEntry",
    "StepPhaseTimes",
    "StepStats",
    "StepsDocument",
    "StragglerRank",
    "StructuralChange",
    "Suggestion",
    "Summary",
    "Syncs",
    "TimeShareChange",
    "TuneApply",
    "TuneBest",
    "TuneConfig",
    "TuneConstraints",
    "TuneDefault",
    "TuneKnob",
    "TuneMeasurement",
    "TuneObjective",
    "TuneRunnerUp",
    "TuneScript",
    "TuneSpace",
    "TuneStats",
    "TuneStudy",
    "TuneTrial",
    "TuneUnmeasured",
    "TuningDocument",
    "Values",
    "document_data",
]
