"""Parsing, writing and applying unified diffs, on real files and against git's own applier."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fix_helpers import REPO, git, git_repo, line_of
from hypothesis import given, settings
from hypothesis import strategies as st

from perftune.engine.rewrite import rewrite_file, rewrite_source
from perftune.fix.apply import StaleDiffError, apply_diff, conflicts, locate, splice
from perftune.fix.diffs import (
    DiffError,
    parse_unified_diff,
    render_file_diff,
    render_patch,
    split_lines,
)

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
SAMPLES = REPO / "samples"

# ---------------------------------------------------------------------------- round trips
line_text = st.text(alphabet=st.sampled_from(list("ab =()\t#é")), max_size=8)


@st.composite
def edited_texts(draw: st.DrawFn) -> tuple[str, str]:
    lines = draw(st.lists(line_text, min_size=0, max_size=30))
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    old_final: bool = draw(st.booleans())
    old = ending.join(lines) + (ending if lines and old_final else "")
    new_lines = list(lines)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        at = draw(st.integers(0, len(new_lines)))
        if op == "insert":
            new_lines.insert(at, draw(line_text))
        elif new_lines and at < len(new_lines):
            if op == "delete":
                del new_lines[at]
            else:
                new_lines[at] = draw(line_text) + "!"
    new_final: bool = draw(st.booleans())
    new = ending.join(new_lines) + (ending if new_lines and new_final else "")
    return old, new


@settings(max_examples=150, deadline=None)
@given(edited_texts())
def test_rendered_diff_applies_back_to_the_new_text(texts: tuple[str, str]) -> None:
    old, new = texts
    diff = render_file_diff("pkg/mod.py", old, new)
    if old == new:
        assert diff == ""
        return
    (parsed,) = parse_unified_diff(diff)
    assert parsed.path == "pkg/mod.py"
    assert apply_diff(parsed, old) == new


def test_split_lines_only_breaks_at_newlines() -> None:
    assert split_lines("a\r\nb\x0cc\rd\ne") == ["a\r\n", "b\x0cc\rd\n", "e"]
    assert split_lines("") == []


# ---------------------------------------------------------------------------- real files
@pytest.mark.parametrize(("sample", "code", "marker"), [
    ("segmentation.py", "PFT202", "expect[PFT202]"),
    ("segmentation.py", "PFT203", "expect[PFT203]"),
    ("segmentation.py", "PFT212", "expect[PFT212]"),
    ("pageable_copy.py", "PFT209", "expect[PFT208] expect[PFT209]"),
    ("scalar_readback.py", "PFT206", "running += loss.item()"),
])
def test_engine_diffs_apply_to_copies_of_the_samples(tmp_path: Path, sample: str, code: str,
                                                      marker: str) -> None:
    path = tmp_path / sample
    shutil.copyfile(SAMPLES / sample, path)
    text = path.read_text(encoding="utf-8")
    line = line_of(text, marker)
    made = rewrite_file(code, path, line)
    assert made is not None, f"the engine made no diff for {code} at {sample}:{line}"
    (diff,) = parse_unified_diff(made[0])
    expected = rewrite_source(code, text, line)
    assert expected is not None
    assert apply_diff(diff, text) == expected.code


@needs_git
def test_git_apply_accepts_the_rendered_patch(tmp_path: Path) -> None:
    files = {"train.py": "import torch\nx = torch.ones(3)\ny = x.sum().item()\n",
             "lib/util.py": "def f(a):\n    return a\n\n\ndef g(b):\n    return b"}  # no newline
    root = git_repo(tmp_path / "repo", files)
    new = {"train.py": files["train.py"].replace(".item()", ""),
           "lib/util.py": files["lib/util.py"].replace("return b", "return b * 1")}
    patch = render_patch((rel, files[rel], new[rel]) for rel in sorted(files))
    assert "\\ No newline at end of file" in patch
    (tmp_path / "fix.patch").write_text(patch, encoding="utf-8")
    git(root, "apply", "--check", str(tmp_path / "fix.patch"))
    git(root, "apply", str(tmp_path / "fix.patch"))
    for rel, text in new.items():
        assert (root / rel).read_text(encoding="utf-8") == text
    # And our parser reads back what git itself writes.
    git_diff = git(root, "diff")
    applied = {d.path: d for d in parse_unified_diff(git_diff)}
    for rel in files:
        assert apply_diff(applied[rel], files[rel]) == new[rel]


@needs_git
def test_patch_program_accepts_the_rendered_patch(tmp_path: Path) -> None:
    if shutil.which("patch") is None:
        pytest.skip("patch is not installed")
    old = "a\nb\nc\nd\n"
    new = "a\nB\nc\nd\ne\n"
    (tmp_path / "m.py").write_text(old, encoding="utf-8")
    (tmp_path / "p.diff").write_text(render_file_diff("m.py", old, new), encoding="utf-8")
    subprocess.run(["patch", "-p1", "-s", "-i", "p.diff"], cwd=tmp_path, check=True)
    assert (tmp_path / "m.py").read_text(encoding="utf-8") == new


# ---------------------------------------------------------------------------- stale diffs
BODY = "".join(f"line {k}\n" for k in range(1, 21))


def _diff(old: str, new: str) -> str:
    return render_file_diff("m.py", old, new)


def test_a_changed_line_makes_the_diff_stale() -> None:
    (diff,) = parse_unified_diff(_diff(BODY, BODY.replace("line 10\n", "line ten\n")))
    edited = BODY.replace("line 10\n", "line 10  # edited\n")
    with pytest.raises(StaleDiffError, match="does not match"):
        apply_diff(diff, edited)
    context_edited = BODY.replace("line 9\n", "line nine\n")
    with pytest.raises(StaleDiffError):
        apply_diff(diff, context_edited)


def test_lines_added_above_shift_the_hunk_but_it_still_applies() -> None:
    (diff,) = parse_unified_diff(_diff(BODY, BODY.replace("line 10\n", "line ten\n")))
    shifted = "import os\nimport sys\n" + BODY
    assert apply_diff(diff, shifted) == shifted.replace("line 10\n", "line ten\n")


def test_a_hunk_whose_context_occurs_twice_elsewhere_is_refused() -> None:
    old = "a\nb\nc\n"
    (diff,) = parse_unified_diff(_diff(old, "a\nB\nc\n"))
    with pytest.raises(StaleDiffError):
        apply_diff(diff, "x\n" + old + old)  # shifted and ambiguous


# ---------------------------------------------------------------------------- combining
def test_changes_with_overlapping_context_combine() -> None:
    first = _diff(BODY, BODY.replace("line 10\n", "line ten\n"))
    second = _diff(BODY, BODY.replace("line 11\n", "line eleven\n"))
    (a,), (b,) = parse_unified_diff(first), parse_unified_diff(second)
    with pytest.raises(StaleDiffError):
        apply_diff(b, apply_diff(a, BODY))  # b's context holds a's old line 10
    ca, cb = locate(a, BODY), locate(b, BODY)
    assert not conflicts(ca, cb)
    combined = splice(BODY, [*ca, *cb])
    assert combined == BODY.replace("line 10\n", "line ten\n").replace("line 11\n", "line eleven\n")


def test_changes_to_the_same_line_conflict() -> None:
    (a,) = parse_unified_diff(_diff(BODY, BODY.replace("line 10\n", "line ten\n")))
    (b,) = parse_unified_diff(_diff(BODY, BODY.replace("line 10\n", "line TEN\n")))
    ca, cb = locate(a, BODY), locate(b, BODY)
    assert conflicts(ca, cb)
    with pytest.raises(DiffError):
        splice(BODY, [*ca, *cb])
    assert not conflicts(ca, ca)  # the same change twice is one change


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("text", [
    "",
    "just some text\n",
    "@@ -1 +1 @@\n-a\n+b\n",
    "--- a/m.py\n@@ -1 +1 @@\n",
    "--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,3 @@\n-a\n+b\n",
    "--- a/m.py\n+++ b/m.py\n@@ nonsense @@\n",
    "--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+x\n",
])
def test_unreadable_diffs_raise_diff_error(text: str) -> None:
    with pytest.raises(DiffError):
        parse_unified_diff(text)


def test_git_headers_and_stripped_blank_context_lines_are_read() -> None:
    old = "a\n\nb\n"
    text = ("diff --git a/m.py b/m.py\nindex 0000000..1111111 100644\n"
            "--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,3 @@\n a\n\n-b\n+B\n")
    (diff,) = parse_unified_diff(text)
    assert apply_diff(diff, old) == "a\n\nB\n"
