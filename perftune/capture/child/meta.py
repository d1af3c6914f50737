"""meta.json's facts only the child knows: torch and device versions and names."""

from __future__ import annotations

from typing import Any

import torch

from perftune.capture.parent.meta import cpu_name


def torch_meta() -> dict[str, Any]:
    """Facts only the child knows: torch and device versions and names.

    Device names are read only when the script itself initialised CUDA, so a CPU script on a GPU
    machine never gets a CUDA context from perftune.
    """
    meta: dict[str, Any] = {
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "hip_version": getattr(torch.version, "hip", None),
        "cuda_available": False,
        "devices": [],
        "torch_threads": torch.get_num_threads(),
    }
    try:
        meta["cuda_available"] = bool(torch.cuda.is_available())
        if meta["cuda_available"] and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            meta["devices"] = [
                torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())
            ]
            meta["cudnn_version"] = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
    except Exception as exc:  # a broken driver must not lose the run's results
        meta["device_error"] = f"{type(exc).__name__}: {exc}"
    if not meta["devices"]:
        meta["devices"] = [f"cpu: {cpu_name()}"]
    return meta
