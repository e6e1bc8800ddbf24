"""Saving and loading network weights with a JSON sidecar.

A weights file ``NAME.pt`` holds ``{"state_dict": ..., "network": {kwargs}}`` (plain tensors and
JSON-like values; loaded with ``weights_only=True``). ``NAME.json`` beside it records the
version, input spacing, HU window, training config and measured metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DETECTOR = "detector"
MALIGNANCY = "malignancy"
SEGMENTATION = "segmentation"


def save_weights(model: Any, network_kwargs: dict[str, Any], path: Path,
                 sidecar: dict[str, Any]) -> None:
    import torch

    from lungcad_inference.training.device import cpu_copy

    path.parent.mkdir(parents=True, exist_ok=True)
    state = cpu_copy(model.state_dict())
    torch.save({"state_dict": state, "network": network_kwargs}, path)
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, default=str) + "\n")


def read_sidecar(path: Path) -> dict[str, Any]:
    side = path.with_suffix(".json")
    return json.loads(side.read_text()) if side.exists() else {}


def load_network(path: Path, cls: type, device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """Build ``cls(**network_kwargs)`` from ``path``, load its weights, put it in eval mode.
    On the CPU the weights take the channels-last 3-D layout: the same arithmetic, about 1.7x
    faster 3-D convolutions (measured on the segmentation network, 2026-12-07)."""
    import torch

    if not path.exists():
        raise FileNotFoundError(f"model weights not found: {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = cls(**blob["network"])
    model.load_state_dict(blob["state_dict"])
    model.eval().to(device)
    if torch.device(device).type == "cpu":
        model = model.to(memory_format=torch.channels_last_3d)
    return model, read_sidecar(path)
