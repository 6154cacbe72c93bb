"""Our prior against MVSplat's own encoder: the bundled reference holds a random state dict in MVSplat's exact
layout and the Gaussians MVSplat's released code computed from it on a real pair (prior/mvsplat.py). Skips
when the reference folder beside the checkout is absent."""

import pytest
import torch
from safetensors.torch import load_file

from videoscene.prior.config import MVSPLAT
from videoscene.prior.encoder import GaussianEncoder
from videoscene.prior.mvsplat import TOLERANCE, compare_with_reference


@pytest.fixture(scope="module")
def reference(request):
    from conftest import SHARED_DATA

    folder = SHARED_DATA.parent / "reference" / "mvsplat"
    if not folder.is_dir():
        pytest.skip(f"MVSplat reference folder {folder} is absent")
    return folder


def test_the_mvsplat_preset_has_exactly_mvsplats_state_dict(reference):
    state = load_file(reference / "mvsplat_re10k_random_fp16.safetensors")
    ours = GaussianEncoder(MVSPLAT).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in state.items()}
    assert len(state) == 471 and sum(v.numel() for v in state.values()) == 11_955_734


def test_our_prior_reproduces_mvsplats_gaussians(reference):
    encoder = GaussianEncoder(MVSPLAT)
    state = load_file(reference / "mvsplat_re10k_random_fp16.safetensors")
    encoder.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        errors = compare_with_reference(encoder, reference / "mvsplat_reference_io.safetensors")
    finally:
        torch.set_num_threads(threads)
    assert [e.name for e in errors] == ["means", "covariances", "harmonics", "opacities"]
    # Largest error relative to each output's largest magnitude (measured: 1.2e-5, 2.1e-5, 1.0e-5, 6e-7).
    for error in errors:
        assert error.max_rel <= TOLERANCE, error
