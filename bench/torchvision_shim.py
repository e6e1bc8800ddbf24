"""Bench-only stand-in for the few torchvision helpers that MONAI's RetinaNet imports.

torchvision cannot be installed beside this project's torch build, and MONAI's detection
networks take two small helpers from it (through ``monai.utils.optional_import``, resolved when
the MONAI module is first imported):

- ``torchvision.models._utils.IntermediateLayerGetter`` (``monai/networks/blocks/
  backbone_fpn_utils.py``: the ResNet body of ``BackboneWithFPN``);
- ``torchvision.models.detection.backbone_utils._validate_trainable_layers``
  (``monai/apps/detection/networks/retinanet_network.py``).

``RetinaNetDetector`` also asks for ``torchvision.models.detection._utils.Matcher`` and
``BalancedPositiveNegativeSampler``; those serve training only, are not provided here, and MONAI
keeps them as placeholders that raise if used. Call :func:`install` before importing
``monai.apps.detection``. Nothing here is used by the services.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
import warnings
from collections import OrderedDict

from torch import Tensor, nn

SHIM_VERSION = "0.0+lungcad-shim"


class IntermediateLayerGetter(nn.ModuleDict):
    """The children of ``model`` up to the last one named in ``return_layers``, run in order.

    ``forward`` returns an ordered dict ``{return_layers[name]: output of child name}``; like
    torchvision's, it assumes the children are registered in the order ``model.forward`` runs
    them (true of MONAI's ResNet: conv1, bn1, act, maxpool, layer1..layer4).
    """

    def __init__(self, model: nn.Module, return_layers: dict[str, str]) -> None:
        children = OrderedDict(model.named_children())
        missing = set(return_layers) - set(children)
        if missing:
            raise ValueError(f"return_layers {sorted(missing)} are not children of the model")
        wanted = {str(k): str(v) for k, v in return_layers.items()}
        kept: OrderedDict[str, nn.Module] = OrderedDict()
        for name, module in children.items():
            kept[name] = module
            wanted.pop(name, None)
            if not wanted:
                break
        super().__init__(kept)
        self.return_layers = {str(k): str(v) for k, v in return_layers.items()}

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        out: OrderedDict[str, Tensor] = OrderedDict()
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out


def _validate_trainable_layers(is_trained: bool, trainable_backbone_layers: int | None,
                               max_value: int, default_value: int) -> int:
    """How many backbone layers stay trainable: all of them (``max_value``) for an untrained
    backbone, else ``trainable_backbone_layers`` or ``default_value``; checked in range."""
    if not is_trained:
        if trainable_backbone_layers is not None:
            warnings.warn(f"trainable_backbone_layers has no effect without a pretrained "
                          f"backbone; using {max_value} (all layers trainable)", stacklevel=2)
        trainable_backbone_layers = max_value
    if trainable_backbone_layers is None:
        trainable_backbone_layers = default_value
    if not 0 <= trainable_backbone_layers <= max_value:
        raise ValueError(f"trainable backbone layers must be in [0, {max_value}], "
                         f"got {trainable_backbone_layers}")
    return trainable_backbone_layers


def _module(name: str, **attrs: object) -> types.ModuleType:
    mod = types.ModuleType(name, "lungcad bench shim for " + name)
    # A real spec, so importlib.util.find_spec() on the fake name answers instead of raising.
    mod.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    for key, value in attrs.items():
        setattr(mod, key, value)
    return mod


def install() -> bool:
    """Put the fake ``torchvision`` modules in ``sys.modules``; a no-op (returns ``False``) when
    a real torchvision is importable or the shim is already installed."""
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return False
    utils = _module("torchvision.models._utils", IntermediateLayerGetter=IntermediateLayerGetter)
    backbone_utils = _module("torchvision.models.detection.backbone_utils",
                             _validate_trainable_layers=_validate_trainable_layers)
    detection = _module("torchvision.models.detection", backbone_utils=backbone_utils)
    models = _module("torchvision.models", _utils=utils, detection=detection)
    root = _module("torchvision", models=models, __version__=SHIM_VERSION)
    for mod in (root, models, utils, detection, backbone_utils):
        sys.modules[mod.__name__] = mod
    return True
