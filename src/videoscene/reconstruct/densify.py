"""The optimised Gaussians, their Adam optimiser, and adaptive density control as in 3D Gaussian Splatting
(Kerbl et al. 2023, §5.2):

- every Gaussian accumulates the norm of its *view-space positional gradient* ∂L/∂μ' (μ' its projected
  centre, in normalised device coordinates) over the views that see it. 3DGS's threshold, 2e-4, holds for
  its images, about 800 pixels high; with the loss a mean over pixels, a Gaussian of a given footprint in
  pixels gets an NDC gradient ∝ 1/H, so the gradient is scaled by H / 800 (`REFERENCE_HEIGHT`) before it
  is compared (at 64×96, 3DGS's threshold would densify most of the prior's Gaussians at once);
- at each densification step, Gaussians whose mean gradient is at least `grad_threshold` are *cloned* when
  small (largest scale ≤ `percent_dense` × scene extent: under-reconstruction, a copy of itself) and *split*
  when large (over-reconstruction: replaced by two Gaussians drawn from its own distribution, scales ÷ 1.6);
- Gaussians more transparent than `min_opacity` (and, once the opacities have been reset, those larger than
  `max_world_scale` × extent) are pruned;
- opacities are reset now and then to at most 0.01, so that Gaussians that are not needed fade and are
  pruned.
Unlike 3DGS, the count is bounded: when the candidates would exceed `max_gaussians`, only those with the
largest gradients are densified. The Adam moments of surviving Gaussians are kept; new ones start at zero.

The view-space gradient is recovered from the 3D means' gradient, so that any rasterizer backend serves:
with P = ∂μ'/∂μ the 2×3 Jacobian of the pinhole projection at the mean, ∂L/∂μ = Pᵀ ∂L/∂μ' when the loss
reaches μ only through μ', so ∂L/∂μ' = (P Pᵀ)⁻¹ P ∂L/∂μ. It ignores the mean's smaller effect on the
footprint (the EWA Jacobian) and on the view-dependent colour. One view per step keeps the gradient of
each view apart, as in 3DGS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from videoscene.geometry.rotations import quaternion_to_matrix
from videoscene.types import Gaussians

FIELDS = ("means", "log_scales", "rotations", "sh0", "sh_rest", "opacity_logits")
REFERENCE_HEIGHT = 800  # image height, in pixels, at which 3DGS's gradient threshold holds
RESET_OPACITY = 0.01  # 3DGS resets opacities to at most this
SPLIT_SCALE = 1.6  # a split Gaussian's children have its scales divided by this (3DGS: 0.8 · N, N = 2)


@dataclass(frozen=True)
class DensifyConfig:
    """3DGS's densification constants (Kerbl et al. 2023, §5.2; their released defaults), plus the cap."""

    grad_threshold: float = 2e-4  # mean ‖∂L/∂μ'‖ (NDC, × H / 800) at or above which to densify
    percent_dense: float = 0.01  # clone when the largest scale is at most this × extent, else split
    min_opacity: float = 0.005  # prune below
    max_world_scale: float = 0.1  # after an opacity reset, prune Gaussians larger than this × extent
    max_gaussians: int | None = None  # cap on the count (None: twice the initial count)


class GaussianParameters:
    """Unconstrained parameters of G Gaussians (means, log-scales, unnormalised wxyz quaternions, SH band 0
    and the higher bands, opacity logits), their Adam optimiser with one learning rate per field, and the
    densification statistics."""

    def __init__(self, gaussians: Gaussians, learning_rates: dict[str, float]):
        probability = gaussians.opacities.clamp(1e-6, 1 - 1e-6)
        values = {
            "means": gaussians.means,
            "log_scales": gaussians.scales.clamp_min(1e-12).log(),
            "rotations": torch.nn.functional.normalize(gaussians.rotations, dim=-1),
            "sh0": gaussians.harmonics[:, :1],
            "sh_rest": gaussians.harmonics[:, 1:],
            "opacity_logits": torch.log(probability / (1 - probability)),
        }
        self.tensors = {name: values[name].detach().clone().float().requires_grad_() for name in FIELDS}
        self.optimizer = torch.optim.Adam(
            [{"params": [self.tensors[name]], "lr": learning_rates[name], "name": name} for name in FIELDS],
            eps=1e-15,
        )
        self.reset_statistics()

    def __len__(self) -> int:
        return self.tensors["means"].shape[0]

    def gaussians(self) -> Gaussians:
        """The Gaussians these parameters describe (differentiable)."""
        t = self.tensors
        return Gaussians(
            means=t["means"],
            scales=t["log_scales"].exp(),
            rotations=torch.nn.functional.normalize(t["rotations"], dim=-1),
            harmonics=torch.cat([t["sh0"], t["sh_rest"]], dim=1),
            opacities=torch.sigmoid(t["opacity_logits"]),
        )

    def set_learning_rate(self, name: str, value: float) -> None:
        for group in self.optimizer.param_groups:
            if group["name"] == name:
                group["lr"] = value

    # -- statistics --------------------------------------------------------------------------------------

    def reset_statistics(self) -> None:
        device = self.tensors["means"].device
        self.grad_sum = torch.zeros(len(self), device=device)
        self.views_seen = torch.zeros(len(self), device=device)

    @torch.no_grad()
    def accumulate_view_gradient(
        self,
        extrinsics: Float[Tensor, "4 4"],
        intrinsics: Float[Tensor, "3 3"],
        image_shape: tuple[int, int],
        near: float = 0.01,
    ) -> None:
        """Add ‖∂L/∂μ'‖ (NDC) of the view just back-propagated to every Gaussian it reached (module
        docstring); call after `backward` and before the optimiser step."""
        grad = self.tensors["means"].grad
        if grad is None:
            return
        height, width = image_shape
        means = self.tensors["means"].detach()
        rotation = extrinsics[:3, :3].T.to(means)  # world -> camera
        camera = (means - extrinsics[:3, 3].to(means)) @ rotation.T
        x, y, z = camera.unbind(-1)
        reached = (grad.abs().sum(-1) > 0) & (z > near)
        z = torch.where(reached, z, torch.ones_like(z))
        fx, fy = float(intrinsics[0, 0]) * width, float(intrinsics[1, 1]) * height
        zeros = torch.zeros_like(z)
        jacobian = torch.stack(
            [
                torch.stack([fx / z, zeros, -fx * x / z**2], -1),
                torch.stack([zeros, fy / z, -fy * y / z**2], -1),
            ],
            dim=-2,
        )  # [G, 2, 3], camera coordinates
        projection = jacobian @ rotation  # ∂μ'/∂μ in pixels per world unit
        normal = projection @ projection.transpose(-1, -2)
        normal = torch.where(reached[:, None, None], normal, torch.eye(2, device=normal.device))
        pixels = torch.linalg.solve(normal, (projection @ grad[:, :, None]))[..., 0]  # ∂L/∂μ' in pixels
        ndc = pixels * pixels.new_tensor([width / 2, height / 2])  # NDC x = 2·px / W − 1
        self.grad_sum += torch.where(reached, ndc.norm(dim=-1), zeros) * (height / REFERENCE_HEIGHT)
        self.views_seen += reached.float()

    # -- density control ---------------------------------------------------------------------------------

    @torch.no_grad()
    def densify_and_prune(
        self, config: DensifyConfig, extent: float, cap: int, prune_large: bool, generator: torch.Generator
    ) -> dict[str, int]:
        """Clone, split and prune (module docstring); returns the counts of each."""
        gaussians = self.gaussians()
        mean_grad = self.grad_sum / self.views_seen.clamp_min(1)
        candidates = mean_grad >= config.grad_threshold
        largest = gaussians.scales.max(dim=-1).values
        small = largest <= config.percent_dense * extent
        # Each clone and each split adds one Gaussian: keep the steepest candidates within the cap.
        budget = max(cap - len(self), 0)
        if int(candidates.sum()) > budget:
            order = torch.argsort(torch.where(candidates, mean_grad, -1.0), descending=True)
            candidates = torch.zeros_like(candidates)
            candidates[order[:budget]] = True
        clone, split = candidates & small, candidates & ~small
        new = {name: [] for name in FIELDS}
        for name in FIELDS:
            new[name].append(self.tensors[name][clone])
        # Split: two children drawn from the parent's distribution, with smaller scales; the parent goes.
        children = 2
        if split.any():
            scales = gaussians.scales[split].repeat(children, 1)
            rotation = quaternion_to_matrix(gaussians.rotations[split]).repeat(children, 1, 1)
            noise = torch.randn(scales.shape, generator=generator).to(scales)
            offsets = (rotation @ (noise * scales)[..., None])[..., 0]
            for name in FIELDS:
                new[name].append(
                    self.tensors[name][split].repeat(children, *[1] * (self.tensors[name].ndim - 1))
                )
            new["means"][-1] = new["means"][-1] + offsets
            new["log_scales"][-1] = new["log_scales"][-1] - math.log(SPLIT_SCALE)
        keep = ~split
        prune = torch.sigmoid(self.tensors["opacity_logits"]) < config.min_opacity
        if prune_large:
            prune |= largest > config.max_world_scale * extent
        prune &= keep
        if not (keep & ~prune).any() and not (clone.any() or split.any()):
            prune[torch.argmax(self.tensors["opacity_logits"])] = False  # never prune every Gaussian
        self._replace(keep & ~prune, {name: torch.cat(parts) for name, parts in new.items()})
        self.reset_statistics()
        return {"cloned": int(clone.sum()), "split": int(split.sum()), "pruned": int(prune.sum())}

    @torch.no_grad()
    def reset_opacity(self) -> None:
        """Opacities to at most `RESET_OPACITY`, with fresh Adam moments for them (3DGS)."""
        logits = self.tensors["opacity_logits"]
        logits.clamp_(max=math.log(RESET_OPACITY / (1 - RESET_OPACITY)))
        state = self.optimizer.state.get(logits, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].zero_()

    def _replace(self, keep: Bool[Tensor, " gaussian"], appended: dict[str, Tensor]) -> None:
        """Keep the rows `keep` of every field and append `appended`; Adam moments follow (zero for new
        rows), and the optimiser is pointed at the new tensors."""
        for group in self.optimizer.param_groups:
            name = group["name"]
            old = group["params"][0]
            extra = appended[name]
            tensor = torch.cat([old.detach()[keep], extra.detach()]).requires_grad_()
            state = self.optimizer.state.pop(old, None)
            if state:
                for key in ("exp_avg", "exp_avg_sq"):
                    state[key] = torch.cat([state[key][keep], torch.zeros_like(extra)])
                self.optimizer.state[tensor] = state
            group["params"][0] = tensor
            self.tensors[name] = tensor
