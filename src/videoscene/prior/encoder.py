"""The feed-forward Gaussian prior (MVSplat's cost-volume encoder): context views with cameras -> one or
more 3D Gaussians per pixel.

    backbone (CNN + multi-view transformer, 1/4 res) -> plane-sweep cost volume -> depth (+ density)
    -> Gaussian head (offset, scale, rotation, SH colour, opacity) in world space

It computes what MVSplat's released encoder computes, module for module, and its state dict has the same
names, so MVSplat's checkpoint loads strictly (`videoscene weights import-mvsplat`). Weights are stored as
`prior.safetensors` beside `prior_config.json` (an `EncoderConfig`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors.torch import save_file
from torch import Tensor, nn

from videoscene.errors import VideoSceneError
from videoscene.geometry.cameras import check_rigid
from videoscene.io_utils import atomic_path, load_safetensors
from videoscene.prior.backbone import MultiViewBackbone
from videoscene.prior.config import EncoderConfig
from videoscene.prior.cost_volume import DepthPredictor
from videoscene.prior.gaussian_head import GaussianAdapter
from videoscene.types import Gaussians, Views

WEIGHTS_FILE = "prior.safetensors"
CONFIG_FILE = "prior_config.json"


@dataclass
class EncoderOutput:
    gaussians: Gaussians  # B x (V · H · W · gpp) Gaussians, ordered (view, row, column, gaussian-per-pixel)
    depth: Float[
        Tensor, "b v gpp h w"
    ]  # in [near, far]: z-depth to the plane sweep, ray distance to the means
    opacity: Float[Tensor, "b v gpp h w"]


def check_context(context: Views, size_multiple: int, assume_rigid: bool = False) -> None:
    """One clear line for every input the encoder cannot handle. `assume_rigid`: the caller has already
    checked that the extrinsics are rigid (`check_rigid`; on the CPU, where it costs no device sync)."""
    image = context.image
    if image.ndim != 5 or image.shape[2] != 3:
        raise VideoSceneError(
            f"context images must be [batch, views, 3, height, width], got {list(image.shape)}"
        )
    b, v, _, h, w = image.shape
    if v < 2:
        raise VideoSceneError(f"the prior needs at least 2 context views, got {v}")
    expected = {"extrinsics": (b, v, 4, 4), "intrinsics": (b, v, 3, 3), "near": (b, v), "far": (b, v)}
    for name, shape in expected.items():
        actual = tuple(getattr(context, name).shape)
        if actual != shape:
            raise VideoSceneError(
                f"context {name} must have shape {list(shape)} to match the images, got {list(actual)}"
            )
    if h % size_multiple or w % size_multiple:
        fit_h, fit_w = (
            max(size_multiple, h // size_multiple * size_multiple),
            max(size_multiple, w // size_multiple * size_multiple),
        )
        raise VideoSceneError(
            f"image size {h}x{w} is not a multiple of {size_multiple} as this encoder needs; resize or "
            f"crop to e.g. {fit_h}x{fit_w}"
        )
    for name in ("image", "extrinsics", "intrinsics", "near", "far"):
        if not torch.isfinite(getattr(context, name)).all():
            raise VideoSceneError(f"context {name} contains NaN or inf")
    if not ((context.near > 0) & (context.near < context.far)).all():
        raise VideoSceneError(
            "context near/far must satisfy 0 < near < far for every view; check the dataset's depth range"
        )
    if not assume_rigid:
        check_rigid(context.extrinsics.detach().cpu(), "context extrinsics (camera-to-world)")
    focal = torch.stack([context.intrinsics[..., 0, 0], context.intrinsics[..., 1, 1]])
    if not (focal > 0).all():
        raise VideoSceneError("context intrinsics must have positive focal lengths (normalised fx/W, fy/H)")
    # Depth comes from parallax: two cameras at the same centre (e.g. the same view twice) give none.
    centres = context.extrinsics[..., :3, 3]
    baseline = (centres[:, :, None] - centres[:, None, :]).norm(dim=-1)
    baseline = baseline.masked_fill(torch.eye(v, dtype=torch.bool, device=baseline.device), float("inf"))
    if (baseline.amin(dim=(1, 2)) < 1e-3 * context.near.amin(dim=1)).any():
        raise VideoSceneError(
            "two context cameras sit at (almost) the same position, so depth cannot be triangulated; "
            "pick views with a baseline"
        )


def stack_context(
    images: Sequence[Float[Tensor, "3 h w"]],
    extrinsics: Float[Tensor, "v 4 4"],
    intrinsics: Float[Tensor, "v 3 3"],
    near: float,
    far: float,
) -> Views:
    """Build a one-scene context batch from separate images; they must share one size."""
    sizes = sorted({tuple(image.shape) for image in images})
    if len(sizes) > 1:
        raise VideoSceneError(f"context views have different sizes {sizes}; resize them to one size first")
    v = len(images)
    return Views(
        image=torch.stack(list(images))[None],
        extrinsics=extrinsics[None],
        intrinsics=intrinsics[None],
        near=torch.full((1, v), float(near)),
        far=torch.full((1, v), float(far)),
    )


class GaussianEncoder(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.backbone = MultiViewBackbone(config)
        self.depth_predictor = DepthPredictor(config)
        self.gaussian_adapter = GaussianAdapter(config)

    def forward(self, context: Views, assume_rigid: bool = False) -> EncoderOutput:
        # 1. Check inputs.
        check_context(context, self.config.size_multiple, assume_rigid)
        images, extrinsics, intrinsics = context.image, context.extrinsics, context.intrinsics

        # 2. Multi-view features at 1/4 resolution.
        trans_features, cnn_features = self.backbone(images)

        # 3. Depth and density from the plane-sweep cost volume.
        depth = self.depth_predictor(
            images, trans_features, cnn_features, extrinsics, intrinsics, context.near, context.far
        )

        # 4. Gaussians in world space.
        gaussians = self.gaussian_adapter(depth, extrinsics, intrinsics)
        return EncoderOutput(
            gaussians=gaussians, depth=depth.depth, opacity=depth.density / self.config.gaussians_per_pixel
        )

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, folder: str | Path) -> None:
        """Write prior.safetensors and prior_config.json into `folder`, each atomically."""
        folder = Path(folder)
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(tmp))
        self.config.save(folder / CONFIG_FILE)

    @classmethod
    def load(cls, weights: str | Path, config: str | Path | EncoderConfig | None = None) -> GaussianEncoder:
        """Load a prior from a folder holding prior.safetensors + prior_config.json, or from a weights file
        (its config is `config`, or prior_config.json beside it)."""
        weights = Path(weights)
        if weights.is_dir():
            weights = weights / WEIGHTS_FILE
        if not weights.is_file():
            raise VideoSceneError(
                f"prior weights {weights} do not exist; train them with `videoscene train prior` or "
                "give the right path"
            )
        if not isinstance(config, EncoderConfig):
            config = EncoderConfig.load(config if config is not None else weights.parent / CONFIG_FILE)
        encoder = cls(config)
        state = load_safetensors(weights, "prior weights")
        expected = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in state.items()}
        if found != expected:
            differing = sorted(set(expected.items()) ^ set(found.items()))
            raise VideoSceneError(
                f"prior weights {weights} do not match the config ({len(differing)} keys or shapes "
                f"differ, e.g. {differing[0][0]}); "
                "pass the config they were trained with"
            )
        encoder.load_state_dict(state)
        return encoder
