"""Multi-view features at 1/4 resolution (MVSplat, Chen et al. 2024, §3.1 "multi-view feature extraction"): a
residual CNN, then a transformer whose blocks alternate window self-attention within a view and window
cross-attention to the other views (GMFlow/UniMatch layout, Swin-shifted windows on odd blocks).

Module names and computations follow MVSplat's encoder exactly, so that its released state dict loads
strictly (`backbone.backbone.*` is the CNN, `backbone.transformer.layers.N.*` the transformer). Views
travel batch-major: a [B, V, ...] tensor is flattened to [B*V, ...] with the view index fastest.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from videoscene.prior.config import EncoderConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Additive score for key tokens a shifted window must not see (Swin's choice; exp(-100) underflows to 0
# beside any real score, and it keeps the arithmetic identical to the released model's).
MASKED_SCORE = -100.0


def instance_norm(channels: int) -> nn.GroupNorm:
    """Instance norm without affine parameters, as group norm with one channel per group (same maths,
    several times faster than nn.InstanceNorm2d on CPU)."""
    return nn.GroupNorm(channels, channels, affine=False)


class ResidualBlock(nn.Module):
    """Two bias-free 3x3 convs with instance norm and ReLU; a strided 1x1 shortcut where the shape
    changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = instance_norm(out_channels)
        self.norm2 = instance_norm(out_channels)
        self.downsample = (
            None
            if stride == 1 and in_channels == out_channels
            else nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride), instance_norm(out_channels)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class CNNEncoder(nn.Module):
    """Stem (7x7, stride 2) -> layer1 at 1/2 -> layer2 at 1/4 (stride 2) -> layer3 at 1/4 -> 1x1 to
    d_feature."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        c1, c2, c3 = config.cnn_channels
        self.conv1 = nn.Conv2d(3, c1, 7, stride=2, padding=3, bias=False)
        self.norm1 = instance_norm(c1)
        in_channels = c1
        for index, (out_channels, stride) in enumerate(((c1, 1), (c2, 2), (c3, 1)), start=1):
            blocks = [
                ResidualBlock(
                    in_channels if block == 0 else out_channels, out_channels, stride if block == 0 else 1
                )
                for block in range(config.cnn_blocks_per_stage)
            ]
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            in_channels = out_channels
        self.conv2 = nn.Conv2d(c3, config.d_feature, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: Float[Tensor, "n 3 h w"]) -> Float[Tensor, "n c h/4 w/4"]:
        x = F.relu(self.norm1(self.conv1(images)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


def sine_position_encoding(
    height: int, width: int, channels: int, device=None
) -> Float[Tensor, "channels height width"]:
    """DETR's 2D sine encoding: the first half of the channels encode y, the second x; within each half
    sin and cos alternate over frequencies 10000^(-2⌊k/2⌋/(C/2)); positions (i + 1)/n · 2π."""
    per_axis = channels // 2
    k = torch.arange(per_axis, device=device, dtype=torch.float32)
    frequencies = 10000 ** (2 * torch.div(k, 2, rounding_mode="floor") / per_axis)

    def encode(count: int) -> Tensor:
        positions = torch.arange(1, count + 1, device=device, dtype=torch.float32)
        angles = (positions / (count + 1e-6) * 2 * math.pi)[:, None] / frequencies  # [count, per_axis]
        return torch.stack([angles[:, 0::2].sin(), angles[:, 1::2].cos()], dim=-1).flatten(1)

    encode_y = encode(height)[:, None, :].expand(height, width, per_axis)
    encode_x = encode(width)[None, :, :].expand(height, width, per_axis)
    return torch.cat([encode_y, encode_x], dim=-1).permute(2, 0, 1)


def window_partition(x: Float[Tensor, "n h w c"], splits: int) -> Float[Tensor, "n windows tokens c"]:
    n, h, w, c = x.shape
    x = x.reshape(n, splits, h // splits, splits, w // splits, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(n, splits * splits, (h // splits) * (w // splits), c)


def window_merge(
    x: Float[Tensor, "n windows tokens c"], splits: int, h: int, w: int
) -> Float[Tensor, "n h w c"]:
    n, _, _, c = x.shape
    x = x.reshape(n, splits, splits, h // splits, w // splits, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(n, h, w, c)


def shifted_window_mask(h: int, w: int, splits: int, device=None) -> Float[Tensor, "windows tokens tokens"]:
    """After rolling the map by minus half a window, windows at the border mix regions that were not
    adjacent; a token may only attend to tokens of its own region (0 where it may, MASKED_SCORE where
    not)."""
    window_h, window_w = h // splits, w // splits
    shift_h, shift_w = window_h // 2, window_w // 2
    region = torch.zeros(h, w, device=device)
    label = 0
    for rows in (slice(0, h - window_h), slice(h - window_h, h - shift_h), slice(h - shift_h, h)):
        for cols in (slice(0, w - window_w), slice(w - window_w, w - shift_w), slice(w - shift_w, w)):
            region[rows, cols] = label
            label += 1
    tokens = window_partition(region[None, :, :, None], splits)[0, :, :, 0]  # [windows, tokens]
    same = tokens[:, :, None] == tokens[:, None, :]
    return torch.zeros(same.shape, device=device).masked_fill(~same, MASKED_SCORE)


class TransformerLayer(nn.Module):
    """x + LN(merge(attention(x -> target))), or with an FFN: x + LN(FFN([x, LN(merge(...))])) (GMFlow).

    Attention runs within splits x splits windows; with `shift`, windows move by half a window."""

    def __init__(self, channels: int, heads: int, ffn_expansion: int | None, shift: bool):
        super().__init__()
        self.heads = heads
        self.shift = shift
        self.q_proj = nn.Linear(channels, channels, bias=False)
        self.k_proj = nn.Linear(channels, channels, bias=False)
        self.v_proj = nn.Linear(channels, channels, bias=False)
        self.merge = nn.Linear(channels, channels, bias=False)
        self.norm1 = nn.LayerNorm(channels)
        if ffn_expansion is not None:
            hidden = 2 * channels * ffn_expansion
            self.mlp = nn.Sequential(
                nn.Linear(2 * channels, hidden, bias=False),
                nn.GELU(),
                nn.Linear(hidden, channels, bias=False),
            )
            self.norm2 = nn.LayerNorm(channels)

    def forward(
        self,
        source: Float[Tensor, "n h w c"],
        target: Float[Tensor, "n m h w c"],
        splits: int,
        mask: Float[Tensor, "windows tokens tokens"] | None,
    ) -> Float[Tensor, "n h w c"]:
        n, h, w, c = source.shape
        m = target.shape[1]
        query, key, value = self.q_proj(source), self.k_proj(target), self.v_proj(target)
        shift = (h // splits // 2, w // splits // 2)
        if self.shift:
            query = query.roll((-shift[0], -shift[1]), dims=(1, 2))
            key, value = (x.roll((-shift[0], -shift[1]), dims=(2, 3)) for x in (key, value))
        query = window_partition(query, splits)  # [n, windows, tokens, c]
        # Keys of the m other views, token-major (each window's tokens, the views innermost), as MVSplat.
        key, value = (window_partition(x.permute(0, 2, 3, 1, 4).flatten(3), splits) for x in (key, value))
        key, value = (x.unflatten(-1, (m, c)).flatten(-3, -2) for x in (key, value))
        # Each key token is followed by the same token of the next view, so the window mask repeats per
        # view. (MVSplat tiles it view-major instead, which disagrees for three or more views; the two agree
        # for two, the only case its weights were trained on.)
        scores = mask.repeat_interleave(m, dim=-1)[:, None] if self.shift else None
        query, key, value = (x.unflatten(-1, (self.heads, -1)).transpose(-2, -3) for x in (query, key, value))
        message = F.scaled_dot_product_attention(query, key, value, attn_mask=scores)
        message = window_merge(message.transpose(-2, -3).flatten(-2), splits, h, w)
        if self.shift:
            message = message.roll(shift, dims=(1, 2))
        message = self.norm1(self.merge(message))
        if hasattr(self, "mlp"):
            message = self.norm2(self.mlp(torch.cat([source, message], dim=-1)))
        return source + message


class TransformerBlock(nn.Module):
    """Self-attention within each view, then cross-attention (+FFN) to the other views' features as they
    were when the block began."""

    def __init__(self, config: EncoderConfig, shift: bool):
        super().__init__()
        c, heads = config.d_feature, config.transformer_heads
        self.self_attn = TransformerLayer(c, heads, ffn_expansion=None, shift=shift)
        self.cross_attn_ffn = TransformerLayer(c, heads, config.transformer_ffn_expansion, shift=shift)

    def forward(
        self, x: Float[Tensor, "b v h w c"], splits: int, mask: Float[Tensor, "windows tokens tokens"] | None
    ) -> Float[Tensor, "b v h w c"]:
        b, v = x.shape[:2]
        flat = x.flatten(0, 1)
        attended = self.self_attn(flat, flat[:, None], splits, mask)
        # View i attends to views 0..i-1, i+1..v-1, in that order.
        others = torch.stack([torch.cat([x[:, :i], x[:, i + 1 :]], dim=1) for i in range(v)], dim=1)
        return self.cross_attn_ffn(attended, others.flatten(0, 1), splits, mask).unflatten(0, (b, v))


class MultiViewTransformer(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.splits = config.transformer_attention_splits
        self.checkpointing = config.gradient_checkpointing
        shifted = config.transformer_shifted_windows and self.splits > 1
        self.layers = nn.ModuleList(
            TransformerBlock(config, shift=shifted and index % 2 == 1)
            for index in range(config.transformer_blocks)
        )
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(self, features: Float[Tensor, "b v c h w"]) -> Float[Tensor, "b v c h w"]:
        _, _, c, h, w = features.shape
        splits = self.splits
        # The sine encoding is computed per window, so every window sees the same positions.
        position = sine_position_encoding(h // splits, w // splits, c, device=features.device)
        x = (features + position.repeat(1, splits, splits).to(features.dtype)).permute(0, 1, 3, 4, 2)
        mask = shifted_window_mask(h, w, splits, device=features.device) if splits > 1 else None
        for block in self.layers:
            if self.checkpointing and self.training:
                x = checkpoint(block, x, splits, mask, use_reentrant=False)
            else:
                x = block(x, splits, mask)
        return x.permute(0, 1, 4, 2, 3)


class MultiViewBackbone(nn.Module):
    """Images [B, V, 3, H, W] in [0, 1] -> (transformer features, CNN features), both [B, V, d, H/4, W/4]."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.backbone = CNNEncoder(config)
        self.transformer = MultiViewTransformer(config)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def forward(
        self, images: Float[Tensor, "b v 3 h w"]
    ) -> tuple[Float[Tensor, "b v c h4 w4"], Float[Tensor, "b v c h4 w4"]]:
        b, v = images.shape[:2]
        cnn_features = self.backbone(((images - self.mean) / self.std).flatten(0, 1)).unflatten(0, (b, v))
        return self.transformer(cnn_features), cnn_features
