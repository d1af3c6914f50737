"""The PFT203 rewrite the engine lacks: unique + histogram → sort + count, and when it refuses."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from fix_helpers import REPO, line_of

from perftune.fix.apply import apply_diff
from perftune.fix.diffs import parse_unified_diff
from perftune.fix.extra_rewrites import extra_rewrite, unique_histogram

SEGMENTATION = REPO / "samples" / "segmentation.py"


def _module(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "not_main"}
    exec(compile(source, "<rewritten>", "exec"), namespace)
    return namespace


def test_segmentation_class_weights_are_unchanged_by_the_rewrite() -> None:
    source = SEGMENTATION.read_text(encoding="utf-8")
    rewrite = unique_histogram(source, line_of(source, "expect[PFT203]"), {})
    assert rewrite is not None
    assert "torch.unique(" not in rewrite.code
    assert "torch.searchsorted" in rewrite.code
    assert rewrite.applicability.value == "unsafe"
    before, after = _module(source), _module(rewrite.code)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        # Not every label in every batch: absent classes must still count zero.
        high = int(torch.randint(1, 8, (1,), generator=generator))
        target = torch.randint(0, high, (2, 9, 9), generator=generator)
        torch.testing.assert_close(after["class_weights"](target), before["class_weights"](target),
                                   rtol=0, atol=0)


def test_the_diff_is_against_the_real_file(tmp_path: Path) -> None:
    path = tmp_path / "segmentation.py"
    path.write_text(SEGMENTATION.read_text(encoding="utf-8"), encoding="utf-8")
    source = path.read_text(encoding="utf-8")
    made = extra_rewrite("PFT203", path, line_of(source, "expect[PFT203]"), "samples/seg.py")
    assert made is not None
    (diff,) = parse_unified_diff(made[0])
    assert diff.path == "samples/seg.py"
    assert "searchsorted" in apply_diff(diff, source)
    assert extra_rewrite("PFT999", path, 1, "x.py") is None
    assert extra_rewrite("PFT203", path, 1, "x.py") is None  # not the unique line


HISTOGRAM = """
import torch

def weights(x):
    values, counts = torch.unique(x, return_counts=True)
    hist = torch.zeros(5, dtype=torch.long)
    hist[values] = counts
    return hist
"""


def _line(source: str) -> int:
    return line_of(source, "torch.unique(") if "torch.unique(" in source else line_of(source,
                                                                                   ".unique(")


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
    rewrite = unique_histogram(textwrap.dedent(source), _line(source), {})
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
    assert unique_histogram(source, _line(source), {}) is None


def test_names_already_taken_are_not_reused() -> None:
    source = HISTOGRAM.replace("    hist = torch.zeros", "    x_sorted = 1\n    hist = torch.zeros")
    rewrite = unique_histogram(source, _line(source), {})
    assert rewrite is not None
    assert "x_sorted_values = torch.sort" in rewrite.code
