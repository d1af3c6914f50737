"""How to apply the best configuration without perftune: flags, knob values, code changes.

Flags and `perftune.knob` values carry over as they are (a script reads PERFTUNE_KNOBS itself,
perftune running or not). Injected knobs need a code change, shown as a snippet built from what
the injectors did in the best trial (the device, the blocks they wrapped, the DataLoader line).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from perftune.capture.parent.knobs import (
    BATCH_SIZE,
    CHECKPOINT,
    COMPILE,
    COMPILE_NONE,
    PRECISION,
    parse_checkpoint,
)
from perftune.redact import redact_argv
from perftune.tune.space import SearchSpace
from perftune.tune.trial import Script


def apply_instructions(
    space: SearchSpace,
    values: Mapping[str, Any],
    script: Script,
    injected_report: Mapping[str, Any],
) -> dict[str, Any]:
    flags = space.script_args(values)
    injected = set(space.injected())
    knob_values = {
        name: value
        for name, value in values.items()
        if name not in injected and space.arg_for(name) is None
    }
    code: list[dict[str, str]] = []
    if PRECISION in injected:
        snippet = _precision(str(values[PRECISION]), injected_report)
        if snippet is not None:
            code.append(snippet)
    if CHECKPOINT in injected:
        snippet = _checkpoint(str(values[CHECKPOINT]), injected_report)
        if snippet is not None:
            code.append(snippet)
    if BATCH_SIZE in injected:
        code.append(_batch_size(int(values[BATCH_SIZE]), injected_report))
    if COMPILE in injected and str(values[COMPILE]) != COMPILE_NONE:
        code.append(_compile(str(values[COMPILE]), injected_report))
    for name, value in knob_values.items():
        code.append(
            {
                "knob": name,
                "title": f"make {value!r} the default of knob {name!r}",
                "snippet": f"{name} = perftune.knob({name!r}, {value!r}, choices=[...])",
            }
        )
    head = [str(script.path)] if script.path is not None else ["-m", str(script.module)]
    command = ["python", *head, *script.args, *flags]
    env = f"PERFTUNE_KNOBS={shlex.quote(json.dumps(knob_values))} " if knob_values else ""
    return {
        "values": dict(values),
        "flags": flags,
        "knobs": knob_values,
        # The script's own arguments may hold a database URL or a token: never in the record.
        "command": env + " ".join(shlex.quote(part) for part in redact_argv(command)),
        "code": code,
    }


def _precision(value: str, report: Mapping[str, Any]) -> dict[str, str] | None:
    device = str((report.get(PRECISION) or {}).get("device") or report.get("model", {}).get("device") or "cuda")
    if value == "fp32":
        return None
    if value == "tf32":
        return {
            "knob": PRECISION,
            "title": "allow TF32 matmuls and convolutions",
            "snippet": (
                "torch.backends.cuda.matmul.allow_tf32 = True\n"
                "torch.backends.cudnn.allow_tf32 = True"
            ),
        }
    dtype = "torch.bfloat16" if value == "bf16" else "torch.float16"
    snippet = (
        f'with torch.autocast(device_type="{device}", dtype={dtype}):\n'
        "    output = model(inputs)\n"
        "loss = loss_fn(output.float(), targets)  # the loss in fp32, as autocast would"
    )
    title = f"run the model's forward under {value} autocast"
    if value == "fp16":
        scaler = report.get("fp16_scaler")
        if scaler == "the script's own GradScaler":
            title += " (the script's GradScaler already scales the loss)"
        else:
            snippet += (
                f'\n\nscaler = torch.amp.GradScaler("{device}")  # once, before the loop\n'
                "scaler.scale(loss).backward()\n"
                "scaler.step(optimizer)\n"
                "scaler.update()"
            )
    return {"knob": PRECISION, "title": title, "snippet": snippet}


def _checkpoint(value: str, report: Mapping[str, Any]) -> dict[str, str] | None:
    placement = parse_checkpoint(value)
    if placement.mode == "none":
        return None
    info = report.get(CHECKPOINT) or {}
    container = info.get("container") or "blocks"
    chosen = info.get("checkpointed")
    attribute = f"self.{container}" if container else "self.blocks"
    if placement.mode == "all":
        condition = "True"
    elif placement.mode == "every":
        condition = f"i % {placement.n} == 0"
    else:
        condition = f"i < {placement.n}"
    snippet = (
        "from torch.utils.checkpoint import checkpoint\n\n"
        f"for i, block in enumerate({attribute}):\n"
        f"    if {condition}:\n"
        "        x = checkpoint(block, x, use_reentrant=False)\n"
        "    else:\n"
        "        x = block(x)"
    )
    if placement.mode == "all":
        snippet = (
            "from torch.utils.checkpoint import checkpoint\n\n"
            f"for block in {attribute}:\n"
            "    x = checkpoint(block, x, use_reentrant=False)"
        )
    blocks = f" (blocks {', '.join(str(i) for i in chosen)} of {len(info.get('blocks', []))})" if chosen else ""
    cls = info.get("block_class")
    title = f"checkpoint {placement.describe()} of {container or 'the model'}" + (
        f" ({cls})" if cls else ""
    ) + blocks
    return {"knob": CHECKPOINT, "title": title, "snippet": snippet}


def _batch_size(value: int, report: Mapping[str, Any]) -> dict[str, str]:
    loaders = (report.get(BATCH_SIZE) or {}).get("dataloaders") or []
    where = ", ".join(str(d.get("where")) for d in loaders if d.get("where"))
    title = f"batch size {value}" + (f" in the DataLoader at {where}" if where else "")
    return {
        "knob": BATCH_SIZE,
        "title": title,
        "snippet": f"loader = DataLoader(dataset, batch_size={value}, ...)",
    }


def _compile(mode: str, report: Mapping[str, Any]) -> dict[str, str]:
    models = (report.get(COMPILE) or {}).get("models") or []
    cls = models[0].get("class") if models else None
    call = "torch.compile(model)" if mode == "default" else f'torch.compile(model, mode="{mode}")'
    return {
        "knob": COMPILE,
        "title": f"compile the model the optimizer trains{f' ({cls})' if cls else ''} with "
                 f"torch.compile, mode {mode}",
        "snippet": f"model = {call}  # once, after building the model",
    }
