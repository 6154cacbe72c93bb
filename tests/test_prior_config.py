"""Encoder config: presets, JSON round trip, validation."""

import json

import pytest

from videoscene.errors import VideoSceneError
from videoscene.prior.config import MVSPLAT, PRESETS, TINY, EncoderConfig, encoder_config


def test_presets():
    assert PRESETS["mvsplat"] == EncoderConfig()
    assert (
        MVSPLAT.d_feature,
        MVSPLAT.num_depth_candidates,
        MVSPLAT.transformer_blocks,
        MVSPLAT.sh_degree,
    ) == (128, 128, 6, 4)
    assert MVSPLAT.d_sh == 25 and MVSPLAT.size_multiple == 16  # MVSplat's "patch 4 x downscale 4"
    assert TINY.sh_degree == 3 and TINY.size_multiple == 8
    assert 64 % TINY.size_multiple == 0 and 96 % TINY.size_multiple == 0 and 192 % TINY.size_multiple == 0


@pytest.mark.parametrize(
    "config", [TINY, MVSPLAT, TINY.replace(gaussians_per_pixel=3, transformer_shifted_windows=False)]
)
def test_json_round_trip(tmp_path, config):
    config.save(tmp_path / "encoder.json")
    assert EncoderConfig.load(tmp_path / "encoder.json") == config
    assert encoder_config(tmp_path / "encoder.json") == config


def test_lookup_by_name_and_errors(tmp_path):
    assert encoder_config("tiny") == TINY
    with pytest.raises(VideoSceneError, match="unknown encoder preset"):
        encoder_config("huge")
    (tmp_path / "typo.json").write_text(json.dumps({"d_featur": 64}))
    with pytest.raises(VideoSceneError, match="unknown keys"):
        EncoderConfig.load(tmp_path / "typo.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(VideoSceneError, match="not valid JSON"):
        EncoderConfig.load(tmp_path / "broken.json")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sh_degree": 2}, "sh_degree must be >= 3"),
        ({"downscale_factor": 8}, "downscale_factor must be 4"),
        ({"d_feature": 30}, "divisible by 4"),
        ({"gaussian_scale_min": 20.0}, "gaussian_scale_min < gaussian_scale_max"),
        ({"costvolume_unet_feat_dim": 36}, "multiple of 8"),
        ({"unet_attention_head_channels": 12}, "multiple of unet_attention_head_channels"),
        ({"depth_unet_attn_res": (32,)}, "not U-Net levels"),
        ({"gaussians_per_pixel": 0}, "gaussians_per_pixel must be >= 1"),
    ],
)
def test_invalid_values(changes, message):
    with pytest.raises(VideoSceneError, match=message):
        TINY.replace(**changes)
