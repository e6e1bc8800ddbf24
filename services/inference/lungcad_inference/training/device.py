"""Where training runs: the device choice, optional mixed precision (CUDA only) and CPU copies
of states for checkpoints, so a checkpoint written on a GPU loads on any machine.

Batches are built on the CPU (numpy + ``grid_sample``, seeded) and moved to the device, so a
run sees the same data stream whatever the device. On the CPU a run is deterministic for a seed
and thread count; CUDA kernels (and AMP) are not bit-reproducible.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> str:
    """``"auto"``: ``"cuda"`` when torch sees a GPU, else ``"cpu"``; ``"cuda"`` without one
    raises ``ValueError``."""
    import torch

    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA GPU "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    return name


def amp_enabled(device: str, requested: bool) -> bool:
    """Mixed precision only on CUDA; on the CPU training stays float32."""
    return requested and device.startswith("cuda")


def autocast(device: Any, enabled: bool) -> AbstractContextManager[Any]:
    """float16 autocast on ``device`` when ``enabled`` (see :func:`amp_enabled`: CUDA only); a
    no-op context otherwise."""
    import torch

    if not enabled:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.float16)


def grad_scaler(enabled: bool) -> Any:
    """A CUDA ``GradScaler``; disabled it passes losses and steps through unchanged."""
    import torch

    return torch.amp.GradScaler("cuda", enabled=enabled)


def to_device(tensors: dict[str, Any], device: str) -> dict[str, Any]:
    """Each tensor of ``tensors`` on ``device`` (the same objects when already there)."""
    return {k: v.to(device, non_blocking=True) for k, v in tensors.items()}


def cpu_copy(state: Any) -> Any:
    """``state`` (a state dict, possibly nested in dicts, lists and tuples) with every tensor
    detached and copied to the CPU; other values as they are."""
    import torch

    if isinstance(state, torch.Tensor):
        return state.detach().cpu().clone()
    if isinstance(state, dict):
        return type(state)((k, cpu_copy(v)) for k, v in state.items())
    if isinstance(state, list | tuple):
        return type(state)(cpu_copy(v) for v in state)
    return state


def module_device(model: Any) -> Any:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    import torch

    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")
