"""The libcst rewrites: each on real source, including the samples' planted lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from perftune.engine.registry import rule_classes
from perftune.engine.rewrite import rewrite_file, rewrite_source, suggestion, transformers
from perftune.engine.types import Applicability, Location

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _marked_line(path: Path, code: str) -> int:
    for k, text in enumerate(path.read_text().splitlines(), start=1):
        if f"expect[{code}]" in text:
            return k
    raise AssertionError(f"no {code} marker in {path}")


def _changed(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.splitlines(), after.splitlines()
    assert len(a) >= len(b)
    return [(x, y) for x, y in zip(a, b, strict=False) if x != y]


def test_each_rewrite_lives_in_its_rule_folder() -> None:
    # rules/pftNNN_slug/fix.py owns the rule's transformers; the engine looks them up by code
    with_fixes = {cls.code for cls in rule_classes() if transformers(cls.code)}
    assert with_fixes == {f"PFT{n}" for n in (101, 102, 103, 202, 203, 204, 206, 208, 209, 211, 212,
                                                 304, 508, 701, 702)}
    assert transformers("PFT901") == ()


@pytest.mark.parametrize("code", ["PFT208", "PFT209"])
def test_non_blocking_on_the_pageable_copy_sample(code: str) -> None:
    path = SAMPLES / "pageable_copy.py"
    line = _marked_line(path, code)
    source = path.read_text()
    result = rewrite_source(code, source, line)
    assert result is not None and result.applicability is Applicability.SAFE
    new_line = result.code.splitlines()[line - 1]
    assert new_line.split("#")[0].strip() == "inputs = inputs.to(device, non_blocking=True)"
    assert new_line.endswith("# perftune: expect[PFT208] expect[PFT209]")  # comment kept
    assert len(_changed(source, result.code)) == 1  # only the attributed line


def test_pageable_copy_also_pins_the_dataloader() -> None:
    source = textwrap.dedent("""\
        loader = DataLoader(ds, batch_size=8)
        for x in loader:
            x = x.cuda()
    """)
    result = rewrite_source("PFT208", source, 3)
    assert result is not None
    assert result.code.splitlines() == ["loader = DataLoader(ds, batch_size=8, pin_memory=True)",
                                        "for x in loader:", "    x = x.cuda(non_blocking=True)"]


def test_segmentation_nonzero_then_assign_becomes_masked_fill() -> None:
    path = SAMPLES / "segmentation.py"
    line = _marked_line(path, "PFT202")
    source = path.read_text()
    result = rewrite_source("PFT202", source, line)
    assert result is not None and result.applicability is Applicability.SAFE
    lines = result.code.splitlines()
    assert lines[line - 1].strip() == "target.masked_fill_(target == VOID, IGNORE)"
    assert len(lines) == len(source.splitlines()) - 1  # the two statements became one


def test_segmentation_masked_loss_uses_ignore_index() -> None:
    path = SAMPLES / "segmentation.py"
    line = _marked_line(path, "PFT212")
    result = rewrite_source("PFT212", path.read_text(), line)
    assert result is not None and result.applicability is Applicability.UNSAFE
    assert result.code.splitlines()[line - 1].split("#")[0].strip() == \
        "return F.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE)"


def test_masked_loss_with_a_criterion_object_edits_its_construction() -> None:
    source = textwrap.dedent("""\
        criterion = nn.CrossEntropyLoss()
        def loss_fn(logits, target):
            valid = target.ne(255)
            return criterion(logits[valid], target[valid])
    """)
    result = rewrite_source("PFT212", source, 4)
    assert result is not None
    assert result.code.splitlines()[0] == "criterion = nn.CrossEntropyLoss(ignore_index=255)"
    assert result.code.splitlines()[3].strip() == "return criterion(logits, target)"


def test_masked_loss_without_a_known_ignore_value_is_not_rewritten() -> None:
    source = "def f(logits, target, keep):\n    return F.cross_entropy(logits[keep], target[keep])\n"
    assert rewrite_source("PFT212", source, 2) is None


def test_scalar_readback_sample_accumulates_on_the_device() -> None:
    path = SAMPLES / "scalar_readback.py"
    source = path.read_text()
    line = next(k for k, t in enumerate(source.splitlines(), 1) if "running += loss.item()" in t)
    result = rewrite_source("PFT206", source, line)
    assert result is not None and result.applicability is Applicability.UNSAFE
    assert result.code.splitlines()[line - 1].split("#")[0].strip() == "running += loss.detach()"
    # the truth test on the next marked line has no mechanical rewrite
    assert rewrite_source("PFT206", source, line + 1) is None


@pytest.mark.parametrize(("source", "expected", "applicability"), [
    ("t[mask] = 0\n", "t.masked_fill_(mask, 0)", Applicability.SAFE),
    ("t[t == 6] = -100\n", "t.masked_fill_(t == 6, -100)", Applicability.SAFE),
    ("pred[bad] = other[bad]\n", "pred = torch.where(bad, other, pred)", Applicability.UNSAFE),
])
def test_mask_assignment(source: str, expected: str, applicability: Applicability) -> None:
    result = rewrite_source("PFT204", source, 1)
    assert result is not None and result.code.strip() == expected
    assert result.applicability is applicability


def test_mask_assignment_into_an_attribute_is_left_alone() -> None:
    assert rewrite_source("PFT204", "self.buf[mask] = values\n", 1) is None


def test_nonzero_index_still_used_later_is_not_rewritten() -> None:
    source = ("idx = torch.nonzero(m, as_tuple=True)\n"
              "t[idx] = 0\n"
              "print(idx)\n")
    assert rewrite_source("PFT202", source, 1) is None


@pytest.mark.parametrize("code", ["PFT101", "PFT102"])
def test_dataloader_workers_on_the_slow_dataloader_sample(code: str) -> None:
    path = SAMPLES / "slow_dataloader.py"
    line = _marked_line(path, "PFT102")
    result = rewrite_source(code, path.read_text(), line, {"num_workers": 4})
    assert result is not None and result.applicability is Applicability.UNSAFE
    new = result.code.splitlines()[line - 1]
    assert "num_workers=4, persistent_workers=True" in new and "num_workers=0" not in new


def test_pin_memory_keyword_is_added_once() -> None:
    source = "loader = DataLoader(ds, pin_memory=True)\n"
    assert rewrite_source("PFT103", source, 1) is None  # nothing to change
    result = rewrite_source("PFT103", "loader = DataLoader(ds, **kw)\n", 1)
    assert result is None  # **kw may already carry it


def test_explicit_synchronize_is_deleted() -> None:
    source = "def f():\n    torch.cuda.synchronize()\n"
    result = rewrite_source("PFT211", source, 2)
    assert result is not None and result.code == "def f():\n    pass\n"


def test_rewrite_file_falls_back_safely(tmp_path: Path) -> None:
    assert rewrite_file("PFT208", tmp_path / "missing.py", 3) is None
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n    x = x.to(dev)\n")
    assert rewrite_file("PFT208", broken, 2) is None
    moved = tmp_path / "moved.py"
    moved.write_text("x = 1\ny = 2\n")
    assert rewrite_file("PFT208", moved, 2) is None  # the line no longer holds a copy


def test_suggestion_is_a_diff_against_the_real_file(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_text("for x in loader:\n    x = x.to(device)\n")
    loc = Location(file="train.py", line=2, function="<module>", source="    x = x.to(device)")
    sug = suggestion("PFT209", "pass non_blocking", loc, path, after="x.to(d, non_blocking=True)")
    assert sug.applicability is Applicability.SAFE and sug.diff is not None
    assert "-    x = x.to(device)\n+    x = x.to(device, non_blocking=True)\n" in sug.diff
    assert path.read_text() == "for x in loader:\n    x = x.to(device)\n"  # never written
    fallback = suggestion("PFT203", "count with scatter_add_", loc, path, after="AFTER")
    assert fallback.diff is None and fallback.applicability is Applicability.DISPLAY_ONLY
    assert (fallback.before, fallback.after) == ("x = x.to(device)", "AFTER")
