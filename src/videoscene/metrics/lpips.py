"""LPIPS-VGG (Zhang et al. 2018) for evaluation, from network weights the user supplies by path.

LPIPS needs a pretrained VGG16 and the LPIPS linear heads; neither can be downloaded here. The network
itself is a plain-torch VGG16 feature stack with torchvision's state-dict layout, unit-normalised activations
at relu1_2 … relu5_3, non-negative per-channel heads, spatial mean, sum over depths; the prior also trains
with it (`videoscene.prior.losses`). Weight files: torchvision's `vgg16`
state dict (keys `features.N.weight/bias`) and the LPIPS "vgg" heads (keys `linK.model.1.weight`), in one
file or two, `.safetensors` or `.pth` (read with `torch.load(weights_only=True)`).

Without weight files evaluation skips LPIPS (the metric is left out of the report), it never fails.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor, nn

from videoscene.errors import VideoSceneError
from videoscene.io_utils import load_safetensors

logger = logging.getLogger(__name__)

# VGG16 `features` layout (torchvision indices, so its state-dict keys load unchanged): convolution widths,
# "M" = 2x2 max-pool. LPIPS reads the ReLU after the last convolution of each of the 5 stages.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_LPIPS_TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """LPIPS-VGG (Zhang et al. 2018): unit-normalised VGG16 activations at 5 depths, squared differences
    weighted per channel by learned non-negative linear layers, averaged over space, summed over depths.

    Weights come from files the user supplies: torchvision's VGG16 state dict (keys `features.N.*`) and the
    LPIPS linear layers (keys `linK.model.1.weight`), in one file or two (.safetensors, or .pth read with
    `weights_only=True`)."""

    def __init__(self, weight_files: Sequence[str | Path]):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for entry in _VGG16:
            if entry == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_channels, entry, 3, padding=1), nn.ReLU()]
                in_channels = entry
        self.features = nn.Sequential(*layers)
        widths = [
            c for i, c in enumerate(_VGG16) if c != "M" and (i + 1 == len(_VGG16) or _VGG16[i + 1] == "M")
        ]
        self.lins = nn.ModuleList(nn.Conv2d(width, 1, 1, bias=False) for width in widths)
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(3, 1, 1), persistent=False)
        self._load(weight_files)
        self.requires_grad_(False)
        self.eval()

    def _load(self, weight_files: Sequence[str | Path]) -> None:
        state: dict[str, Tensor] = {}
        for path in map(Path, weight_files):
            if not path.is_file():
                raise VideoSceneError(
                    f"LPIPS weights file {path} does not exist; give the VGG16 and LPIPS-linear weight files"
                )
            if path.suffix == ".safetensors":
                state.update(load_safetensors(path, "LPIPS weights"))
            else:
                try:
                    state.update(torch.load(path, map_location="cpu", weights_only=True))
                except Exception as error:  # pickle/zip errors come in many types
                    raise VideoSceneError(
                        f"cannot read LPIPS weights {path} as a tensor file ({type(error).__name__})"
                    ) from None
        mapped = {key: value for key, value in state.items() if key.startswith("features.")}
        for index in range(len(self.lins)):
            key = f"lin{index}.model.1.weight"
            if key in state:
                mapped[f"lins.{index}.weight"] = state[key]
        expected = set(self.state_dict())
        if set(mapped) != expected:
            missing = sorted(expected - set(mapped))
            raise VideoSceneError(
                f"LPIPS weight files lack {len(missing)} tensors (e.g. {missing[0] if missing else '-'}); "
                "supply torchvision's vgg16 state dict and the LPIPS 'vgg' linear layers"
            )
        try:
            self.load_state_dict(mapped)
        except RuntimeError:
            raise VideoSceneError(
                "LPIPS weight files have tensors of the wrong shape; they must be for VGG16"
            ) from None

    def forward(
        self, x: Float[Tensor, "*batch 3 h w"], y: Float[Tensor, "*batch 3 h w"]
    ) -> Float[Tensor, "*batch"]:
        batch_shape = x.shape[:-3]
        both = torch.cat([x.reshape(-1, *x.shape[-3:]), y.reshape(-1, *y.shape[-3:])])
        h = ((2 * both - 1) - self.shift) / self.scale  # LPIPS expects [-1, 1] inputs, then its scaling layer
        distance = 0
        taps = iter(self.lins)
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in _LPIPS_TAPS:
                unit = h / (h.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
                fx, fy = unit.chunk(2)
                distance = distance + next(taps)((fx - fy).square()).mean(dim=(-3, -2, -1))
        return distance.reshape(batch_shape)


def load_lpips(
    weight_files: Sequence[str | os.PathLike] | None, device: str | torch.device = "cpu"
) -> LPIPS | None:
    """The LPIPS network from the given weight files, or None (LPIPS skipped) when none are given.

    Files that are given but missing or malformed raise a one-line VideoSceneError: asking for LPIPS and
    silently not getting it would be worse than failing."""
    if not weight_files:
        logger.info("no LPIPS weight files given: LPIPS is skipped")
        return None
    return LPIPS(list(weight_files)).to(device)
