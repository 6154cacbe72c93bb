"""benchmarks/gpu_check.py --dry-run: the GPU check's code path on the CPU at a tiny size, so that it cannot
rot between the runs on a GPU. Plumbing only: every stage is measured and every number is finite; no time
is asserted."""

import importlib
import json
import math

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_thread")

STAGES = ("prior", "render", "vae_encode", "policy", "denoise", "vae_decode")


def finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_gpu_check_dry_run(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    gpu_check = importlib.import_module("gpu_check")
    out = tmp_path / "gpu_check.json"
    gpu_check.main(["--dry-run", "--warmup", "0", "--out", str(out)])
    results = json.loads(out.read_text())

    assert results["scale"] == "dry-run" and results["dtype"] == "float32"
    assert results["video"] == [9, 32, 48]
    for method in ("student", "teacher"):
        assert set(results[method]["seconds"]) == set(STAGES)
        assert all(finite(seconds) for seconds in results[method]["seconds"].values())
        assert finite(results[method]["seconds_per_step"]) and finite(results[method]["total_seconds"])
    assert results["teacher"]["steps"] == 50 and results["teacher"]["extrapolated"]
    assert results["student"]["finite_output"]
    for stage in (*STAGES, "teacher_denoise", "prior_alone"):
        assert finite(results["peak_memory_mib"][stage]), stage
    assert finite(results["ratio_total"]) and finite(results["prior_alone"]["seconds"])

    # No CUDA here: gsplat is reported unavailable and the torch renderer is used; the torch renderer's
    # comparison with its brute-force twin runs through the same error code as gsplat's would.
    assert results["rasterizer"]["gsplat_vs_torch"]["available"] is False
    assert results["rasterizer"]["gsplat_vs_torch"]["reason"]
    assert results["render_backend"] == "torch"
    twin = results["rasterizer"]["torch_vs_reference"]
    assert set(twin["gradients"]) == {"means", "harmonics", "opacities", "scales", "rotations"}
    for errors in (*twin["images"].values(), *twin["gradients"].values()):
        assert all(finite(value) for value in errors.values())
    assert twin["images"]["color"]["rel"] < 1e-3  # float32 against float32: a convention error is far larger
