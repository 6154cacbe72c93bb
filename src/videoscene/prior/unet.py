"""The 2D U-Net that refines MVSplat's cost volume and its full-resolution depth (MVSplat §3.2): the
latent-diffusion U-Net layout without timestep embedding, post-norm residual blocks (conv -> group norm ->
SiLU), and self-attention whose tokens are every view's pixels at once, so that views exchange
information inside the U-Net.

Module names follow that layout (`input_blocks.N.M`, `middle_block`, `output_blocks`, `out`), so that the
released MVSplat weights load strictly. Inputs are [B·V, C, H, W] with the view index fastest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def normalization(channels: int) -> nn.GroupNorm:
    """8 groups, or 4 where the width is not a multiple of 8."""
    return nn.GroupNorm(8 if channels % 8 == 0 else 4, channels)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero the parameters, so that a residual branch starts as the identity."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class ResBlock(nn.Module):
    """x -> skip(x) + SiLU(GN(conv(SiLU(GN(conv(x)))))), the last group norm zero-initialised."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1), normalization(out_channels), nn.SiLU()
        )
        self.out_layers = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            zero_init(normalization(out_channels)),
            nn.SiLU(),
        )
        self.skip_connection = (
            nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: Tensor, views: int) -> Tensor:
        return self.skip_connection(x) + self.out_layers(self.in_layers(x))


class CrossViewAttention(nn.Module):
    """x + GN(proj(attention(qkv(x)))) over the pixels of all views of a scene together.

    The 1x1 projections are Conv1d and q, k, v sit per head in consecutive blocks of channels
    ([q₀ k₀ v₀ q₁ k₁ v₁ ...]), as in the latent-diffusion code the released weights come from."""

    def __init__(self, channels: int, head_channels: int):
        super().__init__()
        self.heads = channels // head_channels
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        self.norm = zero_init(normalization(channels))

    def forward(self, x: Float[Tensor, "bv c h w"], views: int) -> Float[Tensor, "bv c h w"]:
        bv, c, h, w = x.shape
        flat = x.reshape(bv, c, h * w)
        # [b·v, heads·3·d, hw] -> [b, heads, v·hw, 3·d]: every view's tokens in one sequence.
        qkv = self.qkv(flat).reshape(bv // views, views, self.heads, 3 * c // self.heads, h * w)
        qkv = qkv.permute(0, 2, 1, 4, 3).flatten(2, 3)
        q, k, v = qkv.chunk(3, dim=-1)
        attended = F.scaled_dot_product_attention(q, k, v)  # [b, heads, v·hw, d]
        attended = attended.unflatten(2, (views, h * w)).permute(0, 2, 1, 4, 3).reshape(bv, c, h * w)
        return (flat + self.norm(self.proj_out(attended))).reshape(bv, c, h, w)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, views: int) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, views: int) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Stage(nn.ModuleList):
    """Layers run in order, each told how many views a scene has."""

    def forward(self, x: Tensor, views: int) -> Tensor:
        for layer in self:
            x = x if isinstance(layer, nn.Identity) else layer(x, views)
        return x


class InputConv(nn.Conv2d):
    def forward(self, x: Tensor, views: int) -> Tensor:
        return super().forward(x)


class UNet(nn.Module):
    """Width `channels` at every level times `channel_mult`; attention at the downsampling factors in
    `attention_levels`; `res_blocks` residual blocks per level on the way down (one more on the way up)."""

    def __init__(
        self,
        channels: int,
        channel_mult: tuple[int, ...],
        attention_levels: tuple[int, ...],
        res_blocks: int,
        head_channels: int,
        checkpointing: bool = False,
    ):
        super().__init__()
        self.checkpointing = checkpointing

        def level(in_channels: int, out_channels: int, factor: int) -> list[nn.Module]:
            layers: list[nn.Module] = [ResBlock(in_channels, out_channels)]
            if factor in attention_levels:
                layers.append(CrossViewAttention(out_channels, head_channels))
            return layers

        self.input_blocks = nn.ModuleList([Stage([InputConv(channels, channels, 3, padding=1)])])
        skip_widths = [channels]
        width, factor = channels, 1
        for index, mult in enumerate(channel_mult):
            for _ in range(res_blocks):
                self.input_blocks.append(Stage(level(width, mult * channels, factor)))
                width = mult * channels
                skip_widths.append(width)
            if index != len(channel_mult) - 1:
                self.input_blocks.append(Stage([Downsample(width)]))
                skip_widths.append(width)
                factor *= 2
        # The middle block's empty slot is where the layout's optional attention would sit.
        self.middle_block = Stage([ResBlock(width, width), nn.Identity(), ResBlock(width, width)])
        self.output_blocks = nn.ModuleList()
        for index, mult in reversed(list(enumerate(channel_mult))):
            for block in range(res_blocks + 1):
                layers = level(width + skip_widths.pop(), mult * channels, factor)
                width = mult * channels
                if index and block == res_blocks:
                    layers.append(Upsample(width))
                    factor //= 2
                self.output_blocks.append(Stage(layers))
        self.out = nn.Sequential(nn.Conv2d(width, channels, 3, padding=1), normalization(channels), nn.SiLU())

    def _run(self, stage: Stage, x: Tensor, views: int) -> Tensor:
        if self.checkpointing and self.training:
            return checkpoint(stage, x, views, use_reentrant=False)
        return stage(x, views)

    def forward(self, x: Float[Tensor, "bv c h w"], views: int) -> Float[Tensor, "bv c h w"]:
        skips = []
        for stage in self.input_blocks:
            x = self._run(stage, x, views)
            skips.append(x)
        x = self._run(self.middle_block, x, views)
        for stage in self.output_blocks:
            x = self._run(stage, torch.cat([x, skips.pop()], dim=1), views)
        return self.out(x)
