"""The fix section of report.html in a real headless Chromium: a verdict, tiles, one row per
rewrite with why it is (not) in the patch, nothing that runs off the page or wraps letter by
letter, and no "Applied fixes" title when nothing was applied."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest
from report_helpers import visit

from perftune.documents import FixBaseline, FixDocument, FixRewrite, FixSkipped
from perftune.report import render_fix_run
from perftune.rundir import RunDir

pytestmark = pytest.mark.browser

LONG_WHERE = "src/very/long/package/name/training/loops/distributed_data_parallel_train.py:118"
DIFF = ("--- a/train.py\n+++ b/train.py\n@@ -20,3 +20,3 @@\n"
        "-    batch = inputs.to(\"cpu\")\n+    batch = inputs.to(\"cpu\", non_blocking=True)\n")


def fix_document(applied: bool, in_patch: bool) -> FixDocument:
    kept = FixRewrite(id="R1", rule="PFT209", where="train.py:21", status="verified",
                      in_patch=in_patch, speedup=1.31, time_ratio=0.763, ratio_low=0.71,
                      ratio_high=0.82, losses="match",
                      reason="1.31× faster (time ratio 0.763, 95% interval 0.71–0.82)",
                      title="Copy to the device without blocking", applicability="safe",
                      conflicts_with=["R2"], diff=DIFF)
    clash = FixRewrite(id="R2", rule="PFT202", where=LONG_WHERE, status="verified",
                       in_patch=False, speedup=1.05, losses="match",
                       reason="losses match; no measurable speed change on this machine "
                              "(time ratio 0.952, 95% interval 0.88–1.03)",
                       title="Pin the DataLoader's memory", conflicts_with=["R1"],
                       dropped_reason="it edits the same code as R1, which is in the patch "
                                      "(measured faster)")
    warns = FixRewrite(id="R3", rule="PFT206", where="train.py:40", status="warns",
                       in_patch=False, losses="match",
                       reason="makes the library warn on every run, which the original does "
                              "not: UserWarning: 'pin_memory' argument is set as true but no "
                              "accelerator is found, then device pinned memory won't be used.",
                       title="pin_memory=True",
                       dropped_reason="it makes the library print a warning the original does not")
    return FixDocument(headline="1 of 3 rewrite(s) verified and in fix.patch, 1.31× faster",
                       script="train.py", patch="fix.patch" if in_patch else None,
                       patch_rewrites=["R1"] if in_patch else [], applied=applied,
                       applied_files=["/repo/train.py"] if applied else [],
                       baseline=FixBaseline(median_ms=42.5), rewrites=[kept, clash, warns],
                       skipped=[FixSkipped(rule="PFT101", where="train.py:12",
                                           reason="no automatic rewrite for this finding")])


@pytest.fixture(scope="module")
def fix_report(profiled_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("fix-report") / "run"
    shutil.copytree(profiled_run, run_dir)
    RunDir(run_dir).write_document(fix_document(applied=False, in_patch=True))
    render_fix_run(run_dir, None, None)
    return run_dir / "report.html"


def test_the_fix_section_is_designed_like_the_rest_of_the_report(browser: Any, fix_report: Path) -> None:
    seen = visit(browser, fix_report, wait_ms=800)
    assert seen.console_errors == [] and seen.page_errors == []
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(fix_report.resolve().as_uri(), wait_until="load")
    page.wait_for_timeout(500)
    title = page.inner_text("#fix h2")
    assert title == "Fixes to apply"  # not "Applied fixes": nothing was applied
    assert "1 of 3 rewrite(s) verified" in page.inner_text("#fix .verdict")
    rows = page.eval_on_selector_all("#fix-rewrites tbody tr", "els => els.map(e => e.innerText)")
    assert len(rows) == 3
    assert "✓ in patch" in rows[0]
    assert "not in the patch: it edits the same code as R1" in rows[1]
    # The file name and line are shown whole, on one line; the folder below it (and the whole
    # path on hover), not a path cut into pieces mid-name.
    where = page.eval_on_selector("#fix-rewrites tbody tr:nth-child(2) td:nth-child(2) code",
                                  "e => [e.innerText, e.title, e.getClientRects().length]")
    assert where == ["distributed_data_parallel_train.py:118", LONG_WHERE, 1], where
    assert "✗ warns" in rows[2]
    # The raw fix.json is folded away, not the section itself.
    assert page.eval_on_selector("#fix > details:last-of-type", "e => e.open") is False
    # Nothing runs off the page, and no cell is squeezed to a letter per line.
    section = page.eval_on_selector("#fix", "e => [e.scrollWidth, e.clientWidth]")
    assert section[0] <= section[1] + 1, section
    widths = page.eval_on_selector_all("#fix-rewrites td", "els => els.map(e => e.getBoundingClientRect().width)")
    assert min(widths) > 60, widths
    # No cell's content runs into the next column (a long file name overlapped the verdict).
    spill = page.eval_on_selector_all(
        "#fix-rewrites td", "els => els.filter(td => Array.from(td.querySelectorAll('*')).some("
        "c => c.getBoundingClientRect().right > td.getBoundingClientRect().right + 1)).length")
    assert spill == 0, spill
    shots = os.environ.get("PERFTUNE_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.locator("#fix").screenshot(path=str(Path(shots) / "fix-section.png"))
    page.close()


def test_nothing_applied_and_nothing_kept_says_so(profiled_run: Path, tmp_path: Path, browser: Any) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(profiled_run, run_dir)
    doc = fix_document(applied=False, in_patch=False)
    doc = msgspec.structs.replace(doc, headline="0 of 3 rewrite(s) verified")
    RunDir(run_dir).write_document(doc)
    render_fix_run(run_dir, None, None)
    page = browser.new_page()
    page.goto((run_dir / "report.html").resolve().as_uri(), wait_until="load")
    assert page.inner_text("#fix h2") == "Fixes tried"
    assert "no patch" in page.inner_text("#fix .tiles")
    assert "notes []" not in page.inner_text("#fix")
    page.close()
