"""PFT203's rewrite: torch.unique filling a fixed-size histogram → sort + searchsorted counts,
the shapes it refuses, and the diff it puts on the rule's findings."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from perftune.engine.catalogue import run_fixture
from perftune.engine.registry import rule_by_code
from perftune.engine.rewrite import rewrite_file, rewrite_source, suggestion
from perftune.engine.types import Applicability, Location
from perftune.fix.apply import apply_diff
from perftune.fix.diffs import parse_unified_diff

REPO = Path(__file__).resolve().parents[2]
SEGMENTATION = REPO / "samples" / "segmentation.py"
RULE_FOLDER = REPO / "rules" / "pft203_unique_sync"
NOTE = "Count with sort + searchsorted over the histogram's fixed range instead of torch.unique"


def _line_of(text: str, needle: str) -> int:
    return next(k for k, line in enumerate(text.splitlines(), start=1) if needle in line)


def _module(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "not_main"}
    exec(compile(source, "<rewritten>", "exec"), namespace)
    return namespace


def _applied(diff: str, text: str) -> str:
    (parsed,) = parse_unified_diff(diff)
    return apply_diff(parsed, text)


def test_segmentation_class_weights_are_unchanged_by_the_rewrite() -> None:
    torch = pytest.importorskip("torch")
    source = SEGMENTATION.read_text(encoding="utf-8")
    rewrite = rewrite_source("PFT203", source, _line_of(source, "expect[PFT203]"))
    assert rewrite is not None
    assert "torch.unique(" not in rewrite.code
    assert "torch.searchsorted" in rewrite.code
    assert rewrite.applicability is Applicability.UNSAFE and rewrite.note == NOTE
    before, after = _module(source), _module(rewrite.code)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        # Not every label in every batch: absent classes must still count zero.
        high = int(torch.randint(1, 8, (1,), generator=generator))
        target = torch.randint(0, high, (2, 9, 9), generator=generator)
        torch.testing.assert_close(after["class_weights"](target), before["class_weights"](target),
                                   rtol=0, atol=0)


def test_the_segmentation_suggestion_is_a_diff_against_the_real_file(tmp_path: Path) -> None:
    path = tmp_path / "segmentation.py"
    shutil.copyfile(SEGMENTATION, path)
    source = path.read_text(encoding="utf-8")
    line = _line_of(source, "expect[PFT203]")
    loc = Location(file="samples/segmentation.py", line=line, function="class_weights",
                   source=source.splitlines()[line - 1])
    sug = suggestion("PFT203", "count with scatter_add_", loc, path, after="AFTER")
    assert sug.diff is not None and sug.applicability is Applicability.UNSAFE
    assert sug.title == NOTE  # the diff's own title, not the rule's generic advice
    assert "-    labels, counts = torch.unique(target, return_counts=True)" in sug.diff
    rewritten = _applied(sug.diff, source)
    assert "torch.unique(" not in rewritten and "torch.searchsorted(" in rewritten
    assert rewritten == rewrite_source("PFT203", source, line).code  # type: ignore[union-attr]
    assert path.read_text(encoding="utf-8") == source  # never written
    assert rewrite_file("PFT203", path, 1) is None  # not the unique line


@pytest.mark.parametrize("fixture", ["cpu.json.gz", "gpu.json.gz"])
def test_the_rule_fixture_finding_carries_the_diff(fixture: str) -> None:
    (finding,) = run_fixture(rule_by_code("PFT203"), RULE_FOLDER / fixture)
    sug = finding.suggestion
    assert sug.diff is not None, "the PFT203 finding on bad.py has no diff"
    assert sug.applicability is Applicability.UNSAFE and sug.title == NOTE
    bad = (RULE_FOLDER / "bad.py").read_text(encoding="utf-8")
    rewritten = _applied(sug.diff, bad)
    assert "torch.unique(" not in rewritten
    assert "torch.sort(target.flatten()).values" in rewritten
    assert "torch.searchsorted(" in rewritten
    assert "labels = torch.arange(NUM_CLASSES, dtype=target.dtype, device=target.device)" \
        in rewritten


def test_a_shape_it_does_not_handle_keeps_the_snippet(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_text("import torch\n\ndef present(target):\n"
                    "    labels = torch.unique(target)\n    return labels\n")
    loc = Location(file="train.py", line=4, function="present",
                   source="    labels = torch.unique(target)")
    sug = suggestion("PFT203", "count with scatter_add_", loc, path, after="AFTER")
    assert sug.diff is None and sug.applicability is Applicability.DISPLAY_ONLY
    assert (sug.title, sug.before, sug.after) == ("count with scatter_add_",
                                                  "labels = torch.unique(target)", "AFTER")


HISTOGRAM = """
import torch

def weights(x):
    values, counts = torch.unique(x, return_counts=True)
    hist = torch.zeros(5, dtype=torch.long)
    hist[values] = counts
    return hist
"""


def _line(source: str) -> int:
    return _line_of(source, "torch.unique(") if "torch.unique(" in source \
        else _line_of(source, ".unique(")


@pytest.mark.parametrize("source", [
    HISTOGRAM,
    HISTOGRAM.replace("torch.unique(x, return_counts=True)", "x.unique(return_counts=True)"),
    # the histogram may be made before the unique call
    HISTOGRAM.replace("    values, counts = torch.unique(x, return_counts=True)\n"
                      "    hist = torch.zeros(5, dtype=torch.long)\n",
                      "    hist = torch.zeros(5, dtype=torch.long)\n"
                      "    values, counts = torch.unique(x, return_counts=True)\n"),
])
def test_histogram_shapes_rewrite_to_the_same_counts(source: str) -> None:
    torch = pytest.importorskip("torch")
    rewrite = rewrite_source("PFT203", textwrap.dedent(source), _line(source))
    assert rewrite is not None
    before, after = _module(source), _module(rewrite.code)
    x = torch.tensor([0, 0, 3, 4, 4, 4])
    assert torch.equal(after["weights"](x), before["weights"](x))


@pytest.mark.parametrize(("old", "new"), [
    # counts used again later: the fixed-size counts would mean something else
    ("    return hist\n", "    return hist, counts\n"),
    # the histogram changed before the fill: absent labels would lose their value
    ("    hist[values] = counts\n", "    hist += 1\n    hist[values] = counts\n"),
    # dim= and return_inverse= return other things
    ("return_counts=True)", "return_counts=True, dim=0)"),
    ("return_counts=True)", "return_counts=True, return_inverse=True)"),
    # no histogram to bound the labels
    ("    hist[values] = counts\n", "    hist = counts\n"),
    # a 2-d histogram
    ("torch.zeros(5, dtype", "torch.zeros(5, 2, dtype"),
    # an expression with side effects would run three times
    ("torch.unique(x, ", "torch.unique(f(x), "),
])
def test_shapes_it_cannot_prove_are_left_alone(old: str, new: str) -> None:
    source = HISTOGRAM.replace(old, new)
    assert source != HISTOGRAM
    assert rewrite_source("PFT203", source, _line(source)) is None


def test_names_already_taken_are_not_reused() -> None:
    source = HISTOGRAM.replace("    hist = torch.zeros", "    x_sorted = 1\n    hist = torch.zeros")
    rewrite = rewrite_source("PFT203", source, _line(source))
    assert rewrite is not None
    assert "x_sorted_values = torch.sort" in rewrite.code
