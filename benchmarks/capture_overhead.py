"""What capture costs: the step hooks on un-profiled steps, and `perftune profile` end to end.

1. Hook overhead. One process trains a model in blocks of steps, alternating blocks with
   perftune's hooks installed (optimizer step hook, loss and batch hooks, step timing; no
   profiler, as on warm-up and tuner steps) and blocks without, interleaved so that machine noise
   hits both alike. Reported: median step time of each and their ratio, for a tiny model (the
   worst case: the hook's fixed cost against a sub-millisecond step) and the clean sample's model.

2. End to end. `perftune profile samples/clean.py` (5 warm-up + 3 profiled steps, then stop)
   against `python samples/clean.py --steps 8`, interleaved, wall time from start to exit.

    python benchmarks/capture_overhead.py [--rounds 15] [--block 40] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from perftune.capture.child.hooks import Hooks
from perftune.capture.child.session import CaptureSession

REPO = Path(__file__).resolve().parents[1]


def _tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return nn.Linear(16, 1), torch.randn(8, 16), torch.randn(8, 1)


def _clean_sample() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = nn.Sequential(nn.Linear(512, 1024), nn.GELU(), nn.LayerNorm(1024), nn.Linear(1024, 10))
    return model, torch.randn(256, 512), torch.randint(0, 10, (256,))


def hook_overhead(
    build: Callable[[], tuple[nn.Module, torch.Tensor, torch.Tensor]], rounds: int, block: int
) -> tuple[float, float]:
    """(median step ms without hooks, with hooks), blocks interleaved."""
    torch.manual_seed(0)
    model, x, y = build()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss() if y.dtype.is_floating_point else nn.CrossEntropyLoss()
    with tempfile.TemporaryDirectory() as tmp:
        # skip is never reached: every step is an un-profiled (warm-up) step.
        session = CaptureSession(
            skip=10**9, active=1, full=True, profile=False, detail="light", run_dir=Path(tmp)
        )
        hooks = Hooks(session)
        times: dict[bool, list[float]] = {False: [], True: []}

        def steps(count: int, record: list[float] | None) -> None:
            for _ in range(count):
                start = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                if record is not None:
                    record.append((time.perf_counter() - start) * 1000.0)

        steps(block, None)  # warm-up, not measured
        for index in range(rounds * 2):
            hooked = index % 2 == 1
            if hooked:
                hooks.install()
            steps(block, times[hooked])
            if hooked:
                hooks.remove()
                session.log.restart(time.perf_counter())  # keep the log small
    return statistics.median(times[False]), statistics.median(times[True])


def end_to_end(runs: int) -> tuple[float, float]:
    """(median wall s of the plain script, of `perftune profile`), runs interleaved."""
    sample = REPO / "samples" / "clean.py"
    plain_cmd = [sys.executable, str(sample), "--steps", "8"]
    plain, profiled = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            profile_cmd = [
                sys.executable,
                "-m",
                "perftune",
                "profile",
                "--no-analyze",
                "--out",
                str(Path(tmp) / f"run{run}"),
                str(sample),
            ]
            for cmd, sink in ((plain_cmd, plain), (profile_cmd, profiled)):
                start = time.perf_counter()
                subprocess.run(
                    cmd,
                    check=True,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                sink.append(time.perf_counter() - start)
    return statistics.median(plain), statistics.median(profiled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="blocks of each kind")
    parser.add_argument("--block", type=int, default=40, help="steps per block")
    parser.add_argument("--runs", type=int, default=3, help="end-to-end runs of each")
    args = parser.parse_args()

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.rounds}x{args.block} steps per side, interleaved\n"
    )
    print("| model | step without hooks | step with hooks | ratio |")
    print("|---|---|---|---|")
    for name, build in (
        ("Linear(16, 1), batch 8", _tiny),
        ("clean.py MLP, batch 256", _clean_sample),
    ):
        bare, hooked = hook_overhead(build, args.rounds, args.block)
        print(f"| {name} | {bare:.4f} ms | {hooked:.4f} ms | {hooked / bare:.3f} |")

    plain, profiled = end_to_end(args.runs)
    print(f"\n| command | wall time (median of {args.runs}) |")
    print("|---|---|")
    print(f"| `python samples/clean.py --steps 8` | {plain:.2f} s |")
    print(
        f"| `perftune profile samples/clean.py` (8 steps, 3 profiled, trace written) | "
        f"{profiled:.2f} s |"
    )
    print(f"| difference: perftune's own cost | {profiled - plain:+.2f} s |")


if __name__ == "__main__":
    main()
