"""The pure parts of benchmarks/screening.py: the defect generators on synthetic signals, the join and scoring of a
clips table against a defects map, and the message when the recipe wrote no clips table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import load_benchmark

RATE = 16_000


@pytest.fixture(scope="module")
def screening():
    return load_benchmark("screening")


def tone(seconds: float = 1.0, frequency: float = 220.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def loud_span(waveform: np.ndarray, threshold: float = 1e-3) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(waveform) > threshold)
    return int(loud[0]), int(loud[-1]) + 1


def test_padded_silence_adds_near_silence_on_each_side(screening):
    rng = np.random.default_rng(0)
    padded = screening.pad_with_silence(tone(), RATE, 0.5, 2.0, rng)
    start, end = loud_span(padded)
    assert start / RATE == pytest.approx(0.5, abs=0.002)
    assert (len(padded) - end) / RATE == pytest.approx(2.0, abs=0.002)
    assert screening.rms_db(padded[:start]) == pytest.approx(screening.NEAR_SILENCE_DB, abs=1.0)
    # the plan draws the padding from the defect's range
    for clip in screening.clip_plan(0):
        if clip["defect"] in ("padded_silence", "room_tone"):
            assert 0.5 <= clip["before_seconds"] <= 2.0 and 0.5 <= clip["after_seconds"] <= 2.0


def test_room_tone_is_quiet_high_passed_noise(screening):
    rng = np.random.default_rng(1)
    padded = screening.pad_with_room_tone(tone(), RATE, 1.0, 0.6, -55.0, rng)
    before = padded[:RATE]
    assert len(padded) == round(2.6 * RATE)
    assert screening.rms_db(before) == pytest.approx(-55.0, abs=0.01)
    spectrum = np.abs(np.fft.rfft(before)) ** 2
    frequencies = np.fft.rfftfreq(len(before), 1 / RATE)
    # a 2nd-order high-pass at 60 Hz: the lowest band holds far less than its share of white noise
    low = spectrum[(frequencies > 0) & (frequencies < 20)].mean()
    assert low < 0.05 * spectrum[frequencies > 200].mean()


@pytest.mark.parametrize("color", ["white", "pink"])
@pytest.mark.parametrize("snr_db", [0.0, 5.0, 10.0])
def test_noise_mix_reaches_the_requested_snr(screening, color, snr_db):
    speech = tone(2.0)
    noisy = screening.mix_noise(speech, snr_db, np.random.default_rng(2), color)
    noise = noisy - speech
    measured = 10 * math.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.5)


def test_pink_noise_falls_with_frequency(screening):
    noise = screening.pink_noise(RATE * 4, np.random.default_rng(3))
    spectrum = np.abs(np.fft.rfft(noise)) ** 2
    frequencies = np.fft.rfftfreq(len(noise), 1 / RATE)
    low = spectrum[(frequencies > 100) & (frequencies < 200)].mean()
    high = spectrum[(frequencies > 3200) & (frequencies < 6400)].mean()
    assert 10 * math.log10(low / high) == pytest.approx(10 * math.log10(32), abs=2.0)


def test_telephone_leaves_no_energy_above_4_khz(screening):
    noise = screening.white_noise(RATE * 2, np.random.default_rng(4)) * 0.1
    narrow = screening.telephone(noise, RATE)
    assert len(narrow) == len(noise)
    spectrum = np.abs(np.fft.rfft(narrow)) ** 2
    frequencies = np.fft.rfftfreq(len(narrow), 1 / RATE)
    above = spectrum[frequencies > 4100].sum() / spectrum.sum()
    assert 10 * math.log10(above) < -50
    # and what is below the telephone band's edge stays
    original = np.abs(np.fft.rfft(noise)) ** 2
    assert spectrum[frequencies < 3000].sum() / original[frequencies < 3000].sum() > 0.9


def test_truncated_reading_is_about_half_as_long(screening):
    speech = np.concatenate([np.zeros(RATE // 10, np.float32), tone(2.0), np.zeros(RATE // 10, np.float32)])
    cut = screening.truncate_reading(speech, RATE)
    assert (len(cut) / RATE) == pytest.approx(0.1 + 1.0, abs=0.02)
    assert abs(cut[-1]) < 1e-6  # faded out, no click


def test_dc_offset_shifts_the_mean(screening):
    speech = tone()
    shifted = screening.add_dc_offset(speech, 0.2)
    assert shifted.mean() - speech.mean() == pytest.approx(0.2, abs=1e-6)
    loud = screening.add_dc_offset(tone(amplitude=0.95), 0.2)
    assert loud.max() <= 0.98 + 1e-6 and loud.mean() == pytest.approx(0.2, abs=1e-3)


def test_plan_has_the_classes_and_swapped_transcripts_of_other_lengths(screening):
    plan = screening.clip_plan(0)
    counts = {kind: sum(1 for clip in plan if clip["defect"] == kind) for kind in screening.CLASSES}
    assert counts[screening.CLEAN] + counts[screening.DC_OFFSET] >= 72
    assert all(counts[kind] == 12 for kind in screening.DEFECTS)
    assert len({clip["file"] for clip in plan}) == len(plan)
    for speaker in screening.SPEAKERS:
        assert sum(1 for clip in plan if clip["speaker"] == speaker) >= 20
    assert all(clip["split"] == "train" for clip in plan if clip["defect"] != screening.CLEAN)
    for clip in plan:
        if clip["defect"] == "swapped":
            ratio = clip["transcript_length_ratio"]
            assert ratio > 1.5 or ratio < 0.5, clip
        else:
            assert clip["sentence"] == clip["read"]
    assert plan == screening.clip_plan(0) and plan != screening.clip_plan(1)


def row(path, drop_reason="", trimmed=(0.1, 0.1), snr=40.0, bandwidth=8000.0, rate=14.0, speaker_rate=14.0):
    return {
        "split": "train", "path": path, "speaker": "joe_a", "drop_reason": drop_reason,
        "trimmed_start_seconds": trimmed[0], "trimmed_end_seconds": trimmed[1], "speech_seconds": 3.0,
        "snr_db": snr, "bandwidth_hz": bandwidth, "rate": rate, "speaker_rate": speaker_rate,
    }  # fmt: skip


def hand_made_run():
    defects = {
        "c1.wav": "clean", "c2.wav": "clean", "c3.wav": "clean", "d1.wav": "dc_offset",
        "n1.wav": "noisy", "n2.wav": "noisy", "n3.wav": "noisy", "n4.wav": "noisy",
        "t1.wav": "telephone", "p1.wav": "padded_silence", "p2.wav": "padded_silence",
        "s1.wav": "swapped", "s2.wav": "swapped", "missing.wav": "truncated_reading",
    }  # fmt: skip
    rows = [
        row("/data/cv/clips/c1.wav"),
        row("/data/cv/clips/c2.wav", "low_snr", snr=11.0),
        row("c3.wav", "rate_outlier", rate=20.0),
        row("d1.wav"),
        row("n1.wav", "low_snr", snr=5.0),
        row("n2.wav", "low_snr", snr=8.0),
        row("n3.wav", "narrow_band", bandwidth=3000.0),
        row("n4.wav", snr=14.0),
        row("t1.wav", "narrow_band", bandwidth=3900.0),
        row("p1.wav", trimmed=(1.2, 0.9)),
        row("p2.wav", trimmed=(0.2, 0.1)),
        row("s1.wav", "rate_outlier", rate=28.0),
        row("s2.wav", rate=None, speaker_rate=None),
        row("unknown.wav"),
    ]
    return rows, {name: {"defect": kind, "speaker": "joe_a"} for name, kind in defects.items()}


def test_scoring_recall_precision_and_wrongly_dropped(screening):
    rows, defects = hand_made_run()
    results = screening.score(rows, defects)
    classes = results["classes"]
    noisy = classes["noisy"]
    assert noisy["clips"] == 4 and noisy["dropped"] == 3
    assert noisy["dropped_by_reason"] == {"low_snr": 2, "narrow_band": 1}
    assert noisy["expected"] == "low_snr"
    assert noisy["recall"] == 0.5 and noisy["caught_any"] == 0.75
    assert noisy["ranges"]["snr_db"] == [5.0, 40.0]
    assert classes["telephone"]["recall"] == 1.0
    padded = classes["padded_silence"]
    assert padded["expected"] == "trimmed" and padded["recall"] == 0.5 and padded["dropped"] == 0
    assert padded["ranges"]["trimmed_seconds"] == [0.3, 2.1]
    swapped = classes["swapped"]
    assert swapped["recall"] == 0.5 and swapped["ranges"]["rate_over_speaker_rate"] == [2.0, 2.0]
    assert "truncated_reading" not in classes
    assert classes["clean"]["wrongly_dropped_share"] == pytest.approx(2 / 3, abs=1e-4)

    reasons = results["reasons"]
    # low_snr: 2 noisy clips and a clean one; narrow_band: a telephone clip and a noisy one
    assert reasons["low_snr"]["dropped"] == 3 and reasons["low_snr"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert reasons["narrow_band"]["precision"] == 0.5
    assert reasons["narrow_band"]["by_defect"] == {"noisy": 1, "telephone": 1}
    assert reasons["rate_outlier"]["precision"] == 0.5

    clean = results["clean_wrongly_dropped"]
    assert clean["clips"] == 4 and clean["wrongly_dropped"] == 2 and clean["wrongly_dropped_share"] == 0.5
    assert clean["reasons"] == {"low_snr": 1, "rate_outlier": 1}
    assert results["unmatched"] == {"rows_not_in_defects": 1, "clips_not_in_table": 1}
    table = screening.format_results(results)
    assert "noisy" in table and "50%" in table and "wrongly dropped: 2 of 4" in table


def test_clips_table_is_read_with_empty_and_nan_measures(screening, tmp_path):
    path = tmp_path / "data_clips.tsv"
    path.write_text(
        "split\tpath\tspeaker\tdrop_reason\ttrimmed_start_seconds\ttrimmed_end_seconds\tspeech_seconds\tsnr_db\t"
        "bandwidth_hz\trate\tspeaker_rate\n"
        "train\t/x/clips/a.wav\tjoe_a\t\t0.25\t0.5\t2.0\t35.5\t7900\t14.2\t13.9\n"
        "eval\tb.wav\tjoe_b\tdecode_error\t\t\tnan\t\t\t\t\n"
    )
    rows = screening.read_clips_table(str(path))
    assert rows[0]["path"] == "/x/clips/a.wav" and rows[0]["drop_reason"] == ""
    assert rows[0]["snr_db"] == 35.5 and screening.trimmed_seconds(rows[0]) == 0.75
    assert rows[1]["drop_reason"] == "decode_error" and rows[1]["speech_seconds"] is None
    assert rows[1]["snr_db"] is None and screening.trimmed_seconds(rows[1]) == 0.0


def test_missing_clips_table_is_named(screening, tmp_path):
    (tmp_path / "data_report.json").write_text(json.dumps({"train": {"seen": 1, "kept": 1, "dropped": {}}}))
    with pytest.raises(SystemExit) as raised:
        screening.read_run(str(tmp_path))
    message = str(raised.value)
    assert str(tmp_path / "data_clips.tsv") in message and "is missing" in message
    with pytest.raises(SystemExit, match="data_report.json is missing"):
        screening.read_run(str(tmp_path / "nothing"))


def test_screen_stage_without_generated_folder_says_so(screening, tmp_path):
    with pytest.raises(SystemExit, match="defects.json is missing: run --stage generate first"):
        screening.main(["--work_dir", str(tmp_path), "--stage", "screen"])
