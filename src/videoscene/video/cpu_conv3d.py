"""Route the VAE's CPU 3D convolutions to oneDNN (issue 6: cut the fixed costs of one-step generation).

PyTorch picks a CPU convolution backend by a size heuristic: a single-sample float32 conv3d with a 3×3×3
kernel and fewer than 20480 values in batch × channels × frames × height takes the unvectorised
`slow_conv3d` path instead of oneDNN (mkldnn). Every convolution of a small CogVideoX VAE decoding one
clip falls under it: at 17×64×96 that path is 90 % of the decode time and runs about 8× slower than oneDNN
on the same tensors. `use_onednn_conv3d` sends those convolutions to `aten.mkldnn_convolution` directly;
the maths is the same convolution (tests/test_video_cpu_conv3d.py compares both, forward and backward),
only the kernel differs. Anything else (unbatched input, CPU autocast, non-zero padding modes, 'same'/'valid'
padding strings, non-float32, non-CPU tensors) keeps PyTorch's own dispatch.
"""

from __future__ import annotations

import types

import torch
from torch import Tensor, nn


def _onednn_conv_forward(self: nn.Conv3d, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if (
        input.dim() == 5  # batched; nn.Conv3d also takes unbatched [C, F, H, W]
        and input.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")  # autocast would run PyTorch's path in bf16
        and input.dtype == torch.float32
        and weight.dtype == torch.float32
        and self.padding_mode == "zeros"
        and not isinstance(self.padding, str)
        and torch.backends.mkldnn.enabled
    ):
        return torch.ops.aten.mkldnn_convolution(
            input, weight, bias, self.padding, self.stride, self.dilation, self.groups
        )
    return nn.Conv3d._conv_forward(self, input, weight, bias)


def use_onednn_conv3d(module: nn.Module) -> int:
    """Make every nn.Conv3d inside `module` run on oneDNN when its input is a float32 CPU tensor.

    Parameters, state dicts and outputs on other devices are untouched. Returns how many convolutions were
    switched (0 when this PyTorch build has no oneDNN)."""
    if not torch.backends.mkldnn.is_available():
        return 0
    count = 0
    for layer in module.modules():
        if isinstance(layer, nn.Conv3d):
            # An instance attribute shadows nn.Conv3d._conv_forward, which nn.Conv3d.forward (and diffusers'
            # CogVideoXSafeConv3d, which splits large inputs and calls it per part) goes through.
            layer._conv_forward = types.MethodType(_onednn_conv_forward, layer)
            count += 1
    return count
