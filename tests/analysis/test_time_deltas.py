"""The one profile comparator (perftune.analysis.compare) that diff and the gate's explanation share."""

from __future__ import annotations

from perftune.analysis.compare import slower_and_faster, time_deltas


def test_changes_below_the_floor_or_the_relative_noise_are_left_out() -> None:
    a = {"mm": 10.0, "add": 1.0, "copy": 2.0, "gone": 0.5}
    b = {"mm": 10.3, "add": 1.2, "copy": 2.001, "new": 0.4}
    changed = time_deltas(a, b, floor_ms=0.1, min_relative=0.05)
    # mm: +0.3 ms clears the floor but is 3 % of A's time; copy is under the floor.
    assert [(d.key, d.in_a, d.in_b) for d in changed] == [
        ("add", True, True), ("gone", True, False), ("new", False, True)]
    assert [d.key for d in time_deltas(a, b, floor_ms=0.1)] == ["mm", "add", "gone", "new"]


def test_largest_changes_first_ties_in_the_given_order() -> None:
    a = {"x": 1.0, "y": 1.0, "z": 3.0, "w": 1.0}
    b = {"x": 2.0, "y": 2.0, "z": 1.0, "w": 4.0}
    slower, faster = slower_and_faster(time_deltas(a, b, 0.5, keys=["y", "x", "z", "w"]), top=2)
    assert [d.key for d in slower] == ["w", "y"]  # +3, then the first of the two +1s
    assert [(d.key, d.delta_ms) for d in faster] == [("z", -2.0)]
