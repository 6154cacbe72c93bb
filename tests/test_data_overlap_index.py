"""Stored z-depth (`<split>/depth/<key>.npz`) and evaluation indexes whose context pairs are chosen by
overlap (`videoscene data make-index --max-overlap`), on two tiny synthetic rooms rendered with `--depth`."""

import json

import numpy as np
import pytest

from videoscene.cli import main
from videoscene.data.depth import depth_path, read_depth, write_depth
from videoscene.data.evaluation_index import (
    IndexEntry,
    make_overlap_index,
    pair_overlaps,
    read_evaluation_index,
    write_evaluation_index,
)
from videoscene.data.re10k import iter_scenes
from videoscene.errors import LoadError, VideoSceneError


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    """Two 9-frame rooms at 48x72 with depth; their pairs overlap 0.61-0.92 and 0.67-0.92."""
    out = tmp_path_factory.mktemp("rooms") / "data"
    command = ["data", "synth", "--scenes", "2", "--frames", "9", "--height", "48", "--width", "72"]
    assert main([*command, "--depth", "--split", "test", "--out", str(out)]) == 0
    return out / "test"


def test_depth_round_trip_and_bad_files(rooms, tmp_path):
    depth = read_depth(rooms, "synth-0-000000", frames=9)
    assert depth.dtype == np.float32 and depth.shape == (9, 48, 72) and (depth > 0).all()
    assert read_depth(rooms, "absent") is None
    (tmp_path / "depth").mkdir()
    write_depth(depth_path(tmp_path, "a"), depth)
    np.testing.assert_array_equal(read_depth(tmp_path, "a"), depth)
    with pytest.raises(LoadError, match=r"expected \[5, H, W\]"):
        read_depth(tmp_path, "a", frames=5)
    depth_path(tmp_path, "b").write_bytes(b"not a zip")
    with pytest.raises(LoadError, match="cannot read depth file"):
        read_depth(tmp_path, "b")
    with pytest.raises(VideoSceneError, match="outside"):
        depth_path(tmp_path, "../../elsewhere")


def test_pairs_are_chosen_by_the_largest_overlap_at_most_the_threshold(rooms):
    index = make_overlap_index(rooms, max_overlap=0.65, target_stride=2)
    scenes = {scene.key: scene for scene in iter_scenes(rooms)}
    assert index["synth-0-000001"] is None  # its pairs all overlap more than 0.65
    entry = index["synth-0-000000"]
    scene = scenes["synth-0-000000"]
    overlaps = pair_overlaps(read_depth(rooms, scene.key), scene.extrinsics, scene.intrinsics, 3, 8)
    best = max(value for value in overlaps.values() if value <= 0.65)
    assert entry.overlap == round(best, 4) == round(overlaps[entry.context], 4)
    first, last = entry.context
    expected = list(range(first, last + 1, 2))
    assert list(entry.target) == expected + ([last] if expected[-1] != last else [])
    # The overlap of a pair does not depend on its order (the smaller of the two directions' shares): the
    # clip played backwards gives every pair the same overlap.
    depth = read_depth(rooms, scene.key)
    backwards = pair_overlaps(depth[::-1].copy(), scene.extrinsics.flip(0), scene.intrinsics.flip(0), 3, 8)
    assert backwards == pytest.approx({(8 - j, 8 - i): value for (i, j), value in overlaps.items()})


def test_overlap_is_recorded_in_the_index_and_old_indexes_still_read(rooms, tmp_path):
    index = make_overlap_index(rooms, max_overlap=0.8, max_gap=6)
    assert all(entry is not None and entry.overlap <= 0.8 for entry in index.values())
    assert all(entry.context[1] - entry.context[0] <= 6 for entry in index.values())
    write_evaluation_index(tmp_path / "index.json", index)
    assert read_evaluation_index(tmp_path / "index.json") == index
    # An index without the key (every index made by gap) reads and writes as before.
    plain = {"a": {"context": [0, 4], "target": [0, 2, 4]}, "b": None}
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    read = read_evaluation_index(tmp_path / "plain.json")
    assert read["a"] == IndexEntry((0, 4), (0, 2, 4)) and read["a"].overlap is None
    write_evaluation_index(tmp_path / "again.json", read)
    assert json.loads((tmp_path / "again.json").read_text()) == plain
    (tmp_path / "bad.json").write_text(json.dumps({"a": {"context": [0, 4], "target": [2], "overlap": 1.5}}))
    with pytest.raises(VideoSceneError, match="overlap"):
        read_evaluation_index(tmp_path / "bad.json")


def test_make_index_cli_by_overlap(rooms, tmp_path, capsys):
    out = tmp_path / "low.json"
    command = ["data", "make-index", "--data", str(rooms), "--out", str(out)]
    assert main([*command, "--max-overlap", "0.8", "--target-stride", "2"]) == 0
    written = json.loads(out.read_text())
    assert all(0 <= entry["overlap"] <= 0.8 for entry in written.values())
    assert main([*command, "--max-overlap", "0.8", "--centered"]) == 2
    assert "--centered applies to pairs chosen by --gap" in capsys.readouterr().err
    assert main([*command]) == 2
    assert "pass --gap N" in capsys.readouterr().err


def test_choosing_by_overlap_needs_depth(rooms, tmp_path):
    without = tmp_path / "test"
    without.mkdir()
    for name in ("index.json", "000000.torch"):
        (without / name).write_bytes((rooms / name).read_bytes())
    with pytest.raises(VideoSceneError, match="synth --depth"):
        make_overlap_index(without, max_overlap=0.8)
    with pytest.raises(VideoSceneError, match=r"share in \[0, 1\]"):
        make_overlap_index(rooms, max_overlap=1.5)
