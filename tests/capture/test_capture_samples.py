"""The bundled samples: each runs bad and fixed, is profiled by `perftune profile`, and marks its
planted lines with codes from the rule catalogue."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from capture_helpers import REPO, child_env

SAMPLES = REPO / "samples"
# The capture helper's samples (gpt, tiled_matmul and regression_demo belong to other work).
OURS = [
    "segmentation",
    "scalar_readback",
    "naive_attention",
    "elementwise_chain",
    "slow_dataloader",
    "pageable_copy",
    "clean",
]
EXPECTED = {
    "segmentation": {"PFT202", "PFT203", "PFT212"},
    "scalar_readback": {"PFT206"},
    "naive_attention": {"PFT402"},
    "elementwise_chain": {"PFT401"},
    "slow_dataloader": {"PFT101", "PFT102"},
    "pageable_copy": {"PFT208", "PFT209"},
    "clean": set(),
}
MARKER = re.compile(r"#\s*perftune:\s*(.*)$")
CODE = re.compile(r"expect\[(PFT\d{3})\]")


def planted(name: str) -> list[tuple[int, str]]:
    """(line number, code) for every `# perftune: expect[PFTnnn]` in a sample."""
    found = []
    for number, line in enumerate((SAMPLES / f"{name}.py").read_text().splitlines(), start=1):
        match = MARKER.search(line)
        if match:
            codes = CODE.findall(match.group(1))
            if not codes and "-if[" in match.group(1):
                continue  # machine-conditional truth (benchmarks/rules_accuracy.py), not planted
            assert codes, f"{name}.py:{number}: marker without expect[PFTnnn]"
            found.extend((number, code) for code in codes)
    return found


@pytest.mark.parametrize("name", OURS)
def test_planted_lines_use_the_catalogue_codes(name: str) -> None:
    assert {code for _, code in planted(name)} == EXPECTED[name]
    readme = (SAMPLES / "README.md").read_text()
    assert f"`{name}.py`" in readme


@pytest.mark.slow
@pytest.mark.parametrize("name", OURS)
def test_sample_is_profiled_and_its_fix_runs(name: str, tmp_path: Path) -> None:
    script = SAMPLES / f"{name}.py"
    env = child_env()
    fixed = subprocess.run(
        [sys.executable, str(script), "--fixed", "--steps", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert fixed.returncode == 0, fixed.stderr

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "perftune",
            "profile",
            "--no-analyze",
            "--out",
            str(tmp_path / "run"),
            str(script),
        ],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "8 found by the optimizer.step() hook" in done.stdout
    assert (tmp_path / "run" / "trace.json.gz").exists()


def _load_sample(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"sample_{name}", SAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_segmentation_fixed_loss_equals_the_original() -> None:
    import torch

    seg = _load_sample("segmentation")
    torch.manual_seed(3)
    for _, masks in seg.make_batches(3, 2, 32, torch.device("cpu")):
        logits = torch.randn(2, seg.NUM_CLASSES, 32, 32)
        assert (masks == seg.VOID).any()
        original = seg.segmentation_loss(logits, masks)
        fixed = seg.segmentation_loss_fixed(logits, masks)
        assert torch.allclose(original, fixed, rtol=0, atol=1e-6)
        assert torch.equal(seg.class_weights(masks), seg.class_weights_fixed(masks))


def test_segmentation_trains_the_same_with_the_fix() -> None:
    import torch

    seg = _load_sample("segmentation")

    def losses(loss_fn) -> list[float]:
        torch.manual_seed(0)
        model = seg.TinySegNet()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        out = []
        for images, masks in seg.make_batches(3, 2, 32, torch.device("cpu")):
            optimizer.zero_grad()
            loss = loss_fn(model(images), masks)
            loss.backward()
            optimizer.step()
            out.append(loss.item())
        return out

    assert losses(seg.segmentation_loss) == pytest.approx(
        losses(seg.segmentation_loss_fixed), abs=1e-6
    )


@pytest.mark.slow
def test_profile_analyzes_the_capture_and_fails_on_findings(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "perftune",
            "profile",
            "--out",
            str(run_dir),
            "--fail-on",
            "warning",
            str(SAMPLES / "segmentation.py"),
        ],
        cwd=tmp_path,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 1, done.stdout + done.stderr  # the planted problems are warnings
    assert (run_dir / "findings.json").exists() and (run_dir / "summary.json").exists()
    assert "PFT202" in done.stdout and "segmentation.py:" in done.stdout
