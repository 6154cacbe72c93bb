"""The paper's Tables 1, 3 and 6 at our scale, as markdown, from `videoscene eval` outputs and the speed
benchmark.

    python benchmarks/make_results_tables.py --metrics OUT_SYNTH/metrics.json OUT_LEGO/metrics.json \
        [--speed benchmarks/results/pipeline_speed.json] [--steps 1 4 50]

Per metrics.json (one evaluation run, e.g. of the Table 1 command in docs/results.md):
- Table 1 analogue: nearest view and coarse render, then the teacher from noise, the teacher from the render
  (leap) at each of --steps, and the one-step student: PSNR, SSIM, Sampson px, RANSAC inlier ratio,
  seconds per scene (FVD / LPIPS when the run computed them), and the ground-truth frames' 3D-consistency
  floor. Methods the run does not hold are left out (and listed once).
- Table 3 analogue (ablation, one step): base rendered video = `coarse`, w/o 3D-aware leap flow =
  `student-noleap`, w/o DDPNet = `student@tT` (each fixed T the run holds), full model = `student`.
Table 6 analogue (runtime) from benchmarks/bench_pipeline.py's JSON: per-stage seconds of each method and
its total relative to the one-step student, with the paper's figures for comparison.

Prints the tables to stdout (paste them into docs/results.md with the commands that made the inputs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from videoscene.errors import VideoSceneError
from videoscene.io_utils import read_json_object

SPEED_JSON = Path(__file__).parent / "results" / "pipeline_speed.json"
REFERENCE = "ground-truth"  # the reference row of metrics.json (videoscene.evaluation.runner.REFERENCE)

# (metrics.json key, column title, format); FVD and LPIPS only when some row has them
QUALITY_COLUMNS = (
    ("psnr", "PSNR ↑", "{:.2f}"),
    ("ssim", "SSIM ↑", "{:.3f}"),
    ("lpips", "LPIPS ↓", "{:.3f}"),
    ("fvd", "FVD ↓", "{:.2f}"),
    ("sampson_px", "Sampson px ↓", "{:.3f}"),
    ("inlier_ratio", "RANSAC inlier ratio ↑", "{:.3f}"),
    ("seconds", "s / scene ↓", "{:.3g}"),
)
OPTIONAL = ("lpips", "fvd")
STAGES = (
    ("prior", "prior"),
    ("render", "render"),
    ("vae_encode", "VAE encode"),
    ("policy", "policy"),
    ("denoise", "denoise"),
    ("vae_decode", "VAE decode"),
    ("total", "total"),
)
# Paper Table 6 (supplementary): seconds for a whole video on an unstated GPU.
PAPER_RUNTIME = (
    "paper (Table 6, 49×480×720, GPU not stated): VideoScene 2.98 s; CogVideoX-5B 179.45 s at 50 steps (≈60×)"
)


def _cell(row: dict | None, key: str, pattern: str) -> str:
    value = None if row is None else row.get(key)
    return "–" if value is None else pattern.format(value)


def _quality_table(
    first_columns: list[str], rows: list[tuple[list[str], dict | None]], all_rows: list[dict]
) -> str:
    columns = [
        c for c in QUALITY_COLUMNS if c[0] not in OPTIONAL or any(r.get(c[0]) is not None for r in all_rows)
    ]
    lines = [
        "| " + " | ".join(first_columns + [title for _, title, _ in columns]) + " |",
        "|" + "---|" * (len(first_columns) + len(columns)),
    ]
    for labels, row in rows:
        lines.append(
            "| " + " | ".join(labels + [_cell(row, key, pattern) for key, _, pattern in columns]) + " |"
        )
    return "\n".join(lines) + "\n"


def describe_run(document: dict, path: Path) -> str:
    config = document.get("config", {})
    environment = document.get("environment", {})
    scenes = max((row.get("scenes", 0) for row in document["methods"].values()), default=0)
    size = "×".join(str(v) for v in [config.get("num_frames"), *config.get("image_size", [])])
    return (
        f"`{path}`: weights `{config.get('weights')}`, data `{config.get('data')}`, index "
        f"`{config.get('index')}`, "
        f"{scenes} scenes, {size} "
        f"(frames×H×W), seed {config.get('seed')}, on {environment.get('device')} "
        f"({environment.get('processor')}, "
        f"{environment.get('torch_threads')} threads)"
    )


def table1(document: dict, steps: list[int]) -> tuple[str, list[str]]:
    """Table 1 analogue; also the names it looked for and did not find."""
    methods = document["methods"]
    wanted = [("nearest view", "–", "nearest"), ("coarse render (prior)", "–", "coarse")]
    for family, label in (("teacher", "teacher from noise"), ("teacher-leap", "teacher from render (leap)")):
        wanted += [
            (label, str(n), f"{family}@{n}") for n in sorted(steps, reverse=True)
        ]  # the paper lists 50, 4, 1
    wanted.append(("**VideoScene student** (DDPNet t)", "1", "student"))
    rows, previous = [], None
    for label, num_steps, name in wanted:
        if name in methods:  # a group's label on its first row only, as in the paper
            rows.append(([label if label != previous else "", num_steps], methods[name]))
            previous = label
    reference = document.get("reference", {}).get(REFERENCE)
    if reference is not None:
        rows.append((["*ground-truth frames (3D-consistency floor)*", "–"], reference))
    missing = [name for _, _, name in wanted if name not in methods]
    return _quality_table(["Method", "#Steps"], rows, list(methods.values())), missing


def table3(document: dict) -> tuple[str, list[str]]:
    """Table 3 analogue (one-step ablation); also the names it looked for and did not find."""
    methods = document["methods"]
    fixed = sorted(
        (name for name in methods if name.startswith("student@t")),
        key=lambda name: int(name[len("student@t") :]),
    )
    wanted = [("Base rendered video", "coarse"), ("w/o 3D-aware leap flow", "student-noleap")]
    wanted += [(f"w/o DDPNet (fixed t = {name[len('student@t') :]})", name) for name in fixed] or [
        ("w/o DDPNet (fixed t)", "student@tT")
    ]
    wanted.append(("**VideoScene (full model)**", "student"))
    rows = [([label, f"`{name}`"], methods[name]) for label, name in wanted if name in methods]
    missing = [name for _, name in wanted if name not in methods]
    return _quality_table(["Setup", "method"], rows, list(methods.values())), missing


def table6(speed: dict) -> str:
    """Table 6 analogue: per-stage median seconds per method, and total relative to the one-step student."""
    seconds = speed.get("seconds_median")
    if not seconds or "student" not in seconds:
        raise VideoSceneError(
            "the speed JSON has no seconds_median.student; regenerate it with benchmarks/bench_pipeline.py"
        )
    student_total = seconds["student"]["total"]
    lines = [
        "| method | " + " | ".join(title for _, title in STAGES) + " | × student |",
        "|---|" + "---|" * (len(STAGES) + 1),
    ]
    for method, stages in seconds.items():
        cells = [_cell(stages, key, "{:.3f}") for key, _ in STAGES]
        lines.append(f"| `{method}` | " + " | ".join(cells) + f" | {stages['total'] / student_total:.1f}× |")
    machine = speed.get("machine", {})
    resolution = "×".join(str(v) for v in speed.get("resolution", []))
    notes = [
        f"Seconds for one {resolution} (frames×H×W) video, median of {speed.get('repeats')} runs, "
        f"on {machine.get('device')} "
        f"({machine.get('processor') or machine.get('platform')}, {machine.get('threads')} threads); "
        "peak RSS "
        f"{speed.get('peak_rss_mib', float('nan')):.0f} MiB.",
        PAPER_RUNTIME + ".",
    ]
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def _read_json(path: Path) -> dict:
    return read_json_object(path, "results file", "; pass a metrics.json written by `videoscene eval`")


def render(metrics_files: list[Path], speed_file: Path | None, steps: list[int]) -> str:
    sections = []
    for path in metrics_files:
        document = _read_json(path)
        if "methods" not in document:
            raise VideoSceneError(
                f"{path} has no 'methods'; pass a metrics.json written by `videoscene eval`"
            )
        header = describe_run(document, path)
        for title, (table, missing) in (
            ("Table 1 analogue", table1(document, steps)),
            ("Table 3 analogue", table3(document)),
        ):
            note = f"\nNot in this run: {', '.join(f'`{name}`' for name in missing)}.\n" if missing else ""
            sections.append(f"### {title}\n\n{header}\n\n{table}{note}")
    if speed_file is not None:
        sections.append(
            f"### Table 6 analogue (runtime)\n\n`{speed_file}`\n\n{table6(_read_json(speed_file))}"
        )
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--metrics", type=Path, nargs="*", default=[], help="metrics.json files of `videoscene eval` runs"
    )
    parser.add_argument(
        "--speed",
        type=Path,
        default=SPEED_JSON if SPEED_JSON.is_file() else None,
        help=f"bench_pipeline.py's JSON (default: {SPEED_JSON} when it exists)",
    )
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[1, 4, 50], help="teacher step counts of Table 1"
    )
    args = parser.parse_args(argv)
    if not args.metrics and args.speed is None:
        raise VideoSceneError("nothing to tabulate: pass --metrics FILE... and/or --speed FILE")
    text = render(args.metrics, args.speed, args.steps)
    print(text, end="")
    return text


if __name__ == "__main__":
    try:
        main()
    except VideoSceneError as error:
        sys.exit(f"error: {error}")
