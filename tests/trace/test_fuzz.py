"""A bounded fuzz of the loader and of `perftune analyze` (issue 19): seeded mutants of small
real and synthetic traces (see mutate.py) either load or raise TraceError, and through the CLI
either succeed or print one `perftune: error:` line with exit code 2 — never a traceback.

The longer run (500+ mutants of every shared trace, with timeouts and peak memory) is
benchmarks/fuzz_analyze.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builder import doc, gpu_step
from mutate import Mutant, mutants

from perftune.cli.main import main
from perftune.errors import PerftuneError, TraceError
from perftune.trace import load

SHARED = Path(__file__).resolve().parents[3] / "shared" / "traces"
SMALL = "HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json"
SEED = 1919


def _bases() -> list[tuple[str, bytes]]:
    out = [("synthetic", json.dumps(doc([e for k in range(4) for e in gpu_step(
        1_000_000.0 + 1000 * k, step=k, corr0=1000 + 10 * k)])).encode())]
    if (SHARED / SMALL).exists():  # the real one when shared/ is there; the suite runs without
        out.append(("event_sync", (SHARED / SMALL).read_bytes()))
    return out


def _all_mutants() -> list[Mutant]:
    found = []
    for k, (stem, base) in enumerate(_bases()):
        found += mutants(base, 40, SEED + k, huge=200_000, bomb=8 << 20, stem=stem)
    return found


MUTANTS = _all_mutants()


def test_the_mutants_cover_every_kind_of_change() -> None:
    kinds = {m.kind for m in MUTANTS}
    assert {"absurd-number", "type-swap", "byte-flips", "truncated"} <= kinds
    assert any(k.startswith("gzip") for k in kinds)


def test_every_mutant_loads_or_raises_trace_error(tmp_path: Path) -> None:
    outcomes = {"loaded": 0, "TraceError": 0}
    for m in MUTANTS:
        path = tmp_path / m.name
        path.write_bytes(m.data)
        try:
            trace = load(path)
        except TraceError:
            outcomes["TraceError"] += 1
            continue
        except Exception as exc:  # anything else is the bug this test finds
            pytest.fail(f"{m.name} ({m.kind}): {type(exc).__name__}: {exc}"[:2000])
        outcomes["loaded"] += 1
        assert len(trace.events) > 0
        path.unlink()
    assert outcomes["loaded"] and outcomes["TraceError"]  # both kinds of mutant occur


def test_analyze_on_mutants_succeeds_or_says_one_line(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # Every fourth mutant through the whole command (the rules and the summary included):
    # the in-process CLI runs each in well under a second.
    for m in MUTANTS[::4]:
        path = tmp_path / m.name
        path.write_bytes(m.data)
        with pytest.raises(SystemExit) as stop:
            try:
                main(["analyze", str(path)])
            except PerftuneError as exc:  # main must have turned these into an exit
                pytest.fail(f"{m.name}: PerftuneError escaped main: {exc}")
        err = capsys.readouterr().err
        assert "Traceback" not in err, m.name
        code = stop.value.code
        if code == 2:
            errors = [ln for ln in err.splitlines() if ln.startswith("perftune: error:")]
            assert len(errors) == 1, (m.name, err[-2000:])
            assert err.rstrip().splitlines()[-1] == errors[0]
        else:
            assert code in (0, None), (m.name, code, err[-2000:])
