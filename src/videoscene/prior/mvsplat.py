"""MVSplat's output layout, and the comparison of our prior with outputs MVSplat's own encoder computed.

MVSplat's encoder returns, per scene, Gaussians in world space as `means` [G, 3], `covariances` [G, 3, 3],
`harmonics` [G, 3, d_sh] (RGB × SH coefficients) and `opacities` [G], one Gaussian per pixel (and per
`gaussians_per_pixel`), view-major: the order of our `Gaussians`. A reference file holds its inputs
(`image`, `intrinsics`, `extrinsics`, `near`, `far`, with a batch axis) and those outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.io_utils import load_safetensors
from videoscene.prior.encoder import GaussianEncoder
from videoscene.types import Gaussians, Views

INPUTS = ("image", "intrinsics", "extrinsics", "near", "far")
OUTPUTS = ("means", "covariances", "harmonics", "opacities")
# The largest error allowed on each output, relative to that output's largest magnitude: float32 round-off
# through six transformer blocks and two U-Nets (measured on the bundled reference: at most 2.1e-5).
TOLERANCE = 1e-4


def mvsplat_layout(gaussians: Gaussians) -> dict[str, Tensor]:
    """Our Gaussians in MVSplat's output layout."""
    return {
        "means": gaussians.means,
        "covariances": gaussians.covariances(),
        "harmonics": gaussians.harmonics.transpose(-1, -2),
        "opacities": gaussians.opacities,
    }


@dataclass(frozen=True)
class OutputError:
    name: str
    max_abs: float
    max_rel: float  # max_abs over the reference's largest magnitude

    @property
    def ok(self) -> bool:
        return self.max_rel <= TOLERANCE


def compare_with_reference(encoder: GaussianEncoder, reference: str | Path) -> list[OutputError]:
    """Run `encoder` (in eval mode, float32) on a reference file's inputs; the error of each output."""
    tensors = load_safetensors(Path(reference), "MVSplat reference file")
    missing = [name for name in INPUTS + OUTPUTS if name not in tensors]
    if missing:
        raise VideoSceneError(
            f"{reference} is not an MVSplat reference file: it lacks {missing}; it needs the inputs "
            f"{list(INPUTS)} and the outputs {list(OUTPUTS)}"
        )
    context = Views(**{name: tensors[name].float() for name in INPUTS})
    training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            ours = mvsplat_layout(encoder(context).gaussians)
    finally:
        encoder.train(training)
    errors = []
    for name in OUTPUTS:
        expected = tensors[name].float()
        if ours[name].shape != expected.shape:
            raise VideoSceneError(
                f"the prior's {name} have shape {list(ours[name].shape)} but the reference's have "
                f"{list(expected.shape)}: the weights' config does not match the reference's"
            )
        max_abs = float((ours[name] - expected).abs().max())
        errors.append(OutputError(name, max_abs, max_abs / max(float(expected.abs().max()), 1e-12)))
    return errors
