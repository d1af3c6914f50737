"""summary.json and findings.json against their versioned schemas (msgspec Structs)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from perftune._resources import rules_dir
from perftune.documents import document_data
from perftune.pipeline import analyze_paths, findings_document, write_analysis
from perftune.report.schema import (
    SCHEMAS_DIR,
    SchemaError,
    json_schema,
    schema_text,
    validate_findings,
    validate_summary,
)
from perftune.trace.summary import SCHEMA_VERSION
from tests.conftest import shared_trace


def written_documents(trace: Path, folder: Path) -> tuple[dict, dict]:
    write_analysis(analyze_paths([trace]), folder)
    return (json.loads((folder / "summary.json").read_text()),
            json.loads((folder / "findings.json").read_text()))


@pytest.mark.parametrize("name", ["HolisticTraceAnalysis__nccl_data.json.gz",
                                  "TraceLens__h100__gaunernst_bert-small-uncased__1016001.json.gz",
                                  "HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz"])
def test_real_gpu_outputs_validate(name: str, tmp_path: Path) -> None:
    summary, findings = written_documents(shared_trace(name), tmp_path)
    parsed = validate_summary(summary)
    assert parsed.schema_version == SCHEMA_VERSION and parsed.runtime == "cuda"
    assert parsed.steps.count == len(parsed.per_step) > 0
    doc = validate_findings(findings)
    assert len(doc.findings) == len(findings["findings"])


# Generated GPU traces of the rule catalogue (rules/*/gpu.json.gz, written by
# perftune.engine.fixtures): the same checks on a clone without ../shared.
GENERATED_GPU = [rules_dir() / "pft206_scalar_readback" / "gpu.json.gz",
                 rules_dir() / "pft601_exposed_communication" / "gpu.json.gz"]


@pytest.mark.parametrize("trace", GENERATED_GPU, ids=lambda p: p.parent.name)
def test_generated_gpu_outputs_validate(trace: Path, tmp_path: Path) -> None:
    summary, findings = written_documents(trace, tmp_path)
    parsed = validate_summary(summary)
    assert parsed.schema_version == SCHEMA_VERSION and parsed.runtime == "cuda"
    assert parsed.steps.count == len(parsed.per_step) > 0
    doc = validate_findings(findings)
    assert len(doc.findings) == len(findings["findings"]) > 0


def test_cpu_trace_outputs_validate(cpu_traces: dict[int, Path], tmp_path: Path) -> None:
    summary, findings = written_documents(next(iter(cpu_traces.values())), tmp_path)
    assert validate_summary(summary).runtime == "cpu"
    validate_findings(findings)


def test_profiled_run_outputs_validate(profiled_run: Path) -> None:
    doc = validate_findings(json.loads((profiled_run / "findings.json").read_text()))
    validate_summary(json.loads((profiled_run / "summary.json").read_text()))
    assert doc.findings and all(f.code.startswith("PFT") for f in doc.findings)


def test_schema_files_are_generated_from_the_structs() -> None:
    for kind in ("summary", "findings", "steps", "meta", "tuning", "gate", "fix", "diff"):
        path = SCHEMAS_DIR / f"{kind}.schema.json"
        # Parsed documents, not text: another Python or msgspec may indent or order differently.
        assert json.loads(path.read_text(encoding="utf-8")) == json.loads(schema_text(kind)), (
            f"{path.name} is stale: run `python -m perftune.report.schema`")
        schema = json_schema(kind)
        assert schema["x-schema-version"] == SCHEMA_VERSION
    finding = json_schema("findings")["$defs"]["Finding"]
    assert finding["properties"]["code"]["pattern"] == r"^PFT\d{3}$"
    assert finding["additionalProperties"] is False


@pytest.fixture(scope="module")
def good_documents() -> dict:
    # A generated GPU trace: these tests break a valid document, any valid one will do.
    analysis = analyze_paths([GENERATED_GPU[0]])
    doc = json.loads(json.dumps(document_data(findings_document(analysis.summary, analysis.findings))))
    doc["findings"] = [{"code": "PFT206", "name": "scalar-readback", "message": "m",
                        "severity": "warning", "location": {"file": "a.py", "line": 3},
                        "suggestion": {"title": "t", "applicability": "safe"}}]
    return doc


@pytest.mark.parametrize("breakage, where", [
    (lambda d: d["summary"].pop("steps"), "steps"),
    (lambda d: d["summary"].__setitem__("surprise", 1), "surprise"),
    (lambda d: d["summary"]["steps"].__setitem__("median_ms", "fast"), "median_ms"),
    (lambda d: d["findings"][0].__setitem__("code", "X123"), "code"),
    (lambda d: d["findings"][0].__setitem__("severity", "fatal"), "severity"),
    (lambda d: d["findings"][0]["suggestion"].__setitem__("applicability", "maybe"), "applicability"),
    (lambda d: d.__setitem__("schema_version", 2), "schema_version"),
])
def test_broken_documents_are_rejected_with_the_path(good_documents: dict, breakage, where: str) -> None:
    validate_findings(good_documents)
    broken = copy.deepcopy(good_documents)
    breakage(broken)
    with pytest.raises(SchemaError, match=where):
        validate_findings(broken)


def test_diff_json_is_written_from_its_struct_and_reads_back(cpu_traces: dict[int, Path],
                                                             tmp_path: Path) -> None:
    from perftune.documents import DiffDocument, document_data
    from perftune.report.compare import compare_runs
    from perftune.rundir import RunDir

    small, big = (analyze_paths([p]) for p in cpu_traces.values())
    document = compare_runs(small, big, ("small", "big")).to_document()
    assert isinstance(document, DiffDocument)
    run = RunDir(tmp_path)
    text = run.write_document(document).read_text(encoding="utf-8")
    assert run.read_diff() == document
    assert list(json.loads(text)) == ["schema_version", "a", "b", "steps", "breakdown", "slower",
                                      "faster", "findings", "shapes_matched", "notes"]
    assert json.loads(text) == document_data(document)
