"""The knob injectors, in a real child process started by the capture (run_capture), forked
from a zygote as tune's trials are."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tune_helpers import SCRIPTS

from perftune.capture.child import injectors
from perftune.capture.parent.knobs import parse_checkpoint
from perftune.capture.parent.launcher import ZygoteLauncher
from perftune.capture.parent.runner import CaptureOptions, CaptureResult, ScriptTarget, run_capture


def _env(report: Path) -> dict[str, str]:
    # The zygote forks only for the environment it started with; pytest names the current test
    # in PYTEST_CURRENT_TEST, so the runs give it one value.
    return {"INSPECT_OUT": str(report), "PYTEST_CURRENT_TEST": "test_tune_injectors"}


@dataclass(frozen=True)
class Inspector:
    """Where the inspected runs start: one working directory and INSPECT_OUT for the module,
    and a zygote there that the runs fork from, as tune's trials do (one torch import for the
    module, not one per run)."""

    folder: Path
    launcher: ZygoteLauncher

    @property
    def report(self) -> Path:
        return self.folder / "inspect.json"

    def run(self, run_dir: Path, knobs: dict, inject: list[str] | None = None,
            inject_report: Path | None = None) -> CaptureResult:
        self.report.unlink(missing_ok=True)
        return run_capture(
            ScriptTarget(path=SCRIPTS / "inspect_model.py", cwd=self.folder),
            run_dir,
            CaptureOptions(skip=1, active=2, profile=False, knobs=knobs, quiet=True,
                           env=_env(self.report), inject=inject,
                           inject_report=inject_report, launcher=self.launcher.command()),
        )


@pytest.fixture(scope="module")
def inspector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inspector]:
    folder = tmp_path_factory.mktemp("inspect")
    report = folder / "inspect.json"
    launcher = ZygoteLauncher(folder / "zygote", folder, env={**os.environ, **_env(report)})
    inspector = Inspector(folder, launcher)
    launcher.spawn()
    try:
        launcher.wait_ready()
        yield inspector
    finally:
        launcher.stop()


def _inspect(inspector: Inspector, tmp_path: Path, knobs: dict,
             inject: list[str] | None = None) -> tuple[dict, dict, str]:
    result = inspector.run(tmp_path / "run", knobs, inject, tmp_path / "injectors.json")
    assert result.meta["launch"]["launcher"] == "zygote", result.meta["launch"]
    injected = json.loads((tmp_path / "injectors.json").read_text())
    return json.loads(inspector.report.read_text()), injected, result.status


def test_bf16_checkpoint_and_batch_size_are_applied(inspector: Inspector, tmp_path: Path) -> None:
    seen, injected, status = _inspect(
        inspector, tmp_path, {"precision": "bf16", "checkpoint": "every:2", "batch_size": 6}
    )
    assert status == "ok"
    # Autocast is on inside the model: its matmuls run in bf16 ...
    assert seen["autocast"] is True
    assert seen["inner_dtype"] == "torch.bfloat16"
    # ... and the loss outside the model gets fp32 logits.
    assert seen["output_dtype"] == "torch.float32"
    # Blocks 0 and 2 are checkpointed: their forward runs again during backward.
    assert seen["calls"] == [2, 1, 2, 1]
    assert seen["batch"] == 6
    assert injected["checkpoint"]["container"] == "blocks"
    assert injected["checkpoint"]["checkpointed"] == [0, 2]
    assert injected["batch_size"]["dataloaders"][0]["from"] == 4
    source = (SCRIPTS / "inspect_model.py").read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if text.startswith("loader = DataLoader("))
    assert injected["batch_size"]["dataloaders"][0]["where"].endswith(f"inspect_model.py:{line}")


def test_fp32_and_no_checkpointing_leave_the_model_alone(inspector: Inspector,
                                                         tmp_path: Path) -> None:
    seen, injected, status = _inspect(inspector, tmp_path, {"precision": "fp32", "checkpoint": "none"})
    assert status == "ok"
    assert seen["autocast"] is False
    assert seen["inner_dtype"] == "torch.float32"
    assert seen["calls"] == [1, 1, 1, 1]
    assert seen["batch"] == 4  # no batch_size knob: the script's own
    assert injected["applied"] == ["precision", "checkpoint"]


def test_inject_narrows_the_knobs_applied(inspector: Inspector, tmp_path: Path) -> None:
    # batch_size passed as a flag instead (the spec's inject list leaves it out): the loader keeps 4.
    seen, injected, status = _inspect(
        inspector, tmp_path, {"checkpoint": "all", "batch_size": 6}, inject=["checkpoint"]
    )
    assert status == "ok"
    assert seen["calls"] == [2, 2, 2, 2]
    assert seen["batch"] == 4
    assert "batch_size" not in injected


def test_cuda_only_precision_fails_the_trial_clearly_on_cpu(inspector: Inspector,
                                                           tmp_path: Path) -> None:
    result = inspector.run(tmp_path / "run", {"precision": "tf32"})
    assert result.status == "crashed"
    assert "precision=tf32 needs a CUDA model" in (result.error or "")


# --- in-process: the pieces the child uses -------------------------------------------------


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Linear(4, 4)
        self.layers = torch.nn.Sequential(
            *[torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()) for _ in range(3)]
        )
        self.mlp = torch.nn.ModuleList([torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)])


def test_repeated_blocks_are_the_composite_children_of_one_module() -> None:
    container, blocks = injectors.repeated_blocks(_Net())
    assert container == "layers"
    assert [name for name, _ in blocks] == ["0", "1", "2"]
    # Leaf layers (the two Linear of `mlp`) are not blocks.
    assert injectors.repeated_blocks(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))) == ("", [])


@pytest.mark.parametrize(
    ("text", "chosen"),
    [("none", []), ("all", [0, 1, 2, 3, 4]), ("every:2", [0, 2, 4]), ("every3", [0, 3]), ("first:2", [0, 1])],
)
def test_checkpoint_placements(text: str, chosen: list[int]) -> None:
    placement = parse_checkpoint(text)
    assert [i for i in range(5) if placement.selects(i)] == chosen


def test_no_repeated_blocks_is_a_clear_error() -> None:
    with pytest.raises(injectors.InjectionError, match="found no repeated blocks"):
        injectors._checkpoint_blocks(torch.nn.Linear(2, 2), parse_checkpoint("all"))


def test_fp16_loss_scaling_scales_backward_and_unscales_the_step() -> None:
    """The injected GradScaler, on CPU (fp16 autocast itself is CUDA-only in perftune)."""
    patches = injectors._Patches()
    scaling = injectors._LossScaling()
    scaling.install(patches)
    try:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scaling.activate("cpu")
        x = torch.randn(5, 3)
        loss = model(x).pow(2).mean()
        loss.backward()
        # The gradient holds the scaled loss's gradient until the step unscales it.
        expected = torch.autograd.grad(model(x).pow(2).mean(), model.weight)[0]
        scale = scaling.scaler.get_scale()
        assert scale > 1
        torch.testing.assert_close(model.weight.grad, expected * scale)
        before = model.weight.detach().clone()
        optimizer.step()
        torch.testing.assert_close(model.weight.detach(), before - 0.1 * expected)
        assert scaling.unscaled_steps == 0
    finally:
        patches.restore()
    assert torch.Tensor.backward is not None and "backward" in torch.Tensor.__dict__


def test_fp16_loss_scaling_stays_out_of_a_scripts_own_scaler() -> None:
    patches = injectors._Patches()
    scaling = injectors._LossScaling()
    scaling.install(patches)
    try:
        own = torch.amp.GradScaler("cpu")
        scaling.activate("cpu")
        assert own.is_enabled()
        assert scaling.script_scaler and not scaling.active
    finally:
        patches.restore()
