import math

import numpy as np
import pytest
import torch
from scipy.special import sph_harm_y

from videoscene.errors import VideoSceneError
from videoscene.gaussians.math import (
    SH_C0,
    eval_sh,
    rgb_to_sh0,
    sh0_to_rgb,
    sh_basis,
    sh_degree_of,
)


def _inria_basis_from_complex(degree: int, directions: np.ndarray) -> np.ndarray:
    """Closed form: real SH with the Condon-Shortley phase from scipy's complex harmonics
    (sph_harm_y includes (-1)^m): sqrt(2)·Re Y_l^m for m > 0, sqrt(2)·Im Y_l^|m| for m < 0."""
    x, y, z = directions.T
    polar, azimuth = np.arccos(np.clip(z, -1, 1)), np.arctan2(y, x)
    columns = []
    for l in range(degree + 1):
        for m in range(-l, l + 1):
            value = sph_harm_y(l, abs(m), polar, azimuth)
            if m > 0:
                columns.append(math.sqrt(2) * value.real)
            elif m < 0:
                columns.append(math.sqrt(2) * value.imag)
            else:
                columns.append(value.real)
    return np.stack(columns, axis=-1)


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_sh_basis_matches_closed_form(degree):
    directions = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=-1)
    expected = _inria_basis_from_complex(degree, directions.numpy())
    torch.testing.assert_close(sh_basis(degree, directions), torch.from_numpy(expected), atol=1e-12, rtol=0)


def test_sh_basis_matches_inria_constants_for_low_bands():
    # The Inria code's literal constants for bands 1 and 2, so the convention (signs) is pinned.
    x, y, z = torch.nn.functional.normalize(torch.tensor([[0.3, -0.5, 0.8]], dtype=torch.float64), dim=-1).T
    expected = torch.cat(
        [
            torch.full_like(x, 0.28209479177387814),
            -0.4886025119029199 * y,
            0.4886025119029199 * z,
            -0.4886025119029199 * x,
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.31539156525252005 * (2 * z * z - x * x - y * y),
            -1.0925484305920792 * x * z,
            0.5462742152960396 * (x * x - y * y),
        ]
    )
    torch.testing.assert_close(sh_basis(2, torch.stack([x, y, z], -1))[0], expected, atol=1e-12, rtol=0)


def test_sh_basis_is_orthonormal_on_the_sphere():
    # Fibonacci lattice: near-uniform points, so the mean approximates (1/4π)∫ over the sphere.
    count = 20000
    index = torch.arange(count, dtype=torch.float64) + 0.5
    z = 1 - 2 * index / count
    azimuth = math.pi * (1 + 5**0.5) * index
    radius = (1 - z * z).sqrt()
    directions = torch.stack([radius * torch.cos(azimuth), radius * torch.sin(azimuth), z], dim=-1)
    basis = sh_basis(4, directions)
    gram = 4 * math.pi * basis.T @ basis / count
    torch.testing.assert_close(gram, torch.eye(25, dtype=torch.float64), atol=2e-3, rtol=0)


def test_degree_zero_is_constant_and_rgb_round_trips():
    directions = torch.randn(10, 3)
    assert torch.all(sh_basis(0, directions) == SH_C0)
    rgb = torch.rand(10, 3)
    harmonics = torch.zeros(10, 16, 3)
    harmonics[:, 0] = rgb_to_sh0(rgb)
    torch.testing.assert_close(eval_sh(harmonics, directions), rgb)
    torch.testing.assert_close(sh0_to_rgb(rgb_to_sh0(rgb)), rgb)


def test_eval_sh_uses_the_requested_bands_and_clamps_at_zero():
    harmonics = torch.randn(32, 25, 3)
    directions = torch.randn(32, 3)
    truncated = eval_sh(harmonics[:, :4], directions)
    torch.testing.assert_close(eval_sh(harmonics, directions, degree=1), truncated)
    dark = torch.zeros(1, 1, 3)
    dark[0, 0] = -10.0
    assert torch.all(eval_sh(dark, torch.randn(1, 3)) == 0)
    with pytest.raises(VideoSceneError, match="only have degree 1"):
        eval_sh(harmonics[:, :4], directions, degree=2)


def test_sh_degree_of_rejects_non_squares():
    assert sh_degree_of(25) == 4
    with pytest.raises(VideoSceneError, match="coefficients"):
        sh_degree_of(10)
    with pytest.raises(VideoSceneError, match="coefficients"):
        sh_degree_of(36)
