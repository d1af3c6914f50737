"""PFT602's line: where the slow rank spends its extra time, from each rank's time per user call
site (RankResult.user_calls). Pure function on hand-made rows; the real 2-rank gloo run is in
tests/multirank/test_profile_ranks.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from perftune.trace.multirank import UserCall

RULE = Path(__file__).resolve().parents[2] / "rules" / "pft602_rank_straggler" / "rule.py"


def _hot_line():
    spec = importlib.util.spec_from_file_location("pft602_rule_for_test", RULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.hot_line


def _calls(step_ms: dict[tuple[str, int, str, str, int], float], steps: int = 3) -> list[UserCall]:
    return [UserCall(step=k, file=f, line=line, function=fn, callee=callee, depth=depth, ms=ms)
            for (f, line, fn, callee, depth), ms in step_ms.items() for k in range(steps)]


FORWARD = ("train.py", 40, "main", "DistributedDataParallel_0", 1)
EXTRA_CALL = ("train.py", 44, "main", "log_images", 1)
EXTRA_SLEEP = ("train.py", 12, "log_images", "sleep", 2)


def test_the_outermost_call_holding_the_extra_time_is_named() -> None:
    hot_line = _hot_line()
    slow = _calls({FORWARD: 10.0, EXTRA_CALL: 20.0, EXTRA_SLEEP: 19.5})
    fast = _calls({FORWARD: 9.5})
    found = hot_line(1, {0: fast, 1: slow}, margin_ms=21.0)
    assert found is not None
    (file, line, function, callee), extra, mine, theirs = found
    assert (file, line, function, callee) == ("train.py", 44, "main", "log_images")
    assert (extra, mine, theirs) == (20.0, 20.0, 0.0)


def test_no_line_when_no_call_explains_half_the_margin() -> None:
    hot_line = _hot_line()
    slow = _calls({FORWARD: 14.0})
    fast = _calls({FORWARD: 10.0})
    assert hot_line(1, {0: fast, 1: slow}, margin_ms=20.0) is None  # 4 ms of 20: elsewhere
    assert hot_line(1, {0: fast, 1: []}, margin_ms=20.0) is None
