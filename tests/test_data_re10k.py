import json

import numpy as np
import pytest
import torch

from videoscene.cli import main
from videoscene.data.dataset import ClipDataset, ClipSamplerConfig, collate_examples
from videoscene.data.evaluation_index import (
    IndexEntry,
    make_evaluation_index,
    read_evaluation_index,
    write_evaluation_index,
)
from videoscene.data.re10k import (
    decode_image,
    iter_scenes,
    load_scene,
    read_chunk,
    scene_from_frames,
    write_split,
)
from videoscene.errors import VideoSceneError


def random_cameras(count: int, seed: int = 0):
    from scipy.spatial.transform import Rotation

    rotations = torch.tensor(Rotation.random(count, random_state=seed).as_matrix(), dtype=torch.float32)
    extrinsics = torch.eye(4).repeat(count, 1, 1)
    extrinsics[:, :3, :3] = rotations
    extrinsics[:, :3, 3] = torch.randn(count, 3, generator=torch.Generator().manual_seed(seed))
    intrinsics = torch.tensor([[0.9, 0, 0.5], [0, 1.2, 0.5], [0, 0, 1]]).repeat(count, 1, 1)
    return extrinsics, intrinsics


def make_scene(key: str, frames: int = 12, height: int = 8, width: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(frames, height, width, 3), dtype=np.uint8)
    extrinsics, intrinsics = random_cameras(frames, seed)
    return images, scene_from_frames(key, images, extrinsics, intrinsics)


def test_chunk_round_trip_loads_with_weights_only(tmp_path):
    images, scene = make_scene("scene_a", frames=5)
    _, other = make_scene("scene_b", frames=3, seed=1)
    index = write_split(tmp_path / "test", [scene, other], scenes_per_chunk=1)
    assert index == {"scene_a": "000000.torch", "scene_b": "000001.torch"}
    raw = torch.load(tmp_path / "test" / "000000.torch", weights_only=True)
    assert raw[0]["cameras"].shape == (5, 18) and raw[0]["images"][0].dtype == torch.uint8
    assert bytes(raw[0]["images"][0][:8].tolist()) == b"\x89PNG\r\n\x1a\n"
    loaded = load_scene(tmp_path / "test", "scene_a")
    np.testing.assert_array_equal((loaded.frames() * 255).round().byte().permute(0, 2, 3, 1).numpy(), images)
    torch.testing.assert_close(loaded.extrinsics, scene.extrinsics)
    assert [s.key for s in iter_scenes(tmp_path / "test")] == ["scene_a", "scene_b"]


def test_jpeg_bytes_decode():
    from videoscene.data.re10k import encode_image

    y, x = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 24), indexing="ij")
    image = torch.stack([x, y, (x + y) / 2])  # smooth, so JPEG keeps it closely
    data = encode_image(image, "jpeg")
    assert bytes(data[:2].tolist()) == b"\xff\xd8"
    assert (decode_image(data) - image).abs().mean() < 0.02


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"not a torch file", "corrupt or truncated"),
        ("truncate", "corrupt or truncated"),
        ("dict", "expected a list"),
        ("bad_cameras", "[N, 18]"),
        ("nan", "NaN"),
    ],
)
def test_bad_chunks_give_one_line_errors(tmp_path, payload, message):
    path = tmp_path / "chunk.torch"
    _, scene = make_scene("s", frames=2)
    if payload == "truncate":
        torch.save([scene.to_dict()], path)
        path.write_bytes(path.read_bytes()[:200])
    elif payload == "dict":
        torch.save({"key": "s"}, path)
    elif payload == "bad_cameras":
        bad = scene.to_dict()
        bad["cameras"] = torch.zeros(2, 17)
        torch.save([bad], path)
    elif payload == "nan":
        bad = scene.to_dict()
        bad["cameras"][0, 7] = float("nan")
        torch.save([bad], path)
    else:
        path.write_bytes(payload)
    with pytest.raises(VideoSceneError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        read_chunk(path)
    assert "\n" not in str(info.value)


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(VideoSceneError, match="no index.json"):
        list(iter_scenes(tmp_path))


def test_corrupt_image_bytes_error():
    with pytest.raises(VideoSceneError, match="cannot be decoded"):
        decode_image(torch.tensor([1, 2, 3], dtype=torch.uint8))


def test_clip_dataset_samples_context_pair_and_targets_between(tmp_path):
    write_split(tmp_path / "train", [make_scene(f"s{i}", frames=30, seed=i)[1] for i in range(3)])
    config = ClipSamplerConfig(num_frames=9, min_stride=1, max_stride=3, near=0.5, far=20)
    dataset = ClipDataset([tmp_path / "train"], config, seed=0)
    example = dataset[1]
    target = example.target.index.tolist()
    assert len(target) == 9 and example.context.index.tolist() == [target[0], target[-1]]
    stride = target[1] - target[0]
    assert 1 <= stride <= 3 and target == list(range(target[0], target[0] + 9 * stride, stride))
    assert example.target.image.shape == (9, 3, 8, 12) and example.context.near.tolist() == [0.5, 0.5]
    torch.testing.assert_close(example.context.image[1], example.target.image[-1])

    validation = ClipDataset([tmp_path / "train"], config, seed=0, deterministic=True)
    assert validation[2].target.index.tolist() == validation[2].target.index.tolist()
    batch = collate_examples([validation[0], validation[1]])
    assert batch.target.image.shape == (2, 9, 3, 8, 12) and batch.context.extrinsics.shape == (2, 2, 4, 4)


def test_clip_config_rejects_frame_counts_the_vae_cannot_round_trip():
    with pytest.raises(VideoSceneError, match="8k\\+1"):
        ClipSamplerConfig(num_frames=13)
    with pytest.raises(VideoSceneError, match="near < far"):
        ClipSamplerConfig(near=2, far=1)


def test_evaluation_index_round_trip_and_make_index_cli(tmp_path):
    write_split(tmp_path / "test", [make_scene("long", frames=20)[1], make_scene("short", frames=4)[1]])
    index = make_evaluation_index(tmp_path / "test", gap=8, target_stride=2, seed=3)
    assert index["short"] is None
    entry = index["long"]
    assert entry.context[1] - entry.context[0] == 8 and entry.target == tuple(
        range(entry.context[0], entry.context[1] + 1, 2)
    )
    write_evaluation_index(tmp_path / "index.json", index)
    assert read_evaluation_index(tmp_path / "index.json") == index

    assert (
        main(
            [
                "data",
                "make-index",
                "--data",
                str(tmp_path / "test"),
                "--out",
                str(tmp_path / "cli.json"),
                "--gap",
                "8",
                "--centered",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "cli.json").read_text())["long"]["context"] == [5, 13]
    assert (
        main(
            [
                "data",
                "make-index",
                "--data",
                str(tmp_path / "test"),
                "--out",
                str(tmp_path / "cli.json"),
                "--gap",
                "8",
            ]
        )
        == 2
    )


def test_bad_evaluation_index(tmp_path):
    path = tmp_path / "index.json"
    path.write_text(json.dumps({"a": {"context": [1], "target": [1, 2]}}))
    with pytest.raises(VideoSceneError, match="entry 'a'"):
        read_evaluation_index(path)
    assert IndexEntry((0, 1), (0, 1)).context == (0, 1)


def test_chunk_files_are_bit_identical_for_identical_scenes(tmp_path):
    _, scene = make_scene("same", frames=3)
    write_split(tmp_path / "a", [scene])
    write_split(tmp_path / "b", [scene])
    assert (tmp_path / "a" / "000000.torch").read_bytes() == (tmp_path / "b" / "000000.torch").read_bytes()
