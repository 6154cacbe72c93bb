"""Quaternion ↔ rotation matrix, against scipy and through half turns."""

import torch
from scipy.spatial.transform import Rotation

from videoscene.geometry.rotations import matrix_to_quaternion, quaternion_to_matrix


def test_quaternion_to_matrix_matches_scipy_and_is_a_rotation():
    quaternions = torch.randn(64, 4, dtype=torch.float64)
    matrices = quaternion_to_matrix(quaternions)
    # scipy orders quaternions xyzw (scalar last); ours are wxyz.
    expected = Rotation.from_quat(quaternions[:, [1, 2, 3, 0]].numpy()).as_matrix()
    torch.testing.assert_close(matrices, torch.from_numpy(expected), atol=1e-12, rtol=0)
    identity = torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
    torch.testing.assert_close(matrices @ matrices.transpose(-1, -2), identity, atol=1e-12, rtol=0)


def test_quaternion_round_trip_including_half_turns():
    quaternions = torch.nn.functional.normalize(torch.randn(256, 4, dtype=torch.float64), dim=-1)
    # Half turns (w = 0) and the identity are where naive formulas divide by zero.
    quaternions[:3] = torch.tensor([[0.0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]], dtype=torch.float64)
    canonical = torch.where(quaternions[:, :1] < 0, -quaternions, quaternions)
    recovered = matrix_to_quaternion(quaternion_to_matrix(quaternions))
    torch.testing.assert_close(recovered, canonical, atol=1e-10, rtol=0)
    assert (recovered[:, 0] >= 0).all()
