"""LPIPS (Zhang et al. 2018) with its ImageNet backbone taken from the model store, never downloaded.

The ``lpips`` package ships its learned linear heads (``weights/v0.1/*.pth``) but fetches the backbone
(torchvision AlexNet/VGG16 ImageNet weights) from the internet at construction. Here the package builds
the network with a random backbone, and the real backbone weights are copied in from the store (imported
by the user with ``talkstudio models import``), through the registry.
"""

from __future__ import annotations

import warnings

import torch

from studio.core.errors import ConfigError
from studio.models import store

# torchvision feature index -> lpips slice, for each backbone (lpips.pretrained_networks)
_SLICES = {"alex": ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12)),
           "vgg": ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))}
STORE_NAMES = {"alex": "lpips-alexnet", "vgg": "lpips-vgg16"}


def _slice_of(net: str, index: int) -> int:
    for k, (lo, hi) in enumerate(_SLICES[net], start=1):
        if lo <= index < hi:
            return k
    raise KeyError(index)


def build_lpips(net: str = "alex", *, random_backbone: bool = False, device: str | torch.device = "cpu"
                ) -> torch.nn.Module:
    """An LPIPS module taking two (N, 3, H, W) images in [-1, 1] and returning (N, 1, 1, 1) distances.

    Args:
        net: "alex" (PTI's choice) or "vgg" (the paper's stage-one loss).
        random_backbone: skip the ImageNet backbone (tests only: distances are then not perceptual).
        device: where to put it.

    Raises:
        ModelError: the backbone is not in the model store (the message names the file and how to import it).
        ConfigError: unknown net.
    """
    if net not in STORE_NAMES:
        raise ConfigError(f"unknown LPIPS network {net!r}", "use 'alex' or 'vgg'")
    import lpips

    if not random_backbone:
        store.require(STORE_NAMES[net], feature=f"LPIPS ({net})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's 'pretrained' deprecation chatter
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    if not random_backbone:
        weights = store.load_weights(STORE_NAMES[net]).state
        mapped = {}
        for key, value in weights.items():
            if not key.startswith("features."):
                continue  # the classifier is not part of LPIPS
            _, index, param = key.split(".")
            mapped[f"slice{_slice_of(net, int(index))}.{index}.{param}"] = value
        model.net.load_state_dict(mapped, strict=True)
    model.eval().requires_grad_(False)
    return model.to(device)
