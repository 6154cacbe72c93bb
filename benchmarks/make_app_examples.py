"""The web app's example pairs (src/videoscene/assets/examples/, docs/app.md), rendered from procedural
synthetic rooms (`videoscene.data.synthetic.render_scene`) of seeds that no dataset in docs/results.md uses
(those are 1 to 7). Each pair is the first and last view of the room's camera walk.

    python benchmarks/make_app_examples.py            # rewrites src/videoscene/assets/examples/

- unposed_room: seed 12, room 0, 128×192 JPEG (quality 90) and no cams.json, so the app estimates the
  cameras (116 inlier matches); a texture-rich room, as SIFT needs at this size.
- wide_walk: seed 10, room 0, a walk twice as long (--walk-scale 2), 64×96 PNG (the bundled weights'
  resolution) with its true cameras in cams.json.

About 35 KB together; `tests/test_app.py` checks that the bundled files are these renders.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from videoscene.data.synthetic import SynthConfig, render_scene
from videoscene.io_utils import write_json_atomic

OUT = Path(__file__).resolve().parents[1] / "src" / "videoscene" / "assets" / "examples"
NEAR, FAR = 0.5, 20.0  # the bundled weights' (pipeline.json)


@dataclass(frozen=True)
class ExampleScene:
    seed: int
    index: int
    height: int
    width: int
    suffix: str  # ".png" or ".jpg"
    with_cameras: bool
    walk_scale: float = 1.0


EXAMPLES = {
    "unposed_room": ExampleScene(seed=12, index=0, height=128, width=192, suffix=".jpg", with_cameras=False),
    "wide_walk": ExampleScene(
        seed=10, index=0, height=64, width=96, suffix=".png", with_cameras=True, walk_scale=2.0
    ),
}


def render_example(scene: ExampleScene) -> tuple[np.ndarray, dict | None]:
    """The two views [2, H, W, 3] (uint8) and, when the example has them, the contents of its cams.json."""
    config = SynthConfig(walk_scale=scene.walk_scale)
    frames, extrinsics, intrinsics, _ = render_scene(
        scene.seed, scene.index, 2, scene.height, scene.width, config
    )
    if not scene.with_cameras:
        return frames, None
    source = (
        f"procedural synthetic room (videoscene.data.synthetic.render_scene(seed={scene.seed}, "
        f"index={scene.index}, frames=2, height={scene.height}, width={scene.width}, "
        f"config=SynthConfig(walk_scale={scene.walk_scale}))): first and last view of its walk; a seed no "
        "dataset of docs/results.md uses"
    )
    cameras = {
        "convention": "opencv",
        "intrinsics_unit": "normalized",
        "near": NEAR,
        "far": FAR,
        "source": source,
        "cameras": [
            {"extrinsics": e.tolist(), "intrinsics": k.tolist()} for e, k in zip(extrinsics, intrinsics)
        ],
    }
    return frames, cameras


def write_example(folder: Path, scene: ExampleScene) -> None:
    frames, cameras = render_example(scene)
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        options = {"quality": 90} if scene.suffix == ".jpg" else {"optimize": True}
        Image.fromarray(frame).save(folder / f"view_{index}{scene.suffix}", **options)
    if cameras is not None:
        write_json_atomic(folder / "cams.json", cameras)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=OUT, help="folder for the examples (default: the package's)"
    )
    args = parser.parse_args()
    for name, scene in EXAMPLES.items():
        write_example(args.out / name, scene)
        print(f"{args.out / name}: {sorted(path.name for path in (args.out / name).iterdir())}")


if __name__ == "__main__":
    main()
