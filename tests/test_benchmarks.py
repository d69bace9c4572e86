"""Smoke tests of the benchmark scripts: each runs end to end with its smallest settings and reports real figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"


def run_script(name: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_preprocess_throughput_reports_both_formats(tmp_path):
    output = tmp_path / "preprocess.json"
    completed = run_script(
        "preprocess_throughput.py",
        "--num_clips", "4", "--clip_seconds", "1", "--workers", "1", "--repeats", "1",
        "--output_json", str(output),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(output.read_text())
    rows = {row["format"]: row for row in results["results"]}
    assert set(rows) == {"mp3_48k", "wav_16k"}
    for row in rows.values():
        assert row["clips"] == 4 and row["workers"] == 1
        # 4 clips of 1 s at the model's 16 kHz, resampled from 48 kHz for the MP3s
        assert row["audio_seconds"] == pytest.approx(4.0, abs=0.01)
        for key in ("bare_clips_per_second", "pipeline_clips_per_second", "pipeline_audio_hours_per_hour"):
            assert row[key] > 0
        assert row["pipeline_over_bare"] == pytest.approx(row["pipeline_seconds"] / row["bare_seconds"])
    assert results["machine"]["cpu_cores"] >= 1 and results["machine"]["cpu"]
    costs = results["pipeline_costs"]
    for key in ("text_ms", "table_ms", "write_ms"):
        assert 0 < costs[key] < 1000, key
    # 1 s at 16 kHz: 16 000 float32 samples and 62 frames x 80 float32 mel bins, besides the small columns
    assert 4 * (16_000 + 62 * 80) < costs["bytes_per_clip"] < 4 * (16_000 + 62 * 80) + 2048
    assert "pipeline/bare" in completed.stdout and "Arrow table" in completed.stdout


def test_train_throughput_reports_step_breakdown(tmp_path):
    output = tmp_path / "train.json"
    completed = run_script(
        "train_throughput.py",
        "--device", "cpu", "--model_config", "tiny", "--batch_size", "2", "--steps", "2", "--warmup_steps", "0",
        "--min_seconds", "1", "--max_seconds", "1.5", "--output_json", str(output),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(output.read_text())
    assert results["samples_per_second"] > 0 and results["audio_seconds_per_second"] > 0
    assert results["peak_host_memory_mb"] > 0
    assert len(results["steps"]) == 2
    phases = results["phase_seconds"]
    # every phase ran (the alignment timer wraps the real search) and the phases add up to the step
    for name in ("alignment", "generator", "discriminator", "optimizer"):
        assert phases[name] > 0, name
    assert sum(phases.values()) == pytest.approx(results["step_seconds_mean"], rel=1e-6)
    assert sum(results["phase_shares"].values()) == pytest.approx(1.0, rel=1e-6)
    assert 0 <= results["padding_share"] < 1
    assert set(results["mean_loss_components"]) >= {"mel", "kl", "duration", "generator", "discriminator"}
    assert "samples/s" in completed.stdout


def test_train_throughput_compares_steps_side_by_side(tmp_path):
    output = tmp_path / "compare.json"
    completed = run_script(
        "train_throughput.py",
        "--device", "cpu", "--model_config", "tiny", "--batch_size", "2", "--steps", "1", "--warmup_steps", "0",
        "--min_seconds", "1", "--max_seconds", "1.5", "--compare", "2:fp32", "1:fp32", "--rounds", "2",
        "--output_json", str(output),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    variants = json.loads(output.read_text())["variants"]
    assert list(variants) == ["2:fp32", "1:fp32"]
    assert variants["2:fp32"]["speedup_per_round"] == [1.0, 1.0]
    for figures in variants.values():
        assert len(figures["step_seconds_per_round"]) == 2 and figures["speedup_median"] > 0
        assert figures["samples_per_second"] > 0 and figures["peak_memory_mb"] > 0
    # the same weights on the same batches: one pass or two, the losses are VITS's
    two, one = variants["2:fp32"]["mean_loss_components"], variants["1:fp32"]["mean_loss_components"]
    assert one == pytest.approx(two, rel=1e-4)
    assert "x 2:fp32 (median)" in completed.stdout


def test_train_throughput_refuses_flags_that_would_do_nothing():
    completed = run_script("train_throughput.py", "--device", "cpu", "--tf32")
    assert completed.returncode != 0
    assert "--tf32" in completed.stderr
    completed = run_script("train_throughput.py", "--device", "cpu", "--rounds", "2")
    assert completed.returncode != 0 and "--rounds" in completed.stderr


def test_train_throughput_names_a_missing_model_config(tmp_path):
    missing = tmp_path / "no_config.json"
    completed = run_script("train_throughput.py", "--device", "cpu", "--model_config", str(missing), "--steps", "1")
    assert completed.returncode != 0
    assert str(missing) in completed.stderr


def test_period_layout_checks_both_layouts_agree_and_times_them():
    completed = run_script("period_layout.py", "--batch_size", "1", "--samples", "1024", "--pairs", "1")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "fp32: 2-D / 1-D time" in completed.stdout and "bf16: 2-D / 1-D time" in completed.stdout
