"""A zygote forked from the shared one (PERFTUNE_ZYGOTE) serves its trials like a fresh one.

`perftune tune`, `gate` and `fix` start their own zygote (ZygoteLauncher); where PERFTUNE_ZYGOTE
names a zygote that can take it, it is forked from that one instead of importing torch again,
and started fresh where that one refuses. Real processes: the suite's shared zygote, a real
capture through the launcher's zygote, /proc's CPU figures the gate reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
from capture_helpers import write

import perftune
from perftune.capture.parent.launcher import ZygoteLauncher
from perftune.capture.parent.runner import CaptureOptions, CaptureResult, ScriptTarget, run_capture
from perftune.gate.load import process_cpu_s

pytestmark = pytest.mark.slow

# Writes its parent's pid into argv[1] and burns ~0.3 CPU-s (no optimizer: no step is found,
# the capture ends "window-not-reached" with exit code 0).
SCRIPT = """\
import os, sys, time
import torch
with open(sys.argv[1], "w") as fh:
    fh.write(str(os.getppid()))
start = time.process_time()
while time.process_time() - start < 0.3:
    pass
"""


def capture(folder: Path, launcher: ZygoteLauncher, name: str) -> tuple[CaptureResult, int]:
    script = write(folder / "burn.py", SCRIPT)
    out = folder / f"{name}.ppid"
    target = ScriptTarget(path=script, module=None, args=(str(out),), cwd=folder)
    options = CaptureOptions(skip=1, active=3, profile=False, quiet=True, launcher=launcher.command())
    result = run_capture(target, folder / name, options)
    return result, int(out.read_text())


def gone(pid: int, limit: float = 10.0) -> bool:
    try:
        psutil.Process(pid).wait(timeout=limit)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return True


def test_a_launchers_zygote_is_forked_from_the_shared_one(tmp_path: Path, shared_zygote: str | None) -> None:
    if shared_zygote is None:
        pytest.skip("the suite's shared zygote is off (PERFTUNE_TEST_FRESH, or it did not start)")
    assert os.environ.get("PERFTUNE_ZYGOTE") == shared_zygote
    with ZygoteLauncher(tmp_path / "run", tmp_path) as launcher:
        assert launcher.proc is not None and launcher.pid is not None
        assert launcher.forked
        # not this process's child: the client relays its end
        assert launcher.pid != launcher.proc.pid
        zygote = psutil.Process(launcher.pid)
        assert shared_zygote in zygote.parent().cmdline()
        assert zygote.cmdline() == zygote.parent().cmdline()  # forked, not started anew

        before = process_cpu_s([launcher.pid])
        result, parent = capture(tmp_path, launcher, "trial")
        after = process_cpu_s([launcher.pid])
        assert (result.status, result.exit_code) == ("window-not-reached", 0)
        assert result.meta["launch"]["launcher"] == "zygote"
        assert parent == launcher.pid  # the trial was forked from the launcher's zygote
        # the gate counts a forked launch's CPU through its zygote's figures (cutime)
        assert after - before >= 0.25
    assert gone(zygote.pid), "the forked zygote outlived its launcher"
    assert not os.path.exists(launcher.socket_path)


def test_a_refused_zygote_starts_fresh(tmp_path: Path, shared_zygote: str | None,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if shared_zygote is None:
        pytest.skip("the suite's shared zygote is off (PERFTUNE_TEST_FRESH, or it did not start)")
    # another environment than the shared zygote's: it refuses, the client starts the zygote
    monkeypatch.setenv("NESTED_ZYGOTE_TEST", "1")
    with ZygoteLauncher(tmp_path / "run", tmp_path) as launcher:
        assert launcher.proc is not None
        assert not launcher.forked and launcher.pid == launcher.proc.pid
        assert "perftune.capture.child.zygote" in psutil.Process(launcher.pid).cmdline()
        result, parent = capture(tmp_path, launcher, "trial")
        assert result.meta["launch"]["launcher"] == "zygote"
        assert parent == launcher.pid
    assert gone(parent)


# Writes sys.path and where `sidemod` came from into argv[1].
PATH_SCRIPT = """\
import json, sys
import torch
import sidemod
with open(sys.argv[1], "w") as fh:
    json.dump({"path": sys.path, "sidemod": sidemod.__file__}, fh)
"""


def observe_path(folder: Path, name: str, launcher: ZygoteLauncher | None) -> tuple[CaptureResult, dict]:
    import json

    script = write(folder / "paths.py", PATH_SCRIPT)
    out = folder / f"{name}.json"
    target = ScriptTarget(path=script, module=None, args=(str(out),), cwd=folder)
    options = CaptureOptions(skip=1, active=3, profile=False, quiet=True,
                             launcher=launcher.command() if launcher is not None else None)
    result = run_capture(target, folder / name, options)
    return result, json.loads(out.read_text())


def test_pythonpath_entries_put_in_front_are_forked_with_a_fresh_starts_sys_path(
        tmp_path: Path, shared_zygote: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gate's side puts its checkout in front of PYTHONPATH: forked from the shared zygote,
    its trials see the sys.path a fresh start gives them."""
    if shared_zygote is None:
        pytest.skip("the suite's shared zygote is off (PERFTUNE_TEST_FRESH, or it did not start)")
    side = write(tmp_path / "side" / "sidemod.py", "VALUE = 1\n").parent
    existing = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(side), *([existing] if existing else [])]))
    work = tmp_path / "work"
    work.mkdir()
    with ZygoteLauncher(tmp_path / "run", work) as launcher:
        assert launcher.forked
        forked, seen_forked = observe_path(work, "forked", launcher)
    fresh, seen_fresh = observe_path(work, "fresh", None)
    assert forked.meta["launch"]["launcher"] == "zygote" and "launch" not in fresh.meta
    assert seen_forked == seen_fresh
    assert seen_forked["path"][1] == str(side)
    assert seen_forked["sidemod"] == str(side / "sidemod.py")


def test_a_pythonpath_entry_holding_a_module_the_zygote_imported_starts_fresh(
        tmp_path: Path, shared_zygote: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout with its own `perftune` (perftune's CI gating itself) must not be served by
    a zygote that imported another perftune."""
    if shared_zygote is None:
        pytest.skip("the suite's shared zygote is off (PERFTUNE_TEST_FRESH, or it did not start)")
    side = tmp_path / "side"
    write(side / "sidemod.py", "VALUE = 1\n")
    # the same package under another folder (a fresh start imports it from there, and works)
    (side / "perftune").symlink_to(Path(perftune.__file__).resolve().parent)
    existing = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(side), *([existing] if existing else [])]))
    with ZygoteLauncher(tmp_path / "run", tmp_path) as launcher:
        assert not launcher.forked and launcher.pid == launcher.proc.pid  # type: ignore[union-attr]
