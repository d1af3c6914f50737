"""The bundled samples: each runs bad and fixed, is profiled by `perftune profile`, and marks its
planted lines with codes from the rule catalogue."""

from __future__ import annotations

import importlib.util
import json
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


# The fixed variants run in one Python process (runpy, as `python sample.py --fixed --steps 2`
# would run each): what is checked is that every fix runs, and one process pays for torch's
# import once instead of seven times.
_RUN_FIXED = """
import json, runpy, sys, traceback
results = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--fixed", "--steps", "2"]
    try:
        runpy.run_path(path, run_name="__main__")
        results[path] = None
    except SystemExit as exc:
        results[path] = None if exc.code in (0, None) else f"exit {exc.code}"
    except BaseException:
        results[path] = traceback.format_exc()
print("RESULTS " + json.dumps(results))
"""

# Profiled with analysis: the samples whose findings a test reads (the rules catalogue's planted
# lines, the segmentation's `--fail-on warning`); the others are captured with --no-analyze.
ANALYSED = {"segmentation", "naive_attention", "elementwise_chain", "clean"}


@pytest.fixture(scope="module")
def fixed_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Each sample's fixed variant, run for 2 steps: None when it ran, else why it did not."""
    scripts = [str(SAMPLES / f"{name}.py") for name in OURS]
    done = subprocess.run([sys.executable, "-c", _RUN_FIXED, *scripts],
                          cwd=tmp_path_factory.mktemp("fixed"), env=child_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
                          check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    results: dict[str, str | None] = json.loads(lines[-1][len("RESULTS "):])
    return {Path(path).stem: why for path, why in results.items()}


class _Profiles(dict[str, subprocess.CompletedProcess[str]]):
    """`perftune profile` of each sample, run the first time a test asks for it and then shared
    by the tests of this module (an xdist worker pays only for the samples its tests read)."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base

    def run_dir(self, name: str) -> Path:
        return self.base / name / "run"

    def __missing__(self, name: str) -> subprocess.CompletedProcess[str]:
        cwd = self.base / name
        cwd.mkdir(parents=True)
        flags = ["--fail-on", "warning"] if name == "segmentation" else []
        if name not in ANALYSED:
            flags.append("--no-analyze")
        # the machine's peaks (the PFT4xx rules read them) measured in this module's own cache,
        # not read from whatever the runner's home holds
        env = child_env(PERFTUNE_CACHE_DIR=str(self.base / "cache"))
        done = subprocess.run(
            [sys.executable, "-m", "perftune", "profile", *flags, "--out", str(self.run_dir(name)),
             str(SAMPLES / f"{name}.py")],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=300, check=False)
        self[name] = done
        return done


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> _Profiles:
    return _Profiles(tmp_path_factory.mktemp("samples"))


@pytest.mark.slow
@pytest.mark.parametrize("name", OURS)
def test_sample_is_profiled_and_its_fix_runs(name: str, fixed_runs: dict[str, str | None],
                                             profiles: _Profiles) -> None:
    assert name in fixed_runs and fixed_runs[name] is None, fixed_runs.get(name)

    done = profiles[name]
    # segmentation is profiled with --fail-on warning: its planted problems exit 1
    assert done.returncode == (1 if name == "segmentation" else 0), done.stdout + done.stderr
    assert "8 found by the optimizer.step() hook" in done.stdout
    assert (profiles.run_dir(name) / "trace.json.gz").exists()


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
def test_profile_analyzes_the_capture_and_fails_on_findings(profiles: _Profiles) -> None:
    done = profiles["segmentation"]
    run_dir = profiles.run_dir("segmentation")
    assert done.returncode == 1, done.stdout + done.stderr  # the planted problems are warnings
    assert (run_dir / "findings.json").exists() and (run_dir / "summary.json").exists()
    assert "PFT202" in done.stdout and "segmentation.py:" in done.stdout


# -- the rules catalogue's samples (PFT3xx-PFT9xx): every planted line is found, and nothing else
# of those codes at warning level, in them or in the clean sample

CATALOGUE = re.compile(r"^PFT[34569]\d\d$")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["elementwise_chain", "naive_attention", "clean"])
def test_planted_lines_are_found(name: str, profiles: _Profiles) -> None:
    done = profiles[name]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    findings = json.loads((profiles.run_dir(name) / "findings.json").read_text())["findings"]
    warnings = {(str(f["code"]), int(f["location"]["line"])) for f in findings
                if CATALOGUE.match(str(f["code"])) and f["severity"] in ("warning", "error")
                and f["location"]["line"] is not None}
    assert warnings == {(code, line) for line, code in planted(name) if CATALOGUE.match(code)}
