"""Start-up time of the command line (issue 14): wall time of `videoscene --help`, `python -c "import torch"`
and `videoscene demo`, beside the pipeline's own time (report.json's timings_seconds.total), each the median
of --repeats fresh processes. The commands take turns within each repeat, so a burst of load from other
processes on the machine falls on all of them. Prints a table and writes benchmarks/results/startup.json.

Targets: `--help` under 0.5 s; `demo` within 1.5 s of `import torch` plus the pipeline's own time. The
demo's overhead is taken per run (its wall time less its own pipeline time), which keeps a slow pipeline
step on a loaded machine out of it. CPU seconds (user + system, of the process and its children) are shown
beside the wall time: on a shared machine they move less with other people's load.

    python benchmarks/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "startup.json"
HELP_TARGET_S = 0.5
DEMO_MARGIN_S = 1.5


def _videoscene() -> list[str]:
    """The installed console script (what users run), else the module behind it."""
    script = Path(sys.executable).parent / "videoscene"
    return [str(script)] if script.exists() else [sys.executable, "-m", "videoscene.cli"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `command`."""
    cpu, start = _children_cpu(), time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, _children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    names = ("help", "import_torch", "demo", "pipeline", "demo_less_pipeline")
    samples: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in ("help", "import_torch", "demo")}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "demo"
        commands = {
            "help": [*_videoscene(), "--help"],
            "import_torch": [sys.executable, "-c", "import torch"],
            "demo": [*_videoscene(), "demo", "--out", str(out), "--overwrite"],
        }
        _run(commands["demo"])  # warm-up: the page cache, and the first write of the output folder
        for _ in range(args.repeats):
            for name, command in commands.items():
                wall, cpu_seconds = _run(command)
                samples[name].append(wall)
                cpu[name].append(cpu_seconds)
            pipeline = json.loads((out / "report.json").read_text())["timings_seconds"]["total"]
            samples["pipeline"].append(pipeline)
            samples["demo_less_pipeline"].append(samples["demo"][-1] - pipeline)
    median = {name: statistics.median(values) for name, values in samples.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    overhead = median["demo_less_pipeline"] - median["import_torch"]

    rows = {
        "videoscene --help": "help",
        'python -c "import torch"': "import_torch",
        "videoscene demo": "demo",
        "  pipeline (report.json total)": "pipeline",
        "  demo less its pipeline": "demo_less_pipeline",
    }
    print(f"{'command':<32}{'median s':>10}{'min s':>9}{'max s':>9}{'CPU s':>9}")
    for label, name in rows.items():
        values = samples[name]
        cpu_column = f"{median_cpu[name]:>9.3f}" if name in median_cpu else ""
        print(f"{label:<32}{median[name]:>10.3f}{min(values):>9.3f}{max(values):>9.3f}{cpu_column}")
    print(
        f"demo - pipeline - import torch: {overhead:.3f} s (target <= {DEMO_MARGIN_S}); "
        f"--help {median['help']:.3f} s (target < {HELP_TARGET_S}); load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "seconds_median": median,
                "seconds_all": samples,
                "cpu_seconds_median": median_cpu,
                "demo_overhead_seconds": overhead,
                "targets": {
                    "help_below_seconds": HELP_TARGET_S,
                    "demo_overhead_at_most_seconds": DEMO_MARGIN_S,
                    "help_met": median["help"] < HELP_TARGET_S,
                    "demo_met": overhead <= DEMO_MARGIN_S,
                },
                "repeats": args.repeats,
                "machine": {
                    "platform": platform.platform(),
                    "processor": platform.processor(),
                    "cpus": os.cpu_count(),
                    "load_average_after": os.getloadavg(),
                    "python": sys.version.split()[0],
                },
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
