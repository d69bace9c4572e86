"""What the benchmark scripts share: the machine's description, peak memory, the JSON / table output, and a clip read
as the data pipeline reads it."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import subprocess
import sys

import numpy as np
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    # the scripts run as `python benchmarks/<name>.py` from a checkout, with or without `pip install -e .`
    sys.path.insert(0, REPO_ROOT)


def cpu_model_name() -> str:
    """`lscpu`'s "Model name" (what the README's figures cite), else `platform.processor()`."""
    try:
        listing = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    for line in listing.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_description(device: torch.device) -> dict:
    """CPU model and cores, the accelerator when used, library versions and the date: what a figure needs beside it."""
    description = {
        "cpu": cpu_model_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }
    if device.type == "cuda":
        description["gpu"] = torch.cuda.get_device_name(device)
    return description


def peak_host_memory_mb() -> float:
    """Peak resident set size of this process (Linux reports `ru_maxrss` in KiB), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_children_memory_mb() -> float:
    """Peak resident set size of the largest finished child process (e.g. a `datasets.map` worker), in MiB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a host clock reading covers it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def read_clip(path: str, sampling_rate: int) -> np.ndarray:
    """The clip at `path` decoded, mixed to mono and resampled to `sampling_rate`, as `recipe.data` reads a clip."""
    from recipe.audio import decode_audio, resample, to_mono

    decoded = decode_audio(path)
    return resample(to_mono(decoded.samples), decoded.sampling_rate, sampling_rate)


def write_json(results: dict, path: str | None) -> None:
    """Write `results` to `path` (creating its folder); nothing when `path` is `None`."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    print(f"Wrote {path}")


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A plain-text table: `columns` holds (key, header, format spec) triples."""
    headers = [header for _, header, _ in columns]
    cells = [[format(row[key], spec) if row.get(key) is not None else "-" for key, _, spec in columns] for row in rows]
    widths = [max(len(headers[i]), *(len(line[i]) for line in cells)) for i in range(len(columns))]
    lines = ["  ".join(header.rjust(width) for header, width in zip(headers, widths))]
    lines.extend("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells)
    return "\n".join(lines)


def resumable_stages(parser, stages_text: str, known: tuple[str, ...], work_dir: str) -> tuple[list, str, dict]:
    """A staged benchmark's `--stages` (comma-separated, each of `known`, else a parser error), its results file in
    `work_dir` (created) and the results an earlier run left there (empty when none): the stages already in them are
    skipped, so that an interrupted run goes on."""
    stages = stages_text.split(",")
    unknown = sorted(set(stages) - set(known))
    if unknown:
        parser.error(f"unknown stages {unknown}; choose from {', '.join(known)}")
    os.makedirs(work_dir, exist_ok=True)
    results_path = os.path.join(work_dir, "results.json")
    results = {}
    if os.path.isfile(results_path):
        with open(results_path, encoding="utf-8") as handle:
            results = json.load(handle)
    return stages, results_path, results
