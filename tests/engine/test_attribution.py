"""Source attribution: def-line frames are refined to the op's line by reading the source."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from perftune.engine.attribution import (
    Occurrence,
    lookup_folders,
    read_source_line,
)
from perftune.engine.context import Context
from perftune.engine.hazards import calls
from perftune.engine.testing import TraceBuilder


@pytest.fixture(autouse=True)
def _in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Source is read under the current directory by default: analyse from the project folder."""
    monkeypatch.chdir(tmp_path)


TRAIN = textwrap.dedent("""\
    import torch


    def step(x, mask, loss):
        y = x[mask]
        total = loss.item()
        z = x.sum().item()
        if z > 0:
            pass
        return y, total
""")


def _item_trace(tmp: Path, file: str = "train.py", items: int = 2, steps: int = 2) -> Path:
    b = TraceBuilder()
    for _ in range(steps):
        with b.step(), b.frame(file, 4, "step"):
            b.leaf("aten::index")
            for _ in range(items):
                with b.op("aten::item"):
                    b.leaf("aten::_local_scalar_dense")
    return b.write(tmp / "trace.json.gz")


def _occurrences(trace, name: str) -> list[Occurrence]:
    from perftune.trace import sync_metrics as sm

    out = []
    for h in sm.host_hazards(sm.HostIndex(trace)):
        if trace.name_of(h.row) == name:
            out.append(Occurrence(row=h.row, step=h.step, cost_us=h.cpu_us, chain=h.chain,
                                  frame_row=h.frame_row, key=name))
    return out


def test_kth_occurrence_maps_to_kth_call_site(tmp_path: Path) -> None:
    from perftune.trace import load

    (tmp_path / "train.py").write_text(TRAIN)
    trace = load(_item_trace(tmp_path))
    groups = Context.build(trace).attribute(_occurrences(trace, "aten::item"), lambda o: calls("item"), windows=2)
    assert sorted((g.location.line, g.count) for g in groups) == [(6, 2), (7, 2)]
    by_line = {g.location.line: g for g in groups}
    assert by_line[6].location.source == "    total = loss.item()"
    assert by_line[6].location.function == "step" and by_line[6].per_step == 1.0


def test_missing_source_keeps_the_frame_line(tmp_path: Path) -> None:
    from perftune.trace import load

    trace = load(_item_trace(tmp_path, file="gone/elsewhere.py"))
    (group,) = Context.build(trace).attribute(_occurrences(trace, "aten::item"), lambda o: calls("item"))
    assert (group.location.file, group.location.line, group.location.source) == ("gone/elsewhere.py", 4, None)
    assert group.count == 4  # two per call, two calls: one finding with a count


def test_changed_source_falls_back_to_the_frame_line(tmp_path: Path) -> None:
    from perftune.trace import load

    (tmp_path / "train.py").write_text("def step(x, mask, loss):\n    return x\n")
    trace = load(_item_trace(tmp_path))
    (group,) = Context.build(trace).attribute(_occurrences(trace, "aten::item"), lambda o: calls("item"))
    assert group.location.line == 4 and group.location.source is None  # file has 2 lines only


def test_boolean_index_prefers_mask_like_subscripts(tmp_path: Path) -> None:
    from perftune.trace import load

    (tmp_path / "m.py").write_text(textwrap.dedent("""\
        def f(x, t, i):
            first = x[i]
            keep = t > 0
            return first, x[keep]
    """))
    b = TraceBuilder()
    with b.step(), b.frame("m.py", 1, "f"):
        b.leaf("aten::select")
        with b.op("aten::index"):
            b.leaf("aten::nonzero")
    trace = load(b.write(tmp_path / "t.json.gz"))
    occs = _occurrences(trace, "aten::index")
    (group,) = Context.build(trace).attribute(occs, lambda o: (lambda s: s.kind == "index"))
    assert group.location.line == 4


def test_module_frames_search_the_enclosing_statement(tmp_path: Path) -> None:
    from perftune.trace import load

    (tmp_path / "loop.py").write_text(textwrap.dedent("""\
        import torch
        x = torch.ones(3)
        for step in range(10):
            y = x * 2
            print(y.sum().item())
        z = x.item()
    """))
    b = TraceBuilder()
    with b.step(), b.frame("loop.py", 4, "<module>"), b.op("aten::item"):
        b.leaf("aten::_local_scalar_dense")
    trace = load(b.write(tmp_path / "t.json.gz"))
    (group,) = Context.build(trace).attribute(_occurrences(trace, "aten::item"), lambda o: calls("item"))
    assert group.location.line == 5  # the loop's item, not the one after the loop


def test_source_roots_read_the_run_directory_meta(tmp_path: Path) -> None:
    from perftune.trace import load

    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "train.py").write_text(TRAIN)
    run = tmp_path / "run"
    run.mkdir()
    (run / "meta.json").write_text(json.dumps({"cwd": str(project), "script": str(project / "pkg/train.py")}))
    trace = load(_item_trace(run, file="pkg/train.py"))
    assert project.resolve() in [p.resolve() for p in lookup_folders(trace)]
    assert Context.build(trace, [project]).source.line("pkg/train.py", 6) == "    total = loss.item()"
    trace2 = load(_item_trace(run, file="train.py"))
    assert Context.build(trace2, [project]).source.resolve("train.py") == (project / "pkg" / "train.py").resolve()
    # The recorded folders say only where to look: outside the source roots nothing is read.
    trace3 = load(_item_trace(run, file="pkg/train.py"))
    assert Context.build(trace3, [run]).source.line("pkg/train.py", 6) is None


def test_find_calls_reads_user_files_only(tmp_path: Path) -> None:
    from perftune.trace import load

    (tmp_path / "train.py").write_text("from torch.utils.data import DataLoader\n"
                                       "def step(x, mask, loss):\n"
                                       "    return DataLoader(x, pin_memory=True)\n")
    trace = load(_item_trace(tmp_path))
    (site,) = Context.build(trace).find_calls(["DataLoader"])
    assert site.location.line == 3 and site.site.keyword("pin_memory") == "True"


def test_read_source_line_never_raises(tmp_path: Path) -> None:
    path = tmp_path / "a.py"
    path.write_text("one\ntwo\n")
    assert read_source_line(path, 2) == "two"  # under the current directory
    assert read_source_line(path, 9) is None
    assert read_source_line(tmp_path / "missing.py", 1) is None
    assert read_source_line(tmp_path, 1) is None  # a directory


def test_the_scripts_own_trace_in_a_folder_of_the_run_reads_the_runs_meta(tmp_path: Path) -> None:
    """A script that profiles itself writes into a folder of perftune's run (`--logdir
    RUN/script-trace`); its frames name files by base name: the run's recorded script folder
    is where to look (the loss.item() line, not the running frame's next line)."""
    from perftune.trace import load

    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "train.py").write_text(TRAIN)
    run = tmp_path / "run"
    (run / "script-trace").mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"cwd": str(project), "script": str(project / "pkg/train.py")}))
    trace = load(_item_trace(run / "script-trace", file="train.py"))
    assert Context.build(trace, [project]).source.resolve("train.py") == (project / "pkg" / "train.py").resolve()


TRAINER = '''\
import torch


class GPT(torch.nn.Module):
    pass


class Trainer:
    def __init__(self, model, data, steps):
        self.model, self.data, self.steps = model, data, steps
        self.log = steps

    def run(self):
        model = self.model
        for x in self.data:
            loss = model(x)
            other = self.log


def main():
    Trainer(GPT().to("cpu"), [], steps=3).run()
    net = GPT()
    Trainer(data=[], model=net, steps=1)
'''


def test_a_model_handed_to_a_trainer_class_is_followed_to_its_call(tmp_path: Path) -> None:
    """`Trainer(GPT().to(device))`, `self.model = model`, `model = self.model`: the name the
    training loop calls the model by (PFT507/PFT508 point at that call, not at whatever line
    the loop's frame was on when profiling began: optimizer.step() in a CI run)."""
    from perftune.engine.attribution import SourceReader
    from perftune.sourcefiles import SourceRoots

    (tmp_path / "train.py").write_text(TRAINER)
    reader = SourceReader(access=SourceRoots.of([tmp_path]))
    file = str(tmp_path / "train.py")
    assert reader.names_bound_to(file, ["GPT"], through_methods=True) == {"net"}
    assert reader.names_carried_from(file, ["GPT"]) == {"model"}  # the attribute and the local
    assert reader.names_carried_from(file, ["Missing"]) == frozenset()
    assert reader.names_carried_from(str(tmp_path / "absent.py"), ["GPT"]) == frozenset()
