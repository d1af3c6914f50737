"""The loss, speed and verdict checks, and the launch order."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from perftune.fix.measure import BASE, ArmLaunch, Measurements, palindrome_blocks
from perftune.fix.verify import (
    LossCheck,
    SpeedCheck,
    Tolerance,
    baseline_reproducible,
    compare_losses,
    compare_speed,
    judge,
)

TOL = Tolerance(rtol=1e-4, atol=1e-6, steps=5)
BASE_LOSSES = (2.0, 1.5, 1.2, 1.0, 0.9, 0.8)


def test_losses_within_tolerance_match() -> None:
    nudged = tuple(x * (1 + 5e-5) for x in BASE_LOSSES)
    check = compare_losses(BASE_LOSSES, nudged, TOL)
    assert check.status == "match"
    assert check.steps_compared == 5
    assert check.max_rel_diff == pytest.approx(5e-5, rel=1e-3)


def test_a_loss_beyond_tolerance_differs_and_names_the_step() -> None:
    changed = (*BASE_LOSSES[:3], BASE_LOSSES[3] * 1.01, *BASE_LOSSES[4:])
    check = compare_losses(BASE_LOSSES, changed, TOL)
    assert check.status == "differs"
    assert check.first_mismatch == 3
    assert "step 3" in check.reason
    # Only the first `steps` are compared: a later difference is not counted.
    late = (*BASE_LOSSES[:5], 99.0)
    assert compare_losses(BASE_LOSSES, late, TOL).status == "match"


def test_nan_matches_only_nan_and_missing_losses_are_unknown() -> None:
    nan_base = (math.nan, 1.0)
    assert compare_losses(nan_base, (math.nan, 1.0), TOL).status == "match"
    assert compare_losses(nan_base, (1.0, 1.0), TOL).status == "differs"
    unknown = compare_losses((None, None), (None, None), TOL)
    assert unknown.status == "unknown"
    assert "no losses" in unknown.reason


def test_unreproducible_baseline_is_reported() -> None:
    assert baseline_reproducible([BASE_LOSSES, BASE_LOSSES], TOL).status == "match"
    other = tuple(x + 0.1 for x in BASE_LOSSES)
    assert baseline_reproducible([BASE_LOSSES, BASE_LOSSES, other], TOL).status == "differs"
    assert baseline_reproducible([BASE_LOSSES], TOL).status == "unknown"


def test_speed_verdicts_follow_the_interval() -> None:
    base = [10.0, 10.4, 9.8, 10.1, 10.2, 9.9]
    faster = [b / 2 * (1 + 0.01 * k) for k, b in enumerate(base)]
    slower = [b * 1.5 for b in base]
    same = [b * (1.02 if k % 2 else 0.98) for k, b in enumerate(base)]
    assert compare_speed(base, faster).verdict == "faster"
    assert compare_speed(base, faster).speedup == pytest.approx(2.0, rel=0.05)
    assert compare_speed(base, slower).verdict == "slower"
    assert compare_speed(base, same).verdict == "no-change"
    one = compare_speed([10.0], [5.0])
    assert one.verdict == "unknown"
    assert one.ratio == pytest.approx(0.5)


def _speed(verdict: str, ratio: float = 0.5) -> SpeedCheck:
    return SpeedCheck(verdict, ratio, ratio * 0.9, ratio * 1.1, 0.95, 10.0, 10.0 * ratio, 4)


def _losses(status: str) -> LossCheck:
    return LossCheck(status, 5, 0.0, 0.0, None, (), (), "" if status == "match" else "because")


def test_judge_keeps_only_correct_and_not_slower_rewrites() -> None:
    assert judge(_losses("match"), _speed("faster"), "unsafe").included
    assert judge(_losses("match"), _speed("no-change", 1.0), "unsafe").included
    assert not judge(_losses("match"), _speed("no-change", 1.0), "unsafe",
                     require_faster=True).included
    changed = judge(_losses("differs"), _speed("faster"), "safe")
    assert (changed.status, changed.included) == ("changed-results", False)
    slower = judge(_losses("match"), _speed("slower", 1.4), "safe")
    assert (slower.status, slower.included) == ("slower", False)
    # Without losses only a rewrite that is safe by construction is kept.
    assert judge(_losses("unknown"), _speed("faster"), "safe").included
    assert not judge(_losses("unknown"), _speed("faster"), "unsafe").included
    failed = judge(_losses("match"), _speed("faster"), "safe", failed="crashed")
    assert (failed.status, failed.included) == ("failed", False)


def test_palindromic_blocks_give_every_version_its_launches() -> None:
    keys = ["base", "r1", "r2", "all"]
    blocks = palindrome_blocks(keys, 5, random.Random(3))
    assert len(blocks) == 3
    for block in blocks[:2]:
        assert block == block[::-1]
    flat = [k for block in blocks for k in block]
    assert all(flat.count(k) == 5 for k in keys)


def _launch(arm: str, block: int, ms: float | None, status: str = "ok") -> ArmLaunch:
    return ArmLaunch(arm, 0, block, status, ms, None, "rss", (), run_dir=Path("."))


def test_pairs_come_from_blocks_where_both_ran() -> None:
    found = Measurements([_launch(BASE, 0, 10), _launch("r1", 0, 5), _launch("r1", 0, 6),
                          _launch(BASE, 0, 11), _launch(BASE, 1, 12),
                          _launch("r1", 1, None, "crashed")])
    assert found.paired_medians("r1") == ([10, 11], [5, 6])
    assert [x.median_ms for x in found.of(BASE)] == [10, 11, 12]


def test_a_rewrite_measured_slower_is_dropped_even_within_noise() -> None:
    """pin_memory=True on a CPU-only run measured 0.89x (ratio 1.12) with an interval that
    held 1: it was kept before; a rewrite must be measured not slower."""
    slower = judge(_losses("match"), _speed("no-change", 1.12), "safe")
    assert (slower.status, slower.included) == ("slower", False)
    assert "measured slower" in slower.reason
    assert judge(_losses("match"), _speed("no-change", 1.01), "safe").included


def test_a_rewrite_that_makes_the_library_warn_every_run_is_dropped() -> None:
    from perftune.fix.measure import new_warnings, warning_lines

    log = ("/x/torch/utils/data/dataloader.py:683: UserWarning: 'pin_memory' argument is set as "
           "true but no accelerator is found, then device pinned memory won't be used.\n"
           "  warnings.warn(warn_msg)\nstep 1\n")
    found = warning_lines(log)
    assert found == ("UserWarning: 'pin_memory' argument is set as true but no accelerator is "
                     "found, then device pinned memory won't be used.",)
    base = [_launch(BASE, 0, 10)]
    arm = [ArmLaunch(**{**_launch("r1", 0, 9).__dict__, "warnings": found}) for _ in range(2)]
    assert new_warnings(base, arm) == found
    # A warning the original prints too is the script's, not the rewrite's.
    warned_base = [ArmLaunch(**{**_launch(BASE, 0, 10).__dict__, "warnings": found})]
    assert new_warnings(warned_base, arm) == ()
    verdict = judge(_losses("match"), _speed("faster"), "safe", warnings=found)
    assert (verdict.status, verdict.included) == ("warns", False)
    assert "pin_memory" in verdict.reason


def test_the_terminal_says_why_a_rewrite_is_not_in_the_patch() -> None:
    from types import SimpleNamespace

    from perftune.fix.outputs import dropped_because

    kept = SimpleNamespace(id="R1", status="verified", in_patch=True, conflicts_with=["R2"])
    clashing = SimpleNamespace(id="R2", status="verified", in_patch=False, conflicts_with=["R1"])
    warns = SimpleNamespace(id="R3", status="warns", in_patch=False, conflicts_with=[])
    doc = SimpleNamespace(rewrites=[kept, clashing, warns])
    assert dropped_because(clashing, doc).startswith("it edits the same code as R1")
    assert "warning" in dropped_because(warns, doc)
