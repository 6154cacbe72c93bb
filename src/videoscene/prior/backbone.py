"""Multi-view features at 1/4 resolution: a residual CNN, then a transformer that alternates window
self-attention within a view and window cross-attention to the other views (UPSTREAM.md §1.3 (a)).

Views travel batch-major: a [B, V, ...] tensor is flattened to [B*V, ...] with the view index fastest.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Shaped
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from videoscene.prior.config import EncoderConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def instance_norm(channels: int) -> nn.GroupNorm:
    """Instance norm without affine parameters, as group norm with one channel per group (same maths,
    several times faster than nn.InstanceNorm2d on CPU)."""
    return nn.GroupNorm(channels, channels, affine=False)


class ResidualBlock(nn.Module):
    """Two 3x3 convs with instance norm and ReLU; a strided 1x1 shortcut where the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm1 = instance_norm(out_channels)
        self.norm2 = instance_norm(out_channels)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride), instance_norm(out_channels)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        return F.relu(self.shortcut(x) + y)


class CNNEncoder(nn.Module):
    """Stem (7x7, stride 2) -> stage at 1/2 -> stage at 1/4 (stride 2) -> stage at 1/4 -> 1x1 to d_feature."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        c1, c2, c3 = config.cnn_channels
        self.stem = nn.Sequential(nn.Conv2d(3, c1, 7, stride=2, padding=3), nn.InstanceNorm2d(c1), nn.ReLU())
        stages = []
        in_channels = c1
        for out_channels, stride in ((c1, 1), (c2, 2), (c3, 1)):
            for block in range(config.cnn_blocks_per_stage):
                stages.append(ResidualBlock(in_channels, out_channels, stride if block == 0 else 1))
                in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.head = nn.Conv2d(c3, config.d_feature, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, images: Float[Tensor, "n 3 h w"]) -> Float[Tensor, "n c h/4 w/4"]:
        return self.head(self.stages(self.stem(images)))


def sine_position_encoding(
    height: int, width: int, channels: int, device=None
) -> Float[Tensor, "channels height width"]:
    """DETR-style 2D sine encoding: half the channels encode y, half x; positions normalised to (0, 2π]."""
    per_axis = channels // 2
    frequencies = 10000 ** (
        -torch.arange(per_axis // 2, device=device, dtype=torch.float32) / (per_axis // 2)
    )
    ys = (torch.arange(1, height + 1, device=device, dtype=torch.float32) / height) * 2 * math.pi
    xs = (torch.arange(1, width + 1, device=device, dtype=torch.float32) / width) * 2 * math.pi
    angle_y = ys[:, None] * frequencies  # [h, per_axis/2]
    angle_x = xs[:, None] * frequencies
    encode_y = torch.cat([angle_y.sin(), angle_y.cos()], dim=-1)[:, None, :].expand(height, width, per_axis)
    encode_x = torch.cat([angle_x.sin(), angle_x.cos()], dim=-1)[None, :, :].expand(height, width, per_axis)
    return torch.cat([encode_y, encode_x], dim=-1).permute(2, 0, 1)


def window_partition(x: Shaped[Tensor, "n h w c"], splits: int) -> Shaped[Tensor, "n windows tokens c"]:
    n, h, w, c = x.shape
    x = x.reshape(n, splits, h // splits, splits, w // splits, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(n, splits * splits, (h // splits) * (w // splits), c)


def window_merge(
    x: Float[Tensor, "n windows tokens c"], splits: int, h: int, w: int
) -> Float[Tensor, "n h w c"]:
    n, _, _, c = x.shape
    x = x.reshape(n, splits, splits, h // splits, w // splits, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(n, h, w, c)


def shifted_window_mask(
    h: int, w: int, splits: int, shift: tuple[int, int], device=None
) -> Bool[Tensor, "windows tokens tokens"]:
    """After rolling the map by -shift, windows at the border mix regions that were not adjacent; a
    token may only attend to tokens of its own region (True = may attend)."""
    window_h, window_w = h // splits, w // splits
    region = torch.zeros(h, w, dtype=torch.long, device=device)
    label = 0
    for rows in (slice(0, h - window_h), slice(h - window_h, h - shift[0]), slice(h - shift[0], h)):
        for cols in (slice(0, w - window_w), slice(w - window_w, w - shift[1]), slice(w - shift[1], w)):
            region[rows, cols] = label
            label += 1
    tokens = window_partition(region[None, :, :, None], splits)[0, :, :, 0]  # [windows, tokens]
    return tokens[:, :, None] == tokens[:, None, :]


class AttentionLayer(nn.Module):
    """x + LN(merge(attention(x -> source))), optionally followed by an FFN on [x, message] (GMFlow
    layout)."""

    def __init__(self, channels: int, heads: int, ffn_expansion: int | None):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(channels, channels, bias=False)
        self.key = nn.Linear(channels, channels, bias=False)
        self.value = nn.Linear(channels, channels, bias=False)
        self.merge = nn.Linear(channels, channels, bias=False)
        self.norm = nn.LayerNorm(channels)
        self.ffn = None
        if ffn_expansion is not None:
            hidden = 2 * channels * ffn_expansion
            self.ffn = nn.Sequential(
                nn.Linear(2 * channels, hidden, bias=False),
                nn.GELU(),
                nn.Linear(hidden, channels, bias=False),
            )
            self.ffn_norm = nn.LayerNorm(channels)

    def _split_heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(-2, -3)  # [..., heads, tokens, head_dim]

    def forward(
        self,
        x: Float[Tensor, "n windows tokens c"],
        source: Float[Tensor, "n windows sources c"],
        mask: Bool[Tensor, "windows tokens sources"] | None,
    ) -> Float[Tensor, "n windows tokens c"]:
        q, k, v = (
            self._split_heads(self.query(x)),
            self._split_heads(self.key(source)),
            self._split_heads(self.value(source)),
        )
        message = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, None])
        message = self.norm(self.merge(message.transpose(-2, -3).flatten(-2)))
        if self.ffn is not None:
            message = self.ffn_norm(self.ffn(torch.cat([x, message], dim=-1)))
        return x + message


class TransformerBlock(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.self_attention = AttentionLayer(config.d_feature, config.transformer_heads, ffn_expansion=None)
        self.cross_attention = AttentionLayer(
            config.d_feature, config.transformer_heads, config.transformer_ffn_expansion
        )

    def forward(
        self, x: Float[Tensor, "b v windows tokens c"], mask: Bool[Tensor, "windows tokens tokens"] | None
    ) -> Float[Tensor, "b v windows tokens c"]:
        b, v = x.shape[:2]
        x = self.self_attention(x.flatten(0, 1), x.flatten(0, 1), mask).unflatten(0, (b, v))
        # Each view attends to the tokens of every other view in the same window, concatenated.
        others = torch.cat([x.roll(-offset, dims=1) for offset in range(1, v)], dim=-2)
        cross_mask = None if mask is None else mask.repeat(1, 1, v - 1)
        return self.cross_attention(x.flatten(0, 1), others.flatten(0, 1), cross_mask).unflatten(0, (b, v))


class MultiViewTransformer(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.splits = config.transformer_attention_splits
        self.shifted = config.transformer_shifted_windows
        self.checkpointing = config.gradient_checkpointing
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.transformer_blocks))
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(self, features: Float[Tensor, "b v c h w"]) -> Float[Tensor, "b v c h w"]:
        b, v, c, h, w = features.shape
        splits = self.splits
        # The sine encoding is computed per window, so every window sees the same positions.
        position = sine_position_encoding(h // splits, w // splits, c, device=features.device).repeat(
            1, splits, splits
        )
        x = (features + position.to(features.dtype)).permute(0, 1, 3, 4, 2)  # [b, v, h, w, c]
        shift = (h // splits // 2, w // splits // 2)
        shift_mask = (
            shifted_window_mask(h, w, splits, shift, device=features.device)
            if self.shifted and splits > 1
            else None
        )
        for index, block in enumerate(self.blocks):
            shifted = shift_mask is not None and index % 2 == 1
            if shifted:
                x = x.roll((-shift[0], -shift[1]), dims=(2, 3))
            windows = window_partition(x.flatten(0, 1), splits).unflatten(0, (b, v))
            mask = shift_mask if shifted else None
            if self.checkpointing and self.training:
                windows = checkpoint(block, windows, mask, use_reentrant=False)
            else:
                windows = block(windows, mask)
            x = window_merge(windows.flatten(0, 1), splits, h, w).unflatten(0, (b, v))
            if shifted:
                x = x.roll(shift, dims=(2, 3))
        return x.permute(0, 1, 4, 2, 3)


class MultiViewBackbone(nn.Module):
    """Images [B, V, 3, H, W] in [0, 1] -> (transformer features, CNN features), both [B, V, d, H/4, W/4]."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.cnn = CNNEncoder(config)
        self.transformer = MultiViewTransformer(config)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def forward(
        self, images: Float[Tensor, "b v 3 h w"]
    ) -> tuple[Float[Tensor, "b v c h4 w4"], Float[Tensor, "b v c h4 w4"]]:
        b, v = images.shape[:2]
        cnn_features = self.cnn(((images - self.mean) / self.std).flatten(0, 1)).unflatten(0, (b, v))
        return self.transformer(cnn_features), cnn_features
