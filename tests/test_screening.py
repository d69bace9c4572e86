"""Audio screening on files made here: a cut MP3 and WAV, NaN / inf samples, silence, clipping (one channel of two),
each with the reason it gets, and the bundled demo clips, which every default keeps."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import DEMO_DIR, make_tiny_config

from recipe.audio import decode_audio, to_mono
from recipe.data.audio_screening import AudioScreening, broken_reason, level_reason, measure_levels
from recipe.data.pipeline import DataError, format_report, prepare_datasets
from recipe.data.speech_activity import TRIM_PAD_SECONDS, measure_activity
from recipe.training.arguments import DataArguments

RATE = 16000
DEFAULTS = AudioScreening()


def speech_like(seconds: float = 1.5, rate: int = RATE, peak: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    signal = np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * np.sin(2 * np.pi * 1e3 * t)
    return (peak * signal / np.abs(signal).max()).astype(np.float32)


def encoded(samples: np.ndarray, file_format: str, subtype: str | None = None, rate: int = RATE) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=file_format, subtype=subtype)
    return buffer.getvalue()


def screen(data: bytes, screening: AudioScreening = DEFAULTS) -> str:
    decoded = decode_audio(data, "clip")
    reason = broken_reason(decoded, screening)
    if reason:
        return reason
    return level_reason(measure_levels(decoded.samples, to_mono(decoded.samples), decoded.sampling_rate), screening)


@pytest.mark.parametrize("file_format", ["MP3", "WAV"])
def test_a_file_cut_to_half_its_bytes_is_truncated(file_format):
    whole = encoded(speech_like(), file_format)
    cut = whole[: len(whole) // 2]
    decoded = decode_audio(cut, "cut")
    # what soundfile reports for the cut file: the header's length, and a part of it decoded (an MP3's bit rate
    # varies with the content: half its bytes need not be half its audio)
    assert decoded.declared_frames == decode_audio(whole).declared_frames == decode_audio(whole).num_frames
    assert 0.2 < decoded.num_frames / decoded.declared_frames < 0.6
    assert screen(whole) == "" and screen(cut) == "truncated"
    # the tolerance is the share that may be missing: at 1 the check is off
    assert screen(cut, AudioScreening(truncation_tolerance=1.0)) == ""


def test_non_finite_samples(tmp_path):
    for bad in (np.nan, np.inf, -np.inf):
        samples = speech_like()
        samples[100] = bad
        assert screen(encoded(samples, "WAV", "FLOAT")) == "non_finite_audio"


def test_silence_is_measured_on_the_loudest_50_ms():
    assert screen(encoded(np.zeros(RATE, np.float32), "WAV")) == "silent"
    # room noise at -60 dBFS RMS: below the -50 dBFS floor
    noise = (10 ** (-60 / 20) * np.random.default_rng(0).standard_normal(RATE)).astype(np.float32)
    assert screen(encoded(noise, "WAV", "FLOAT")) == "silent"
    # one 0.1 s word at -40 dBFS in a second of that noise is sound
    word = noise.copy()
    word[8000:9600] += speech_like(0.1, peak=0.014)
    levels = measure_levels(word[:, None], word, RATE)
    assert -45 < levels.loudest_frame_db < -35 and screen(encoded(word, "WAV", "FLOAT")) == ""
    assert screen(encoded(word, "WAV", "FLOAT"), AudioScreening(silence_threshold_db=-30)) == "silent"


def test_clipping_is_counted_on_every_channel():
    quiet = speech_like(peak=0.5)
    loud = np.clip(quiet * 8, -1, 1)
    expected = np.mean(np.abs(loud) >= 1)
    assert expected > 0.1
    stereo = np.stack([quiet, loud], axis=1)
    decoded = decode_audio(encoded(stereo, "WAV", "PCM_16"))
    levels = measure_levels(decoded.samples, to_mono(decoded.samples), RATE)
    # half the samples are the clipped channel's; a mix to mono (peak 0.75) would show none
    assert levels.clipped_fraction == pytest.approx(expected / 2, abs=1e-3)
    assert np.abs(to_mono(decoded.samples)).max() < 0.8
    assert level_reason(levels, DEFAULTS) == "clipped"
    assert level_reason(levels, AudioScreening(max_clipped_fraction=expected / 2 + 0.01)) == ""
    assert screen(encoded(quiet, "WAV", "PCM_16")) == ""


def test_the_bundled_demo_clips_pass_every_check():
    clips = sorted((DEMO_DIR / "kmr_ljspeech" / "wavs").glob("*.wav")) + sorted(
        (DEMO_DIR / "kmr_common_voice" / "clips").glob("*.mp3")
    )
    assert len(clips) == 64
    for clip in clips:
        decoded = decode_audio(str(clip))
        assert decoded.num_frames == decoded.declared_frames
        assert screen(clip.read_bytes()) == "", clip


def test_broken_clips_count_towards_max_bad_fraction_and_others_do_not(tmp_path):
    """Four clips of ten cut or holding NaN: 40% broken stops the run at --max_bad_fraction 0.3 with the reasons;
    four silent or clipped clips are dropped without counting towards it."""
    from transformers import VitsTokenizer

    tokenizer = VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"))
    config = make_tiny_config(vocab_size=len(tokenizer))
    folder = tmp_path / "lj"
    (folder / "wavs").mkdir(parents=True)
    lines = (DEMO_DIR / "kmr_ljspeech" / "metadata.csv").read_text(encoding="utf-8").splitlines()[:10]
    for index, line in enumerate(lines):
        clip_id = line.split("|")[0]
        samples = sf.read(DEMO_DIR / "kmr_ljspeech" / "wavs" / f"{clip_id}.wav", dtype="float32")[0]
        path = folder / "wavs" / f"{clip_id}.wav"
        if index < 2:  # cut to half its bytes
            data = encoded(samples, "WAV", "PCM_16")
            path.write_bytes(data[: len(data) // 2])
        elif index < 4:
            samples[::500] = np.nan
            sf.write(path, samples, RATE, subtype="FLOAT")
        else:
            sf.write(path, samples, RATE)
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def args(**overrides):
        return DataArguments(
            dataset_name=str(folder), eval_fraction=0.1, cache_dir=str(tmp_path / "cache"), **overrides
        )

    with pytest.raises(DataError, match=r"4 of 9 clips are broken.*truncated: .*non_finite_audio: ") as error:
        prepare_datasets(args(max_bad_fraction=0.3), tokenizer, config, str(tmp_path / "out"))
    assert "fetch them again" in str(error.value)
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    counts = {
        r: sum(split["dropped"][r]["count"] for split in report.values()) for r in ("truncated", "non_finite_audio")
    }
    assert counts == {"truncated": 2, "non_finite_audio": 2}

    # the same clips silent and clipped: dropped, reported, and no stop at the same bound
    for index, line in enumerate(lines[:4]):
        path = folder / "wavs" / f"{line.split('|')[0]}.wav"
        samples = sf.read(DEMO_DIR / "kmr_ljspeech" / "wavs" / path.name, dtype="float32")[0]
        sf.write(path, np.zeros_like(samples) if index < 2 else np.clip(samples * 8, -1, 1), RATE)
    features, report = prepare_datasets(args(max_bad_fraction=0.3), tokenizer, config, str(tmp_path / "out"))
    dropped = {r: sum(split["dropped"][r]["count"] for split in report.values()) for r in ("silent", "clipped")}
    assert dropped == {"silent": 2, "clipped": 2}
    assert len(features["train"]) + len(features["eval"]) == 6
    clipping = [entry for split in report.values() for entry in split["clipping"]["most_clipped"]]
    assert {Path(entry["path"]).name for entry in clipping if entry["drop_reason"] == "clipped"} == {
        f"{line.split('|')[0]}.wav" for line in lines[2:4]
    }
    assert all(entry["fraction"] > 0.01 for entry in clipping if entry["drop_reason"] == "clipped")


def test_screening_in_the_pipeline_trims_drops_and_reports_each_clip(tmp_path):
    """Demo clips made into each defect, through `prepare_datasets`: the padded ones trimmed (one below
    --min_duration_in_seconds once trimmed), noise, telephone band and a hum dropped with their reasons; every clip
    in data_clips.tsv with its measures; --trim_silence false keeps the padding."""
    import csv

    import soxr
    from transformers import VitsTokenizer

    tokenizer = VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"))
    config = make_tiny_config(vocab_size=len(tokenizer))
    rng = np.random.default_rng(0)
    folder = tmp_path / "lj"
    (folder / "wavs").mkdir(parents=True)
    lines = (DEMO_DIR / "kmr_ljspeech" / "metadata.csv").read_text(encoding="utf-8").splitlines()[:12]
    kinds = ["padded", "short_word", "noisy", "telephone", "hum"] + ["clean"] * 7
    for line, kind in zip(lines, kinds):
        clip_id = line.split("|")[0]
        samples = sf.read(DEMO_DIR / "kmr_ljspeech" / "wavs" / f"{clip_id}.wav", dtype="float32")[0]
        tone = (10 ** (-65 / 20) * rng.standard_normal(len(samples) + 2 * RATE)).astype(np.float32)
        if kind == "padded":  # a second of room tone on each side, and a DC offset
            tone[RATE : RATE + len(samples)] += samples
            samples = tone + 0.2
        elif kind == "short_word":  # 0.2 s of the clip in 2.5 s of room tone: 0.4 s once trimmed
            tone[RATE : RATE + RATE // 5] += samples[RATE // 2 : RATE // 2 + RATE // 5]
            samples = tone[: 5 * RATE // 2]
        elif kind == "noisy":
            samples = samples + 0.5 * np.sqrt(np.mean(samples**2)) * rng.standard_normal(len(samples))
        elif kind == "telephone":
            tone[RATE : RATE + len(samples)] += samples
            samples = soxr.resample(soxr.resample(tone, RATE, 8000), 8000, RATE)
        elif kind == "hum":
            samples = 0.1 * np.sin(2 * np.pi * 120 * np.arange(2 * RATE) / RATE)
        sf.write(folder / "wavs" / f"{clip_id}.wav", samples.astype(np.float32), RATE, subtype="FLOAT")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def prepare(name, **overrides):
        data_args = DataArguments(
            dataset_name=str(folder), eval_fraction=0.1, cache_dir=str(tmp_path / "cache"), **overrides
        )
        features, report = prepare_datasets(data_args, tokenizer, config, str(tmp_path / name))
        with open(tmp_path / name / "data_clips.tsv", encoding="utf-8") as handle:
            rows = {Path(row["path"]).stem: row for row in csv.DictReader(handle, delimiter="\t")}
        return features, report, rows

    features, report, rows = prepare("screened")
    expected = dict(zip((line.split("|")[0] for line in lines), kinds))
    reasons = {"short_word": "too_short", "noisy": "low_snr", "telephone": "narrow_band", "hum": "no_speech"}
    assert {clip: rows[clip]["drop_reason"] for clip in rows} == {
        clip: reasons.get(kind, "") for clip, kind in expected.items()
    }
    for split in report.values():
        assert split["seen"] == split["kept"] + sum(entry["count"] for entry in split["dropped"].values())
    padded = next(clip for clip, kind in expected.items() if kind == "padded")
    # the second of room tone and the demo clip's own silence before its speech, less the 0.1 s pad
    original = sf.read(DEMO_DIR / "kmr_ljspeech" / "wavs" / f"{padded}.wav", dtype="float32")[0]
    speech = measure_activity(original, RATE)
    lead, tail = speech.first_sample / RATE, (len(original) - speech.end_sample) / RATE
    assert float(rows[padded]["trimmed_start_seconds"]) == pytest.approx(1 + lead - TRIM_PAD_SECONDS, abs=0.03)
    assert float(rows[padded]["trimmed_end_seconds"]) == pytest.approx(1 + tail - TRIM_PAD_SECONDS, abs=0.03)
    assert float(rows[padded]["snr_db"]) > 30 and float(rows[padded]["bandwidth_hz"]) > 7000
    hum = next(clip for clip, kind in expected.items() if kind == "hum")
    assert rows[hum]["snr_db"] == "" and rows[hum]["speech_seconds"] == "0.0"
    screening = next(split["screening"] for split in report.values() if split["screening"]["trimmed_clips"])
    assert Path(screening["most_trimmed"][0]["path"]).stem == padded and screening["trimmed_seconds"] > 1.7
    summary = format_report(report)
    assert "silence trimmed:" in summary and f"{padded}.wav" in summary and "per speaker" in summary
    assert "low_snr" in summary and "narrow_band" in summary
    # the kept padded clip trains on 0.1 s of room tone on each side
    lengths = {
        Path(path).stem: length
        for split in features.values()
        for path, length in zip(split["path"], split["waveform_length"])
    }
    spoken = (speech.end_sample - speech.first_sample) / RATE
    assert lengths[padded] / RATE == pytest.approx(spoken + 2 * TRIM_PAD_SECONDS, abs=0.03)

    # the flags off: nothing trimmed, nothing dropped for SNR, bandwidth or speaking rate (the kept 0.2 s word and
    # noisy clip would be rate outliers); a new cache (the flags are in the key)
    features, report, rows = prepare(
        "kept", trim_silence=False, min_snr_db=0, min_bandwidth_hz=0, max_rate_deviation=0
    )
    assert {clip: rows[clip]["drop_reason"] for clip in rows if rows[clip]["drop_reason"]} == {hum: "no_speech"}
    lengths = {
        Path(path).stem: length
        for split in features.values()
        for path, length in zip(split["path"], split["waveform_length"])
    }
    assert lengths[padded] == len(original) + 2 * RATE
