"""Small typed containers passed between stages. Conventions: docs/conventions.md.

Cameras are OpenCV camera-to-world 4x4 extrinsics with normalised 3x3 intrinsics
(fx/W, fy/H, cx/W, cy/H); images are float in [0, 1] shaped [..., 3, H, W].
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from jaxtyping import Float, Int
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.geometry.rotations import quaternion_to_matrix


def _map_tensors(obj, fn):
    """Apply `fn` to every tensor field of a dataclass (None fields stay None)."""
    changes = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Tensor):
            changes[f.name] = fn(value)
        elif hasattr(value, "__dataclass_fields__"):
            changes[f.name] = _map_tensors(value, fn)
    return replace(obj, **changes)


class _TensorContainer:
    def to(self, *args, **kwargs):
        """`Tensor.to` on every tensor field, as `nn.Module.to` does it: a dtype converts only the
        floating-point fields (indices stay integers)."""
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        return _map_tensors(
            self, lambda t: t.to(device, dtype if t.is_floating_point() else None, non_blocking=non_blocking)
        )

    def select(self, item):
        """Index every tensor field along the leading (batch/view) axes."""
        return _map_tensors(self, lambda t: t[item])


@dataclass
class Cameras(_TensorContainer):
    """Pinhole cameras: OpenCV axes (x right, y down, z forward), camera-to-world, normalised intrinsics."""

    extrinsics: Float[Tensor, "*batch 4 4"]
    intrinsics: Float[Tensor, "*batch 3 3"]

    def __len__(self) -> int:
        return self.extrinsics.shape[0]


@dataclass
class Views(_TensorContainer):
    """Images with their cameras and the depth range the scene lies in."""

    image: Float[Tensor, "*batch view 3 height width"]
    extrinsics: Float[Tensor, "*batch view 4 4"]
    intrinsics: Float[Tensor, "*batch view 3 3"]
    near: Float[Tensor, "*batch view"]
    far: Float[Tensor, "*batch view"]
    index: Int[Tensor, "*batch view"] | None = None

    @property
    def cameras(self) -> Cameras:
        return Cameras(self.extrinsics, self.intrinsics)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.image.shape[-2:])


@dataclass
class Example(_TensorContainer):
    """One sample: two context views and the target views between them (targets include both ends)."""

    context: Views
    target: Views
    scene: str = ""


@dataclass
class Gaussians(_TensorContainer):
    """3D Gaussians. Quaternions are wxyz (gsplat order); colour is real spherical harmonics in the
    Inria 3DGS basis with layout [..., d_sh, 3] (d_sh = (degree + 1)^2), so that colour = SH·basis + 0.5."""

    means: Float[Tensor, "*batch gaussian 3"]
    scales: Float[Tensor, "*batch gaussian 3"]
    rotations: Float[Tensor, "*batch gaussian 4"]
    harmonics: Float[Tensor, "*batch gaussian d_sh 3"]
    opacities: Float[Tensor, "*batch gaussian"]

    @property
    def sh_degree(self) -> int:
        return int(round(self.harmonics.shape[-2] ** 0.5)) - 1

    def covariances(self) -> Float[Tensor, "*batch gaussian 3 3"]:
        """Σ = R S Sᵀ Rᵀ."""
        rotation = quaternion_to_matrix(self.rotations)
        scaled = rotation * self.scales.unsqueeze(-2)
        return scaled @ scaled.transpose(-1, -2)

    def __len__(self) -> int:
        return self.means.shape[-2]


@dataclass
class RenderOutput(_TensorContainer):
    color: Float[Tensor, "*batch 3 height width"]
    depth: Float[Tensor, "*batch height width"]
    alpha: Float[Tensor, "*batch height width"]


def check_finite(name: str, tensor: Tensor) -> None:
    """Raise a one-line error when a tensor holds NaN or inf."""
    if not torch.isfinite(tensor).all():
        raise VideoSceneError(f"{name} contains NaN or inf values; check the input file that provided it")
