"""The oneDNN route for CPU conv3d (video/cpu_conv3d.py) against PyTorch's own dispatch, forward and
backward."""

import copy

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX
from torch import nn
from torch.profiler import profile
from weights_factory import SMALL_VIDEO

from videoscene.video.cpu_conv3d import use_onednn_conv3d
from videoscene.video.models import VideoBackbone

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="this PyTorch build has no oneDNN"
)


def twin_pair(layer: nn.Module) -> tuple[nn.Module, nn.Module]:
    reference = copy.deepcopy(layer)
    fast = copy.deepcopy(layer)
    assert use_onednn_conv3d(fast) == sum(isinstance(m, nn.Conv3d) for m in fast.modules())
    return reference, fast


def gradients(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> list[torch.Tensor]:
    weights = torch.randn_like(output, generator=torch.Generator().manual_seed(1))
    return torch.autograd.grad((output * weights).sum(), [inputs, *module.parameters()])


@pytest.mark.parametrize(
    "options, shape",
    [
        (dict(kernel_size=3), (1, 4, 5, 10, 12)),
        (dict(kernel_size=3, padding=(0, 1, 1)), (1, 4, 3, 9, 11)),
        (dict(kernel_size=(3, 3, 3), stride=(1, 2, 2), padding=(1, 0, 1)), (2, 4, 5, 10, 12)),
        (dict(kernel_size=3, dilation=2, bias=False), (1, 4, 6, 11, 9)),
        (dict(kernel_size=1, groups=2), (1, 4, 3, 5, 7)),
        (dict(kernel_size=3, padding=1, padding_mode="replicate"), (1, 4, 3, 6, 6)),  # falls back to PyTorch
        (dict(kernel_size=3, padding="same"), (1, 4, 3, 6, 6)),  # falls back to PyTorch
    ],
)
def test_single_convolution_matches_pytorch_forward_and_backward(options, shape):
    torch.manual_seed(0)
    reference, fast = twin_pair(nn.Conv3d(4, 6, **options))
    x_reference = torch.randn(shape, requires_grad=True)
    x_fast = x_reference.detach().clone().requires_grad_(True)
    y_reference, y_fast = reference(x_reference), fast(x_fast)
    torch.testing.assert_close(y_fast, y_reference, atol=1e-5, rtol=1e-5)
    for g_fast, g_reference in zip(
        gradients(fast, x_fast, y_fast), gradients(reference, x_reference, y_reference)
    ):
        torch.testing.assert_close(g_fast, g_reference, atol=1e-4, rtol=1e-4)


def test_float64_and_the_original_dispatch_are_left_alone():
    torch.manual_seed(0)
    reference, fast = twin_pair(nn.Conv3d(2, 2, 3).double())
    x = torch.randn(1, 2, 4, 5, 5, dtype=torch.float64)
    assert torch.equal(fast(x), reference(x))


def test_single_clip_takes_the_onednn_kernel_instead_of_slow_conv3d():
    torch.manual_seed(0)
    reference, fast = twin_pair(nn.Conv3d(8, 8, 3, padding=(0, 1, 1)))
    x = torch.randn(
        1, 8, 5, 16, 24
    )  # batch·channels·frames·height = 640 < 20480: PyTorch's heuristic picks slow_conv3d

    def kernels(layer):
        with torch.no_grad(), profile() as trace:
            layer(x)
        return {event.key for event in trace.key_averages()}

    assert "aten::slow_conv3d_forward" in kernels(reference)
    assert "aten::mkldnn_convolution" in kernels(fast) and "aten::slow_conv3d_forward" not in kernels(fast)


def test_cogvideox_vae_encode_decode_match_pytorch_forward_and_backward():
    torch.manual_seed(0)
    reference, fast = twin_pair(AutoencoderKLCogVideoX(**SMALL_VIDEO.vae_kwargs()))
    video = torch.rand(1, 3, 9, 32, 48) * 2 - 1

    def round_trip(vae, pixels):
        latents = vae.encode(pixels).latent_dist.mode()
        return latents, vae.decode(latents).sample

    x_reference = video.clone().requires_grad_(True)
    x_fast = video.clone().requires_grad_(True)
    (z_reference, y_reference), (z_fast, y_fast) = (
        round_trip(reference, x_reference),
        round_trip(fast, x_fast),
    )
    torch.testing.assert_close(z_fast, z_reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(y_fast, y_reference, atol=1e-5, rtol=1e-4)
    for g_fast, g_reference in zip(
        gradients(fast, x_fast, y_fast), gradients(reference, x_reference, y_reference)
    ):
        # float32 sums over whole clips in a different order: compare against the gradient's own size
        assert (g_fast - g_reference).norm() <= 1e-4 * g_reference.norm()


def test_video_backbone_routes_its_vae_through_onednn():
    torch.manual_seed(0)
    model = VideoBackbone.build(SMALL_VIDEO)
    convolutions = [m for m in model.vae.modules() if isinstance(m, nn.Conv3d)]
    assert convolutions and all("_conv_forward" in vars(m) for m in convolutions)


def test_unbatched_and_autocast_inputs_keep_pytorchs_dispatch():
    torch.manual_seed(0)
    reference, fast = twin_pair(nn.Conv3d(4, 4, 3, padding=1))
    unbatched = torch.randn(4, 3, 6, 6)
    assert torch.equal(fast(unbatched), reference(unbatched))
    batched = torch.randn(1, 4, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast(batched).dtype == reference(batched).dtype == torch.bfloat16
        assert torch.equal(fast(batched), reference(batched))
