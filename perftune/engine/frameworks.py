"""Training frameworks recognised from the recorded stack: Hugging Face Trainer, accelerate,
Lightning.

Inside a framework most ops have no line of the user's own code but `trainer.train()`: the
DataLoader is built by the framework, batches are moved by it, the loss is logged by it. A
finding there must not tell the user to edit library code; it names the framework's own lever
(`TrainingArguments(dataloader_num_workers=4)`) at the user's configuration line, and says
nothing about what the framework already does on a GPU (Trainer pins batch memory by default,
Lightning moves batches with `non_blocking=True`).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

from perftune.engine.attribution import CallSite
from perftune.engine.context import Context
from perftune.trace import categories as C
from perftune.trace.model import Trace
from perftune.trace.tables import Tables


@dataclass(frozen=True)
class Framework:
    key: str                        # "hf-trainer" | "lightning" | "accelerate"
    name: str                       # what messages call it
    markers: tuple[str, ...]        # path fragments of its frames
    config_calls: tuple[str, ...]   # calls in the user's code that configure it


HF_TRAINER = Framework("hf-trainer", "Hugging Face Trainer",
                       ("transformers/trainer.py", "transformers/trainer_utils.py"),
                       ("TrainingArguments", "Seq2SeqTrainingArguments"))
LIGHTNING = Framework("lightning", "Lightning",
                      ("lightning/pytorch/", "pytorch_lightning/", "lightning/fabric/",
                       "lightning_fabric/"),
                      ("Trainer",))
ACCELERATE = Framework("accelerate", "Hugging Face accelerate",
                       ("accelerate/accelerator.py", "accelerate/data_loader.py",
                        "accelerate/utils/operations.py"),
                       ("Accelerator",))
FRAMEWORKS = (HF_TRAINER, LIGHTNING, ACCELERATE)


def _frame_files(trace: Trace, tables: Tables | None) -> tuple[str, ...]:
    names = trace.distinct_names(trace.cat_is(C.PYTHON_FUNCTION))
    return tuple(n.replace("\\", "/") for n in names)


def frameworks(ctx: Context) -> tuple[Framework, ...]:
    """The frameworks whose frames the trace's python stacks hold (Trainer first)."""
    frames = ctx.fact(_frame_files)
    return tuple(fw for fw in FRAMEWORKS if any(m in f for f in frames for m in fw.markers))


def framework_of(files: Sequence[str]) -> Framework | None:
    """The framework a stack (files of its library frames) runs in, innermost framework first."""
    for file in files:
        path = file.replace("\\", "/")
        for fw in FRAMEWORKS:
            if any(m in path for m in fw.markers):
                return fw
    return None


def config_site(ctx: Context, fw: Framework) -> CallSite | None:
    """The user's configuration call of a framework (`TrainingArguments(...)`)."""
    sites = ctx.find_calls(fw.config_calls)
    if fw is LIGHTNING:  # `Trainer(` is a common name: only lightning's counts, best effort
        sites = [s for s in sites if s.site.keyword("max_epochs") is not None
                 or s.site.keyword("accelerator") is not None or s.site.keyword("devices") is not None
                 or "L." in (s.location.source or "") or "pl." in (s.location.source or "")] or sites
    return sites[0] if sites else None


def keyword_value(site: CallSite | None, name: str) -> str | None:
    if site is None:
        return None
    value = site.site.keyword(name)
    return value.strip() if value is not None else None


def is_false(value: str | None) -> bool:
    return value is not None and value in ("False", "0", "None")


def loader_function_site(ctx: Context, function: str) -> CallSite | None:
    """A `DataLoader(...)` construction inside a function named `function` (Lightning's
    `train_dataloader`): the loader the framework iterates for training."""
    for cs in ctx.find_calls(["DataLoader"]):
        file = cs.location.file
        tree = ctx.source.tree(file) if file else None
        if tree is None or cs.location.line is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function \
                    and node.lineno <= cs.location.line <= (node.end_lineno or node.lineno):
                return cs
    return None
