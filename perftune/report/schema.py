"""The versioned schemas of the run documents, generated from their Structs.

The Structs in `perftune.documents` are the source of truth: the JSON Schema files in
perftune/report/schemas/ (summary, findings, steps, meta, tuning, gate, fix, diff) are generated
from them (`python -m perftune.report.schema` rewrites them) and documents are validated by
converting them into the Structs (`validate`, `validate_summary`, `validate_findings`).
Unknown fields are rejected so that a field added to a document without a schema change is
caught by the tests instead of surprising a CI consumer; adding a field means adding it here,
regenerating the files and, for an incompatible change, raising SCHEMA_VERSION.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import msgspec

from perftune.documents import DOCUMENTS as RUN_DOCUMENTS
from perftune.documents import (
    SCHEMA_VERSION,
    Breakdown,
    CollectiveTotals,
    Device,
    Finding,
    FindingsDocument,
    HostOp,
    Kernel,
    LargestMargin,
    Location,
    MetaDocument,
    MultiRank,
    RankStats,
    RankStep,
    RankSteps,
    Skew,
    StepAcrossRanks,
    StepBreakdown,
    StepsDocument,
    StepStats,
    StragglerRank,
    Suggestion,
    Summary,
    Syncs,
)

SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"

# ---------------------------------------------------------------------------- helpers
# The documents with a published JSON Schema file: every run document (perftune.documents).
DOCUMENTS: dict[str, type[msgspec.Struct]] = dict(RUN_DOCUMENTS)


class SchemaError(ValueError):
    """A document does not match its schema; the message names the offending path."""


def validate(kind: str, document: Any) -> Any:
    """Convert a decoded JSON document into its Struct; raise SchemaError when it does not fit."""
    try:
        return msgspec.convert(document, DOCUMENTS[kind], strict=True)
    except msgspec.ValidationError as exc:
        raise SchemaError(f"{kind}.json: {exc}") from None


def validate_summary(document: Any) -> Summary:
    result: Summary = validate("summary", document)
    return result


def validate_findings(document: Any) -> FindingsDocument:
    result: FindingsDocument = validate("findings", document)
    return result


def _clean_descriptions(node: Any) -> Any:
    """Docstring descriptions without their source indentation (Python 3.13 strips it when
    compiling, older versions keep it), so the generated files do not depend on the Python."""
    if isinstance(node, dict):
        return {k: inspect.cleandoc(v) if k == "description" and isinstance(v, str)
                else _clean_descriptions(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_clean_descriptions(v) for v in node]
    return node


def json_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = _clean_descriptions(msgspec.json.schema(DOCUMENTS[kind]))
    title = f"perftune {kind}.json"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://perftune.dev/schemas/{kind}.schema.json",
            "title": title, "x-schema-version": SCHEMA_VERSION, **schema}


def schema_text(kind: str) -> str:
    return json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n"


def write_schema_files(folder: Path = SCHEMAS_DIR) -> list[Path]:
    from perftune.fsutil import write_text_atomic

    return [write_text_atomic(folder / f"{kind}.schema.json", schema_text(kind))
            for kind in DOCUMENTS]


__all__ = [
    "DOCUMENTS",
    "SCHEMAS_DIR",
    "SCHEMA_VERSION",
    "Breakdown",
    "CollectiveTotals",
    "Device",
    "Finding",
    "FindingsDocument",
    "HostOp",
    "Kernel",
    "LargestMargin",
    "Location",
    "MetaDocument",
    "MultiRank",
    "RankStats",
    "RankStep",
    "RankSteps",
    "SchemaError",
    "Skew",
    "StepAcrossRanks",
    "StepBreakdown",
    "StepStats",
    "StepsDocument",
    "StragglerRank",
    "Suggestion",
    "Summary",
    "Syncs",
    "json_schema",
    "schema_text",
    "validate",
    "validate_findings",
    "validate_summary",
    "write_schema_files",
]


if __name__ == "__main__":
    for written_path in write_schema_files():
        print(written_path)
