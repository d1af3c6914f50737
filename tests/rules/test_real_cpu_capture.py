"""The sync rules on a real torch.profiler trace of a small script with planted lines."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perftune.engine.registry import run_rules, select_rules
from perftune.trace import load

SCRIPT = textwrap.dedent("""\
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile, schedule

    VOID, IGNORE = 6, -100


    def loss_fn(logits, target, stats):
        weights = torch.tensor([1.0, 2.0, 1.0, 1.0, 1.0, 1.0], device=logits.device)  # expect[PFT210]
        labels = torch.unique(target)  # expect[PFT203]
        void = torch.nonzero(target == VOID, as_tuple=True)  # expect[PFT202]
        target[void] = IGNORE
        keep = target == 5
        target[keep] = labels[:1].expand(int(keep.sum()))  # expect[PFT204]
        valid = target != IGNORE
        loss = F.cross_entropy(logits[valid], target[valid], weight=weights)  # expect[PFT212]
        stats.append(loss.item())  # expect[PFT206]
        if loss.isnan().any():  # expect[PFT206]
            raise FloatingPointError
        return loss, labels


    def clean_loss(logits, target):
        target = torch.where(target == VOID, IGNORE, target)
        return F.cross_entropy(logits, target, ignore_index=IGNORE)


    def main(out):
        torch.manual_seed(0)
        w = torch.randn(16, 6, requires_grad=True)
        opt = torch.optim.SGD([w], lr=0.1)
        stats = []
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_stack=True,
                     schedule=schedule(wait=0, warmup=1, active=2),
                     on_trace_ready=lambda p: p.export_chrome_trace(out)) as prof:
            for _ in range(3):
                x = torch.randn(256, 16)
                target = torch.randint(0, 7, (256,))
                logits = x @ w
                loss, _ = loss_fn(logits, target, stats)
                loss = loss + clean_loss(logits, target)
                loss.backward()
                opt.step()
                opt.zero_grad()
                prof.step()


    if __name__ == "__main__":
        import sys
        main(sys.argv[1])
""")


def test_planted_lines_are_found_on_a_real_cpu_trace(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)  # source is read under the current directory (the project)
    script = tmp_path / "planted.py"
    script.write_text(SCRIPT)
    trace_path = tmp_path / "trace.json"
    proc = subprocess.run([sys.executable, str(script), str(trace_path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trace = load(trace_path)
    assert not trace.has_device_activity and trace.has_python_stacks
    findings = run_rules(trace, select_rules(select=["PFT2"]), strict=True)
    found = {(f.code, Path(f.location.file or "").name, f.location.line) for f in findings}
    planted = {(code, "planted.py", k) for k, text in enumerate(SCRIPT.splitlines(), start=1)
               for code in re.findall(r"expect\[(PFT\d+)\]", text)}
    assert planted <= found, f"missed: {sorted(planted - found)}"
    clean_lines = range(SCRIPT.splitlines().index("def clean_loss(logits, target):") + 1,
                        SCRIPT.splitlines().index("def main(out):") + 1)
    assert not [f for f in findings if f.location.line in clean_lines and
                Path(f.location.file or "").name == "planted.py"]
    assert all(f.latent for f in findings)
    by_line = {(f.code, f.location.line): f for f in findings}
    masked = by_line[("PFT212", 16)]
    assert masked.suggestion.diff is not None and "ignore_index=IGNORE" in masked.suggestion.diff
    assert masked.location.source is not None and "cross_entropy" in masked.location.source
    unique = by_line[("PFT203", 10)]  # `labels` is used again: not the histogram the rewrite proves
    assert unique.suggestion.diff is None and unique.suggestion.after
