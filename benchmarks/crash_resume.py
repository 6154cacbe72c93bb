"""Crash recovery of the four trainers: does a run that is SIGKILLed at random moments (and once while it
writes a checkpoint) and then continued with --resume end with the same bytes as a run never stopped?

    python benchmarks/crash_resume.py --kills 3
    python benchmarks/crash_resume.py --trainers prior,vae --kills 2 --work /tmp/crash --seed 1

For each trainer (`videoscene train prior|vae|teacher|distill`) the script
1. builds a tiny dataset and config under --work (synthetic scenes, a 9-frame 16×24 video model, random
   caches);
2. trains once uninterrupted into <work>/<trainer>/straight/;
3. trains into <work>/<trainer>/crashed/, SIGKILLing the process --kills times (random moments within the
   run's expected training phase, every second kill as soon as a checkpoint staging folder appears),
   re-running with --resume after each, then lets a last --resume run finish;
4. compares the sha256 of every exported weight file, looks for stale `.*.partial` staging folders under
   crashed/ and for steps logged twice in crashed/train_log.jsonl.
Writes benchmarks/results/crash_resume.json and prints one row per trainer. Mismatches are reported, not
asserted: the exit status is 0 either way. About 45 s per trainer (3 minutes in all) on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open

from videoscene.distill.cache import CachedClip, CacheWriter
from videoscene.distill.config import DataConfig, DistillConfig, TrainConfig
from videoscene.io_utils import OUTPUT_MARKER, write_json_atomic
from videoscene.policy.ddpnet import PolicyConfig
from videoscene.training.checkpoints import CHECKPOINTS, complete_checkpoints
from videoscene.video.config import VideoModelConfig
from videoscene.video.models import VideoBackbone
from videoscene.video.train_vae import VAETrainConfig, train_vae

RESULTS = Path(__file__).resolve().parent / "results" / "crash_resume.json"
TRAINERS = ("prior", "vae", "teacher", "distill")
STEPS = {"prior": 48, "vae": 160, "teacher": 160, "distill": 480}
TIMING_KEYS = {
    "seconds_per_step",
    "seconds",
    "step_seconds",
}  # log fields that legitimately differ between runs
logger = logging.getLogger("crash_resume")

# A 9-frame 16×24 video model: three VAE blocks (4× spatial and temporal), one transformer layer.
MICRO_VIDEO = {
    "name": "micro",
    "num_frames": 9,
    "height": 16,
    "width": 24,
    "vae": {
        "block_out_channels": [8, 8, 8],
        "latent_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "temporal_compression_ratio": 4,
        "scaling_factor": 1.0,
    },
    "denoiser": {
        "num_layers": 1,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "time_embed_dim": 16,
        "patch_size": 2,
        "use_rotary_positional_embeddings": True,
        "use_learned_positional_embeddings": False,
        "spatial_interpolation_scale": 1.0,
        "temporal_interpolation_scale": 1.0,
    },
    "text": {"kind": "learned", "num_tokens": 4, "dim": 16},
}


# -- 1. tiny data and configs --------------------------------------------------------------------------------
def synth(out: Path, split: str, scenes: int, seed: int) -> Path:
    """Procedural scenes at 32×48, 12 frames (the VAE and teacher resize them to 16×24)."""
    if not (out / split / "index.json").is_file():
        command = [
            "synth",
            "--scenes",
            str(scenes),
            "--frames",
            "12",
            "--height",
            "32",
            "--width",
            "48",
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--split",
            split,
        ]
        subprocess.run(
            [sys.executable, "-m", "videoscene.cli", "data", *command], check=True, capture_output=True
        )
    return out / split


def write_config(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config, indent=2))
    return path


def setup(trainer: str, root: Path, work: Path):
    """The trainer's config file; returns a function of the output folder giving the CLI arguments."""
    train, test = synth(work / "data", "train", 3, 0), synth(work / "data_test", "test", 1, 1)
    video = work / "micro_video.json"
    VideoModelConfig.from_dict(MICRO_VIDEO).save_json(video)
    common = {"num_threads": 1, "log_every": 1, "checkpoint_every": 2, "keep_checkpoints": 2, "seed": 3}
    if trainer == "prior":
        config = write_config(
            root / "prior.json",
            {
                "encoder": "tiny",
                "train_data": [str(train)],
                "validation_data": [str(test)],
                "image_size": [32, 48],
                "num_frames": 9,
                "max_stride": 1,
                "near": 1.0,
                "far": 20.0,
                "targets_per_step": 2,
                "batch_size": 2,
                "steps": STEPS["prior"],
                "lr": 2e-3,
                "warmup_steps": 1,
                "validate_every": 8,
                "validation_scenes": 1,
                **common,
            },
        )
    elif trainer == "vae":
        config = write_config(
            root / "vae.json",
            {
                "video": str(video),
                "train_data": [str(train)],
                "validation_data": [str(test)],
                "num_frames": 9,
                "crop_size": [8, 16],
                "max_stride": 1,
                "batch_size": 2,
                "steps": STEPS["vae"],
                "lr": 3e-3,
                "warmup_steps": 1,
                "validate_every": 32,
                "validation_clips": 1,
                "scale_clips": 2,
                **common,
            },
        )
    elif trainer == "teacher":
        vae_run = root / "vae_for_teacher"  # the teacher needs a trained VAE: two steps are enough
        if not (vae_run / "vae").is_dir():
            train_vae(
                VAETrainConfig(
                    video=str(video),
                    train_data=[str(train)],
                    num_frames=9,
                    crop_size=(8, 16),
                    max_stride=1,
                    batch_size=2,
                    steps=2,
                    scale_clips=2,
                    num_threads=1,
                ),
                vae_run,
            )
        config = write_config(
            root / "teacher.json",
            {
                "video": str(video),
                "vae": str(vae_run / "vae"),
                "train_data": [str(train)],
                "validation_data": [str(test)],
                "max_stride": 1,
                "clips_per_scene": 2,
                "batch_size": 2,
                "steps": STEPS["teacher"],
                "lr": 2e-3,
                "warmup_steps": 1,
                "validate_every": 32,
                "validation_clips": 1,
                "validation_steps": 2,
                "ema_decay": 0.9,
                **common,
            },
        )
        # Each run builds its own latent cache inside its output, so a kill can land in that too.
        return lambda out: [
            "teacher",
            "--config",
            str(config),
            "--out",
            str(out),
            "--cache-dir",
            str(out / "cache"),
        ]
    else:
        config = setup_distill(root, video)
    return lambda out: [trainer, "--config", str(config), "--out", str(out)]


def setup_distill(root: Path, video: Path) -> Path:
    """A random micro teacher and random latent caches (the distiller reads prebuilt caches as they are)."""
    torch.manual_seed(0)
    teacher = VideoBackbone.build(VideoModelConfig.load_json(video))
    if not (root / "teacher").is_dir():
        teacher.save_pretrained(root / "teacher")
    c = teacher.config
    shape = (c.latent_frames, c.latent_channels, c.latent_height, c.latent_width)
    caches = {}
    for name, count, seed in (("train_cache", 4, 0), ("val_cache", 1, 1)):
        generator, writer = (
            torch.Generator().manual_seed(seed),
            CacheWriter(root / name, spec={"random": seed}),
        )
        for i in range(count):
            frames = torch.randint(
                0, 256, (c.num_frames, 3, c.height, c.width), generator=generator, dtype=torch.uint8
            )
            latents = [torch.randn(shape, generator=generator) for _ in range(3)]
            disagreement = torch.rand((shape[0], 2, *shape[2:]), generator=generator)
            writer.write(
                i, CachedClip(*latents, disagreement, render_frames=frames, target_frames=frames.flip(0))
            )
        caches[name] = str(writer.finish(count).folder)
    config = DistillConfig(
        teacher=str(root / "teacher"),
        data=DataConfig(**caches),
        policy=PolicyConfig(
            candidates=(199, 399, 599),
            hidden_channels=8,
            train_steps=48,
            learning_rate=1e-3,
            pulls_per_clip=2,
        ),
        train=TrainConfig(
            steps=STEPS["distill"],
            learning_rate=1e-4,
            checkpoint_every=2,
            validate_every=32,
            validation_clips=1,
            num_threads=1,
            seed=3,
        ),
    )
    return write_config(root / "distill.json", config.to_dict())


# -- what a finished run holds -------------------------------------------------------------------------------
def weight_hashes(trainer: str, out: Path) -> dict[str, str]:
    """sha256 of every exported weight file (the output marker holds a process id, so it is left out)."""
    files = {
        "prior": [out / "prior.safetensors"],
        "vae": sorted((out / "vae").glob("*")),
        "teacher": sorted((out / "teacher").glob("*")),
        "distill": [*sorted((out / "student").glob("*")), out / "ddpnet.safetensors"],
    }[trainer]
    return {
        str(f.relative_to(out)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in files
        if f.is_file() and f.name != OUTPUT_MARKER
    }


def explain(path_a: Path, path_b: Path) -> str:
    """Why two weight files differ: their tensors, or only their header (safetensors metadata, e.g. its
    order)."""
    if path_a.suffix != ".safetensors" or not (path_a.is_file() and path_b.is_file()):
        return "missing" if not (path_a.is_file() and path_b.is_file()) else "bytes differ"
    a, b = safe_open(str(path_a), "pt"), safe_open(str(path_b), "pt")
    names_a, names_b = set(a.keys()), set(b.keys())
    differ = sorted(
        (names_a ^ names_b)
        | {k for k in names_a & names_b if not torch.equal(a.get_tensor(k), b.get_tensor(k))}
    )
    if differ:
        return "tensors differ: " + ", ".join(differ)
    return "tensors equal; header differs" + (
        " (same metadata, other key order)" if a.metadata() == b.metadata() else " (metadata)"
    )


def log_records(out: Path) -> list[dict]:
    path = out / "train_log.jsonl"
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    )


def first_log_difference(straight: list[dict], crashed: list[dict]) -> int | None:
    """The first step whose logged losses differ (timings left out): where a resumed run went astray."""

    def strip(record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in TIMING_KEYS}

    by_step = {r["step"]: r for r in crashed}
    for record in straight:
        other = by_step.get(record["step"])
        if other is None or strip(other) != strip(record):
            return record["step"]
    return None


def newest_step(out: Path) -> int:
    found = complete_checkpoints(out)
    return found[-1][0] if found else 0


# -- 2./3. runs and kills ------------------------------------------------------------------------------------
def launch(arguments: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as stream:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "videoscene.cli", "train", *arguments], stdout=stream, stderr=stream
        )


def run_straight(arguments: list[str], out: Path, log: Path, steps: int) -> tuple[float, float, float]:
    """Wall seconds of an uninterrupted run, of its start-up (until the first step is logged) and of its
    training phase (until the last checkpoint is complete; validation and export follow)."""
    start, startup, trained = time.monotonic(), None, None
    process = launch(arguments, log)
    while process.poll() is None:
        if startup is None and (out / "train_log.jsonl").is_file():
            startup = time.monotonic() - start
        if trained is None and newest_step(out) == steps:
            trained = time.monotonic() - start
        time.sleep(0.01)
    if process.returncode != 0:
        raise RuntimeError(f"uninterrupted run failed (exit {process.returncode}); see {log}")
    seconds = time.monotonic() - start
    startup = startup if startup is not None else seconds
    return seconds, startup, (trained or seconds) - startup


def new_partials(out: Path, before: set[str]) -> list[str]:
    return [p.name for p in (out / CHECKPOINTS).glob(".*.partial") if p.name not in before]


def one_kill(process: subprocess.Popen, kind: str, delay: float, out: Path) -> dict:
    """SIGKILL `process` after `delay` s ("random") or as soon as a new checkpoint staging folder appears."""
    start, before = time.monotonic(), set(new_partials(out, set()))
    partial = None
    while process.poll() is None:
        if kind == "random" and time.monotonic() - start >= delay:
            break
        if kind == "checkpoint" and (found := new_partials(out, before)):
            partial = found[0]
            break
        time.sleep(0.002)  # a tiny checkpoint takes some 10-50 ms to write
    at = time.monotonic() - start
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()
    records = log_records(out)
    return {
        "kind": kind,
        "planned_s": round(delay, 2) if kind == "random" else None,
        "at_s": round(at, 2),
        "delivered": process.returncode == -signal.SIGKILL,
        "returncode": process.returncode,
        "partial": partial,
        "last_logged_step": records[-1]["step"] if records else None,
        "newest_checkpoint": newest_step(out),
    }


def crash_and_resume(
    trainer, arguments, out, logs, kills, rng, startup_s, train_s
) -> tuple[list[dict], dict]:
    per_step = max(train_s, 0.1) / STEPS[trainer]
    history = []
    for k in range(kills):
        # Every second kill aims at a checkpoint write; the others at a random moment of the expected training
        # phase (start-up takes half the time of these tiny runs, and a kill there tests little).
        kind = "checkpoint" if k % 2 else "random"
        expected = startup_s + per_step * (STEPS[trainer] - newest_step(out))
        process = launch(arguments(out) + (["--resume"] if k else []), logs / f"crashed_{k}.log")
        record = one_kill(process, kind, rng.uniform(0.8 * startup_s, expected), out)
        history.append(record)
        logger.info("%s kill %d: %s", trainer, k + 1, record)
        if record["returncode"] not in (0, -signal.SIGKILL):
            logger.warning(
                "%s: run %d failed with exit %s; see %s",
                trainer,
                k,
                record["returncode"],
                logs / f"crashed_{k}.log",
            )
        if record["returncode"] == 0:
            break  # it finished before it could be killed: nothing left to interrupt
    process = launch(arguments(out) + ["--resume"], logs / "crashed_final.log")
    process.wait()
    return history, {"returncode": process.returncode, "log": str(logs / "crashed_final.log")}


def measure(trainer: str, work: Path, kills: int, seed: int) -> dict:
    root = work / trainer
    root.mkdir(parents=True, exist_ok=True)
    tic = time.monotonic()
    arguments = setup(trainer, root, work)
    setup_s = time.monotonic() - tic
    straight, crashed = root / "straight", root / "crashed"
    straight_s, startup_s, train_s = run_straight(
        arguments(straight), straight, root / "straight.log", STEPS[trainer]
    )
    logger.info(
        "%s: uninterrupted run %.1f s (start-up %.1f s, training %.1f s)",
        trainer,
        straight_s,
        startup_s,
        train_s,
    )
    tic = time.monotonic()
    history, final = crash_and_resume(
        trainer, arguments, crashed, root, kills, random.Random(f"{seed}:{trainer}"), startup_s, train_s
    )
    crashed_s = time.monotonic() - tic

    # 4. Compare.
    a, b = weight_hashes(trainer, straight), weight_hashes(trainer, crashed)
    differing = {
        k: explain(straight / k, crashed / k) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)
    }
    steps = [r["step"] for r in log_records(crashed)]
    stale = sorted(str(p.relative_to(crashed)) for p in crashed.rglob(".*.partial"))
    return {
        "trainer": trainer,
        "steps": STEPS[trainer],
        "straight_sha256": a,
        "crashed_sha256": b,
        "identical": bool(a) and a == b,
        "same_tensors": bool(a) and all(why.startswith("tensors equal") for why in differing.values()),
        "differing_files": differing,
        "kills_delivered": sum(r["delivered"] for r in history),
        "kills": history,
        "final_run": final,
        "stale_partials": stale,
        "stale_tmp_files": sorted(str(p.relative_to(crashed)) for p in crashed.rglob(".*.tmp")),
        "logged_steps": steps,
        "duplicate_steps": sorted({s for s in steps if steps.count(s) > 1}),
        "first_log_difference_step": first_log_difference(log_records(straight), log_records(crashed)),
        "seconds": {
            "setup": round(setup_s, 1),
            "straight": round(straight_s, 1),
            "startup": round(startup_s, 1),
            "training": round(train_s, 1),
            "crashed_total": round(crashed_s, 1),
        },
    }


# -- 5. report -----------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--trainers", default=",".join(TRAINERS), help="comma-separated subset of prior,vae,teacher,distill"
    )
    parser.add_argument(
        "--kills", type=int, default=3, help="SIGKILLs per trainer before the last --resume run"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument(
        "--work", type=Path, default=None, help="work folder (default: a fresh temporary folder)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    trainers = [t.strip() for t in args.trainers.split(",") if t.strip()]
    if unknown := set(trainers) - set(TRAINERS):
        parser.error(f"unknown trainers {sorted(unknown)}; choose from {','.join(TRAINERS)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="crash_resume."))
    work.mkdir(parents=True, exist_ok=True)
    logger.info("work folder %s", work)

    rows = [measure(trainer, work.resolve(), args.kills, args.seed) for trainer in trainers]
    results = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "arguments": {**vars(args), "work": str(work)},
        "trainers": rows,
    }
    print(
        f"\n{'trainer':8} {'steps':>5} {'kills':>5} {'identical':>9} {'tensors':>7} {'stale':>5} "
        f"{'dup steps':>9} {'1st diff':>8} {'straight s':>10} {'crashed s':>9}"
    )
    for r in rows:
        print(
            f"{r['trainer']:8} {r['steps']:>5} {r['kills_delivered']:>5} {r['identical']!s:>9} "
            f"{r['same_tensors']!s:>7} {len(r['stale_partials']):>5} "
            f"{len(r['duplicate_steps']):>9} {r['first_log_difference_step'] or '-'!s:>8} "
            f"{r['seconds']['straight']:>10.1f} {r['seconds']['crashed_total']:>9.1f}"
        )
    for r in rows:
        problems = []
        if not r["identical"]:
            problems.append(f"weights differ: {r['differing_files'] or 'no weight files'}")
        if r["stale_partials"]:
            problems.append(f"stale staging folders: {r['stale_partials']}")
        if r["duplicate_steps"]:
            problems.append(f"steps logged twice: {r['duplicate_steps']}")
        if r["final_run"]["returncode"] != 0:
            problems.append(
                f"final --resume run exited {r['final_run']['returncode']} ({r['final_run']['log']})"
            )
        if problems:
            print(f"MISMATCH {r['trainer']}: " + "; ".join(problems))
    write_json_atomic(RESULTS, results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
