"""The pure parts of benchmarks/vad_comparison.py, without Silero: the chunk framing, the bounds from per-chunk
probabilities, the truth of padded and noisy clips and the error measures, on synthetic arrays."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_benchmark

RATE = 16_000
CHUNK = 512


@pytest.fixture(scope="module")
def vad():
    return load_benchmark("vad_comparison")


def tone(seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)


def test_frames_carry_the_previous_chunks_tail(vad):
    waveform = np.arange(1, 1200, dtype=np.float32)
    frames = vad.silero_frames(waveform)
    assert frames.shape == (3, 64 + 512)
    assert not frames[0, :64].any()
    np.testing.assert_array_equal(frames[0, 64:], waveform[:512])
    np.testing.assert_array_equal(frames[1, :64], waveform[448:512])
    np.testing.assert_array_equal(frames[2, 64 : 64 + 1199 - 1024], waveform[1024:])
    assert not frames[2, 64 + 1199 - 1024 :].any()


def probabilities(*runs: tuple[float, int]) -> np.ndarray:
    return np.concatenate([np.full(count, value, dtype=np.float32) for value, count in runs])


def test_bounds_of_one_run(vad):
    probs = probabilities((0.1, 5), (0.9, 20), (0.1, 10))
    assert vad.silero_bounds(probs, len(probs) * CHUNK) == (5 * CHUNK, 25 * CHUNK)


def test_short_runs_are_dropped_and_short_gaps_bridged(vad):
    # 4 chunks (128 ms) of speech is under 250 ms: dropped; a 2-chunk dip (64 ms) is under the 100 ms of silence
    probs = probabilities((0.1, 5), (0.9, 4), (0.1, 10), (0.9, 10), (0.1, 2), (0.9, 10), (0.1, 10))
    assert vad.silero_bounds(probs, len(probs) * CHUNK) == (19 * CHUNK, 41 * CHUNK)
    assert vad.silero_bounds(probabilities((0.1, 5), (0.9, 4), (0.1, 10)), 19 * CHUNK) == (0, 0)


def test_hysteresis_and_open_end(vad):
    # 0.4 is under the threshold but over the negative threshold (0.35): it neither starts nor ends speech
    probs = probabilities((0.4, 5), (0.9, 10), (0.4, 10), (0.9, 10))
    num_samples = len(probs) * CHUNK - 100
    assert vad.silero_bounds(probs, num_samples) == (5 * CHUNK, num_samples)


def test_truth_of_a_padded_clip_and_errors(vad):
    speech = np.concatenate([np.zeros(800, np.float32), tone(1.0), np.zeros(800, np.float32)])
    before, after = 0.5, 0.25
    clip = np.concatenate(
        [np.zeros(round(before * RATE), np.float32), speech, np.zeros(round(after * RATE), np.float32)]
    )
    start, end = vad.truth_span(clip, RATE, {"defect": "room_tone", "before_seconds": before, "after_seconds": after})
    assert start == pytest.approx(before + 0.05, abs=0.011)
    assert end == pytest.approx(before + 1.05, abs=0.011)
    late = vad.bound_errors((start + 0.03, end), (start, end), 0.02)
    assert late["cut"] and late["start_error"] == pytest.approx(0.03)
    early_end = vad.bound_errors((start, end - 0.03), (start, end), 0.02)
    assert early_end["cut"] and early_end["end_error"] == pytest.approx(-0.03)
    assert not vad.bound_errors((start - 0.5, end + 0.5), (start, end), 0.02)["cut"]


@pytest.mark.parametrize("color", ["white", "pink"])
def test_noisy_render_recovered(vad, color):
    from screening import mix_noise

    render = np.concatenate([np.zeros(1600, np.float32), tone(1.0), np.zeros(1600, np.float32)])
    noisy = mix_noise(render, 3.0, np.random.default_rng(7), color)
    recovered = vad.recover_noisy_render(noisy, {"snr_db": 3.0, "color": color}, np.random.default_rng(7))
    assert np.max(np.abs(recovered[:1600])) < 1e-4
    np.testing.assert_allclose(recovered, render, atol=1e-4)
